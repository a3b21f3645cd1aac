//! The public events: what boxoffice tells the outside world about committed changes
//! (the admin event feed over HTTP and Server-Sent Events, and the outbox to NATS
//! JetStream). They are a published contract, version [`SCHEMA_VERSION`], kept apart
//! from the internal log types ([`Event`]), which may change between releases: a
//! change to these is a new version.
//!
//! Every public event carries:
//! - `cursor`: its place in the feed, `"{log sequence, 20 digits}-{index, 6 digits}"`
//!   (one logged record can make several public events: a payment is
//!   `reservation.paid` and `queue.completed`). Cursors are strictly increasing and
//!   compare as strings in commit order; log records with no public meaning make none,
//!   so cursors skip numbers.
//! - `prev`: the cursor of the event before it in the feed (`null` for the first event
//!   the server still keeps when read from the start). A consumer that checks
//!   `prev == the last cursor it saw` detects any gap.
//! - `type`, `at` (when it happened, RFC 3339; `null` only for `queue.left` events
//!   logged by versions before the time was recorded) and `version`.
//!
//! [`public_events`] maps one logged record to its public events. It is pure: what it
//! needs beyond the record (a reservation's user and seats, for its expiry or
//! payment) it asks `lookup`, which answers from reservations that never change once
//! made, so reading the same record twice gives the same events.

use super::catalog::CatalogEvent;
use super::date::{DateEvent, RefundReason, Reservation};
use super::queue::QueueEvent;
use super::wallet::WalletEvent;
use super::{
    ChargeId, ConcertId, DateId, Event, PaymentId, RefundId, ReservationId, SeatId, Ticket,
    TicketId, Timestamp, UserId, Won,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The version of the public event schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A place in the feed: the log record and the event's index among that record's
/// public events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The log sequence number of the record.
    pub seq: u64,
    /// The event's index among the record's public events.
    pub index: u32,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}-{:06}", self.seq, self.index)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a cursor (20 digits, '-', 6 digits)");
        let (seq, index) = text.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq, 20) || !digits(index, 6) {
            return Err(bad());
        }
        // Twenty digits can name more than a u64 holds; no record has such a number,
        // so such a cursor reads as one after every record there will ever be.
        let seq = seq.parse::<u128>().map_err(|_| bad())?;
        Ok(Cursor {
            seq: u64::try_from(seq).unwrap_or(u64::MAX),
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        to.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        let text = String::deserialize(from)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One public event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicEvent {
    /// Its place in the feed.
    #[schema(value_type = String, example = "00000000000000000042-000000")]
    pub cursor: Cursor,
    /// The cursor of the event before it in the feed.
    #[schema(value_type = Option<String>)]
    pub prev: Option<Cursor>,
    /// When it happened.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<Timestamp>,
    /// The schema version ([`SCHEMA_VERSION`]).
    pub version: u32,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened, by type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type")]
pub enum EventBody {
    /// A concert was created.
    #[serde(rename = "concert.created", rename_all = "camelCase")]
    ConcertCreated {
        /// The concert.
        concert_id: ConcertId,
        /// Its title.
        title: String,
        /// Its venue.
        venue: String,
        /// Its dates' ids.
        date_ids: Vec<DateId>,
    },
    /// Seats were held.
    #[serde(rename = "reservation.held", rename_all = "camelCase")]
    ReservationHeld {
        /// The reservation.
        #[serde(flatten)]
        reservation: ReservationFacts,
        /// When the hold ends unless paid.
        #[schema(value_type = String, format = DateTime)]
        expires_at: Timestamp,
    },
    /// A hold reached its deadline unpaid; its seats are free again.
    #[serde(rename = "reservation.expired", rename_all = "camelCase")]
    ReservationExpired {
        /// The reservation.
        #[serde(flatten)]
        reservation: ReservationFacts,
    },
    /// A holder released a hold; its seats are free again.
    #[serde(rename = "reservation.cancelled", rename_all = "camelCase")]
    ReservationCancelled {
        /// The reservation.
        #[serde(flatten)]
        reservation: ReservationFacts,
    },
    /// A hold was paid from the wallet; its seats are sold.
    #[serde(rename = "reservation.paid", rename_all = "camelCase")]
    ReservationPaid {
        /// The reservation.
        #[serde(flatten)]
        reservation: ReservationFacts,
        /// The payment.
        payment_id: PaymentId,
        /// The payer's balance after it.
        balance: Won,
    },
    /// A paid reservation was refunded to its payer's wallet: its seats are free
    /// again and its tickets void.
    #[serde(rename = "reservation.refunded", rename_all = "camelCase")]
    ReservationRefunded {
        /// The reservation.
        #[serde(flatten)]
        reservation: ReservationFacts,
        /// The refund (its ledger entry's id).
        refund_id: RefundId,
        /// The payer's balance after it.
        balance: Won,
        /// `REQUESTED` by the holder, or `DATE_CANCELLED`.
        reason: RefundReason,
    },
    /// A ticket was admitted at the door.
    #[serde(rename = "ticket.admitted", rename_all = "camelCase")]
    TicketAdmitted {
        /// The ticket.
        ticket_id: TicketId,
        /// Its reservation.
        reservation_id: ReservationId,
        /// The date.
        date_id: DateId,
        /// The seat.
        seat_id: SeatId,
    },
    /// The operator paused sales of a date: no new holds.
    #[serde(rename = "date.paused", rename_all = "camelCase")]
    DatePaused {
        /// The date.
        date_id: DateId,
    },
    /// The operator resumed sales of a date.
    #[serde(rename = "date.resumed", rename_all = "camelCase")]
    DateResumed {
        /// The date.
        date_id: DateId,
    },
    /// The operator cancelled a date: it sells nothing more; its live holds are
    /// released (a `reservation.cancelled` each follows) and its paid reservations
    /// refunded (a `reservation.refunded` each, later).
    #[serde(rename = "date.cancelled", rename_all = "camelCase")]
    DateCancelled {
        /// The date.
        date_id: DateId,
    },
    /// Money was added to a wallet.
    #[serde(rename = "wallet.charged", rename_all = "camelCase")]
    WalletCharged {
        /// Whose.
        user_id: UserId,
        /// The charge.
        charge_id: ChargeId,
        /// How much.
        amount: Won,
        /// The balance after it.
        balance: Won,
    },
    /// A user joined a waiting room.
    #[serde(rename = "queue.joined", rename_all = "camelCase")]
    QueueJoined {
        /// The concert.
        concert_id: ConcertId,
        /// Who.
        user_id: UserId,
        /// The entry's ticket.
        ticket: Ticket,
    },
    /// A user was admitted and may hold seats.
    #[serde(rename = "queue.admitted", rename_all = "camelCase")]
    QueueAdmitted {
        /// The concert.
        concert_id: ConcertId,
        /// Who.
        user_id: UserId,
        /// When the active window ends.
        #[schema(value_type = String, format = DateTime)]
        until: Timestamp,
    },
    /// A user left a waiting room.
    #[serde(rename = "queue.left", rename_all = "camelCase")]
    QueueLeft {
        /// The concert.
        concert_id: ConcertId,
        /// Who.
        user_id: UserId,
    },
    /// An entry ended unused (active window over, hold expired, or not polled).
    #[serde(rename = "queue.expired", rename_all = "camelCase")]
    QueueExpired {
        /// The concert.
        concert_id: ConcertId,
        /// Who.
        user_id: UserId,
    },
    /// An entry ended with its holder's payment.
    #[serde(rename = "queue.completed", rename_all = "camelCase")]
    QueueCompleted {
        /// The concert.
        concert_id: ConcertId,
        /// Who.
        user_id: UserId,
        /// The reservation paid.
        reservation_id: ReservationId,
    },
    /// No seat of the concert is available or held any more: every entry ends.
    #[serde(rename = "queue.sold_out", rename_all = "camelCase")]
    QueueSoldOut {
        /// The concert.
        concert_id: ConcertId,
    },
    /// After a sell-out, seats came back (a refund): the room admits again.
    #[serde(rename = "queue.reopened", rename_all = "camelCase")]
    QueueReopened {
        /// The concert.
        concert_id: ConcertId,
    },
}

/// What every reservation event says about the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationFacts {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// Its holder.
    pub user_id: UserId,
    /// The concert.
    pub concert_id: ConcertId,
    /// The date.
    pub date_id: DateId,
    /// The seats.
    pub seat_ids: Vec<SeatId>,
    /// The sum of their prices.
    pub amount: Won,
}

impl From<&Reservation> for ReservationFacts {
    fn from(r: &Reservation) -> Self {
        ReservationFacts {
            reservation_id: r.id,
            user_id: r.user,
            concert_id: r.concert_id,
            date_id: r.date_id,
            seat_ids: r.seats.to_vec(),
            amount: r.amount,
        }
    }
}

impl EventBody {
    /// The type's name (`reservation.paid`, ...): the SSE event name and the last part
    /// of the NATS subject.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::ConcertCreated { .. } => "concert.created",
            EventBody::ReservationHeld { .. } => "reservation.held",
            EventBody::ReservationExpired { .. } => "reservation.expired",
            EventBody::ReservationCancelled { .. } => "reservation.cancelled",
            EventBody::ReservationPaid { .. } => "reservation.paid",
            EventBody::ReservationRefunded { .. } => "reservation.refunded",
            EventBody::TicketAdmitted { .. } => "ticket.admitted",
            EventBody::DatePaused { .. } => "date.paused",
            EventBody::DateResumed { .. } => "date.resumed",
            EventBody::DateCancelled { .. } => "date.cancelled",
            EventBody::WalletCharged { .. } => "wallet.charged",
            EventBody::QueueJoined { .. } => "queue.joined",
            EventBody::QueueAdmitted { .. } => "queue.admitted",
            EventBody::QueueLeft { .. } => "queue.left",
            EventBody::QueueExpired { .. } => "queue.expired",
            EventBody::QueueCompleted { .. } => "queue.completed",
            EventBody::QueueSoldOut { .. } => "queue.sold_out",
            EventBody::QueueReopened { .. } => "queue.reopened",
        }
    }
}

/// The public events of the record with sequence number `seq`, in order, each with
/// its time (`lookup` finds a reservation by id; see the module docs). Their cursors
/// are `(seq, 0)`, `(seq, 1)`, ...
pub fn public_events(
    event: &Event,
    lookup: &dyn Fn(ReservationId) -> Option<Reservation>,
) -> Vec<(EventBody, Option<Timestamp>)> {
    let facts = |id: ReservationId| lookup(id).map(|r| (ReservationFacts::from(&r), r));
    match event {
        Event::Catalog(CatalogEvent::ConcertCreated {
            concert_id,
            date_ids,
            spec,
            at,
        }) => vec![(
            EventBody::ConcertCreated {
                concert_id: *concert_id,
                title: spec.title.clone(),
                venue: spec.venue.clone(),
                date_ids: date_ids.clone(),
            },
            Some(*at),
        )],
        Event::Date(_, DateEvent::SeatsHeld(r)) => vec![(
            EventBody::ReservationHeld {
                reservation: ReservationFacts::from(&**r),
                expires_at: r.expires_at,
            },
            Some(r.created_at),
        )],
        Event::Date(_, DateEvent::HoldCancelled { reservation_id, at }) => facts(*reservation_id)
            .map(|(reservation, _)| (EventBody::ReservationCancelled { reservation }, Some(*at)))
            .into_iter()
            .collect(),
        Event::Date(
            _,
            DateEvent::HoldsExpired {
                reservation_ids, ..
            },
        ) => reservation_ids
            .iter()
            .filter_map(|id| facts(*id))
            .map(|(reservation, r)| {
                let at = Some(r.expires_at);
                (EventBody::ReservationExpired { reservation }, at)
            })
            .collect(),
        Event::Paid(payment) => {
            let at = Some(payment.paid_at);
            let paid = facts(payment.reservation_id).map(|(reservation, _)| {
                let body = EventBody::ReservationPaid {
                    reservation,
                    payment_id: payment.id,
                    balance: payment.balance_after,
                };
                (body, at)
            });
            let completed = EventBody::QueueCompleted {
                concert_id: payment.concert_id,
                user_id: payment.user,
                reservation_id: payment.reservation_id,
            };
            paid.into_iter().chain([(completed, at)]).collect()
        }
        Event::Refunded(refund) => facts(refund.reservation_id)
            .map(|(reservation, _)| {
                let body = EventBody::ReservationRefunded {
                    reservation,
                    refund_id: refund.id,
                    balance: refund.balance_after,
                    reason: refund.reason,
                };
                (body, Some(refund.at))
            })
            .into_iter()
            .collect(),
        Event::Date(date_id, DateEvent::SalesPaused { at }) => {
            vec![(EventBody::DatePaused { date_id: *date_id }, Some(*at))]
        }
        Event::Date(date_id, DateEvent::SalesResumed { at }) => {
            vec![(EventBody::DateResumed { date_id: *date_id }, Some(*at))]
        }
        Event::Date(date_id, DateEvent::DateCancelled { released, at }) => {
            let cancelled = (EventBody::DateCancelled { date_id: *date_id }, Some(*at));
            let released = released
                .iter()
                .filter_map(|id| facts(*id))
                .map(|(reservation, _)| {
                    (EventBody::ReservationCancelled { reservation }, Some(*at))
                });
            std::iter::once(cancelled).chain(released).collect()
        }
        Event::Date(
            date_id,
            DateEvent::TicketAdmitted {
                reservation_id,
                seat_id,
                at,
            },
        ) => vec![(
            EventBody::TicketAdmitted {
                ticket_id: super::ticket::ticket_id(*reservation_id, *seat_id),
                reservation_id: *reservation_id,
                date_id: *date_id,
                seat_id: *seat_id,
            },
            Some(*at),
        )],
        Event::Wallet(WalletEvent::Charged(charge)) => vec![(
            EventBody::WalletCharged {
                user_id: charge.user,
                charge_id: charge.id,
                amount: charge.amount,
                balance: charge.balance_after,
            },
            Some(charge.at),
        )],
        Event::Queue(concert_id, event) => queue_event(*concert_id, event).into_iter().collect(),
    }
}

fn queue_event(
    concert_id: ConcertId,
    event: &QueueEvent,
) -> Option<(EventBody, Option<Timestamp>)> {
    Some(match *event {
        QueueEvent::Joined {
            user, ticket, at, ..
        } => (
            EventBody::QueueJoined {
                concert_id,
                user_id: user,
                ticket,
            },
            Some(at),
        ),
        QueueEvent::Admitted { user, at, until } => (
            EventBody::QueueAdmitted {
                concert_id,
                user_id: user,
                until,
            },
            Some(at),
        ),
        QueueEvent::Left { user } => (
            EventBody::QueueLeft {
                concert_id,
                user_id: user,
            },
            None,
        ),
        QueueEvent::LeftAt { user, at } => (
            EventBody::QueueLeft {
                concert_id,
                user_id: user,
            },
            Some(at),
        ),
        QueueEvent::Expired { user, at } => (
            EventBody::QueueExpired {
                concert_id,
                user_id: user,
            },
            Some(at),
        ),
        QueueEvent::SoldOut { at } => (EventBody::QueueSoldOut { concert_id }, Some(at)),
        QueueEvent::Reopened { at } => (EventBody::QueueReopened { concert_id }, Some(at)),
        QueueEvent::HoldNoted { .. } | QueueEvent::HoldReleased { .. } => return None,
    })
}

/// Numbers the public events of consecutive records and links each to the one before:
/// what every reader of the feed (pages, streams, the outbox) runs records through.
#[derive(Debug, Clone)]
pub struct Numbering {
    /// The cursor of the last event numbered (or the reader's starting point).
    pub last: Option<Cursor>,
}

impl Numbering {
    /// The events of record `seq` that come after `after` (all of them when `after` is
    /// `None` or an earlier record), numbered and linked.
    pub fn record(
        &mut self,
        seq: u64,
        events: Vec<(EventBody, Option<Timestamp>)>,
        after: Option<Cursor>,
    ) -> Vec<PublicEvent> {
        let mut out = Vec::with_capacity(events.len());
        for (index, (body, at)) in events.into_iter().enumerate() {
            let cursor = Cursor {
                seq,
                index: index as u32,
            };
            if after.is_some_and(|after| cursor <= after) {
                continue;
            }
            out.push(PublicEvent {
                cursor,
                prev: self.last,
                at,
                version: SCHEMA_VERSION,
                body,
            });
            self.last = Some(cursor);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_cursor_prints_fixed_width_and_reads_back() {
        let cursor = Cursor { seq: 42, index: 3 };
        assert_eq!(cursor.to_string(), "00000000000000000042-000003");
        assert_eq!("00000000000000000042-000003".parse(), Ok(cursor));
        for bad in [
            "42-3",
            "00000000000000000042",
            "0000000000000000004x-000003",
            "",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_compare_as_strings_in_commit_order() {
        let cursors = [
            Cursor { seq: 9, index: 0 },
            Cursor { seq: 9, index: 10 },
            Cursor { seq: 10, index: 0 },
        ];
        for pair in cursors.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
    }

    #[test]
    fn a_payment_is_paid_and_completed_with_the_seats_of_its_reservation() {
        let at = chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let reservation = Reservation {
            id: ReservationId(uuid::Uuid::from_u128(7)),
            user: UserId(3),
            concert_id: ConcertId(1),
            date_id: DateId(2),
            seats: [SeatId(5), SeatId(6)].into_iter().collect(),
            amount: Won(200),
            status: super::super::date::ReservationStatus::Paid,
            created_at: at,
            expires_at: at,
            after_sale: None,
        };
        let payment = super::super::date::Payment {
            id: PaymentId(uuid::Uuid::from_u128(8)),
            reservation_id: reservation.id,
            user: UserId(3),
            concert_id: ConcertId(1),
            date_id: DateId(2),
            amount: Won(200),
            balance_after: Won(50),
            paid_at: at,
            idempotency_key: None,
        };
        let known = reservation.clone();
        let lookup = move |id| (id == known.id).then(|| known.clone());
        let events = public_events(&Event::Paid(payment), &lookup);
        let mut numbering = Numbering {
            last: Some(Cursor { seq: 4, index: 0 }),
        };
        let events = numbering.record(5, events, None);
        assert_eq!(events.len(), 2);
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["type"], "reservation.paid");
        assert_eq!(json["cursor"], "00000000000000000005-000000");
        assert_eq!(json["prev"], "00000000000000000004-000000");
        assert_eq!(json["seatIds"], serde_json::json!([5, 6]));
        assert_eq!(json["userId"], 3);
        assert_eq!(json["amount"], 200);
        assert_eq!(json["balance"], 50);
        assert_eq!(json["version"], 1);
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["type"], "queue.completed");
        assert_eq!(json["prev"], "00000000000000000005-000000");
        let back: PublicEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, events[1]);
    }

    #[test]
    fn events_at_or_before_the_starting_cursor_are_skipped() {
        let body = || EventBody::QueueSoldOut {
            concert_id: ConcertId(1),
        };
        let mut numbering = Numbering { last: None };
        let start = Cursor { seq: 3, index: 0 };
        let events = numbering.record(3, vec![(body(), None), (body(), None)], Some(start));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].cursor, Cursor { seq: 3, index: 1 });
    }
}
