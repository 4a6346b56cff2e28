//! GitHub deployment protection rules: GitHub waits on shipgate's gate, and shipgate answers
//! the callback with `approved` or `rejected` and the reasons. Requests are kept until answered
//! (operational state), so a restart resumes the wait.
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::App;

/// The GitHub API a tenant's protection-rule answers (and its GitHub token) may go to.
pub fn github_api(app: &App, tenant: &str) -> String {
    app.settings
        .webhooks
        .get(tenant)
        .and_then(|s| s.github_api_url.clone())
        .unwrap_or_else(|| "https://api.github.com".into())
}

/// Answers the protection-rule requests a previous run left unanswered.
pub async fn resume(app: &Arc<App>) {
    match app.store.pending_protection_requests().await {
        Ok(pending) => {
            for (tenant, id, body, received) in pending {
                spawn_answer(app.clone(), tenant, id, body, received);
            }
        }
        Err(e) => tracing::error!(error = ?e, "could not load pending deployment protection rules"),
    }
}

/// Decides one protection rule (waiting on the gate until `received` + the configured wait) and
/// answers GitHub; anything shipgate cannot decide is answered `rejected` with the reason.
pub fn spawn_answer(
    app: Arc<App>,
    tenant: String,
    id: String,
    value: serde_json::Value,
    received: shipgate_domain::time::Timestamp,
) {
    tokio::spawn(async move {
        let Ok(req) = shipgate_domain::integrations::github::protection_request(&value) else {
            let _ = app
                .store
                .answer_protection_request(&id, app.clock.now())
                .await;
            return;
        };
        let secrets = app
            .settings
            .webhooks
            .get(&tenant)
            .cloned()
            .unwrap_or_default();
        // The token goes only to GitHub's callback path on the configured GitHub API, whatever
        // the payload says.
        let api = github_api(&app, &tenant);
        if let Err(why) =
            shipgate_domain::integrations::github::check_callback_url(&api, &req.callback_url)
        {
            tracing::error!(callback = %req.callback_url, api = %api, reason = %why, "protection rule callback is not GitHub's callback on the configured GitHub API; not answered");
            metrics::counter!("shipgate_github_protection_answers_total", "state" => "refused_callback").increment(1);
            let _ = app
                .store
                .answer_protection_request(&id, app.clock.now())
                .await;
            return;
        }
        let total = Duration::from_secs(
            secrets
                .github_protection_wait_secs
                .unwrap_or(app.settings.max_gate_wait_secs),
        );
        let elapsed = (app.clock.now() - received).to_std().unwrap_or_default();
        let wait = total.saturating_sub(elapsed);
        let (verdict, comment) = match &req.change {
            None => (
                "rejected",
                "shipgate: the deployment names no change request (set payload.change_ref)"
                    .to_owned(),
            ),
            Some(change) => {
                let q = crate::service::gate::GateQuery {
                    tenant: tenant.clone(),
                    caller: "github".into(),
                    change: change.clone(),
                    environment: req.environment.clone(),
                    digest: req.digest.clone(),
                    deployer: req.deployer.clone(),
                };
                let d = crate::service::gate::gate(&app, q, wait).await;
                let reasons: Vec<String> = d
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {}", r.code, r.message))
                    .collect();
                if d.allowed() {
                    (
                        "approved",
                        format!("shipgate: {change} allows {}", req.environment),
                    )
                } else {
                    (
                        "rejected",
                        format!(
                            "shipgate: {change} is {} for {} ({})",
                            d.state.as_str(),
                            req.environment,
                            reasons.join("; ")
                        ),
                    )
                }
            }
        };
        if app.shutdown.is_cancelled() && verdict == "rejected" {
            // Shutting down mid-wait: the next start resumes this request.
            return;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let body = serde_json::json!({"environment_name": req.environment, "state": verdict, "comment": comment});
        // Retried until GitHub takes the answer (backoff up to a minute) or the server stops;
        // an unanswered request is resumed at the next start.
        for attempt in 0u32.. {
            let mut r = http
                .post(&req.callback_url)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .header("user-agent", "shipgate")
                .json(&body);
            if let Some(t) = &secrets.github_token {
                r = r.bearer_auth(t.expose_secret());
            }
            match r.send().await {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(environment = %req.environment, verdict, "protection rule answered");
                    metrics::counter!("shipgate_github_protection_answers_total", "state" => verdict).increment(1);
                    let _ = app
                        .store
                        .answer_protection_request(&id, app.clock.now())
                        .await;
                    return;
                }
                Ok(resp)
                    if resp.status().is_client_error()
                        && !matches!(resp.status().as_u16(), 401 | 403 | 429) =>
                {
                    tracing::error!(status = %resp.status(), "GitHub refused the protection rule answer");
                    let _ = app
                        .store
                        .answer_protection_request(&id, app.clock.now())
                        .await;
                    return;
                }
                Ok(resp) => {
                    tracing::warn!(status = %resp.status(), attempt, "protection rule answer failed; retrying")
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "protection rule answer failed; retrying")
                }
            }
            let backoff = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(9)))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        tracing::warn!(environment = %req.environment, "a deployment protection rule is still unanswered; it is resumed at the next start");
    });
}
