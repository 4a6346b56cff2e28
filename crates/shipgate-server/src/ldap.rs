//! Group membership from an LDAP directory. Every `refresh_secs` shipgate reads the users and
//! groups under the configured base DNs (paged searches), then:
//! - replaces the members of each mapped approver group with the directory's members (new
//!   people are added; shipgate-side settings such as backups and scope are kept), in one
//!   audited transaction, only when something changed;
//! - keeps each person's directory groups in memory, so that SSO callers get the roles that
//!   `oidc.role_map` gives those groups.
//!
//! When the directory cannot be read, the last synchronised membership stays in force (it is in
//! the store) and the failure is logged and counted; nobody gains anything from an outage.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use secrecy::ExposeSecret;
use shipgate_domain::directory::{DirectoryGroup, DirectoryRead, DirectoryUser, plan_sync};
use tokio::task::JoinHandle;

use crate::service::App;
pub use crate::settings::LdapSettings;

struct Snapshot {
    groups_of: HashMap<String, Vec<String>>,
    read_at: std::time::Instant,
}

/// The directory as last read.
pub struct Directory {
    settings: LdapSettings,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

fn attr<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn first(e: &SearchEntry, name: &str) -> Option<String> {
    attr(e, name).and_then(|v| v.first().cloned())
}

impl Directory {
    pub fn new(settings: &LdapSettings) -> anyhow::Result<Option<Directory>> {
        settings.validate()?;
        if settings.url.is_none() {
            return Ok(None);
        }
        Ok(Some(Directory {
            settings: settings.clone(),
            snapshot: RwLock::new(None),
        }))
    }

    /// The directory groups of `subject` as of the last successful read.
    /// The directory groups of `subject` as of the last successful read. A read older than
    /// three refresh intervals counts for nothing: a revocation in the directory is not
    /// outlived by an outage (roles from directory groups lapse; approver groups in the store
    /// keep their last synchronised members).
    pub fn groups_of(&self, subject: &str) -> Vec<String> {
        let max_age = Duration::from_secs(self.settings.refresh_secs.max(1).saturating_mul(3));
        self.snapshot
            .read()
            .ok()
            .and_then(|s| {
                s.as_ref()
                    .filter(|s| s.read_at.elapsed() <= max_age)
                    .and_then(|s| s.groups_of.get(subject).cloned())
            })
            .unwrap_or_default()
    }

    async fn search(
        ldap: &mut ldap3::Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
    ) -> anyhow::Result<Vec<SearchEntry>> {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(500)),
        ];
        let mut stream = ldap
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await?;
        let mut out = Vec::new();
        while let Some(entry) = stream.next().await? {
            out.push(SearchEntry::construct(entry));
        }
        stream.finish().await.success()?;
        Ok(out)
    }

    /// Reads the users and groups once.
    pub async fn read(&self) -> anyhow::Result<DirectoryRead> {
        let s = &self.settings;
        let url = s.url.as_deref().unwrap_or_default();
        let timeout = Duration::from_secs(s.timeout_secs.max(1));
        let conn_settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(s.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout);
        if let (Some(dn), Some(pw)) = (&s.bind_dn, &s.bind_password) {
            ldap.simple_bind(dn, pw.expose_secret()).await?.success()?;
        }
        let user_attrs = vec![
            s.user_id_attribute.clone(),
            s.user_name_attribute.clone(),
            s.user_email_attribute.clone(),
        ];
        let users = Self::search(&mut ldap, &s.user_base_dn, &s.user_filter, user_attrs)
            .await?
            .into_iter()
            .filter_map(|e| {
                let id = first(&e, &s.user_id_attribute)?;
                Some(DirectoryUser {
                    name: first(&e, &s.user_name_attribute),
                    email: first(&e, &s.user_email_attribute),
                    dn: e.dn,
                    id,
                })
            })
            .collect();
        let mut group_attrs = vec![s.group_name_attribute.clone()];
        group_attrs.extend(s.member_attributes.iter().cloned());
        let groups = Self::search(&mut ldap, &s.group_base_dn, &s.group_filter, group_attrs)
            .await?
            .into_iter()
            .filter_map(|e| {
                let name = first(&e, &s.group_name_attribute)?;
                let members = s
                    .member_attributes
                    .iter()
                    .filter_map(|a| attr(&e, a))
                    .flatten()
                    .cloned()
                    .collect();
                Some(DirectoryGroup {
                    dn: e.dn,
                    name,
                    members,
                })
            })
            .collect();
        let _ = ldap.unbind().await;
        Ok(DirectoryRead { users, groups })
    }

    /// One synchronisation: read the directory, write what changed.
    pub async fn sync(&self, state: &App) -> anyhow::Result<usize> {
        let read = self.read().await?;
        // Roles follow the directory as soon as it is read, whatever happens to the store write.
        if let Ok(mut g) = self.snapshot.write() {
            *g = Some(Arc::new(Snapshot {
                groups_of: read.groups_of(),
                read_at: std::time::Instant::now(),
            }));
        }
        let tenant = &self.settings.tenant;
        let groups = state.store.list_groups(tenant).await?;
        let people = state.store.list_people(tenant).await?;
        let now = state.clock.now();
        let plan = plan_sync(&read, &self.settings.group_map, &groups, &people, now);
        for missing in &plan.missing {
            tracing::warn!(group = %missing, "a mapped directory group was not found: its shipgate group has no members");
        }
        let changed = plan.groups.len();
        state
            .store
            .apply_directory_sync(tenant, &plan, "directory", now)
            .await?;
        if changed > 0 {
            state.governance.forget(tenant);
            tracing::info!(groups = changed, "directory membership changes applied");
        }
        Ok(changed)
    }

    pub fn spawn(self: Arc<Self>, state: Arc<App>) -> JoinHandle<()> {
        let every = Duration::from_secs(self.settings.refresh_secs.max(1));
        tokio::spawn(async move {
            loop {
                match self.sync(&state).await {
                    Ok(_) => metrics::counter!("shipgate_directory_syncs_total", "result" => "ok")
                        .increment(1),
                    Err(e) => {
                        metrics::counter!("shipgate_directory_syncs_total", "result" => "error")
                            .increment(1);
                        tracing::error!(error = %e, "directory sync failed; the last synchronised membership stays in force");
                    }
                }
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}
