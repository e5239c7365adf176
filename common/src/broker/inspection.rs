//! Operators' views of the queues: depth and consumers by passive declare, joined with the
//! waiting ages from the database.

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use serde::Serialize;

/// Depth of one queue, as a passive declare reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueDepth {
    pub name: String,
    pub messages_ready: u32,
    pub consumers: u32,
}

/// One queue as `GET /v1/ops/queues` and `verify-worker stats` show it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct QueueView {
    #[schema(example = "sms.send")]
    pub name: String,
    pub messages_ready: u32,
    pub consumers: u32,
    /// Seconds the oldest send waiting here has waited (from PostgreSQL); null when none waits.
    pub oldest_queued_age_seconds: Option<f64>,
}

/// Depths from the broker joined with waiting ages from the database
/// ([`crate::repo::oldest_waiting`]).
pub fn join_ages(depths: Vec<QueueDepth>, ages: &[(String, f64)]) -> Vec<QueueView> {
    depths
        .into_iter()
        .map(|d| {
            let oldest = ages.iter().find(|(q, _)| *q == d.name).map(|(_, age)| *age);
            QueueView {
                name: d.name,
                messages_ready: d.messages_ready,
                consumers: d.consumers,
                oldest_queued_age_seconds: oldest,
            }
        })
        .collect()
}

/// Reads the depth of each queue without creating any (passive declare).
pub async fn queue_depths(channel: &Channel, names: &[String]) -> lapin::Result<Vec<QueueDepth>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let q = channel
            .queue_declare(
                ShortString::from(name.as_str()),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await?;
        out.push(QueueDepth {
            name: name.clone(),
            messages_ready: q.message_count(),
            consumers: q.consumer_count(),
        });
    }
    Ok(out)
}
