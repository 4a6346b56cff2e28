//! The governance tables the audit chain covers, and how one of their rows is fingerprinted:
//! the image of a row is `{"table": T, column: value, ...}` over the stored columns (text as
//! stored, integers, booleans, nulls). Writers fingerprint the rows they wrote inside the
//! write transaction; the verifier recomputes every stored row's image and compares. Volatile
//! columns that change without an audit entry are left out, and say so here.

/// A column's stored type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
    Bool,
}

/// A governance table: its key column (besides `tenant`) and the columns its image covers.
pub struct TableSpec {
    pub table: &'static str,
    pub key: (&'static str, Ty),
    pub cols: &'static [(&'static str, Ty)],
}

use Ty::*;

/// Every governance table. `gate_calls` is a log of questions, not a decision (final answers
/// are audited as `gate.decided`); `api_tokens.last_used_at` is an observation, updated at
/// most every five minutes without an entry, and is left out of the image.
pub const GOVERNANCE_TABLES: &[TableSpec] = &[
    TableSpec {
        table: "people",
        key: ("subject", Text),
        cols: &[("name", Text), ("email", Text), ("created_at", Int)],
    },
    TableSpec {
        table: "approver_groups",
        key: ("name", Text),
        cols: &[("body", Text), ("updated_at", Int)],
    },
    TableSpec {
        table: "policies",
        key: ("version", Int),
        cols: &[
            ("hash", Text),
            ("text", Text),
            ("pushed_by", Text),
            ("pushed_at", Int),
        ],
    },
    TableSpec {
        table: "changes",
        key: ("id", Text),
        cols: &[
            ("number", Int),
            ("change_key", Text),
            ("change_type", Text),
            ("status", Text),
            ("requester", Text),
            ("team", Text),
            ("revision", Int),
            ("rework_count", Int),
            ("policy_hash", Text),
            ("policy_version", Int),
            ("spec", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("decided_at", Int),
            ("review_due_at", Int),
            ("reviewed_at", Int),
            ("review_escalated_at", Int),
            ("escalated_at", Int),
        ],
    },
    TableSpec {
        table: "change_decisions",
        key: ("id", Text),
        cols: &[
            ("change_id", Text),
            ("revision", Int),
            ("kind", Text),
            ("actor", Text),
            ("on_behalf_of", Text),
            ("group_name", Text),
            ("comment", Text),
            ("self_approval", Bool),
            ("policy_hash", Text),
            ("at", Int),
        ],
    },
    TableSpec {
        table: "change_evidence",
        key: ("id", Text),
        cols: &[
            ("change_id", Text),
            ("kind", Text),
            ("name", Text),
            ("digest", Text),
            ("uri", Text),
            ("metadata", Text),
            ("added_by", Text),
            ("added_at", Int),
        ],
    },
    TableSpec {
        table: "root_cause_reviews",
        key: ("id", Text),
        cols: &[
            ("team", Text),
            ("month", Text),
            ("changes", Text),
            ("opened_at", Int),
        ],
    },
    TableSpec {
        table: "delegations",
        key: ("id", Text),
        cols: &[
            ("from_subject", Text),
            ("to_subject", Text),
            ("group_name", Text),
            ("starts_at", Int),
            ("ends_at", Int),
            ("reason", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("revoked_at", Int),
        ],
    },
    TableSpec {
        table: "api_tokens",
        key: ("id", Text),
        cols: &[
            ("subject", Text),
            ("role", Text),
            ("root", Bool),
            ("token_hash", Text),
            ("created_at", Int),
            ("revoked_at", Int),
            ("expires_at", Int),
            ("env_tier", Text),
            ("created_by", Text),
            ("confirmed_by", Text),
        ],
    },
    TableSpec {
        table: "access_reviews",
        key: ("id", Text),
        cols: &[
            ("period", Text),
            ("reviewer", Text),
            ("items", Text),
            ("completed_at", Int),
        ],
    },
];

pub fn spec(table: &str) -> Option<&'static TableSpec> {
    GOVERNANCE_TABLES.iter().find(|t| t.table == table)
}

impl TableSpec {
    /// Every row of the table with its tenant, in key order.
    pub fn select_all(&self) -> String {
        format!(
            "SELECT tenant, {} FROM {} ORDER BY tenant, {}",
            self.select_list(),
            self.table,
            self.key.0
        )
    }

    /// `key, col1, col2, ...` for a SELECT.
    pub fn select_list(&self) -> String {
        std::iter::once(self.key.0)
            .chain(self.cols.iter().map(|(c, _)| *c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
