//! The OpenAPI 3.1 document of the whole API, assembled from the handlers' annotations
//! and made exact by [`document`]: the limits the server is configured with, and the
//! ranges of unsigned integers, which the annotations cannot state.

use super::{
    admin, catalog, cluster, demo, events, metrics, ops, overview, queue, reservations, seatmap,
    tickets, wallet,
};
use crate::domain::Rules;
use crate::domain::catalog::NAME_PATTERN;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Concert seat sales: waiting rooms, seat holds, wallet and payments. The web page is served at `/`. Streams a browser opens with `EventSource` (which cannot send an Authorization header): the seat map stream is public; the queue entry stream is opened with a 60-second ticket from `POST /api/v1/concerts/{concertId}/queue/stream-ticket`, which opens that stream only. In cluster mode (`--log nats://...`) one node leads and takes writes: a write (`POST`, `PUT`, `PATCH`, `DELETE`) sent to a follower is answered 307 with `Location` on the leader and a problem+json `NOT_LEADER` body, or 503 `NOT_LEADER` with `Retry-After` while no leader is known; `GET /health/ready` tells a node's role."),
    paths(
        catalog::create_concert, catalog::list_concerts, catalog::get_concert, catalog::list_dates,
        catalog::get_date, catalog::list_seats,
        seatmap::layout, seatmap::seatmap, seatmap::stream,
        queue::join, queue::get_entry, queue::leave, queue::stream_ticket, queue::stream,
        reservations::hold, reservations::list, reservations::get_one, reservations::cancel,
        reservations::refund,
        wallet::balance, wallet::charge, wallet::transactions, wallet::pay, wallet::payments,
        events::page, events::stream,
        tickets::list, tickets::check_in,
        admin::pause, admin::resume, admin::cancel, admin::date_sales, admin::concert_sales,
        admin::date_reservations, admin::user_reservations,
        ops::health, cluster::ready, metrics::metrics, overview::overview,
        demo::token,
    ),
    modifiers(&Security),
    tags(
        (name = "catalog", description = "Concerts, dates and seats"),
        (name = "seatmap", description = "The live seat map: a cacheable layout, a compact map with ETag, and a stream of committed changes"),
        (name = "queue", description = "The waiting room of a concert"),
        (name = "reservations", description = "Seat holds"),
        (name = "wallet", description = "Prepaid wallet"),
        (name = "payments", description = "Paying a hold from the wallet"),
        (name = "events", description = "The event feed: every committed change as a public event, in commit order"),
        (name = "tickets", description = "Tickets of paid seats, and check-in at the door"),
        (name = "demo", description = "Demo start only: tokens for users 1 to 3 (404 otherwise)"),
        (name = "operations", description = "The operator's box office (pause, resume, cancel, sales, reservations, overview), health, metrics and documentation"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let user = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("HS256 JWT: sub = user id (decimal), exp required"))
            .build();
        let admin = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The admin key"))
            .build();
        components.add_security_scheme("user", SecurityScheme::Http(user));
        components.add_security_scheme("admin", SecurityScheme::Http(admin));
        let scanner = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The scanner key (--scanner-key): check-ins only"))
            .build();
        components.add_security_scheme("scanner", SecurityScheme::Http(scanner));
    }
}

/// A feed cursor: twenty digits, a dash, six digits.
pub const CURSOR_PATTERN: &str = "^[0-9]{20}-[0-9]{6}$";

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";

/// The document as the server keeps it: [`ApiDoc`] with the configured limits (largest
/// charge and price, seats per reservation and per date), the name rules, the
/// `Idempotency-Key` rules, positive ids, and unsigned integers stated as their real
/// range (the annotations would call a `u32` an `int32` and a `u64` an `int64`).
pub fn document(rules: &Rules) -> utoipa::openapi::OpenApi {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    unsigned_ranges(&mut doc);
    let schemas = "/components/schemas";
    let seats_per_date_max = json!(rules.catalog.seats_per_date_max);
    let limits = [
        (
            "SectionSpec/properties/price/maximum",
            json!(rules.wallet.balance_max.0),
        ),
        (
            "SectionSpec/properties/rows/maximum",
            seats_per_date_max.clone(),
        ),
        (
            "SectionSpec/properties/seatsPerRow/maximum",
            seats_per_date_max,
        ),
        ("ChargeRequest/properties/amount/minimum", json!(1)),
        (
            "ChargeRequest/properties/amount/maximum",
            json!(rules.wallet.charge_max.0),
        ),
        (
            "HoldRequest/properties/seatIds/maxItems",
            json!(rules.date.seats_per_reservation_max),
        ),
        ("HoldRequest/properties/seatIds/uniqueItems", json!(true)),
        ("ConcertSpec/properties/title/pattern", json!(NAME_PATTERN)),
        ("ConcertSpec/properties/venue/pattern", json!(NAME_PATTERN)),
        ("SectionSpec/properties/name/pattern", json!(NAME_PATTERN)),
        // Ids are positive (a user id too: `sub` "0" is refused).
        ("ConcertId/minimum", json!(1)),
        ("DateId/minimum", json!(1)),
        ("SeatId/minimum", json!(1)),
        ("UserId/minimum", json!(1)),
    ];
    for (pointer, value) in limits {
        set(&mut doc, &format!("{schemas}/{pointer}"), value);
    }
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operation.values_mut() {
            document_malformed_path(operation);
            let Some(parameters) = operation["parameters"].as_array_mut() else {
                continue;
            };
            for parameter in parameters {
                match parameter["name"].as_str() {
                    Some("Idempotency-Key") => {
                        parameter["schema"] = json!({"type": "string", "minLength": 1,
                            "maxLength": super::extract::IDEMPOTENCY_KEY_LEN_MAX,
                            "pattern": IDEMPOTENCY_KEY_PATTERN});
                    }
                    Some("concertId" | "dateId") => parameter["schema"]["minimum"] = json!(1),
                    // A cursor (not a reservation page's `after`, which is a UUID).
                    Some("after") if parameter["schema"]["format"] != "uuid" => {
                        parameter["schema"] = json!({"type": "string", "pattern": CURSOR_PATTERN});
                    }
                    _ => {}
                }
            }
        }
    }
    serde_json::from_value(doc).expect("the exact document is still an OpenAPI document")
}

/// Every operation with a path parameter answers 400 `INVALID_REQUEST` for a malformed
/// one (an id that is not a number, or too large for its type; a reservation id that is
/// not a UUID): say so where the annotations did not.
fn document_malformed_path(operation: &mut Value) {
    let has_path_parameter = operation["parameters"]
        .as_array()
        .is_some_and(|parameters| parameters.iter().any(|p| p["in"] == "path"));
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if has_path_parameter && !responses.contains_key("400") {
        responses.insert(
            "400".to_owned(),
            json!({
                "description": "INVALID_REQUEST (a malformed path parameter)",
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}
            }),
        );
    }
}

/// Sets the member a JSON pointer names; its parent must exist.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, member) = pointer.rsplit_once('/').expect("a pointer has a parent");
    let parent = doc
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the document has {parent}"));
    parent.insert(member.to_owned(), value);
}

/// Integers that are `int32` or `int64` with a minimum of 0 are the annotations' `u32`
/// and `u64`: they lose the signed format and get their real maximum.
fn unsigned_ranges(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let unsigned = object.get("type") == Some(&json!("integer"))
                && object.get("minimum") == Some(&json!(0));
            let maximum = match object.get("format").and_then(Value::as_str) {
                Some("int32") if unsigned => Some(json!(u32::MAX)),
                Some("int64") if unsigned => Some(json!(u64::MAX)),
                _ => None,
            };
            if let Some(maximum) = maximum {
                object.remove("format");
                object.insert("maximum".to_owned(), maximum);
            }
            object.values_mut().for_each(unsigned_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn exact() -> Value {
        serde_json::to_value(document(&Config::default().rules())).unwrap()
    }

    #[test]
    fn every_operation_with_a_path_parameter_documents_its_400() {
        let doc = exact();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let in_path = operation["parameters"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["in"] == "path"));
                if in_path {
                    assert!(operation["responses"]["400"].is_object(), "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn unsigned_ids_state_their_whole_range() {
        let doc = exact();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["SeatId"]["maximum"], json!(u32::MAX));
        assert_eq!(schemas["UserId"]["maximum"], json!(u64::MAX));
        assert_eq!(schemas["UserId"]["minimum"], 1);
        assert!(schemas["SeatId"].get("format").is_none());
    }

    #[test]
    fn the_configured_limits_are_in_the_document() {
        let config = Config {
            max_charge: 777,
            max_balance: 888,
            max_seats_per_reservation: 3,
            ..Config::default()
        };
        let doc = serde_json::to_value(document(&config.rules())).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ChargeRequest"]["properties"]["amount"]["maximum"],
            777
        );
        assert_eq!(
            schemas["SectionSpec"]["properties"]["price"]["maximum"],
            888
        );
        assert_eq!(
            schemas["HoldRequest"]["properties"]["seatIds"]["maxItems"],
            3
        );
        assert_eq!(
            schemas["ConcertSpec"]["properties"]["title"]["pattern"],
            NAME_PATTERN
        );
    }

    #[test]
    fn every_idempotency_key_parameter_states_its_rules() {
        let doc = exact();
        let mut seen = 0;
        for operation in doc["paths"].as_object().unwrap().values() {
            for operation in operation.as_object().unwrap().values() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["name"] == "Idempotency-Key" {
                        assert_eq!(parameter["schema"]["pattern"], IDEMPOTENCY_KEY_PATTERN);
                        seen += 1;
                    }
                }
            }
        }
        assert_eq!(seen, 2);
    }
}
