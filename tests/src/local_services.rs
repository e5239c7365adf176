//! PostgreSQL and RabbitMQ on this machine for `local-stack`: a server that is installed but
//! stopped is started the way `.ci/run` starts it, so a first run needs no commands of its
//! own; one that is missing stops the run with the Debian package to install. A URL naming
//! another host is left to the connection, as before.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// How often a port is tried while a server starts.
const POLL: Duration = Duration::from_millis(200);

/// How long one connection attempt may take (a closed local port refuses at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A server `local-stack` needs and how Debian installs and starts it.
#[derive(Debug)]
pub struct Server {
    /// As a person calls it, in messages.
    pub name: &'static str,
    /// The Debian package to name when the server is missing.
    pub package: &'static str,
    /// Starts the server; its absence from `PATH` means the server is not installed.
    pub program: &'static str,
    /// The arguments of `program` that start the server.
    pub args: &'static [Arg],
    /// How long its port may take to open once started.
    pub wait: Duration,
}

/// One argument of a start command.
#[derive(Debug)]
pub enum Arg {
    /// Given as is.
    Fixed(&'static str),
    /// The first name in this directory, sorted (`ls DIR | head -n1`): the cluster version
    /// differs between Debian releases.
    FirstEntryOf(&'static str),
}

/// The first cluster of `/etc/postgresql`, without systemd (containers have none).
pub const POSTGRESQL: Server = Server {
    name: "PostgreSQL",
    package: "postgresql",
    program: "pg_ctlcluster",
    args: &[
        Arg::Fixed("--skip-systemctl-redirect"),
        Arg::FirstEntryOf("/etc/postgresql"),
        Arg::Fixed("main"),
        Arg::Fixed("start"),
    ],
    wait: Duration::from_secs(60),
};

/// `-detached` returns before the broker boots, hence the longer wait (`.ci/run` gives its
/// `await_startup` 120 s); the AMQP port opens only once the boot is done.
pub const RABBITMQ: Server = Server {
    name: "RabbitMQ",
    package: "rabbitmq-server",
    program: "rabbitmq-server",
    args: &[Arg::Fixed("-detached")],
    wait: Duration::from_secs(120),
};

/// Why the run cannot go on; `local-stack` prints it as one line and exits with code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Host and port of a server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Reads a `postgres://`, `postgresql://`, `amqp://` or `amqps://` URL, with or without
    /// `user:password@`; of a comma-separated list of URLs or hosts, the first. `None` for
    /// anything else (such as a Unix socket given in the query), which is left to the
    /// connection to report.
    pub fn parse(url: &str) -> Option<Self> {
        let first = url.split(',').next()?.trim();
        let (scheme, rest) = first.split_once("://")?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => 5432,
            "amqp" => 5672,
            "amqps" => 5671,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']')?;
                (host, after.strip_prefix(':'))
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let port = match port {
            None | Some("") => default_port,
            Some(port) => port.parse().ok()?,
        };
        (!host.is_empty()).then(|| Self {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether the server would run on this machine (only then is it ours to start).
    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "::1") || self.host.eq_ignore_ascii_case("localhost")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What to do about a local server.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect as usual.
    GoOn,
    /// Run the server's start command, then wait for its port.
    Start,
    /// Stop the run with this.
    Fail(Unavailable),
}

/// The policy, apart from the probing: a listening port is taken as the server.
pub fn decide(server: &Server, at: &Endpoint, listening: bool, installed: bool) -> Action {
    if listening {
        Action::GoOn
    } else if installed {
        Action::Start
    } else {
        Action::Fail(Unavailable(format!(
            "{} is not running on {at} and is not installed; install it with: apt-get install {}",
            server.name, server.package
        )))
    }
}

/// Makes sure the server of `url` listens when `url` names this machine: starts it if it is
/// installed and waits for its port.
pub async fn ensure(server: &Server, url: &str) -> Result<(), Unavailable> {
    let Some(at) = Endpoint::parse(url).filter(Endpoint::is_local) else {
        return Ok(());
    };
    match decide(server, &at, listens(&at).await, on_path(server.program)) {
        Action::GoOn => Ok(()),
        Action::Fail(why) => Err(why),
        Action::Start => start(server, &at).await,
    }
}

async fn start(server: &Server, at: &Endpoint) -> Result<(), Unavailable> {
    let stopped = |why: String| Unavailable(format!("{} is not running on {at} and {why}", server.name));
    let args = resolve(server.args).map_err(|e| stopped(format!("cannot be started: {e}")))?;
    let command_line = std::iter::once(server.program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    // Its stderr stays the terminal's, so a failure explains itself above our line; stdout
    // (progress) is dropped. Nothing is piped: a daemon that kept a pipe open would stall us.
    let status = Command::new(server.program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| stopped(format!("`{command_line}` failed: {e}")))?;
    if !status.success() {
        return Err(stopped(format!("`{command_line}` failed ({status})")));
    }
    tracing::info!(
        "{} was not running on {at}: started it with `{command_line}`",
        server.name
    );
    if tokio::time::timeout(server.wait, until_listening(at)).await.is_err() {
        return Err(Unavailable(format!(
            "started {} with `{command_line}`, but nothing listens on {at} after {} s",
            server.name,
            server.wait.as_secs()
        )));
    }
    Ok(())
}

/// The start command's arguments, with the directories read.
fn resolve(args: &[Arg]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|arg| match arg {
            Arg::Fixed(value) => Ok((*value).to_owned()),
            Arg::FirstEntryOf(dir) => first_entry(Path::new(dir)),
        })
        .collect()
}

fn first_entry(dir: &Path) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .min()
        .ok_or_else(|| format!("{} is empty", dir.display()))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

async fn listens(at: &Endpoint) -> bool {
    let connect = tokio::net::TcpStream::connect((at.host.as_str(), at.port));
    matches!(tokio::time::timeout(PROBE_TIMEOUT, connect).await, Ok(Ok(_)))
}

async fn until_listening(at: &Endpoint) {
    while !listens(at).await {
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests;
