//! Configuration errors name the key, the file and the line, for every
//! command that reads the configuration.

mod common;

use std::process::Output;

use common::*;

fn run(sb: &Sandbox, args: &[&str]) -> Output {
    let mut c = sb.cmd();
    c.args(args).arg("--config").arg(&sb.config);
    c.output().expect("run ringmail")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The error must mention the file, the line and the key.
fn assert_located(out: &Output, sb: &Sandbox, line: usize, key: &str) {
    assert!(
        !out.status.success(),
        "a bad configuration must fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = text(out);
    let location = format!("{}:{line}", sb.config.display());
    assert!(err.contains(&location), "expected {location:?} in: {err}");
    assert!(err.contains(key), "expected the key {key:?} in: {err}");
}

#[test]
fn unknown_key_is_named_with_file_and_line() {
    let sb = Sandbox::new();
    std::fs::write(
        &sb.config,
        format!(
            "# comment\nspool_dir = {:?}\nshards = 1\nspool_drop = \"/typo\"\n",
            sb.spool.display().to_string()
        ),
    )
    .unwrap();
    let out = run(&sb, &["config"]);
    assert_located(&out, &sb, 4, "spool_drop");
    assert!(out.stdout.is_empty(), "nothing printed on error");

    // The daemon refuses to start on it, and creates nothing.
    let out = run(&sb, &["serve"]);
    assert_located(&out, &sb, 4, "spool_drop");
    assert!(!sb.spool.exists(), "no spool created from a bad config");

    // So do the queue commands.
    let out = run(&sb, &["queue", "list"]);
    assert_located(&out, &sb, 4, "spool_drop");
}

#[test]
fn bad_values_are_located() {
    let sb = Sandbox::new();
    let cases: &[(&str, usize, &str)] = &[
        ("shards = 1\n\nsegment_size = 4096\n", 3, "segment_size"),
        ("myhostname = \"has space\"\n", 1, "myhostname"),
        ("\nmessage_size_limit = 10\n", 2, "message_size_limit"),
        ("pickup_interval_ms = 0\n", 1, "pickup_interval_ms"),
        ("shards = 1000\n", 1, "shards"),
    ];
    for (toml, line, key) in cases {
        std::fs::write(&sb.config, toml).unwrap();
        let out = run(&sb, &["config"]);
        assert_located(&out, &sb, *line, key);
    }
}

/// A value of the wrong type or an unknown `io_backend` word: located at
/// the value's line, naming the key.
#[test]
fn type_errors_name_key_file_and_line() {
    let sb = Sandbox::new();
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "shards = 1\nio_backend = \"kqueue\"\n",
            2,
            "io_backend",
            "kqueue",
        ),
        ("\nshards = \"many\"\n", 2, "shards", "many"),
        ("log_file = 5\n", 1, "log_file", "5"),
        ("\n\nshards = -1\n", 3, "shards", "-1"),
    ];
    for (toml, line, key, value) in cases {
        std::fs::write(&sb.config, toml).unwrap();
        let out = run(&sb, &["config"]);
        assert_located(&out, &sb, *line, key);
        assert!(text(&out).contains(value), "{}", text(&out));
    }
}

/// A configuration error is EX_CONFIG (78) for every command, and a
/// refused configuration creates nothing.
#[test]
fn config_error_exit_codes() {
    let sb = Sandbox::new();
    std::fs::write(&sb.config, "spool_drop = \"/typo\"\n").unwrap();
    for args in [
        &["config"][..],
        &["serve"],
        &["queue", "list"],
        &["queue", "flush"],
    ] {
        let out = run(&sb, args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert!(
            text(&out).starts_with("ringmail: fatal: "),
            "{}",
            text(&out)
        );
    }
    let out = sb.sendmail(&["r@example.net"], b"Subject: x\n\nbody\n");
    assert_eq!(out.status.code(), Some(78), "sendmail: {}", text(&out));
    assert!(
        text(&out).starts_with("sendmail: fatal: "),
        "{}",
        text(&out)
    );
    assert!(
        !sb.spool.exists(),
        "a refused configuration creates nothing"
    );
}

#[test]
fn environment_overrides_and_errors() {
    let sb = Sandbox::new();
    // A good file prints back as TOML with our values.
    let out = run(&sb, &["config"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("shards = 2"), "{printed}");
    assert!(printed.contains("segment_size = 1048576"), "{printed}");
    assert!(
        printed.contains(&sb.spool.display().to_string()),
        "{printed}"
    );

    // $RINGMAIL_CONFIG is used without --config.
    let out = sb
        .cmd()
        .arg("config")
        .env("RINGMAIL_CONFIG", &sb.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shards = 2"));

    // $RINGMAIL_IO overrides io_backend, and a bad value says where it came from.
    let out = sb
        .cmd()
        .args(["config", "--config"])
        .arg(&sb.config)
        .env("RINGMAIL_IO", "epoll")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("io_backend = \"epoll\""));
    let out = sb
        .cmd()
        .args(["config", "--config"])
        .arg(&sb.config)
        .env("RINGMAIL_IO", "kqueue")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("RINGMAIL_IO") && text(&out).contains("kqueue"),
        "{}",
        text(&out)
    );

    // A missing file is an error naming it.
    std::fs::remove_file(&sb.config).unwrap();
    let out = run(&sb, &["config"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&sb.config.display().to_string()),
        "{}",
        text(&out)
    );
}
