//! Durability: the append log, snapshots and recovery.
//!
//! # The data directory
//!
//! `--data-dir` (default `./snapshots`) holds:
//! - `LOCK`: held (with an OS file lock) by the running server; a second server on
//!   the same directory refuses to start;
//! - log segments `{first sequence number, 20 digits}.log`;
//! - snapshots `{last sequence number, 20 digits}.snapshot` (the two newest are kept;
//!   `*.snapshot.tmp` files are unfinished writes and are removed at start);
//! - `ticket-secret`, unless `--ticket-secret` is set: the key that signs ticket codes,
//!   made on the first start (mode 0600), so codes verify after a restart.
//!
//! # Log segment format (version 2)
//!
//! A segment starts with a 16-byte header: the magic `BOXOLOG1` (8 bytes), the format
//! version as a little-endian `u32` (2), and 4 zero bytes. Records follow back to
//! back, each:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, `u32` LE, at most 16 MiB |
//! | 4 | CRC-32 (IEEE) of the 8 sequence bytes followed by the payload, `u32` LE |
//! | 8 | sequence number, `u64` LE: 1 for the first event ever, then +1 per record |
//! | n | payload: one [`crate::domain::Event`], bincode 2 (standard config) via serde |
//!
//! Inside payloads, timestamps are two integers, seconds since 1970 (`i64`) and
//! nanoseconds (`u32`) ([`crate::domain::time`]), not text. bincode via serde writes
//! fields in declaration order with no names or defaults, so any change to an event
//! or state type is a new format version: version 2 added refunds
//! (`Event::Refunded`), check-ins, pausing and cancelling a date (new `DateEvent`
//! kinds), a waiting room reopening, and the fields they need in `Reservation` and
//! `DateState`. A segment or snapshot of another version is refused, naming it.
//!
//! Segments are named after their first record's sequence number; together they hold
//! one gapless run of sequence numbers. The writer appends whole batches with one
//! `write` and one `fdatasync` (group commit) and only then releases the replies of the
//! batches in it; a new segment starts when the current one passes 64 MiB.
//!
//! The segment being written may run on past its records with zeros: with `--fsync
//! always` the writer writes 256 kB of them after a short append that grew the file,
//! so that the appends after it do not grow it and their `fdatasync` has no new file
//! length to record ([`file_log`]). Sixteen zero bytes where a record header would
//! start end the records (no record header is zero: its length and sequence number
//! never are). The writer cuts the zeros off when it leaves a segment, so only a crash
//! leaves them, and recovery cuts them off.
//!
//! # Snapshot format (version 2)
//!
//! The magic `BOXSNAP1` (8 bytes), the version `u32` LE (2), 4 zero bytes, the sequence
//! number of the last event it includes (`u64` LE), the payload length (`u64` LE), the
//! CRC-32 of the payload (`u32` LE), then the payload: a [`crate::domain::Image`], bincode 2 via
//! serde. It is written to `*.snapshot.tmp`, fsynced, renamed, and the directory fsynced.
//! Snapshots are taken from a replica that applies the durable events in log order
//! (see [`shadow`]), so a snapshot is exactly the state after a prefix of the log and
//! taking one never pauses an actor.
//!
//! # Recovery
//!
//! The newest snapshot that reads back whole (magic, version, length, checksum, decode)
//! is the base; a damaged newer one is skipped with a warning. Then every record after
//! the base's sequence number is replayed through the same `replay` code the live path
//! uses. A record cut short or failing its checksum at the end of the newest segment
//! (nothing but zeros after it) is a torn write: the segment is truncated there, with
//! a warning; zeros after the last whole record are cut off without one. A damaged
//! record followed by any valid one, a gap in the sequence numbers, or a log that no
//! longer reaches back to the base: recovery refuses to start and names the file and
//! byte offset.

pub mod file_log;
pub mod format;
pub mod leadership;
pub mod log;
pub mod metrics;
pub mod nats_log;
pub mod reader;
pub mod recovery;
pub mod shadow;
pub mod snapshot;
pub mod tail;

pub use metrics::StoreMetrics;

use crate::domain::{Image, Rules};
use log::{LogHandle, Tap};
use shadow::{Shadow, SnapshotHandle};
use std::path::PathBuf;
use std::sync::Arc;

/// Why the store could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The log or a snapshot is damaged in a way recovery must not paper over.
    #[error("{path} at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another server holds the data directory.
    #[error("{0} is in use by another boxoffice process")]
    Locked(PathBuf),
    /// The replicated log refused or failed an operation.
    #[error("replicated log: {0}")]
    Replicated(String),
}

impl StoreError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// When to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// After every batch, before any reply (durable).
    Always,
    /// Never: for benchmarks only; a crash loses acknowledged actions.
    Never,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The data directory.
    pub dir: PathBuf,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Take a snapshot after this many events (and once the log has grown by as many
    /// bytes as the last snapshot held: see [`shadow`]).
    pub snapshot_every_events: u64,
    /// Take a snapshot at least this often when anything changed.
    pub snapshot_interval: std::time::Duration,
}

/// Fsyncs a directory so that renames and new files in it are durable.
pub fn sync_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// An open store: the recovered state, the running log and the snapshot replica.
pub struct Opened {
    /// The state to start the actors from.
    pub image: Image,
    /// Records replayed from the log on top of the snapshot.
    pub replayed: u64,
    /// Where committed batches go.
    pub log: LogHandle,
    /// Asks the replica for a snapshot.
    pub snapshots: SnapshotHandle,
    /// The newest durable records, for readers that follow the log.
    pub tail: Arc<tail::Tail>,
}

/// Locks and recovers the data directory, then starts the file log and the snapshot
/// replica. Besides the replica, `taps` follow every durable event.
pub fn open(
    options: &StoreOptions,
    rules: &Rules,
    metrics: Arc<StoreMetrics>,
    taps: Vec<Box<dyn Tap>>,
) -> Result<Opened, StoreError> {
    let lock = recovery::lock(&options.dir)?;
    let recovered = recovery::recover(&options.dir, rules)?;
    let next_seq = recovered.image.seq + 1;
    let file_log =
        file_log::FileLog::open(&options.dir, options.fsync, next_seq, lock, metrics.clone())?;
    start(options, rules, metrics, taps, recovered, file_log)
}

/// Starts `log` after a state recovered elsewhere (a replicated log), with the
/// snapshot replica writing to the data directory, which it locks.
pub fn open_with_log(
    options: &StoreOptions,
    rules: &Rules,
    metrics: Arc<StoreMetrics>,
    taps: Vec<Box<dyn Tap>>,
    recovered: recovery::Recovered,
    log: impl log::Log,
) -> Result<Opened, StoreError> {
    let lock = Some(recovery::lock(&options.dir)?);
    start(
        options,
        rules,
        metrics,
        taps,
        recovered,
        Locked { log, lock },
    )
}

/// A log that holds the data directory's lock until it closes.
struct Locked<L> {
    log: L,
    lock: Option<std::fs::File>,
}

impl<L: log::Log> log::Log for Locked<L> {
    fn append(&mut self, first_seq: u64, appends: &[log::Append]) -> Result<(), StoreError> {
        self.log.append(first_seq, appends)
    }

    fn close(&mut self) {
        self.log.close();
        self.lock = None;
    }
}

fn start(
    options: &StoreOptions,
    rules: &Rules,
    metrics: Arc<StoreMetrics>,
    mut taps: Vec<Box<dyn Tap>>,
    recovered: recovery::Recovered,
    log: impl log::Log,
) -> Result<Opened, StoreError> {
    let next_seq = recovered.image.seq + 1;
    let snapshot_seq = recovered.image.seq - recovered.replayed;
    // The newest snapshot's size, if it was loaded from this directory.
    let snapshot_bytes = std::fs::metadata(options.dir.join(snapshot::file_name(snapshot_seq)))
        .map_or(0, |m| m.len());
    let replica = Shadow {
        image: recovered.image.replica(),
        rules: *rules,
        dir: options.dir.clone(),
        every_events: options.snapshot_every_events,
        interval: options.snapshot_interval,
        snapshot_seq,
        snapshot_bytes,
        metrics: metrics.clone(),
    };
    let (shadow_tap, snapshots) = replica.spawn().map_err(StoreError::io(&options.dir))?;
    taps.insert(0, Box::new(shadow_tap));
    let tail = tail::Tail::new(recovered.image.seq);
    taps.push(Box::new(tail::TailTap(tail.clone())));
    let log =
        LogHandle::spawn(log, next_seq, taps, metrics).map_err(StoreError::io(&options.dir))?;
    Ok(Opened {
        image: recovered.image,
        replayed: recovered.replayed,
        log,
        snapshots,
        tail,
    })
}
