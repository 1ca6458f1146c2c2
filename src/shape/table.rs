//! The compiled shaping configuration: rules (shipped, then the user's),
//! sources and pools. Immutable once built, `Send + Sync`, shared by every
//! shard behind an `Arc`; the changing state lives in [`super::Shaper`].
//!
//! Precedence, lowest first, field by field: ringmail.toml's
//! `default_destination_*` keys, `[default]`, the sending source's own
//! limits (`[[source]]`), `[[site]]` rules for the site, `[[domain]]` rules
//! for the recipient domain. Within each kind shipped rules come before the
//! user's, rules without `sources` before those for the source, and file
//! order after that; a later rule overwrites the fields it sets.

use std::path::PathBuf;

use super::feedback::AutomationRule;
use super::limits::{Limits, Provenance};
use super::rules::{Rule, RuleOrigin, RuleScope, RuleSet, RulesError};
use super::site::{self, MxPattern, Site, SiteKey};
use super::source::{compile_pools, MessageFacts, Pool, PoolRule, Source};
use crate::config::{domain_matches, Config};

/// Why a shaping table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// A rules file (shipped or the user's) is wrong.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// Sources or pools are inconsistent.
    #[error("{0}")]
    Config(String),
}

/// Everything shaping knows before any mail is sent.
#[derive(Debug)]
pub struct ShapingTable {
    base: Limits,
    rules: Vec<Rule>,
    sources: Vec<Source>,
    pools: Vec<Pool>,
    pool_rules: Vec<PoolRule>,
    default_pool: Option<usize>,
    user_file: Option<PathBuf>,
}

impl ShapingTable {
    /// The shipped rules, the user's `shaping_file` if set, and the
    /// sources and pools of `config`.
    pub fn from_config(config: &Config) -> Result<ShapingTable, ShapeError> {
        let user = config
            .shaping_file
            .as_deref()
            .map(RuleSet::load)
            .transpose()?;
        ShapingTable::new(config, RuleSet::shipped()?, user)
    }

    /// A table from explicit rule sets (tests, tools).
    pub fn new(
        config: &Config,
        shipped: RuleSet,
        user: Option<RuleSet>,
    ) -> Result<ShapingTable, ShapeError> {
        let mut rules = shipped.rules;
        rules.extend(user.map(|u| u.rules).unwrap_or_default());
        let sources = config
            .source
            .iter()
            .map(Source::from_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ShapeError::Config)?;
        for r in &rules {
            if let Some(unknown) = r
                .sources
                .iter()
                .find(|n| !sources.iter().any(|s| s.name.as_ref() == n.as_str()))
            {
                return Err(ShapeError::Config(format!(
                    "shaping rule {} names source {unknown:?}, which is no [[source]]",
                    r.label()
                )));
            }
        }
        let (pools, pool_rules) =
            compile_pools(&sources, &config.pool, &config.pool_rule).map_err(ShapeError::Config)?;
        let default_pool = pools.iter().position(|p| p.name.as_ref() == "default");
        Ok(ShapingTable {
            base: Limits::base(config),
            rules,
            sources,
            pools,
            pool_rules,
            default_pool,
            user_file: config.shaping_file.clone(),
        })
    }

    /// The user's rules file, if any.
    pub fn user_file(&self) -> Option<&std::path::Path> {
        self.user_file.as_deref()
    }

    /// Every rule, shipped first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The site of `domain` with these MX hosts (see [`super::site`]):
    /// user site rules are tried before shipped ones, so a user rule can
    /// split off part of a shipped site.
    pub fn site_for(&self, domain: &str, mx_hosts: &[&str]) -> Site {
        let ordered: Vec<(usize, &str, &[MxPattern])> = [true, false]
            .into_iter()
            .flat_map(|user| {
                self.rules
                    .iter()
                    .enumerate()
                    .filter(move |(_, r)| (r.origin != RuleOrigin::Shipped) == user)
            })
            .filter_map(|(i, r)| match &r.scope {
                RuleScope::Site { name, mx } if !mx.is_empty() => {
                    Some((i, name.as_str(), mx.as_slice()))
                }
                _ => None,
            })
            .collect();
        let mut s = site::site_for(domain, mx_hosts, ordered.iter().map(|(_, n, p)| (*n, *p)));
        if let site::SiteOrigin::Rule(k) = s.origin {
            s.origin = site::SiteOrigin::Rule(ordered[k].0);
        }
        s
    }

    /// The limits for mail to `domain` (if known) at `site`, sent from
    /// `source` (if any), each with its provenance; before automation.
    pub fn limits_for(&self, site: &SiteKey, domain: Option<&str>, source: Option<&str>) -> Limits {
        let mut limits = self.base.clone();
        let apply_kind = |limits: &mut Limits, wanted: &dyn Fn(&Rule) -> bool| {
            for specific in [false, true] {
                for r in &self.rules {
                    if wanted(r) && r.sources.is_empty() != specific && r.applies_to_source(source)
                    {
                        limits.apply(&r.limits, &Provenance::of_rule(r));
                    }
                }
            }
        };
        apply_kind(&mut limits, &|r| r.scope == RuleScope::Default);
        if let Some(s) = source.and_then(|n| self.source(n)) {
            let from = Provenance {
                layer: format!("source {}", s.name),
                detail: "ringmail.toml [[source]]".to_string(),
            };
            limits.apply(&s.limits, &from);
        }
        apply_kind(
            &mut limits,
            &|r| matches!(&r.scope, RuleScope::Site { name, .. } if name == site.as_str()),
        );
        if let Some(d) = domain {
            apply_kind(
                &mut limits,
                &|r| matches!(&r.scope, RuleScope::Domain { domains } if domains.iter().any(|p| domain_matches(p, d))),
            );
        }
        limits.settle();
        limits
    }

    /// The automation rules for `site`, in the order they are tried: the
    /// user's site rules, the shipped site rules, then `[default]`'s.
    pub fn automation_for<'a>(
        &'a self,
        site: &'a SiteKey,
    ) -> impl Iterator<Item = &'a AutomationRule> {
        let of_site = move |r: &&Rule| matches!(&r.scope, RuleScope::Site { name, .. } if name == site.as_str());
        let defaults = |r: &&Rule| r.scope == RuleScope::Default;
        let user_first = |rules: Vec<&'a Rule>| {
            let (user, shipped): (Vec<&Rule>, Vec<&Rule>) = rules
                .into_iter()
                .partition(|r| r.origin != RuleOrigin::Shipped);
            user.into_iter().chain(shipped)
        };
        let site_rules = user_first(self.rules.iter().filter(of_site).collect());
        let default_rules = user_first(self.rules.iter().filter(defaults).collect());
        site_rules
            .chain(default_rules)
            .flat_map(|r| r.automation.iter())
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name.as_ref() == name)
    }

    /// Every source, in configuration order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Every pool, in configuration order.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The index of the pool for a message: the first `[[pool_rule]]` that
    /// matches, else the pool named `default`, else `None` (no source:
    /// the system picks the local address).
    pub fn pool_for(&self, facts: &MessageFacts<'_>) -> Option<usize> {
        self.pool_rules
            .iter()
            .find(|r| r.matches(facts))
            .map(|r| r.pool)
            .or(self.default_pool)
    }
}
