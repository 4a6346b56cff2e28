//! The queue and reviews.
use super::*;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approval_queue))
        .routes(routes!(reviews))
}

#[derive(Serialize, ToSchema)]
pub struct QueueItem {
    change: String,
    title: String,
    #[serde(rename = "type")]
    change_type: String,
    requester: String,
    #[schema(value_type = String, format = DateTime)]
    waiting_since: shipgate_domain::time::Timestamp,
    waiting_secs: i64,
    sla_secs: Option<u64>,
    sla_breached: bool,
    /// Per environment, the groups still short of their quorum and who could act.
    blocking: Vec<Blocking>,
    /// The caller could approve it now.
    you_can_approve: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Blocking {
    environment: String,
    group: String,
    quorum: u32,
    approved_by: Vec<String>,
    eligible: Vec<String>,
    reasons: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals",
    params(("all" = Option<bool>, Query, description = "Every pending change (change managers), not only those the caller can approve")),
    description = "The approval queue: pending changes with who is blocking them and for how long.",
    responses((status = 200, body = Vec<QueueItem>)))]
pub(super) async fn approval_queue(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<QueueItem>>> {
    let mut p = Params::new(q, &["all"]);
    let all = p.parse("all", |s| {
        s.parse::<bool>().map_err(|_| "true or false".to_owned())
    });
    p.finish()?;
    let all = all.unwrap_or(false);
    let pending = state
        .store
        .list_changes(&caller.tenant, Some(ChangeStatus::Pending), 1000)
        .await?;
    let pv = governance::policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let ids = governance::identities(&state, &caller.tenant).await?;
    let now = state.clock.now();
    // Pending approvals re-route to a delegate while the delegation runs, and back after.
    let mut me: Vec<String> = vec![caller.subject.clone()];
    me.extend(
        state
            .store
            .list_delegations(&caller.tenant)
            .await?
            .into_iter()
            .filter(|d| d.to == caller.subject && d.active(now))
            .map(|d| d.from),
    );
    let mut out = Vec::new();
    for c in pending {
        let explained = approval::explain(&c, pv.as_deref(), &groups, &ids, now);
        let mut blocking = Vec::new();
        let mut you = false;
        let mut sla: Option<u64> = None;
        let decided = |who: &String| c.current_decisions().any(|d| d.person() == who);
        for (req, d) in &explained {
            if let Some(r) = req {
                sla = Some(sla.map_or(r.sla.as_secs(), |s| s.min(r.sla.as_secs())));
            }
            for g in &d.approvals {
                if (g.approved_by.len() as u32) < g.quorum {
                    if me
                        .iter()
                        .any(|who| g.eligible.contains(who) && !decided(who) && who != &c.requester)
                    {
                        you = true;
                    }
                    blocking.push(Blocking {
                        environment: d.environment.clone(),
                        group: g.group.clone(),
                        quorum: g.quorum,
                        approved_by: g.approved_by.clone(),
                        eligible: g.eligible.clone(),
                        reasons: d.reasons.iter().map(|r| r.code.clone()).collect(),
                    });
                }
            }
        }
        if !all && !you {
            continue;
        }
        let waiting = (now - c.updated_at).num_seconds().max(0);
        out.push(QueueItem {
            change: c.key.clone(),
            title: c.spec.title.clone(),
            change_type: c.spec.change_type.as_str().to_owned(),
            requester: c.requester.clone(),
            waiting_since: c.updated_at,
            waiting_secs: waiting,
            sla_secs: sla,
            sla_breached: sla.is_some_and(|s| waiting as u64 > s),
            blocking,
            you_can_approve: you,
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.waiting_secs));
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct Reviews {
    /// Post-deployment reviews not yet recorded (emergency bypasses, small-team self-approvals).
    pending_reviews: Vec<PendingReview>,
    root_cause_reviews: Vec<RootCauseReview>,
}

#[derive(Serialize, ToSchema)]
pub struct PendingReview {
    change: String,
    #[schema(value_type = String, format = DateTime)]
    due_at: shipgate_domain::time::Timestamp,
    overdue: bool,
    escalated: bool,
    incident_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reviews", tag = "approvals",
    description = "Post-deployment reviews due or overdue, and root-cause reviews opened by the emergency threshold.",
    responses((status = 200, body = Reviews)))]
pub(super) async fn reviews(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Reviews>> {
    let now = state.clock.now();
    let mut pending = Vec::new();
    for c in state.store.list_changes(&caller.tenant, None, 1000).await? {
        if let (Some(due), None) = (c.review_due_at, c.reviewed_at) {
            pending.push(PendingReview {
                change: c.key.clone(),
                due_at: due,
                overdue: c.review_overdue(now),
                escalated: c.review_escalated_at.is_some(),
                incident_id: c.spec.incident_id.clone(),
            });
        }
    }
    Ok(Json(Reviews {
        pending_reviews: pending,
        root_cause_reviews: state.store.root_cause_reviews(&caller.tenant).await?,
    }))
}
