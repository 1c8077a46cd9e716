//! Session temp files and the atomic commit to the upload root (docs/protocol.md §7.6, §7.10).
//!
//! Layout under the upload root:
//!
//! ```text
//! <root>/BITS-Sessions/Requests/<session-id>.bin   temp file being assembled
//! <root>/<destination segments...>                  committed files
//! ```
//!
//! Temp files live inside the root so the commit is a same-filesystem rename (or, when
//! overwrites are off, a hard link that fails if the destination appeared meanwhile). The
//! `BITS-Sessions` segment is reserved: no destination can name it. Every path is built from a
//! validated [`Destination`], so nothing lands outside the root.
//!
//! One server owns a root: `BITS-Sessions/lock` is locked for the process' life (and holds its
//! pid), so a second server on the same root refuses to start instead of sharing temp files.
//! A root emptied while the server runs (`rm -rf uploads/*` between test runs) is re-created
//! on demand, lock file included.

use crate::proto::destination::RESERVED_SEGMENT;
use crate::proto::{BitsError, CloseOutcome, Destination, Existing, SessionId};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const LOCK_FILE: &str = "lock";

/// The upload root and its session area.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    sessions: PathBuf,
    requests: PathBuf,
    /// The locked lock files (more than one after the root was emptied and re-created).
    locks: Arc<Mutex<Vec<File>>>,
}

impl Store {
    /// Creates the root and its session area if missing, takes the root's lock, and clears
    /// temp files a previous run left behind (sessions live in memory, so those can never be
    /// resumed). Fails with [`ErrorKind::ResourceBusy`] when another server holds the root.
    pub fn open(root: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let sessions = root.join(RESERVED_SEGMENT);
        let requests = sessions.join("Requests");
        std::fs::create_dir_all(&requests)?;
        let lock = lock_root(&root, &sessions)?;
        for entry in std::fs::read_dir(&requests)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "bin") {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(Store {
            root,
            sessions,
            requests,
            locks: Arc::new(Mutex::new(vec![lock])),
        })
    }

    /// Deletes everything in the upload root but the session area (`POST /reset?uploads=true`).
    pub async fn clear_uploads(&self) {
        let root = self.root.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&root) else {
                return;
            };
            for entry in entries.flatten() {
                if entry.file_name() == RESERVED_SEGMENT {
                    continue;
                }
                let path = entry.path();
                // symlink_metadata: a symlink is removed, never followed out of the root.
                let removed = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                    Ok(_) => std::fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                if let Err(e) = removed {
                    tracing::warn!(path = %path.display(), error = %e, "cannot clear an upload");
                }
            }
        })
        .await;
    }

    /// Gives up the root's lock (a stopped server), so another server may open the root.
    pub fn release(&self) {
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Re-creates the session area (and its lock) if something deleted it.
    fn restore(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.requests)?;
        if !self.sessions.join(LOCK_FILE).exists() {
            let lock = lock_root(&self.root, &self.sessions)?;
            self.locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(lock);
            tracing::warn!(root = %self.root.display(), "the session area was deleted; re-created it");
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a destination's file is committed.
    pub fn destination_path(&self, destination: &Destination) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(destination.segments());
        path
    }

    /// Where the generated TLS CA is written (`BITS-Sessions/tls/`).
    pub fn tls_dir(&self) -> PathBuf {
        self.sessions.join("tls")
    }

    /// Where a session's file is assembled.
    pub fn temp_path(&self, id: &SessionId) -> PathBuf {
        self.requests.join(format!("{}.bin", id.simple()))
    }

    /// What is at a destination now.
    pub async fn inspect(&self, destination: &Destination) -> Existing {
        match tokio::fs::symlink_metadata(self.destination_path(destination)).await {
            Ok(m) if m.is_dir() => Existing::Directory,
            Ok(_) => Existing::File,
            Err(_) => Existing::Nothing,
        }
    }

    /// Opens a session's temp file for writing on the blocking pool. `fresh`: no byte was
    /// stored yet, so the file may be created (re-creating the session area if it was
    /// deleted). Otherwise the file must exist: if it is gone, so are the bytes it held, and
    /// the answer is [`Temp::Vanished`], never a new empty file.
    pub async fn open_temp(&self, id: &SessionId, fresh: bool) -> Temp {
        let store = self.clone();
        let path = self.temp_path(id);
        let opened = tokio::task::spawn_blocking(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(fresh)
                    .write(true)
                    .truncate(false)
                    .open(&path)
            };
            match open() {
                Err(e) if e.kind() == ErrorKind::NotFound && fresh => {
                    store.restore()?;
                    open()
                }
                other => other,
            }
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        match opened {
            Ok(file) => Temp::Open(file),
            Err(e) if e.kind() == ErrorKind::NotFound => Temp::Vanished,
            Err(e) => Temp::Failed(e),
        }
    }

    /// Whether an open temp file is still the one at the session's path (nobody deleted or
    /// replaced it since it was opened). Bytes written to a deleted file are lost.
    pub fn still_there(&self, id: &SessionId, file: &File) -> bool {
        same_file(&self.temp_path(id), file)
    }

    /// Moves a session's complete file to its destination, creating parent folders. `empty`:
    /// no fragment ever arrived, so the committed file is the empty file.
    pub async fn commit(
        &self,
        id: &SessionId,
        destination: &Destination,
        overwrite: bool,
        empty: bool,
    ) -> CloseOutcome {
        let store = self.clone();
        let temp = self.temp_path(id);
        let target = self.destination_path(destination);
        tokio::task::spawn_blocking(move || {
            if empty && let Err(e) = store.restore().and_then(|()| File::create(&temp)) {
                return close_error(&e);
            }
            commit_blocking(&temp, &target, overwrite)
        })
        .await
        .unwrap_or(CloseOutcome::Failed)
    }

    /// Deletes a session's temp file, if any.
    pub async fn discard(&self, id: &SessionId) {
        let _ = tokio::fs::remove_file(self.temp_path(id)).await;
    }
}

fn commit_blocking(temp: &Path, target: &Path, overwrite: bool) -> CloseOutcome {
    if !temp.exists() {
        return CloseOutcome::Vanished;
    }
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => return CloseOutcome::Directory,
        Ok(_) if !overwrite => return CloseOutcome::Conflict,
        _ => {}
    }
    if let Some(parent) = target.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        return match e.kind() {
            ErrorKind::AlreadyExists | ErrorKind::NotADirectory => CloseOutcome::Denied,
            _ => close_error(&e),
        };
    }
    let placed = if overwrite {
        std::fs::rename(temp, target)
    } else {
        // A hard link never replaces an existing file, so a destination that appeared
        // since the check above still is not overwritten.
        std::fs::hard_link(temp, target).and_then(|()| std::fs::remove_file(temp))
    };
    match placed {
        Ok(()) => CloseOutcome::Done,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => CloseOutcome::Conflict,
        Err(e) if e.kind() == ErrorKind::NotFound => CloseOutcome::Vanished,
        Err(e) if e.kind() == ErrorKind::NotADirectory => CloseOutcome::Denied,
        Err(e) => close_error(&e),
    }
}

/// A session's temp file, as [`Store::open_temp`] found it.
#[derive(Debug)]
pub enum Temp {
    Open(File),
    /// It should exist and does not: its bytes are gone.
    Vanished,
    Failed(io::Error),
}

/// The truthful BITS error for a failed file operation (docs/protocol.md §5.3): no space is
/// `ERROR_DISK_FULL`, a permission problem `E_ACCESSDENIED` (403), anything else `E_FAIL`
/// (500; the caller logs the cause).
pub fn error_for(e: &io::Error) -> BitsError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            BitsError::DiskFull
        }
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => BitsError::AccessDenied,
        _ => BitsError::Internal,
    }
}

fn close_error(e: &io::Error) -> CloseOutcome {
    tracing::warn!(error = %e, "commit failed");
    match error_for(e) {
        BitsError::DiskFull => CloseOutcome::DiskFull,
        BitsError::AccessDenied => CloseOutcome::Denied,
        _ => CloseOutcome::Failed,
    }
}

/// Takes the root's lock file, writing this process' id into it.
fn lock_root(root: &Path, sessions: &Path) -> io::Result<File> {
    use std::io::{Read, Seek, Write};
    let path = sessions.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another bitsmock server".to_owned()
            } else {
                format!("another bitsmock server (pid {holder})")
            };
            return Err(io::Error::new(
                ErrorKind::ResourceBusy,
                format!(
                    "the upload root {} is in use by {who}; give each server its own --dir",
                    root.display()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.seek(io::SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

#[cfg(unix)]
fn same_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(path: &Path, _file: &File) -> bool {
    // Windows cannot delete a file that is open without sharing, so existence is enough.
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_the_truthful_bits_error() {
        let kinds = [
            (ErrorKind::StorageFull, BitsError::DiskFull),
            (ErrorKind::QuotaExceeded, BitsError::DiskFull),
            (ErrorKind::PermissionDenied, BitsError::AccessDenied),
            (ErrorKind::ReadOnlyFilesystem, BitsError::AccessDenied),
            (ErrorKind::NotFound, BitsError::Internal),
            (ErrorKind::Other, BitsError::Internal),
        ];
        for (kind, error) in kinds {
            assert_eq!(error_for(&io::Error::from(kind)), error, "{kind:?}");
        }
    }

    #[test]
    fn a_root_is_locked_by_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ResourceBusy);
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(first);
        let second = Store::open(dir.path()).unwrap();
        // Released explicitly while the store value lives on.
        second.release();
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn a_deleted_session_area_is_restored_with_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::fs::remove_dir_all(dir.path().join(RESERVED_SEGMENT)).unwrap();
        store.restore().unwrap();
        assert!(dir.path().join(RESERVED_SEGMENT).join("Requests").is_dir());
        assert_eq!(
            Store::open(dir.path()).unwrap_err().kind(),
            ErrorKind::ResourceBusy
        );
    }
}
