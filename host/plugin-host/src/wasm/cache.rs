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
//!
//! **Pruning.** A hit refreshes its entry's modification time, so it tells
//! when the entry was last used; [`ComponentCache::prune`] removes entries
//! unused for [`PrunePolicy::max_age`], then the least recently used until
//! the cache holds at most [`PrunePolicy::max_bytes`] — never an entry this
//! process loaded or stored. The host prunes after every scan (see
//! [`crate::HostBuilder::cache_policy`]); `plexus cache prune` does it by hand.

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
    /// Entries this process loaded or stored: never pruned by it.
    used: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

/// When [`ComponentCache::prune`] removes entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Entries unused for longer are removed (default 14 days).
    pub max_age: std::time::Duration,
    /// Then the least recently used go until the entries take at most this many bytes (default 1 GiB).
    pub max_bytes: u64,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        Self { max_age: std::time::Duration::from_secs(14 * 24 * 3600), max_bytes: 1 << 30 }
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheEntry {
    /// File name: `<sha256 of the component>-<engine hash>.cwasm`.
    pub name: String,
    /// Size, bytes.
    pub bytes: u64,
    /// Last load or store, ms since the Unix epoch.
    pub last_used_ms: u64,
    /// Loaded or stored by this process (never pruned by it).
    pub in_use: bool,
}

/// What [`ComponentCache::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// The entries removed.
    pub removed: Vec<CacheEntry>,
    /// Bytes freed (entries and leftover temporary files).
    pub freed_bytes: u64,
    /// Entries kept.
    pub kept: usize,
    /// Bytes the kept entries take.
    pub kept_bytes: u64,
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
        let Some(dir) = dir else { return Ok(Self { dir: None, key: None, used: Default::default() }) };
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
        Ok(Self { dir: Some(dir), key: Some(std::sync::Arc::new(key)), used: Default::default() })
    }

    /// The entries, most recently used first (none without a cache).
    ///
    /// # Errors
    /// The cache directory cannot be listed.
    pub fn entries(&self) -> std::io::Result<Vec<CacheEntry>> {
        let Some(dir) = &self.dir else { return Ok(Vec::new()) };
        let used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut entries = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            let Ok(meta) = item.metadata() else { continue };
            if !name.ends_with(".cwasm") || !meta.is_file() {
                continue;
            }
            entries.push(CacheEntry {
                in_use: used.contains(&name),
                name,
                bytes: meta.len(),
                last_used_ms: meta.modified().map(epoch_ms).unwrap_or(0),
            });
        }
        entries.sort_by(|a, b| b.last_used_ms.cmp(&a.last_used_ms).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Remove the entries `policy` lets go (see the module docs), and
    /// temporary files left by writes that died over an hour ago.
    ///
    /// # Errors
    /// The cache directory cannot be listed. An entry that cannot be removed
    /// is skipped (and logged).
    pub fn prune(&self, policy: &PrunePolicy) -> std::io::Result<PruneReport> {
        let Some(dir) = &self.dir else { return Ok(PruneReport::default()) };
        let now = epoch_ms(std::time::SystemTime::now());
        let max_age_ms = u64::try_from(policy.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut report = PruneReport::default();
        // Oldest first: the order the size limit removes them in.
        let mut entries = self.entries()?;
        entries.reverse();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        for entry in entries {
            let stale = now.saturating_sub(entry.last_used_ms) > max_age_ms;
            if entry.in_use || !(stale || total > policy.max_bytes) {
                report.kept += 1;
                report.kept_bytes += entry.bytes;
                continue;
            }
            match std::fs::remove_file(dir.join(&entry.name)) {
                Ok(()) => {
                    tracing::debug!(entry = %entry.name, bytes = entry.bytes, "cache entry pruned");
                    total -= entry.bytes;
                    report.freed_bytes += entry.bytes;
                    report.removed.push(entry);
                }
                Err(e) => {
                    tracing::warn!(entry = %entry.name, "cannot prune cache entry: {e}");
                    report.kept += 1;
                    report.kept_bytes += entry.bytes;
                }
            }
        }
        for item in std::fs::read_dir(dir)?.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let Ok(meta) = item.metadata() else { continue };
            let age = meta.modified().map(|m| now.saturating_sub(epoch_ms(m))).unwrap_or(0);
            if name.starts_with(".tmp-")
                && meta.is_file()
                && age > 3_600_000
                && std::fs::remove_file(item.path()).is_ok()
            {
                report.freed_bytes += meta.len();
            }
        }
        Ok(report)
    }

    /// Note that this process uses entry `name` (and refresh its time of use).
    fn mark_used(&self, path: &Path, name: &str) {
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_owned());
        if let Err(e) =
            std::fs::File::options().write(true).open(path).and_then(|f| f.set_modified(std::time::SystemTime::now()))
        {
            tracing::debug!(path = %path.display(), "cannot refresh the cache entry's time of use: {e}");
        }
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
                    Ok(component) => {
                        self.mark_used(&path, &name);
                        return Ok((component, CacheOutcome::Hit));
                    }
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
            Ok(()) => {
                self.mark_used(&path, &name);
                CacheOutcome::Stored
            }
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

fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    /// A cache entry `name` of `bytes` bytes last used `days_ago`.
    fn entry(dir: &Path, name: &str, bytes: usize, days_ago: u64) {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days_ago * 24 * 3600);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    }

    #[test]
    fn pruning_removes_stale_entries_then_the_least_recently_used_never_those_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(Some(dir.path().join("c"))).unwrap();
        let root = cache.dir().unwrap().to_path_buf();
        entry(&root, "old.cwasm", 100, 30);
        entry(&root, "mine.cwasm", 100, 40); // old, but this process uses it
        entry(&root, "a.cwasm", 100, 3);
        entry(&root, "b.cwasm", 100, 2);
        entry(&root, "c.cwasm", 100, 1);
        entry(&root, ".tmp-1-x", 10, 2); // a write that died
        entry(&root, ".tmp-2-y", 10, 0); // one under way
        cache.mark_used(&root.join("mine.cwasm"), "mine.cwasm");
        let policy = PrunePolicy { max_age: std::time::Duration::from_secs(14 * 24 * 3600), max_bytes: 250 };
        let report = cache.prune(&policy).unwrap();
        let removed: Vec<&str> = report.removed.iter().map(|e| e.name.as_str()).collect();
        // `old` is stale; then 400 bytes > 250: the least recently used go (`a`, then `b`);
        // `mine` counts but stays (its use refreshed it too).
        assert_eq!(removed, ["old.cwasm", "a.cwasm", "b.cwasm"]);
        assert_eq!(report.freed_bytes, 310, "three entries and the dead write's file");
        assert_eq!((report.kept, report.kept_bytes), (2, 200));
        let left: Vec<String> = cache.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(left, ["mine.cwasm", "c.cwasm"], "most recently used first");
        assert!(cache.entries().unwrap().iter().any(|e| e.name == "mine.cwasm" && e.in_use));
        assert!(!root.join(".tmp-1-x").exists() && root.join(".tmp-2-y").exists());
        assert!(root.join("key").exists(), "the key is not an entry");
        // Nothing to do: nothing removed.
        assert!(cache.prune(&PrunePolicy::default()).unwrap().removed.is_empty());
        assert_eq!(ComponentCache::new(None).unwrap().prune(&policy).unwrap(), PruneReport::default());
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
