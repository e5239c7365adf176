//! RabbitMQ: the queue topology, connections, and a publisher that waits for the broker's
//! confirm and reconnects on demand. One job per submodule:
//!
//! - `topology`: queue names, declarations and their arguments
//! - `connection`: opening a connection to one node of a list
//! - `publishing`: the confirming [`Publisher`], [`publish_confirmed`], message properties
//! - `inspection`: queue depths and the operators' queue views
//! - `event_pack`: several events to one message of the events queue
//!
//! Everything is re-exported here, so callers name `common::broker::…` only.

mod connection;
pub mod event_pack;
mod inspection;
mod publishing;
mod topology;

pub use connection::{NodeInUse, Nodes, connect, node_label, split as split_nodes};
pub use inspection::{QueueDepth, QueueView, join_ages, queue_depths};
pub use publishing::{Publisher, event_properties, job_properties, publish_confirmed};
pub use topology::{DELIVERY_LIMIT, EVENTS_DEAD_MAX, RETRY_TIERS, Topology};
