//! Moving input that cannot be queued into `corrupt/`, with a `.reason`
//! file beside it. Nothing is ever deleted: the administrator decides.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::PickupError;

/// Moves `file` into `corrupt_dir` under a unique name and writes
/// `<name>.reason` holding `reason` and the original path. The reason is
/// written first, so a crash never leaves a quarantined file unexplained.
pub fn quarantine(file: &Path, corrupt_dir: &Path, reason: &str) -> Result<PathBuf, PickupError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}.{n}.{base}", crate::model::now_micros());
    let dest = corrupt_dir.join(&name);
    let reason_path = corrupt_dir.join(format!("{name}.reason"));
    let text = format!("{reason}\noriginal: {}\n", file.display());
    std::fs::write(&reason_path, text).map_err(|e| PickupError::io("write", &reason_path, e))?;
    std::fs::rename(file, &dest).map_err(|e| PickupError::io("rename", file, e))?;
    crate::spool::sync_dir(corrupt_dir)
        .map_err(|e| PickupError::io("fsync directory", corrupt_dir, e))?;
    Ok(dest)
}
