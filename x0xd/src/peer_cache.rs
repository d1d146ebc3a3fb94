//! A capped cache of peer addresses that completed a handshake, kept in `peers.json` and
//! dialled at start, so a restarted daemon rejoins without its bootstrap list.
//!
//! Most recently connected first; at the cap the least recently connected address is evicted
//! and counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One remembered address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPeer {
    /// The address a handshake completed on.
    pub addr: SocketAddr,
    /// The peer's machine id, hex.
    pub machine_id: String,
    /// Last successful connection, unix seconds.
    pub last_connected: u64,
    /// Successful connections counted.
    pub successes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    peers: Vec<CachedPeer>,
}

/// The cache, in memory, with its file.
#[derive(Debug)]
pub struct PeerCache {
    path: PathBuf,
    capacity: usize,
    peers: Vec<CachedPeer>,
    dirty: bool,
    /// Entries evicted at the cap.
    pub evictions: u64,
}

impl PeerCache {
    /// Loads `path` (a missing or unreadable file is an empty cache; a corrupt one is moved
    /// aside to `peers.json.corrupt` and reported in the log).
    pub fn load(path: &Path, capacity: usize) -> Self {
        let mut peers = Vec::new();
        if let Ok(bytes) = std::fs::read(path) {
            match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(f) => peers = f.peers,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "peer cache is corrupt; moved aside");
                    let _ = std::fs::rename(path, path.with_extension("json.corrupt"));
                }
            }
        }
        peers.truncate(capacity);
        Self {
            path: path.to_path_buf(),
            capacity,
            peers,
            dirty: false,
            evictions: 0,
        }
    }

    /// Records a completed handshake with `machine_id` at `addr`.
    pub fn record(&mut self, addr: SocketAddr, machine_id: String, now_secs: u64) {
        let successes = match self.peers.iter().position(|p| p.addr == addr) {
            Some(i) => self.peers.remove(i).successes,
            None => 0,
        };
        self.peers.insert(
            0,
            CachedPeer {
                addr,
                machine_id,
                last_connected: now_secs,
                successes: successes + 1,
            },
        );
        if self.peers.len() > self.capacity {
            self.peers.truncate(self.capacity);
            self.evictions += 1;
        }
        self.dirty = true;
    }

    /// Addresses to dial at start, most recent first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(|p| p.addr).collect()
    }

    /// The entries, most recent first.
    pub fn peers(&self) -> &[CachedPeer] {
        &self.peers
    }

    /// The cap.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes the file if anything changed since the last flush.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&CacheFile {
            peers: self.peers.clone(),
        })
        .map_err(std::io::Error::other)?;
        crate::files::write_atomic(&self.path, &bytes, false)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn capped_most_recent_first_and_persisted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        let mut c = PeerCache::load(&p, 2);
        c.record(a(1), "m1".into(), 10);
        c.record(a(2), "m2".into(), 11);
        c.record(a(1), "m1".into(), 12);
        assert_eq!(c.addrs(), vec![a(1), a(2)]);
        assert_eq!(c.peers()[0].successes, 2);
        c.record(a(3), "m3".into(), 13);
        assert_eq!(c.addrs(), vec![a(3), a(1)]);
        assert_eq!(c.evictions, 1);
        c.flush().unwrap();
        let c2 = PeerCache::load(&p, 2);
        assert_eq!(c2.addrs(), vec![a(3), a(1)]);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_not_replaced_silently() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        std::fs::write(&p, b"{not json").unwrap();
        let c = PeerCache::load(&p, 4);
        assert!(c.addrs().is_empty());
        assert!(d.path().join("peers.json.corrupt").exists());
    }
}
