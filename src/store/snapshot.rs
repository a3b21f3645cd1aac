//! Writing, finding and pruning snapshot files.

use super::format;
use super::{StoreError, sync_dir};
use crate::domain::Image;
use std::path::{Path, PathBuf};

/// Snapshots kept on disk.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The file name of the snapshot taken after `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}.snapshot")
}

/// Snapshot files in `dir`, oldest first, with their sequence numbers.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    numbered_files(dir, ".snapshot")
}

/// Files named `{number}{suffix}` in `dir`, by number.
pub fn numbered_files(dir: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let entry = entry.map_err(StoreError::io(dir))?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if let Ok(number) = number.parse::<u64>() {
            files.push((number, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Writes a snapshot of `image` (new file, fsync, rename, fsync the directory), then
/// removes all but the newest [`SNAPSHOTS_KEPT`]. Returns the sequence number up to
/// which log records are no longer needed (the oldest kept snapshot's, once there are
/// two; with one, a damaged snapshot must still be recoverable from the whole log) and
/// the snapshot's size in bytes.
pub fn write(dir: &Path, image: &Image) -> Result<(u64, u64), StoreError> {
    let path = dir.join(file_name(image.seq));
    let temporary = dir.join(format!("{}.tmp", file_name(image.seq)));
    let mut file = std::fs::File::create(&temporary).map_err(StoreError::io(&temporary))?;
    let len = format::write_snapshot(image.seq, image, &mut file)
        .and_then(|len| file.sync_all().map(|()| len))
        .map_err(StoreError::io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(StoreError::io(&path))?;
    sync_dir(dir)?;
    let snapshots = list(dir)?;
    let keep_from = snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
    for (_, old) in &snapshots[..keep_from] {
        std::fs::remove_file(old).map_err(StoreError::io(old))?;
    }
    let kept = &snapshots[keep_from..];
    let oldest_needed = if kept.len() >= SNAPSHOTS_KEPT {
        kept[0].0
    } else {
        0
    };
    Ok((oldest_needed, len))
}

/// Removes unfinished snapshot writes left by a crash.
pub fn remove_temporaries(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let path = entry.map_err(StoreError::io(dir))?.path();
        if path.to_str().is_some_and(|p| p.ends_with(".snapshot.tmp")) {
            std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
        }
    }
    Ok(())
}
