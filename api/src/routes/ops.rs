//! Health, readiness, metrics and queue depth.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use common::broker::QueueDepth;
use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// How long `/readyz` waits for each dependency: an outage shows well within 5 s.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when PostgreSQL and RabbitMQ both answer, else 503; the body says which is down.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (database, broker) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, common::repo::ping(&state.pool)),
        tokio::time::timeout(READY_TIMEOUT, state.publisher.is_ready()),
    );
    let up = |r: Result<bool, _>| if r.unwrap_or(false) { "up" } else { "down" };
    let (database, broker) = (up(database), up(broker));
    let status = if database == "up" && broker == "up" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"database": database, "broker": broker})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

#[derive(Serialize)]
pub struct Queues {
    queues: Vec<QueueDepth>,
}

/// `GET /v1/ops/queues`: ready messages and consumers of every queue of the topology.
pub async fn queues(State(state): State<AppState>) -> Result<Json<Queues>, ApiError> {
    let queues = state.publisher.queue_depths().await.map_err(ApiError::Unavailable)?;
    Ok(Json(Queues { queues }))
}
