//! Bounded mailboxes: every actor takes messages through one of these, and a caller
//! that finds it full for longer than the wait gets [`Error::Overloaded`] (503)
//! instead of a queue that grows without bound.

use super::{Error, Reply};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most messages an actor takes in one batch.
pub const BATCH_LEN_MAX: usize = 256;
/// How long a caller waits for room in a full mailbox.
pub const SEND_WAIT: Duration = Duration::from_millis(500);

/// Sends a request built around a fresh reply channel and waits for the answer.
pub async fn call<M, T>(
    to: &mpsc::Sender<M>,
    make: impl FnOnce(Reply<T>) -> M,
) -> Result<T, Error> {
    let (reply, answer) = oneshot::channel();
    to.send_timeout(make(reply), SEND_WAIT)
        .await
        .map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => Error::Overloaded,
            mpsc::error::SendTimeoutError::Closed(_) => Error::Unavailable,
        })?;
    answer.await.map_err(|_| Error::Unavailable)?
}

/// Sends a message that must not be dropped, waiting for room however long it takes
/// (what a follower applies, word that a payment is durable); fails only if the actor
/// is gone.
pub async fn deliver<M>(to: &mpsc::Sender<M>, message: M) -> Result<(), Error> {
    to.send(message).await.map_err(|_| Error::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_mailbox_full_past_the_wait_is_overloaded_and_a_closed_one_unavailable() {
        let (to, mut inbox) = mpsc::channel::<Reply<()>>(1);
        let (filler, _) = oneshot::channel();
        to.try_send(filler).unwrap();
        assert_eq!(call(&to, |reply| reply).await, Err(Error::Overloaded));
        drop(inbox.recv().await);
        drop(inbox);
        assert_eq!(call(&to, |reply| reply).await, Err(Error::Unavailable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_gets_the_actors_answer() {
        let (to, mut inbox) = mpsc::channel::<Reply<u32>>(1);
        tokio::spawn(async move {
            while let Some(reply) = inbox.recv().await {
                let _ = reply.send(Ok(7));
            }
        });
        assert_eq!(call(&to, |reply| reply).await, Ok(7));
    }
}
