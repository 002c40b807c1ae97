//! The on-disk cache of precompiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds; loading a
//! precompiled one takes about one. Entries are keyed by the sha256 of the
//! component bytes and the engine's compatibility hash (wasmtime version,
//! target, settings), written atomically (temp file + rename) into a directory
//! created owner-only. The host refuses to read a cache directory that others
//! can write, and refuses to grant any plugin a directory containing it.
//!
//! A precompiled entry is native code, so each one carries an HMAC-SHA256 tag
//! (of its name and contents, under a 32-byte random key kept in the cache
//! directory's owner-only `key` file), checked before the entry is
//! deserialised. An entry written, truncated or swapped by anyone who does not
//! hold the key is ignored, compiled again and overwritten.

use crate::error::Error;
use crate::unsafe_ops;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The compiled-component cache.
#[derive(Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// The HMAC key of the entries.
    key: Option<std::sync::Arc<[u8; KEY_BYTES]>>,
}

impl std::fmt::Debug for ComponentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
type Mac = hmac::Hmac<Sha256>;

/// Where a component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry.
    Hit,
    /// Compiled and stored a new entry.
    Stored,
    /// Compiled without a cache (disabled or unusable).
    Uncached,
}

impl ComponentCache {
    /// A cache in `dir` (created owner-only if missing), or none at all.
    ///
    /// # Errors
    /// [`Error::Cache`] when the directory cannot be created or is writable by
    /// other users (it would let them plant native code).
    pub fn new(dir: Option<PathBuf>) -> Result<Self, Error> {
        let Some(dir) = dir else { return Ok(Self { dir: None, key: None }) };
        let fail = |message: String| Error::Cache { path: dir.clone(), message };
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&dir).map_err(|e| fail(e.to_string()))?;
            if meta.permissions().mode() & 0o022 != 0 {
                // Only tighten what we may own; refuse what stays open.
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                let mode = std::fs::metadata(&dir).map_err(|e| fail(e.to_string()))?.permissions().mode();
                if mode & 0o022 != 0 {
                    return Err(fail(format!("is writable by other users (mode {:o})", mode & 0o777)));
                }
            }
        }
        let dir = dir.canonicalize().map_err(|e| fail(e.to_string()))?;
        let key = read_or_create_key(&dir.join("key")).map_err(|e| fail(format!("key file: {e}")))?;
        Ok(Self { dir: Some(dir), key: Some(std::sync::Arc::new(key)) })
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component for `bytes`: from the cache, or compiled (and stored).
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let (Some(dir), Some(key)) = (&self.dir, &self.key) else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Uncached));
        };
        let name = format!("{}.cwasm", cache_key(engine, bytes));
        let path = dir.join(&name);
        if let Ok(entry) = std::fs::read(&path) {
            match verified(key, &name, &entry) {
                Some(compiled) => match unsafe_ops::deserialize_verified_component(engine, compiled) {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}"),
                },
                None => tracing::warn!(path = %path.display(), "ignoring a cache entry whose tag does not verify"),
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        let component = unsafe_ops::deserialize_fresh_component(engine, &compiled)?;
        let mut entry = tag(key, &name, &compiled).to_vec();
        entry.extend_from_slice(&compiled);
        let outcome = match write_atomically(dir, &path, &entry) {
            Ok(()) => CacheOutcome::Stored,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot store compiled component: {e}");
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }
}

/// The HMAC-SHA256 state over entry `name` holding `compiled`.
fn mac(key: &[u8; KEY_BYTES], name: &str, compiled: &[u8]) -> Mac {
    use hmac::{KeyInit, Mac as _};
    let mut mac = <Mac as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(compiled);
    mac
}

/// The tag of entry `name` holding `compiled`.
fn tag(key: &[u8; KEY_BYTES], name: &str, compiled: &[u8]) -> [u8; TAG_BYTES] {
    use hmac::Mac as _;
    mac(key, name, compiled).finalize().into_bytes().into()
}

/// The compiled bytes of `entry` if its tag verifies (in constant time).
fn verified<'a>(key: &[u8; KEY_BYTES], name: &str, entry: &'a [u8]) -> Option<&'a [u8]> {
    use hmac::Mac as _;
    let (given, compiled) = entry.split_at_checked(TAG_BYTES)?;
    mac(key, name, compiled).verify_slice(given).ok().map(|()| compiled)
}

/// The cache's key: read from `path`, or made (random, owner-only) if missing.
/// A new key is written to a temporary file and linked into place, so a
/// concurrent host never reads a partial key: it reads the winner's.
fn read_or_create_key(path: &Path) -> std::io::Result<[u8; KEY_BYTES]> {
    use std::io::Write;
    for _ in 0..2 {
        match std::fs::read(path) {
            Ok(bytes) if bytes.is_empty() => {
                // Left by a crash of an older host between create and write.
                let _ = std::fs::remove_file(path);
            }
            Ok(bytes) => {
                return bytes
                    .try_into()
                    .map_err(|_| std::io::Error::other("is not 32 bytes; delete it to start a new cache"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = path.with_extension(format!(
            "tmp-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut file| {
            file.write_all(&key)?;
            file.sync_all()
        });
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {} // another host won: read its key
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not be read or created"))
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    format!("{}-{:016x}", hex(&Sha256::digest(bytes)), engine_hash.finish())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_the_key_the_name_and_the_contents() {
        let (key, other) = ([7u8; KEY_BYTES], [8u8; KEY_BYTES]);
        let mut entry = tag(&key, "a.cwasm", b"code").to_vec();
        entry.extend_from_slice(b"code");
        assert_eq!(verified(&key, "a.cwasm", &entry), Some(&b"code"[..]));
        assert_eq!(verified(&other, "a.cwasm", &entry), None, "another key");
        assert_eq!(verified(&key, "b.cwasm", &entry), None, "another entry's name");
        let last = entry.len() - 1;
        entry[last] ^= 1;
        assert_eq!(verified(&key, "a.cwasm", &entry), None, "changed contents");
        assert_eq!(verified(&key, "a.cwasm", &entry[..10]), None, "truncated");
    }

    #[test]
    fn the_key_is_made_once_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let first = read_or_create_key(&path).unwrap();
        assert_eq!(read_or_create_key(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(read_or_create_key(&path).is_err());
        std::fs::write(&path, b"").unwrap();
        let fresh = read_or_create_key(&path).unwrap();
        assert_ne!(fresh, first, "an empty key file (a crash) is replaced");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }
}
