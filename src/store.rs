//! Session temp files and the atomic commit to the upload root (docs/protocol.md §7.6, §7.10).
//!
//! Layout under the upload root:
//!
//! ```text
//! <root>/BITS-Sessions/Requests/<session-id>.bin   temp file being assembled
//! <root>/BITS-Sessions/Replies/<session-id>.bin    a notified application's reply
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
    replies: PathBuf,
    /// The locked lock files (more than one after the root was emptied and re-created).
    locks: Arc<Mutex<Vec<File>>>,
}

impl Store {
    /// Creates the root and its session area if missing, takes the root's lock, and clears
    /// the temp files a previous run left behind, killed or not (sessions live in memory, so
    /// those can never be resumed). Only names this store makes are removed; anything else
    /// in the session area is left alone. Fails with [`ErrorKind::ResourceBusy`] when
    /// another server holds the root.
    pub fn open(root: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let sessions = root.join(RESERVED_SEGMENT);
        let requests = sessions.join("Requests");
        let replies = sessions.join("Replies");
        std::fs::create_dir_all(&requests)?;
        for dir in [&sessions, &requests, &replies] {
            let meta = match std::fs::symlink_metadata(dir) {
                // The reply area is made when a notified application first needs it.
                Err(e) if e.kind() == ErrorKind::NotFound && dir == &replies => continue,
                other => other?,
            };
            if meta.file_type().is_symlink() {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; the session area must be inside the upload root",
                        dir.display()
                    ),
                ));
            }
        }
        let lock = lock_root(&root, &sessions)?;
        let stale_replies = std::fs::read_dir(&replies).into_iter().flatten();
        for entry in std::fs::read_dir(&requests)?.chain(stale_replies) {
            let entry = entry?;
            let ours = entry.file_name().to_str().is_some_and(is_temp_name);
            // A directory with our name is not ours either; a link is removed, not followed.
            if ours
                && !entry.file_type()?.is_dir()
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale temp file");
            }
        }
        Ok(Store {
            root,
            sessions,
            requests,
            replies,
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

    /// Where a session's file is assembled: `<hyphenated lower-case uuid>.bin`.
    pub fn temp_path(&self, id: &SessionId) -> PathBuf {
        self.requests.join(format!("{}.bin", id.simple()))
    }

    /// Where a notified application's reply for a session is kept (by value the server
    /// writes it; by reference the application does): `<hyphenated lower-case uuid>.bin`.
    pub fn reply_path(&self, id: &SessionId) -> PathBuf {
        self.replies.join(format!("{}.bin", id.simple()))
    }

    /// Makes room for a session's reply: the reply area exists (inside the root: a link in
    /// its place is refused) and no older reply file is left. A link at the file's path is
    /// removed, never followed.
    pub async fn clear_reply(&self, id: &SessionId) -> io::Result<()> {
        let store = self.clone();
        let path = self.reply_path(id);
        tokio::task::spawn_blocking(move || {
            store.restore()?;
            std::fs::create_dir_all(&store.replies)?;
            if std::fs::symlink_metadata(&store.replies)?
                .file_type()
                .is_symlink()
            {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is a symbolic link", store.replies.display()),
                ));
            }
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Creates an empty reply file for a session (after [`Store::clear_reply`]).
    pub async fn fresh_reply(&self, id: &SessionId) -> io::Result<tokio::fs::File> {
        self.clear_reply(id).await?;
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.reply_path(id))
            .await
    }

    /// Opens a stored reply for reading: only a plain file at that very path, never through
    /// a link (by reference the application wrote it; it must not point outside the root).
    pub async fn open_reply(path: &Path) -> io::Result<tokio::fs::File> {
        let refused = || io::Error::new(ErrorKind::InvalidInput, "the reply is not a plain file");
        let before = tokio::fs::symlink_metadata(path).await?;
        if !before.is_file() {
            return Err(refused());
        }
        let file = tokio::fs::File::open(path).await?;
        let after = file.metadata().await?;
        if !same_file(&before, &after) {
            return Err(refused());
        }
        Ok(file)
    }

    /// Deletes a session's reply file, if any.
    pub async fn discard_reply(&self, id: &SessionId) {
        let _ = tokio::fs::remove_file(self.reply_path(id)).await;
    }

    /// What is at a destination now.
    pub async fn inspect(&self, destination: &Destination) -> Existing {
        match tokio::fs::symlink_metadata(self.destination_path(destination)).await {
            Ok(m) if m.is_dir() => Existing::Directory,
            Ok(_) => Existing::File,
            Err(_) => Existing::Nothing,
        }
    }

    /// Opens a session's temp file for one fragment's writes at offset `at` (blocking: call
    /// it on the blocking pool). At offset 0 no byte was stored yet, so the file may be
    /// created (re-creating the session area if it was deleted). Otherwise the file must
    /// exist and hold the `at` bytes acknowledged so far: if it is gone or shorter, so are
    /// those bytes, and the answer is [`TempError::Vanished`], never a new empty file.
    pub fn open_temp(&self, id: &SessionId, at: u64) -> Result<File, TempError> {
        let path = self.temp_path(id);
        let fresh = at == 0;
        let open = || {
            std::fs::OpenOptions::new()
                .create(fresh)
                .write(true)
                .truncate(false)
                .open(&path)
        };
        let opened = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound && fresh => {
                self.restore().and_then(|()| open())
            }
            other => other,
        };
        match opened {
            Ok(file) if fresh => Ok(file),
            Ok(file) => match file.metadata() {
                Ok(m) if m.len() >= at => Ok(file),
                Ok(_) => Err(TempError::Vanished),
                Err(e) => Err(TempError::Io(e)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Err(TempError::Vanished),
            Err(e) => Err(TempError::Io(e)),
        }
    }

    /// Whether an open temp file is still the one at the session's path (nobody deleted it
    /// since it was opened). Bytes written to a deleted file are lost.
    pub fn still_there(&self, id: &SessionId, file: &File) -> bool {
        linked(&self.temp_path(id), file)
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
        let segments: Vec<String> = destination.segments().map(str::to_owned).collect();
        tokio::task::spawn_blocking(move || {
            if empty && let Err(e) = store.restore().and_then(|()| File::create(&temp)) {
                return close_error(&e);
            }
            commit_blocking(&temp, &store.root, &segments, overwrite)
        })
        .await
        .unwrap_or(CloseOutcome::Failed)
    }

    /// Deletes a session's temp file, if any.
    pub async fn discard(&self, id: &SessionId) {
        let _ = tokio::fs::remove_file(self.temp_path(id)).await;
    }
}

fn commit_blocking(temp: &Path, root: &Path, segments: &[String], overwrite: bool) -> CloseOutcome {
    if !temp.exists() {
        return CloseOutcome::Vanished;
    }
    let Some((name, folders)) = segments.split_last() else {
        return CloseOutcome::Directory;
    };
    let parent = match confined_folder(root, folders) {
        Ok(parent) => parent,
        Err(Refused::NotAFolder) => return CloseOutcome::Denied,
        Err(Refused::Io(e)) => return close_error(&e),
    };
    let target = parent.join(name);
    // symlink_metadata: a link at the destination itself is replaced by the rename (never
    // followed), so the file still lands inside the root.
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => return CloseOutcome::Directory,
        Ok(_) if !overwrite => return CloseOutcome::Conflict,
        _ => {}
    }
    let placed = if overwrite {
        std::fs::rename(temp, &target)
    } else {
        // A hard link never replaces an existing file, so a destination that appeared
        // since the check above still is not overwritten.
        std::fs::hard_link(temp, &target).and_then(|()| std::fs::remove_file(temp))
    };
    match placed {
        Ok(()) => CloseOutcome::Done,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => CloseOutcome::Conflict,
        Err(e) if e.kind() == ErrorKind::NotFound => CloseOutcome::Vanished,
        Err(e) if e.kind() == ErrorKind::NotADirectory => CloseOutcome::Denied,
        Err(e) => close_error(&e),
    }
}

/// Why a destination's folder cannot be used.
enum Refused {
    /// A file or a symbolic link stands where a folder must be.
    NotAFolder,
    Io(io::Error),
}

/// The folder `root/folders…`, created as needed, one component at a time: every component
/// must be a real directory, never a symbolic link, so a link planted in the root (`evil ->
/// /elsewhere`) cannot carry a commit out of it. (`create_dir_all` would follow it.)
fn confined_folder(root: &Path, folders: &[String]) -> Result<PathBuf, Refused> {
    let mut path = root.to_path_buf();
    for folder in folders {
        path.push(folder);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Refused::NotAFolder),
            Err(e) if e.kind() == ErrorKind::NotFound => match std::fs::create_dir(&path) {
                Ok(()) => {}
                // Created meanwhile by a concurrent commit: look again.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => {}
                        _ => return Err(Refused::NotAFolder),
                    }
                }
                Err(e) => return Err(Refused::Io(e)),
            },
            Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(Refused::NotAFolder),
            Err(e) => return Err(Refused::Io(e)),
        }
    }
    Ok(path)
}

/// Why a session's temp file cannot take a fragment.
#[derive(Debug)]
pub enum TempError {
    /// It should exist (and hold the bytes acknowledged so far) and does not: its bytes are
    /// gone.
    Vanished,
    Io(io::Error),
}

/// The truthful BITS error for a failed file operation (docs/protocol.md §5.3): no space is
/// `ERROR_DISK_FULL`, a permission problem `E_ACCESSDENIED` (403), no file descriptor left
/// `E_OUTOFMEMORY` (500, retried later), anything else `E_FAIL` (500; the caller logs the
/// cause).
pub fn error_for(e: &io::Error) -> BitsError {
    // EMFILE and ENFILE (the same numbers on Linux and the BSDs): a passing shortage.
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        return BitsError::OutOfResources;
    }
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

/// Whether a file name in the session area is one [`Store::temp_path`] makes.
fn is_temp_name(name: &str) -> bool {
    name.strip_suffix(".bin").is_some_and(|stem| {
        uuid::Uuid::try_parse(stem).is_ok_and(|id| id.hyphenated().to_string() == stem)
    })
}

/// How long a busy root lock is waited for before the root counts as in use.
///
/// A process that spawns a child holds every open file of its own for a moment, the lock
/// file included: between fork and exec the child shares the lock. A test suite that stops
/// one server and starts the next on the same root while another thread spawns a process
/// would otherwise see the root "in use" by itself. A server that really holds the root
/// holds it for longer than this.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Tries to lock `file` until `patience` has passed.
fn try_lock_for(file: &File, patience: std::time::Duration) -> Result<(), std::fs::TryLockError> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            result => return result,
        }
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
    match try_lock_for(&file, LOCK_PATIENCE) {
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

/// Whether an open file still has a name. The file was opened by its path for this one
/// fragment, so a link count of zero means the path was deleted meanwhile; one `fstat`, no
/// path lookup, since this runs after every fragment.
#[cfg(unix)]
fn linked(_path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.nlink() > 0)
}

/// Whether two metadata describe one file (a link swapped in between does not).
#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino()) && b.is_file()
}

#[cfg(not(unix))]
fn same_file(_a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    b.is_file()
}

#[cfg(not(unix))]
fn linked(path: &Path, _file: &File) -> bool {
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
        #[cfg(unix)]
        for emfile_or_enfile in [24, 23] {
            let e = io::Error::from_raw_os_error(emfile_or_enfile);
            assert_eq!(error_for(&e), BitsError::OutOfResources, "{e}");
        }
    }

    #[test]
    fn only_names_the_store_makes_are_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = SessionId::from_bytes([7; 16]);
        let name = store.temp_path(&id);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(name), "{name}");
        for other in [
            "notes.bin",
            "lock",
            "07070707070707070707070707070707.bin",
            "07070707-0707-0707-0707-070707070707.BIN",
            "{07070707-0707-0707-0707-070707070707}.bin",
            "07070707-0707-0707-0707-070707070707.bin.bak",
        ] {
            assert!(!is_temp_name(other), "{other}");
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

    #[tokio::test]
    async fn the_reply_area_is_made_on_demand_cleared_at_start_and_never_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let replies = dir.path().join(RESERVED_SEGMENT).join("Replies");
        let id = SessionId::from_bytes([7; 16]);
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(!replies.exists(), "made only when needed");
            let mut file = store.fresh_reply(&id).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut file, b"old")
                .await
                .unwrap();
            std::fs::write(replies.join("notes.txt"), b"not ours").unwrap();
            // A fresh reply replaces the old one; a cleared one is gone.
            drop(store.fresh_reply(&id).await.unwrap());
            assert_eq!(std::fs::read(store.reply_path(&id)).unwrap(), b"");
            store.clear_reply(&id).await.unwrap();
            assert!(!store.reply_path(&id).exists());
            drop(store.fresh_reply(&id).await.unwrap());
        }
        // A new run clears our stale replies, keeps what is not ours.
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.reply_path(&id).exists());
        assert!(replies.join("notes.txt").exists());
        drop(store);
        // A reply area that is a link is refused at start.
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(&replies).unwrap();
        std::os::unix::fs::symlink(outside.path(), &replies).unwrap();
        assert_eq!(
            Store::open(dir.path()).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
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
