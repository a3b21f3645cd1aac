#![forbid(unsafe_code)]
#![doc = include_str!("ARCHITECTURE.md")]
//!
//! # Crate map
//!
//! - [`domain`]: pure types and state machines (catalog, date, queue, wallet), the
//!   rules and the image of all state; no I/O, no clock, no channels. Start here.
//! - [`store`]: durability: the log seam, the file log, snapshots, recovery.
//! - [`engine`]: the actors that own the domain state, their handles, the journal
//!   every reply passes through, and the read views GETs are served from.
//! - [`http`]: axum routes per area, extractors, authentication, problem+json errors,
//!   request observation and metrics, the OpenAPI document and Swagger UI; serving
//!   connections (read timeouts, the connection cap, load shedding, the bounded drain
//!   at shutdown).
//! - [`config`]: command line and environment.
//! - [`outbox`]: the relay that publishes the event feed to NATS JetStream.
//! - [`app`]: wiring: opens the store, starts the engine, builds the router, serves on
//!   a bound listener.

pub mod app;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod outbox;
pub mod store;
