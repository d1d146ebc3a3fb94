//! Key files: load if present, create atomically with mode 0600 if absent, never overwrite.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use x0x_proto::identity::{
    AgentKeypair, GenerateError, KeyDecodeError, MachineKeypair, UserKeypair,
};

use crate::error::Error;

/// A keypair type that can live in a key file (`"X0K" | version | role | seed`).
pub trait KeyFile: Sized {
    /// Parses the file contents, refusing other roles and formats.
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError>;
    /// The file contents.
    fn encode(&self) -> Vec<u8>;
    /// A fresh key from the operating system RNG.
    fn generate_new() -> Result<Self, GenerateError>;
}

macro_rules! key_file {
    ($($t:ty),*) => {$(
        impl KeyFile for $t {
            fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
                <$t>::from_bytes(bytes)
            }
            fn encode(&self) -> Vec<u8> {
                self.to_bytes()
            }
            fn generate_new() -> Result<Self, GenerateError> {
                <$t>::generate()
            }
        }
    )*};
}
key_file!(MachineKeypair, AgentKeypair, UserKeypair);

/// Largest file read as a key (a key file is 37 bytes); anything longer is refused unread.
const MAX_KEY_FILE: u64 = 4096;

/// Loads the key at `path`, or creates it if the file does not exist.
///
/// A file that exists but does not decode as a key of type `K` is an
/// [`Error::KeyFileInvalid`] and is left untouched. A new file is written to a temporary file
/// in the same directory, synced, given mode 0600 (unix) and linked into place without
/// replacing anything that appeared meanwhile; the directory is synced after.
pub fn load_or_create<K: KeyFile>(path: &Path) -> Result<K, Error> {
    let io_err = |source| Error::KeyFileIo {
        path: path.to_path_buf(),
        source,
    };
    match read_capped(path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = K::generate_new()?;
            match write_new(path, &key.encode()) {
                Ok(()) => Ok(key),
                // Someone else created it first: theirs wins, and it is never overwritten.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    decode(path, &read_capped(path).map_err(io_err)?)
                }
                Err(e) => Err(io_err(e)),
            }
        }
        Err(e) => Err(io_err(e)),
    }
}

fn decode<K: KeyFile>(path: &Path, bytes: &[u8]) -> Result<K, Error> {
    K::decode(bytes).map_err(|source| Error::KeyFileInvalid {
        path: path.to_path_buf(),
        source,
    })
}

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".x0x-key-")
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_reload_and_refuse_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("sub/machine.key");
        let k1: MachineKeypair = load_or_create(&m).unwrap();
        let k2: MachineKeypair = load_or_create(&m).unwrap();
        assert_eq!(k1.machine_id(), k2.machine_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&m).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let before = fs::read(&m).unwrap();
        let err = load_or_create::<AgentKeypair>(&m).unwrap_err();
        assert!(matches!(
            err,
            Error::KeyFileInvalid {
                source: KeyDecodeError::WrongRole { .. },
                ..
            }
        ));
        assert_eq!(fs::read(&m).unwrap(), before);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
