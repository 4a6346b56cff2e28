//! Deployments: recording, status events, and the read models over them (history, feed, running, releases).
use super::*;

#[async_trait]
impl crate::DeploymentStore for SqlStore {
    async fn create_deployments(
        &self,
        batch: Vec<CreateDeployment>,
        now: Timestamp,
        atomic: bool,
    ) -> StoreResult<Vec<StoreResult<Created>>> {
        let mut tx = self.begin_audited().await?;

        // What is already recorded that the batch could collide with.
        let keys: Vec<String> = batch
            .iter()
            .filter_map(|c| {
                c.idempotency
                    .as_ref()
                    .map(|k| scoped_key(&c.deployment.tenant, &k.key))
            })
            .collect();
        let mut known_keys: HashMap<String, (String, String)> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT scoped_key, request_hash, result_id FROM idempotency_keys WHERE scoped_key IN (",
            );
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push_bind(k.clone());
            }
            sep.push_unseparated(")");
            for r in qb.build().fetch_all(&mut *tx).await? {
                known_keys.insert(
                    r.try_get("scoped_key")?,
                    (r.try_get("request_hash")?, r.try_get("result_id")?),
                );
            }
        }
        let ids: Vec<String> = batch
            .iter()
            .flat_map(|c| std::iter::once(c.deployment.id).chain(c.deployment.corrects))
            .map(|u| u.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Ids are scoped to the tenant (another tenant's record never collides), and one id
        // names one record: a deployment's id is never a status event's.
        let mut known_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        let mut known_event_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        for chunk in ids.chunks(CHUNK) {
            for (table, set) in [
                ("deployments", &mut known_ids),
                ("deployment_events", &mut known_event_ids),
            ] {
                let mut qb: QueryBuilder<Db> =
                    QueryBuilder::new(format!("SELECT id, tenant FROM {table} WHERE id IN ("));
                let mut sep = qb.separated(", ");
                for k in chunk {
                    sep.push_bind(k.clone());
                }
                sep.push_unseparated(")");
                for r in qb.build().fetch_all(&mut *tx).await? {
                    set.insert((r.try_get("tenant")?, uuid_col(&r, "id")?));
                }
            }
        }

        enum Plan {
            Insert,
            Replay(Uuid),
            SameAs(usize),
            Fail(StoreError),
        }
        let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
        let mut batch_keys: HashMap<String, (usize, String)> = HashMap::new();
        let mut batch_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        for (i, c) in batch.iter().enumerate() {
            let d = &c.deployment;
            if let Some(k) = &c.idempotency {
                let sk = scoped_key(&d.tenant, &k.key);
                if let Some((hash, result)) = known_keys.get(&sk) {
                    plans.push(if *hash == k.request_hash {
                        Uuid::parse_str(result)
                            .map(Plan::Replay)
                            .unwrap_or_else(|e| Plan::Fail(internal(e)))
                    } else {
                        Plan::Fail(StoreError::Conflict {
                            code: ErrorCode::IdempotencyKeyReused,
                            message: format!(
                                "idempotency key '{}' was used for a different request",
                                k.key
                            ),
                        })
                    });
                    continue;
                }
                if let Some((j, hash)) = batch_keys.get(&sk) {
                    plans.push(if *hash == k.request_hash {
                        Plan::SameAs(*j)
                    } else {
                        Plan::Fail(StoreError::Conflict {
                            code: ErrorCode::IdempotencyKeyReused,
                            message: format!(
                                "idempotency key '{}' was used for a different request",
                                k.key
                            ),
                        })
                    });
                    continue;
                }
            }
            let mine = (d.tenant.clone(), d.id);
            if known_ids.contains(&mine) || batch_ids.contains(&mine) {
                plans.push(Plan::Fail(StoreError::Conflict {
                    code: ErrorCode::DeploymentExists,
                    message: format!(
                        "a deployment with id {} is already recorded with different content",
                        d.id
                    ),
                }));
                continue;
            }
            if known_event_ids.contains(&mine) {
                plans.push(Plan::Fail(StoreError::Conflict {
                    code: ErrorCode::IdInUse,
                    message: format!("{} is the id of a status event; choose another id", d.id),
                }));
                continue;
            }
            if let Some(c) = d.corrects {
                let theirs = (d.tenant.clone(), c);
                if !known_ids.contains(&theirs) && !batch_ids.contains(&theirs) {
                    let mut e = FieldErrors::default();
                    e.add(
                        "corrects",
                        "not_found",
                        format!("no deployment {c} to correct"),
                    );
                    plans.push(Plan::Fail(StoreError::Invalid(e)));
                    continue;
                }
            }
            if let Some(k) = &c.idempotency {
                batch_keys.insert(scoped_key(&d.tenant, &k.key), (i, k.request_hash.clone()));
            }
            batch_ids.insert(mine);
            plans.push(Plan::Insert);
        }

        if atomic && plans.iter().any(|p| matches!(p, Plan::Fail(_))) {
            tx.rollback().await?;
            return Ok(plans
                .into_iter()
                .map(|p| match p {
                    Plan::Fail(e) => Err(e),
                    _ => Err(StoreError::Conflict {
                        code: ErrorCode::NotWritten,
                        message: "not written: another record of this batch was refused".into(),
                    }),
                })
                .collect());
        }

        // Build everything the inserts write.
        let mut rows = Vec::new();
        let mut events = Vec::new();
        let mut pending = Vec::new();
        let mut built: HashMap<usize, Deployment> = HashMap::new();
        let mut services = BTreeSet::new();
        let mut environments = BTreeMap::new();
        let mut releases = BTreeMap::new();
        let mut running: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut idem_rows = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            if !matches!(plans[i], Plan::Insert) {
                continue;
            }
            let d = &c.deployment;
            let mut evs = Vec::new();
            let mk = |status, at| StatusEvent {
                id: Uuid::now_v7(),
                deployment_id: d.id,
                tenant: d.tenant.clone(),
                target: None,
                status,
                message: None,
                occurred_at: at,
                ingested_at: now,
                late: d.backfilled,
                recorded_by: d.recorded_by.clone(),
            };
            if d.initial_status.is_terminal() {
                evs.push(mk(DeploymentStatus::Started, d.started_at));
                evs.push(mk(
                    d.initial_status,
                    d.initial_finished_at.unwrap_or(d.started_at),
                ));
            } else {
                evs.push(mk(d.initial_status, d.started_at));
            }
            let last_event_at = evs
                .iter()
                .map(|e| e.occurred_at)
                .max()
                .unwrap_or(d.started_at);
            let target_status: BTreeMap<String, DeploymentStatus> = d
                .targets
                .iter()
                .map(|t| (t.clone(), d.initial_status))
                .collect();
            pending.push(
                PendingEntry::new(
                    &d.tenant,
                    &d.recorded_by,
                    ACTION_DEPLOYMENT_CREATED,
                    &d.id.to_string(),
                    &audit::created_entry_payload(d, &evs),
                )
                .with_event(shipgate_domain::events::deployment_recorded(d)),
            );
            services.insert((d.tenant.clone(), d.service.clone(), d.team.clone()));
            environments.insert(
                (d.tenant.clone(), d.environment.name.clone()),
                d.environment.clone(),
            );
            releases
                .entry((d.tenant.clone(), d.service.clone(), d.version.clone()))
                .or_insert((
                    d.commit_sha.clone(),
                    d.artifact_digest.clone(),
                    d.started_at,
                ));
            if d.initial_status == DeploymentStatus::Succeeded {
                running.insert((
                    d.tenant.clone(),
                    d.service.clone(),
                    d.environment.name.clone(),
                ));
            }
            if let Some(k) = &c.idempotency {
                idem_rows.push((
                    scoped_key(&d.tenant, &k.key),
                    k.request_hash.clone(),
                    d.id.to_string(),
                ));
            }
            rows.push(DeploymentRow {
                d,
                status: d.initial_status,
                finished_at: d.initial_finished_at,
                last_event_at,
                target_status: target_status.clone(),
            });
            built.insert(
                i,
                Deployment {
                    record: d.clone(),
                    status: d.initial_status,
                    finished_at: d.initial_finished_at,
                    target_status,
                    corrected_by: Vec::new(),
                    events: evs.clone(),
                },
            );
            events.extend(evs);
        }

        if !rows.is_empty() {
            insert_deployments(&mut tx, &rows).await?;
            insert_events(&mut tx, &events).await?;
            let services: Vec<_> = services.into_iter().collect();
            for chunk in services.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO services (tenant, name, team, declared, created_at) ",
                );
                qb.push_values(chunk, |mut b, (t, n, team)| {
                    b.push_bind(t.clone())
                        .push_bind(n.clone())
                        .push_bind(team.clone())
                        .push_bind(false)
                        .push_bind(to_micros(now));
                });
                qb.push(" ON CONFLICT (tenant, name) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            let environments: Vec<_> = environments.into_iter().collect();
            for chunk in environments.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO environments (tenant, name, tier, region, declared, created_at) ",
                );
                qb.push_values(chunk, |mut b, ((t, n), e)| {
                    b.push_bind(t.clone())
                        .push_bind(n.clone())
                        .push_bind(e.tier.map(|t| t.as_str().to_owned()))
                        .push_bind(e.region.clone())
                        .push_bind(false)
                        .push_bind(to_micros(now));
                });
                qb.push(" ON CONFLICT (tenant, name) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            let releases: Vec<_> = releases.into_iter().collect();
            for chunk in releases.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO releases (tenant, service, version, commit_sha, artifact_digest, first_seen_at) ",
                );
                qb.push_values(chunk, |mut b, ((t, s, v), (c, a, at))| {
                    b.push_bind(t.clone())
                        .push_bind(s.clone())
                        .push_bind(v.clone())
                        .push_bind(c.clone())
                        .push_bind(a.clone())
                        .push_bind(to_micros(*at));
                });
                qb.push(" ON CONFLICT (tenant, service, version) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in idem_rows.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO idempotency_keys (scoped_key, request_hash, result_id, created_at) ",
                );
                qb.push_values(chunk, |mut b, (k, h, id)| {
                    b.push_bind(k.clone())
                        .push_bind(h.clone())
                        .push_bind(id.clone())
                        .push_bind(to_micros(now));
                });
                qb.build().execute(&mut *tx).await?;
            }
            for (t, s, e) in &running {
                refresh_running(&mut tx, t, s, e).await?;
            }
            tx.audit(now, pending);
        }
        // A webhook delivery commits with what it recorded (a replay records it too).
        for (plan, c) in plans.iter().zip(&batch) {
            if let (false, Some(d)) = (matches!(plan, Plan::Fail(_)), &c.delivery) {
                tx.operational(Operational::DeliveryLog);
                super::sources::insert_delivery(&mut tx, d).await?;
            }
        }
        tx.commit().await?;

        let mut out = Vec::with_capacity(plans.len());
        for (i, plan) in plans.into_iter().enumerate() {
            out.push(match plan {
                Plan::Insert => built
                    .get(&i)
                    .cloned()
                    .map(|d| Created {
                        deployment: d,
                        created: true,
                    })
                    .ok_or(StoreError::NotFound),
                Plan::SameAs(j) => built
                    .get(&j)
                    .cloned()
                    .map(|d| Created {
                        deployment: d,
                        created: false,
                    })
                    .ok_or(StoreError::NotFound),
                Plan::Replay(id) => {
                    match self.get_deployment(&batch[i].deployment.tenant, id).await {
                        Ok(Some(d)) => Ok(Created {
                            deployment: d,
                            created: false,
                        }),
                        Ok(None) => Err(StoreError::NotFound),
                        Err(e) => Err(e),
                    }
                }
                Plan::Fail(e) => Err(e),
            });
        }
        Ok(out)
    }

    async fn append_event(
        &self,
        tenant: &str,
        deployment_id: Uuid,
        change: StatusChange,
        actor: &str,
        now: Timestamp,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Appended> {
        let mut tx = self.begin_audited().await?;
        let key = idempotency
            .as_ref()
            .map(|k| scoped_key(tenant, &k.key))
            .or(change
                .id
                .map(|id| scoped_key(tenant, &format!("event:{id}"))));
        let request_hash = idempotency
            .as_ref()
            .map(|k| k.request_hash.clone())
            .unwrap_or_else(|| format!("{deployment_id}/{:?}/{}", change.target, change.status));
        if let Some(k) = &key {
            let known = sqlx::query(
                "SELECT request_hash, result_id FROM idempotency_keys WHERE scoped_key = $1",
            )
            .bind(k.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = known {
                let hash: String = r.try_get("request_hash")?;
                let result: String = r.try_get("result_id")?;
                drop(tx);
                if hash != request_hash {
                    return Err(StoreError::Conflict {
                        code: ErrorCode::IdempotencyKeyReused,
                        message:
                            "this idempotency key or event id was used for a different request"
                                .into(),
                    });
                }
                let d = self
                    .get_deployment(tenant, deployment_id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let event = d
                    .events
                    .iter()
                    .find(|e| e.id.to_string() == result)
                    .cloned();
                return Ok(Appended {
                    deployment: d,
                    event,
                });
            }
        }
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1 AND tenant = $2"
        ))
        .bind(deployment_id.to_string())
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let current = deployment_from_row(&row)?;
        let state = State {
            status: current.status,
            finished_at: current.finished_at,
            last_event_at: ts(&row, "last_event_at")?,
            targets: current.target_status.clone(),
        };
        if let Some(id) = change.id {
            let taken = sqlx::query(
                "SELECT id FROM deployment_events WHERE tenant = $1 AND id = $2 \
                 UNION ALL SELECT id FROM deployments WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict {
                    code: ErrorCode::IdInUse,
                    message: format!("{id} already names a record; choose another id"),
                });
            }
        }
        let occurred_at = change.occurred_at.unwrap_or(now);
        let arrived_late = (now - occurred_at).num_seconds() > LATE_AFTER_SECS;
        let applied = lifecycle::apply_event(
            &state,
            change.target.as_deref(),
            change.status,
            occurred_at,
            arrived_late,
        )
        .map_err(|e| match e {
            EventError::UnknownTarget(t) => {
                let mut fe = FieldErrors::default();
                fe.add(
                    "target",
                    "not_found",
                    format!("'{t}' is not a target of this deployment"),
                );
                StoreError::Invalid(fe)
            }
            EventError::Transition(t) => StoreError::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!("deployment is '{}': {t}", current.status),
            },
        })?;
        if !applied.append {
            drop(tx);
            let d = self
                .get_deployment(tenant, deployment_id)
                .await?
                .ok_or(StoreError::NotFound)?;
            return Ok(Appended {
                deployment: d,
                event: None,
            });
        }
        let event = StatusEvent {
            id: change.id.unwrap_or_else(Uuid::now_v7),
            deployment_id,
            tenant: tenant.to_owned(),
            target: change.target.clone(),
            status: change.status,
            message: change.message.clone(),
            occurred_at,
            ingested_at: now,
            late: applied.late,
            recorded_by: actor.to_owned(),
        };
        insert_events(&mut tx, std::slice::from_ref(&event)).await?;
        let s = &applied.state;
        sqlx::query("UPDATE deployments SET status = $1, finished_at = $2, last_event_at = $3, target_status = $4 WHERE id = $5 AND tenant = $6")
            .bind(s.status.as_str())
            .bind(s.finished_at.map(to_micros))
            .bind(to_micros(s.last_event_at))
            .bind(json_text(&s.targets))
            .bind(deployment_id.to_string())
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        if (s.status == DeploymentStatus::Succeeded)
            != (state.status == DeploymentStatus::Succeeded)
        {
            refresh_running(
                &mut tx,
                tenant,
                &current.record.service,
                &current.record.environment.name,
            )
            .await?;
        }
        if let Some(k) = key {
            sqlx::query("INSERT INTO idempotency_keys (scoped_key, request_hash, result_id, created_at) VALUES ($1, $2, $3, $4)")
                .bind(k)
                .bind(request_hash)
                .bind(event.id.to_string())
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
        }
        let entry = PendingEntry::new(
            tenant,
            actor,
            ACTION_DEPLOYMENT_EVENT,
            &deployment_id.to_string(),
            &audit::events_entry_payload(std::slice::from_ref(&event)),
        )
        .with_event(shipgate_domain::events::deployment_status(
            &current.record,
            &event,
            s.status,
        ));
        tx.audit(now, vec![entry]);
        tx.commit().await?;
        let d = self
            .get_deployment(tenant, deployment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Appended {
            deployment: d,
            event: Some(event),
        })
    }

    async fn get_deployment(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Deployment>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1 AND tenant = $2"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let mut d = deployment_from_row(&row)?;
        d.events = self.load_events(tenant, id).await?;
        d.corrected_by = sqlx::query(
            "SELECT id FROM deployments WHERE corrects = $1 AND tenant = $2 ORDER BY id",
        )
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| uuid_col(r, "id"))
        .collect::<StoreResult<_>>()?;
        Ok(Some(d))
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> StoreResult<Page<Deployment>> {
        let limit = limit.clamp(1, 1000);
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments"));
        push_filter(&mut qb, filter, "");
        if let Some(c) = after {
            qb.push(" AND (started_at < ")
                .push_bind(c.started_at_us)
                .push(" OR (started_at = ")
                .push_bind(c.started_at_us)
                .push(" AND id < ")
                .push_bind(c.id.to_string())
                .push("))");
        }
        qb.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut items: Vec<Deployment> = rows
            .iter()
            .map(deployment_from_row)
            .collect::<StoreResult<_>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|d| {
                Cursor {
                    started_at_us: to_micros(d.record.started_at),
                    id: d.record.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn feed(&self, filter: &DeploymentFilter, limit: u32) -> StoreResult<Vec<FeedEntry>> {
        let cols: String = DEPLOYMENT_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {cols}, (SELECT p.version FROM deployments p WHERE p.tenant = d.tenant AND p.service = d.service \
             AND p.environment = d.environment AND p.status IN ('succeeded', 'rolled_back') AND p.started_at < d.started_at \
             ORDER BY p.started_at DESC LIMIT 1) AS previous_version FROM deployments d"
        ));
        push_filter(&mut qb, filter, "d.");
        qb.push(" ORDER BY d.started_at DESC, d.id DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 1000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FeedEntry {
                    deployment: deployment_from_row(r)?,
                    previous_version: r.try_get("previous_version")?,
                })
            })
            .collect()
    }

    async fn running(
        &self,
        tenant: &str,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> StoreResult<Vec<RunningVersion>> {
        // Only the columns the answer needs: this is read on every dashboard refresh.
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT d.id, d.service, d.environment, d.env_tier, d.region, d.version, d.commit_sha, d.artifact_digest, \
             d.deployer, d.started_at, d.finished_at FROM running r JOIN deployments d ON d.tenant = r.tenant AND d.id = r.deployment_id WHERE r.tenant = ",
        );
        qb.push_bind(tenant.to_owned());
        if let Some(s) = service {
            qb.push(" AND r.service = ").push_bind(s.to_owned());
        }
        if let Some(e) = environment {
            qb.push(" AND r.environment = ").push_bind(e.to_owned());
        }
        qb.push(" ORDER BY r.service, r.environment");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RunningVersion {
                    service: r.try_get("service")?,
                    environment: r.try_get("environment")?,
                    env_tier: opt_tier(r, "env_tier")?,
                    region: r.try_get("region")?,
                    version: r.try_get("version")?,
                    deployment_id: uuid_col(r, "id")?,
                    commit_sha: r.try_get("commit_sha")?,
                    artifact_digest: r.try_get("artifact_digest")?,
                    deployed_at: opt_ts(r, "finished_at")?
                        .map_or_else(|| ts(r, "started_at"), Ok)?,
                    deployer: r.try_get("deployer")?,
                })
            })
            .collect()
    }

    async fn list_releases(
        &self,
        tenant: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Release>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT service, version, commit_sha, artifact_digest, first_seen_at FROM releases WHERE tenant = ",
        );
        qb.push_bind(tenant.to_owned());
        if let Some(s) = service {
            qb.push(" AND service = ").push_bind(s.to_owned());
        }
        qb.push(" ORDER BY first_seen_at DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 1000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Release {
                    service: r.try_get("service")?,
                    version: r.try_get("version")?,
                    commit_sha: r.try_get("commit_sha")?,
                    artifact_digest: r.try_get("artifact_digest")?,
                    first_seen_at: ts(r, "first_seen_at")?,
                })
            })
            .collect()
    }
}
