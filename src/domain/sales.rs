//! The operator's figures: what a date (or a concert, summed) has sold, by section,
//! and pages of a date's reservations. Pure functions of a [`DateState`]; the date
//! actor computes them between batches, so they are exact as of that moment.

use super::date::Reservation;
use super::date::{DateState, ReservationStatus};
use super::{ConcertId, DateId, Rejection, ReservationId, Timestamp, UserId, Won};
use serde::Serialize;

/// Seat counts and money of a section, a date or a concert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Seats in all.
    pub seats_total: u32,
    /// Seats free to hold.
    pub available: u32,
    /// Seats held by live holds.
    pub held: u32,
    /// Seats sold (paid and not refunded).
    pub sold: u32,
    /// Sold seats whose tickets were admitted at the door.
    pub admitted: u32,
    /// What the sold seats brought in (refunded sales not counted).
    pub revenue: Won,
    /// What was given back for refunded seats.
    pub refunds: Won,
}

impl Figures {
    /// Adds another's figures to these.
    pub fn add(&mut self, other: &Figures) {
        self.seats_total += other.seats_total;
        self.available += other.available;
        self.held += other.held;
        self.sold += other.sold;
        self.admitted += other.admitted;
        self.revenue = self.revenue.checked_add(other.revenue).expect("bounded");
        self.refunds = self.refunds.checked_add(other.refunds).expect("bounded");
    }
}

/// A section's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionSales {
    /// The section's name.
    pub name: String,
    /// The price of a seat.
    pub price: Won,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// What became of the holds placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldFigures {
    /// Holds placed (every reservation ever made).
    pub placed: u64,
    /// Holds still live.
    pub live: u64,
    /// Holds that reached their deadline unpaid.
    pub expired: u64,
    /// Holds released by their holder or by the date's cancellation.
    pub cancelled: u64,
    /// Holds paid (including those refunded later).
    pub converted: u64,
    /// Paid reservations refunded since.
    pub refunded: u64,
}

impl HoldFigures {
    /// Adds another's figures to these.
    pub fn add(&mut self, other: &HoldFigures) {
        self.placed += other.placed;
        self.live += other.live;
        self.expired += other.expired;
        self.cancelled += other.cancelled;
        self.converted += other.converted;
        self.refunded += other.refunded;
    }
}

/// A date's sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateSales {
    /// The date.
    pub date_id: DateId,
    /// Its concert.
    pub concert_id: ConcertId,
    /// When the show starts.
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    /// Whether sales are paused.
    pub paused: bool,
    /// Whether the date was cancelled.
    pub cancelled: bool,
    /// By section, in layout order.
    pub sections: Vec<SectionSales>,
    /// The sections summed.
    pub totals: Figures,
    /// What became of the holds.
    pub holds: HoldFigures,
}

/// The sales of a date, as of `now` (the date's holds are swept up to `now`).
pub fn date_sales(date: &DateState) -> DateSales {
    let layout = date.layout();
    let mut sections: Vec<SectionSales> = layout
        .sections()
        .map(|s| SectionSales {
            name: s.name.to_owned(),
            price: s.price,
            figures: Figures {
                seats_total: s.seats().len() as u32,
                available: s.seats().len() as u32,
                ..Figures::default()
            },
        })
        .collect();
    let mut holds = HoldFigures::default();
    for reservation in date.reservations() {
        holds.placed += 1;
        match reservation.status {
            ReservationStatus::Held => holds.live += 1,
            ReservationStatus::Expired => holds.expired += 1,
            ReservationStatus::Cancelled => holds.cancelled += 1,
            ReservationStatus::Paid => holds.converted += 1,
            ReservationStatus::Refunded => {
                holds.converted += 1;
                holds.refunded += 1;
            }
        }
        for &seat in &reservation.seats {
            let at = layout.section_of(seat).expect("a reserved seat exists");
            let section = &mut sections[at];
            let figures = &mut section.figures;
            let price = section.price;
            match reservation.status {
                ReservationStatus::Held => {
                    figures.available -= 1;
                    figures.held += 1;
                }
                ReservationStatus::Paid => {
                    figures.available -= 1;
                    figures.sold += 1;
                    figures.revenue = figures.revenue.checked_add(price).expect("bounded");
                    if reservation.admitted_at(seat).is_some() {
                        figures.admitted += 1;
                    }
                }
                ReservationStatus::Refunded => {
                    figures.refunds = figures.refunds.checked_add(price).expect("bounded");
                }
                ReservationStatus::Expired | ReservationStatus::Cancelled => {}
            }
        }
    }
    let mut totals = Figures::default();
    for section in &sections {
        totals.add(&section.figures);
    }
    let counts = date.counts();
    assert_eq!(
        (totals.available, totals.held, totals.sold),
        (counts.available, counts.held, counts.sold),
        "the figures agree with the seats"
    );
    DateSales {
        date_id: date.date_id(),
        concert_id: date.concert_id(),
        starts_at: date.starts_at(),
        paused: date.is_paused(),
        cancelled: date.cancelled_at().is_some(),
        sections,
        totals,
        holds,
    }
}

/// Which of a date's reservations to list, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservationFilter {
    /// Only this status (as recorded: the date's holds are swept up to now).
    pub status: Option<ReservationStatus>,
    /// Only this user's.
    pub user: Option<UserId>,
    /// Start after this reservation (the previous page's `next`).
    pub after: Option<ReservationId>,
    /// At most this many.
    pub limit: usize,
}

/// A page of a date's reservations, oldest first (by creation, then id), and the
/// cursor of the next page if there is one.
pub fn reservations_page(
    date: &DateState,
    filter: &ReservationFilter,
) -> Result<(Vec<Reservation>, Option<ReservationId>), Rejection> {
    let after = match filter.after {
        None => None,
        Some(id) => {
            // A well-formed id that names no reservation of this date: nothing to
            // start after (404, like any unknown reservation).
            let r = date.reservation(id).ok_or(Rejection::ReservationNotFound)?;
            Some((r.created_at, r.id))
        }
    };
    let mut matching: Vec<&Reservation> = date
        .reservations()
        .map(|r| &**r)
        .filter(|r| filter.status.is_none_or(|s| r.status == s))
        .filter(|r| filter.user.is_none_or(|u| r.user == u))
        .filter(|r| after.is_none_or(|a| (r.created_at, r.id) > a))
        .collect();
    matching.sort_by_key(|r| (r.created_at, r.id));
    let more = matching.len() > filter.limit;
    matching.truncate(filter.limit);
    let next = more.then(|| matching.last().map(|r| r.id)).flatten();
    Ok((matching.into_iter().cloned().collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::{
        CatalogCommand, CatalogRules, CatalogState, ConcertSpec, DateSpec, SectionSpec,
    };
    use crate::domain::date::{DateRules, Hold, Pay, RefundCommand, RefundReason};
    use crate::domain::{PaymentId, RefundId, SeatId};
    use chrono::{Duration, TimeZone, Utc};

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn rid(n: u128) -> ReservationId {
        ReservationId(uuid::Uuid::from_u128(n))
    }

    /// Sections A (seats 1 to 3, 100 won) and B (seats 4 to 5, 50 won).
    fn date() -> DateState {
        let section = |name: &str, seats, price| SectionSpec {
            name: name.into(),
            rows: 1,
            seats_per_row: seats,
            price,
        };
        let spec = ConcertSpec {
            title: "t".into(),
            venue: "v".into(),
            dates: vec![DateSpec {
                starts_at: t(100_000),
                sections: vec![section("A", 3, 100), section("B", 2, 50)],
            }],
        };
        let mut catalog = CatalogState::default();
        let rules = CatalogRules {
            seats_per_date_max: 100,
            seat_price_max: Won(1_000_000),
        };
        catalog
            .apply(CatalogCommand::Create(spec), rules, t(0))
            .unwrap();
        let layout = catalog.concert(ConcertId(1)).unwrap().dates[0]
            .layout
            .clone();
        let rules = DateRules {
            hold_ttl: Duration::seconds(300),
            seats_per_reservation_max: 4,
            seats_per_user_max: 4,
            refund_closes_before: Duration::seconds(3600),
        };
        DateState::new(DateId(1), ConcertId(1), t(100_000), layout, rules)
    }

    fn hold(date: &mut DateState, user: u64, seats: &[u32], n: u128, now: Timestamp) {
        date.expire_due(now);
        let seats = seats.iter().map(|&s| SeatId(s)).collect();
        let command = Hold {
            user: UserId(user),
            seats,
            reservation_id: rid(n),
        };
        date.hold(command, now).unwrap();
    }

    fn pay(date: &mut DateState, user: u64, n: u128, now: Timestamp) {
        let command = Pay {
            user: UserId(user),
            reservation_id: rid(n),
            payment_id: PaymentId(uuid::Uuid::from_u128(n)),
            balance: Won(1_000),
            idempotency_key: None,
        };
        date.pay(command, now).unwrap();
    }

    /// User 1 paid A1 and B4 (admitted at A1); user 2 paid A2, then refunded it;
    /// user 3 holds B5; user 4's hold of A3 expired.
    fn trading() -> DateState {
        let mut date = date();
        hold(&mut date, 1, &[1, 4], 1, t(0));
        pay(&mut date, 1, 1, t(1));
        date.admit(rid(1), SeatId(1), t(2)).unwrap();
        hold(&mut date, 2, &[2], 2, t(3));
        pay(&mut date, 2, 2, t(4));
        let refund = RefundCommand {
            user: UserId(2),
            reservation_id: rid(2),
            refund_id: RefundId(uuid::Uuid::from_u128(9)),
            balance: Won(0),
            reason: RefundReason::Requested,
        };
        date.refund(refund, t(5)).unwrap();
        hold(&mut date, 4, &[3], 4, t(6));
        hold(&mut date, 3, &[5], 3, t(400));
        date
    }

    #[test]
    fn sales_are_counted_by_section_and_agree_with_the_seats() {
        let sales = date_sales(&trading());
        let a = &sales.sections[0].figures;
        assert_eq!((a.seats_total, a.available, a.held, a.sold), (3, 2, 0, 1));
        assert_eq!((a.admitted, a.revenue, a.refunds), (1, Won(100), Won(100)));
        let b = &sales.sections[1].figures;
        assert_eq!((b.available, b.held, b.sold, b.revenue), (0, 1, 1, Won(50)));
        assert_eq!(sales.totals.revenue, Won(150));
        let holds = sales.holds;
        assert_eq!(
            (
                holds.placed,
                holds.live,
                holds.expired,
                holds.converted,
                holds.refunded
            ),
            (4, 1, 1, 2, 1)
        );
    }

    #[test]
    fn reservations_come_in_pages_oldest_first_with_filters() {
        let date = trading();
        let page = |after, limit| {
            let filter = ReservationFilter {
                after,
                limit,
                ..ReservationFilter::default()
            };
            reservations_page(&date, &filter).unwrap()
        };
        let (first, next) = page(None, 3);
        let ids: Vec<_> = first.iter().map(|r| r.id).collect();
        assert_eq!(ids, [rid(1), rid(2), rid(4)]);
        assert_eq!(next, Some(rid(4)));
        let (rest, next) = page(next, 3);
        assert_eq!(rest.len(), 1);
        assert_eq!(next, None);
        let refunded = ReservationFilter {
            status: Some(ReservationStatus::Refunded),
            limit: 10,
            ..ReservationFilter::default()
        };
        let (list, _) = reservations_page(&date, &refunded).unwrap();
        assert_eq!(list[0].id, rid(2));
        let unknown = ReservationFilter {
            after: Some(rid(77)),
            limit: 10,
            ..ReservationFilter::default()
        };
        assert_eq!(
            reservations_page(&date, &unknown).map(|_| ()),
            Err(Rejection::ReservationNotFound)
        );
    }
}
