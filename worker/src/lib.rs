//! `verify-worker`: consumes send jobs from RabbitMQ and sends each code by SMS through
//! Twilio's REST API, retrying transient failures with exponential backoff and recording
//! every attempt and the delivery status in PostgreSQL.

mod batcher;
pub mod classify;
pub mod config;
mod consumer;
pub mod database;
pub mod dead_letters;
pub mod events;
pub mod finish;
mod http;
mod outbound;
pub mod retry;
pub mod send;
pub mod sms;
pub mod stats;
pub mod twilio;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;

/// A bound, ready-to-run worker (its health listener bound, so port 0 works in tests).
pub struct Worker {
    listener: TcpListener,
    ctx: Arc<send::SendContext>,
}

impl Worker {
    pub async fn build(config: WorkerConfig, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        // One connection for the batches of 201s (prepared statements planned at every
        // execution), the rest for everything else.
        let (pool, finish_pool) = common::db::split_pools(
            config.shared.database_url.expose(),
            config.shared.database_max_connections,
            1,
            config.shared.events.enabled(),
        )?;
        common::db::migrate_when_ready(&pool, shutdown).await?;
        common::db::warm(&pool, std::time::Duration::from_secs(5)).await;
        // The first run of a statement on a connection loads its catalog caches: an empty
        // batch pays it before the first burst does.
        if let Err(e) = common::repo::finish_submitted(&finish_pool, &[]).await {
            tracing::warn!(error = %e, "warming the 201 statement failed; going on");
        }
        let twilio = twilio::TwilioClient::new(
            &config.twilio_api_base,
            &config.shared.twilio_account_sid,
            config.shared.twilio_auth_token.clone(),
            config.twilio_timeout,
        )?;
        let events = events::EventSender::new(
            &config.shared.events,
            &config.shared.topology,
            config.events_timeout,
            config.events_concurrency,
        )?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", config.listen))?;
        Ok(Self {
            listener,
            ctx: Arc::new(send::SendContext {
                finisher: finish::Finisher::spawn(finish_pool),
                claimer: send::claimer(pool.clone(), &config),
                slots: Arc::new(tokio::sync::Semaphore::new(usize::from(config.concurrency))),
                database: database::DatabaseGate::new(pool.clone()),
                pool,
                twilio,
                texts: config.texts(),
                events,
                config,
            }),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Consumes until `shutdown`, then finishes in-flight sends within the grace period.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consuming = Arc::new(common::broker::NodeInUse::default());
        let health = http::router(http::HealthState {
            pool: self.ctx.pool.clone(),
            database: self.ctx.database.clone(),
            consuming: Arc::clone(&consuming),
            metrics: common::observability::metrics_handle(),
        });
        use common::metric_names as names;
        names::register(&[names::DEAD_LETTERS, names::SENDS_IN_FLIGHT]);
        let stop = shutdown.clone();
        let server = axum::serve(self.listener, health).with_graceful_shutdown(async move { stop.cancelled().await });
        let server = tokio::spawn(server.into_future());
        let retention = tokio::spawn(common::retention::run(
            self.ctx.pool.clone(),
            self.ctx.config.shared.retention_days,
            shutdown.clone(),
        ));
        let result = consumer::run(Arc::clone(&self.ctx), consuming, shutdown).await;
        server.abort();
        retention.abort();
        self.ctx.pool.close().await;
        result
    }
}
