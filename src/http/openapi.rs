//! The OpenAPI 3.1 document of the whole API, assembled from the handlers' annotations.

use super::{catalog, demo, events, metrics, ops, overview, queue, reservations, seatmap, wallet};
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The API document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Concert seat sales: waiting rooms, seat holds, wallet and payments. The web page is served at `/`. Streams a browser opens with `EventSource` (which cannot send an Authorization header): the seat map stream is public; the queue entry stream is opened with a 60-second ticket from `POST /api/v1/concerts/{concertId}/queue/stream-ticket`, which opens that stream only."),
    paths(
        catalog::create_concert, catalog::list_concerts, catalog::get_concert, catalog::list_dates,
        catalog::list_seats,
        seatmap::layout, seatmap::seatmap, seatmap::stream,
        queue::join, queue::get_entry, queue::leave, queue::stream_ticket, queue::stream,
        reservations::hold, reservations::list, reservations::get_one, reservations::cancel,
        wallet::balance, wallet::charge, wallet::transactions, wallet::pay, wallet::payments,
        events::page, events::stream,
        ops::health, metrics::metrics, overview::overview,
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
        (name = "demo", description = "Demo start only: tokens for users 1 to 3 (404 otherwise)"),
        (name = "operations", description = "Health, metrics and documentation"),
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
    }
}
