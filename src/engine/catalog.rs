//! The catalog: concerts and the actors that serve them.
//!
//! Creating a concert is rare and admin-only, so the catalog's state sits behind an
//! async mutex (one creation at a time) rather than in an actor of its own. Creation
//! logs the event, then starts one date actor per date and one queue actor for the
//! concert and publishes them in the [`Directory`], which every reader consults
//! without locking anything but a brief read lock.

use super::Context;
use super::date::{DateDeps, DateHandle};
use super::queue::{QueueDeps, QueueHandle};
use super::views::{DateView, QueueView};
use crate::domain::catalog::Concert;
use crate::domain::date::DateState;
use crate::domain::queue::QueueState;
use crate::domain::{ConcertId, DateId};
use dashmap::DashMap;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A date's view and actor.
pub struct DateEntry {
    /// Its read view.
    pub view: Arc<DateView>,
    /// Its actor.
    pub handle: DateHandle,
}

/// A concert, its queue actor and its dates.
pub struct ConcertEntry {
    /// The concert.
    pub concert: Arc<Concert>,
    /// Its waiting room.
    pub queue: QueueHandle,
    /// Who is active in it.
    pub queue_view: Arc<QueueView>,
    /// Its dates, in order.
    pub dates: Vec<Arc<DateEntry>>,
}

/// Every running concert and date, for lookups from anywhere.
#[derive(Default)]
pub struct Directory {
    concerts: RwLock<BTreeMap<ConcertId, Arc<ConcertEntry>>>,
    dates: DashMap<DateId, Arc<DateEntry>>,
}

impl Directory {
    /// A concert by id.
    pub fn concert(&self, id: ConcertId) -> Option<Arc<ConcertEntry>> {
        self.concerts.read().get(&id).cloned()
    }

    /// Every concert, by id.
    pub fn concerts(&self) -> Vec<Arc<ConcertEntry>> {
        self.concerts.read().values().cloned().collect()
    }

    /// A date by id.
    pub fn date(&self, id: DateId) -> Option<Arc<DateEntry>> {
        self.dates.get(&id).map(|d| d.clone())
    }

    /// Starts the actors of a concert from their states and publishes them.
    pub fn open(
        &self,
        concert: Arc<Concert>,
        states: Vec<DateState>,
        queue_state: QueueState,
        context: &Context,
    ) -> Arc<ConcertEntry> {
        assert_eq!(states.len(), concert.dates.len(), "one state per date");
        // The room's mailbox comes first: the dates note their holds in it, and the
        // room reads the dates' views.
        let (queue, queue_inbox) = QueueHandle::mailbox(context.rules.mailbox_len);
        let dates: Vec<Arc<DateEntry>> = concert
            .dates
            .iter()
            .zip(states)
            .map(|(date, state)| {
                assert_eq!(state.date_id(), date.id, "states come in date order");
                let view = Arc::new(DateView::new(date.clone()));
                let deps = DateDeps {
                    view: view.clone(),
                    index: context.index.clone(),
                    clock: context.clock.clone(),
                    journal: context.journal.clone(),
                    room: queue.clone(),
                };
                let handle = DateHandle::spawn(state, deps, context.rules.mailbox_len);
                Arc::new(DateEntry { view, handle })
            })
            .collect();
        let queue_view = Arc::new(QueueView::default());
        let deps = QueueDeps {
            dates: dates.iter().map(|d| d.view.clone()).collect(),
            view: queue_view.clone(),
            clock: context.clock.clone(),
            journal: context.journal.clone(),
        };
        queue_inbox.spawn(queue_state, deps);
        for (date, entry) in concert.dates.iter().zip(&dates) {
            self.dates.insert(date.id, entry.clone());
        }
        let entry = Arc::new(ConcertEntry {
            concert: concert.clone(),
            queue,
            queue_view,
            dates,
        });
        self.concerts.write().insert(concert.id, entry.clone());
        entry
    }
}
