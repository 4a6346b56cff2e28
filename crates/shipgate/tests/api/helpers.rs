use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use shipgate_server::{Application, Settings};
use shipgate_store::Store;

pub const ADMIN: &str = "sg_test_admin_token_0123456789";

pub struct TestApp {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub db_url: String,
    /// The server's clock: tests move time forward with `clock.advance(..)` instead of
    /// sleeping past an expiry or a cache's TTL.
    pub clock: Arc<shipgate_domain::time::ShiftedClock>,
    stop: tokio_util::sync::CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

pub fn pg_url() -> String {
    std::env::var("SHIPGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL database, or None (loudly) when PostgreSQL is absent outside CI.
pub async fn fresh_pg() -> Option<String> {
    let admin = match sqlx::PgPool::connect(&pg_url()).await {
        Ok(p) => p,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL is required under CI=true: {e}");
            }
            eprintln!(
                "\n*** SKIPPING PostgreSQL test: {} unreachable: {e} ***\n",
                pg_url()
            );
            return None;
        }
    };
    let name = format!("sg_api_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = pg_url();
    Some(format!("{}/{name}", base.rsplit_once('/').unwrap().0))
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(f: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("shipgate.db").display());
        Self::spawn_on(db_url, dir, f).await
    }

    pub async fn spawn_on(
        db_url: String,
        dir: tempfile::TempDir,
        f: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let mut s = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: db_url.clone(),
            admin_token: Some(ADMIN.to_owned().into()),
            ..Settings::default()
        };
        f(&mut s);
        let clock = Arc::new(shipgate_domain::time::ShiftedClock::default());
        let (app, _boot) = Application::build(s, None, clock.clone())
            .await
            .expect("server builds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let store = app.store();
        let token = app.shutdown_token();
        let handle = tokio::spawn(app.run());
        TestApp {
            url,
            token: ADMIN.into(),
            http: reqwest::Client::new(),
            store,
            db_url,
            clock,
            stop: token,
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// Stops the server gracefully and waits for it; the store's directory lives on in the
    /// returned handle.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self._dir
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(reqwest::Method::GET, path, Some(&self.token), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.post_as(path, body, &self.token, &[]).await
    }

    /// An admin whose rights do not come from the root token (so it may confirm the root
    /// admin's two-person grants): the root creates `first-admin`, who grants `subject` admin
    /// rights, which the root then confirms.
    pub async fn independent_admin(&self, subject: &str) -> String {
        let first = self.token_for("first-admin", "admin", None).await;
        let r = self
            .post_as(
                "/api/v1/tokens",
                json!({"subject": subject, "role": "admin"}),
                &first,
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let c = self
            .post(&format!("/api/v1/tokens/{id}/confirm"), json!({}))
            .await;
        assert_eq!(c.status, 200, "{}", c.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Posts a decision on the revision of `key` as `token` reads it now (as the CLI does).
    pub async fn decide_as(&self, key: &str, mut body: Value, token: &str) -> Resp {
        let cur = self
            .req(
                reqwest::Method::GET,
                &format!("/api/v1/changes/{key}"),
                Some(token),
                None,
                &[],
            )
            .await;
        if let Some(o) = body.as_object_mut() {
            let r = cur.body.get("revision").cloned().unwrap_or(Value::from(1));
            o.insert("revision".into(), r);
        }
        self.post_as(
            &format!("/api/v1/changes/{key}/decisions"),
            body,
            token,
            &[],
        )
        .await
    }

    pub async fn post_as(
        &self,
        path: &str,
        body: Value,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.req(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(body.to_string().into()),
            &h,
        )
        .await
    }

    pub async fn token_for(&self, subject: &str, role: &str, tenant: Option<&str>) -> String {
        let r = self
            .post(
                "/api/v1/tokens",
                json!({"subject": subject, "role": role, "tenant": tenant}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// The value of one series on `/metrics` (`name{label="v"}`), 0 when absent. The recorder
    /// is process-wide: compare with a value read earlier, never with an absolute number.
    pub async fn metric(&self, series: &str) -> f64 {
        let r = self
            .req(reqwest::Method::GET, "/metrics", None, None, &[])
            .await;
        assert_eq!(r.status, 200);
        r.body
            .as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    pub async fn count(&self) -> usize {
        let r = self.get("/api/v1/deployments?limit=1000").await;
        r.body["items"].as_array().unwrap().len()
    }

    pub async fn verify_ok(&self) {
        let r = self.get("/api/v1/audit/verify").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["ok"], true, "audit chain broken: {}", r.body);
    }

    /// Runs the CLI binary against this server (async: the server shares this runtime).
    pub async fn cli(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
        c.args(args)
            .env("SHIPGATE_URL", &self.url)
            .env("SHIPGATE_TOKEN", &self.token);
        for v in [
            "SHIPGATE_DEPLOYMENT_ID",
            "SHIPGATE_ID_FILE",
            "GITHUB_RUN_ID",
            "CI_PIPELINE_ID",
            "BUILD_TAG",
        ] {
            c.env_remove(v);
        }
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().await.unwrap()
    }
}

/// What a [`wait_until`] condition answers: `true` or `Ok(v)` once it holds (`v` is handed
/// back); `false` or `Err(seen)` while it does not (`seen`, what was observed, goes into the
/// failure message).
pub trait Condition {
    type Value;
    fn holds(self) -> Result<Self::Value, String>;
}

impl Condition for bool {
    type Value = ();
    fn holds(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("not yet".into()) }
    }
}

impl<T> Condition for Result<T, String> {
    type Value = T;
    fn holds(self) -> Result<T, String> {
        self
    }
}

/// How often [`wait_until`] asks again.
const POLL: Duration = Duration::from_millis(25);

/// The one way tests wait: asks `check` every 25 ms until it holds and returns what it found,
/// or panics naming `what` (and the last thing seen) once `timeout` has passed. Never a fixed
/// sleep: a test waits for a signal, however slow or fast the machine.
pub async fn wait_until<C: Condition>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> C,
) -> C::Value {
    let started = Instant::now();
    loop {
        match check().await.holds() {
            Ok(v) => return v,
            Err(seen) if started.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting until {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

pub fn sha(n: u32) -> String {
    format!("{n:040x}")
}

pub fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A valid production deployment body.
pub fn prod_body(service: &str, version: &str, n: u32) -> Value {
    json!({"service": service, "environment": "prod-eu-west-1", "version": version,
           "commit_sha": sha(n), "artifact": format!("registry/{service}@{}", digest(n)), "deployer": "alice"})
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// Runs the CLI binary with only the given environment.
pub async fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    c.args(args)
        .env_remove("SHIPGATE_URL")
        .env_remove("SHIPGATE_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().await.unwrap()
}

/// A `shipgate serve` process (the real binary), killed when dropped.
pub struct ServerProcess {
    pub url: String,
    db_url: String,
    _child: tokio::process::Child,
}

impl ServerProcess {
    pub async fn start(db_url: &str) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .arg("serve")
            .env("SHIPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SHIPGATE_DATABASE_URL", db_url)
            .env("SHIPGATE_ADMIN_TOKEN", ADMIN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until(
            &format!("shipgate serve is ready on {url}"),
            Duration::from_secs(10),
            async || {
                http.get(format!("{url}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        ServerProcess {
            url,
            db_url: db_url.to_owned(),
            _child: child,
        }
    }

    /// A client handle with the same helpers as an in-process `TestApp`.
    pub async fn client(&self) -> TestApp {
        TestApp::remote(&self.url, &self.db_url).await
    }
}

impl TestApp {
    async fn remote(url: &str, db_url: &str) -> TestApp {
        TestApp {
            url: url.to_owned(),
            token: ADMIN.into(),
            http: reqwest::Client::new(),
            store: shipgate_store::open(db_url).await.unwrap(),
            db_url: db_url.to_owned(),
            // A server in another process keeps its own clock: advancing this one moves
            // nothing there.
            clock: Arc::default(),
            stop: tokio_util::sync::CancellationToken::new(),
            handle: None,
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}
