//! The gate.
use super::*;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gate))
}

pub(super) fn parse_wait(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s)
        .map_err(|_| format!("'{s}': use seconds or a duration like 60s, 5m"))
}

/// How long past its `wait` a gate call may take before it answers `error`.
pub(super) const GATE_GRACE: Duration = Duration::from_millis(900);

#[utoipa::path(get, path = "/api/v1/gate", tag = "approvals",
    params(
        ("change" = String, Query, description = "CR-<n> or the change id"),
        ("environment" = String, Query, description = "The environment about to be deployed"),
        ("digest" = Option<String>, Query, description = "sha256:<hex> of the artifact about to be deployed"),
        ("wait" = Option<String>, Query, description = "Long-poll: hold a pending answer up to this long (60s, 5m)"),
    ),
    description = "Whether a deployment may go ahead now. Fails closed: `error` when shipgate cannot decide. With `wait`, a pending answer is held until it settles (an approval wakes it within milliseconds, on any instance). Every call is logged for the change's timeline.",
    responses((status = 200, body = GateDecision), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn gate(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<(StatusCode, HeaderMap, Json<GateDecision>)> {
    let mut p = Params::new(q, &["change", "environment", "digest", "deployer", "wait"]);
    let change = p.get("change");
    let environment = p.get("environment");
    let digest = p.parse("digest", parse_digest);
    // The deployer is who is authenticated, never a name the caller chooses.
    let deployer = p.get("deployer");
    if let Some(d) = &deployer
        && shipgate_domain::identity::normalize(d)
            != shipgate_domain::identity::normalize(&caller.subject)
    {
        p.errors.add(
            "deployer",
            "not_the_caller",
            format!(
                "the deployer is the authenticated caller ({}); leave deployer out or name the caller",
                caller.subject
            ),
        );
    }
    let wait = p.parse("wait", parse_wait);
    if change.is_none() {
        p.errors.add(
            "change",
            "required",
            "the change request to gate on (CR-<n>)",
        );
    }
    if environment.is_none() {
        p.errors.add(
            "environment",
            "required",
            "the environment about to be deployed",
        );
    }
    let max = Duration::from_secs(state.settings.max_gate_wait_secs);
    if let Some(w) = wait
        && w > max
    {
        p.errors
            .add("wait", "too_long", format!("at most {}s", max.as_secs()));
    }
    p.finish()?;
    let (Some(change), Some(label)) = (change, environment) else {
        return Err(ApiError::BadRequest(
            "change and environment are required".into(),
        ));
    };
    // The answer comes within the wait plus a second, whatever the store does: past that, the
    // gate says `error` (fail closed) and why.
    let wait = wait.unwrap_or_default();
    let budget = wait.saturating_add(GATE_GRACE);
    let (change_key, env_label) = (change.clone(), label.clone());
    let d = match tokio::time::timeout(budget, async {
        // Accept any label the taxonomy knows (`prd` for `production`).
        let environment = match resolve_environment(&state, &caller.tenant, &label).await {
            Ok(Ok(e)) => e.name,
            _ => label,
        };
        let q = GateQuery {
            tenant: caller.tenant.clone(),
            caller: caller.subject.clone(),
            change,
            environment,
            digest,
            deployer: Some(caller.subject.clone()),
        };
        governance::gate(&state, q, wait).await
    })
    .await
    {
        Ok(d) => d,
        Err(_) => {
            metrics::counter!("shipgate_gate_decisions_total", "state" => "error").increment(1);
            GateDecision::error(
                &change_key,
                &env_label,
                "timeout",
                format!(
                    "shipgate could not decide within {}s (the store did not answer in time); the gate stays closed",
                    budget.as_secs_f32()
                ),
            )
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = d.state.as_str().parse() {
        headers.insert("x-shipgate-gate", v);
    }
    Ok((StatusCode::OK, headers, Json(d)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_wait;
    use std::time::Duration;

    #[test]
    fn waits() {
        assert_eq!(parse_wait("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_wait("soon").is_err());
    }
}
