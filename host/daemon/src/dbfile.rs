//! The state database *file*: the exclusive lock a daemon holds on it, the
//! checks made before it is used, and the identity that tells whether it was
//! deleted or replaced under a running daemon.
//!
//! * **One daemon per database.** [`DbLock`] locks `<db>.lock` (next to the
//!   database) with an exclusive advisory lock for the daemon's whole life and
//!   writes the holder's pid and host name into it. A second daemon on the same
//!   database fails to start with [`StoreError::Locked`], which names the
//!   holder and the path. The lock goes with the process: a daemon killed with
//!   `kill -9` leaves the file but not the lock.
//! * **Writable before use.** A database file or directory without write
//!   permission is refused at start ([`StoreError::ReadOnly`]) instead of
//!   starting healthy and failing every write.
//! * **Still the same file.** [`FileIdentity`] (device and inode) is taken at
//!   open; [`FileIdentity::check`] says whether the path still names it.

use super::store::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The exclusive lock on a state database, held until dropped.
#[derive(Debug)]
pub(crate) struct DbLock {
    _file: File,
}

/// `<db>.lock`: the lock file of database `db`, beside the file `db` really
/// is (symbolic links and `..` resolved, also in its directory's path), so two
/// daemons that name one database differently still meet at one lock.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let resolved = plexus_host::manifest::resolve(db);
    let mut name = resolved.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// This machine's host name, as best known (`unknown` if not).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

impl DbLock {
    /// Take the exclusive lock of database `db`, without waiting.
    ///
    /// # Errors
    /// [`StoreError::Locked`] naming the holder when another process (or
    /// another `Store` of this one) holds it; [`StoreError::Io`] when the lock
    /// file cannot be created.
    pub(crate) fn acquire(db: &Path) -> Result<Self, StoreError> {
        let path = lock_path(db);
        let io = |e: std::io::Error| StoreError::Io { path: path.clone(), message: e.to_string() };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process".to_owned() } else { holder.to_owned() };
                return Err(StoreError::Locked { path: db.to_owned(), lock: path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!("pid {} on host {}", std::process::id(), host_name());
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{me}")).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Refuse a database that cannot be written: the file (if it exists) or its
/// directory lacks write permission.
pub(crate) fn check_writable(db: &Path) -> Result<(), StoreError> {
    let read_only = |what: String| StoreError::ReadOnly { path: db.to_owned(), message: what };
    if let Ok(meta) = std::fs::metadata(db)
        && meta.permissions().readonly()
    {
        return Err(read_only("the file has no write permission".into()));
    }
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().readonly()
    {
        return Err(read_only(format!(
            "its directory {} has no write permission (SQLite writes its journal beside the database)",
            dir.display()
        )));
    }
    Ok(())
}

/// Which file a path named when it was opened: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub(crate) fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Self { dev: meta.dev(), ino: meta.ino() })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(Self { dev: 0, ino: 0 })
        }
    }

    /// `Ok` while `path` still names this file.
    ///
    /// # Errors
    /// [`FileChanged`]: the file was replaced or deleted, or cannot be checked.
    pub(crate) fn check(&self, path: &Path) -> Result<(), FileChanged> {
        let path = path.to_owned();
        match Self::of(&path) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(FileChanged::Replaced { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileChanged::Deleted { path }),
            Err(e) => Err(FileChanged::Unreadable { path, message: e.to_string() }),
        }
    }
}

/// The state database's path no longer names the file the daemon opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileChanged {
    /// Another file took its place.
    #[error(
        "the state database {} was replaced by another file while the daemon runs; \
         the daemon still writes to the file it opened, which is no longer reachable by that path: restart it",
        path.display()
    )]
    Replaced {
        /// The database path.
        path: PathBuf,
    },
    /// It was deleted.
    #[error(
        "the state database {} was deleted while the daemon runs; its state is lost at the next start: \
         restore the file or restart the daemon",
        path.display()
    )]
    Deleted {
        /// The database path.
        path: PathBuf,
    },
    /// Its metadata cannot be read.
    #[error("the state database {} cannot be checked: {message}", path.display())]
    Unreadable {
        /// The database path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = DbLock::acquire(&db).unwrap();
        let err = DbLock::acquire(&db).unwrap_err().to_string();
        #[cfg(unix)]
        {
            // The same database under another name meets the same lock.
            let other = tempfile::tempdir().unwrap();
            let alias = other.path().join("alias");
            std::os::unix::fs::symlink(dir.path(), &alias).unwrap();
            assert!(DbLock::acquire(&alias.join("state.db")).is_err(), "a second lock through a symbolic link");
            assert!(DbLock::acquire(&alias.join(".").join("state.db")).is_err());
        }
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("state.db"), "{err}");
        drop(first);
        DbLock::acquire(&db).expect("free again once dropped");
    }

    #[test]
    fn identity_notices_deletion_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        std::fs::write(&db, "x").unwrap();
        let id = FileIdentity::of(&db).unwrap();
        assert!(id.check(&db).is_ok());
        std::fs::write(dir.path().join("other"), "y").unwrap();
        std::fs::rename(dir.path().join("other"), &db).unwrap();
        assert!(matches!(id.check(&db), Err(FileChanged::Replaced { .. })));
        assert!(id.check(&db).unwrap_err().to_string().contains("replaced"));
        std::fs::remove_file(&db).unwrap();
        assert!(id.check(&db).unwrap_err().to_string().contains("deleted"));
    }

    #[cfg(unix)]
    #[test]
    fn read_only_file_or_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(check_writable(&db).unwrap_err().to_string().contains("no write permission"));
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let err = check_writable(&db).unwrap_err().to_string();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(err.contains("directory"), "{err}");
    }
}
