//! [`ReservationIndex`]: every reservation by id and by user, written by the date
//! actors after each change; reads (the API's reservation lists, and the wallet
//! routing a payment to its date) take a `DashMap` shard's read lock, never an actor.
//! It keeps the date's own copy of each reservation (shared, never copied to record).

use crate::domain::date::Reservation;
use crate::domain::{Rejection, ReservationId, UserId};
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::sync::Arc;

/// A user's reservation ids: most users have one, kept in the map's own slot (the
/// size of a `Vec`'s header) rather than in a heap list of its own.
type UserReservations = SmallVec<[ReservationId; 1]>;

/// Every reservation, for reads and for routing payments.
#[derive(Default)]
pub struct ReservationIndex {
    by_id: DashMap<ReservationId, Arc<Reservation>, FxBuildHasher>,
    by_user: DashMap<UserId, UserReservations, FxBuildHasher>,
}

impl ReservationIndex {
    /// Records a new or changed reservation.
    pub(in crate::engine) fn record(&self, reservation: &Arc<Reservation>) {
        let fresh = self
            .by_id
            .insert(reservation.id, Arc::clone(reservation))
            .is_none();
        if fresh {
            let mut ids = self.by_user.entry(reservation.user).or_default();
            // A user has a reservation or two: past the first, grow by one, not double.
            ids.reserve_exact(1);
            ids.push(reservation.id);
        }
    }

    /// A reservation by id, whoever holds it.
    pub fn get(&self, id: ReservationId) -> Option<Reservation> {
        self.by_id.get(&id).map(|r| Reservation::clone(&r))
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
