//! Artifacts: bytes a call stores by reference instead of returning them as
//! output (contract 0.4; Dagster's and Argo's artifacts).
//!
//! [`BlobStore`] keeps each content once, named by its sha256, under one
//! directory (the daemon's sits beside its state database):
//! `<root>/sha256/<2 hex>/<62 hex>`, with files being written in `<root>/tmp`.
//! An [`ArtifactIndex`] records which execution holds which artifact: that
//! decides who may read one (its execution and the executions descending
//! from it) and when its bytes go (when no execution holds it any more,
//! [`BlobStore::collect`]).
//!
//! A call's writers and readers live in [`CallServices`](crate::services::CallServices);
//! the host moves at most [`plexus_sdk::MAX_ARTIFACT_CHUNK_BYTES`] per
//! request and streams files through a 64 KiB buffer, so its memory does not
//! grow with an artifact's size.

use plexus_sdk::ArtifactRef;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Which execution holds which artifact (the daemon's store; an in-memory
/// set for `plexus run`).
pub trait ArtifactIndex: Send + Sync {
    /// Record that `execution` holds `reference`, written by its step `step`.
    /// Called before the bytes are put in place, so a collection running at
    /// the same time keeps them. Blocking: called on the plugin's call thread.
    ///
    /// # Errors
    /// Why it could not be recorded (the artifact is then refused).
    fn link(&self, execution: &str, step: Option<&str>, reference: &ArtifactRef) -> Result<(), String>;
    /// Whether `execution` may read the artifact with `digest`
    /// (`sha256:<hex>`): it, or an execution it descends from (see
    /// [`lineage`]), holds it.
    ///
    /// # Errors
    /// Why it could not be looked up.
    fn readable(&self, execution: &str, digest: &str) -> Result<bool, String>;
}

/// An execution's id and the ids of the executions it descends from,
/// nearest first: a sub-workflow's execution is `<parent>~<step>`
/// (`a~load~x` → `a~load~x`, `a~load`, `a`).
pub fn lineage(execution: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(execution), |id| id.rsplit_once('~').map(|(parent, _)| parent))
}

/// The artifact references in `value` (at any depth), at most `max`: what a
/// sub-workflow's outputs hand to its parent.
pub fn references(value: &serde_json::Value, max: usize) -> Vec<ArtifactRef> {
    fn walk(value: &serde_json::Value, max: usize, out: &mut Vec<ArtifactRef>) {
        if out.len() >= max {
            return;
        }
        if let Some(reference) = ArtifactRef::from_value(value) {
            out.push(reference);
            return;
        }
        match value {
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, max, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, max, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, max, &mut out);
    out
}

/// [`ArtifactIndex`] in memory: for hosts without a store (`plexus run`).
#[derive(Debug, Default)]
pub struct MemoryIndex(std::sync::Mutex<HashSet<(String, String)>>);

impl ArtifactIndex for MemoryIndex {
    fn link(&self, execution: &str, _: Option<&str>, reference: &ArtifactRef) -> Result<(), String> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.insert((execution.to_owned(), reference.artifact.clone()));
        Ok(())
    }
    fn readable(&self, execution: &str, digest: &str) -> Result<bool, String> {
        let held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(lineage(execution).any(|id| held.contains(&(id.to_owned(), digest.to_owned()))))
    }
}

/// Which of the digests it is given (`sha256:<hex>`) an execution holds
/// (see [`BlobStore::collect`]).
pub type HeldBy<'a> = dyn Fn(&[String]) -> Result<HashSet<String>, String> + 'a;

/// The content-addressed blob store: one file per content, named by its sha256.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
}

/// Temporary files older than this are a crashed writer's: removed when a store opens.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// The file that marks a folder as an artifact store.
const MARKER: &str = ".plexus-artifacts";

/// What a blob set aside by a collection is called (`<hex>.<unique>` + this).
const ASIDE: &str = ".collected";

impl BlobStore {
    /// The store under `root`: a new or empty folder is made one (mode 700
    /// on Unix: the bytes are the executions' data, and a marker file); an
    /// existing store is opened. Blobs a crashed collection had set aside are
    /// put back; temporary files a crashed writer left more than a day ago
    /// are removed.
    ///
    /// # Errors
    /// The folder cannot be created, or it holds other files (it is not an
    /// artifact store: a store never takes over a folder that is not its own).
    pub fn open(root: &Path) -> io::Result<Self> {
        let fresh = !root.exists() || fs::read_dir(root)?.next().is_none();
        if fresh {
            fs::create_dir_all(root)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
            }
            fs::write(root.join(MARKER), "a Plexus artifact store: content-addressed blobs under sha256/\n")?;
        } else if !root.join(MARKER).is_file() {
            return Err(io::Error::other(format!(
                "{} is not an artifact store (it has files but no {MARKER}): name a new or empty folder",
                root.display()
            )));
        }
        for dir in [root.join("tmp"), root.join("sha256")] {
            fs::create_dir_all(&dir)?;
        }
        let store = Self { root: root.to_owned() };
        store.restore_aside();
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|at| older_than(at, STALE_TEMP));
                if old && name.to_string_lossy().ends_with(".part") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(store)
    }

    /// Put back the blobs a collection set aside and did not finish with (it
    /// crashed between its two questions): a blob that is in place again
    /// (a writer put its copy) makes the set-aside copy redundant. A blob put
    /// back that no execution holds goes at the next collection.
    fn restore_aside(&self) {
        self.restore_aside_older_than(Duration::from_secs(60));
    }

    /// [`Self::restore_aside`] of the blobs set aside more than `age` ago.
    fn restore_aside_older_than(&self, age: Duration) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(ASIDE) else { continue };
            let hex = stem.split('.').next().unwrap_or_default();
            // Only those set aside a minute ago or more (the rename's change
            // time): a collection running now owns its own. (Putting one back
            // early is safe: that collection then deletes nothing.)
            let settled = entry.metadata().is_ok_and(|m| changed_before(&m, age));
            if !is_hex_digest(hex) || !settled {
                continue;
            }
            let path = self.blob_path(hex);
            if path.exists() {
                let _ = fs::remove_file(entry.path());
            } else if let Some(parent) = path.parent() {
                let _ = fs::create_dir_all(parent).and_then(|()| fs::rename(entry.path(), &path));
            }
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with digest `hex` (64 hex digits) lives.
    ///
    /// # Panics
    /// When `hex` has fewer than 3 ASCII characters (callers check digests first).
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    /// The blob `reference` names, if present.
    pub fn path_of(&self, reference: &ArtifactRef) -> Option<PathBuf> {
        let path = self.blob_path(reference.digest_hex()?);
        path.is_file().then_some(path)
    }

    /// A new empty temporary file for a writer.
    ///
    /// # Errors
    /// It cannot be created.
    pub fn temp_file(&self) -> io::Result<PathBuf> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let path = self.root.join("tmp").join(format!("{}-{n}-{nanos:08x}.part", std::process::id()));
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The sha256 (64 hex digits) and size of file `path`, read through a
    /// 64 KiB buffer; `Ok(None)` when it has more than `max` bytes.
    ///
    /// # Errors
    /// It cannot be read.
    pub fn digest_file(path: &Path, max: u64) -> io::Result<Option<(String, u64)>> {
        Self::digest(&mut File::open(path)?, max)
    }

    /// A finished writer's temporary file `temp`, sealed: opened without
    /// following a link, checked to be a regular file with one name, its
    /// data synced, made read-only (through the handle: what is checked is
    /// what is changed). A native plugin writes the file itself; it may have
    /// put something else there.
    ///
    /// # Errors
    /// It cannot be opened, or is not a regular file with one name.
    pub fn seal_temp(temp: &Path) -> io::Result<File> {
        let mut options = File::options();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(temp)?;
        let meta = file.metadata()?;
        #[cfg(unix)]
        let single = {
            use std::os::unix::fs::MetadataExt;
            meta.nlink() == 1
        };
        #[cfg(not(unix))]
        let single = true;
        if !meta.is_file() || !single {
            return Err(io::Error::other("not a regular file with one name"));
        }
        file.sync_all()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o400))?;
        }
        Ok(file)
    }

    /// [`Self::digest_file`] of an open file, from its start.
    ///
    /// # Errors
    /// It cannot be read.
    pub fn digest(file: &mut File, max: u64) -> io::Result<Option<(String, u64)>> {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0))?;
        if file.metadata()?.len() > max {
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > max {
                return Ok(None);
            }
            hasher.update(&buf[..n]);
        }
        let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some((hex, size)))
    }

    /// Put temporary file `temp` (read-only already, its data synced) in
    /// place as blob `hex` of `bytes` (its digest and size; the index already
    /// links it). When the blob exists already, with that size, its time is
    /// refreshed (a collection skips recent blobs) and `temp` removed; one of
    /// another size (a write a crash cut short) is replaced.
    ///
    /// # Errors
    /// The file cannot be moved.
    pub fn place(&self, temp: &Path, hex: &str, bytes: u64) -> io::Result<()> {
        let path = self.blob_path(hex);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes) {
            // Setting a time needs ownership, not write access (blobs are read-only).
            let refreshed = File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            if refreshed.is_ok() && path.is_file() {
                let _ = fs::remove_file(temp);
                return Ok(());
            }
        }
        let dir = path.parent().expect("a blob path has a parent");
        fs::create_dir_all(dir)?;
        fs::rename(temp, &path)?;
        // The new name survives a crash.
        File::open(dir)?.sync_all()
    }

    /// Delete the blobs no execution holds any more and that are older than
    /// `grace` (a blob being written and linked now is younger). `held`
    /// answers which of the digests it is given (`sha256:<hex>`) an
    /// execution still holds. Safe against a writer linking a blob at the
    /// same time, on any node sharing the directory: a candidate is first
    /// renamed aside, then asked about again, and put back if it is held
    /// (a writer links before it checks the blob is in place, and puts its
    /// own copy in place when it is not). Answers how many were deleted.
    ///
    /// # Errors
    /// The directory cannot be read, or `held` failed.
    pub fn collect(&self, grace: Duration, held: &HeldBy<'_>) -> Result<usize, String> {
        let mut candidates = Vec::new();
        let io = |e: io::Error| format!("artifact store {}: {e}", self.root.display());
        for dir in fs::read_dir(self.root.join("sha256")).map_err(io)?.flatten() {
            let Ok(files) = fs::read_dir(dir.path()) else { continue };
            for file in files.flatten() {
                let hex = format!("{}{}", dir.file_name().to_string_lossy(), file.file_name().to_string_lossy());
                let old = file.metadata().and_then(|m| m.modified()).is_ok_and(|at| older_than(at, grace));
                if old && is_hex_digest(&hex) {
                    candidates.push(format!("sha256:{hex}"));
                }
            }
        }
        self.restore_aside();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut deleted = 0;
        for batch in candidates.chunks(500) {
            let first = held(batch)?;
            let aside: Vec<(String, PathBuf, PathBuf)> = batch
                .iter()
                .filter(|d| !first.contains(*d))
                .filter_map(|digest| {
                    let hex = &digest["sha256:".len()..];
                    // A name of its own: collections on other nodes set aside the same blob under theirs.
                    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let aside = format!("{hex}.{}-{unique}{ASIDE}", std::process::id());
                    let (path, tomb) = (self.blob_path(hex), self.root.join("tmp").join(aside));
                    fs::rename(&path, &tomb).ok().map(|()| (digest.clone(), path, tomb))
                })
                .collect();
            if aside.is_empty() {
                continue;
            }
            let digests: Vec<String> = aside.iter().map(|(d, ..)| d.clone()).collect();
            let again = match held(&digests) {
                Ok(again) => again,
                Err(e) => {
                    for (_, path, tomb) in &aside {
                        let _ = fs::rename(tomb, path);
                    }
                    return Err(e);
                }
            };
            for (digest, path, tomb) in aside {
                if again.contains(&digest) {
                    if !path.exists() {
                        let _ = fs::rename(&tomb, &path);
                    }
                    let _ = fs::remove_file(&tomb);
                } else if fs::remove_file(&tomb).is_ok() {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }
}

/// Whether `hex` is 64 lowercase hex digits.
fn is_hex_digest(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `meta`'s inode changed (a rename) more than `age` ago.
fn changed_before(meta: &fs::Metadata, age: Duration) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().clamp(0, 999_999_999) as u32);
        older_than(changed, age)
    }
    #[cfg(not(unix))]
    {
        meta.modified().is_ok_and(|at| older_than(at, age))
    }
}

fn older_than(at: SystemTime, age: Duration) -> bool {
    SystemTime::now().duration_since(at).is_ok_and(|d| d > age)
}

/// A host's artifacts: the blob store and the index. Cheap to clone.
#[derive(Clone)]
pub struct Artifacts {
    /// The blob store.
    pub store: Arc<BlobStore>,
    /// Which execution holds which artifact.
    pub index: Arc<dyn ArtifactIndex>,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts").field("root", &self.store.root).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_walks_up_the_sub_workflow_ids() {
        assert_eq!(lineage("a~load~x").collect::<Vec<_>>(), ["a~load~x", "a~load", "a"]);
        assert_eq!(lineage("plain").collect::<Vec<_>>(), ["plain"]);
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("artifacts")).unwrap();
        (dir, store)
    }

    fn put(store: &BlobStore, bytes: &[u8]) -> String {
        let temp = store.temp_file().unwrap();
        fs::write(&temp, bytes).unwrap();
        let (hex, size) = BlobStore::digest_file(&temp, u64::MAX).unwrap().unwrap();
        assert_eq!(size, bytes.len() as u64);
        store.place(&temp, &hex, size).unwrap();
        assert!(!temp.exists());
        hex
    }

    #[test]
    fn a_content_is_stored_once_under_its_digest() {
        let (_dir, store) = store();
        let a = put(&store, b"hello");
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(put(&store, b"hello"), a);
        assert_eq!(fs::read(store.blob_path(&a)).unwrap(), b"hello");
        let files = fs::read_dir(store.root().join("sha256").join("2c")).unwrap().count();
        assert_eq!(files, 1);
        let temp = store.temp_file().unwrap();
        fs::write(&temp, b"too long").unwrap();
        assert_eq!(BlobStore::digest_file(&temp, 7).unwrap(), None, "past the limit");
    }

    #[test]
    fn a_collection_deletes_only_old_blobs_no_execution_holds() {
        let (_dir, store) = store();
        let kept = put(&store, b"kept");
        let gone = put(&store, b"gone");
        let young = put(&store, b"young");
        let old = SystemTime::now() - Duration::from_secs(7200);
        for hex in [&kept, &gone] {
            File::open(store.blob_path(hex)).unwrap().set_modified(old).unwrap();
        }
        let held_digest = format!("sha256:{kept}");
        let asked = std::sync::Mutex::new(Vec::new());
        let held = |digests: &[String]| {
            asked.lock().unwrap().push(digests.to_vec());
            Ok(digests.iter().filter(|d| **d == held_digest).cloned().collect())
        };
        assert_eq!(store.collect(Duration::from_secs(3600), &held).unwrap(), 1);
        assert!(store.blob_path(&kept).exists() && store.blob_path(&young).exists());
        assert!(!store.blob_path(&gone).exists());
        // Asked twice about the one set aside: before and after the rename.
        assert_eq!(asked.lock().unwrap().last().unwrap(), &vec![format!("sha256:{gone}")]);
        // A blob linked between the two questions is put back.
        let racing = put(&store, b"racing");
        File::open(store.blob_path(&racing)).unwrap().set_modified(old).unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let linked_meanwhile = |digests: &[String]| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(if n == 0 { HashSet::new() } else { digests.iter().cloned().collect() })
        };
        assert_eq!(store.collect(Duration::from_secs(3600), &linked_meanwhile).unwrap(), 0);
        assert_eq!(fs::read(store.blob_path(&racing)).unwrap(), b"racing");
    }
}

#[cfg(test)]
mod recovery {
    use super::*;

    #[test]
    fn a_store_never_takes_over_a_folder_with_other_files_and_puts_back_what_a_crash_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let err = BlobStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not an artifact store"), "{err}");
        assert!(dir.path().join("notes.txt").exists());

        let root = dir.path().join("store");
        let store = BlobStore::open(&root).unwrap();
        let temp = store.temp_file().unwrap();
        fs::write(&temp, b"kept").unwrap();
        let (hex, size) = BlobStore::digest_file(&temp, u64::MAX).unwrap().unwrap();
        store.place(&temp, &hex, size).unwrap();
        // A collection crashed between its two questions: the blob is aside.
        let aside = root.join("tmp").join(format!("{hex}.1-0{ASIDE}"));
        fs::rename(store.blob_path(&hex), &aside).unwrap();
        // (The rename is older than a minute: it is no running collection's.)
        #[cfg(unix)]
        {
            let meta = fs::metadata(&aside).unwrap();
            assert!(!changed_before(&meta, Duration::from_secs(60)), "just renamed");
        }
        drop(store);
        // Reopened: an aside blob younger than a minute is left to its collection…
        let store = BlobStore::open(&root).unwrap();
        assert!(aside.exists());
        // …and one whose collection is gone is put back (here: made to look older).
        store.restore_aside_older_than(Duration::ZERO);
        assert_eq!(fs::read(store.blob_path(&hex)).unwrap(), b"kept");
        assert!(!aside.exists());
        // A blob cut short by a crash is replaced by a whole copy.
        let path = store.blob_path(&hex);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"ke").unwrap();
        let temp = store.temp_file().unwrap();
        fs::write(&temp, b"kept").unwrap();
        store.place(&temp, &hex, 4).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }
}
