//! The `verify-api` binary's command line: `--help`, and exit code 2 on bad settings.

use std::process::Command;

fn api() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_verify-api"));
    cmd.env_clear();
    cmd
}

fn with_valid_settings(mut cmd: Command) -> Command {
    cmd.env("API_KEYS", "key-0123456789abcdef")
        .env("VERIFY_SECRET", "0123456789abcdef0123456789abcdef")
        .env("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long")
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", "token");
    cmd
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let out = api().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let names = common::settings::env_names::<verify_api::ApiConfig>();
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        assert!(help.contains(&name), "{name} missing from --help");
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
}

#[test]
fn a_missing_setting_exits_2_with_one_line_naming_it() {
    let out = api().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("API_KEYS"), "{stderr}");
}

#[test]
fn a_bad_setting_exits_2_with_one_line_naming_it() {
    for (name, value) in [
        ("VERIFY_SECRET", "too short"),
        ("CODE_LENGTH", "12"),
        ("API_LISTEN", "nowhere"),
        ("TWILIO_ACCOUNT_SID", "AC1"),
        ("DATABASE_URL", "not-a-url"),
        ("AMQP_URL", "rabbit://127.0.0.1"),
        ("PUBLIC_BASE_URL", "example.com"),
        ("CODE_SEALING_KEYS", "too short"),
    ] {
        let mut cmd = with_valid_settings(api());
        let out = cmd.env(name, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn an_unknown_argument_exits_2() {
    assert_eq!(api().arg("--frobnicate").output().unwrap().status.code(), Some(2));
}
