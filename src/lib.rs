#![forbid(unsafe_code)]
//! boxoffice: a concert ticketing engine.
//!
//! One process, all state in memory, every piece of state owned by one tokio actor
//! that takes its messages one at a time. Crate map:
//!
//! - [`domain`]: pure types and state machines (catalog, date, queue, wallet); no I/O,
//!   no clock, no channels. Start reading here.
//! - [`engine`]: the actors that own the domain state, their handles, the journal that
//!   every reply passes through, and the read views GETs are served from.
//! - [`http`]: axum routes per area, extractors, authentication, problem+json errors,
//!   the OpenAPI document and Swagger UI; serving connections (read timeouts, the
//!   connection cap, load shedding, the bounded drain at shutdown).
//! - [`config`]: command line and environment.
//! - [`app`]: wiring: builds engine and router, serves on a bound listener.

pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod store;
