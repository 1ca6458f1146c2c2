//! Tests of the table and the shaper together: precedence, roll-up,
//! automation through the facade, pools, eviction.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rules::{RuleOrigin, RuleSet};
use super::*;
use crate::config::{Config, TlsSecurityLevel};
use crate::proto::Reply;

fn user(text: &str) -> RuleSet {
    RuleSet::parse(
        text,
        "/etc/ringmail/shaping.toml",
        RuleOrigin::File {
            path: Arc::from(Path::new("/etc/ringmail/shaping.toml")),
            line: 0,
        },
    )
    .unwrap()
}

fn config(extra: &str) -> Config {
    Config::parse(extra, Path::new("ringmail.toml")).unwrap()
}

fn table(config: &Config, user_rules: Option<&str>) -> ShapingTable {
    ShapingTable::new(config, RuleSet::shipped().unwrap(), user_rules.map(user)).unwrap()
}

const GMAIL_MX: [&str; 2] = [
    "gmail-smtp-in.l.google.com",
    "alt1.gmail-smtp-in.l.google.com",
];

#[test]
fn shaper_is_shared_across_shards() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Shaper>();
    send_sync::<ShapingTable>();
}

#[test]
fn two_domains_on_google_share_one_site_and_its_shipped_limits() {
    let t = table(&Config::default(), None);
    let a = t.site_for("gmail.com", &GMAIL_MX);
    let b = t.site_for(
        "corp.example",
        &["ASPMX.L.GOOGLE.COM.", "alt2.aspmx.l.google.com"],
    );
    assert_eq!(a.key, b.key);
    assert_eq!(a.key.as_str(), "google");
    let l = t.limits_for(&a.key, Some("gmail.com"), None);
    assert_eq!(l.max_connections.value, 5);
    assert_eq!(l.max_connections.from.layer, "site google");
    assert!(l
        .max_connections
        .from
        .detail
        .starts_with("shipped default: https://"));
    // Not set by the google rule: from ringmail.toml.
    assert_eq!(l.max_recipients.value, 50);
    assert_eq!(
        l.max_recipients.from.detail,
        "`default_destination_recipient_limit`"
    );
    let o365 = t.site_for(
        "contoso.example",
        &["contoso-example.mail.protection.outlook.com"],
    );
    assert_eq!(o365.key.as_str(), "office365");
    let hotmail = t.site_for("hotmail.com", &["hotmail-com.olc.protection.outlook.com"]);
    assert_eq!(hotmail.key.as_str(), "outlook");
    for (mx, site) in [
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx01.mail.icloud.com", "apple"),
        ("mx00.emig.gmx.net", "gmx"),
        ("mx-ha02.web.de", "gmx"),
        ("mx.yandex.ru", "yandex"),
        ("mxs.mail.ru", "mailru"),
        ("mx1a1.comcast.net", "comcast"),
        ("smtp-in.orange.fr", "orange"),
    ] {
        assert_eq!(t.site_for("x.example", &[mx]).key.as_str(), site, "{mx}");
    }
}

#[test]
fn domain_beats_site_beats_default_field_by_field() {
    let c = config(
        "default_destination_concurrency_limit = 30\n\
         [[source]]\nname = \"ip-a\"\naddress = \"192.0.2.1\"\nmax_connections = 7\n",
    );
    let t = table(
        &c,
        Some(
            "[default]\nmax_connections = 12\nmax_recipients = 40\nmin_retry = \"10m\"\n\n\
             [[site]]\nname = \"google\"\nmax_connections = 4\nmax_recipients = 30\n\n\
             [[site]]\nname = \"google\"\nsources = [\"ip-a\"]\nmax_connections = 2\n\n\
             [[domain]]\ndomains = [\"gmail.com\"]\nmax_recipients = 20\ntls = \"verify\"\n",
        ),
    );
    let google = SiteKey::new("google");
    let l = t.limits_for(&google, Some("gmail.com"), None);
    assert_eq!(
        l.max_connections.value, 4,
        "user site rule over shipped site rule"
    );
    assert_eq!(
        l.max_connections.from.detail, "/etc/ringmail/shaping.toml:6",
        "{:?}",
        l.max_connections.from
    );
    assert_eq!(l.max_recipients.value, 20, "domain over site");
    assert_eq!(l.max_recipients.from.layer, "domain gmail.com");
    assert_eq!(l.tls.value, TlsSecurityLevel::Verify);
    assert_eq!(
        l.min_retry.value,
        Duration::from_secs(600),
        "default where nothing else"
    );
    assert_eq!(l.min_retry.from.layer, "default");
    // Shipped field the user did not touch survives.
    assert_eq!(l.max_deliveries_per_connection.value, 50);
    // Another Google domain: the site rule, not the domain rule.
    let other = t.limits_for(&google, Some("corp.example"), None);
    assert_eq!(other.max_recipients.value, 30);
    // A source-specific site rule beats the general one for that source.
    let from_a = t.limits_for(&google, Some("corp.example"), Some("ip-a"));
    assert_eq!(from_a.max_connections.value, 2);
    assert_eq!(
        from_a.max_connections.from.layer,
        "site google for source ip-a"
    );
    // Elsewhere the source's own limit beats [default].
    let plain = SiteKey::new("mx.small.example");
    let l = t.limits_for(&plain, None, Some("ip-a"));
    assert_eq!(l.max_connections.value, 7);
    assert_eq!(l.max_connections.from.layer, "source ip-a");
    let l = t.limits_for(&plain, None, None);
    assert_eq!(l.max_connections.value, 12);
    // initial_connections follows a lower max_connections.
    assert_eq!(from_a.initial_connections.value, 2);
}

#[test]
fn a_user_site_rule_can_split_a_shipped_site() {
    let t = table(
        &Config::default(),
        Some("[[site]]\nname = \"google-gmail\"\nmx = [\"*.gmail-smtp-in.l.google.com\", \"gmail-smtp-in.l.google.com\"]\nmax_connections = 3\n"),
    );
    assert_eq!(
        t.site_for("gmail.com", &GMAIL_MX).key.as_str(),
        "google-gmail"
    );
    assert_eq!(
        t.site_for("corp.example", &["aspmx.l.google.com"])
            .key
            .as_str(),
        "google"
    );
}

#[test]
fn unknown_source_in_a_rule_is_refused() {
    let e = ShapingTable::new(
        &Config::default(),
        RuleSet::default(),
        Some(user("[[site]]\nname = \"g\"\nsources = [\"nope\"]\n")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("\"nope\""), "{e}");
}

#[test]
fn automation_through_the_facade_cuts_and_restores_effective_limits() {
    let shaper = Shaper::new(Arc::new(table(
        &config("default_destination_rate_limit = \"100/s\"\n"),
        None,
    )));
    let site = shaper.site_for("gmail.com", &GMAIL_MX).key;
    let t0 = Instant::now();
    let reply = Reply::new(
        421,
        vec!["4.7.28 Our system has detected an unusual rate of unsolicited mail".into()],
    );
    let acts = shaper.on_reply(&site, None, &reply, t0);
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert!(
        acts[0]
            .to_string()
            .starts_with("site google: connection limit 5 -> 2 for 30m after 421 4.7.28"),
        "{}",
        acts[0]
    );
    assert!(
        acts[1].to_string().contains("message rate 100/s -> 25/s"),
        "{}",
        acts[1]
    );
    let e = shaper.effective(&site, Some("gmail.com"), None, t0);
    assert_eq!(e.limits.max_connections.value, 2);
    assert_eq!(e.limits.max_connections.from.layer, "automation");
    assert_eq!(e.limits.message_rate.value.unwrap().count, 25);
    assert_eq!(e.suspended_until, None);
    // 30m hold, then 15m steps doubling back.
    let e = shaper.effective(&site, None, None, t0 + Duration::from_secs(1800));
    assert_eq!(e.limits.max_connections.value, 5);
    assert_eq!(e.limits.message_rate.value.unwrap().count, 50);
    assert_eq!(e.changes.len(), 2);
    let e = shaper.effective(&site, None, None, t0 + Duration::from_secs(2700));
    assert_eq!(e.limits.message_rate.value.unwrap().count, 100);
    assert!(e.changes[0].to_string().ends_with("(restored)"));
    // A suspension makes take_message wait.
    let suspend = Reply::new(
        421,
        vec!["4.7.0 Our system has detected that this message is suspicious".into()],
    );
    let t1 = t0 + Duration::from_secs(3000);
    let acts = shaper.on_reply(&site, None, &suspend, t1);
    assert_eq!(
        acts[0].to_string(),
        format!("site google: suspended for 1h after {suspend} (automation google#2)")
    );
    let e = shaper.effective(&site, None, None, t1);
    assert_eq!(
        shaper.take_message(&site, None, &e, t1),
        Err(Duration::from_secs(3600))
    );
    // Other sites are not affected.
    let other = SiteKey::new("mx.other.example");
    assert!(shaper.on_reply(&other, None, &suspend, t1).is_empty());
}

#[test]
fn pools_pick_sources_by_weight_and_rule() {
    let c = config(
        "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\n\
         [[source]]\nname = \"b\"\naddress = \"192.0.2.2\"\n\
         [[source]]\nname = \"c\"\naddress = \"2001:db8::3\"\nehlo_name = \"c.example\"\n\
         [[pool]]\nname = \"default\"\nsources = [\"a\", \"b\"]\nweights = [3, 1]\n\
         [[pool]]\nname = \"bulk\"\nsources = [\"c\"]\n\
         [[pool_rule]]\npool = \"bulk\"\nheader = \"X-Pool\"\nheader_value = \"bulk\"\n",
    );
    let shaper = Shaper::new(Arc::new(table(&c, None)));
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..400 {
        let s = shaper.pick_source(&MessageFacts::default()).unwrap();
        *counts.entry(s.name.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts["a"], 300);
    assert_eq!(counts["b"], 100);
    let headers = [("X-Pool", "bulk")];
    let bulk = MessageFacts {
        headers: &headers,
        ..MessageFacts::default()
    };
    assert_eq!(shaper.pick_source(&bulk).unwrap().ehlo_name, "c.example");
    let no_pools = Shaper::new(Arc::new(table(&Config::default(), None)));
    assert!(no_pools.pick_source(&MessageFacts::default()).is_none());
}

#[test]
fn warmup_through_the_facade() {
    let c = config(
        "[[source]]\nname = \"new\"\naddress = \"192.0.2.9\"\nwarmup_start = \"2026-12-01\"\n\
         warmup = [{ day = 1, per_site = 2 }, { day = 2, per_site = 4 }]\n",
    );
    let shaper = Shaper::new(Arc::new(table(&c, None)));
    let site = SiteKey::new("google");
    let now = Instant::now();
    let noon = 1_764_590_400; // 2026-12-01T12:00:00Z
    for _ in 0..2 {
        assert_eq!(
            shaper.warmup_check(&site, "new", noon, now),
            WarmupDecision::Send
        );
        shaper.warmup_record(&site, "new", noon, now);
    }
    assert_eq!(
        shaper.warmup_check(&site, "new", noon, now),
        WarmupDecision::WaitUntil(noon + 12 * 3600)
    );
    assert_eq!(
        shaper.warmup_check(&SiteKey::new("yahoo"), "new", noon, now),
        WarmupDecision::Send,
        "caps are per site"
    );
    // Today's counts are not evicted, yesterday's are.
    let later = now + Duration::from_secs(7200);
    assert_eq!(
        shaper.evict_idle(later, noon + 3600, Duration::from_secs(600)),
        0
    );
    assert_eq!(
        shaper.evict_idle(later, noon + 86_400, Duration::from_secs(600)),
        2
    );
}

#[test]
fn per_site_state_does_not_grow_after_eviction() {
    let shaper = Shaper::new(Arc::new(table(
        &config("default_destination_rate_limit = \"10/s\"\n"),
        None,
    )));
    let t0 = Instant::now();
    let busy = Reply::new(
        421,
        vec!["4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred".into()],
    );
    let yahoo = shaper.site_for("yahoo.com", &["mta6.am0.yahoodns.net"]).key;
    shaper.on_reply(&yahoo, None, &busy, t0);
    for round in 0..2u64 {
        let t = t0 + Duration::from_secs(round * 600);
        for i in 0..100_000u64 {
            let site = shaper
                .site_for(
                    &format!("d{round}-{i}.example"),
                    &[&format!("mx.d{round}-{i}.example")],
                )
                .key;
            let e = shaper.effective(&site, None, None, t);
            assert!(shaper.take_message(&site, None, &e, t).is_ok());
        }
        assert_eq!(shaper.len(), 100_001);
        // Buckets refill in well under the idle time; the suspended site stays.
        let dropped = shaper.evict_idle(t + Duration::from_secs(300), 0, Duration::from_secs(60));
        assert_eq!(dropped, 100_000);
        assert_eq!(shaper.len(), 1, "only yahoo's suspension is held");
    }
    // Once its suspension is over and it idled, yahoo goes too.
    let late = t0 + Duration::from_secs(3 * 3600);
    shaper.effective(&yahoo, None, None, late);
    assert_eq!(
        shaper.evict_idle(late + Duration::from_secs(60), 0, Duration::from_secs(60)),
        1
    );
    assert!(shaper.is_empty());
}

#[test]
fn user_automation_is_tried_before_shipped_and_default_applies_everywhere() {
    let t = table(
        &Config::default(),
        Some(
            "[default]\n[[default.automation]]\ntext = \"(?i)too busy\"\naction = \"suspend\"\nduration = \"5m\"\n\n\
             [[site]]\nname = \"google\"\n[[site.automation]]\nenhanced = \"4.7.28\"\naction = \"suspend\"\nduration = \"2h\"\n",
        ),
    );
    let shaper = Shaper::new(Arc::new(t));
    let now = Instant::now();
    let google = SiteKey::new("google");
    let rate = Reply::new(421, vec!["4.7.28 unusual rate".into()]);
    let acts = shaper.on_reply(&google, Some("ip-a"), &rate, now);
    assert_eq!(
        acts[0].to_string(),
        "site google source ip-a: suspended for 2h after 421 4.7.28 unusual rate (automation google#1)"
    );
    // Only that source is suspended.
    let e = shaper.effective(&google, None, None, now);
    assert_eq!(e.suspended_until, None);
    let busy = Reply::new(421, vec!["Too busy, come back later".into()]);
    let small = SiteKey::new("mx.small.example");
    let acts = shaper.on_reply(&small, None, &busy, now);
    assert_eq!(
        acts[0].to_string(),
        "site mx.small.example: suspended for 5m after 421 Too busy, come back later (automation default#1)"
    );
}

#[test]
fn site_states_show_cuts_suspensions_and_open_connections() {
    let shaper = Shaper::new(Arc::new(table(
        &config("default_destination_rate_limit = \"100/s\"\n"),
        None,
    )));
    let t0 = Instant::now();
    assert!(shaper.site_states(t0).is_empty(), "nothing known yet");
    let google = shaper.site_for("gmail.com", &GMAIL_MX).key;
    let reply = Reply::new(
        421,
        vec!["4.7.28 Our system has detected an unusual rate of unsolicited mail".into()],
    );
    assert!(!shaper.on_reply(&google, None, &reply, t0).is_empty());
    let other = SiteKey::new("mx.other.example");
    let slot = shaper.acquire_connection(&other, None, 3, 0);
    assert!(slot.is_some());
    shaper.set_suspended(&other, Some(t0 + Duration::from_secs(600)), t0);
    let states = shaper.site_states(t0);
    assert_eq!(states.len(), 2, "{states:?}");
    let g = &states[0];
    assert_eq!(g.site, google);
    assert_eq!((g.connection_factor, g.message_rate_factor), (0.5, 0.25));
    assert_eq!(g.max_connections, 2);
    assert_eq!(g.suspended_for, None);
    assert_eq!(g.next_change_in, Some(Duration::from_secs(1800)));
    let o = &states[1];
    assert_eq!(o.site, other);
    assert_eq!(o.connections, 1);
    assert_eq!(o.suspended_for, Some(Duration::from_secs(600)));
    assert_eq!(o.connection_factor, 1.0);
    // Later: the cut is half restored, the suspension is over; reading
    // changed nothing, `effective` still takes (and reports) the steps.
    let t1 = t0 + Duration::from_secs(1800);
    let states = shaper.site_states(t1);
    assert_eq!(states[0].connection_factor, 1.0);
    assert_eq!(states[0].message_rate_factor, 0.5);
    assert_eq!(states[1].suspended_for, None);
    assert_eq!(shaper.effective(&google, None, None, t1).changes.len(), 2);
    shaper.set_suspended(&other, None, t1);
    drop(slot);
}
