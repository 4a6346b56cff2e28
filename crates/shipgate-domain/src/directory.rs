//! Group membership kept in a company directory (LDAP): what a directory read says, and what it
//! changes in shipgate's approver groups and people. No IO: the server reads the directory and
//! writes the plan this module computes.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::approval::Group;
use crate::identity::Person;
use crate::time::Timestamp;

/// A person's entry in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub dn: String,
    /// The attribute shipgate knows the person by (e.g. `uid`): their subject.
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A group entry: its name and its raw member values (DNs for `member`/`uniqueMember`, bare
/// user ids for `memberUid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryGroup {
    pub dn: String,
    pub name: String,
    pub members: Vec<String>,
}

/// One read of the directory.
#[derive(Debug, Clone, Default)]
pub struct DirectoryRead {
    pub users: Vec<DirectoryUser>,
    pub groups: Vec<DirectoryGroup>,
}

/// DNs compare case-insensitively and without the spaces after separators.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

impl DirectoryRead {
    /// Each group's members as subjects. A member value naming no known user entry is dropped
    /// (a service account, a nested group: nested groups are not followed).
    pub fn members(&self) -> BTreeMap<String, BTreeSet<String>> {
        let by_dn: HashMap<String, &DirectoryUser> = self
            .users
            .iter()
            .map(|u| (normalize_dn(&u.dn), u))
            .collect();
        let ids: HashMap<String, &DirectoryUser> = self
            .users
            .iter()
            .map(|u| (u.id.to_lowercase(), u))
            .collect();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for g in &self.groups {
            let set = out.entry(g.name.clone()).or_default();
            for m in &g.members {
                let user = if m.contains('=') {
                    by_dn.get(&normalize_dn(m))
                } else {
                    ids.get(&m.trim().to_lowercase())
                };
                if let Some(u) = user {
                    set.insert(u.id.clone());
                }
            }
        }
        out
    }

    /// Each subject's directory groups (for mapping groups to roles).
    pub fn groups_of(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in self.members() {
            for m in members {
                out.entry(m).or_default().push(group.clone());
            }
        }
        out
    }
}

/// What one synchronisation writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncPlan {
    /// People the directory names that shipgate does not know yet.
    pub new_people: Vec<Person>,
    /// Approver groups whose members change (other settings kept).
    pub groups: Vec<Group>,
    /// For the audit entry: per group, who was added and who removed.
    pub changes: Vec<GroupChange>,
    /// Mapped directory groups the directory did not return; their shipgate groups are emptied.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    pub group: String,
    pub directory_group: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.new_people.is_empty() && self.groups.is_empty()
    }
}

/// Compares a directory read with shipgate's groups. `map` is directory group name -> shipgate
/// approver group. The directory is the source of truth for the mapped groups' members: a
/// mapped group the directory no longer has leaves its shipgate group with nobody (default
/// deny), and backups, scope and description set in shipgate are kept.
pub fn plan_sync(
    read: &DirectoryRead,
    map: &BTreeMap<String, String>,
    existing: &[Group],
    people: &[Person],
    now: Timestamp,
) -> SyncPlan {
    let members = read.members();
    let known: BTreeSet<&str> = people.iter().map(|p| p.subject.as_str()).collect();
    let mut plan = SyncPlan::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (dir_group, sg_group) in map {
        let want: BTreeSet<String> = match members.get(dir_group) {
            Some(m) => m.clone(),
            None => {
                plan.missing.push(dir_group.clone());
                BTreeSet::new()
            }
        };
        let current = existing.iter().find(|g| &g.name == sg_group);
        let have: BTreeSet<String> = current
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default();
        wanted.extend(want.iter().cloned());
        if current.is_some() && have == want {
            continue;
        }
        let mut g = current.cloned().unwrap_or_else(|| Group {
            name: sg_group.clone(),
            description: Some(format!("members from directory group {dir_group}")),
            members: Vec::new(),
            backups: Vec::new(),
            department: None,
            regions: Vec::new(),
            compliance: Vec::new(),
        });
        g.members = want.iter().cloned().collect();
        plan.changes.push(GroupChange {
            group: sg_group.clone(),
            directory_group: dir_group.clone(),
            added: want.difference(&have).cloned().collect(),
            removed: have.difference(&want).cloned().collect(),
        });
        plan.groups.push(g);
    }
    for u in &read.users {
        if wanted.contains(&u.id) && !known.contains(u.id.as_str()) {
            plan.new_people.push(Person {
                subject: u.id.clone(),
                name: u.name.clone(),
                email: u.email.clone(),
                created_at: now,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> DirectoryUser {
        DirectoryUser {
            dn: format!("uid={id},ou=people,dc=example,dc=org"),
            id: id.into(),
            name: Some(id.to_uppercase()),
            email: None,
        }
    }

    fn read(groups: &[(&str, &[&str])]) -> DirectoryRead {
        DirectoryRead {
            users: vec![user("alice"), user("bob"), user("carol")],
            groups: groups
                .iter()
                .map(|(n, m)| DirectoryGroup {
                    dn: format!("cn={n},ou=groups,dc=example,dc=org"),
                    name: (*n).into(),
                    members: m.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid")
    }

    #[test]
    fn members_resolve_dns_case_insensitively_and_bare_ids() {
        let r = read(&[(
            "cab",
            &[
                "UID=alice, OU=People,dc=example,dc=org",
                "bob",
                "cn=nested,ou=groups,dc=example,dc=org",
            ],
        )]);
        let m = r.members();
        assert_eq!(
            m["cab"].iter().cloned().collect::<Vec<_>>(),
            vec!["alice", "bob"]
        );
        assert_eq!(r.groups_of()["alice"], vec!["cab".to_owned()]);
    }

    #[test]
    fn plan_changes_only_what_differs_and_keeps_group_settings() {
        let map: BTreeMap<String, String> = [("cab".to_owned(), "change-board".to_owned())].into();
        let existing = vec![Group {
            name: "change-board".into(),
            description: None,
            members: vec!["alice".into(), "carol".into()],
            backups: vec!["dave".into()],
            department: Some("payments".into()),
            regions: vec![],
            compliance: vec![],
        }];
        let people = vec![Person {
            subject: "alice".into(),
            name: None,
            email: None,
            created_at: now(),
        }];
        let r = read(&[("cab", &["uid=alice,ou=people,dc=example,dc=org", "bob"])]);
        let plan = plan_sync(&r, &map, &existing, &people, now());
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].members, vec!["alice", "bob"]);
        assert_eq!(plan.groups[0].backups, vec!["dave"]);
        assert_eq!(plan.groups[0].department.as_deref(), Some("payments"));
        assert_eq!(plan.changes[0].added, vec!["bob"]);
        assert_eq!(plan.changes[0].removed, vec!["carol"]);
        assert_eq!(plan.new_people.len(), 1);
        assert_eq!(plan.new_people[0].subject, "bob");
        // The same read again, once applied, changes nothing.
        let plan2 = plan_sync(&r, &map, &plan.groups, &people, now());
        assert!(plan2.groups.is_empty());
    }

    #[test]
    fn a_vanished_directory_group_empties_its_shipgate_group() {
        let map: BTreeMap<String, String> = [("cab".to_owned(), "cab".to_owned())].into();
        let existing = vec![Group {
            name: "cab".into(),
            description: None,
            members: vec!["alice".into()],
            backups: vec![],
            department: None,
            regions: vec![],
            compliance: vec![],
        }];
        let plan = plan_sync(&read(&[]), &map, &existing, &[], now());
        assert_eq!(plan.missing, vec!["cab"]);
        assert!(plan.groups[0].members.is_empty());
    }
}
