//! Reply-driven automation, sans-IO: rules that match a receiver's reply
//! (code, enhanced code, text) and the per-site state they drive.
//!
//! Two actions exist:
//!
//! - **suspend**: no new connection or transaction to the site (for one
//!   source) until `duration` has passed; mail waits, it does not fail.
//!   A further match while suspended extends the suspension.
//! - **cut**: the site's connection limit and/or message rate are
//!   multiplied by a factor (rounded down, never below 1) and held there
//!   for `duration`; then every `restore_interval` the factor is
//!   multiplied by `restore_factor` until the configured value is back.
//!   A match during the hold only extends the hold (many connections see
//!   the same reply at once; one cut is enough); a match while restoring
//!   cuts again from the current value.
//!
//! Nothing here reads a clock: every call takes `now`. Every change comes
//! back as an [`Action`] whose `Display` is the log line.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use super::site::SiteKey;
use super::units::duration_text;
use crate::proto::{EnhancedCode, Reply};

/// The smallest factor a repeated cut goes down to.
const MIN_FACTOR: f64 = 1.0 / 1024.0;

/// What in a reply a rule looks at; every part given must match.
#[derive(Clone, Debug)]
pub struct ReplyMatcher {
    /// The reply code (`421`).
    pub code: Option<u16>,
    /// The enhanced status code (`4.7.28`).
    pub enhanced: Option<EnhancedCode>,
    /// A regular expression searched in the reply as logged: code,
    /// enhanced code, then the text (`421 4.7.0 [TSS04] Messages ...`).
    pub text: Option<Regex>,
}

impl ReplyMatcher {
    /// True when `reply` matches every part given (and at least one is).
    pub fn matches(&self, reply: &Reply) -> bool {
        if self.code.is_none() && self.enhanced.is_none() && self.text.is_none() {
            return false;
        }
        self.code.map_or(true, |c| c == reply.code)
            && self.enhanced.map_or(true, |e| reply.enhanced == Some(e))
            && self
                .text
                .as_ref()
                .map_or(true, |re| re.is_match(&reply.to_string()))
    }
}

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq)]
pub enum AutomationAction {
    /// Stop sending to the site for this long.
    Suspend {
        /// How long.
        duration: Duration,
    },
    /// Multiply limits by factors, hold, then restore step by step.
    Cut {
        /// Factor on `max_connections` (0 < f < 1), if cut.
        connections: Option<f64>,
        /// Factor on `message_rate` (0 < f < 1), if cut.
        message_rate: Option<f64>,
        /// How long the cut holds before restoring starts.
        hold: Duration,
        /// Time between restore steps.
        restore_interval: Duration,
        /// Factor applied at each step (> 1) until back to 1.
        restore_factor: f64,
    },
}

/// One automation rule: a matcher, an action, and a name for log lines.
#[derive(Clone, Debug)]
pub struct AutomationRule {
    /// `SITE#N` (N counts the site's automation entries from 1).
    pub id: Arc<str>,
    /// What it matches.
    pub matcher: ReplyMatcher,
    /// What it does.
    pub action: AutomationAction,
    /// Where the rule comes from (a URL), if given.
    pub reference: Option<String>,
}

/// A knob automation turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// `max_connections`.
    Connections,
    /// `message_rate`.
    MessageRate,
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Knob::Connections => "connection limit",
            Knob::MessageRate => "message rate",
        })
    }
}

/// Which site (and source) an action is about; also the key of per-site
/// state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathName {
    /// The site.
    pub site: SiteKey,
    /// The sending source, when one was used.
    pub source: Option<Arc<str>>,
}

impl fmt::Display for PathName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "site {}", self.site)?;
        if let Some(s) = &self.source {
            write!(f, " source {s}")?;
        }
        Ok(())
    }
}

/// A change made by automation; `Display` is its log line.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The site is suspended.
    Suspended {
        /// Site and source.
        path: PathName,
        /// For how long from now.
        duration: Duration,
        /// Until when.
        until: Instant,
        /// The rule's id.
        rule: Arc<str>,
        /// The reply, as logged.
        reply: String,
    },
    /// A limit was cut.
    Cut {
        /// Site and source.
        path: PathName,
        /// Which limit.
        knob: Knob,
        /// The value before (printed form).
        from: String,
        /// The value after (printed form).
        to: String,
        /// How long it holds before restoring.
        hold: Duration,
        /// The rule's id.
        rule: Arc<str>,
        /// The reply, as logged.
        reply: String,
    },
    /// A cut limit went up one step (or back to its configured value).
    Restored {
        /// Site and source.
        path: PathName,
        /// Which limit.
        knob: Knob,
        /// The value before.
        from: String,
        /// The value after.
        to: String,
        /// True when the configured value is back.
        complete: bool,
    },
    /// A suspension ended.
    Resumed {
        /// Site and source.
        path: PathName,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Suspended {
                path,
                duration,
                rule,
                reply,
                ..
            } => write!(
                f,
                "{path}: suspended for {} after {reply} (automation {rule})",
                duration_text(*duration)
            ),
            Action::Cut {
                path,
                knob,
                from,
                to,
                hold,
                rule,
                reply,
            } => write!(
                f,
                "{path}: {knob} {from} -> {to} for {} after {reply} (automation {rule})",
                duration_text(*hold)
            ),
            Action::Restored {
                path,
                knob,
                from,
                to,
                complete,
            } => {
                let how = if *complete { "restored" } else { "restoring" };
                write!(f, "{path}: {knob} {from} -> {to} ({how})")
            }
            Action::Resumed { path } => write!(f, "{path}: suspension over, sending again"),
        }
    }
}

/// The configured values automation scales, for the numbers in log lines.
#[derive(Clone, Copy, Debug)]
pub struct Configured {
    /// `max_connections` before automation.
    pub max_connections: u32,
    /// `message_rate` before automation (`None`: unlimited).
    pub message_rate: Option<crate::config::Rate>,
}

impl Configured {
    fn text(&self, knob: Knob, factor: f64) -> String {
        use super::units::{rate_text, scale, scale_rate};
        match knob {
            Knob::Connections => scale(self.max_connections, factor).to_string(),
            Knob::MessageRate => match self.message_rate {
                Some(r) => rate_text(scale_rate(r, factor)),
                None => "unlimited".to_string(),
            },
        }
    }
}

/// One limit's cut.
#[derive(Clone, Debug, PartialEq)]
struct Cut {
    factor: f64,
    hold_until: Instant,
    next_step: Instant,
    interval: Duration,
    restore_factor: f64,
}

/// Automation state of one site for one source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SiteFeedback {
    suspended_until: Option<Instant>,
    connections: Option<Cut>,
    message_rate: Option<Cut>,
}

impl SiteFeedback {
    /// True when nothing is in force (the state may be dropped).
    pub fn is_idle(&self) -> bool {
        self.suspended_until.is_none() && self.connections.is_none() && self.message_rate.is_none()
    }

    /// Until when the site is suspended, if it is at `now`.
    pub fn suspended_until(&self, now: Instant) -> Option<Instant> {
        self.suspended_until.filter(|&t| t > now)
    }

    /// Suspends the site until `until` (an administrator's `queue suspend`),
    /// or lifts a suspension (`None`: `queue resume`).
    pub fn set_suspended(&mut self, until: Option<Instant>) {
        self.suspended_until = until;
    }

    /// The factor in force on `knob` (1 when not cut).
    pub fn factor(&self, knob: Knob) -> f64 {
        self.cut(knob).map_or(1.0, |c| c.factor)
    }

    fn cut(&self, knob: Knob) -> Option<&Cut> {
        match knob {
            Knob::Connections => self.connections.as_ref(),
            Knob::MessageRate => self.message_rate.as_ref(),
        }
    }

    fn cut_mut(&mut self, knob: Knob) -> &mut Option<Cut> {
        match knob {
            Knob::Connections => &mut self.connections,
            Knob::MessageRate => &mut self.message_rate,
        }
    }

    /// Applies the first of `rules` that matches `reply`; returns what it
    /// did, or `None` when no rule matched or the match only extended a
    /// hold or a suspension already in force.
    pub fn on_reply<'a>(
        &mut self,
        path: &PathName,
        rules: impl IntoIterator<Item = &'a AutomationRule>,
        reply: &Reply,
        configured: Configured,
        now: Instant,
    ) -> Option<Vec<Action>> {
        let rule = rules.into_iter().find(|r| r.matcher.matches(reply))?;
        let logged = reply.to_string();
        match &rule.action {
            AutomationAction::Suspend { duration } => {
                let until = now + *duration;
                let was = self.suspended_until(now);
                self.suspended_until = Some(was.map_or(until, |w| w.max(until)));
                was.is_none().then(|| {
                    vec![Action::Suspended {
                        path: path.clone(),
                        duration: *duration,
                        until,
                        rule: Arc::clone(&rule.id),
                        reply: logged,
                    }]
                })
            }
            AutomationAction::Cut {
                connections,
                message_rate,
                hold,
                restore_interval,
                restore_factor,
            } => {
                let mut actions = Vec::new();
                for (knob, factor) in [
                    (Knob::Connections, connections),
                    (Knob::MessageRate, message_rate),
                ] {
                    let Some(factor) = *factor else { continue };
                    let before = self.factor(knob);
                    let hold_until = now + *hold;
                    let slot = self.cut_mut(knob);
                    match slot {
                        Some(c) if c.hold_until > now => {
                            c.hold_until = c.hold_until.max(hold_until);
                            c.next_step = c.hold_until;
                            continue;
                        }
                        _ => {}
                    }
                    let after = (before * factor).max(MIN_FACTOR);
                    *slot = Some(Cut {
                        factor: after,
                        hold_until,
                        next_step: hold_until,
                        interval: *restore_interval,
                        restore_factor: *restore_factor,
                    });
                    actions.push(Action::Cut {
                        path: path.clone(),
                        knob,
                        from: configured.text(knob, before),
                        to: configured.text(knob, after),
                        hold: *hold,
                        rule: Arc::clone(&rule.id),
                        reply: logged.clone(),
                    });
                }
                (!actions.is_empty()).then_some(actions)
            }
        }
    }

    /// Moves time to `now`: ends suspensions that are over and takes the
    /// restore steps that are due. Returns what changed.
    pub fn advance(
        &mut self,
        path: &PathName,
        configured: Configured,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.suspended_until.is_some_and(|t| t <= now) {
            self.suspended_until = None;
            actions.push(Action::Resumed { path: path.clone() });
        }
        for knob in [Knob::Connections, Knob::MessageRate] {
            let slot = self.cut_mut(knob);
            let Some(cut) = slot else { continue };
            let before = cut.factor;
            while cut.next_step <= now && cut.factor < 1.0 {
                cut.factor = (cut.factor * cut.restore_factor).min(1.0);
                cut.next_step += cut.interval;
            }
            let after = cut.factor;
            let complete = after >= 1.0;
            if complete {
                *slot = None;
            }
            let (from, to) = (configured.text(knob, before), configured.text(knob, after));
            if before < after && (from != to || complete) {
                actions.push(Action::Restored {
                    path: path.clone(),
                    knob,
                    from,
                    to,
                    complete,
                });
            }
        }
        actions
    }

    /// When the state next changes by itself (for a timer), if ever.
    pub fn next_change(&self) -> Option<Instant> {
        [
            self.suspended_until,
            self.connections.as_ref().map(|c| c.next_step),
            self.message_rate.as_ref().map(|c| c.next_step),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(code, vec![text.to_string()])
    }

    fn path() -> PathName {
        PathName {
            site: SiteKey::new("google"),
            source: None,
        }
    }

    fn configured() -> Configured {
        Configured {
            max_connections: 20,
            message_rate: Some(Rate {
                count: 100,
                per: Duration::from_secs(1),
            }),
        }
    }

    fn rule(id: &str, matcher: ReplyMatcher, action: AutomationAction) -> AutomationRule {
        AutomationRule {
            id: Arc::from(id),
            matcher,
            action,
            reference: None,
        }
    }

    fn suspend_rule() -> AutomationRule {
        rule(
            "google#1",
            ReplyMatcher {
                code: Some(421),
                enhanced: Some(EnhancedCode::new(4, 7, 28)),
                text: None,
            },
            AutomationAction::Suspend {
                duration: Duration::from_secs(3600),
            },
        )
    }

    fn cut_rule() -> AutomationRule {
        rule(
            "yahoo#1",
            ReplyMatcher {
                code: None,
                enhanced: None,
                text: Some(Regex::new(r"\[TSS04\]").unwrap()),
            },
            AutomationAction::Cut {
                connections: Some(0.5),
                message_rate: Some(0.25),
                hold: Duration::from_secs(1800),
                restore_interval: Duration::from_secs(600),
                restore_factor: 2.0,
            },
        )
    }

    #[test]
    fn matchers_need_every_part_given() {
        let m = suspend_rule().matcher;
        assert!(m.matches(&reply(
            421,
            "4.7.28 Our system has detected an unusual rate"
        )));
        assert!(!m.matches(&reply(421, "4.7.0 try later")));
        assert!(!m.matches(&reply(450, "4.7.28 x")));
        let text = cut_rule().matcher;
        assert!(text.matches(&reply(421, "4.7.0 [TSS04] Messages from 1.2.3.4 deferred")));
        // The text is matched against the logged form, code included.
        let full = ReplyMatcher {
            code: None,
            enhanced: None,
            text: Some(Regex::new(r"^421 4\.7\.0 \[TSS04\]").unwrap()),
        };
        assert!(full.matches(&reply(421, "4.7.0 [TSS04] Messages")));
        let empty = ReplyMatcher {
            code: None,
            enhanced: None,
            text: None,
        };
        assert!(
            !empty.matches(&reply(421, "x")),
            "an empty matcher matches nothing"
        );
    }

    #[test]
    fn suspend_then_expire() {
        let t0 = Instant::now();
        let mut fb = SiteFeedback::default();
        let r = reply(
            421,
            "4.7.28 Our system has detected an unusual rate of unsolicited mail",
        );
        let acts = fb
            .on_reply(&path(), [&suspend_rule()], &r, configured(), t0)
            .unwrap();
        assert_eq!(
            acts[0].to_string(),
            "site google: suspended for 1h after 421 4.7.28 Our system has detected an unusual \
             rate of unsolicited mail (automation google#1)"
        );
        assert_eq!(fb.suspended_until(t0), Some(t0 + Duration::from_secs(3600)));
        // A second match extends silently.
        let t1 = t0 + Duration::from_secs(600);
        assert!(fb
            .on_reply(&path(), [&suspend_rule()], &r, configured(), t1)
            .is_none());
        assert_eq!(fb.next_change(), Some(t1 + Duration::from_secs(3600)));
        assert!(fb
            .advance(&path(), configured(), t0 + Duration::from_secs(3600))
            .is_empty());
        let end = fb.advance(&path(), configured(), t1 + Duration::from_secs(3600));
        assert_eq!(
            end[0].to_string(),
            "site google: suspension over, sending again"
        );
        assert!(fb.is_idle());
        // Replies no rule matches do nothing.
        assert!(fb
            .on_reply(
                &path(),
                [&suspend_rule()],
                &reply(250, "2.0.0 ok"),
                configured(),
                t1
            )
            .is_none());
    }

    #[test]
    fn cut_holds_then_restores_step_by_step() {
        let t0 = Instant::now();
        let mut fb = SiteFeedback::default();
        let r = reply(
            421,
            "4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred",
        );
        let acts = fb
            .on_reply(&path(), [&cut_rule()], &r, configured(), t0)
            .unwrap();
        let lines: Vec<String> = acts.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            lines[0],
            "site google: connection limit 20 -> 10 for 30m after 421 4.7.0 [TSS04] Messages \
             from 1.2.3.4 temporarily deferred (automation yahoo#1)"
        );
        assert!(lines[1].starts_with("site google: message rate 100/s -> 25/s for 30m"));
        assert_eq!(fb.factor(Knob::Connections), 0.5);
        // During the hold a new match only extends the hold.
        let t1 = t0 + Duration::from_secs(900);
        assert!(fb
            .on_reply(&path(), [&cut_rule()], &r, configured(), t1)
            .is_none());
        assert_eq!(fb.factor(Knob::Connections), 0.5);
        // Hold ends at t1 + 30m; nothing before.
        assert!(fb
            .advance(&path(), configured(), t1 + Duration::from_secs(1799))
            .is_empty());
        let step1 = fb.advance(&path(), configured(), t1 + Duration::from_secs(1800));
        let step1: Vec<String> = step1.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            step1,
            [
                "site google: connection limit 10 -> 20 (restored)",
                "site google: message rate 25/s -> 50/s (restoring)"
            ]
        );
        assert_eq!(fb.factor(Knob::Connections), 1.0);
        assert_eq!(fb.factor(Knob::MessageRate), 0.5);
        let step2 = fb.advance(&path(), configured(), t1 + Duration::from_secs(2400));
        assert_eq!(
            step2[0].to_string(),
            "site google: message rate 50/s -> 100/s (restored)"
        );
        assert!(fb.is_idle());
        assert_eq!(fb.next_change(), None);
    }

    #[test]
    fn a_match_while_restoring_cuts_again_and_late_advance_catches_up() {
        let t0 = Instant::now();
        let mut fb = SiteFeedback::default();
        let r = reply(421, "[TSS04] x");
        let mut only_conn = cut_rule();
        if let AutomationAction::Cut { message_rate, .. } = &mut only_conn.action {
            *message_rate = None;
        }
        fb.on_reply(&path(), [&only_conn], &r, configured(), t0);
        fb.on_reply(
            &path(),
            [&only_conn],
            &r,
            configured(),
            t0 + Duration::from_secs(1800),
        );
        // Restoring had not run (no advance), but the hold was over: cut again.
        assert_eq!(fb.factor(Knob::Connections), 0.25);
        // Hours later one advance takes all the due steps at once.
        let acts = fb.advance(&path(), configured(), t0 + Duration::from_secs(36_000));
        assert_eq!(acts.len(), 1);
        assert_eq!(
            acts[0].to_string(),
            "site google: connection limit 5 -> 20 (restored)"
        );
        assert!(fb.is_idle());
    }

    #[test]
    fn first_matching_rule_wins() {
        let t0 = Instant::now();
        let mut fb = SiteFeedback::default();
        let mut both = cut_rule();
        both.matcher.text = Some(Regex::new("unusual").unwrap());
        let r = reply(421, "4.7.28 unusual rate");
        let acts = fb
            .on_reply(&path(), [&suspend_rule(), &both], &r, configured(), t0)
            .unwrap();
        assert!(matches!(acts[0], Action::Suspended { .. }));
        assert_eq!(fb.factor(Knob::Connections), 1.0);
    }
}
