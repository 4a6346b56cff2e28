//! Event streaming figures for `shipgate-bench --suite stream`: publication lag from the commit
//! of a deployment to a NATS subscriber receiving its event, through the outbox relay, against
//! the machine's NATS JetStream (127.0.0.1:4222, or SHIPGATE_BENCH_NATS). Baseline in the same
//! run: the recording request's own round trip. Clients: 1 (sequential) and 16 (concurrent).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use shipgate_server::{Application, Settings};

use crate::{TOKEN, ms, pct};

pub async fn run() {
    let url = std::env::var("SHIPGATE_BENCH_NATS").unwrap_or("nats://127.0.0.1:4222".into());
    let nats = match async_nats::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            println!("stream: NATS unreachable at {url} ({e}): skipped");
            return;
        }
    };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let prefix = format!("sgbench{tag}");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("stream.db").display()),
        admin_token: Some(TOKEN.to_owned().into()),
        ..Settings::default()
    };
    settings.nats.url = Some(url.clone());
    settings.nats.stream = format!("SGBENCH_{tag}");
    settings.nats.subject_prefix = prefix.clone();
    let (app, _) = Application::build(
        settings,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run());

    // Arrival times by deployment id.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let mut sub = nats.subscribe(format!("{prefix}.>")).await.unwrap();
    let sink = arrived.clone();
    let reader = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let t = Instant::now();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload)
                && let Some(id) = v["customData"]["deployment"]["id"].as_str()
                && let Ok(mut g) = sink.lock()
            {
                g.insert(id.to_owned(), t);
            }
        }
    });

    let http = reqwest::Client::new();
    for clients in [1usize, 16] {
        let per = if clients == 1 { 1000 } else { 250 };
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for i in 0..per {
                    let sent = Instant::now();
                    let r = http
                        .post(format!("{base}/api/v1/deployments"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"service": format!("svc-{c}"), "environment": "staging", "version": format!("{clients}.{c}.{i}")}))
                        .send()
                        .await
                        .unwrap();
                    let done = Instant::now();
                    let v: serde_json::Value = r.json().await.unwrap();
                    out.push((v["id"].as_str().unwrap().to_owned(), sent, done));
                    if clients == 1 {
                        // A steady trickle, so the lag is not a queue.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                out
            }));
        }
        let mut sent = Vec::new();
        for t in tasks {
            sent.extend(t.await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrived.lock().map(|g| g.len()).unwrap_or(0) < sent.len() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = arrived.lock().unwrap().clone();
        let mut from_ack = Vec::new();
        let mut from_send = Vec::new();
        let mut rtt = Vec::new();
        let mut missing = 0;
        for (id, s, d) in &sent {
            rtt.push(*d - *s);
            match got.get(id) {
                Some(t) => {
                    from_ack.push(t.saturating_duration_since(*d));
                    from_send.push(t.saturating_duration_since(*s));
                }
                None => missing += 1,
            }
        }
        for v in [&mut from_ack, &mut from_send, &mut rtt] {
            v.sort();
        }
        println!(
            "stream[nats] {clients} client(s), {} deployments: lag from the 201 to the subscriber p50 {:.1} ms, p99 {:.1} ms; from sending the request p50 {:.1} ms, p99 {:.1} ms (target p99 < 100 ms) | baseline, the request's round trip: p50 {:.1} ms, p99 {:.1} ms | ratio of p99s {:.2} | missing {missing}",
            sent.len(),
            ms(pct(&from_ack, 0.5)),
            ms(pct(&from_ack, 0.99)),
            ms(pct(&from_send, 0.5)),
            ms(pct(&from_send, 0.99)),
            ms(pct(&rtt, 0.5)),
            ms(pct(&rtt, 0.99)),
            pct(&from_send, 0.99).as_secs_f64() / pct(&rtt, 0.99).as_secs_f64().max(1e-9)
        );
        arrived.lock().unwrap().clear();
    }
    reader.abort();
    stop.cancel();
    let _ = server.await;
    let js = async_nats::jetstream::new(nats);
    let _ = js.delete_stream(format!("SGBENCH_{tag}")).await;
}
