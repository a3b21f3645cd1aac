#![forbid(unsafe_code)]
//! boxoffice: a concert ticketing engine.
//!
//! Crate map:
//! - [`domain`]: pure types and state machines (catalog, date, queue, wallet); no I/O.
pub mod domain;
pub mod engine;
