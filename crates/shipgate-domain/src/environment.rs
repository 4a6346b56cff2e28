//! The canonical environment taxonomy: messy labels (`prd`, `live`, `prod-eu-west-1`) become a
//! canonical name, an OpenTelemetry tier and a region. The raw label is always kept.
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::{EnvTier, ResolvedEnvironment};

static REGION: LazyLock<Regex> = LazyLock::new(|| {
    // AWS (eu-west-1, ap-southeast-2, us-gov-west-1), GCP (europe-west1, us-central1), Azure (westeurope is not matched: declare it).
    Regex::new(
        r"(?:^|[-_.])((?:[a-z]{2}(?:-gov)?-[a-z]+-\d{1,2})|(?:[a-z]+-[a-z]+\d{1,2}))(?:$|[-_.])",
    )
    .expect("static regex")
});
static LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9._/-]{0,127}$").expect("static regex"));

/// A label declared in configuration, mapped to exact values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentAlias {
    pub name: String,
    pub tier: Option<EnvTier>,
    pub region: Option<String>,
}

/// Rules for normalising environment labels. Built from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Taxonomy {
    /// Refuse labels whose tier cannot be recognised and that are not declared.
    pub strict: bool,
    /// Words that name a tier (`prd` -> production). Matched against each `-`, `_` or `.`
    /// separated part of a label.
    pub tier_words: BTreeMap<String, EnvTier>,
    /// Exact labels with fixed values (`westeurope-live` -> production-westeurope).
    pub aliases: BTreeMap<String, EnvironmentAlias>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        let mut tier_words = BTreeMap::new();
        for (w, t) in [
            ("production", EnvTier::Production),
            ("prod", EnvTier::Production),
            ("prd", EnvTier::Production),
            ("live", EnvTier::Production),
            ("prd1", EnvTier::Production),
            ("staging", EnvTier::Staging),
            ("stage", EnvTier::Staging),
            ("stg", EnvTier::Staging),
            ("preprod", EnvTier::Staging),
            ("pre-prod", EnvTier::Staging),
            ("uat", EnvTier::Staging),
            ("test", EnvTier::Test),
            ("testing", EnvTier::Test),
            ("tst", EnvTier::Test),
            ("qa", EnvTier::Test),
            ("sit", EnvTier::Test),
            ("ci", EnvTier::Test),
            ("development", EnvTier::Development),
            ("dev", EnvTier::Development),
            ("develop", EnvTier::Development),
            ("sandbox", EnvTier::Development),
            ("local", EnvTier::Development),
        ] {
            tier_words.insert(w.to_owned(), t);
        }
        Taxonomy {
            strict: false,
            tier_words,
            aliases: BTreeMap::new(),
        }
    }
}

/// Why a label could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    Invalid(String),
    Unknown(String),
}

impl Taxonomy {
    /// Normalises a label. `declared` looks up an environment declared ahead (by canonical name
    /// or label): its tier and region win, and in strict mode it is accepted even without a
    /// tier word.
    pub fn resolve(
        &self,
        raw: &str,
        declared: impl Fn(&str) -> Option<EnvironmentAlias>,
    ) -> Result<ResolvedEnvironment, EnvError> {
        let label = raw.trim().to_ascii_lowercase();
        if !LABEL.is_match(&label) {
            return Err(EnvError::Invalid(
                "must be 1-128 characters of a-z, 0-9, '.', '_', '/' or '-', starting with a letter or digit".into(),
            ));
        }
        if let Some(a) = self.aliases.get(&label) {
            return Ok(ResolvedEnvironment {
                name: a.name.clone(),
                raw: raw.to_owned(),
                tier: a.tier,
                region: a.region.clone(),
            });
        }
        let region = REGION.captures(&label).map(|c| c[1].to_owned());
        // Words with a separator in them ("pre-prod") are matched on the start of the label;
        // other tier words on each separated part. The word is replaced by the tier name.
        let mut tier = None;
        let mut canonical: Vec<String> = Vec::new();
        for (w, t) in &self.tier_words {
            if w.contains(['-', '_', '.']) && label.starts_with(w.as_str()) {
                tier = Some(*t);
                canonical.push(t.as_str().to_owned());
                canonical.extend(
                    label[w.len()..]
                        .split(['-', '_', '.'])
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
                break;
            }
        }
        if tier.is_none() {
            for p in label.split(['-', '_', '.']) {
                match (tier, self.tier_words.get(p)) {
                    (None, Some(t)) => {
                        tier = Some(*t);
                        canonical.push(t.as_str().to_owned());
                    }
                    _ => canonical.push(p.to_owned()),
                }
            }
        }
        let name = canonical.join("-");
        if let Some(d) = declared(&name).or_else(|| declared(&label)) {
            return Ok(ResolvedEnvironment {
                name: d.name,
                raw: raw.to_owned(),
                tier: d.tier.or(tier),
                region: d.region.or(region),
            });
        }
        if tier.is_none() && self.strict {
            return Err(EnvError::Unknown(format!(
                "'{raw}' is not a known environment: it names no tier ({}) and is not declared",
                EnvTier::expected()
            )));
        }
        Ok(ResolvedEnvironment {
            name,
            raw: raw.to_owned(),
            tier,
            region,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(label: &str) -> ResolvedEnvironment {
        Taxonomy::default()
            .resolve(label, |_| None)
            .expect("resolves")
    }

    #[test]
    fn messy_production_labels_share_a_tier() {
        for l in ["production", "prd", "live", "PROD", "prod"] {
            let e = r(l);
            assert_eq!(e.tier, Some(EnvTier::Production), "{l}");
            assert_eq!(e.name, "production", "{l}");
            assert_eq!(e.raw, l);
            assert_eq!(e.region, None);
        }
    }

    #[test]
    fn region_is_extracted_and_raw_kept() {
        let e = r("prod-eu-west-1");
        assert_eq!(e.tier, Some(EnvTier::Production));
        assert_eq!(e.region.as_deref(), Some("eu-west-1"));
        assert_eq!(e.name, "production-eu-west-1");
        assert_eq!(e.raw, "prod-eu-west-1");
        let g = r("stg-europe-west1");
        assert_eq!(g.tier, Some(EnvTier::Staging));
        assert_eq!(g.region.as_deref(), Some("europe-west1"));
        let u = r("us-east-2-live");
        assert_eq!(u.tier, Some(EnvTier::Production));
        assert_eq!(u.region.as_deref(), Some("us-east-2"));
    }

    #[test]
    fn other_tiers() {
        assert_eq!(r("qa").tier, Some(EnvTier::Test));
        assert_eq!(r("dev-feature-x").tier, Some(EnvTier::Development));
        assert_eq!(r("pre-prod").tier, Some(EnvTier::Staging));
        assert_eq!(r("blue").tier, None);
    }

    #[test]
    fn strict_mode_refuses_unknown_labels_but_accepts_declared() {
        let t = Taxonomy {
            strict: true,
            ..Taxonomy::default()
        };
        assert!(matches!(
            t.resolve("blue", |_| None),
            Err(EnvError::Unknown(_))
        ));
        let declared = |n: &str| {
            (n == "blue").then(|| EnvironmentAlias {
                name: "blue".into(),
                tier: Some(EnvTier::Staging),
                region: None,
            })
        };
        assert_eq!(
            t.resolve("Blue", declared).expect("declared").tier,
            Some(EnvTier::Staging)
        );
        assert!(t.resolve("prod", |_| None).is_ok());
    }

    #[test]
    fn aliases_win_and_bad_labels_are_refused() {
        let mut t = Taxonomy::default();
        t.aliases.insert(
            "westeurope-live".into(),
            EnvironmentAlias {
                name: "production-westeurope".into(),
                tier: Some(EnvTier::Production),
                region: Some("westeurope".into()),
            },
        );
        let e = t.resolve("WestEurope-Live", |_| None).expect("alias");
        assert_eq!(e.name, "production-westeurope");
        assert_eq!(e.region.as_deref(), Some("westeurope"));
        assert!(matches!(t.resolve("", |_| None), Err(EnvError::Invalid(_))));
        assert!(matches!(
            t.resolve("prod env", |_| None),
            Err(EnvError::Invalid(_))
        ));
    }
}
