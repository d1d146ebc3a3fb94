//! `contacts.json`: the agent's contact store, loaded at start and written (atomically) after
//! every change, in x0x's shape (`{"contacts": […], "revocations": […]}`).
//!
//! A file that does not parse, or that the store refuses (over its caps, a revoked agent not
//! blocked), is never silently replaced: it is moved aside to `contacts.json.corrupt-<unix
//! seconds>`, the log says so, and the daemon starts with no contacts.

use std::path::{Path, PathBuf};

use x0x_proto::trust::{ContactStore, TrustConfig, TrustState};

use crate::files;

/// The file's name in the data dir.
pub const CONTACTS: &str = "contacts.json";

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet.
    Missing,
    /// The saved store.
    State(TrustState),
    /// The file was unusable and moved to `moved_to`.
    MovedAside {
        /// Where it went.
        moved_to: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

/// Loads `contacts.json` from `dir`.
pub fn load(dir: &Path, now_secs: u64) -> Loaded {
    let path = dir.join(CONTACTS);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return move_aside(&path, now_secs, format!("unreadable: {e}")),
    };
    let state: TrustState = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return move_aside(&path, now_secs, format!("not valid JSON: {e}")),
    };
    match ContactStore::from_state(state.clone(), TrustConfig::default()) {
        Ok(_) => Loaded::State(state),
        Err(e) => move_aside(&path, now_secs, e.to_string()),
    }
}

fn move_aside(path: &Path, now_secs: u64, reason: String) -> Loaded {
    let moved_to = path.with_extension(format!("json.corrupt-{now_secs}"));
    match std::fs::rename(path, &moved_to) {
        Ok(()) => Loaded::MovedAside { moved_to, reason },
        Err(e) => Loaded::MovedAside {
            moved_to: path.to_path_buf(),
            reason: format!("{reason}; and it could not be moved aside: {e}"),
        },
    }
}

/// Writes the store to `dir/contacts.json` (temporary file and rename).
pub fn save(dir: &Path, state: &TrustState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    files::write_atomic(&dir.join(CONTACTS), &bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x0x_proto::AgentId;
    use x0x_proto::trust::TrustLevel;

    #[test]
    fn round_trip_and_a_corrupt_file_is_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(load(d.path(), 1), Loaded::Missing));
        let mut store = ContactStore::new(TrustConfig::default());
        store
            .add(
                AgentId::from_bytes([1; 32]),
                TrustLevel::Trusted,
                Some("a".into()),
                5,
            )
            .unwrap();
        save(d.path(), &store.state()).unwrap();
        match load(d.path(), 2) {
            Loaded::State(s) => assert_eq!(s, store.state()),
            other => panic!("{other:?}"),
        }
        std::fs::write(d.path().join(CONTACTS), b"{broken").unwrap();
        match load(d.path(), 3) {
            Loaded::MovedAside { moved_to, reason } => {
                assert!(reason.contains("JSON"), "{reason}");
                assert_eq!(std::fs::read(&moved_to).unwrap(), b"{broken");
            }
            other => panic!("{other:?}"),
        }
        assert!(!d.path().join(CONTACTS).exists());
    }
}
