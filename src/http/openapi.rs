//! The OpenAPI 3.1 document of the whole API, assembled from the handlers' annotations.

use super::{admin, catalog, metrics, ops, queue, reservations, tickets, wallet};
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The API document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Concert seat sales: waiting rooms, seat holds, wallet and payments."),
    paths(
        catalog::create_concert, catalog::list_concerts, catalog::get_concert, catalog::list_dates,
        catalog::get_date, catalog::list_seats,
        queue::join, queue::get_entry, queue::leave,
        reservations::hold, reservations::list, reservations::get_one, reservations::cancel,
        reservations::refund,
        wallet::balance, wallet::charge, wallet::transactions, wallet::pay, wallet::payments,
        tickets::list, tickets::check_in,
        admin::pause, admin::resume, admin::cancel, admin::date_sales, admin::concert_sales,
        admin::date_reservations, admin::user_reservations,
        ops::health, metrics::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "catalog", description = "Concerts, dates and seats"),
        (name = "queue", description = "The waiting room of a concert"),
        (name = "reservations", description = "Seat holds"),
        (name = "wallet", description = "Prepaid wallet"),
        (name = "payments", description = "Paying a hold from the wallet"),
        (name = "tickets", description = "Tickets of paid seats, and check-in at the door"),
        (name = "operations", description = "The operator's box office (pause, resume, cancel, sales, reservations), health, metrics and documentation"),
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
