//! People and groups.
use super::*;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_person, list_people))
        .routes(routes!(put_group))
        .routes(routes!(list_groups))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePersonRequest {
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// Also create a personal API token with this role (shown once).
    token_role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedPerson {
    person: Person,
    /// The personal token, when one was asked for. Shown once.
    token: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/people", tag = "approvals", request_body = CreatePersonRequest,
    description = "Records a person who can be an approver (admin), optionally with a personal token.",
    responses((status = 201, body = CreatedPerson), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_person(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedPerson>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let subject = f.name("subject", true);
    let name = f.opt_str("name", 256);
    let email = f.opt_str("email", 256);
    let role = f.enumeration_nonempty("token_role", Role::parse, Role::expected);
    let errors = f.finish();
    let Some(subject) = subject else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if role == Some(Role::EmergencyDeployer) {
        crate::routes::admin::check_emergency_holder(&state, &caller.tenant, &subject).await?;
    }
    let now = state.clock.now();
    let person = Person {
        subject: subject.clone(),
        name,
        email,
        created_at: now,
    };
    state
        .store
        .put_person(&caller.tenant, &person, &caller.subject)
        .await?;
    let token = match role {
        None => None,
        Some(role) => {
            let token = generate_token();
            let t = shipgate_domain::ApiToken {
                id: Uuid::now_v7(),
                tenant: caller.tenant.clone(),
                subject,
                role,
                root: false,
                token_hash: hash_token(&token),
                created_at: now,
                expires_at: None,
                env_tier: None,
                created_by: Some(caller.subject.clone()),
                last_used_at: None,
                confirmed_by: None,
            };
            state.store.create_token(&t, &caller.subject).await?;
            Some(token)
        }
    };
    Ok((StatusCode::CREATED, Json(CreatedPerson { person, token })))
}

#[utoipa::path(get, path = "/api/v1/people", tag = "approvals", description = "People of the tenant.",
    responses((status = 200, body = Vec<Person>)))]
pub(super) async fn list_people(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Person>>> {
    Ok(Json(state.store.list_people(&caller.tenant).await?))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    description: Option<String>,
    /// At least one: a group without members is refused.
    members: Vec<String>,
    /// Count only when too few members are able to approve.
    backups: Option<Vec<String>>,
    department: Option<String>,
    regions: Option<Vec<String>>,
    compliance: Option<Vec<String>>,
}

#[utoipa::path(put, path = "/api/v1/groups/{name}", tag = "approvals", request_body = GroupRequest,
    params(("name" = String, Path, description = "Group name")),
    description = "Creates or replaces an approver group (admin). A group has at least one member; members and backups must be known people.",
    responses((status = 200, body = Group), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn put_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Group>> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let description = f.opt_str("description", 1000);
    let members = f.string_list("members");
    let backups = f.string_list("backups");
    let department = f.opt_str("department", 128);
    let regions = f.string_list("regions");
    let compliance = f.string_list("compliance");
    let mut errors = f.finish();
    // A group needs at least one member: a body without members (`{}`) does not empty it.
    match v.get("members") {
        None | Some(Value::Null) => {
            errors.add("members", "required", "a group needs at least one member")
        }
        Some(Value::Array(a)) if a.is_empty() => {
            errors.add("members", "empty", "a group needs at least one member")
        }
        _ => {}
    }
    if !shipgate_domain::input::NAME.is_match(&name) {
        errors.add(
            "name",
            "invalid_format",
            "1-128 characters of letters, digits, '.', '_', '/' or '-'",
        );
    }
    let people: BTreeSet<String> = state
        .store
        .list_people(&caller.tenant)
        .await?
        .into_iter()
        .map(|p| p.subject)
        .collect();
    for (field, list) in [("members", &members), ("backups", &backups)] {
        for (i, m) in list.iter().enumerate() {
            if !people.contains(m) {
                errors.add(
                    format!("{field}[{i}]"),
                    "unknown_person",
                    format!("'{m}' is not a known person; create it with `shipgate person create`"),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let g = Group {
        name,
        description,
        members,
        backups,
        department,
        regions,
        compliance: compliance.iter().map(|c| c.to_ascii_uppercase()).collect(),
    };
    state
        .store
        .put_group(&caller.tenant, &g, &caller.subject, state.clock.now())
        .await?;
    state.governance.forget(&caller.tenant);
    state.notifier.notify(Uuid::nil());
    Ok(Json(g))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "approvals", description = "Approver groups of the tenant.",
    responses((status = 200, body = Vec<Group>)))]
pub(super) async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.store.list_groups(&caller.tenant).await?))
}
