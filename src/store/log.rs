//! The log writer: one OS thread that owns the open segment. It takes batches in
//! arrival order, gives each event the next sequence number, appends every batch that
//! is waiting with one write and one fdatasync (group commit), and only then releases
//! the batches' replies. Durable events go on to the [`super::shadow`] replica.
//!
//! A failed write or fsync stops the write path for good: the batch's callers and
//! every later one get `Unavailable` (503); nothing is retried as if it had worked.
//! The actors had already applied that batch in memory, so reads may show it until
//! the process restarts and recovers the durable prefix; the operator's cue is
//! `boxoffice_write_path_up 0` in `/metrics` and the error in the log.

use super::format;
use super::shadow::ShadowMessage;
use super::{FsyncPolicy, StoreError, sync_dir};
use crate::engine::Error;
use crate::engine::journal::Batch;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A new segment starts once the current one is this long.
pub const SEGMENT_LEN_MAX: u64 = 64 * 1024 * 1024;
/// Batches waiting for the writer before submitters wait.
pub const INBOX_LEN: usize = 4096;
/// Most batches in one write.
pub const BATCHES_PER_WRITE_MAX: usize = 4096;

/// What the writer is asked to do.
pub enum ToWriter {
    /// Append a batch and release its replies when durable.
    Batch(Batch),
    /// Take a snapshot of everything written so far; answers its sequence number.
    Snapshot(oneshot::Sender<Result<u64, Error>>),
    /// Finish: write what is queued, take a final snapshot, release the directory.
    Stop(oneshot::Sender<()>),
}

/// The file name of the segment whose first record is `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

/// Creates a segment starting at `seq` with its header, durable before use.
pub fn create_segment(dir: &Path, seq: u64) -> Result<(File, PathBuf), StoreError> {
    let path = dir.join(file_name(seq));
    let mut file = File::options()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(StoreError::io(&path))?;
    file.write_all(&format::segment_header())
        .and_then(|()| file.sync_all())
        .map_err(StoreError::io(&path))?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// The writer thread's state.
pub struct LogWriter {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment: File,
    segment_path: PathBuf,
    segment_len: u64,
    next_seq: u64,
    stopped: Arc<AtomicBool>,
    shadow: std::sync::mpsc::SyncSender<ShadowMessage>,
    /// Held for the writer's life: the OS lock on the data directory.
    _lock: File,
}

impl LogWriter {
    /// Starts the writer thread on a new segment beginning at `next_seq`; returns where
    /// to send it work and the flag it sets once the write path has stopped.
    pub fn spawn(
        dir: &Path,
        fsync: FsyncPolicy,
        next_seq: u64,
        lock: File,
        shadow: std::sync::mpsc::SyncSender<ShadowMessage>,
    ) -> Result<(mpsc::Sender<ToWriter>, Arc<AtomicBool>), StoreError> {
        let (segment, segment_path) = create_segment(dir, next_seq)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let writer = LogWriter {
            dir: dir.to_owned(),
            fsync,
            segment,
            segment_path,
            segment_len: format::SEGMENT_HEADER_LEN as u64,
            next_seq,
            stopped: stopped.clone(),
            shadow,
            _lock: lock,
        };
        let (sender, inbox) = mpsc::channel(INBOX_LEN);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(inbox))
            .map_err(StoreError::io(dir))?;
        Ok((sender, stopped))
    }

    fn run(mut self, mut inbox: mpsc::Receiver<ToWriter>) {
        let mut buffer = Vec::with_capacity(1 << 20);
        let mut batches = Vec::new();
        let mut stop_reply = None;
        while let Some(mut message) = inbox.blocking_recv() {
            let control = loop {
                match message {
                    ToWriter::Batch(batch) => batches.push(batch),
                    control => break Some(control),
                }
                if batches.len() >= BATCHES_PER_WRITE_MAX {
                    break None;
                }
                match inbox.try_recv() {
                    Ok(next) => message = next,
                    Err(_) => break None,
                }
            };
            self.commit(&mut batches, &mut buffer);
            match control {
                Some(ToWriter::Snapshot(reply)) => {
                    self.to_shadow(ShadowMessage::Snapshot(Some(reply)))
                }
                Some(ToWriter::Stop(reply)) => {
                    stop_reply = Some(reply);
                    break;
                }
                Some(ToWriter::Batch(_)) => unreachable!("batches are gathered above"),
                None => {}
            }
        }
        self.stopped.store(true, Ordering::Release);
        // Callers still queued get a clear answer rather than a dropped reply.
        inbox.close();
        while let Ok(message) = inbox.try_recv() {
            if let ToWriter::Batch(batch) = message {
                release(batch, Err(Error::Unavailable));
            }
        }
        let (done, finished) = std::sync::mpsc::channel();
        self.to_shadow(ShadowMessage::Stop(done));
        let _ = finished.recv();
        // Release the segment and the directory lock before saying we stopped, so a
        // caller may reopen the directory the moment it hears back.
        drop(self);
        if let Some(reply) = stop_reply {
            // The caller may have stopped waiting; that is fine.
            let _ = reply.send(());
        }
    }

    /// Appends every gathered batch with one write and one fsync, then replies.
    fn commit(&mut self, batches: &mut Vec<Batch>, buffer: &mut Vec<u8>) {
        if batches.is_empty() {
            return;
        }
        if self.stopped.load(Ordering::Acquire) {
            for batch in batches.drain(..) {
                release(batch, Err(Error::Unavailable));
            }
            return;
        }
        buffer.clear();
        let first_seq = self.next_seq;
        for event in batches.iter().flat_map(|b| &b.events) {
            format::encode_record(buffer, self.next_seq, event);
            self.next_seq += 1;
        }
        let written = self
            .segment
            .write_all(buffer)
            .and_then(|()| match self.fsync {
                FsyncPolicy::Always => self.segment.sync_data(),
                FsyncPolicy::Never => Ok(()),
            });
        if let Err(e) = written {
            tracing::error!(
                "write to {} failed: {e}; the write path is stopped",
                self.segment_path.display()
            );
            self.stopped.store(true, Ordering::Release);
            for batch in batches.drain(..) {
                release(batch, Err(Error::Unavailable));
            }
            return;
        }
        self.segment_len += buffer.len() as u64;
        let mut events = Vec::with_capacity((self.next_seq - first_seq) as usize);
        for batch in batches.drain(..) {
            for reply in batch.replies {
                reply(Ok(()));
            }
            events.extend(batch.events);
        }
        self.to_shadow(ShadowMessage::Events { first_seq, events });
        if self.segment_len >= SEGMENT_LEN_MAX {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        match create_segment(&self.dir, self.next_seq) {
            Ok((segment, path)) => {
                self.segment = segment;
                self.segment_path = path;
                self.segment_len = format::SEGMENT_HEADER_LEN as u64;
            }
            Err(e) => {
                tracing::error!(
                    "could not start a new log segment: {e}; the write path is stopped"
                );
                self.stopped.store(true, Ordering::Release);
            }
        }
    }

    fn to_shadow(&self, message: ShadowMessage) {
        if self.shadow.send(message).is_err() {
            tracing::error!("the snapshot thread is gone; no more snapshots will be taken");
        }
    }
}

fn release(batch: Batch, outcome: Result<(), Error>) {
    for reply in batch.replies {
        reply(outcome.clone());
    }
}
