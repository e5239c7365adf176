//! Connecting to RabbitMQ: one named connection per process, to one node of a list.
//!
//! `AMQP_URL` may name the nodes of a cluster as a comma-separated list of URLs, as
//! RabbitMQ's own clients take an address list. A connection goes to the first node that
//! answers, starting with the node after the one used last: after a lost connection the
//! process moves on to the next node instead of waiting for the lost one to come back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

/// How long one node of a list may take to accept a connection before the next is tried:
/// a host that is down drops packets instead of refusing, and TCP alone would wait minutes.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The nodes of `AMQP_URL`, in order, and where the next connection starts.
pub struct Nodes {
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Nodes {
    /// Splits a comma-separated list of URLs (one URL is a list of one). The value was
    /// checked at start-up ([`crate::settings::amqp_url`]).
    pub fn new(list: &str) -> Self {
        Self {
            urls: split(list).map(str::to_owned).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the first node that answers, trying each node once, starting after the
    /// node used last (a node that failed is passed over by the next call too, even one
    /// cancelled by its caller's timeout). Returns the connection and the node's `host:port` (never the URL,
    /// which may hold a password); the error of the last node when none answers.
    pub async fn connect(&self, connection_name: &str) -> lapin::Result<(Connection, String)> {
        let start = self.next.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.urls.len() {
            let index = (start + step) % self.urls.len();
            let url = &self.urls[index];
            let props = ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
            // Whatever comes of this attempt (a connection later lost, a failure, the caller
            // giving up on it), the next call starts with the next node.
            self.next.store(index + 1, Ordering::Relaxed);
            let attempt = tokio::time::timeout(NODE_CONNECT_TIMEOUT, Connection::connect(url, props)).await;
            match attempt {
                Ok(Ok(conn)) => return Ok((conn, node_label(url))),
                Ok(Err(e)) => {
                    tracing::warn!(node = node_label(url), error = %e, "RabbitMQ node did not accept a connection");
                    last_error = Some(e);
                }
                Err(_) => {
                    tracing::warn!(node = node_label(url), "RabbitMQ node did not answer in time");
                    let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out connecting");
                    last_error = Some(lapin::Error::from(timed_out));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "AMQP_URL names no node",
            ))
        }))
    }
}

/// Opens one connection to the first node of `list` that answers (each connection costs an
/// OS thread in lapin: one per process is the rule). For one-shot commands; a process that
/// reconnects keeps a [`Nodes`] so that it moves on along the list.
pub async fn connect(list: &str, connection_name: &str) -> lapin::Result<Connection> {
    Nodes::new(list).connect(connection_name).await.map(|(conn, _)| conn)
}

/// The URLs of a comma-separated list, trimmed, empty entries skipped.
pub fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|url| !url.is_empty())
}

/// `host:port` of a node's URL, for logs and `/readyz`.
pub fn node_label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let default_port = if parsed.scheme() == "amqps" { 5671 } else { 5672 };
            format!(
                "{}:{}",
                parsed.host_str().unwrap_or("?"),
                parsed.port().unwrap_or(default_port)
            )
        }
        Err(_) => "?".into(),
    }
}

/// The node a long-lived connection uses now, `None` while it has none; `/readyz` shows it.
#[derive(Default)]
pub struct NodeInUse(Mutex<Option<String>>);

impl NodeInUse {
    pub fn set(&self, node: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = node;
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_and_trimmed_and_its_nodes_are_named_without_credentials() {
        let list = "amqp://u:secret@10.0.0.1:5681/%2f, amqps://u:p@rabbit-2/vh ,,amqp://rabbit-3/%2f";
        let nodes: Vec<&str> = split(list).collect();
        assert_eq!(nodes.len(), 3);
        assert_eq!(node_label(nodes[0]), "10.0.0.1:5681");
        assert_eq!(node_label(nodes[1]), "rabbit-2:5671");
        assert_eq!(node_label(nodes[2]), "rabbit-3:5672");
        assert_eq!(Nodes::new(list).urls, nodes);
    }

    #[tokio::test]
    async fn no_node_answering_is_an_error_naming_what_the_last_node_did() {
        // Two closed ports on this host: each refuses at once.
        let closed = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let list = format!("amqp://127.0.0.1:{}/%2f,amqp://127.0.0.1:{}/%2f", closed(), closed());
        let nodes = Nodes::new(&list);
        let err = nodes.connect("test").await.unwrap_err();
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
        assert!(Nodes::new(" ,").connect("test").await.is_err());
    }
}
