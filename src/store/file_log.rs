//! [`FileLog`]: the log on local disk, the default [`Log`]. It owns the open segment
//! and appends each group of batches with one `write` and one `fdatasync`
//! ([`FsyncPolicy`]); a new segment starts once the current one passes
//! [`SEGMENT_LEN_MAX`]. The segment and record formats are described in the module
//! docs of [`crate::store`].

use super::format;
use super::log::{Append, Log};
use super::{FsyncPolicy, StoreError, StoreMetrics, sync_dir};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A new segment starts once the current one is this long.
pub const SEGMENT_LEN_MAX: u64 = 64 * 1024 * 1024;

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

/// The log in a data directory's segment files.
pub struct FileLog {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment: File,
    segment_path: PathBuf,
    segment_len: u64,
    buffer: Vec<u8>,
    metrics: Arc<StoreMetrics>,
    /// Held while the log is open: the OS lock on the data directory.
    lock: Option<File>,
}

impl FileLog {
    /// Opens a new segment beginning at `next_seq` in `dir`, which `lock` locks.
    pub fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        next_seq: u64,
        lock: File,
        metrics: Arc<StoreMetrics>,
    ) -> Result<FileLog, StoreError> {
        let (segment, segment_path) = create_segment(dir, next_seq)?;
        Ok(FileLog {
            dir: dir.to_owned(),
            fsync,
            segment,
            segment_path,
            segment_len: format::SEGMENT_HEADER_LEN as u64,
            buffer: Vec::with_capacity(1 << 20),
            metrics,
            lock: Some(lock),
        })
    }
}

impl Log for FileLog {
    fn append(&mut self, first_seq: u64, appends: &[Append]) -> Result<(), StoreError> {
        if self.segment_len >= SEGMENT_LEN_MAX {
            (self.segment, self.segment_path) = create_segment(&self.dir, first_seq)?;
            self.segment_len = format::SEGMENT_HEADER_LEN as u64;
        }
        self.buffer.clear();
        let events = appends.iter().flat_map(|a| &a.events);
        for (seq, event) in (first_seq..).zip(events) {
            format::encode_record(&mut self.buffer, seq, event);
        }
        self.segment
            .write_all(&self.buffer)
            .map_err(StoreError::io(&self.segment_path))?;
        if self.fsync == FsyncPolicy::Always {
            let started = Instant::now();
            self.segment
                .sync_data()
                .map_err(StoreError::io(&self.segment_path))?;
            self.metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.segment_len += self.buffer.len() as u64;
        self.metrics.log_bytes.inc_by(self.buffer.len() as u64);
        Ok(())
    }

    fn close(&mut self) {
        self.lock = None;
    }
}
