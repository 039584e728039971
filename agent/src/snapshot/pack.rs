//! Packing: [`measure`] walks the paths and sums their content; [`write`] walks them again and
//! writes the deterministic tar ([`super::tarfmt`]) to any `io::Write`, in the agent through a
//! [`ChannelWriter`] that feeds the HTTP response in 64 KiB chunks (bounded memory).
//!
//! The walk never follows a symbolic link: it holds a directory descriptor per level and opens
//! every entry relative to it with `O_NOFOLLOW`, so a path swapped for a link while the walk runs
//! cannot lead it out of the tree. Order: depth first, a directory's entries in byte order of
//! their names, each directory before its contents; paths in the order given. It stays on the
//! filesystem of each path: a directory where another filesystem is mounted is packed without its
//! contents and counted in `other_fs`.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bytes::Bytes;
use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tokio::sync::mpsc;

use super::tarfmt::{self, Entry, Kind};
use super::{Failure, STALL_TIMEOUT, archive_root};

/// Size of the chunks sent to the response, and of the read buffer.
pub const CHUNK: usize = 64 * 1024;
/// Largest list of xattr names and largest value (the kernel's limits, `XATTR_LIST_MAX` and
/// `XATTR_SIZE_MAX`).
const XATTR_MAX: usize = 64 * 1024;
/// Not packed: the SELinux label belongs to the container it was made in (a label restored into
/// another container would make the files unreadable there).
pub(super) const SKIPPED_XATTRS: [&[u8]; 1] = [b"security.selinux"];

/// What [`measure`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// Content bytes: the sizes of the regular files (each inode once per path).
    pub bytes: u64,
}

/// Counts of a pack, logged at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Content bytes of the files.
    pub bytes: u64,
    /// Sockets, fifos and devices (not packed).
    pub skipped: u64,
    /// Directories where another filesystem is mounted (packed without their contents).
    pub other_fs: u64,
    /// Files whose size or mtime changed while they were read.
    pub changed: u64,
    /// Entries that disappeared (or changed type) between the listing and their packing.
    pub vanished: u64,
    /// Paths that do not exist (packed as absent: no entries).
    pub absent: Vec<String>,
}

impl fmt::Display for PackStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files {}, dirs {}, symlinks {}, hardlinks {}, bytes {}, skipped {} (sockets, fifos, \
             devices), other filesystems {}, changed during snapshot {}, vanished {}",
            self.files,
            self.dirs,
            self.symlinks,
            self.hardlinks,
            self.bytes,
            self.skipped,
            self.other_fs,
            self.changed,
            self.vanished
        )?;
        if !self.absent.is_empty() {
            write!(f, ", absent: {}", self.absent.join(" "))?;
        }
        Ok(())
    }
}

/// Walks `paths` and sums their content; 400 naming `paths[i]` for a path that is not a
/// directory (a missing one counts as empty).
pub fn measure(paths: &[String]) -> Result<Measure, Failure> {
    let mut sizer = Sizer::default();
    for (i, path) in paths.iter().enumerate() {
        check_root(path).map_err(|err| match err {
            RootError::NotDir(what) => {
                Failure::field(format!("paths[{i}]"), format!("paths[{i}] {path:?} {what}"))
            }
            RootError::Io(err) => Failure::io(format!("reading {path}"), &err),
        })?;
        sizer.links.clear();
        walk(path, &mut sizer).map_err(|err| Failure::io("measuring the paths", &err))?;
    }
    Ok(Measure { bytes: sizer.bytes })
}

/// Writes the tar of `paths` to `out` (the end blocks included, not flushed).
pub fn write(paths: &[String], out: &mut impl Write) -> io::Result<PackStats> {
    let mut packer = Packer {
        out,
        stats: PackStats::default(),
        links: HashMap::new(),
        header: Vec::new(),
        buf: vec![0; CHUNK],
    };
    for path in paths {
        match check_root(path) {
            Ok(true) => {}
            Ok(false) => {
                packer.stats.absent.push(path.clone());
                continue;
            }
            Err(RootError::NotDir(what)) => {
                return Err(io::Error::other(format!("{path} {what}")));
            }
            Err(RootError::Io(err)) => return Err(err),
        }
        // Hard links are recorded within a path only: paths may be on different filesystems.
        packer.links.clear();
        if !walk(path, &mut packer)? {
            packer.stats.absent.push(path.clone());
        }
    }
    packer.out.write_all(&tarfmt::END)?;
    Ok(packer.stats)
}

enum RootError {
    NotDir(&'static str),
    Io(io::Error),
}

/// Whether `path` exists (`false`: absent), and is a directory (not a symbolic link to one).
fn check_root(path: &str) -> Result<bool, RootError> {
    match rustix::fs::lstat(path) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Ok(true),
            FileType::Symlink => Err(RootError::NotDir("is a symbolic link, not a directory")),
            _ => Err(RootError::NotDir("is not a directory")),
        },
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(false),
        Err(err) => Err(RootError::Io(with_context(err.into(), "reading", path.as_bytes()))),
    }
}

/// What the walk does with each entry.
trait Visit {
    /// Called for the path itself and every entry below it: `dir` holds `name`; `archive` is the
    /// entry's archive name (directories end with `/`); `st` is its `lstat`. Returns the
    /// directory's descriptor to descend into it.
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        archive: &[u8],
        st: &Stat,
    ) -> io::Result<Option<OwnedFd>>;

    /// A directory on another filesystem was not descended into.
    fn other_fs(&mut self) {}

    /// An entry listed in its directory was gone when looked at.
    fn vanished(&mut self) {}
}

/// One directory being walked.
struct Level {
    fd: OwnedFd,
    names: std::vec::IntoIter<CString>,
    /// Length of the directory's archive name (with its `/`).
    len: usize,
}

/// Walks `path` (depth first, names in byte order) calling `visitor`; `false` when the path does
/// not exist.
fn walk(path: &str, visitor: &mut impl Visit) -> io::Result<bool> {
    let root = Path::new(path);
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return Err(io::Error::other(format!("{path} has no parent directory")));
    };
    let parent_fd =
        match rustix::fs::openat(CWD, parent, dir_flags() & !OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(false),
            Err(err) => {
                return Err(with_context(err.into(), "opening", parent.as_os_str().as_bytes()));
            }
        };
    let name = CString::new(name.as_bytes()).map_err(io::Error::other)?;
    let st = match rustix::fs::statat(&parent_fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(err) => return Err(with_context(err.into(), "reading", path.as_bytes())),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(io::Error::other(format!("{path} is not a directory")));
    }
    let mut archive = archive_root(path).to_vec();
    archive.push(b'/');
    let Some(fd) = visitor.visit(parent_fd.as_fd(), &name, &archive, &st)? else {
        return Ok(false);
    };
    let dev = st.st_dev;
    let names = list(&fd, &archive)?;
    let mut stack = vec![Level { fd, names, len: archive.len() }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            stack.pop();
            continue;
        };
        archive.truncate(level.len);
        archive.extend_from_slice(name.to_bytes());
        let st = match rustix::fs::statat(&level.fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                visitor.vanished();
                continue;
            }
            Err(err) => return Err(with_context(err.into(), "reading", &archive)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir {
            archive.push(b'/');
        }
        let Some(fd) = visitor.visit(level.fd.as_fd(), &name, &archive, &st)? else { continue };
        if st.st_dev != dev {
            visitor.other_fs();
            continue;
        }
        let names = match list(&fd, &archive) {
            Ok(names) => names,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                visitor.vanished();
                continue;
            }
            Err(err) => return Err(err),
        };
        stack.push(Level { fd, names, len: archive.len() });
    }
    Ok(true)
}

/// The names in directory `fd`, sorted by bytes, without `.` and `..`.
fn list(fd: &OwnedFd, archive: &[u8]) -> io::Result<std::vec::IntoIter<CString>> {
    let context = |err: Errno| with_context(err.into(), "listing", archive);
    let mut names = Vec::new();
    for entry in Dir::read_from(fd).map_err(context)? {
        let entry = entry.map_err(context)?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names.into_iter())
}

/// Flags of the directories the walk opens.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// `err` with what was done to which entry (`/` + its archive name).
fn with_context(err: io::Error, what: &str, archive: &[u8]) -> io::Error {
    let path = String::from_utf8_lossy(archive);
    let path = path.trim_start_matches('/');
    io::Error::new(err.kind(), format!("{what} /{path}: {err}"))
}

/// Opens directory `name` in `dir` to descend into it; `None` when it is gone or no longer a
/// directory.
fn open_dir(dir: BorrowedFd<'_>, name: &CStr, archive: &[u8]) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(err) => Err(with_context(err.into(), "opening", archive)),
    }
}

/// The measuring walk.
#[derive(Default)]
struct Sizer {
    bytes: u64,
    /// Inodes with several names already counted (within one path).
    links: HashSet<(u64, u64)>,
}

impl Visit for Sizer {
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        archive: &[u8],
        st: &Stat,
    ) -> io::Result<Option<OwnedFd>> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => open_dir(dir, name, archive),
            FileType::RegularFile => {
                #[allow(clippy::useless_conversion)]
                let key = (u64::from(st.st_dev), u64::from(st.st_ino));
                if st.st_nlink <= 1 || self.links.insert(key) {
                    self.bytes = self.bytes.saturating_add(u64::try_from(st.st_size).unwrap_or(0));
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// The writing walk.
struct Packer<'a, W> {
    out: &'a mut W,
    stats: PackStats,
    /// First archive name of each inode with several names (within one path).
    links: HashMap<(u64, u64), Vec<u8>>,
    header: Vec<u8>,
    buf: Vec<u8>,
}

impl<W: Write> Packer<'_, W> {
    fn emit(&mut self, entry: &Entry) -> io::Result<()> {
        self.header.clear();
        tarfmt::encode(entry, &mut self.header);
        self.out.write_all(&self.header)
    }

    fn file(&mut self, dir: BorrowedFd<'_>, name: &CStr, archive: &[u8]) -> io::Result<()> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => {
                self.stats.vanished += 1;
                return Ok(());
            }
            Err(err) => return Err(with_context(err.into(), "opening", archive)),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|err| with_context(err.into(), "reading", archive))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            self.stats.vanished += 1;
            return Ok(());
        }
        let mut entry = meta_entry(Kind::File, archive, &st);
        if st.st_nlink > 1 {
            #[allow(clippy::useless_conversion)]
            let key = (u64::from(st.st_dev), u64::from(st.st_ino));
            if let Some(first) = self.links.get(&key) {
                entry.kind = Kind::HardLink;
                entry.link = first.clone();
                self.emit(&entry)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert(key, archive.to_vec());
        }
        entry.xattrs = xattrs(&fd);
        entry.size = u64::try_from(st.st_size).unwrap_or(0);
        self.emit(&entry)?;
        let mut file = std::fs::File::from(fd);
        let mut left = entry.size;
        while left > 0 {
            let want = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(with_context(err, "reading", archive)),
            };
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        let mut changed = left > 0;
        // Shrunk while read: zeros up to the size of the header.
        while left > 0 {
            let n = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.buf[..n].fill(0);
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        self.out.write_all(&[0; tarfmt::BLOCK][..tarfmt::padding(entry.size)])?;
        if let Ok(after) = rustix::fs::fstat(file.as_fd())
            && (after.st_size != st.st_size || after.st_mtime != st.st_mtime)
        {
            changed = true;
        }
        if changed {
            self.stats.changed += 1;
        }
        self.stats.files += 1;
        self.stats.bytes += entry.size;
        Ok(())
    }
}

impl<W: Write> Visit for Packer<'_, W> {
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        archive: &[u8],
        st: &Stat,
    ) -> io::Result<Option<OwnedFd>> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let Some(fd) = open_dir(dir, name, archive)? else {
                    self.stats.vanished += 1;
                    return Ok(None);
                };
                let st = rustix::fs::fstat(&fd)
                    .map_err(|err| with_context(err.into(), "reading", archive))?;
                let mut entry = meta_entry(Kind::Dir, archive, &st);
                entry.xattrs = xattrs(&fd);
                self.emit(&entry)?;
                self.stats.dirs += 1;
                Ok(Some(fd))
            }
            FileType::RegularFile => {
                self.file(dir, name, archive)?;
                Ok(None)
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
                    Ok(target) => target,
                    Err(Errno::NOENT | Errno::INVAL) => {
                        self.stats.vanished += 1;
                        return Ok(None);
                    }
                    Err(err) => return Err(with_context(err.into(), "reading", archive)),
                };
                let mut entry = meta_entry(Kind::Symlink, archive, st);
                entry.link = target.into_bytes();
                self.emit(&entry)?;
                self.stats.symlinks += 1;
                Ok(None)
            }
            _ => {
                self.stats.skipped += 1;
                Ok(None)
            }
        }
    }

    fn other_fs(&mut self) {
        self.stats.other_fs += 1;
    }

    fn vanished(&mut self) {
        self.stats.vanished += 1;
    }
}

/// An entry with the metadata of `st`: mode, owner, mtime in whole seconds.
fn meta_entry(kind: Kind, archive: &[u8], st: &Stat) -> Entry {
    let mut entry = Entry::new(kind, archive.to_vec());
    entry.mode = st.st_mode & 0o7777;
    entry.uid = u64::from(st.st_uid);
    entry.gid = u64::from(st.st_gid);
    #[allow(clippy::useless_conversion)]
    let mtime = i64::from(st.st_mtime);
    entry.mtime = mtime;
    entry
}

/// The extended attributes of `fd`, sorted by name; those that cannot be read (no privilege,
/// removed meanwhile, unsupported) and [`SKIPPED_XATTRS`] are left out.
pub(super) fn xattrs(fd: &OwnedFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut list = vec![0u8; XATTR_MAX];
    let Ok(len) = rustix::fs::flistxattr(fd, &mut list[..]) else { return Vec::new() };
    let mut value = vec![0u8; XATTR_MAX];
    let mut found = Vec::new();
    for name in list[..len].split(|&b| b == 0).filter(|name| !name.is_empty()) {
        if SKIPPED_XATTRS.contains(&name) {
            continue;
        }
        if let Ok(n) = rustix::fs::fgetxattr(fd, name, &mut value[..]) {
            found.push((name.to_vec(), value[..n].to_vec()));
        }
    }
    found.sort();
    found
}

/// Sends `item` to the response, waiting at most [`STALL_TIMEOUT`] for room.
pub fn send(
    tx: &mpsc::Sender<Result<Bytes, io::Error>>,
    handle: &tokio::runtime::Handle,
    item: Result<Bytes, io::Error>,
) -> io::Result<()> {
    handle.block_on(async {
        match tokio::time::timeout(STALL_TIMEOUT, tx.send(item)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", STALL_TIMEOUT.as_secs()),
            )),
        }
    })
}

/// An `io::Write` that sends what is written to the response in [`CHUNK`]-byte chunks (from a
/// blocking thread).
#[derive(Debug)]
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    handle: tokio::runtime::Handle,
    buf: Vec<u8>,
    /// Bytes sent so far.
    pub sent: u64,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Result<Bytes, io::Error>>, handle: tokio::runtime::Handle) -> Self {
        Self { tx, handle, buf: Vec::with_capacity(CHUNK), sent: 0 }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let len = chunk.len() as u64;
        send(&self.tx, &self.handle, Ok(chunk))?;
        self.sent += len;
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}
