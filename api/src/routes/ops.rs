//! Health, readiness, metrics, queue depth, and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use common::broker::QueueView;

/// How long `/readyz` waits for each dependency: an outage shows well within 5 s.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Whether each dependency answers.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `up` or `down`
    #[schema(example = "up")]
    database: &'static str,
    /// `up` or `down`
    #[schema(example = "up")]
    broker: &'static str,
    /// `host:port` of the RabbitMQ node in use (one of `AMQP_URL`'s list), absent while down
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "127.0.0.1:5672")]
    broker_node: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "The process runs", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 when PostgreSQL and RabbitMQ both answer, else 503; the body says which is down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "PostgreSQL and RabbitMQ answer", body = Readiness),
        (status = 503, description = "One of them does not", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, broker) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, common::repo::ping(&state.pool)),
        tokio::time::timeout(READY_TIMEOUT, state.publisher.ready_node()),
    );
    let up = |up: bool| if up { "up" } else { "down" };
    let broker_node = broker.ok().flatten();
    let readiness = Readiness {
        database: up(database.unwrap_or(false)),
        broker: up(broker_node.is_some()),
        broker_node,
    };
    let status = if readiness.database == "up" && readiness.broker == "up" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render() + &state.guard_metrics.render(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct Queues {
    queues: Vec<QueueView>,
}

/// `GET /v1/ops/queues`: every queue of the topology with its ready messages, consumers and
/// the age of the oldest send waiting in it.
#[utoipa::path(
    get,
    path = "/v1/ops/queues",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The send queue, each retry queue, the dead-letter queue", body = Queues),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`: RabbitMQ or PostgreSQL does not answer", body = ErrorBody),
    )
)]
pub async fn queues(State(state): State<AppState>) -> Result<Json<Queues>, ApiError> {
    let queues = crate::monitor::queue_views(&state.pool, &state.publisher)
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(Json(Queues { queues }))
}
