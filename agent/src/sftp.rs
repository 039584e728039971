//! `burstflare-agent sftp-server`: an SFTP (version 3) server on stdin/stdout, started by the SSH
//! server for the `sftp` subsystem like any exec: as the session user, in the home directory,
//! with the session's umask. So `sftp`, `scp` (SFTP mode, OpenSSH 9's default) and file managers
//! see exactly the permissions a shell would.
//!
//! Relative paths are relative to the working directory (the home directory). Files are read
//! and written with `pread`/`pwrite`, so OpenSSH's pipelined requests need no seeking.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use russh_sftp::protocol::{
    Attrs, Data, File as Entry, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
    Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::user::{GROUP, PASSWD, parse_group, parse_passwd};

/// Largest read answered at once (OpenSSH asks for 32–256 KiB).
const MAX_READ: u32 = 256 * 1024;
/// Directory entries per `SSH_FXP_NAME` answer.
const ENTRIES_PER_READDIR: usize = 100;

/// Serves SFTP on stdin/stdout until the client closes stdin; returns the exit code.
pub fn run() -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("burstflare-agent sftp-server: cannot start the runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("burstflare-agent sftp-server: {err}");
            1
        }
    }
}

async fn serve() -> io::Result<()> {
    // Non-blocking pipes, not tokio's stdin/stdout (which go through blocking threads).
    let stdin = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    let reader = pipe::Receiver::from_owned_fd(stdin)
        .map_err(|err| io::Error::new(err.kind(), format!("stdin must be a pipe: {err}")))?;
    let writer = pipe::Sender::from_owned_fd(stdout)
        .map_err(|err| io::Error::new(err.kind(), format!("stdout must be a pipe: {err}")))?;
    let (done, finished) = oneshot::channel();
    let stream = EndSignal { inner: tokio::io::join(reader, writer), _done: done };
    // russh-sftp serves on a task of its own and drops the stream when the client is done.
    russh_sftp::server::run(stream, Sftp::new()).await;
    let _ = finished.await;
    Ok(())
}

/// A stream that tells, by being dropped, that the SFTP loop has ended.
struct EndSignal<S> {
    inner: S,
    _done: oneshot::Sender<()>,
}

impl<S: AsyncRead + Unpin> AsyncRead for EndSignal<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EndSignal<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An open handle.
enum Open {
    File(File),
    /// A directory listing, read at `opendir`, handed out in chunks.
    Dir(Vec<Entry>),
}

/// The SFTP request handler: the real filesystem with the process's own permissions.
pub struct Sftp {
    handles: HashMap<String, Open>,
    next_handle: u64,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Default for Sftp {
    fn default() -> Self {
        Self::new()
    }
}

impl Sftp {
    /// A handler with the user and group names of `/etc/passwd` and `/etc/group` (for `ls -l`).
    pub fn new() -> Self {
        let passwd = fs::read_to_string(PASSWD).unwrap_or_default();
        let group = fs::read_to_string(GROUP).unwrap_or_default();
        Self {
            handles: HashMap::new(),
            next_handle: 0,
            users: parse_passwd(&passwd).into_iter().map(|entry| (entry.uid, entry.name)).collect(),
            groups: parse_group(&group).into_iter().map(|entry| (entry.gid, entry.name)).collect(),
        }
    }

    fn insert(&mut self, open: Open) -> String {
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn file(&self, handle: &str) -> Result<&File, StatusReply> {
        match self.handles.get(handle) {
            Some(Open::File(file)) => Ok(file),
            _ => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    fn entry(&self, name: String, meta: &Metadata) -> Entry {
        let attrs = attributes(meta);
        let user = self.users.get(&meta.uid()).cloned().unwrap_or_else(|| meta.uid().to_string());
        let group = self.groups.get(&meta.gid()).cloned().unwrap_or_else(|| meta.gid().to_string());
        let longname = format!(
            "{} {:>4} {user:<8} {group:<8} {:>10} {} {name}",
            mode_string(meta.mode()),
            meta.nlink(),
            meta.size(),
            ls_date(meta.mtime(), crate::now_ms() / 1000),
        );
        Entry { filename: name, longname, attrs }
    }
}

/// `path` as sent by the client: empty means the working directory.
fn local(path: &str) -> PathBuf {
    if path.is_empty() { PathBuf::from(".") } else { PathBuf::from(path) }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".to_string(),
        language_tag: "en-US".to_string(),
    }
}

/// An I/O error as an SFTP status, with the system's message.
fn failure(err: io::Error) -> StatusReply {
    let code = match err.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(err.to_string())
}

/// The attributes of `meta`, with the exact file type bits (russh-sftp's own conversion turns
/// symlinks, devices and sockets into regular files).
pub fn attributes(meta: &Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(meta.size()),
        uid: Some(meta.uid()),
        user: None,
        gid: Some(meta.gid()),
        group: None,
        permissions: Some(meta.mode()),
        atime: Some(u32::try_from(meta.atime()).unwrap_or(0)),
        mtime: Some(u32::try_from(meta.mtime()).unwrap_or(0)),
    }
}

/// `ls -l`'s mode column: `drwxr-xr-x`, with setuid/setgid/sticky.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: bool, set: bool, lower: char, upper: char| match (exec, set) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// `ls -l`'s date column (UTC): `Mar  4 15:02` for the last six months, `Mar  4  2023` otherwise.
pub fn ls_date(mtime: i64, now: u64) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = mtime.div_euclid(86_400);
    let seconds = mtime.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name =
        usize::try_from(month - 1).ok().and_then(|m| MONTHS.get(m)).copied().unwrap_or("???");
    let recent = i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(mtime) < 182 * 86_400;
    if recent {
        format!("{name} {day:>2} {:02}:{:02}", seconds / 3600, seconds % 3600 / 60)
    } else {
        format!("{name} {day:>2} {year:>5}")
    }
}

/// Lexical normalisation of an absolute path (`..` and `.` removed), for paths that do not exist.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

/// Applies `attrs` (size, permissions, owner, times) to an open file or a path (following
/// symlinks, as OpenSSH's sftp-server does for setstat).
fn set_attributes(target: Target<'_>, attrs: &FileAttributes) -> io::Result<()> {
    if let Some(size) = attrs.size {
        match target {
            Target::File(file) => file.set_len(size)?,
            Target::Path(path) => OpenOptions::new().write(true).open(path)?.set_len(size)?,
        }
    }
    if let Some(mode) = attrs.permissions {
        let permissions = fs::Permissions::from_mode(mode & 0o7777);
        match target {
            Target::File(file) => file.set_permissions(permissions)?,
            Target::Path(path) => fs::set_permissions(path, permissions)?,
        }
    }
    if attrs.uid.is_some() || attrs.gid.is_some() {
        match target {
            Target::File(file) => std::os::unix::fs::fchown(file, attrs.uid, attrs.gid)?,
            Target::Path(path) => std::os::unix::fs::chown(path, attrs.uid, attrs.gid)?,
        }
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let timestamp =
            |seconds: u32| rustix::fs::Timespec { tv_sec: i64::from(seconds), tv_nsec: 0 };
        let times = rustix::fs::Timestamps {
            last_access: timestamp(atime),
            last_modification: timestamp(mtime),
        };
        match target {
            Target::File(file) => rustix::fs::futimens(file, &times)?,
            Target::Path(path) => {
                rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty())?;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Target<'a> {
    File(&'a File),
    Path(&'a Path),
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut options: OpenOptions = pflags.into();
        // As sshd's sftp-server: 0666 unless the client asks for less; the umask applies.
        options.mode(attrs.permissions.map_or(0o666, |mode| mode & 0o7777));
        let file = options.open(local(&filename)).map_err(failure)?;
        Ok(Handle { id, handle: self.insert(Open::File(file)) })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        let mut data = vec![0u8; len.min(MAX_READ) as usize];
        let n = file.read_at(&mut data, offset).map_err(failure)?;
        if n == 0 && !data.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.file(&handle)?.write_all_at(&data, offset).map_err(failure)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::symlink_metadata(local(&path)).map_err(failure)?;
        Ok(Attrs { id, attrs: attributes(&meta) })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self.file(&handle)?.metadata().map_err(failure)?;
        Ok(Attrs { id, attrs: attributes(&meta) })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::metadata(local(&path)).map_err(failure)?;
        Ok(Attrs { id, attrs: attributes(&meta) })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attributes(Target::Path(&local(&path)), &attrs).map_err(failure)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attributes(Target::File(self.file(&handle)?), &attrs).map_err(failure)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let dir = local(&path);
        let mut entries = Vec::new();
        for name in [".", ".."] {
            if let Ok(meta) = fs::metadata(dir.join(name)) {
                entries.push(self.entry(name.to_string(), &meta));
            }
        }
        for item in fs::read_dir(&dir).map_err(failure)? {
            let item = item.map_err(failure)?;
            // Not followed: a symlink is listed as a symlink.
            if let Ok(meta) = fs::symlink_metadata(item.path()) {
                entries.push(self.entry(item.file_name().to_string_lossy().into_owned(), &meta));
            }
        }
        // Handed out from the end: reverse so that the listing keeps its order.
        entries.reverse();
        Ok(Handle { id, handle: self.insert(Open::Dir(entries)) })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(entries)) if !entries.is_empty() => {
                let keep = entries.len().saturating_sub(ENTRIES_PER_READDIR);
                let files = entries.drain(keep..).rev().collect();
                Ok(Name { id, files })
            }
            Some(Open::Dir(_)) => Err(StatusCode::Eof.into()),
            _ => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        fs::remove_file(local(&filename)).map_err(failure)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // mkdir(2) with the mode: the umask applies, as with sshd.
        fs::DirBuilder::new()
            .mode(attrs.permissions.map_or(0o777, |mode| mode & 0o7777))
            .create(local(&path))
            .map_err(failure)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        fs::remove_dir(local(&path)).map_err(failure)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = local(&path);
        let real = match fs::canonicalize(&path) {
            Ok(real) => real,
            Err(_) => normalize(&std::env::current_dir().map_err(failure)?.join(path)),
        };
        Ok(Name { id, files: vec![Entry::dummy(real.to_string_lossy())] })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let (from, to) = (local(&oldpath), local(&newpath));
        // SFTP v3: renaming onto an existing name is an error (rename(2) would replace it).
        if fs::symlink_metadata(&to).is_ok() {
            return Err(StatusCode::Failure.with_message(format!("{newpath}: already exists")));
        }
        fs::rename(from, to).map_err(failure)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = fs::read_link(local(&path)).map_err(failure)?;
        Ok(Name { id, files: vec![Entry::dummy(target.to_string_lossy())] })
    }

    /// OpenSSH sends the target first and the link's path second, the reverse of the draft whose
    /// names russh-sftp uses: `linkpath` is the target here.
    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        std::os::unix::fs::symlink(&linkpath, local(&targetpath)).map_err(failure)?;
        Ok(ok(id))
    }
}
