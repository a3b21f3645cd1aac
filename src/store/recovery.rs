//! Rebuilding the state at start: the newest whole snapshot, then the log after it
//! (rules in the module docs of [`crate::store`]).

use super::format::{self, Record};
use super::snapshot;
use super::{StoreError, sync_dir};
use crate::domain::Rules;
use crate::domain::{Event, Image};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// What recovery found.
pub struct Recovered {
    /// The state after the last valid record.
    pub image: Image,
    /// How many log records were replayed on top of the snapshot.
    pub replayed: u64,
}

/// Takes the OS lock on the data directory (creating it if needed).
pub fn lock(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
    }
}

/// Recovers the state in `dir` (which the caller has locked).
pub fn recover(dir: &Path, rules: &Rules) -> Result<Recovered, StoreError> {
    snapshot::remove_temporaries(dir)?;
    let mut image = newest_snapshot(dir)?.unwrap_or_else(|| Image::empty(rules));
    image.set_rules(rules);
    let base = image.seq;
    let segments = snapshot::numbered_files(dir, ".log")?;
    for (i, (first, path)) in segments.iter().enumerate() {
        let next_first = segments.get(i + 1).map(|(seq, _)| *seq);
        if next_first.is_some_and(|next| next <= image.seq + 1) {
            continue; // Every record in it is already in the snapshot.
        }
        if *first > image.seq + 1 {
            return Err(corrupt(
                path,
                0,
                format!(
                    "the log resumes at {first}, but the state ends at {}",
                    image.seq
                ),
            ));
        }
        replay_segment(path, *first, next_first.is_none(), &mut image, rules)?;
    }
    remove_empty_tail(dir, &segments, image.seq)?;
    Ok(Recovered {
        replayed: image.seq - base,
        image,
    })
}

fn newest_snapshot(dir: &Path) -> Result<Option<Image>, StoreError> {
    for (seq, path) in snapshot::list(dir)?.into_iter().rev() {
        let bytes = std::fs::read(&path).map_err(StoreError::io(&path))?;
        match format::decode_snapshot::<Image>(&bytes) {
            Ok((header_seq, image)) if header_seq == seq && image.seq == seq => {
                return Ok(Some(image));
            }
            Ok(_) => set_aside(&path, "sequence numbers disagree")?,
            Err(why) => set_aside(&path, &why)?,
        }
    }
    Ok(None)
}

/// Renames a damaged snapshot to `*.snapshot.damaged` (kept for inspection), so it no
/// longer counts among the snapshots kept and an older whole one is not pruned for it.
fn set_aside(path: &Path, why: &str) -> Result<(), StoreError> {
    let damaged = path.with_extension("snapshot.damaged");
    tracing::warn!(
        "{}: {why}; set aside as {}, using an older snapshot",
        path.display(),
        damaged.display()
    );
    std::fs::rename(path, &damaged).map_err(StoreError::io(path))
}

fn replay_segment(
    path: &Path,
    first: u64,
    is_last: bool,
    image: &mut Image,
    rules: &Rules,
) -> Result<(), StoreError> {
    let bytes = std::fs::read(path).map_err(StoreError::io(path))?;
    if bytes.len() < format::SEGMENT_HEADER_LEN && is_last {
        tracing::warn!(
            "{}: torn segment header; removing the segment",
            path.display()
        );
        return truncate(path, 0);
    }
    format::check_segment_header(&bytes).map_err(|why| corrupt(path, 0, why))?;
    // One thread decodes while this one applies: a start takes the longer of the two,
    // not their sum.
    let end = std::thread::scope(|scope| {
        let (to_apply, decoded) = std::sync::mpsc::sync_channel(DECODED_CHUNKS_AHEAD);
        let segment = &bytes;
        let decoder = scope.spawn(move || decode_records(segment, first, to_apply));
        for chunk in decoded {
            for (seq, event) in chunk {
                if seq > image.seq {
                    image.apply(seq, &event, rules);
                }
            }
        }
        decoder.join().expect("decoding does not panic")
    });
    let (offset, why) = match end {
        SegmentEnd::Whole => return Ok(()),
        // The writer stopped without cutting them off (a crash): cut them now, so that
        // a segment the writer has left holds its records alone.
        SegmentEnd::Zeros { offset } => return truncate(path, offset as u64),
        SegmentEnd::OutOfSequence {
            offset,
            seq,
            expected,
        } => {
            return Err(corrupt(
                path,
                offset as u64,
                format!("sequence number {seq}, expected {expected}"),
            ));
        }
        SegmentEnd::Broken {
            offset,
            expected,
            why,
        } => {
            if is_last && !valid_record_follows(&bytes[offset + 1..], expected) {
                tracing::warn!(
                    "{} at byte {offset}: {why}; torn tail of {} bytes cut off",
                    path.display(),
                    bytes.len() - offset
                );
                return truncate(path, offset as u64);
            }
            (offset, why)
        }
    };
    Err(corrupt(
        path,
        offset as u64,
        format!("{why}, and valid records follow"),
    ))
}

/// Records decoded in one go and handed to the applying thread together.
const DECODED_CHUNK_LEN: usize = 4096;
/// Chunks decoded ahead of the one being applied.
const DECODED_CHUNKS_AHEAD: usize = 4;

/// Where the valid records of a segment end.
enum SegmentEnd {
    /// At the end of the segment.
    Whole,
    /// At zeros that run to the end of the segment.
    Zeros { offset: usize },
    /// At a valid record with the wrong sequence number.
    OutOfSequence {
        offset: usize,
        seq: u64,
        expected: u64,
    },
    /// At a record cut short or damaged (`expected` would have been its number).
    Broken {
        offset: usize,
        expected: u64,
        why: String,
    },
}

/// Decodes the records of a segment (`bytes`, header checked) whose first is number
/// `first`, in order, and sends them on in chunks until the valid ones end; says where.
fn decode_records(
    bytes: &[u8],
    first: u64,
    to_apply: SyncSender<Vec<(u64, Box<Event>)>>,
) -> SegmentEnd {
    let mut offset = format::SEGMENT_HEADER_LEN;
    let mut expected = first;
    let mut chunk = Vec::with_capacity(DECODED_CHUNK_LEN);
    let end = loop {
        if offset >= bytes.len() {
            break SegmentEnd::Whole;
        }
        let why = match format::decode_record(&bytes[offset..]) {
            Record::Valid { seq, event, len } => {
                if seq != expected {
                    break SegmentEnd::OutOfSequence {
                        offset,
                        seq,
                        expected,
                    };
                }
                chunk.push((seq, event));
                if chunk.len() == DECODED_CHUNK_LEN {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(DECODED_CHUNK_LEN));
                    if to_apply.send(full).is_err() {
                        // The applying thread is gone (it panicked); it reports that.
                        return SegmentEnd::Whole;
                    }
                }
                expected += 1;
                offset += len;
                continue;
            }
            // Zeros to the end: where the writer had zeroed ahead of its records.
            Record::End if bytes[offset..].iter().all(|&b| b == 0) => {
                break SegmentEnd::Zeros { offset };
            }
            Record::End => "zeros where a record should start".to_owned(),
            Record::Truncated => "record cut short".to_owned(),
            Record::Damaged(why) => why,
        };
        break SegmentEnd::Broken {
            offset,
            expected,
            why,
        };
    };
    // The records before the end are applied whatever the end is.
    let _ = to_apply.send(chunk);
    end
}

/// Whether a valid record with a sequence number from `from_seq` on starts anywhere in
/// `bytes` (damage in the middle of the log rather than a torn tail).
fn valid_record_follows(bytes: &[u8], from_seq: u64) -> bool {
    let plausible = from_seq..from_seq.saturating_add(bytes.len() as u64);
    (0..bytes.len().saturating_sub(format::RECORD_HEADER_LEN)).any(|at| {
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        plausible.contains(&seq)
            && matches!(format::decode_record(&bytes[at..]), Record::Valid { .. })
    })
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(StoreError::io(path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(StoreError::io(path))
}

/// Removes trailing segments holding no records (the writer starts a new one).
fn remove_empty_tail(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    last_seq: u64,
) -> Result<(), StoreError> {
    for (first, path) in segments.iter().rev() {
        if *first <= last_seq {
            break;
        }
        std::fs::remove_file(path).map_err(StoreError::io(path))?;
    }
    sync_dir(dir)
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    }
}
