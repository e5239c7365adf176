//! Connecting to RabbitMQ: one named connection per process.

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

/// Opens one connection (each costs an OS thread in lapin: one per process is the rule).
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    Connection::connect(url, props).await
}
