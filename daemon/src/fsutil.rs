//! File-system helpers shared by the store, the journal and the key file.

use std::fs::File;
use std::path::Path;

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
