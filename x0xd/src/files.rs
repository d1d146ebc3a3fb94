//! The files in a daemon's data directory, as x0x names them.
//!
//! | file | what |
//! |---|---|
//! | `api-token` | 64 lowercase hex chars, mode 0600, reused across restarts |
//! | `api.port` | the bound API address (`ip:port`, no newline) while the daemon serves |
//! | `machine.key`, `agent.key` | the node's keys (the ML-KEM key is derived from the agent key) |
//! | `peers.json` | the peer cache: scored addresses, the best dialled at start ([`crate::peer_cache`]) |

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The API token file.
pub const API_TOKEN: &str = "api-token";
/// The file holding the bound API address.
pub const API_PORT: &str = "api.port";
/// The machine key file.
pub const MACHINE_KEY: &str = "machine.key";
/// The agent key file.
pub const AGENT_KEY: &str = "agent.key";
/// The peer cache file.
pub const PEER_CACHE: &str = "peers.json";

/// Reads the API token, or creates one: 32 random bytes as 64 hex chars, mode 0600. An
/// existing file is reused if its trimmed contents are at least 32 characters (x0x's rule).
pub fn load_or_create_token(dir: &Path) -> io::Result<String> {
    let path = dir.join(API_TOKEN);
    if let Ok(s) = fs::read_to_string(&path) {
        let t = s.trim();
        if t.len() >= 32 {
            return Ok(t.to_string());
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    let token = hex::encode(raw);
    write_atomic(&path, token.as_bytes(), true)?;
    Ok(token)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// a reader sees the old contents or the new, never half. `private` gives mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        #[cfg(not(unix))]
        let _ = private;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Writes `api.port` with the bound address.
pub fn write_api_port(dir: &Path, addr: SocketAddr) -> io::Result<()> {
    write_atomic(&dir.join(API_PORT), addr.to_string().as_bytes(), false)
}

/// Removes `api.port` (on shutdown). A missing file is fine.
pub fn remove_api_port(dir: &Path) {
    let _ = fs::remove_file(dir.join(API_PORT));
}

/// Reads the API address an instance wrote, if it is running (or crashed without cleaning).
pub fn read_api_port(dir: &Path) -> Option<SocketAddr> {
    fs::read_to_string(dir.join(API_PORT))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The path of a file in the data directory.
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_private_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let t = load_or_create_token(d.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(d.path().join(API_TOKEN))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_create_token(d.path()).unwrap(), t);
    }

    #[test]
    fn a_short_token_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(API_TOKEN), "short").unwrap();
        assert_eq!(load_or_create_token(d.path()).unwrap().len(), 64);
    }

    #[test]
    fn api_port_round_trips_and_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let a: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        write_api_port(d.path(), a).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join(API_PORT)).unwrap(),
            "127.0.0.1:4321"
        );
        assert_eq!(read_api_port(d.path()), Some(a));
        remove_api_port(d.path());
        assert_eq!(read_api_port(d.path()), None);
    }
}
