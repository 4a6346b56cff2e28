//! Who a name refers to. Separation of duties compares people, not strings: `" Dev-A "`,
//! `dev-a` and `dev-a@acme.com` (when that is dev-a's email) are one person. Every rule that
//! asks "is this the same person?" goes through [`Identities`], built from the tenant's
//! [`Person`] directory.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// A person who can be an approver: the subject of their tokens (and, later, their SSO id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The normal form of an identity string: trimmed and case-folded. A `mailto:` prefix is
/// dropped. Empty after normalisation means "nobody".
pub fn normalize(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix("mailto:")
        .or_else(|| t.strip_prefix("MAILTO:"))
        .unwrap_or(t);
    t.trim().to_lowercase()
}

/// Maps every known alias of a person (subject, email) to one canonical name (the normalised
/// subject). Names no person claims map to their own normal form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    alias: BTreeMap<String, String>,
}

impl Identities {
    /// From the tenant's people directory. A subject always wins over an email: a person whose
    /// email equals another person's subject cannot take over that subject.
    pub fn from_people(people: &[Person]) -> Self {
        let mut alias = BTreeMap::new();
        for p in people {
            if let Some(e) = p.email.as_deref() {
                let e = normalize(e);
                if !e.is_empty() {
                    alias.insert(e, normalize(&p.subject));
                }
            }
        }
        for p in people {
            let s = normalize(&p.subject);
            alias.insert(s.clone(), s);
        }
        Identities { alias }
    }

    /// The canonical name of `s`.
    pub fn canonical(&self, s: &str) -> String {
        let n = normalize(s);
        self.alias.get(&n).cloned().unwrap_or(n)
    }

    /// Whether `a` and `b` name the same person.
    pub fn same(&self, a: &str, b: &str) -> bool {
        let (a, b) = (self.canonical(a), self.canonical(b));
        !a.is_empty() && a == b
    }

    /// Whether `who` is one of `list`.
    pub fn among<'a>(&self, who: &str, list: impl IntoIterator<Item = &'a String>) -> bool {
        let w = self.canonical(who);
        !w.is_empty() && list.into_iter().any(|x| self.canonical(x) == w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn person(subject: &str, email: Option<&str>) -> Person {
        Person {
            subject: subject.into(),
            name: None,
            email: email.map(str::to_owned),
            created_at: from_micros(0),
        }
    }

    #[test]
    fn case_padding_and_email_name_one_person() {
        let ids = Identities::from_people(&[person("dev-a", Some("Dev.A@Acme.com"))]);
        assert!(ids.same(" Dev-A ", "dev-a"));
        assert!(ids.same("dev.a@acme.com", "DEV-A"));
        assert!(ids.same("mailto:dev.a@acme.com", "dev-a"));
        assert!(!ids.same("dev-b", "dev-a"));
        assert!(!ids.same("", " "));
    }

    #[test]
    fn an_email_cannot_take_over_another_subject() {
        let ids = Identities::from_people(&[person("a", Some("b")), person("b", None)]);
        assert_eq!(ids.canonical("b"), "b");
        assert!(!ids.same("a", "b"));
    }
}
