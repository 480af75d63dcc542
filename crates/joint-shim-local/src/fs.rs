//! [`FsBlobStore`]: the blob store of a local cloud, a directory tree.
//!
//! A key's `/`-separated segments are directories under the root; its last segment is the file.
//! Keys are validated so that no key leaves the root (no `..`, `.`, empty segments, absolute
//! paths, NUL or backslash).
//!
//! `put_new` writes a temporary file (named `.joint-tmp-…`) in the target directory and then
//! hard-links it to the final name: `link(2)` fails if the target exists, so the create is
//! atomic and create-only, and a reader sees the whole blob or nothing. Temporary files are
//! never returned, deleted or counted as blobs, and no key may name one.
//!
//! A key cannot be both a blob and a directory (`a/b` and `a/b/c`); the second put fails
//! `InvalidInput`.
//!
//! Retention (ADR 0009): [`FsBlobStore::purge_expired`] deletes blobs written longer ago than
//! the store's retention (by modification time), like an S3 lifecycle rule.
//!
//! # Metadata next to a blob
//! Besides the [`BlobStore`] contract, a blob may carry opaque metadata
//! ([`FsBlobStore::put_new_with_meta`], read back by [`FsBlobStore::get_with_meta`]; `joint
//! serve`'s OSS endpoint keeps an object's `Content-Type` and `x-oss-meta-*` there). It lives in
//! a sidecar file `.joint-meta-{name}` beside the blob, a reserved name like the temporary
//! files: no key may name one, listings and counts skip them, and deleting a blob (by
//! [`FsBlobStore::delete`] or `delete_prefix`) deletes its sidecar. The sidecar records the
//! blob's size and modification time, and is returned only while they still match, so a
//! sidecar left behind by another writer never describes a newer blob. Within one process, a
//! put with metadata and a read of a blob with its metadata are atomic with respect to each
//! other.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use joint_shim::{BlobCapabilities, BlobStore, Error, ErrorKind, Result};

/// Largest blob: 5 GiB, like one S3 PUT.
pub const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024;

/// Name prefix of temporary files; keys may not use it.
const TMP_PREFIX: &str = ".joint-tmp-";
/// Name prefix of metadata sidecars; keys may not use it.
const META_PREFIX: &str = ".joint-meta-";
/// Longest key (bytes).
pub const MAX_KEY: usize = 1024;
/// Lock stripes serialising metadata puts and reads of the same key within a process.
const META_LOCKS: usize = 64;

/// A blob found by [`FsBlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written.
    pub modified: SystemTime,
}

/// A blob read with its metadata by [`FsBlobStore::get_with_meta`].
#[derive(Debug, Clone)]
pub struct BlobWithMeta {
    /// The blob.
    pub bytes: Bytes,
    /// Its metadata, if it was put with some.
    pub meta: Option<Bytes>,
    /// When it was written.
    pub modified: SystemTime,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A [`BlobStore`] on the local filesystem, under one root directory.
///
/// Cloning is cheap; several stores (and processes) may share a root.
#[derive(Clone)]
pub struct FsBlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    backend: String,
    fsync: bool,
    retention: Option<std::time::Duration>,
    meta_locks: Arc<[std::sync::Mutex<()>; META_LOCKS]>,
}

impl fmt::Debug for FsBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsBlobStore")
            .field("backend", &self.inner.backend)
            .field("root", &self.inner.root)
            .field("fsync", &self.inner.fsync)
            .field("retention", &self.inner.retention)
            .finish()
    }
}

impl FsBlobStore {
    /// A store rooted at `root` (created if missing) for the local cloud `cloud`.
    pub fn new(root: impl Into<PathBuf>, cloud: &str) -> Result<Self> {
        let root = root.into();
        let backend = format!("fs({cloud})");
        std::fs::create_dir_all(&root).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                &backend,
                "open",
                root.display().to_string(),
                format!("creating the root directory: {e}"),
            )
        })?;
        Ok(FsBlobStore {
            inner: Arc::new(Inner {
                root,
                backend,
                fsync: false,
                retention: Some(joint_shim::caps::DEFAULT_RETENTION),
                meta_locks: Arc::new(std::array::from_fn(|_| std::sync::Mutex::new(()))),
            }),
        })
    }

    /// Keep blobs for `retention` after they were written (`None`: until deleted); default
    /// [`joint_shim::caps::DEFAULT_RETENTION`].
    pub fn with_retention(self, retention: Option<std::time::Duration>) -> Self {
        FsBlobStore {
            inner: Arc::new(Inner {
                root: self.inner.root.clone(),
                backend: self.inner.backend.clone(),
                fsync: self.inner.fsync,
                retention,
                meta_locks: self.inner.meta_locks.clone(),
            }),
        }
    }

    /// Delete every blob (and stale temporary file) written before `now` minus the retention;
    /// returns how many blobs were deleted. Nothing without a retention.
    pub fn purge_expired_at(&self, now: SystemTime) -> Result<u64> {
        let Some(r) = self.inner.retention else {
            return Ok(0);
        };
        let cutoff = now.checked_sub(r).unwrap_or(UNIX_EPOCH);
        self.inner.purge_tree(&self.inner.root, cutoff)
    }

    /// [`FsBlobStore::purge_expired_at`] now.
    pub fn purge_expired(&self) -> Result<u64> {
        self.purge_expired_at(SystemTime::now())
    }

    /// Whether `put_new` syncs the data to disk before publishing it (default false: a
    /// process crash never exposes a partial blob either way; a power loss may lose recent
    /// blobs without it).
    pub fn with_fsync(self, fsync: bool) -> Self {
        FsBlobStore {
            inner: Arc::new(Inner {
                root: self.inner.root.clone(),
                backend: self.inner.backend.clone(),
                fsync,
                retention: self.inner.retention,
                meta_locks: self.inner.meta_locks.clone(),
            }),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Why `key` cannot name a blob here (`..`, `.` or empty segments, an absolute path, NUL,
    /// backslash, a reserved name, a segment over 255 bytes, over [`MAX_KEY`] bytes), or `Ok`.
    pub fn check_key(key: &str) -> std::result::Result<(), String> {
        validate(key, false)
    }

    /// Why `prefix` cannot be listed or deleted, or `Ok` (see [`FsBlobStore::check_key`]; a
    /// prefix may end in `/` or a partial segment).
    pub fn check_prefix(prefix: &str) -> std::result::Result<(), String> {
        validate(prefix, true)
    }

    /// Create the blob `key` with metadata `meta` (create-only, like
    /// [`BlobStore::put_new`]; see the module docs).
    pub async fn put_new_with_meta(&self, key: &str, bytes: Bytes, meta: Bytes) -> Result<()> {
        self.check_size("put_new", key, bytes.len())?;
        let k = key.to_string();
        self.run("put_new", key, move |inner| {
            inner.put_new_meta(&k, &bytes, Some(&meta))
        })
        .await
    }

    /// Read blob `key` with its metadata and modification time.
    pub async fn get_with_meta(&self, key: &str) -> Result<BlobWithMeta> {
        let k = key.to_string();
        self.run("get", key, move |inner| inner.get_with_meta(&k))
            .await
    }

    /// The metadata of blob `key` alone (without reading the blob): `None` when it has none.
    pub async fn get_meta(&self, key: &str) -> Result<Option<Bytes>> {
        let k = key.to_string();
        self.run("get", key, move |inner| inner.get_meta(&k)).await
    }

    /// Delete blob `key` (and its metadata); `Ok(false)` if there was none. Directories the
    /// delete empties are removed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let k = key.to_string();
        self.run("delete", key, move |inner| inner.delete(&k)).await
    }

    /// Every blob whose key starts with `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let p = prefix.to_string();
        self.run("list", prefix, move |inner| inner.list(&p)).await
    }

    fn check_size(&self, op: &'static str, key: &str, len: usize) -> Result<()> {
        if len as u64 > MAX_OBJECT {
            return Err(self.inner.err(
                ErrorKind::PayloadTooLarge,
                op,
                key,
                format!("blob of {len} bytes is over the limit of {MAX_OBJECT} bytes"),
            ));
        }
        Ok(())
    }

    async fn run<T, F>(&self, op: &'static str, target: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                ErrorKind::Other,
                &self.inner.backend,
                op,
                target,
                format!("blocking task failed: {e}"),
            )),
        }
    }
}

impl Inner {
    fn err(&self, kind: ErrorKind, op: &'static str, key: &str, msg: impl Into<String>) -> Error {
        Error::new(kind, &self.backend, op, key, msg)
    }

    fn io_err(&self, op: &'static str, key: &str, what: &str, e: &io::Error) -> Error {
        self.err(ErrorKind::Other, op, key, format!("{what}: {e}"))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.put_new_meta(key, bytes, None)
    }

    /// The lock stripe of `key` (serialises metadata puts and reads of one key).
    fn meta_lock(&self, key: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.meta_locks[(h.finish() as usize) % META_LOCKS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn put_new_meta(&self, key: &str, bytes: &[u8], meta: Option<&[u8]>) -> Result<()> {
        const OP: &str = "put_new";
        let path = self.key_path(OP, key)?;
        let dir = match path.parent() {
            Some(d) => d.to_path_buf(),
            None => return Err(self.err(ErrorKind::InvalidInput, OP, key, "key has no parent")),
        };
        if path.is_dir() {
            return Err(self.err(
                ErrorKind::InvalidInput,
                OP,
                key,
                "a directory (a prefix of other keys) is at this key",
            ));
        }
        // A concurrent delete_prefix may remove an empty directory between its creation and
        // the temp file's; retry a few times.
        let mut attempt = 0;
        let tmp = loop {
            attempt += 1;
            if let Err(e) = std::fs::create_dir_all(&dir) {
                let kind = if matches!(
                    e.kind(),
                    io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists
                ) {
                    ErrorKind::InvalidInput
                } else {
                    ErrorKind::Other
                };
                return Err(self.err(
                    kind,
                    OP,
                    key,
                    format!("creating directory (is a parent path a blob?): {e}"),
                ));
            }
            match self.write_tmp(&dir, bytes) {
                Ok(tmp) => break tmp,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => continue,
                Err(e) => return Err(self.io_err(OP, key, "writing temporary file", &e)),
            }
        };
        let _guard = meta.map(|_| self.meta_lock(key));
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if self.fsync {
                    // The new directory entry must reach the disk too.
                    std::fs::File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| self.io_err(OP, key, "syncing the directory", &e))?;
                }
                let sidecar = sidecar_of(&path);
                match meta {
                    // A sidecar left by an earlier blob at this key would not match this
                    // blob anyway; remove it so it does not linger.
                    None => {
                        let _ = std::fs::remove_file(&sidecar);
                        Ok(())
                    }
                    Some(m) => self
                        .write_meta(&dir, &path, &sidecar, m)
                        .map_err(|e| self.io_err(OP, key, "writing the blob's metadata", &e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if path.is_dir() {
                    Err(self.err(
                        ErrorKind::InvalidInput,
                        OP,
                        key,
                        "a directory (a prefix of other keys) is at this key",
                    ))
                } else {
                    Err(self.err(
                        ErrorKind::AlreadyExists,
                        OP,
                        key,
                        "a blob exists at this key",
                    ))
                }
            }
            Err(e) => Err(self.io_err(OP, key, "publishing the blob", &e)),
        }
    }

    /// Write `meta` as the sidecar of the blob at `path`, stamped with its size and time.
    fn write_meta(&self, dir: &Path, path: &Path, sidecar: &Path, meta: &[u8]) -> io::Result<()> {
        let stamp = stamp_of(&std::fs::metadata(path)?);
        let mut doc = format!("{stamp}\n").into_bytes();
        doc.extend_from_slice(meta);
        let tmp = self.write_tmp(dir, &doc)?;
        let renamed = std::fs::rename(&tmp, sidecar);
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }

    fn get_with_meta(&self, key: &str) -> Result<BlobWithMeta> {
        const OP: &str = "get";
        let path = self.key_path(OP, key)?;
        let _guard = self.meta_lock(key);
        let bytes = self.get(key)?;
        let md = std::fs::metadata(&path).map_err(|e| self.io_err(OP, key, "reading", &e))?;
        Ok(BlobWithMeta {
            bytes,
            meta: read_meta(&path, &md),
            modified: md.modified().unwrap_or(UNIX_EPOCH),
        })
    }

    fn get_meta(&self, key: &str) -> Result<Option<Bytes>> {
        const OP: &str = "get";
        let path = self.key_path(OP, key)?;
        let _guard = self.meta_lock(key);
        match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => Ok(read_meta(&path, &md)),
            Ok(_) => Err(self.err(ErrorKind::NotFound, OP, key, "no blob at this key")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Err(self.err(ErrorKind::NotFound, OP, key, "no blob at this key"))
            }
            Err(e) => Err(self.io_err(OP, key, "reading", &e)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool> {
        const OP: &str = "delete";
        let path = self.key_path(OP, key)?;
        let _guard = self.meta_lock(key);
        if path.is_dir() {
            return Ok(false);
        }
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                false
            }
            Err(e) => return Err(self.io_err(OP, key, "deleting", &e)),
        };
        let _ = std::fs::remove_file(sidecar_of(&path));
        // Best effort: drop now-empty directories up to the root.
        let mut d = path.parent();
        while let Some(dir) = d {
            if dir == self.root || std::fs::remove_dir(dir).is_err() {
                break;
            }
            d = dir.parent();
        }
        Ok(removed)
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        const OP: &str = "list";
        validate(prefix, true).map_err(|m| self.err(ErrorKind::InvalidInput, OP, prefix, m))?;
        let (dir_part, partial) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let mut out = Vec::new();
        // (directory, its key prefix, whether its entries must match `partial`); a stack, not
        // recursion, however deep the tree.
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let base = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let mut stack = vec![(start, base, true)];
        while let Some((dir, rel, filter)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(self.io_err(OP, prefix, "listing", &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(TMP_PREFIX)
                    || name.starts_with(META_PREFIX)
                    || (filter && !name.starts_with(partial))
                {
                    continue;
                }
                // `file_type` does not follow symlinks: a link is never listed or entered.
                let ft = entry
                    .file_type()
                    .map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
                let key = format!("{rel}{name}");
                if ft.is_dir() {
                    stack.push((entry.path(), format!("{key}/"), false));
                } else if ft.is_file() {
                    let md = entry
                        .metadata()
                        .map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
                    out.push(BlobInfo {
                        key,
                        size: md.len(),
                        modified: md.modified().unwrap_or(UNIX_EPOCH),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn write_tmp(&self, dir: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        use std::io::Write;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{nanos}-{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let written = f
            .write_all(bytes)
            .and_then(|()| if self.fsync { f.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        const OP: &str = "get";
        let path = self.key_path(OP, key)?;
        match std::fs::read(&path) {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::IsADirectory
                ) =>
            {
                Err(self.err(ErrorKind::NotFound, OP, key, "no blob at this key"))
            }
            Err(e) => Err(self.io_err(OP, key, "reading", &e)),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        const OP: &str = "delete_prefix";
        validate(prefix, true).map_err(|m| self.err(ErrorKind::InvalidInput, OP, prefix, m))?;
        // Whole segments name the directory to walk; the partial last segment filters it.
        let (dir_part, partial) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let dir = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(0);
            }
            Err(e) => return Err(self.io_err(OP, prefix, "listing", &e)),
        };
        let mut count = 0u64;
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX)
                || name.starts_with(META_PREFIX)
                || !name.starts_with(partial)
            {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
            if ft.is_dir() {
                count += self.delete_tree(&entry.path(), prefix)?;
            } else if ft.is_file()
                && remove_counted(&entry.path())
                    .map_err(|e| self.io_err(OP, prefix, "deleting", &e))?
            {
                let _ = std::fs::remove_file(sidecar_of(&entry.path()));
                count += 1;
            }
        }
        // Best effort: drop now-empty directories from the prefix's directory up to the root.
        if !dir_part.is_empty() {
            let mut d = dir.as_path();
            while d != self.root && std::fs::remove_dir(d).is_ok() {
                match d.parent() {
                    Some(p) => d = p,
                    None => break,
                }
            }
        }
        Ok(count)
    }

    /// Delete every blob under `dir` (all of which match the prefix) and the emptied dirs.
    fn delete_tree(&self, dir: &Path, prefix: &str) -> Result<u64> {
        const OP: &str = "delete_prefix";
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_err(OP, prefix, "listing", &e)),
        };
        let mut count = 0u64;
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
            let name = entry.file_name();
            let is_tmp = name.to_str().is_none_or(|n| n.starts_with(TMP_PREFIX));
            let is_meta = name.to_str().is_some_and(|n| n.starts_with(META_PREFIX));
            let ft = entry
                .file_type()
                .map_err(|e| self.io_err(OP, prefix, "listing", &e))?;
            if ft.is_dir() {
                count += self.delete_tree(&entry.path(), prefix)?;
            } else if is_meta {
                // The sidecar of a blob of this tree: deleted with it, not counted.
                let _ = std::fs::remove_file(entry.path());
            } else if !is_tmp
                && ft.is_file()
                && remove_counted(&entry.path())
                    .map_err(|e| self.io_err(OP, prefix, "deleting", &e))?
            {
                count += 1;
            }
        }
        // Fails (harmlessly) while a temp file of a concurrent put is inside.
        let _ = std::fs::remove_dir(dir);
        Ok(count)
    }

    /// Delete files under `dir` modified before `cutoff`, and the directories that empties.
    fn purge_tree(&self, dir: &Path, cutoff: SystemTime) -> Result<u64> {
        const OP: &str = "purge_expired";
        let target = dir.display().to_string();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_err(OP, &target, "listing", &e)),
        };
        let mut count = 0u64;
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err(OP, &target, "listing", &e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_err(OP, &target, "reading metadata", &e)),
            };
            if meta.is_dir() {
                count += self.purge_tree(&entry.path(), cutoff)?;
                // Fails (harmlessly) while the directory still holds something.
                let _ = std::fs::remove_dir(entry.path());
            } else if meta.modified().is_ok_and(|m| m < cutoff) {
                let is_tmp = entry
                    .file_name()
                    .to_str()
                    .is_none_or(|n| n.starts_with(TMP_PREFIX));
                if remove_counted(&entry.path())
                    .map_err(|e| self.io_err(OP, &target, "deleting", &e))?
                    && !is_tmp
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    fn key_path(&self, op: &'static str, key: &str) -> Result<PathBuf> {
        validate(key, false).map_err(|m| self.err(ErrorKind::InvalidInput, op, key, m))?;
        Ok(self.root.join(key))
    }
}

/// The metadata sidecar of the blob at `path`.
fn sidecar_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{META_PREFIX}{name}"))
}

/// The metadata in the sidecar of the blob at `path` (with metadata `md`), if the sidecar
/// was written for this very blob.
fn read_meta(path: &Path, md: &std::fs::Metadata) -> Option<Bytes> {
    let doc = std::fs::read(sidecar_of(path)).ok()?;
    let i = doc.iter().position(|b| *b == b'\n')?;
    (doc[..i] == *stamp_of(md).as_bytes()).then(|| Bytes::copy_from_slice(&doc[i + 1..]))
}

/// What a sidecar records of its blob: size and modification time.
fn stamp_of(md: &std::fs::Metadata) -> String {
    let t = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("joint-meta v1 {} {t}", md.len())
}

/// Remove a file; `Ok(false)` if it was already gone (a concurrent delete counted it).
fn remove_counted(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Check that a key (or, with `is_prefix`, a prefix: empty, or ending in `/` or a partial
/// segment) stays under the root. Returns why not.
fn validate(key: &str, is_prefix: bool) -> std::result::Result<(), String> {
    if key.is_empty() {
        return if is_prefix {
            Ok(())
        } else {
            Err("empty key".into())
        };
    }
    if key.len() > MAX_KEY {
        return Err(format!("key longer than {MAX_KEY} bytes"));
    }
    if key.contains('\0') {
        return Err("key contains NUL".into());
    }
    if key.contains('\\') {
        return Err("key contains a backslash".into());
    }
    if key.starts_with('/') {
        return Err("key is an absolute path".into());
    }
    let segments: Vec<&str> = key.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        // A prefix's last segment may be partial (or empty after a trailing `/`); a partial
        // `.` or `..` only filters names, it is never joined to a path.
        let partial = is_prefix && i == last;
        if seg.is_empty() {
            if partial {
                continue;
            }
            return Err("key has an empty segment".into());
        }
        if !partial && (*seg == "." || *seg == "..") {
            return Err(format!("key has a '{seg}' segment"));
        }
        for reserved in [TMP_PREFIX, META_PREFIX] {
            if !partial && seg.starts_with(reserved) {
                return Err(format!("key segment uses the reserved prefix '{reserved}'"));
            }
        }
        if seg.len() > 255 {
            return Err("key segment longer than 255 bytes".into());
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn capabilities(&self) -> BlobCapabilities {
        BlobCapabilities {
            create_only: true,
            max_object: MAX_OBJECT,
            retention: self.inner.retention,
        }
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.check_size("put_new", key, bytes.len())?;
        let k = key.to_string();
        self.run("put_new", key, move |inner| inner.put_new(&k, &bytes))
            .await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let k = key.to_string();
        self.run("get", key, move |inner| inner.get(&k)).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let p = prefix.to_string();
        self.run("delete_prefix", prefix, move |inner| {
            inner.delete_prefix(&p)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{FsBlobStore, validate};
    use joint_shim::BlobStore;

    #[tokio::test]
    async fn metadata_travels_with_its_blob_and_never_outlives_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FsBlobStore::new(dir.path(), "t").expect("store");
        s.put_new_with_meta("b/x/one", "1".into(), "m1".into())
            .await
            .expect("put");
        s.put_new("b/two", "22".into()).await.expect("put");
        let got = s.get_with_meta("b/x/one").await.expect("get");
        assert_eq!(
            (&got.bytes[..], got.meta.as_deref()),
            (&b"1"[..], Some(&b"m1"[..]))
        );
        assert_eq!(s.get_with_meta("b/two").await.expect("get").meta, None);
        // The sidecar is neither a blob nor a key.
        let keys: Vec<String> = s
            .list("b/")
            .await
            .expect("list")
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(keys, ["b/two", "b/x/one"]);
        assert_eq!(s.list("b/t").await.expect("list").len(), 1);
        assert!(s.get("b/x/.joint-meta-one").await.is_err());
        // A second create fails and leaves the metadata alone.
        assert!(
            s.put_new_with_meta("b/x/one", "9".into(), "m9".into())
                .await
                .is_err()
        );
        assert_eq!(
            s.get_with_meta("b/x/one")
                .await
                .expect("get")
                .meta
                .as_deref(),
            Some(&b"m1"[..])
        );
        // Deleting the blob deletes its metadata: a new blob at the key starts bare.
        assert!(s.delete("b/x/one").await.expect("delete"));
        assert!(!s.delete("b/x/one").await.expect("delete again"));
        assert!(!dir.path().join("b/x").exists(), "emptied directories go");
        s.put_new("b/x/one", "3".into()).await.expect("put");
        assert_eq!(s.get_with_meta("b/x/one").await.expect("get").meta, None);
        // delete_prefix counts blobs, not sidecars, and takes the sidecars along.
        s.put_new_with_meta("b/y", "4".into(), "m4".into())
            .await
            .expect("put");
        assert_eq!(s.delete_prefix("b/").await.expect("delete_prefix"), 3);
        assert_eq!(
            std::fs::read_dir(dir.path().join("b"))
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
    }

    #[test]
    fn validates_keys() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a/.joint-tmp-1",
            "a/.joint-meta-b",
            &"k".repeat(super::MAX_KEY + 1),
        ] {
            assert!(validate(bad, false).is_err(), "{bad:?} must be refused");
        }
        for good in [
            "a",
            "run1/A_0.out.1",
            "_runs/abc.out.123",
            "a/.hidden",
            "a/..b",
        ] {
            assert!(validate(good, false).is_ok(), "{good:?} must be accepted");
        }
        for good_prefix in ["", "run1/", "_runs/abc.out.", "a/.", "a/.."] {
            assert!(
                validate(good_prefix, true).is_ok(),
                "{good_prefix:?} prefix"
            );
        }
        for bad_prefix in ["../", "/x", "a//", "a/../"] {
            assert!(validate(bad_prefix, true).is_err(), "{bad_prefix:?} prefix");
        }
    }
}
