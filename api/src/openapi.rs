//! The OpenAPI 3 document, generated from the handlers and types (`GET /openapi.json`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{events, ops, verifications, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phone-verify",
        description = "Starts phone-number verifications (an SMS with a one-time code, sent through Twilio by workers) and checks codes. With EVENTS_URL set, the changes are POSTed there as the schema `Event` (Standard Webhooks signatures)."
    ),
    paths(
        verifications::start,
        verifications::check,
        verifications::get,
        webhooks::twilio_status,
        webhooks::call_status,
        ops::queues,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    components(schemas(events::Event, events::EventType, events::EventData)),
    modifiers(&BearerAuth),
    tags(
        (name = "verifications", description = "Start a verification, check a code, read a verification"),
        (name = "webhooks", description = "Twilio's delivery status callbacks"),
        (name = "ops", description = "Health, readiness, metrics, queue depth"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `GET /openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route_of_the_contract() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for path in [
            "/v1/verifications",
            "/v1/verifications/check",
            "/v1/verifications/{id}",
            "/v1/webhooks/twilio/status",
            "/v1/ops/queues",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        let event_types = &doc["components"]["schemas"]["EventType"];
        assert!(
            event_types.to_string().contains("verification.max_attempts_reached"),
            "{event_types}"
        );
        assert!(doc["components"]["schemas"]["Event"]["properties"]["data"].is_object());
        let statuses = &doc["components"]["schemas"]["VerificationStatus"]["enum"];
        assert!(statuses.to_string().contains("max_attempts_reached"), "{statuses}");
        let delivery = &doc["components"]["schemas"]["DeliveryStatus"]["enum"];
        assert!(delivery.to_string().contains("undelivered"), "{delivery}");
        for path in ["/v1/verifications", "/v1/verifications/check"] {
            let post = &doc["paths"][path]["post"];
            let header = &post["parameters"][0];
            assert_eq!(
                (header["name"].as_str(), header["in"].as_str()),
                (Some("Idempotency-Key"), Some("header")),
                "{path}"
            );
            assert_eq!(header["schema"]["maxLength"], 255, "{header}");
            for status in ["409", "422"] {
                assert!(post["responses"][status].is_object(), "{path} {status}");
            }
        }
    }
}
