//! The approval policy: a versioned TOML file of rules. Each rule matches changes (type,
//! environment tier, criticality, region, compliance tags, risk, artifact facts) and yields the
//! approver groups with their quorums, the evidence and fields required, how long an approval
//! stays valid and the response SLA. Every decision records the SHA-256 of the policy text.
//!
//! ```toml
//! [defaults]
//! validity = "24h"
//! sla = "8h"
//!
//! [[rule]]
//! name = "production-peer-review"
//! approvals = [{ group = "cab", quorum = 2 }, { group = "service-owners" }]
//! evidence = ["security_scan"]
//! required_fields = ["rollback_plan", "impact"]
//! validity = "4h"
//! [rule.match]
//! env_tier = ["production"]
//! change_type = ["normal"]
//! ```
//!
//! Every number in a policy has bounds, checked when the file is parsed (so a policy outside
//! them is refused on push, and one already stored that is outside them does not load: the
//! gate answers `error`, fail closed):
//!
//! | setting | bounds |
//! |---|---|
//! | `quorum` | 1 to [`MAX_QUORUM`] (50) |
//! | every duration (`validity`, `sla`, `review_within`, `cooling_off`) | [`MIN_DURATION`] (1s) to [`MAX_DURATION`] (366 days) |
//! | `emergency.monthly_threshold` | 0 to [`MAX_MONTHLY_THRESHOLD`] (1000) |
//! | rules | at most [`MAX_RULES`] (500) |
//! | `approvals` per rule | at most [`MAX_APPROVALS_PER_RULE`] (20) |
//! | `small_team` entries | at most [`MAX_SMALL_TEAMS`] (100) |
//! | every other list (`evidence`, `required_fields`, each `match` list...) | at most [`MAX_LIST`] (256) entries |
//! | names (rules, groups, list entries) | at most [`MAX_NAME_CHARS`] (256) characters; descriptions [`MAX_DESCRIPTION_CHARS`] (2000) |
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::change::{ArtifactFlag, ChangeSpec, ChangeType, RiskLevel, SPEC_FIELDS};
use crate::model::{EnvTier, ResolvedEnvironment};

/// The largest quorum a group may be asked for.
pub const MAX_QUORUM: u32 = 50;
/// The shortest duration a policy may set.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// The longest duration a policy may set (366 days).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// The largest `emergency.monthly_threshold`.
pub const MAX_MONTHLY_THRESHOLD: u32 = 1000;
/// The most rules a policy may have.
pub const MAX_RULES: usize = 500;
/// The most approver groups one rule may require.
pub const MAX_APPROVALS_PER_RULE: usize = 20;
/// The most `small_team` entries.
pub const MAX_SMALL_TEAMS: usize = 100;
/// The most entries of any other list (evidence, required fields, each match dimension).
pub const MAX_LIST: usize = 256;
/// The longest name (rule, group, list entry), in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest rule description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    defaults: DefaultsFile,
    #[serde(default)]
    separation: Separation,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
    emergency: Option<EmergencyFile>,
    #[serde(default)]
    small_team: Vec<SmallTeamFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    validity: Option<String>,
    sla: Option<String>,
}

/// Separation-of-duties options beyond the rules that always hold (the requester never
/// approves, the deployer is never the only approval, one person counts once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Separation {
    /// The authors of the commits in a change may not approve it.
    #[serde(default)]
    pub authors_cannot_approve: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "match")]
    when: Match,
    #[serde(default)]
    approvals: Vec<GroupQuorumFile>,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    required_fields: Vec<String>,
    validity: Option<String>,
    sla: Option<String>,
    /// Pre-approved (standard) changes: approved on submission, and recorded as such.
    #[serde(default)]
    auto_approve: bool,
    /// Escalation path: when the SLA passes without the approvals, this group's members may
    /// approve for the groups still short of their quorum.
    escalate_to: Option<String>,
}

/// What a rule matches. Each listed dimension must match (any of its values); an empty list
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub change_type: Vec<ChangeType>,
    #[serde(default)]
    pub env_tier: Vec<EnvTier>,
    #[serde(default)]
    pub environment: Vec<String>,
    #[serde(default)]
    pub region: Vec<String>,
    #[serde(default)]
    pub service: Vec<String>,
    #[serde(default)]
    pub criticality: Vec<String>,
    /// Any of these compliance tags on the change.
    #[serde(default)]
    pub compliance: Vec<String>,
    #[serde(default)]
    pub risk: Vec<RiskLevel>,
    /// Any of these artifact facts.
    #[serde(default)]
    pub artifact: Vec<ArtifactFlag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupQuorum {
    pub group: String,
    #[serde(default = "one")]
    pub quorum: u32,
}

fn one() -> u32 {
    1
}

/// A group and quorum as written in the file: the quorum is read wide and range-checked, so
/// that an out-of-range value is refused naming its setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupQuorumFile {
    group: String,
    #[serde(default)]
    quorum: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyFile {
    /// Members of this group may open emergency changes.
    group: String,
    incident_commanders: String,
    system_owners: String,
    #[serde(default)]
    review_within: Option<String>,
    #[serde(default)]
    validity: Option<String>,
    /// Emergency changes per team per calendar month before a root-cause review opens.
    #[serde(default)]
    monthly_threshold: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmallTeamFile {
    #[serde(default)]
    env_tier: Vec<EnvTier>,
    #[serde(default)]
    environment: Vec<String>,
    cooling_off: String,
    #[serde(default)]
    review_within: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rule {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub when: Match,
    pub approvals: Vec<GroupQuorum>,
    pub evidence: Vec<String>,
    pub required_fields: Vec<String>,
    #[schema(value_type = Option<u64>)]
    #[serde(with = "opt_secs")]
    pub validity: Option<Duration>,
    #[schema(value_type = Option<u64>)]
    #[serde(with = "opt_secs")]
    pub sla: Option<Duration>,
    pub auto_approve: bool,
    pub escalate_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EmergencyPolicy {
    pub group: String,
    pub incident_commanders: String,
    pub system_owners: String,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub review_within: Duration,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub validity: Duration,
    pub monthly_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SmallTeam {
    pub env_tier: Vec<EnvTier>,
    pub environment: Vec<String>,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub cooling_off: Duration,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub review_within: Duration,
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub separation: Separation,
    pub emergency: Option<EmergencyPolicy>,
    pub small_team: Vec<SmallTeam>,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub default_validity: Duration,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub default_sla: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyError {
    pub message: String,
    /// 1-based position of the fault in the file, when it has one.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The path of the offending setting (`rule[2].validity`).
    pub path: Option<String>,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn duration(text: &str, path: &str, v: &str) -> Result<Duration, PolicyError> {
    let _ = text;
    let d = humantime::parse_duration(v).map_err(|e| PolicyError {
        message: format!("{path}: '{v}' is not a duration like \"30m\", \"4h\" or \"2d\": {e}"),
        line: None,
        column: None,
        path: Some(path.to_owned()),
    })?;
    if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
        return Err(err(
            path.to_owned(),
            format!(
                "'{v}' is out of range: a duration from {}s to {} days",
                MIN_DURATION.as_secs(),
                MAX_DURATION.as_secs() / 86_400
            ),
        ));
    }
    Ok(d)
}

/// Refuses a list longer than `max`.
fn list_len<T>(path: String, list: &[T], max: usize) -> Result<(), PolicyError> {
    if list.len() > max {
        return Err(err(
            path,
            format!("has {} entries; at most {max}", list.len()),
        ));
    }
    Ok(())
}

/// Refuses a list with an entry longer than [`MAX_NAME_CHARS`].
fn names(path: &str, list: &[String]) -> Result<(), PolicyError> {
    list_len(path.to_owned(), list, MAX_LIST)?;
    for (i, n) in list.iter().enumerate() {
        name_len(format!("{path}[{i}]"), n)?;
    }
    Ok(())
}

fn name_len(path: String, n: &str) -> Result<(), PolicyError> {
    if n.chars().count() > MAX_NAME_CHARS {
        return Err(err(path, format!("at most {MAX_NAME_CHARS} characters")));
    }
    Ok(())
}

/// Checks the length of every list of a `match` table.
fn match_lists(p: &str, m: &Match) -> Result<(), PolicyError> {
    list_len(format!("{p}.change_type"), &m.change_type, MAX_LIST)?;
    list_len(format!("{p}.env_tier"), &m.env_tier, MAX_LIST)?;
    names(&format!("{p}.environment"), &m.environment)?;
    names(&format!("{p}.region"), &m.region)?;
    names(&format!("{p}.service"), &m.service)?;
    names(&format!("{p}.criticality"), &m.criticality)?;
    names(&format!("{p}.compliance"), &m.compliance)?;
    list_len(format!("{p}.risk"), &m.risk, MAX_LIST)?;
    list_len(format!("{p}.artifact"), &m.artifact, MAX_LIST)?;
    Ok(())
}

fn err(path: String, message: String) -> PolicyError {
    PolicyError {
        message: format!("{path}: {message}"),
        line: None,
        column: None,
        path: Some(path),
    }
}

/// A TOML syntax error, with its line and column.
fn syntax_error(text: &str, e: &toml::de::Error) -> PolicyError {
    let (line, column) = e
        .span()
        .map(|s| line_col(text, s.start))
        .map_or((None, None), |(l, c)| (Some(l), Some(c)));
    PolicyError {
        message: e.message().to_owned(),
        line,
        column,
        path: None,
    }
}

/// Checks and converts `rule[i]`; `rule_names` collects the names seen so far (each names
/// one rule).
fn parse_rule(
    text: &str,
    i: usize,
    r: RuleFile,
    rule_names: &mut BTreeSet<String>,
) -> Result<Rule, PolicyError> {
    let p = format!("rule[{i}]");
    if r.name.trim().is_empty() {
        return Err(err(format!("{p}.name"), "must not be empty".into()));
    }
    name_len(format!("{p}.name"), &r.name)?;
    if !rule_names.insert(r.name.clone()) {
        return Err(err(
            format!("{p}.name"),
            format!("'{}' names two rules", r.name),
        ));
    }
    if let Some(d) = &r.description
        && d.chars().count() > MAX_DESCRIPTION_CHARS
    {
        return Err(err(
            format!("{p}.description"),
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    list_len(
        format!("{p}.approvals"),
        &r.approvals,
        MAX_APPROVALS_PER_RULE,
    )?;
    names(&format!("{p}.evidence"), &r.evidence)?;
    names(&format!("{p}.required_fields"), &r.required_fields)?;
    match_lists(&format!("{p}.match"), &r.when)?;
    if let Some(e) = &r.escalate_to {
        name_len(format!("{p}.escalate_to"), e)?;
    }
    let approvals = parse_approvals(&p, r.approvals)?;
    if r.auto_approve && !approvals.is_empty() {
        return Err(err(
            format!("{p}.auto_approve"),
            "a pre-approved rule cannot also require approvals".into(),
        ));
    }
    for (j, f) in r.required_fields.iter().enumerate() {
        if !SPEC_FIELDS.contains(&f.as_str()) {
            return Err(err(
                format!("{p}.required_fields[{j}]"),
                format!("'{f}' is not a change field ({})", SPEC_FIELDS.join(", ")),
            ));
        }
    }
    Ok(Rule {
        name: r.name,
        description: r.description,
        when: Match {
            compliance: r
                .when
                .compliance
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            ..r.when
        },
        approvals,
        evidence: r.evidence,
        required_fields: r.required_fields,
        validity: r
            .validity
            .as_deref()
            .map(|v| duration(text, &format!("{p}.validity"), v))
            .transpose()?,
        sla: r
            .sla
            .as_deref()
            .map(|v| duration(text, &format!("{p}.sla"), v))
            .transpose()?,
        auto_approve: r.auto_approve,
        escalate_to: r.escalate_to,
    })
}

/// A rule's approver groups (`p` is the rule's path): each named once, each quorum in range.
fn parse_approvals(p: &str, list: Vec<GroupQuorumFile>) -> Result<Vec<GroupQuorum>, PolicyError> {
    let mut groups = BTreeSet::new();
    let mut approvals = Vec::with_capacity(list.len());
    for (j, g) in list.into_iter().enumerate() {
        name_len(format!("{p}.approvals[{j}].group"), &g.group)?;
        let quorum = match g.quorum {
            None => one(),
            Some(q) => match u32::try_from(q) {
                Ok(q) if (1..=MAX_QUORUM).contains(&q) => q,
                _ => {
                    return Err(err(
                        format!("{p}.approvals[{j}].quorum"),
                        format!("{q} is out of range: must be at least 1 and at most {MAX_QUORUM}"),
                    ));
                }
            },
        };
        if !groups.insert(g.group.clone()) {
            return Err(err(
                format!("{p}.approvals[{j}].group"),
                format!("group '{}' is listed twice", g.group),
            ));
        }
        approvals.push(GroupQuorum {
            group: g.group,
            quorum,
        });
    }
    Ok(approvals)
}

fn parse_emergency(text: &str, e: EmergencyFile) -> Result<EmergencyPolicy, PolicyError> {
    name_len("emergency.group".into(), &e.group)?;
    name_len(
        "emergency.incident_commanders".into(),
        &e.incident_commanders,
    )?;
    name_len("emergency.system_owners".into(), &e.system_owners)?;
    let monthly_threshold = match e.monthly_threshold {
        None => 5,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= MAX_MONTHLY_THRESHOLD => n,
            _ => {
                return Err(err(
                    "emergency.monthly_threshold".into(),
                    format!("{n} is out of range: from 0 to {MAX_MONTHLY_THRESHOLD}"),
                ));
            }
        },
    };
    Ok(EmergencyPolicy {
        review_within: match &e.review_within {
            Some(v) => duration(text, "emergency.review_within", v)?,
            None => Duration::from_secs(24 * 3600),
        },
        validity: match &e.validity {
            Some(v) => duration(text, "emergency.validity", v)?,
            None => Duration::from_secs(4 * 3600),
        },
        monthly_threshold,
        group: e.group,
        incident_commanders: e.incident_commanders,
        system_owners: e.system_owners,
    })
}

fn parse_small_team(text: &str, i: usize, s: SmallTeamFile) -> Result<SmallTeam, PolicyError> {
    list_len(format!("small_team[{i}].env_tier"), &s.env_tier, MAX_LIST)?;
    names(&format!("small_team[{i}].environment"), &s.environment)?;
    Ok(SmallTeam {
        cooling_off: duration(
            text,
            &format!("small_team[{i}].cooling_off"),
            &s.cooling_off,
        )?,
        review_within: match &s.review_within {
            Some(v) => duration(text, &format!("small_team[{i}].review_within"), v)?,
            None => Duration::from_secs(24 * 3600),
        },
        env_tier: s.env_tier,
        environment: s.environment,
    })
}

impl Policy {
    /// Parses a policy file. Syntax errors carry their line and column.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let default_validity = match &file.defaults.validity {
            Some(v) => duration(text, "defaults.validity", v)?,
            None => Duration::from_secs(24 * 3600),
        };
        let default_sla = match &file.defaults.sla {
            Some(v) => duration(text, "defaults.sla", v)?,
            None => Duration::from_secs(8 * 3600),
        };
        list_len("rule".into(), &file.rules, MAX_RULES)?;
        list_len("small_team".into(), &file.small_team, MAX_SMALL_TEAMS)?;
        let mut rule_names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            rules.push(parse_rule(text, i, r, &mut rule_names)?);
        }
        let emergency = match file.emergency {
            None => None,
            Some(e) => Some(parse_emergency(text, e)?),
        };
        let mut small_team = Vec::new();
        for (i, s) in file.small_team.into_iter().enumerate() {
            small_team.push(parse_small_team(text, i, s)?);
        }
        Ok(Policy {
            rules,
            separation: file.separation,
            emergency,
            small_team,
            default_validity,
            default_sla,
        })
    }

    /// Whether the policy decides nothing: no rule and no emergency path (an empty file, or
    /// only comments, defaults or small-team settings). Such a file is not pushed as a new
    /// version: it would refuse every change.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.emergency.is_none()
    }

    /// Every approver group the policy names, with where it is named.
    pub fn group_references(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            for (j, g) in r.approvals.iter().enumerate() {
                out.entry(g.group.clone())
                    .or_insert_with(|| format!("rule[{i}].approvals[{j}].group"));
            }
            if let Some(e) = &r.escalate_to {
                out.entry(e.clone())
                    .or_insert_with(|| format!("rule[{i}].escalate_to"));
            }
        }
        if let Some(e) = &self.emergency {
            out.entry(e.group.clone())
                .or_insert_with(|| "emergency.group".into());
            out.entry(e.incident_commanders.clone())
                .or_insert_with(|| "emergency.incident_commanders".into());
            out.entry(e.system_owners.clone())
                .or_insert_with(|| "emergency.system_owners".into());
        }
        out
    }

    /// What the policy requires of `spec` for deployments to `env`.
    pub fn requirements(&self, spec: &ChangeSpec, env: &ResolvedEnvironment) -> Requirements {
        let matched: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.when.matches(spec, env))
            .collect();
        let mut approvals: BTreeMap<String, u32> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut evidence = BTreeSet::new();
        let mut fields = BTreeSet::new();
        for r in &matched {
            for g in &r.approvals {
                let q = approvals.entry(g.group.clone()).or_insert(0);
                if *q == 0 {
                    order.push(g.group.clone());
                }
                *q = (*q).max(g.quorum);
            }
            evidence.extend(r.evidence.iter().cloned());
            fields.extend(r.required_fields.iter().cloned());
        }
        let validity = matched
            .iter()
            .filter_map(|r| r.validity)
            .min()
            .unwrap_or(self.default_validity);
        let sla = matched
            .iter()
            .filter_map(|r| r.sla)
            .min()
            .unwrap_or(self.default_sla);
        let small_team = self
            .small_team
            .iter()
            .find(|s| {
                (s.env_tier.is_empty() || env.tier.is_some_and(|t| s.env_tier.contains(&t)))
                    && (s.environment.is_empty()
                        || s.environment
                            .iter()
                            .any(|n| *n == env.name || *n == env.raw))
            })
            .cloned();
        Requirements {
            environment: env.name.clone(),
            rules: matched.iter().map(|r| r.name.clone()).collect(),
            approvals: order
                .into_iter()
                .map(|g| GroupQuorum {
                    quorum: approvals[&g],
                    group: g,
                })
                .collect(),
            evidence: evidence.into_iter().collect(),
            required_fields: fields.into_iter().collect(),
            validity,
            sla,
            auto_approve: !matched.is_empty() && matched.iter().all(|r| r.auto_approve),
            escalate_to: matched.iter().find_map(|r| r.escalate_to.clone()),
            small_team,
        }
    }
}

impl Match {
    pub fn matches(&self, spec: &ChangeSpec, env: &ResolvedEnvironment) -> bool {
        fn any<T: PartialEq>(want: &[T], have: &[T]) -> bool {
            want.is_empty() || have.iter().any(|h| want.contains(h))
        }
        fn one<T: PartialEq>(want: &[T], have: Option<&T>) -> bool {
            want.is_empty() || have.is_some_and(|h| want.contains(h))
        }
        one(&self.change_type, Some(&spec.change_type))
            && one(&self.env_tier, env.tier.as_ref())
            && (self.environment.is_empty()
                || self
                    .environment
                    .iter()
                    .any(|n| *n == env.name || *n == env.raw))
            && one(&self.region, env.region.as_ref())
            && any(&self.service, &spec.services)
            && one(&self.criticality, spec.criticality.as_ref())
            && any(&self.compliance, &spec.compliance)
            && one(&self.risk, Some(&spec.risk))
            && any(&self.artifact, &spec.artifact_flags)
    }
}

/// What a change needs before deployments to one environment may go ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Requirements {
    pub environment: String,
    /// Names of the rules that matched. None matched means the policy does not cover the
    /// change, and the gate refuses it (fail closed).
    pub rules: Vec<String>,
    pub approvals: Vec<GroupQuorum>,
    pub evidence: Vec<String>,
    pub required_fields: Vec<String>,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub validity: Duration,
    #[schema(value_type = u64)]
    #[serde(with = "secs")]
    pub sla: Duration,
    pub auto_approve: bool,
    /// Who may approve once the SLA has passed (escalation path).
    pub escalate_to: Option<String>,
    pub small_team: Option<SmallTeam>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[defaults]
validity = "24h"

[[rule]]
name = "production"
approvals = [{ group = "cab", quorum = 2 }, { group = "owners" }]
evidence = ["security_scan"]
required_fields = ["rollback_plan"]
validity = "4h"
[rule.match]
env_tier = ["production"]
change_type = ["normal"]

[[rule]]
name = "eu-residency"
approvals = [{ group = "cio-eu" }, { group = "cab", quorum = 1 }]
[rule.match]
region = ["eu-west-1"]
compliance = ["gdpr"]

[[rule]]
name = "standard"
auto_approve = true
[rule.match]
change_type = ["standard"]
"#;

    fn spec(t: ChangeType) -> ChangeSpec {
        ChangeSpec {
            change_type: t,
            title: "t".into(),
            justification: None,
            impact: None,
            rollback_plan: None,
            window_start: None,
            window_end: None,
            services: vec!["checkout".into()],
            environments: vec![],
            artifact_digests: vec![],
            ticket: None,
            risk: RiskLevel::Medium,
            criticality: None,
            compliance: vec!["GDPR".into()],
            artifact_flags: vec![],
            authors: vec![],
            record_authors: vec![],
            team: None,
            incident_id: None,
            exploit_ref: None,
        }
    }

    fn env(tier: EnvTier, region: Option<&str>) -> ResolvedEnvironment {
        ResolvedEnvironment {
            name: "prod".into(),
            raw: "prod".into(),
            tier: Some(tier),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn rules_combine_into_the_strictest_requirements() {
        let p = Policy::parse(POLICY).unwrap();
        let r = p.requirements(
            &spec(ChangeType::Normal),
            &env(EnvTier::Production, Some("eu-west-1")),
        );
        assert_eq!(r.rules, vec!["production", "eu-residency"]);
        assert_eq!(
            r.approvals,
            vec![
                GroupQuorum {
                    group: "cab".into(),
                    quorum: 2
                },
                GroupQuorum {
                    group: "owners".into(),
                    quorum: 1
                },
                GroupQuorum {
                    group: "cio-eu".into(),
                    quorum: 1
                },
            ]
        );
        assert_eq!(r.validity, Duration::from_secs(4 * 3600));
        assert!(!r.auto_approve);
        let r = p.requirements(&spec(ChangeType::Standard), &env(EnvTier::Staging, None));
        assert!(r.auto_approve);
        let r = p.requirements(&spec(ChangeType::Normal), &env(EnvTier::Staging, None));
        assert!(r.rules.is_empty(), "nothing matches: the gate will refuse");
    }

    #[test]
    fn malformed_policies_name_line_and_column() {
        let e =
            Policy::parse("[[rule]]\nname = \"x\"\napprovals = [{ group = \"cab\", quorum = }]\n")
                .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.column.is_some());
        let e = Policy::parse("[[rule]]\nname = \"x\"\nvalidity = \"soon\"\n").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("rule[0].validity"));
        let e = Policy::parse("[[rule]]\nname = \"x\"\nfrobnicate = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "unknown keys are refused: {e}");
        let e =
            Policy::parse("[[rule]]\nname = \"x\"\napprovals = [{ group = \"a\", quorum = 0 }]\n")
                .unwrap_err();
        assert!(e.message.contains("quorum"));
    }

    fn refused_at(text: &str) -> String {
        Policy::parse(text)
            .expect_err(text)
            .path
            .unwrap_or_default()
    }

    #[test]
    fn every_number_in_a_policy_is_bounded() {
        // The quorum that made the gate allocate 34 GB, and anything above MAX_QUORUM.
        for q in ["4294967295", "4294967296", "51", "-1", "0"] {
            let text = format!(
                "[[rule]]\nname = \"x\"\napprovals = [{{ group = \"cab\", quorum = {q} }}]\n"
            );
            assert_eq!(refused_at(&text), "rule[0].approvals[0].quorum", "{q}");
        }
        let ok = Policy::parse(&format!(
            "[[rule]]\nname = \"x\"\napprovals = [{{ group = \"cab\", quorum = {MAX_QUORUM} }}]\n"
        ))
        .unwrap();
        assert_eq!(ok.rules[0].approvals[0].quorum, MAX_QUORUM);
        // Durations: from one second to 366 days, wherever they are set.
        for (text, path) in [
            ("[defaults]\nvalidity = \"1000000y\"\n", "defaults.validity"),
            ("[defaults]\nsla = \"367d\"\n", "defaults.sla"),
            ("[defaults]\nsla = \"500ms\"\n", "defaults.sla"),
            ("[defaults]\nsla = \"0s\"\n", "defaults.sla"),
            (
                "[[rule]]\nname = \"x\"\nvalidity = \"300000000000y\"\n",
                "rule[0].validity",
            ),
            ("[[rule]]\nname = \"x\"\nsla = \"9999d\"\n", "rule[0].sla"),
            (
                "[[small_team]]\ncooling_off = \"400d\"\n",
                "small_team[0].cooling_off",
            ),
            (
                "[[small_team]]\ncooling_off = \"1h\"\nreview_within = \"400d\"\n",
                "small_team[0].review_within",
            ),
            (
                "[emergency]\ngroup = \"a\"\nincident_commanders = \"b\"\nsystem_owners = \"c\"\nvalidity = \"1000y\"\n",
                "emergency.validity",
            ),
            (
                "[emergency]\ngroup = \"a\"\nincident_commanders = \"b\"\nsystem_owners = \"c\"\nreview_within = \"1000y\"\n",
                "emergency.review_within",
            ),
            (
                "[emergency]\ngroup = \"a\"\nincident_commanders = \"b\"\nsystem_owners = \"c\"\nmonthly_threshold = 4294967295\n",
                "emergency.monthly_threshold",
            ),
            (
                "[emergency]\ngroup = \"a\"\nincident_commanders = \"b\"\nsystem_owners = \"c\"\nmonthly_threshold = -3\n",
                "emergency.monthly_threshold",
            ),
        ] {
            assert_eq!(refused_at(text), path, "{text}");
        }
        let p = Policy::parse("[defaults]\nvalidity = \"366d\"\nsla = \"1s\"\n").unwrap();
        assert_eq!(p.default_validity, MAX_DURATION);
        assert_eq!(p.default_sla, MIN_DURATION);
        // Counts.
        let many: Vec<String> = (0..=MAX_APPROVALS_PER_RULE)
            .map(|i| format!("{{ group = \"g{i}\" }}"))
            .collect();
        let text = format!(
            "[[rule]]\nname = \"x\"\napprovals = [{}]\n",
            many.join(", ")
        );
        assert_eq!(refused_at(&text), "rule[0].approvals");
        let text: String = (0..=MAX_RULES)
            .map(|i| format!("[[rule]]\nname = \"r{i}\"\n"))
            .collect();
        assert_eq!(refused_at(&text), "rule");
        let text = format!(
            "[[rule]]\nname = \"x\"\n[rule.match]\nservice = [{}]\n",
            ["\"s\""; MAX_LIST + 1].join(",")
        );
        assert_eq!(refused_at(&text), "rule[0].match.service");
        let text = format!("[[rule]]\nname = \"{}\"\n", "n".repeat(MAX_NAME_CHARS + 1));
        assert_eq!(refused_at(&text), "rule[0].name");
    }

    #[test]
    fn a_policy_that_decides_nothing_is_empty() {
        for text in [
            "",
            "  \n# only a comment\n",
            "[defaults]\nvalidity = \"1h\"\n",
        ] {
            assert!(Policy::parse(text).unwrap().is_empty(), "{text:?}");
        }
        assert!(!Policy::parse(POLICY).unwrap().is_empty());
        let emergency_only =
            "[emergency]\ngroup = \"a\"\nincident_commanders = \"b\"\nsystem_owners = \"c\"\n";
        assert!(!Policy::parse(emergency_only).unwrap().is_empty());
    }
}
