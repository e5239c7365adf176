//! Building and running the HTTP application: the router and its middleware, the start (the
//! background tasks come from [`crate::tasks`]) and the order of the shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::broker::Publisher;
use common::code::CodeHasher;
use common::metric_names as names;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::require_api_key;
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::idempotency::{idempotent_check, idempotent_start};
use crate::routes::{ops, verifications, webhooks};
use crate::state::AppState;
use crate::tasks::Tasks;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// No request may take longer; a slow dependency gives the client an answer, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait at shutdown for the dispatcher to publish the jobs of the last starts.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);
/// Connections of DATABASE_MAX_CONNECTIONS kept for the batch statements: one each for the
/// start writer, the check reserver, the settler of published jobs' outbox rows and the
/// outbox relay (each runs one statement at a time).
const BATCH_CONNECTIONS: u32 = 4;

/// The router, callable from tests with any state.
pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route(
            "/v1/verifications",
            post(verifications::start).layer(middleware::from_fn_with_state(state.clone(), idempotent_start)),
        )
        .route(
            "/v1/verifications/check",
            post(verifications::check).layer(middleware::from_fn_with_state(state.clone(), idempotent_check)),
        )
        .route("/v1/verifications/{id}", get(verifications::get))
        .route("/v1/ops/queues", get(ops::queues))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .merge(authenticated)
        .route(webhooks::PATH, post(webhooks::twilio_status))
        .route(webhooks::CALL_PATH, post(webhooks::call_status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(crate::openapi::document))
        .route_layer(middleware::from_fn(track_http))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                // One line per request, with status and latency, in the request's span.
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // A bug answers the same JSON 500 as any internal error, never a stack trace.
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .with_state(state)
}

/// Counts every routed request by route template (never the raw path: ids would make
/// unbounded labels), method and status, and records its latency.
async fn track_http(request: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A bound, ready-to-run API. Binding happens in [`Application::build`], so `API_LISTEN`
/// may use port 0 and tests read the real port from [`Application::port`].
pub struct Application {
    listener: TcpListener,
    config: ApiConfig,
    pool: PgPool,
    /// The batch statements' connections ([`common::db::custom_plan_pool`]).
    batch_pool: PgPool,
    publisher: Arc<Publisher>,
    metrics: PrometheusHandle,
}

impl Application {
    pub async fn build(config: ApiConfig, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", config.listen))?;
        Self::with_listener(config, listener, shutdown).await
    }

    /// Like [`Application::build`] on a listener bound by the caller (tests bind first to
    /// learn the port that `PUBLIC_BASE_URL` must name).
    pub async fn with_listener(
        config: ApiConfig,
        listener: TcpListener,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let (pool, batch_pool) = common::db::split_pools(
            config.shared.database_url.expose(),
            config.shared.database_max_connections,
            BATCH_CONNECTIONS,
            config.shared.events.enabled(),
        )?;
        common::db::migrate_when_ready(&pool, shutdown).await?;
        common::db::warm(&pool, std::time::Duration::from_secs(5)).await;
        crate::batch::warm(&pool, &batch_pool, std::time::Duration::from_secs(5)).await;
        let publisher = Publisher::new(
            config.shared.amqp_url.expose(),
            "verify-api",
            config.shared.topology.clone(),
            config.publish_timeout,
        );
        // Connect now so the first request does not pay for it; an outage here is not fatal.
        if let Err(e) = publisher.channel().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "RabbitMQ not reachable yet; will retry on demand"
            );
        }
        // The recorder must be installed before the metrics are registered with it.
        let metrics = common::observability::metrics_handle();
        names::register(&[
            names::VERIFICATIONS_STARTED,
            names::TEST_STARTS,
            names::PREFIX_PAUSES,
            names::PUMPING_EVALUATIONS,
            names::PUMPING_JUDGED_UNTIL,
            names::OUTBOX_RELAYED,
            names::DEAD_LETTER_MESSAGES,
            names::OLDEST_QUEUED_AGE,
        ]);
        for reason in ["rate_limited", "suspected_pumping", "budget_exhausted"] {
            metrics::counter!(names::STARTS_REFUSED, "reason" => reason).increment(0);
        }
        metrics::counter!(names::PUMPING_SUSPECTED, "mode" => config.pumping.mode.as_str()).increment(0);
        crate::fallback::register_metrics();
        Ok(Self {
            listener,
            config,
            pool,
            batch_pool,
            publisher: Arc::new(publisher),
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Starts the background tasks and serves until `shutdown`; then, in this order: stops
    /// accepting and cancels the periodic tasks (relay, janitor, retention, monitor), lets
    /// in-flight requests finish (within `SHUTDOWN_GRACE_SECONDS`), lets the dispatcher publish
    /// the jobs of the last committed starts (within [`DRAIN_WITHIN`]; what is left is the
    /// relay's), and waits for every background task to end ([`Tasks::stop`]: within what is
    /// left of the grace period).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            config,
            pool,
            batch_pool,
            publisher,
            metrics,
        } = self;
        let grace = config.shared.shutdown_grace;
        tracing::info!(addr = %listener.local_addr()?, "verify-api listening");
        let tests = &config.test_numbers.test_numbers;
        if !tests.is_empty() {
            tracing::info!(
                count = tests.len(),
                numbers = tests.masked().join(", "),
                "test numbers configured: they get no message and take their fixed code"
            );
        }
        let hasher = CodeHasher::new(config.verify_secret.clone());
        let (tasks, pipeline) = Tasks::start(&config, &pool, &batch_pool, &publisher, &hasher, shutdown.child_token());
        let dispatcher = pipeline.dispatcher.clone();
        let state = AppState::new(config, pool, publisher, hasher, metrics, pipeline);
        let (served, deadline) = serve(listener, state, &shutdown, grace).await;
        // Publish what the last starts committed; anything left is the relay's.
        let left = dispatcher.drain(DRAIN_WITHIN).await;
        if left > 0 {
            tracing::warn!(unpublished = left, "send jobs left to the outbox relay at shutdown");
        }
        // The last handle (the start writers' went with the router): the dispatchers end once it
        // is gone, then the settler.
        drop(dispatcher);
        tasks.stop(deadline).await;
        served
    }
}

/// Serves `state` until `shutdown`, then waits (within `grace`) for in-flight requests. The
/// router, and with it the request path's handles of the background tasks, is dropped on
/// return. Returns how serving ended and the end of the grace period.
async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: &CancellationToken,
    grace: Duration,
) -> (anyhow::Result<()>, Instant) {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return (result.context("HTTP server failed"), Instant::now() + grace),
        _ = shutdown.cancelled() => {}
    }
    let deadline = Instant::now() + grace;
    let served = match tokio::time::timeout_at(deadline, server).await {
        Ok(result) => result.context("HTTP server failed"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within the grace period");
            Ok(())
        }
    };
    (served, deadline)
}
