//! Webhook deliveries: what a mapped delivery asks for is applied through the same use cases
//! as the API, as the source (or the caller) it came from, and every delivery is recorded with
//! its outcome.
use serde::Serialize;
use shipgate_domain::Role;
use shipgate_domain::integrations::{Delivery, Ignored, Intent};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{App, Caller, deployments};
use crate::error::{ApiError, ApiResult};

#[derive(Serialize, ToSchema)]
pub struct DeliveryAnswer {
    /// `accepted`, `ignored`, or `duplicate` (a redelivery, answered from its first record).
    pub result: String,
    pub reason: Option<String>,
    pub records: Vec<String>,
}

pub async fn remember(app: &App, d: Delivery) {
    if let Err(e) = app.store.record_delivery(&d).await {
        tracing::warn!(error = ?e, source = %d.source, delivery = %d.delivery_id, "could not record a webhook delivery");
    }
}

#[allow(clippy::too_many_arguments)]
pub fn delivery(
    app: &App,
    source: &str,
    id: &str,
    tenant: &str,
    event: &str,
    result: &str,
    reason: Option<String>,
    records: Vec<String>,
) -> Delivery {
    Delivery {
        source: source.into(),
        delivery_id: id.into(),
        tenant: tenant.into(),
        event: event.into(),
        result: result.into(),
        reason,
        records,
        received_at: app.clock.now(),
    }
}

/// Records what the intents ask for, as `caller`. `accepted` is the delivery's record: when
/// the delivery's whole effect is one new deployment, it is written in that deployment's
/// transaction (through the group-commit writer), and taken.
pub async fn apply(
    app: &App,
    caller: &Caller,
    intents: Vec<Intent>,
    accepted: &mut Option<Delivery>,
) -> ApiResult<Vec<String>> {
    let tenant = caller.tenant.as_str();
    let single = intents.len() == 1;
    let mut records = Vec::new();
    let known = |id: Uuid| async move { app.store.get_deployment(tenant, id).await };
    // Ids derived from upstream records are scoped to the tenant: two tenants' Jenkins job
    // `deploy` #12 are two deployments.
    let scope = |v: &mut serde_json::Value| {
        if let Some(id) = v["id"].as_str() {
            v["id"] = serde_json::Value::String(
                shipgate_domain::integrations::derived_id(&[tenant, id]).to_string(),
            );
        }
    };
    for intent in intents {
        let intent = match intent {
            Intent::Deployment { mut body } => {
                scope(&mut body);
                Intent::Deployment { body }
            }
            Intent::Status {
                mut deployment,
                mut status,
                deployment_id,
            } => {
                scope(&mut deployment);
                scope(&mut status);
                Intent::Status {
                    deployment_id: deployment["id"]
                        .as_str()
                        .and_then(|i| Uuid::parse_str(i).ok())
                        .unwrap_or(deployment_id),
                    deployment,
                    status,
                }
            }
            other => other,
        };
        match intent {
            Intent::Deployment { body } => {
                let id = body["id"].as_str().and_then(|i| Uuid::parse_str(i).ok());
                if let Some(id) = id
                    && known(id).await?.is_some()
                {
                    records.push(id.to_string());
                    continue;
                }
                let c = deployments::record(app, caller, &body, None).await?;
                records.push(c.deployment.record.id.to_string());
            }
            Intent::Status {
                deployment_id,
                deployment,
                status,
            } => {
                records.push(deployment_id.to_string());
                let unknown = known(deployment_id).await?.is_none();
                if unknown && let Some(body) = with_status(&deployment, &status) {
                    // A deployment first heard of with its status is recorded with it: one
                    // write, with the delivery when that is all the delivery did.
                    let delivery = single.then(|| accepted.take()).flatten().map(|d| Delivery {
                        records: records.clone(),
                        ..d
                    });
                    deployments::record_from(app, caller, &body, None, delivery).await?;
                    continue;
                }
                if unknown {
                    deployments::record(app, caller, &deployment, None).await?;
                }
                // The upstream status id makes a redelivered status idempotent (held to the
                // same bounds as an Idempotency-Key header).
                let key = status["id"].as_str().and_then(deployments::valid_key);
                deployments::append(app, caller, deployment_id, &status, key).await?;
            }
            Intent::Commits(commits) => {
                app.store.record_commits(tenant, &commits).await?;
                records.extend(commits.into_iter().map(|c| c.sha));
            }
            Intent::PullRequest(pr) => {
                app.store
                    .record_pull_request(tenant, &pr, &caller.subject, app.clock.now())
                    .await?;
                records.push(format!("{}#{}", pr.repository, pr.number));
            }
            Intent::Tag(t) => {
                app.store
                    .record_tag(tenant, &t, &caller.subject, app.clock.now())
                    .await?;
                records.push(format!("{}@{}", t.repository, t.name));
            }
            Intent::TagDeleted { repository, name } => {
                app.store
                    .delete_tag(tenant, &repository, &name, &caller.subject, app.clock.now())
                    .await?;
                records.push(format!("{repository}@{name} (deleted)"));
            }
            Intent::Incident(i) => {
                record_incident(app, tenant, &caller.subject, &i).await?;
                records.push(format!("{}:{}", i.source, i.external_id));
            }
            Intent::Artifact {
                name,
                version,
                digest,
            } => {
                if caller.env_tier.is_some() {
                    return Err(ApiError::Forbidden(
                        "publishing artifacts needs a token not limited to one tier".into(),
                    ));
                }
                let a = shipgate_domain::provenance::PublishedArtifact {
                    name,
                    version,
                    digest: digest.clone(),
                    source: caller.subject.clone(),
                    published_at: app.clock.now(),
                };
                app.store
                    .publish_artifact(tenant, &a, &caller.subject)
                    .await?;
                records.push(digest);
            }
        }
    }
    Ok(records)
}

/// Acts on a mapped delivery and records the outcome. A store outage is not recorded, so that
/// the sender's retry is acted on.
pub async fn settle(
    app: &App,
    source: &str,
    id: &str,
    tenant: &str,
    event: &str,
    mapped: Result<Result<Vec<Intent>, Ignored>, shipgate_domain::FieldErrors>,
) -> ApiResult<DeliveryAnswer> {
    // A webhook acts as its source: a deployer in the tenant.
    let caller = Caller {
        tenant: tenant.to_owned(),
        subject: source.to_owned(),
        role: Role::Deployer,
        root: false,
        env_tier: None,
    };
    settle_as(app, &caller, source, id, event, mapped).await
}

/// Acts on a mapped delivery as `caller` and records the outcome.
pub async fn settle_as(
    app: &App,
    caller: &Caller,
    source: &str,
    id: &str,
    event: &str,
    mapped: Result<Result<Vec<Intent>, Ignored>, shipgate_domain::FieldErrors>,
) -> ApiResult<DeliveryAnswer> {
    let tenant = caller.tenant.as_str();
    let d = |result: &str, reason: Option<String>, records: Vec<String>| {
        delivery(app, source, id, tenant, event, result, reason, records)
    };
    match mapped {
        Err(errors) => {
            let reason = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            remember(app, d("rejected", Some(reason), vec![])).await;
            Err(ApiError::Validation(errors))
        }
        Ok(Err(Ignored(reason))) => {
            remember(app, d("ignored", Some(reason.clone()), vec![])).await;
            Ok(DeliveryAnswer {
                result: "ignored".into(),
                reason: Some(reason),
                records: vec![],
            })
        }
        Ok(Ok(intents)) => {
            let mut accepted = Some(d("accepted", None, vec![]));
            match apply(app, caller, intents, &mut accepted).await {
                Ok(records) => {
                    if accepted.is_some() {
                        remember(app, d("accepted", None, records.clone())).await;
                    }
                    metrics::counter!("shipgate_webhook_deliveries_total", "source" => source.to_owned(), "result" => "accepted").increment(1);
                    Ok(DeliveryAnswer {
                        result: "accepted".into(),
                        reason: None,
                        records,
                    })
                }
                Err(
                    e @ (ApiError::Unavailable(_) | ApiError::Internal(_) | ApiError::Overloaded),
                ) => Err(e),
                Err(e) => {
                    remember(app, d("rejected", Some(e.summary()), vec![])).await;
                    Err(e)
                }
            }
        }
    }
}

/// Records one incident (its environment resolved for the event's tier); returns whether it
/// changed, and the resolved environment.
pub async fn record_incident(
    app: &App,
    tenant: &str,
    actor: &str,
    i: &shipgate_domain::incident::Incident,
) -> ApiResult<(bool, Option<shipgate_domain::ResolvedEnvironment>)> {
    let env = match &i.environment {
        Some(e) => super::environments::resolve_environment(app, tenant, e)
            .await?
            .ok(),
        None => None,
    };
    let changed = app
        .store
        .record_incident(
            tenant,
            i,
            env.as_ref().and_then(|e| e.tier),
            actor,
            app.clock.now(),
        )
        .await?;
    Ok((changed, env))
}

/// A deployment body that also carries its first known status (and, when that status is
/// final, when it finished), or `None` when the two cannot be one record: the deployment
/// names no start, or the status is timed before it. Those take the two-step path.
fn with_status(
    deployment: &serde_json::Value,
    status: &serde_json::Value,
) -> Option<serde_json::Value> {
    use shipgate_domain::time::parse_rfc3339;
    let st = status["status"]
        .as_str()
        .and_then(shipgate_domain::DeploymentStatus::parse)?;
    let started = parse_rfc3339(deployment["started_at"].as_str()?).ok()?;
    let mut body = deployment.clone();
    let obj = body.as_object_mut()?;
    obj.insert("status".into(), status["status"].clone());
    if st.is_terminal() {
        let at = status["occurred_at"].as_str()?;
        if parse_rfc3339(at).ok()? < started {
            return None;
        }
        obj.insert("finished_at".into(), at.into());
    }
    Some(body)
}
