//! ServiceNow and Jira: settings, and the write-back of shipgate's decisions. Write-back is an
//! outbox sink (like NATS and Kafka): a decision is written back at least once, in order, even
//! across an outage of the ITSM tool; a record the tool refuses (4xx) is logged and skipped so
//! that one bad ticket cannot stall the others.
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shipgate_domain::events::OutboxRow;
use shipgate_domain::integrations::itsm::{WriteBack, ticket_system, write_back};

pub use crate::settings::{ItsmSettings, ItsmTenant, JiraSettings, ServiceNowSettings};
use crate::sink::Sink;

/// Writes decisions back to one system, for every tenant that configures it.
pub struct WriteBackSink {
    system: &'static str,
    tenants: ItsmSettings,
    http: reqwest::Client,
    store: std::sync::Arc<dyn shipgate_store::Store>,
}

enum Outcome {
    Done,
    /// The tool refused the record: logged, skipped.
    Refused(String),
}

impl WriteBackSink {
    pub fn new(
        system: &'static str,
        tenants: &ItsmSettings,
        store: std::sync::Arc<dyn shipgate_store::Store>,
    ) -> Option<WriteBackSink> {
        let any = tenants.values().any(|t| match system {
            "servicenow" => t.servicenow.is_some(),
            _ => t.jira.is_some(),
        });
        any.then(|| WriteBackSink {
            system,
            tenants: tenants.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            store,
        })
    }

    fn auth(
        r: reqwest::RequestBuilder,
        user: &Option<String>,
        secret: &Option<SecretString>,
    ) -> reqwest::RequestBuilder {
        match (user, secret) {
            (Some(u), Some(p)) => r.basic_auth(u, Some(p.expose_secret())),
            _ => r,
        }
    }

    async fn check(r: reqwest::Response) -> anyhow::Result<Result<Value, String>> {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        // Outages, throttling and credential problems are retried (the decision waits in the
        // outbox); only a refusal of the record itself is skipped.
        if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 407 | 429) {
            anyhow::bail!("{status}: {body}");
        }
        if !status.is_success() {
            return Ok(Err(format!("{status}: {body}")));
        }
        Ok(Ok(body))
    }

    async fn servicenow(&self, s: &ServiceNowSettings, w: &WriteBack) -> anyhow::Result<Outcome> {
        let base = s.instance_url.trim_end_matches('/');
        let q = self
            .http
            .get(format!("{base}/api/now/table/change_request"))
            .query(&[
                ("sysparm_query", format!("number={}", w.ticket)),
                ("sysparm_fields", "sys_id,number".into()),
                ("sysparm_limit", "1".into()),
            ]);
        let found = match Self::check(Self::auth(q, &s.username, &s.password).send().await?).await?
        {
            Ok(v) => v,
            Err(e) => return Ok(Outcome::Refused(e)),
        };
        let Some(sys_id) = found.pointer("/result/0/sys_id").and_then(Value::as_str) else {
            return Ok(Outcome::Refused(format!("no change_request {}", w.ticket)));
        };
        let mut body = serde_json::Map::new();
        body.insert(
            s.approval_field.clone(),
            json!(if w.approved {
                &s.approved_value
            } else {
                &s.rejected_value
            }),
        );
        body.insert(s.comment_field.clone(), json!(w.comment));
        let p = self
            .http
            .patch(format!("{base}/api/now/table/change_request/{sys_id}"))
            .json(&body);
        Ok(
            match Self::check(Self::auth(p, &s.username, &s.password).send().await?).await? {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::Refused(e),
            },
        )
    }

    async fn jira(&self, j: &JiraSettings, w: &WriteBack) -> anyhow::Result<Outcome> {
        let base = j.base_url.trim_end_matches('/');
        let want = if w.approved {
            &j.approve_transition
        } else {
            &j.reject_transition
        };
        let q = self
            .http
            .get(format!("{base}/rest/api/2/issue/{}/transitions", w.ticket));
        let list = match Self::check(Self::auth(q, &j.username, &j.api_token).send().await?).await?
        {
            Ok(v) => v,
            Err(e) => return Ok(Outcome::Refused(e)),
        };
        let id = list["transitions"].as_array().and_then(|t| {
            t.iter().find_map(|x| {
                let name = x["name"].as_str().unwrap_or("");
                let to = x.pointer("/to/name").and_then(Value::as_str).unwrap_or("");
                (name.eq_ignore_ascii_case(want) || to.eq_ignore_ascii_case(want))
                    .then(|| x["id"].as_str().map(str::to_owned))
                    .flatten()
            })
        });
        let comment = json!({"comment": [{"add": {"body": w.comment}}]});
        let (url, body) = match &id {
            Some(id) => (
                format!("{base}/rest/api/2/issue/{}/transitions", w.ticket),
                json!({"transition": {"id": id}, "update": comment}),
            ),
            // The workflow has no such transition: the decision is still recorded as a comment.
            None => (
                format!("{base}/rest/api/2/issue/{}/comment", w.ticket),
                json!({"body": format!("{} (no '{want}' transition is available)", w.comment)}),
            ),
        };
        let p = self.http.post(url).json(&body);
        Ok(
            match Self::check(Self::auth(p, &j.username, &j.api_token).send().await?).await? {
                Ok(_) if id.is_some() => Outcome::Done,
                Ok(_) => Outcome::Refused(format!("no '{want}' transition for {}", w.ticket)),
                Err(e) => Outcome::Refused(e),
            },
        )
    }
}

#[async_trait::async_trait]
impl Sink for WriteBackSink {
    fn name(&self) -> &'static str {
        self.system
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn publish(&mut self, rows: &[OutboxRow]) -> (usize, Option<anyhow::Error>) {
        for (i, row) in rows.iter().enumerate() {
            let Some(w) = write_back(row) else { continue };
            if ticket_system(&w.ticket) != Some(self.system) {
                continue;
            }
            let Some(t) = self.tenants.get(&w.tenant) else {
                continue;
            };
            // Only changes opened from this system's own records are written back: a change
            // that merely names a ticket does not act on it.
            match self
                .store
                .delivery_created(self.system, &w.tenant, &w.change)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return (i, Some(anyhow::anyhow!("{e:?}"))),
            }
            let r = match (self.system, &t.servicenow, &t.jira) {
                ("servicenow", Some(s), _) => self.servicenow(s, &w).await,
                ("jira", _, Some(j)) => self.jira(j, &w).await,
                _ => continue,
            };
            match r {
                Ok(Outcome::Done) => {
                    metrics::counter!("shipgate_writeback_total", "system" => self.system, "result" => "ok").increment(1);
                    tracing::info!(system = self.system, ticket = %w.ticket, change = %w.change, approved = w.approved, "decision written back");
                }
                Ok(Outcome::Refused(e)) => {
                    metrics::counter!("shipgate_writeback_total", "system" => self.system, "result" => "refused").increment(1);
                    tracing::error!(system = self.system, ticket = %w.ticket, change = %w.change, error = %e, "the tool refused the decision's write-back; skipped");
                }
                Err(e) => return (i, Some(e)),
            }
        }
        (rows.len(), None)
    }

    fn reset(&mut self) {}
}
