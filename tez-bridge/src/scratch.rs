//! A run's scratch directory: where the DAG runner's JVM puts its temporary files (Tez local
//! mode's staging and cache, snappy-java's native library), so a run leaves nothing in the
//! system temp directory. Removed when dropped; one left by a killed bridge is removed by the
//! next bridge that starts ([`sweep`]).

use std::path::{Path, PathBuf};

use crate::owner::Owner;

const PREFIX: &str = "tidepool-bridge-";
const OWNER_FILE: &str = "owner.json";

/// A scratch directory under the system temp directory, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/tidepool-bridge-<pid>-<n>` and records its owner in it.
    pub fn create() -> std::io::Result<Scratch> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir();
        for n in 0u32.. {
            let path = tmp.join(format!("{PREFIX}{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let scratch = Scratch { path };
                    let owner = serde_json::to_vec(&Owner::current()).map_err(std::io::Error::other)?;
                    std::fs::write(scratch.path.join(OWNER_FILE), owner)?;
                    return Ok(scratch);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A JVM killed a moment ago may still be finishing a write; try again briefly.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => return,
            }
        }
    }
}

/// Removes scratch directories whose owner is gone (a bridge killed during a run). Returns how
/// many were removed.
pub fn sweep() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        let owner: Option<Owner> = std::fs::read(path.join(OWNER_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let gone = match owner {
            Some(owner) => owner.is_gone(),
            // Created a moment ago and not yet claimed, or not ours: leave it unless it is old.
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(3600))),
        };
        if gone && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_when_dropped_and_swept_when_the_owner_is_gone() {
        let scratch = Scratch::create().expect("create");
        let path = scratch.path().to_owned();
        std::fs::write(path.join("snappy-x-libsnappyjava.so"), b"x").expect("write");
        sweep();
        assert!(path.exists(), "a live owner's directory stays");
        drop(scratch);
        assert!(!path.exists());

        let orphan = Scratch::create().expect("create");
        let path = orphan.path().to_owned();
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id();
        child.wait().expect("wait");
        let dead = Owner { pid, ..Owner::current() };
        std::fs::write(path.join(OWNER_FILE), serde_json::to_vec(&dead).expect("json")).expect("write");
        std::mem::forget(orphan);
        assert!(sweep() >= 1);
        assert!(!path.exists());
    }
}
