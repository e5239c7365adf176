//! Reading settings: defaults, one-line errors, secrets never shown.

use super::*;
use std::time::Duration;

/// A binary with the shared settings and two of its own.
#[derive(Debug, Parser)]
struct Example {
    #[command(flatten)]
    shared: Shared,
    /// must be there [required]
    #[arg(long, env = "NEEDED")]
    needed: String,
    /// a number, 4 to 10
    #[arg(long, env = "COUNT", default_value = "6", value_parser = clap::value_parser!(u32).range(4..=10))]
    count: u32,
}

impl Settings for Example {}

const REQUIRED: [(&str, &str); 4] = [
    ("NEEDED", "x"),
    ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
    ("TWILIO_AUTH_TOKEN", "token"),
    ("CODE_SEALING_KEYS", "a sealing key of at least 32 bytes long"),
];

fn read(pairs: &[(&str, &str)]) -> Result<Example, SettingError> {
    let mut all: Vec<(String, String)> = REQUIRED.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    from_vars(all)
}

#[test]
fn missing_required_settings_are_named_in_one_line() {
    let err = from_vars::<Example>(Vec::new()).unwrap_err();
    assert_eq!(err.problem, "are required but not set");
    for name in ["NEEDED", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "CODE_SEALING_KEYS"] {
        assert!(err.name.contains(name), "{err}");
    }
    assert_eq!(err.to_string().lines().count(), 1);
}

#[test]
fn an_empty_value_counts_as_unset_and_takes_the_default() {
    let example = read(&[("COUNT", ""), ("SEND_QUEUE", "")]).unwrap();
    assert_eq!(example.count, 6);
    assert_eq!(example.shared.topology.send_queue(), "sms.send");
    assert_eq!(example.shared.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn an_out_of_range_number_is_refused_by_name() {
    let err = read(&[("COUNT", "11")]).unwrap_err();
    assert_eq!(err.to_string(), "COUNT: 11 is not in 4..=10");
    assert_eq!(read(&[("RETENTION_DAYS", "0")]).unwrap_err().name, "RETENTION_DAYS");
    assert_eq!(
        read(&[("LOG_FORMAT", "xml")]).unwrap_err().to_string(),
        "LOG_FORMAT: must be one of auto, json, text"
    );
}

#[test]
fn urls_that_cannot_be_used_are_refused_at_start_without_showing_them() {
    let defaults = read(&[]).unwrap();
    assert_eq!(defaults.shared.public_base_url, "http://127.0.0.1:8080");
    for bad in ["not-a-url", "mysql://u@h/db", "postgres://u:secret@h:notaport/db"] {
        let err = read(&[("DATABASE_URL", bad)]).unwrap_err();
        assert_eq!(err.name, "DATABASE_URL", "{bad}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    for bad in ["not-a-url", "http://h/", "amqp://u:secret@h:99999/%2f", "amqp:///%2f"] {
        let err = read(&[("AMQP_URL", bad)]).unwrap_err();
        assert_eq!(err.name, "AMQP_URL", "{bad}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    let cluster = "amqp://u:p@rabbit-1:5672/%2f, amqp://u:p@rabbit-2:5672/%2f,amqp://u:p@rabbit-3/%2f";
    assert_eq!(
        read(&[("AMQP_URL", cluster)]).unwrap().shared.amqp_url.expose(),
        cluster
    );
    let err = read(&[("AMQP_URL", "amqp://u:secret@rabbit-1/%2f,http://rabbit-2/")]).unwrap_err();
    assert!(
        err.to_string().starts_with("AMQP_URL: entry 2 must be an amqp://"),
        "{err}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(read(&[("AMQP_URL", " , ")]).is_err());
    for bad in ["not-a-url", "ftp://h", "http://", "http://h/?q=1", "http://h:99999"] {
        assert_eq!(
            read(&[("PUBLIC_BASE_URL", bad)]).unwrap_err().name,
            "PUBLIC_BASE_URL",
            "{bad}"
        );
    }
}

#[test]
fn the_environment_of_the_process_is_not_read_by_from_vars() {
    // PATH is set in every test process; a setting of that name would have taken it.
    #[derive(Debug, Parser)]
    struct WithPath {
        #[arg(long, env = "PATH", default_value = "unset")]
        path: String,
    }
    impl Settings for WithPath {}
    assert_eq!(from_vars::<WithPath>(Vec::new()).unwrap().path, "unset");
}

#[test]
fn a_secret_does_not_print() {
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret([redacted])");
    let example = read(&[]).unwrap();
    assert!(!format!("{example:?}").contains("a sealing key"));
}

#[test]
fn every_variable_is_listed_with_its_default() {
    let names = env_names::<Example>();
    assert!(names.iter().any(|n| n == "DATABASE_URL") && names.iter().any(|n| n == "COUNT"));
    let help = Example::command().render_long_help().to_string();
    assert!(help.contains("NEEDED") && help.contains("[required]"), "{help}");
    assert!(help.contains("COUNT") && help.contains("[default: 6]"), "{help}");
}
