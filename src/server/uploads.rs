//! The committed files `GET /uploads` lists: oldest first, one entry per path (a re-upload
//! replaces the older one), at most a given number.
//!
//! A server that takes many small uploads commits thousands a second and remembers up to
//! 100,000 of them, so remembering one must not walk the others: each entry is found by its
//! path through an index, and the oldest is dropped from the front of an ordered map.

use super::control::Upload;
use std::collections::{BTreeMap, HashMap};

/// Where an upload sits in [`Uploads`]: its insertion number, which never repeats. A caller
/// that let go of the lock holds a `Key`, not a position, so it cannot reach another upload
/// when older ones were dropped or replaced meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key(u64);

#[derive(Debug, Default)]
pub(super) struct Uploads {
    /// Oldest first.
    by_age: BTreeMap<Key, Upload>,
    by_path: HashMap<String, Key>,
    next: u64,
}

impl Uploads {
    /// Remembers a committed file, forgetting an older entry for the same path, then the
    /// oldest ones while more than `kept` would remain (at least one is always kept).
    pub fn remember(&mut self, upload: Upload, kept: usize) {
        if let Some(older) = self.by_path.remove(&upload.path) {
            self.by_age.remove(&older);
        }
        while self.by_age.len() >= kept.max(1) {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.by_path.remove(&oldest.path);
        }
        let key = Key(self.next);
        self.next += 1;
        self.by_path.insert(upload.path.clone(), key);
        self.by_age.insert(key, upload);
    }

    pub fn clear(&mut self) {
        self.by_age.clear();
        self.by_path.clear();
    }

    /// The uploads without a SHA-256 yet, oldest first, with their paths.
    pub fn unhashed(&self) -> Vec<(Key, String)> {
        self.by_age
            .iter()
            .filter(|(_, u)| u.sha256.is_none())
            .map(|(key, u)| (*key, u.path.clone()))
            .collect()
    }

    /// Records the SHA-256 of the upload at `key`, if it is still remembered.
    pub fn set_sha256(&mut self, key: Key, digest: String) {
        if let Some(upload) = self.by_age.get_mut(&key) {
            upload.sha256 = Some(digest);
        }
    }

    /// Every remembered upload, oldest first.
    pub fn list(&self) -> Vec<Upload> {
        self.by_age.values().cloned().collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.by_age.len(), self.by_path.len());
        self.by_age.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SessionId;

    fn upload(path: &str, size: u64) -> Upload {
        Upload {
            path: path.to_owned(),
            size,
            sha256: None,
            session: SessionId::from_bytes([7; 16]),
            ordinal: size,
        }
    }

    fn paths(uploads: &Uploads) -> Vec<(String, u64)> {
        uploads
            .list()
            .into_iter()
            .map(|u| (u.path, u.size))
            .collect()
    }

    fn owned(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
        expected.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    #[test]
    fn uploads_are_listed_oldest_first() {
        let mut uploads = Uploads::default();
        for (i, path) in ["a", "b", "c"].iter().enumerate() {
            uploads.remember(upload(path, i as u64), 10);
        }
        assert_eq!(paths(&uploads), owned(&[("a", 0), ("b", 1), ("c", 2)]));
        assert_eq!(uploads.len(), 3);
    }

    #[test]
    fn a_re_upload_replaces_the_older_entry_and_becomes_the_newest() {
        let mut uploads = Uploads::default();
        uploads.remember(upload("a", 1), 10);
        uploads.remember(upload("b", 2), 10);
        uploads.remember(upload("a", 3), 10);
        assert_eq!(paths(&uploads), owned(&[("b", 2), ("a", 3)]));
        assert_eq!(uploads.len(), 2);
    }

    #[test]
    fn beyond_the_limit_the_oldest_are_forgotten() {
        let mut uploads = Uploads::default();
        for i in 0..5 {
            uploads.remember(upload(&format!("f{i}"), i), 3);
        }
        assert_eq!(paths(&uploads), owned(&[("f2", 2), ("f3", 3), ("f4", 4)]));
        // A forgotten path is gone from the index too: uploading it again adds one entry
        // and drops the oldest, nothing else.
        uploads.remember(upload("f0", 9), 3);
        assert_eq!(paths(&uploads), owned(&[("f3", 3), ("f4", 4), ("f0", 9)]));
        assert_eq!(uploads.len(), 3);
    }

    #[test]
    fn replacing_at_the_limit_forgets_nothing_else() {
        let mut uploads = Uploads::default();
        for i in 0..3 {
            uploads.remember(upload(&format!("f{i}"), i), 3);
        }
        uploads.remember(upload("f0", 7), 3);
        assert_eq!(paths(&uploads), owned(&[("f1", 1), ("f2", 2), ("f0", 7)]));
    }

    #[test]
    fn a_limit_of_zero_still_keeps_the_newest() {
        let mut uploads = Uploads::default();
        uploads.remember(upload("a", 1), 0);
        uploads.remember(upload("b", 2), 0);
        assert_eq!(paths(&uploads), owned(&[("b", 2)]));
    }

    #[test]
    fn a_digest_goes_to_the_upload_it_was_computed_for() {
        let mut uploads = Uploads::default();
        uploads.remember(upload("a", 1), 2);
        uploads.remember(upload("b", 2), 2);
        let unhashed = uploads.unhashed();
        assert_eq!(
            unhashed.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // While "a" was being hashed, "c" arrived and pushed it out, and "b" was uploaded
        // again: neither digest may land on another entry.
        uploads.remember(upload("c", 3), 2);
        uploads.remember(upload("b", 4), 2);
        for (key, path) in unhashed {
            uploads.set_sha256(key, format!("digest of {path}"));
        }
        assert!(uploads.list().iter().all(|u| u.sha256.is_none()));

        let (key, path) = uploads.unhashed().remove(0);
        assert_eq!(path, "c");
        uploads.set_sha256(key, "digest of c".into());
        let listed = uploads.list();
        assert_eq!(listed[0].sha256.as_deref(), Some("digest of c"));
        assert_eq!(listed[1].sha256, None);
        assert_eq!(uploads.unhashed().len(), 1);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut uploads = Uploads::default();
        uploads.remember(upload("a", 1), 2);
        uploads.clear();
        assert_eq!(uploads.len(), 0);
        uploads.remember(upload("a", 2), 2);
        assert_eq!(paths(&uploads), owned(&[("a", 2)]));
    }
}
