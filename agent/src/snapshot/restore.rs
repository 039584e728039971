//! Restoring: unpack a snapshot stream into a staging directory next to each path, on the same
//! filesystem (`<parent>/.<name>.bf-restore-<random>`), and only when the whole stream is good,
//! swap each staging directory with its path (`renameat2(RENAME_EXCHANGE)`, so the path never
//! disappears), then remove the old trees.
//!
//! - Entries must lie inside the declared paths: absolute names, `.`, `..` and empty components,
//!   names outside the paths, hard links whose target is not an earlier file of the same path, an
//!   entry before its directory, and duplicates are refused (400 naming the entry). Everything is
//!   created relative to directory descriptors opened with `O_NOFOLLOW`, so no symbolic link of
//!   the stream is ever followed; link targets are stored as they are.
//! - Owner (when the agent is root), mode, mtime and xattrs are set on every entry; directories
//!   get theirs once all entries are in (creating an entry changes its directory's mtime).
//! - Any failure before the swap removes the staging directories: the current files stay as they
//!   were. A failed atomic swap is undone.
//! - A directory that overlayfs cannot rename (one of the image, `EXDEV`) has its contents
//!   swapped instead ([`swap_contents`]): the complete staging directory is renamed
//!   `.<name>.bf-ready-<random>` first, so that a swap cut in the middle is finished by the next
//!   restore of that path.
//! - A path with no entries in the stream was absent when packed: it is left as it is.
//! - Leftovers of a restore that was killed (`.<name>.bf-restore-*`, `.<name>.bf-ready-*`,
//!   `.<name>.bf-old-*`) are dealt with at the start of the next restore of that path.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use rustix::fs::{
    AtFlags, CWD, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use serde_json::json;
use tokio::sync::mpsc;

use super::tarfmt::{Entry, Kind, ReadError, Reader};
use super::{Failure, archive_root};
use crate::log;

/// Counts of a restore, its JSON answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Extended attributes that could not be set (filesystem without support, no privilege).
    pub xattrs_skipped: u64,
    /// Paths without entries in the stream (absent when packed), left as they are.
    pub absent: Vec<String>,
}

impl RestoreStats {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "hardlinks": self.hardlinks,
            "bytes": self.bytes,
            "xattrs_skipped": self.xattrs_skipped,
            "absent": self.absent,
        })
    }
}

impl fmt::Display for RestoreStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files {}, dirs {}, symlinks {}, hardlinks {}, bytes {}, xattrs not set {}",
            self.files, self.dirs, self.symlinks, self.hardlinks, self.bytes, self.xattrs_skipped
        )?;
        if !self.absent.is_empty() {
            write!(f, ", absent (left as they are): {}", self.absent.join(" "))?;
        }
        Ok(())
    }
}

/// An `io::Read` over the request body's chunks (for the blocking restore thread).
#[derive(Debug)]
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
}

impl BodyReader {
    pub fn new(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> Self {
        Self { rx, current: Bytes::new() }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(err)) => return Err(err),
                Some(Ok(chunk)) => self.current = chunk,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Restores `paths` from the tar `stream` (see the module docs). Runs on a blocking thread.
pub fn restore(paths: &[String], stream: impl Read) -> Result<RestoreStats, Failure> {
    check_mounts(paths)?;
    let mut roots = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        roots.push(Root::new(i, path)?);
    }
    let mut unpack = Unpack {
        roots,
        as_root: rustix::process::geteuid().is_root(),
        stats: RestoreStats::default(),
        cache: None,
        buf: vec![0; 256 * 1024],
    };
    let result = unpack.run(stream);
    if result.is_err() {
        unpack.remove_staging();
    }
    result.map(|()| unpack.stats)
}

/// Refuses paths that are mount points or have one below them: a swap cannot move a mount.
fn check_mounts(paths: &[String]) -> Result<(), Failure> {
    let Ok(table) = std::fs::read("/proc/self/mountinfo") else { return Ok(()) };
    match mount_conflict(&table, paths) {
        None => Ok(()),
        Some((i, mount)) => Err(Failure::field(
            format!("paths[{i}]"),
            format!(
                "paths[{i}] {:?} cannot be restored: a filesystem is mounted at {mount} (a \
                 restore swaps the directory, and mounts cannot move with it)",
                paths[i]
            ),
        )),
    }
}

/// The first of `paths` that is a mount point or has one below it, according to `mountinfo`
/// (the text of `/proc/self/mountinfo`), with that mount point.
pub fn mount_conflict(mountinfo: &[u8], paths: &[String]) -> Option<(usize, String)> {
    for line in mountinfo.split(|&b| b == b'\n') {
        let Some(field) = line.split(|&b| b == b' ').nth(4) else { continue };
        let mount = unescape_mount(field);
        for (i, path) in paths.iter().enumerate() {
            let path = path.as_bytes();
            if mount == path || (mount.starts_with(path) && mount.get(path.len()) == Some(&b'/')) {
                return Some((i, String::from_utf8_lossy(&mount).into_owned()));
            }
        }
    }
    None
}

/// Decodes the `\ooo` escapes of a mountinfo field.
fn unescape_mount(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|digits| field[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        if let Some(digits) = octal {
            let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Metadata applied to an entry.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn of(entry: &Entry) -> Result<Self, Failure> {
        let id = |value: u64, what: &str| {
            u32::try_from(value).ok().filter(|&id| id != u32::MAX).ok_or_else(|| {
                Failure::entry(&entry.name, format!("{what} {value} is out of range"))
            })
        };
        Ok(Self {
            mode: entry.mode & 0o7777,
            uid: id(entry.uid, "uid")?,
            gid: id(entry.gid, "gid")?,
            mtime: entry.mtime,
            xattrs: entry.xattrs.clone(),
        })
    }

    fn times(&self) -> Timestamps {
        let time = Timespec { tv_sec: self.mtime, tv_nsec: 0 };
        Timestamps { last_access: time, last_modification: time }
    }
}

/// One path being restored.
struct Root {
    path: PathBuf,
    parent: PathBuf,
    name: Vec<u8>,
    /// The archive name's components (`home`, `dev`).
    components: Vec<Vec<u8>>,
    staging: Option<Staging>,
}

struct Staging {
    /// `.<name>.bf-restore-<random>` in the parent.
    name: OsString,
    parent_fd: OwnedFd,
    fd: OwnedFd,
    meta: Meta,
    /// Directories below, with their metadata, in stream order.
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
}

impl Root {
    /// Checks the path as it is now and cleans up leftovers of an interrupted restore.
    fn new(index: usize, path: &str) -> Result<Self, Failure> {
        let full = PathBuf::from(path);
        let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
            return Err(Failure::field(format!("paths[{index}]"), "a path needs a parent"));
        };
        let root = Self {
            parent: parent.to_path_buf(),
            name: name.as_bytes().to_vec(),
            components: archive_root(path).split(|&b| b == b'/').map(<[u8]>::to_vec).collect(),
            path: full.clone(),
            staging: None,
        };
        root.clean_leftovers()?;
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if !meta.is_dir() => Err(Failure::field(
                format!("paths[{index}]"),
                format!("paths[{index}] {path:?} exists and is not a directory"),
            )),
            Ok(_) => Ok(root),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(root),
            Err(err) => Err(Failure::io(format!("reading {path}"), &err)),
        }
    }

    fn leftover_prefix(&self, kind: &str) -> Vec<u8> {
        let mut prefix = b".".to_vec();
        prefix.extend_from_slice(&self.name);
        prefix.extend_from_slice(format!(".bf-{kind}-").as_bytes());
        prefix
    }

    /// Cleans up after a restore of this path that was killed or failed while swapping:
    /// - `.<name>.bf-old-*`: the old tree of a two-rename swap cut in the middle when the path is
    ///   missing (put back), else old contents (removed);
    /// - `.<name>.bf-ready-*`: a complete snapshot tree whose contents swap did not finish: the
    ///   swap is finished (the path gets that snapshot);
    /// - `.<name>.bf-restore-*`: an unfinished staging directory, or the old tree after an
    ///   exchange (removed).
    fn clean_leftovers(&self) -> Result<(), Failure> {
        let entries = match std::fs::read_dir(&self.parent) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(Failure::io(format!("listing {}", self.parent.display()), &err));
            }
        };
        let [old, ready, restore] =
            ["old", "ready", "restore"].map(|kind| self.leftover_prefix(kind));
        let mut names: Vec<OsString> = entries.flatten().map(|entry| entry.file_name()).collect();
        names.sort();
        for name in names {
            let bytes = name.as_bytes();
            let leftover = self.parent.join(&name);
            let missing = std::fs::symlink_metadata(&self.path).is_err();
            let (action, result) = if bytes.starts_with(&old) && missing {
                ("moved back to its path", std::fs::rename(&leftover, &self.path))
            } else if bytes.starts_with(&ready) {
                ("swapped into its path (finishing an interrupted swap)", self.finish_ready(&name))
            } else if bytes.starts_with(&restore) || bytes.starts_with(&old) {
                ("removed", remove_tree(&leftover))
            } else {
                continue;
            };
            result.map_err(|err| {
                Failure::io(format!("cleaning up the leftover {}", leftover.display()), &err)
            })?;
            log!("snapshot restore: leftover {} {action}", leftover.display());
        }
        Ok(())
    }

    /// Puts the complete tree `ready` (in the parent) in place of the path.
    fn finish_ready(&self, ready: &OsString) -> io::Result<()> {
        let parent_fd = rustix::fs::openat(
            CWD,
            &self.parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let name = self.name.as_slice();
        if std::fs::symlink_metadata(&self.path).is_err() {
            return Ok(rustix::fs::renameat(&parent_fd, ready, &parent_fd, name)?);
        }
        match rustix::fs::renameat_with(&parent_fd, ready, &parent_fd, name, RenameFlags::EXCHANGE)
        {
            // `ready` now holds the old tree.
            Ok(()) => remove_tree(&self.parent.join(ready)),
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
                swap_contents(&self.parent, parent_fd.as_fd(), name, ready)
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// Removes `path` (a tree, a file or a link) without following links; a directory that cannot be
/// emptied for want of permission (when not root) is made writable and tried again.
fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

/// A random suffix for staging names.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a path was swapped atomically, to undo it.
enum Swapped {
    /// Exchanged with its staging directory, which now holds the old tree.
    Exchanged { root: usize },
    /// Renamed: the old tree (if any) moved to `old`, the staging directory into place.
    Renamed { root: usize, old: Option<OsString> },
}

struct Unpack {
    roots: Vec<Root>,
    as_root: bool,
    stats: RestoreStats,
    /// The last directory resolved: root, components, descriptor.
    cache: Option<(usize, Vec<Vec<u8>>, Rc<OwnedFd>)>,
    buf: Vec<u8>,
}

impl Unpack {
    fn run(&mut self, stream: impl Read) -> Result<(), Failure> {
        let mut reader = Reader::new(stream);
        while let Some(entry) = reader.next_entry().map_err(stream_failure)? {
            self.entry(&entry, &mut reader)?;
        }
        self.cache = None;
        self.finish_dirs()?;
        for root in &self.roots {
            if root.staging.is_none() {
                self.stats.absent.push(root.path.display().to_string());
            }
        }
        self.swap()
    }

    /// The root and the components below it of archive name `name`.
    fn locate(&self, name: &[u8], dir: bool) -> Result<(usize, Vec<Vec<u8>>), Failure> {
        if name.starts_with(b"/") {
            return Err(Failure::entry(name, "absolute names are refused"));
        }
        let trimmed = if dir { name.strip_suffix(b"/").unwrap_or(name) } else { name };
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        if components.iter().any(|c| c.is_empty() || *c == b"." || *c == b".." || c.contains(&0)) {
            return Err(Failure::entry(name, "empty, \".\" and \"..\" components are refused"));
        }
        for (index, root) in self.roots.iter().enumerate() {
            let prefix = root.components.len();
            if components.len() >= prefix
                && components[..prefix]
                    .iter()
                    .zip(&root.components)
                    .all(|(a, b)| *a == b.as_slice())
            {
                let rest = components[prefix..].iter().map(|c| c.to_vec()).collect();
                return Ok((index, rest));
            }
        }
        Err(Failure::entry(name, "outside the paths being restored"))
    }

    fn entry(&mut self, entry: &Entry, reader: &mut Reader<impl Read>) -> Result<(), Failure> {
        let name = entry.name.as_slice();
        let (index, rel) = self.locate(name, entry.kind == Kind::Dir)?;
        let meta = Meta::of(entry)?;
        if rel.is_empty() {
            if entry.kind != Kind::Dir {
                return Err(Failure::entry(
                    name,
                    "the entry of a restored path must be a directory",
                ));
            }
            if self.roots[index].staging.is_some() {
                return Err(Failure::entry(name, "a duplicate entry"));
            }
            self.create_staging(index, meta)?;
            self.stats.dirs += 1;
            return Ok(());
        }
        if self.roots[index].staging.is_none() {
            return Err(Failure::entry(name, "comes before the directory of its path"));
        }
        let Some((last, parents)) = rel.split_last() else {
            return Err(Failure::entry(name, "an empty name"));
        };
        let dir = self.dir(index, parents, name)?;
        let exists = |err: Errno| {
            if err == Errno::EXIST {
                Failure::entry(name, "a duplicate entry")
            } else {
                Failure::io(format!("creating {}", display(name)), &err.into())
            }
        };
        match entry.kind {
            Kind::Dir => {
                rustix::fs::mkdirat(&*dir, last.as_slice(), Mode::from_raw_mode(0o700))
                    .map_err(exists)?;
                if let Some(staging) = self.roots[index].staging.as_mut() {
                    staging.dirs.push((rel.clone(), meta));
                }
                self.stats.dirs += 1;
            }
            Kind::File => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd =
                    rustix::fs::openat(&*dir, last.as_slice(), flags, Mode::from_raw_mode(0o600))
                        .map_err(exists)?;
                let mut file = std::fs::File::from(fd);
                loop {
                    let n = reader.read(&mut self.buf).map_err(stream_failure)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&self.buf[..n])
                        .map_err(|err| Failure::io(format!("writing {}", display(name)), &err))?;
                }
                self.set_meta(file.as_fd(), &meta, name)?;
                self.stats.files += 1;
                self.stats.bytes += entry.size;
            }
            Kind::Symlink => {
                rustix::fs::symlinkat(entry.link.as_slice(), &*dir, last.as_slice())
                    .map_err(exists)?;
                let context =
                    |err: Errno| Failure::io(format!("setting up {}", display(name)), &err.into());
                if self.as_root {
                    rustix::fs::chownat(
                        &*dir,
                        last.as_slice(),
                        Some(Uid::from_raw(meta.uid)),
                        Some(Gid::from_raw(meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(context)?;
                }
                rustix::fs::utimensat(
                    &*dir,
                    last.as_slice(),
                    &meta.times(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(context)?;
                // Symbolic links carry no xattrs a session uses (user.* is not allowed on them).
                self.stats.xattrs_skipped += meta.xattrs.len() as u64;
                self.stats.symlinks += 1;
            }
            Kind::HardLink => {
                let (target_index, target) = self.locate(&entry.link, false)?;
                if target_index != index || target.is_empty() {
                    return Err(Failure::entry(
                        name,
                        format!("a hard link to {} outside its path", display(&entry.link)),
                    ));
                }
                let Some((target_last, target_parents)) = target.split_last() else {
                    return Err(Failure::entry(name, "an empty hard link target"));
                };
                let not_earlier = || {
                    Failure::entry(
                        name,
                        format!(
                            "a hard link to {}, which is not a file earlier in the snapshot",
                            display(&entry.link)
                        ),
                    )
                };
                let target_dir =
                    self.dir(index, target_parents, name).map_err(|_| not_earlier())?;
                let st = rustix::fs::statat(
                    &*target_dir,
                    target_last.as_slice(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|_| not_earlier())?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(not_earlier());
                }
                let dir = self.dir(index, parents, name)?;
                rustix::fs::linkat(
                    &*target_dir,
                    target_last.as_slice(),
                    &*dir,
                    last.as_slice(),
                    AtFlags::empty(),
                )
                .map_err(exists)?;
                self.stats.hardlinks += 1;
            }
        }
        Ok(())
    }

    fn create_staging(&mut self, index: usize, meta: Meta) -> Result<(), Failure> {
        let root = &mut self.roots[index];
        let parent = root.parent.clone();
        std::fs::create_dir_all(&parent)
            .map_err(|err| Failure::io(format!("creating {}", parent.display()), &err))?;
        let context = |err: Errno| {
            Failure::io(
                format!("creating a staging directory in {}", parent.display()),
                &err.into(),
            )
        };
        let parent_fd = rustix::fs::openat(
            CWD,
            &parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(context)?;
        let mut name = b".".to_vec();
        name.extend_from_slice(&root.name);
        name.extend_from_slice(format!(".bf-restore-{}", random_suffix()).as_bytes());
        let name = OsString::from_vec(name);
        rustix::fs::mkdirat(&parent_fd, &name, Mode::from_raw_mode(0o700)).map_err(context)?;
        let fd = rustix::fs::openat(
            &parent_fd,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(context)?;
        root.staging = Some(Staging { name, parent_fd, fd, meta, dirs: Vec::new() });
        Ok(())
    }

    /// The directory `components` below root `index`'s staging directory, opened without
    /// following links; a 400 about `entry` when it is not a directory of the stream.
    fn dir(
        &mut self,
        index: usize,
        components: &[Vec<u8>],
        entry: &[u8],
    ) -> Result<Rc<OwnedFd>, Failure> {
        if let Some((cached_index, cached, fd)) = &self.cache
            && *cached_index == index
            && cached.as_slice() == components
        {
            return Ok(fd.clone());
        }
        let Some(staging) = self.roots[index].staging.as_ref() else {
            return Err(Failure::entry(entry, "comes before the directory of its path"));
        };
        let mut fd =
            staging.fd.try_clone().map_err(|err| Failure::io("duplicating a descriptor", &err))?;
        for component in components {
            fd = rustix::fs::openat(
                &fd,
                component.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| match err {
                Errno::NOENT | Errno::NOTDIR | Errno::LOOP => Failure::entry(
                    entry,
                    "its directory is not in the snapshot before it (or is not a directory)",
                ),
                err => {
                    Failure::io(format!("opening the directory of {}", display(entry)), &err.into())
                }
            })?;
        }
        let fd = Rc::new(fd);
        self.cache = Some((index, components.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Owner (as root), mode, xattrs and times, in that order (a chown clears setuid bits and
    /// file capabilities).
    fn set_meta(&mut self, fd: BorrowedFd<'_>, meta: &Meta, name: &[u8]) -> Result<(), Failure> {
        let context = |err: Errno| {
            Failure::io(format!("setting the metadata of {}", display(name)), &err.into())
        };
        if self.as_root {
            rustix::fs::fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
                .map_err(context)?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(context)?;
        for (key, value) in &meta.xattrs {
            if let Err(err) = rustix::fs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty())
            {
                if self.stats.xattrs_skipped == 0 {
                    log!(
                        "snapshot restore: cannot set xattr {} of {}: {err} (further ones are \
                         only counted)",
                        String::from_utf8_lossy(key),
                        display(name)
                    );
                }
                self.stats.xattrs_skipped += 1;
            }
        }
        rustix::fs::futimens(fd, &meta.times()).map_err(context)?;
        Ok(())
    }

    /// Applies the directories' metadata, last created first (children before their parents),
    /// then the roots'.
    fn finish_dirs(&mut self) -> Result<(), Failure> {
        for index in 0..self.roots.len() {
            let Some(staging) = self.roots[index].staging.as_mut() else { continue };
            let dirs = std::mem::take(&mut staging.dirs);
            let root_meta = staging.meta.clone();
            let root_fd = staging
                .fd
                .try_clone()
                .map_err(|err| Failure::io("duplicating a descriptor", &err))?;
            for (components, meta) in dirs.iter().rev() {
                let archive = self.archive_name(index, components);
                let Some((last, parents)) = components.split_last() else { continue };
                let parent = self.dir(index, parents, &archive)?;
                let fd = rustix::fs::openat(
                    &*parent,
                    last.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| {
                    Failure::io(format!("opening {}", display(&archive)), &err.into())
                })?;
                self.set_meta(fd.as_fd(), meta, &archive)?;
            }
            self.cache = None;
            let archive = self.archive_name(index, &[]);
            self.set_meta(root_fd.as_fd(), &root_meta, &archive)?;
        }
        Ok(())
    }

    /// The archive name of `components` below root `index`.
    fn archive_name(&self, index: usize, components: &[Vec<u8>]) -> Vec<u8> {
        let all: Vec<&[u8]> =
            self.roots[index].components.iter().chain(components).map(Vec::as_slice).collect();
        all.join(&b'/')
    }

    /// Swaps every staged path into place. First the atomic swaps (exchange or rename), undone
    /// if one fails; then the paths that cannot be renamed (an overlayfs directory of the image)
    /// get their contents swapped: their staging directories become `.<name>.bf-ready-*`
    /// (complete), whose entries replace the path's.
    fn swap(&mut self) -> Result<(), Failure> {
        let mut done = Vec::new();
        let mut contents = Vec::new();
        for (index, root) in self.roots.iter().enumerate() {
            let Some(staging) = root.staging.as_ref() else { continue };
            match swap_one(index, root, staging) {
                Ok(Some(swapped)) => done.push(swapped),
                Ok(None) => contents.push(index),
                Err(err) => {
                    self.undo(&done, &[]);
                    return Err(Failure::io(
                        format!(
                            "swapping {} into place (nothing was changed)",
                            root.path.display()
                        ),
                        &err,
                    ));
                }
            }
        }
        let mut readies: Vec<(usize, OsString)> = Vec::new();
        for &index in &contents {
            let root = &self.roots[index];
            let Some(staging) = root.staging.as_ref() else { continue };
            let ready = leftover_name(&root.name, "ready");
            let fd = &staging.parent_fd;
            if let Err(err) = rustix::fs::renameat(fd, &staging.name, fd, &ready) {
                self.undo(&done, &readies);
                return Err(Failure::io(
                    format!("swapping {} into place (nothing was changed)", root.path.display()),
                    &err.into(),
                ));
            }
            readies.push((index, ready));
        }
        self.remove_old(done);
        for (index, ready) in readies {
            let root = &mut self.roots[index];
            // From here on the tree is `ready`, which a failure leaves for the next restore.
            let Some(staging) = root.staging.take() else { continue };
            log!(
                "snapshot restore: {} cannot be renamed (a directory of the image on overlayfs): \
                 swapping its contents",
                root.path.display()
            );
            swap_contents(&root.parent, staging.parent_fd.as_fd(), &root.name, &ready).map_err(
                |err| {
                    Failure::io(
                        format!(
                            "swapping the contents of {} (cannot be renamed: a directory of the \
                             image on overlayfs); the complete snapshot tree stays in {} and the \
                             next restore of this path finishes the swap first",
                            root.path.display(),
                            root.parent.join(&ready).display()
                        ),
                        &err,
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Undoes atomic swaps, and renames of staging directories to `ready` names.
    fn undo(&self, done: &[Swapped], readies: &[(usize, OsString)]) {
        for (index, ready) in readies {
            let root = &self.roots[*index];
            let Some(staging) = root.staging.as_ref() else { continue };
            let fd = &staging.parent_fd;
            if let Err(err) = rustix::fs::renameat(fd, ready, fd, &staging.name) {
                log!("snapshot restore: cannot undo the swap of {}: {err}", root.path.display());
            }
        }
        for swapped in done.iter().rev() {
            let index = match swapped {
                Swapped::Exchanged { root } | Swapped::Renamed { root, .. } => *root,
            };
            let root = &self.roots[index];
            let Some(staging) = root.staging.as_ref() else { continue };
            let fd = &staging.parent_fd;
            let name = root.name.as_slice();
            let result = match swapped {
                Swapped::Exchanged { .. } => {
                    rustix::fs::renameat_with(fd, &staging.name, fd, name, RenameFlags::EXCHANGE)
                }
                Swapped::Renamed { old, .. } => rustix::fs::renameat(fd, name, fd, &staging.name)
                    .and_then(|()| match old {
                        Some(old) => rustix::fs::renameat(fd, old, fd, name),
                        None => Ok(()),
                    }),
            };
            if let Err(err) = result {
                log!("snapshot restore: cannot undo the swap of {}: {err}", root.path.display());
            }
        }
    }

    /// Removes the old trees of atomic swaps (logged, not failed: the restore is done; a
    /// leftover is removed by the next restore).
    fn remove_old(&mut self, swapped: Vec<Swapped>) {
        for swapped in swapped {
            let (index, name) = match swapped {
                Swapped::Exchanged { root } => {
                    (root, self.roots[root].staging.as_ref().map(|s| s.name.clone()))
                }
                Swapped::Renamed { root, old } => (root, old),
            };
            let root = &mut self.roots[index];
            if let Some(name) = name {
                let old = root.parent.join(name);
                if let Err(err) = remove_tree(&old) {
                    log!("snapshot restore: cannot remove the old tree {}: {err}", old.display());
                }
            }
            // Swapped in: nothing to remove on a later failure.
            root.staging = None;
        }
    }

    /// Removes every staging directory (after a failure).
    fn remove_staging(&mut self) {
        self.cache = None;
        for root in &mut self.roots {
            if let Some(staging) = root.staging.take() {
                let path = root.parent.join(&staging.name);
                drop(staging);
                if let Err(err) = remove_tree(&path) {
                    log!(
                        "snapshot restore: cannot remove the staging directory {}: {err}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Swaps root `index`'s staging directory with its path: an atomic exchange when the path
/// exists, else a rename; where the filesystem cannot exchange, two renames through
/// `.<name>.bf-old-<random>`. `None` when the path is a directory that cannot be renamed (EXDEV:
/// on overlayfs, a directory of a lower layer without `redirect_dir`).
fn swap_one(index: usize, root: &Root, staging: &Staging) -> io::Result<Option<Swapped>> {
    let fd = &staging.parent_fd;
    let name = root.name.as_slice();
    if std::fs::symlink_metadata(&root.path).is_err() {
        rustix::fs::renameat(fd, &staging.name, fd, name)?;
        return Ok(Some(Swapped::Renamed { root: index, old: None }));
    }
    match rustix::fs::renameat_with(fd, &staging.name, fd, name, RenameFlags::EXCHANGE) {
        Ok(()) => return Ok(Some(Swapped::Exchanged { root: index })),
        Err(Errno::XDEV) => return Ok(None),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        Err(err) => return Err(err.into()),
    }
    let old = leftover_name(name, "old");
    match rustix::fs::renameat(fd, name, fd, &old) {
        Ok(()) => {}
        Err(Errno::XDEV) => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    if let Err(err) = rustix::fs::renameat(fd, &staging.name, fd, name) {
        let _ = rustix::fs::renameat(fd, &old, fd, name);
        return Err(err.into());
    }
    Ok(Some(Swapped::Renamed { root: index, old: Some(old) }))
}

/// `.<name>.bf-<kind>-<random>`.
fn leftover_name(name: &[u8], kind: &str) -> OsString {
    let mut leftover = b".".to_vec();
    leftover.extend_from_slice(name);
    leftover.extend_from_slice(format!(".bf-{kind}-{}", random_suffix()).as_bytes());
    OsString::from_vec(leftover)
}

/// Replaces the entries of directory `name` with those of the complete tree `ready` (both in
/// `parent_fd`), then gives it `ready`'s owner, mode, xattrs and mtime, and removes `ready`: for
/// a directory that cannot be renamed. The old entries are moved to `.<name>.bf-old-<random>`
/// (those that cannot be moved either are removed in place), then removed. Not atomic.
pub fn swap_contents(
    parent: &Path,
    parent_fd: BorrowedFd<'_>,
    name: &[u8],
    ready: &OsStr,
) -> io::Result<()> {
    let open = |name: &OsStr| {
        rustix::fs::openat(
            parent_fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let root_fd = open(OsStr::from_bytes(name))?;
    let ready_fd = open(ready)?;
    // Before its entries move out (which changes its mtime).
    let meta = DirMeta::of(&ready_fd)?;
    let old = leftover_name(name, "old");
    rustix::fs::mkdirat(parent_fd, &old, Mode::from_raw_mode(0o700))?;
    let old_fd = open(&old)?;
    let path = parent.join(OsStr::from_bytes(name));
    for child in names(&root_fd)? {
        match rustix::fs::renameat(&root_fd, &child, &old_fd, &child) {
            Ok(()) => {}
            Err(Errno::XDEV) => remove_tree(&path.join(OsStr::from_bytes(child.to_bytes())))?,
            Err(err) => return Err(err.into()),
        }
    }
    for child in names(&ready_fd)? {
        rustix::fs::renameat(&ready_fd, &child, &root_fd, &child)?;
    }
    meta.apply(&root_fd)?;
    rustix::fs::unlinkat(parent_fd, ready, AtFlags::REMOVEDIR)?;
    drop(old_fd);
    if let Err(err) = remove_tree(&parent.join(&old)) {
        log!(
            "snapshot restore: cannot remove the old contents {}: {err}",
            parent.join(&old).display()
        );
    }
    Ok(())
}

/// The names in directory `fd`, without `.` and `..`.
fn names(fd: &OwnedFd) -> io::Result<Vec<std::ffi::CString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A directory's owner, mode, xattrs and mtime.
struct DirMeta {
    st: rustix::fs::Stat,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl DirMeta {
    fn of(fd: &OwnedFd) -> io::Result<Self> {
        Ok(Self { st: rustix::fs::fstat(fd)?, xattrs: super::pack::xattrs(fd) })
    }

    /// Gives directory `to` this owner (as root), mode, xattrs (removing others) and mtime.
    fn apply(&self, to: &OwnedFd) -> io::Result<()> {
        let st = &self.st;
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(to, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)))?;
        }
        rustix::fs::fchmod(to, Mode::from_raw_mode(st.st_mode & 0o7777))?;
        for (key, _) in super::pack::xattrs(to) {
            if !self.xattrs.iter().any(|(name, _)| *name == key) {
                let _ = rustix::fs::fremovexattr(to, key.as_slice());
            }
        }
        for (key, value) in &self.xattrs {
            let _ = rustix::fs::fsetxattr(to, key.as_slice(), value, XattrFlags::empty());
        }
        #[allow(clippy::useless_conversion)]
        let time = Timespec { tv_sec: i64::from(st.st_mtime), tv_nsec: 0 };
        rustix::fs::futimens(to, &Timestamps { last_access: time, last_modification: time })?;
        Ok(())
    }
}

/// A stream that cannot be read or is not a snapshot: 400.
fn stream_failure(err: ReadError) -> Failure {
    Failure::new(400, format!("the snapshot stream is invalid: {err}"))
}

/// An archive name for messages.
fn display(name: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(name).trim_start_matches('/'))
}
