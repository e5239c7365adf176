//! The worker's own small HTTP server: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sqlx::PgPool;

#[derive(Clone)]
pub struct HealthState {
    pub pool: PgPool,
    pub database: crate::database::DatabaseGate,
    /// The node the send queue's consumer is attached through, `None` while it is not.
    pub consuming: Arc<common::broker::NodeInUse>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while PostgreSQL answers and a consumer is attached to the send queue. While the
/// worker's jobs wait out a database outage it is not ready, even between two probes.
async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    let database = state.database.is_up()
        && tokio::time::timeout(Duration::from_secs(2), common::repo::ping(&state.pool))
            .await
            .unwrap_or(false);
    let node = state.consuming.get();
    let broker = node.is_some();
    let word = |up: bool| if up { "up" } else { "down" };
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"database": word(database), "broker": word(broker), "broker_node": node})),
    )
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
