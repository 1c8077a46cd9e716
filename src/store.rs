//! Session temp files and the atomic commit to the upload root (PROTOCOL.md §7.6, §7.10).
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

use crate::proto::destination::RESERVED_SEGMENT;
use crate::proto::{CloseOutcome, Destination, Existing, SessionId};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

/// The upload root and its session area.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    requests: PathBuf,
}

impl Store {
    /// Creates the root and its session area if missing, and clears temp files a previous
    /// run left behind (sessions live in memory, so those can never be resumed).
    pub fn open(root: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let requests = root.join(RESERVED_SEGMENT).join("Requests");
        std::fs::create_dir_all(&requests)?;
        for entry in std::fs::read_dir(&requests)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "bin") {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(Store { root, requests })
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

    /// Opens (creating if needed) a session's temp file for writing.
    pub async fn open_temp(&self, id: &SessionId) -> io::Result<tokio::fs::File> {
        tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.temp_path(id))
            .await
    }

    /// Moves a session's complete file to its destination, creating parent folders.
    /// `had_data` says whether the session ever wrote its temp file; a session that never
    /// did commits an empty file.
    pub async fn commit(
        &self,
        id: &SessionId,
        destination: &Destination,
        overwrite: bool,
        had_data: bool,
    ) -> CloseOutcome {
        let temp = self.temp_path(id);
        let target = self.destination_path(destination);
        let result = commit_blocking(temp, target, overwrite, had_data);
        tokio::task::spawn_blocking(result)
            .await
            .unwrap_or(CloseOutcome::DiskFull)
    }

    /// Deletes a session's temp file, if any.
    pub async fn discard(&self, id: &SessionId) {
        let _ = tokio::fs::remove_file(self.temp_path(id)).await;
    }
}

fn commit_blocking(
    temp: PathBuf,
    target: PathBuf,
    overwrite: bool,
    had_data: bool,
) -> impl FnOnce() -> CloseOutcome {
    move || {
        if !had_data && let Err(e) = std::fs::File::create(&temp) {
            return disk_error(&e);
        }
        if !temp.exists() {
            return CloseOutcome::Vanished;
        }
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return CloseOutcome::Directory,
            Ok(_) if !overwrite => return CloseOutcome::Conflict,
            _ => {}
        }
        if let Some(parent) = target.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            return match e.kind() {
                ErrorKind::AlreadyExists | ErrorKind::NotADirectory => CloseOutcome::Denied,
                _ => disk_error(&e),
            };
        }
        let placed = if overwrite {
            std::fs::rename(&temp, &target)
        } else {
            // A hard link never replaces an existing file, so a destination that appeared
            // since the check above still is not overwritten.
            std::fs::hard_link(&temp, &target).and_then(|()| std::fs::remove_file(&temp))
        };
        match placed {
            Ok(()) => CloseOutcome::Done,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => CloseOutcome::Conflict,
            Err(e) if e.kind() == ErrorKind::NotFound => CloseOutcome::Vanished,
            Err(e) if e.kind() == ErrorKind::NotADirectory => CloseOutcome::Denied,
            Err(e) => disk_error(&e),
        }
    }
}

fn disk_error(e: &io::Error) -> CloseOutcome {
    tracing::warn!(error = %e, "commit failed");
    CloseOutcome::DiskFull
}
