//! Byte layouts of log records, segment headers and snapshots (see the module docs of
//! [`crate::store`]), and their checks. Pure functions over byte slices.

use crate::domain::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Seek, SeekFrom, Write};

/// Magic at the start of a log segment.
pub const LOG_MAGIC: &[u8; 8] = b"BOXOLOG1";
/// Magic at the start of a snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BOXSNAP1";
/// The format version this build writes and reads.
///
/// Version 2 added what follows a sale (refunds, check-ins, pausing and cancelling a
/// date): new event kinds and new fields in reservations and date states. Version 1
/// data is refused with its version named, never misread.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Bytes of a record header (length, checksum, sequence number).
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest record payload accepted.
pub const RECORD_LEN_MAX: u32 = 16 * 1024 * 1024;
/// Bytes of a snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 36;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The 16-byte header of a new segment.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(LOG_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Whether `bytes` start with a valid segment header.
pub fn check_segment_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < SEGMENT_HEADER_LEN || &bytes[..8] != LOG_MAGIC {
        return Err("not a boxoffice log segment (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "log format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one record for `event` with sequence number `seq` to `buffer`.
pub fn encode_record(buffer: &mut Vec<u8>, seq: u64, event: &Event) {
    let start = buffer.len();
    buffer.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    bincode::serde::encode_into_std_write(event, buffer, config())
        .expect("writing to a Vec cannot fail");
    let payload_len = buffer.len() - start - RECORD_HEADER_LEN;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|n| *n <= RECORD_LEN_MAX)
        .expect("an event is small");
    let crc = checksum(seq, &buffer[start + RECORD_HEADER_LEN..]);
    buffer[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buffer[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// A whole, valid record: its sequence number, event and encoded length.
    Valid {
        /// Sequence number.
        seq: u64,
        /// The event.
        event: Box<Event>,
        /// Bytes the record takes, header included.
        len: usize,
    },
    /// Zeros where a record header would be: the records written so far end here
    /// (the writer keeps zeros written past them; see [`super::file_log`]). No record
    /// starts with zeros: its length and sequence number are never 0.
    End,
    /// The bytes end before the record does.
    Truncated,
    /// The record is whole but wrong (checksum, length or payload).
    Damaged(String),
}

/// Reads the record at the start of `bytes` (which must not be empty).
pub fn decode_record(bytes: &[u8]) -> Record {
    if is_end(bytes) {
        return Record::End;
    }
    if bytes.len() < RECORD_HEADER_LEN {
        return Record::Truncated;
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if len > RECORD_LEN_MAX {
        return Record::Damaged(format!("record length {len} is over the limit"));
    }
    let end = RECORD_HEADER_LEN + len as usize;
    if bytes.len() < end {
        return Record::Truncated;
    }
    let payload = &bytes[RECORD_HEADER_LEN..end];
    if checksum(seq, payload) != crc {
        return Record::Damaged("checksum mismatch".into());
    }
    match bincode::serde::decode_from_slice::<Event, _>(payload, config()) {
        Ok((event, read)) if read == payload.len() => Record::Valid {
            seq,
            event: Box::new(event),
            len: end,
        },
        Ok(_) => Record::Damaged("payload has trailing bytes".into()),
        Err(e) => Record::Damaged(format!("payload does not decode: {e}")),
    }
}

/// Whether `bytes` start with what [`Record::End`] is: a record header's worth of
/// zeros, or zeros up to their end if fewer.
pub fn is_end(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(RECORD_HEADER_LEN)]
        .iter()
        .all(|&b| b == 0)
}

/// Encodes a snapshot of `value` taken after sequence number `seq`.
pub fn encode_snapshot<T: Serialize>(seq: u64, value: &T) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    write_snapshot(seq, value, &mut bytes).expect("a Vec takes every byte");
    bytes.into_inner()
}

/// Writes a snapshot of `value` taken after sequence number `seq` to `out`, from
/// where it stands; answers its length in bytes. The payload streams straight to
/// `out` (a snapshot of a big sale is tens of megabytes: no buffer holds it whole),
/// and the header, which states its length and checksum, is written over its place
/// at the end.
pub fn write_snapshot<T: Serialize, W: Write + Seek>(
    seq: u64,
    value: &T,
    mut out: W,
) -> std::io::Result<u64> {
    let start = out.stream_position()?;
    out.write_all(&[0u8; SNAPSHOT_HEADER_LEN])?;
    // Buffered before the checksum: bincode writes a field at a time.
    let mut payload = std::io::BufWriter::with_capacity(
        PAYLOAD_BUFFER,
        Checksummed {
            out: &mut out,
            crc: crc32fast::Hasher::new(),
            len: 0,
        },
    );
    bincode::serde::encode_into_std_write(value, &mut payload, config())
        .map_err(std::io::Error::other)?;
    let payload = payload.into_inner().map_err(|e| e.into_error())?;
    let (len, crc) = (payload.len, payload.crc.finalize());
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&[0u8; 4]);
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header)?;
    out.seek(SeekFrom::Start(start + SNAPSHOT_HEADER_LEN as u64 + len))?;
    Ok(SNAPSHOT_HEADER_LEN as u64 + len)
}

/// The buffer a snapshot's payload passes through on its way out.
const PAYLOAD_BUFFER: usize = 1 << 20;

/// A writer that counts and checksums what passes through it.
struct Checksummed<W> {
    out: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.crc.update(&bytes[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Decodes a snapshot: its sequence number and value.
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<(u64, T), String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err("not a boxoffice snapshot (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "snapshot format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let seq = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let (value, read) =
        bincode::serde::decode_from_slice(payload, config()).map_err(|e| e.to_string())?;
    if read != payload.len() {
        return Err("payload has trailing bytes".into());
    }
    Ok((seq, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::CatalogEvent;
    use crate::domain::queue::QueueEvent;
    use crate::domain::{ConcertId, UserId};

    fn event(user: u64) -> Event {
        Event::Queue(ConcertId(1), QueueEvent::Left { user: UserId(user) })
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut buffer = Vec::new();
        encode_record(&mut buffer, 7, &event(3));
        match decode_record(&buffer) {
            Record::Valid {
                seq,
                event: read,
                len,
            } => {
                assert_eq!((seq, *read, len), (7, event(3), buffer.len()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cut_record_is_truncated_and_a_flipped_bit_is_damage() {
        let mut buffer = Vec::new();
        encode_record(&mut buffer, 1, &event(3));
        for cut in 1..buffer.len() {
            assert_eq!(
                decode_record(&buffer[..cut]),
                Record::Truncated,
                "cut at {cut}"
            );
        }
        for byte in 4..buffer.len() {
            let mut damaged = buffer.clone();
            damaged[byte] ^= 0x10;
            assert!(
                matches!(decode_record(&damaged), Record::Damaged(_)),
                "flip at {byte}"
            );
        }
    }

    #[test]
    fn a_snapshot_reads_back_and_any_damage_is_refused() {
        let value = vec![CatalogEvent::ConcertCreated {
            concert_id: ConcertId(1),
            date_ids: vec![],
            spec: crate::domain::catalog::ConcertSpec {
                title: "Winter Tour".into(),
                venue: "Olympic Hall".into(),
                dates: vec![],
            },
            at: chrono::Utc::now(),
        }];
        let bytes = encode_snapshot(42, &value);
        assert_eq!(
            decode_snapshot::<Vec<CatalogEvent>>(&bytes),
            Ok((42, value))
        );
        assert!(decode_snapshot::<Vec<CatalogEvent>>(&bytes[..bytes.len() - 1]).is_err());
        let mut damaged = bytes.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(decode_snapshot::<Vec<CatalogEvent>>(&damaged).is_err());
    }

    #[test]
    fn a_snapshot_streamed_after_other_bytes_reads_back_from_where_it_starts() {
        let value: Vec<u64> = (0..100_000).collect();
        let mut out = std::io::Cursor::new(b"before".to_vec());
        out.set_position(6);
        let len = write_snapshot(7, &value, &mut out).unwrap();
        let bytes = out.into_inner();
        assert_eq!(bytes.len() as u64, 6 + len, "it ends where it says");
        assert_eq!(&bytes[..6], b"before");
        assert_eq!(decode_snapshot::<Vec<u64>>(&bytes[6..]), Ok((7, value)));
    }
}
