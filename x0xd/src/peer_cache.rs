//! `peers.json`: the agent's peer cache ([`x0x_proto::peer_cache`]) kept in the data dir. Read
//! at start (the node dials the best entries besides the bootstrap list), written whenever it
//! changed; a corrupt file is moved aside and reported, never silently replaced.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use x0x_driver_tokio::{CachedPeer, ScoredPeer};
use x0x_proto::MachineId;

/// One entry as the file and `/network/bootstrap-cache` show it. Reads the earlier format
/// (`last_connected`, no failures) too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePeer {
    /// Where to dial.
    pub addr: SocketAddr,
    /// The machine found there, hex, when known.
    #[serde(default)]
    pub machine_id: Option<String>,
    /// Handshakes completed on dials to it.
    #[serde(default)]
    pub successes: u32,
    /// Dials to it that failed.
    #[serde(default)]
    pub failures: u32,
    /// Handshake round trip, milliseconds (moving average).
    #[serde(default)]
    pub rtt_ms: Option<u32>,
    /// Last success, unix seconds.
    #[serde(default, alias = "last_connected")]
    pub last_success: Option<u64>,
    /// Last time it was added or heard of, unix seconds.
    #[serde(default)]
    pub last_seen: u64,
    /// Its quality when written, 0 to 1 (shown, not read back).
    #[serde(default, skip_deserializing)]
    pub quality: Option<f64>,
}

impl FilePeer {
    /// The entry of a scored cache entry.
    pub fn of(s: &ScoredPeer) -> Self {
        let p = &s.peer;
        Self {
            addr: p.addr,
            machine_id: p.machine_id.map(|m| m.to_hex()),
            successes: p.successes,
            failures: p.failures,
            rtt_ms: p.rtt_ms,
            last_success: p.last_success,
            last_seen: p.last_seen,
            quality: Some((s.quality * 1000.0).round() / 1000.0),
        }
    }

    fn into_cached(self) -> CachedPeer {
        let machine_id = self
            .machine_id
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(MachineId::from_bytes);
        CachedPeer {
            addr: self.addr,
            machine_id,
            successes: self.successes,
            failures: self.failures,
            rtt_ms: self.rtt_ms,
            last_success: self.last_success,
            last_seen: self.last_seen.max(self.last_success.unwrap_or(0)),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    peers: Vec<FilePeer>,
}

/// The file, and what was last written to it.
#[derive(Debug)]
pub struct PeerCacheFile {
    path: PathBuf,
    written: Vec<FilePeer>,
}

impl PeerCacheFile {
    /// Reads `path`: the saved entries (none if missing or unreadable; a corrupt file is moved
    /// aside to `peers.json.corrupt` and reported in the log).
    pub fn load(path: &Path) -> (Self, Vec<CachedPeer>) {
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
        let file = Self {
            path: path.to_path_buf(),
            written: peers.clone(),
        };
        (file, peers.into_iter().map(FilePeer::into_cached).collect())
    }

    /// Writes the cache if its entries changed since the last write (qualities alone, which
    /// change with time, do not count).
    pub fn save(&mut self, scored: &[ScoredPeer]) -> std::io::Result<()> {
        let mut now: Vec<FilePeer> = scored.iter().map(FilePeer::of).collect();
        let strip = |v: &[FilePeer]| -> Vec<FilePeer> {
            let mut v: Vec<FilePeer> = v
                .iter()
                .map(|p| FilePeer {
                    quality: None,
                    ..p.clone()
                })
                .collect();
            v.sort_by_key(|p| p.addr);
            v
        };
        if strip(&now) == strip(&self.written) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&CacheFile {
            peers: std::mem::take(&mut now),
        })
        .map_err(std::io::Error::other)?;
        crate::files::write_atomic(&self.path, &bytes, false)?;
        self.written = serde_json::from_slice::<CacheFile>(&bytes)
            .map(|f| f.peers)
            .unwrap_or_default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_format_reads_and_a_corrupt_file_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        std::fs::write(
            &p,
            br#"{"peers":[{"addr":"127.0.0.1:5000","machine_id":"ab","last_connected":10,"successes":2}]}"#,
        )
        .unwrap();
        let (_, saved) = PeerCacheFile::load(&p);
        assert_eq!(saved.len(), 1);
        assert_eq!((saved[0].successes, saved[0].last_success), (2, Some(10)));
        assert_eq!(
            saved[0].machine_id, None,
            "a malformed id is dropped, not the entry"
        );
        std::fs::write(&p, b"{not json").unwrap();
        let (_, saved) = PeerCacheFile::load(&p);
        assert!(saved.is_empty());
        assert!(d.path().join("peers.json.corrupt").exists());
    }

    #[test]
    fn saved_entries_come_back_and_an_unchanged_cache_is_not_rewritten() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        let (mut f, _) = PeerCacheFile::load(&p);
        let peer = CachedPeer {
            addr: "127.0.0.1:7000".parse().unwrap(),
            machine_id: Some(MachineId::from_bytes([3; 32])),
            successes: 1,
            failures: 0,
            rtt_ms: Some(4),
            last_success: Some(100),
            last_seen: 100,
        };
        let scored = vec![ScoredPeer {
            peer: peer.clone(),
            quality: 0.66,
        }];
        f.save(&scored).unwrap();
        let (_, back) = PeerCacheFile::load(&p);
        assert_eq!(back, vec![peer]);
        std::fs::remove_file(&p).unwrap();
        let rescored = vec![ScoredPeer {
            quality: 0.5,
            ..scored[0].clone()
        }];
        f.save(&rescored).unwrap();
        assert!(!p.exists(), "only the quality changed: nothing written");
    }
}
