//! `verify-worker stats`: the queues as an operator sees them in a terminal.

use std::io::Write;

use common::broker::{QueueView, join_ages, queue_depths};
use sqlx::PgPool;

use crate::config::WorkerConfig;

/// Reads every queue's depth (passive declares) and waiting age (PostgreSQL).
pub async fn read(config: &WorkerConfig, pool: &PgPool) -> anyhow::Result<Vec<QueueView>> {
    let conn = common::broker::connect(config.shared.amqp_url.expose(), "verify-worker stats").await?;
    let channel = conn.create_channel().await?;
    config.shared.topology.declare(&channel).await?;
    let depths = queue_depths(&channel, &config.shared.topology.queues()).await?;
    conn.close(200, "stats".into()).await?;
    let topology = &config.shared.topology;
    let ages = common::repo::oldest_waiting(pool, topology.send_queue(), &topology.dead_letter_queue()).await?;
    Ok(join_ages(depths, &ages))
}

/// The table `verify-worker stats` prints.
pub fn print(views: &[QueueView], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40} {:>10} {:>10} {:>14}",
        "queue", "ready", "consumers", "oldest wait"
    )?;
    for v in views {
        let age = v
            .oldest_queued_age_seconds
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s"));
        writeln!(
            out,
            "{:<40} {:>10} {:>10} {:>14}",
            v.name, v.messages_ready, v.consumers, age
        )?;
    }
    let ready: u32 = views.iter().map(|v| v.messages_ready).sum();
    writeln!(out, "{ready} message(s) waiting in {} queue(s)", views.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_queue_and_a_total() {
        let views = vec![
            QueueView {
                name: "sms.send".into(),
                messages_ready: 12,
                consumers: 3,
                oldest_queued_age_seconds: Some(4.25),
            },
            QueueView {
                name: "sms.send.dead".into(),
                messages_ready: 1,
                consumers: 0,
                oldest_queued_age_seconds: None,
            },
        ];
        let mut out = Vec::new();
        print(&views, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().nth(1).unwrap().contains("sms.send") && text.contains("4.2 s"),
            "{text}"
        );
        assert!(text.ends_with("13 message(s) waiting in 2 queue(s)\n"), "{text}");
    }
}
