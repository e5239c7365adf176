//! The `verify-worker` binary's command line: `--help`, and exit code 2 on bad settings.

use std::process::Command;

fn worker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_verify-worker"));
    cmd.env_clear();
    cmd
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let out = worker().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let names = common::settings::env_names::<verify_worker::WorkerConfig>();
    assert!(names.len() > 25, "{names:?}");
    for name in names {
        assert!(help.contains(&name), "{name} missing from --help");
    }
    assert!(help.contains("[default: 64]"), "{help}");
    assert!(help.contains("dead-letters") && help.contains("stats"), "{help}");
}

#[test]
fn a_missing_or_bad_setting_exits_2_with_one_line_naming_it() {
    let base = [
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_FROM", "+15005550006"),
        ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
    ];
    let cases = [
        ("TWILIO_ACCOUNT_SID", None),
        ("TWILIO_FROM", None),
        ("SMS_TEMPLATE", Some("no code here")),
        ("WORKER_CONCURRENCY", Some("0")),
        ("TWILIO_API_BASE", Some("nope")),
        ("DATABASE_URL", Some("not-a-url")),
        ("AMQP_URL", Some("amqp://guest:guest@127.0.0.1:notaport/%2f")),
        ("PUBLIC_BASE_URL", Some("http://")),
        ("SEND_LEASE_SECONDS", Some("5")),
        ("CODE_SEALING_KEYS", None),
        ("CODE_SEALING_KEYS", Some("too short")),
    ];
    for (name, value) in cases {
        let mut cmd = worker();
        for (k, v) in base {
            if k != name {
                cmd.env(k, v);
            }
        }
        if let Some(v) = value {
            cmd.env(name, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn an_unknown_command_or_argument_exits_2_with_one_line() {
    for args in [&["dead-letters", "burn"][..], &["--frobnicate"][..], &["dispatch"][..]] {
        let out = worker().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
