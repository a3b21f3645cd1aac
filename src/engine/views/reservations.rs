//! [`ReservationIndex`]: every reservation by id and by user, written by the date
//! actors after each change; reads (the API's reservation lists, and the wallet
//! routing a payment to its date) take a `DashMap` shard's read lock, never an actor.
//! It keeps the date's own copy of each reservation (shared, never copied to record).

use crate::domain::date::{ById, Reservation};
use crate::domain::{Rejection, ReservationId, UserId};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::sync::Arc;

/// A user's reservation ids: most users have one, kept in the map's own slot (the
/// size of a `Vec`'s header) rather than in a heap list of its own.
type UserReservations = SmallVec<[ReservationId; 1]>;

/// Every reservation, for reads and for routing payments.
#[derive(Default)]
pub struct ReservationIndex {
    /// Each reservation found by the id it holds: a slot is the shared copy alone (8
    /// bytes), where a map from id to it would store every id again.
    by_id: DashMap<ById, (), FxBuildHasher>,
    by_user: DashMap<UserId, UserReservations, FxBuildHasher>,
}

impl ReservationIndex {
    /// Records a new or changed reservation.
    pub(in crate::engine) fn record(&self, reservation: &Arc<Reservation>) {
        // A changed one replaces the copy in its slot, under the shard's lock, so a
        // reader finds the old copy or the new one, never none.
        let fresh = match self.by_id.entry(ById(Arc::clone(reservation))) {
            Entry::Occupied(slot) => {
                slot.replace_entry(());
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(());
                true
            }
        };
        if fresh {
            let mut ids = self.by_user.entry(reservation.user).or_default();
            // A user has a reservation or two: past the first, grow by one, not double.
            ids.reserve_exact(1);
            ids.push(reservation.id);
        }
    }

    /// A reservation by id, whoever holds it.
    pub fn get(&self, id: ReservationId) -> Option<Reservation> {
        self.by_id.get(&id).map(|r| Reservation::clone(&r.key().0))
    }

    /// A reservation of `user`'s; someone else's does not exist for them.
    pub fn owned(&self, user: UserId, id: ReservationId) -> Result<Reservation, Rejection> {
        self.get(id)
            .filter(|r| r.user == user)
            .ok_or(Rejection::ReservationNotFound)
    }

    /// A user's reservations, newest first.
    pub fn of_user(&self, user: UserId) -> Vec<Reservation> {
        let ids = self
            .by_user
            .get(&user)
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let mut list: Vec<Reservation> = ids.into_iter().filter_map(|id| self.get(id)).collect();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::ReservationStatus;
    use crate::domain::{ConcertId, DateId, SeatId, Won};
    use chrono::{TimeZone, Utc};

    fn held(n: u128, user: u64) -> Arc<Reservation> {
        let at = Utc.timestamp_opt(1_800_000_000 + n as i64, 0).unwrap();
        Arc::new(Reservation {
            id: ReservationId(uuid::Uuid::from_u128(n)),
            user: UserId(user),
            concert_id: ConcertId(1),
            date_id: DateId(1),
            seats: [SeatId(n as u32)].into_iter().collect(),
            amount: Won(100),
            status: ReservationStatus::Held,
            created_at: at,
            expires_at: at + chrono::Duration::seconds(300),
            after_sale: None,
        })
    }

    #[test]
    fn a_changed_reservation_replaces_its_copy_and_is_listed_once() {
        let index = ReservationIndex::default();
        let (first, second) = (held(1, 7), held(2, 7));
        index.record(&first);
        index.record(&second);
        let mut paid = Reservation::clone(&first);
        paid.status = ReservationStatus::Paid;
        index.record(&Arc::new(paid.clone()));
        assert_eq!(index.get(first.id), Some(paid));
        let listed: Vec<ReservationId> = index.of_user(UserId(7)).iter().map(|r| r.id).collect();
        assert_eq!(listed, [second.id, first.id], "newest first, each once");
        assert_eq!(
            index.owned(UserId(8), first.id),
            Err(Rejection::ReservationNotFound)
        );
    }
}
