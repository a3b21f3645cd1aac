//! [`EngineMetrics`]: what a sale looks like to its operator, counted from the events
//! the log has made durable (so a counter never shows what a crash could take back),
//! plus the holds the engine refused, by code.
//!
//! [`EventCounter`] is a [`Tap`] on the log: the store calls it on the log-writer
//! thread with every durable batch, before anyone is told of it. Counters are atomics
//! (families take a brief read lock to find their series); nothing here waits on an
//! actor.

use crate::domain::date::DateEvent;
use crate::domain::queue::QueueEvent;
use crate::domain::wallet::WalletEvent;
use crate::domain::{ConcertId, Event, Rejection};
use crate::store::log::Tap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// A rejection's code, as a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    /// The rejection's code (`SEAT_UNAVAILABLE`, ...).
    pub code: &'static str,
}

/// A waiting-room transition, as labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabels {
    /// The concert.
    pub concert: u64,
    /// `joined`, `admitted`, `left`, `expired`, `completed`, `sold_out` or `reopened`.
    pub event: &'static str,
}

/// The engine's series.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Holds placed (durable).
    pub holds_placed: Counter,
    /// Holds refused, by code (from the views or the date actor).
    pub holds_rejected: Family<CodeLabel, Counter>,
    /// Holds that reached their deadline unpaid.
    pub holds_expired: Counter,
    /// Holds released by their holder.
    pub holds_cancelled: Counter,
    /// Reservations paid.
    pub payments: Counter,
    /// Won paid for reservations.
    pub payments_won: Counter,
    /// Wallet charges.
    pub charges: Counter,
    /// Won charged into wallets.
    pub charges_won: Counter,
    /// Waiting-room transitions per concert.
    pub queue_events: Family<QueueLabels, Counter>,
    /// Paid reservations refunded (by their holder or a date's cancellation).
    pub refunds: Counter,
    /// Won refunded to wallets.
    pub refunds_won: Counter,
    /// Tickets admitted at the door.
    pub tickets_admitted: Counter,
    /// Times an operator paused sales of a date.
    pub sales_paused: Counter,
    /// Dates cancelled.
    pub dates_cancelled: Counter,
}

impl EngineMetrics {
    /// Adds the series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "boxoffice_holds_placed",
                "Seat holds placed",
                &self.holds_placed,
            ),
            (
                "boxoffice_holds_expired",
                "Seat holds that reached their deadline unpaid",
                &self.holds_expired,
            ),
            (
                "boxoffice_holds_cancelled",
                "Seat holds released by their holder",
                &self.holds_cancelled,
            ),
            ("boxoffice_payments", "Reservations paid", &self.payments),
            (
                "boxoffice_payments_won",
                "Won paid for reservations",
                &self.payments_won,
            ),
            ("boxoffice_charges", "Wallet charges", &self.charges),
            (
                "boxoffice_charges_won",
                "Won charged into wallets",
                &self.charges_won,
            ),
            (
                "boxoffice_refunds",
                "Paid reservations refunded",
                &self.refunds,
            ),
            (
                "boxoffice_refunds_won",
                "Won refunded to wallets",
                &self.refunds_won,
            ),
            (
                "boxoffice_tickets_admitted",
                "Tickets admitted at the door",
                &self.tickets_admitted,
            ),
            (
                "boxoffice_sales_paused",
                "Times sales of a date were paused",
                &self.sales_paused,
            ),
            (
                "boxoffice_dates_cancelled",
                "Dates cancelled",
                &self.dates_cancelled,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "boxoffice_holds_rejected",
            "Seat holds refused, by error code",
            self.holds_rejected.clone(),
        );
        registry.register(
            "boxoffice_queue_events",
            "Waiting-room transitions per concert: joined, admitted, left, expired, completed, sold_out (one per concert sell-out), reopened (seats came back after one)",
            self.queue_events.clone(),
        );
    }

    /// Counts a refused hold.
    pub fn hold_rejected(&self, rejection: &Rejection) {
        self.holds_rejected
            .get_or_create(&CodeLabel {
                code: rejection.code(),
            })
            .inc();
    }

    /// Counts one durable event.
    pub fn count(&self, event: &Event) {
        match event {
            Event::Catalog(_) => {}
            Event::Date(_, DateEvent::SeatsHeld(_)) => {
                self.holds_placed.inc();
            }
            Event::Date(_, DateEvent::HoldCancelled { .. }) => {
                self.holds_cancelled.inc();
            }
            Event::Date(
                _,
                DateEvent::HoldsExpired {
                    reservation_ids, ..
                },
            ) => {
                self.holds_expired.inc_by(reservation_ids.len() as u64);
            }
            Event::Date(_, DateEvent::SalesPaused { .. }) => {
                self.sales_paused.inc();
            }
            Event::Date(_, DateEvent::SalesResumed { .. }) => {}
            Event::Date(_, DateEvent::DateCancelled { released, .. }) => {
                self.dates_cancelled.inc();
                self.holds_cancelled.inc_by(released.len() as u64);
            }
            Event::Date(_, DateEvent::TicketAdmitted { .. }) => {
                self.tickets_admitted.inc();
            }
            Event::Refunded(refund) => {
                self.refunds.inc();
                self.refunds_won.inc_by(refund.amount.0);
            }
            Event::Wallet(WalletEvent::Charged(charge)) => {
                self.charges.inc();
                self.charges_won.inc_by(charge.amount.0);
            }
            Event::Paid(payment) => {
                self.payments.inc();
                self.payments_won.inc_by(payment.amount.0);
                self.queue_event(payment.concert_id, "completed");
            }
            Event::Queue(concert, event) => {
                let name = match event {
                    QueueEvent::Joined { .. } => "joined",
                    QueueEvent::Admitted { .. } => "admitted",
                    QueueEvent::Left { .. } | QueueEvent::LeftAt { .. } => "left",
                    QueueEvent::Expired { .. } => "expired",
                    QueueEvent::SoldOut { .. } => "sold_out",
                    QueueEvent::Reopened { .. } => "reopened",
                    QueueEvent::HoldNoted { .. } | QueueEvent::HoldReleased { .. } => return,
                };
                self.queue_event(*concert, name);
            }
        }
    }

    fn queue_event(&self, concert: ConcertId, event: &'static str) {
        self.queue_events
            .get_or_create(&QueueLabels {
                concert: concert.0,
                event,
            })
            .inc();
    }
}

/// The [`Tap`] that counts durable events into [`EngineMetrics`].
pub struct EventCounter(pub Arc<EngineMetrics>);

impl Tap for EventCounter {
    fn committed(&mut self, _first_seq: u64, events: &Arc<[Event]>) {
        for event in events.iter() {
            self.0.count(event);
        }
    }
}
