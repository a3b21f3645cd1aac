//! A cluster's snapshots, in JetStream object storage, so a node starts with no local
//! disk and the log stream can be trimmed.
//!
//! The bucket is `{stream}_SNAPSHOTS`; each object is one snapshot file (the format of
//! [`crate::store`]'s snapshots) named `snapshot-{event seq, 20 digits}-{floor, 20
//! digits}`. The *floor* is a stream sequence at or before the first message holding
//! an event the snapshot lacks: a node that loads the snapshot reads the stream from
//! the floor on and skips the events the snapshot already has.
//!
//! The leader uploads one every `--snapshot-interval-secs`, or sooner after
//! `--snapshot-every-events` events: it reads the stream position it has written up
//! to, then asks its snapshot replica for a snapshot. Every message before that
//! position was handed to the replica before the request (one channel, in order), so
//! the snapshot holds all their events and that position is a safe floor. The two
//! newest snapshots are kept; the stream is purged below the older one's floor, so the
//! log always reaches back to a snapshot even if the newest one turns out unreadable.
//! A follower that falls so far behind that the purge passes it finds a gap in the
//! sequence numbers and starts again from the newest snapshot.

use crate::domain::Image;
use crate::store::format;
use async_nats::jetstream::{self, object_store};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

/// Snapshots kept in the bucket.
pub const KEEP: usize = 2;

/// The snapshot bucket.
pub struct Snapshots {
    store: object_store::ObjectStore,
}

/// A snapshot's name: its last event and its floor.
fn name(seq: u64, floor: u64) -> String {
    format!("snapshot-{seq:020}-{floor:020}")
}

fn parse(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snapshot-")?;
    let (seq, floor) = rest.split_once('-')?;
    Some((seq.parse().ok()?, floor.parse().ok()?))
}

impl Snapshots {
    /// Opens (creating if missing) the bucket `{stream}_SNAPSHOTS`.
    pub async fn open(
        context: &jetstream::Context,
        stream: &str,
        replicas: usize,
    ) -> Result<Snapshots, String> {
        let bucket = format!("{stream}_SNAPSHOTS");
        let store = match context.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => context
                .create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating the snapshot bucket {bucket}: {e}"))?,
        };
        Ok(Snapshots { store })
    }

    /// The snapshots in the bucket, oldest first: (event seq, floor).
    async fn list(&self) -> Result<Vec<(u64, u64)>, String> {
        let mut list = self
            .store
            .list()
            .await
            .map_err(|e| format!("listing snapshots: {e}"))?;
        let mut found = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| format!("listing snapshots: {e}"))?;
            if !info.deleted
                && let Some(numbers) = parse(&info.name)
            {
                found.push(numbers);
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// The newest snapshot that reads back whole, with its floor; `None` if there is
    /// none. A damaged newer one is skipped with a warning; one that cannot be read
    /// now (a NATS server is down, the bucket's stream is electing a leader) is an
    /// error, to be tried again.
    pub async fn newest(&self) -> Result<Option<(Image, u64)>, String> {
        for (seq, floor) in self.list().await?.into_iter().rev() {
            let mut object = self
                .store
                .get(name(seq, floor))
                .await
                .map_err(|e| format!("reading snapshot {seq}: {e}"))?;
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| format!("reading snapshot {seq}: {e}"))?;
            match decode(seq, &bytes) {
                Ok(image) => return Ok(Some((image, floor))),
                Err(e) => tracing::warn!("snapshot {seq}: {e}; trying an older one"),
            }
        }
        Ok(None)
    }

    /// Uploads a snapshot file's bytes, then deletes all but the [`KEEP`] newest;
    /// answers the floor of the oldest kept one (the stream may be purged below it).
    pub async fn upload(&self, seq: u64, floor: u64, bytes: &[u8]) -> Result<u64, String> {
        let mut reader = bytes;
        self.store
            .put(name(seq, floor).as_str(), &mut reader)
            .await
            .map_err(|e| format!("uploading snapshot {seq}: {e}"))?;
        let all = self.list().await?;
        let keep_from = all.len().saturating_sub(KEEP);
        for &(old_seq, old_floor) in &all[..keep_from] {
            if let Err(e) = self.store.delete(name(old_seq, old_floor)).await {
                tracing::warn!("deleting snapshot {old_seq}: {e}");
            }
        }
        Ok(all[keep_from..].first().map_or(0, |&(_, floor)| floor))
    }
}

/// A snapshot object's contents, which must hold event `seq`.
fn decode(seq: u64, bytes: &[u8]) -> Result<Image, String> {
    let (read_seq, image): (u64, Image) = format::decode_snapshot(bytes)?;
    if read_seq != seq || image.seq != seq {
        return Err(format!("it holds event {read_seq}, not {seq}"));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        assert_eq!(parse(&name(42, 7)), Some((42, 7)));
        assert!(
            name(9, 1) < name(10, 1),
            "zero-padded names sort as numbers"
        );
        assert_eq!(parse("snapshot-x-1"), None);
        assert_eq!(parse("other"), None);
    }
}
