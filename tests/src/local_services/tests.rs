use super::*;

fn endpoint(url: &str) -> (String, u16) {
    let at = Endpoint::parse(url).unwrap_or_else(|| panic!("{url} did not parse"));
    (at.host, at.port)
}

#[test]
fn parse_reads_host_and_port_past_the_credentials() {
    assert_eq!(
        endpoint("postgres://postgres@127.0.0.1:5432/verify"),
        ("127.0.0.1".into(), 5432)
    );
    assert_eq!(
        endpoint("amqp://guest:guest@localhost:5673/%2f"),
        ("localhost".into(), 5673)
    );
    assert_eq!(
        endpoint("postgresql://u:p%40ss@db.example:6543/x?sslmode=require"),
        ("db.example".into(), 6543)
    );
}

#[test]
fn parse_takes_the_default_port_of_the_scheme() {
    assert_eq!(
        endpoint("postgres://postgres@localhost/verify"),
        ("localhost".into(), 5432)
    );
    assert_eq!(endpoint("amqp://guest:guest@127.0.0.1/%2f"), ("127.0.0.1".into(), 5672));
    assert_eq!(endpoint("amqp://127.0.0.1"), ("127.0.0.1".into(), 5672));
    assert_eq!(endpoint("amqps://broker:/vhost"), ("broker".into(), 5671));
}

#[test]
fn parse_unbrackets_ipv6_addresses() {
    assert_eq!(endpoint("postgres://postgres@[::1]:5433/verify"), ("::1".into(), 5433));
    assert_eq!(endpoint("amqp://guest:guest@[::1]/%2f"), ("::1".into(), 5672));
}

#[test]
fn parse_takes_the_first_of_a_list() {
    assert_eq!(
        endpoint("amqp://127.0.0.1:5672/%2f, amqp://other:5672/%2f"),
        ("127.0.0.1".into(), 5672)
    );
    assert_eq!(
        endpoint("postgres://u@first:5432,second:5433/db"),
        ("first".into(), 5432)
    );
}

#[test]
fn parse_refuses_what_names_no_host() {
    for url in [
        "http://127.0.0.1:5432",
        "postgres:///verify?host=/run/postgresql",
        "amqp://h:port/",
        "nothing",
    ] {
        assert_eq!(Endpoint::parse(url), None, "{url}");
    }
}

#[test]
fn only_loopback_names_are_local() {
    for url in ["postgres://127.0.0.1/x", "postgres://LocalHost/x", "amqp://[::1]"] {
        assert!(Endpoint::parse(url).unwrap().is_local(), "{url}");
    }
    for url in ["postgres://db/x", "amqp://10.0.0.5", "postgres://127.0.0.2/x"] {
        assert!(!Endpoint::parse(url).unwrap().is_local(), "{url}");
    }
}

#[test]
fn endpoints_print_as_in_a_url() {
    assert_eq!(Endpoint::parse("amqp://[::1]").unwrap().to_string(), "[::1]:5672");
    assert_eq!(
        Endpoint::parse("postgres://localhost/x").unwrap().to_string(),
        "localhost:5432"
    );
}

#[test]
fn decide_goes_on_when_the_port_listens() {
    let at = Endpoint::parse("postgres://127.0.0.1/x").unwrap();
    assert_eq!(decide(&POSTGRESQL, &at, true, true), Action::GoOn);
    assert_eq!(decide(&POSTGRESQL, &at, true, false), Action::GoOn);
}

#[test]
fn decide_starts_an_installed_server() {
    let at = Endpoint::parse("amqp://localhost").unwrap();
    assert_eq!(decide(&RABBITMQ, &at, false, true), Action::Start);
}

#[test]
fn decide_names_the_package_of_a_missing_server() {
    let pg = Endpoint::parse("postgres://postgres@127.0.0.1:5432/verify").unwrap();
    let Action::Fail(why) = decide(&POSTGRESQL, &pg, false, false) else {
        panic!("a missing PostgreSQL must stop the run");
    };
    assert_eq!(
        why.to_string(),
        "PostgreSQL is not running on 127.0.0.1:5432 and is not installed; install it with: apt-get install postgresql"
    );
    let amqp = Endpoint::parse("amqp://guest:guest@[::1]:5672/%2f").unwrap();
    let Action::Fail(why) = decide(&RABBITMQ, &amqp, false, false) else {
        panic!("a missing RabbitMQ must stop the run");
    };
    assert!(
        why.0
            .ends_with("on [::1]:5672 and is not installed; install it with: apt-get install rabbitmq-server")
    );
}

#[test]
fn the_cluster_version_is_the_first_name_as_ls_sorts_them() {
    let dir = std::env::temp_dir().join(format!("local-services-{}", std::process::id()));
    for version in ["17", "15", "16"] {
        std::fs::create_dir_all(dir.join(version)).unwrap();
    }
    let first = first_entry(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(first.unwrap(), "15");
    assert!(first_entry(Path::new("/nonexistent/postgresql")).is_err());
}

/// A server started by `program` (looked up on PATH), waited for at most a second.
fn server(program: &'static str) -> Server {
    Server {
        name: "Test server",
        package: "test-server",
        program,
        args: &[],
        wait: Duration::from_secs(1),
    }
}

/// A local port nothing listens on: bound without listening, so connections are refused and
/// no other test can take it while the socket lives.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[tokio::test]
async fn ensure_leaves_other_hosts_and_listening_ports_alone() {
    let missing = server("local-services-test-no-such-program");
    assert_eq!(ensure(&missing, "postgres://u:p@db.invalid:5432/x").await, Ok(()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(ensure(&missing, &format!("amqp://127.0.0.1:{port}/%2f")).await, Ok(()));
}

#[tokio::test]
async fn ensure_names_the_package_when_nothing_is_installed() {
    let (_socket, port) = closed_port();
    let url = format!("postgres://127.0.0.1:{port}/x");
    let why = ensure(&server("local-services-test-no-such-program"), &url)
        .await
        .unwrap_err();
    assert!(
        why.0
            .ends_with("is not installed; install it with: apt-get install test-server"),
        "{why}"
    );
}

#[tokio::test]
async fn ensure_reports_a_start_command_that_fails() {
    let (_socket, port) = closed_port();
    let url = format!("postgres://127.0.0.1:{port}/x");
    let why = ensure(&server("false"), &url).await.unwrap_err();
    assert!(why.0.contains("and `false` failed (exit status: 1)"), "{why}");
}

#[tokio::test]
async fn ensure_reports_a_start_command_it_cannot_complete() {
    let (_socket, port) = closed_port();
    let cluster = Server {
        args: &[Arg::FirstEntryOf("/nonexistent/postgresql")],
        ..server("true")
    };
    let why = ensure(&cluster, &format!("postgres://127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    assert!(
        why.0.starts_with(&format!(
            "Test server is not running on 127.0.0.1:{port} and cannot be started: cannot read /nonexistent/postgresql"
        )),
        "{why}"
    );
}

#[tokio::test]
async fn ensure_gives_up_on_a_port_that_never_opens() {
    let (_socket, port) = closed_port();
    let why = ensure(&server("true"), &format!("amqp://localhost:{port}"))
        .await
        .unwrap_err();
    assert_eq!(
        why.0,
        format!("started Test server with `true`, but nothing listens on localhost:{port} after 1 s")
    );
}
