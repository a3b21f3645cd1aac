//! Reading durable records back from the log files while the server runs (the event
//! feed's catch-up, the outbox). Readers scan a segment's record headers and skip to
//! the sequence number they want; they never read past the last durable record they
//! are given, so they see nothing a crash could take back, and a record the writer is
//! still appending (cut short) ends the read.

use super::format::{self, Record};
use super::{StoreError, snapshot};
use crate::domain::Event;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The records asked for were pruned behind a snapshot; `oldest` is the first one
    /// the log still holds.
    #[error("record {wanted} is no longer kept; the oldest is {oldest}")]
    Pruned {
        /// The first record asked for.
        wanted: u64,
        /// The oldest record kept.
        oldest: u64,
    },
    /// The files could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sequence number of the oldest record the log in `dir` holds (`None`: no
/// segment).
pub fn oldest_seq(dir: &Path) -> Result<Option<u64>, StoreError> {
    Ok(snapshot::numbered_files(dir, ".log")?
        .first()
        .map(|(first, _)| *first))
}

/// Records `from..=up_to` of the log in `dir`, at most `max`, in order.
pub fn read(dir: &Path, from: u64, up_to: u64, max: usize) -> Result<Vec<(u64, Event)>, ReadError> {
    let mut out = Vec::new();
    if from > up_to || max == 0 {
        return Ok(out);
    }
    let segments = snapshot::numbered_files(dir, ".log")?;
    let Some(start) = segments.iter().rposition(|(first, _)| *first <= from) else {
        let oldest = segments.first().map_or(from, |(first, _)| *first);
        return Err(ReadError::Pruned {
            wanted: from,
            oldest,
        });
    };
    let mut next = from;
    for (_, path) in &segments[start..] {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            // Pruned between the listing and now: what it held is gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && out.is_empty() => {
                let oldest = oldest_seq(dir)?.unwrap_or(from);
                return Err(ReadError::Pruned {
                    wanted: from,
                    oldest,
                });
            }
            Err(e) => return Err(StoreError::io(path)(e).into()),
        };
        let mut reader = BufReader::with_capacity(1 << 16, file);
        reader
            .seek(SeekFrom::Start(format::SEGMENT_HEADER_LEN as u64))
            .map_err(StoreError::io(path))?;
        let mut header = [0u8; format::RECORD_HEADER_LEN];
        let mut record = Vec::new();
        loop {
            if next > up_to || out.len() >= max {
                return Ok(out);
            }
            if reader.read_exact(&mut header).is_err() || format::is_end(&header) {
                break; // The end of this segment's records (or one still being written).
            }
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
            if seq < next {
                reader
                    .seek_relative(i64::from(len))
                    .map_err(StoreError::io(path))?;
                continue;
            }
            record.clear();
            record.extend_from_slice(&header);
            record.resize(format::RECORD_HEADER_LEN + len as usize, 0);
            if reader
                .read_exact(&mut record[format::RECORD_HEADER_LEN..])
                .is_err()
            {
                break;
            }
            match format::decode_record(&record) {
                Record::Valid { seq, event, .. } if seq == next => {
                    out.push((seq, *event));
                    next += 1;
                }
                // Not durable yet, or not a record: nothing more here for now.
                _ => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::queue::QueueEvent;
    use crate::domain::{ConcertId, UserId};
    use crate::store::file_log;
    use std::io::Write;

    fn event(user: u64) -> Event {
        Event::Queue(ConcertId(1), QueueEvent::Left { user: UserId(user) })
    }

    /// A segment starting at `first` holding records `first..first + n`, and `torn`
    /// bytes of one more record.
    fn segment(dir: &Path, first: u64, n: u64, torn: usize) {
        let (mut file, _) = file_log::create_segment(dir, first).unwrap();
        let mut bytes = Vec::new();
        for seq in first..first + n {
            format::encode_record(&mut bytes, seq, &event(seq));
        }
        let mut extra = Vec::new();
        format::encode_record(&mut extra, first + n, &event(0));
        bytes.extend_from_slice(&extra[..torn]);
        file.write_all(&bytes).unwrap();
    }

    #[test]
    fn records_are_read_across_segments_up_to_the_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 1, 5, 0);
        segment(dir.path(), 6, 5, 7);
        let seqs =
            |records: Vec<(u64, Event)>| records.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(
            seqs(read(dir.path(), 3, 8, 100).unwrap()),
            [3, 4, 5, 6, 7, 8]
        );
        assert_eq!(seqs(read(dir.path(), 4, 100, 3).unwrap()), [4, 5, 6]);
        // A record still being written ends the read.
        assert_eq!(seqs(read(dir.path(), 9, 100, 100).unwrap()), [9, 10]);
        assert_eq!(read(dir.path(), 2, 2, 100).unwrap()[0].1, event(2));
    }

    #[test]
    fn records_pruned_behind_a_snapshot_are_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 6, 5, 0);
        match read(dir.path(), 3, 10, 100) {
            Err(ReadError::Pruned { wanted, oldest }) => assert_eq!((wanted, oldest), (3, 6)),
            other => panic!("{other:?}"),
        }
        assert_eq!(oldest_seq(dir.path()).unwrap(), Some(6));
    }
}
