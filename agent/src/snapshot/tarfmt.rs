//! The tar format snapshots use: POSIX pax (ustar headers, `x` extended headers before an entry
//! when a value does not fit or an entry has xattrs), written and read by hand so that every byte
//! is under our control (the node chunks and hashes the stream: the same files must give the same
//! bytes) and the reader accepts exactly what the writer produces.
//!
//! Header blocks: name (100 bytes; a longer name goes into a pax `path` record), mode (the
//! permission bits, setuid/setgid/sticky included), uid, gid, size and mtime in octal, the
//! checksum, the type (`0` file, `1` hard link, `2` symlink, `5` directory), link name, `ustar\0`
//! `00`, empty user and group names, device numbers 0, empty prefix. Pax records (in this order,
//! only when needed): `path`, `linkpath`, `hdrcharset=BINARY` (a name that is not UTF-8), `size`,
//! `uid`, `gid`, `mtime` (seconds), then `SCHILY.xattr.<name>` sorted by name. The pax header
//! itself is named `././@PaxHeader`, mode 0644, owner 0, mtime 0. The archive ends with two zero
//! blocks and nothing after them.

use std::io::{self, Read};

/// The tar block size.
pub const BLOCK: usize = 512;

/// Largest pax extended header the reader accepts (xattr values are at most 64 KiB each).
pub const MAX_PAX_BYTES: u64 = 4 << 20;

/// The name of every pax extended header.
const PAX_NAME: &[u8] = b"././@PaxHeader";

/// Largest values of the octal fields: 7 digits (mode, uid, gid), 11 digits (size, mtime).
const MAX_OCTAL_7: u64 = 0o7_777_777;
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

/// The entry types of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        }
    }
}

/// One entry's header, pax records included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// The archive name (bytes, as on the filesystem); directories end with `/`.
    pub name: Vec<u8>,
    /// A symlink's target (as is), or the archive name of a hard link's first name; else empty.
    pub link: Vec<u8>,
    /// Permission bits (`0o7777`: setuid, setgid and sticky included).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time, whole seconds since the epoch (may be negative).
    pub mtime: i64,
    /// Content bytes that follow (regular files only).
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Record>,
}

impl Entry {
    /// An entry of `kind` named `name`, everything else zero.
    pub fn new(kind: Kind, name: Vec<u8>) -> Self {
        Self {
            kind,
            name,
            link: Vec::new(),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            xattrs: vec![],
        }
    }
}

/// The archive's end: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// Zero bytes that pad content of `size` bytes to a whole block.
pub fn padding(size: u64) -> usize {
    let rest = (size % BLOCK as u64) as usize;
    if rest == 0 { 0 } else { BLOCK - rest }
}

/// Appends the header blocks of `entry` to `out`: a pax extended header first when a value does
/// not fit the ustar header or the entry has xattrs, then the ustar header. Deterministic.
pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    let mut pax = Vec::new();
    let binary =
        std::str::from_utf8(&entry.name).is_err() || std::str::from_utf8(&entry.link).is_err();
    if entry.name.len() > 100 {
        pax_record(&mut pax, b"path", &entry.name);
    }
    if entry.link.len() > 100 {
        pax_record(&mut pax, b"linkpath", &entry.link);
    }
    if binary && !pax.is_empty() {
        pax_record(&mut pax, b"hdrcharset", b"BINARY");
    }
    if entry.size > MAX_OCTAL_11 {
        pax_record(&mut pax, b"size", entry.size.to_string().as_bytes());
    }
    if entry.uid > MAX_OCTAL_7 {
        pax_record(&mut pax, b"uid", entry.uid.to_string().as_bytes());
    }
    if entry.gid > MAX_OCTAL_7 {
        pax_record(&mut pax, b"gid", entry.gid.to_string().as_bytes());
    }
    let mtime_fits = u64::try_from(entry.mtime).is_ok_and(|mtime| mtime <= MAX_OCTAL_11);
    if !mtime_fits {
        pax_record(&mut pax, b"mtime", entry.mtime.to_string().as_bytes());
    }
    for (name, value) in &entry.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax_record(&mut pax, &key, value);
    }
    if !pax.is_empty() {
        let size = pax.len() as u64;
        out.extend_from_slice(&header(b'x', PAX_NAME, b"", 0o644, 0, 0, size, 0));
        out.extend_from_slice(&pax);
        out.resize(out.len() + padding(size), 0);
    }
    let mtime = if mtime_fits { entry.mtime.unsigned_abs() } else { 0 };
    out.extend_from_slice(&header(
        entry.kind.flag(),
        &entry.name,
        &entry.link,
        u64::from(entry.mode & 0o7777),
        if entry.uid > MAX_OCTAL_7 { 0 } else { entry.uid },
        if entry.gid > MAX_OCTAL_7 { 0 } else { entry.gid },
        if entry.size > MAX_OCTAL_11 { 0 } else { entry.size },
        mtime,
    ));
}

/// Appends one pax record, `<length> <key>=<value>\n`, where the length counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut length = base + 1;
    while base + length.to_string().len() != length {
        length = base + length.to_string().len();
    }
    out.extend_from_slice(length.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// One ustar header block; `name` and `link` are cut to 100 bytes (the full ones are in pax).
#[allow(clippy::too_many_arguments)]
fn header(
    flag: u8,
    name: &[u8],
    link: &[u8],
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let cut = |bytes: &[u8]| bytes.len().min(100);
    block[..cut(name)].copy_from_slice(&name[..cut(name)]);
    octal(&mut block[100..108], mode);
    octal(&mut block[108..116], uid);
    octal(&mut block[116..124], gid);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], mtime);
    block[156] = flag;
    block[157..157 + cut(link)].copy_from_slice(&link[..cut(link)]);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    octal(&mut block[329..337], 0);
    octal(&mut block[337..345], 0);
    let sum = checksum(&block);
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// Writes `value` as zero-padded octal digits filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = text.as_bytes();
    // Callers keep values in range; the low digits are kept otherwise.
    field[..digits].copy_from_slice(&text[text.len() - digits..]);
    field[digits] = 0;
}

/// The header checksum: the sum of its bytes, the checksum field counted as spaces.
fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &byte)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(byte) })
        .sum()
}

/// Why a stream is not a snapshot.
#[derive(Debug)]
pub enum ReadError {
    /// The stream is not in the format (a bad header, an unsupported entry type...).
    Format(String),
    /// The stream could not be read: it ended early, or the body failed.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Format(message) => f.write_str(message),
            ReadError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("the stream ended before the end of the archive (truncated)")
            }
            ReadError::Io(err) => write!(f, "reading the stream: {err}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

/// Reads a snapshot stream: [`Reader::next_entry`] gives each entry's header, [`Reader::read`]
/// its content. Strict: checksums are verified, only the four entry types and `x` pax headers
/// are accepted, the two zero blocks of the end are required and only zero bytes may follow.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    /// Content bytes of the current entry not read yet, and the padding after them.
    remaining: u64,
    pad: usize,
    done: bool,
    /// Bytes read from `inner`.
    pub offset: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, remaining: 0, pad: 0, done: false, offset: 0 }
    }

    /// The next entry, or `None` after the end of the archive (the rest of the stream must hold
    /// only zero bytes, and is read to its end). Content not read is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pax: Option<Vec<Record>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            self.fill(&mut block)?;
            if block.iter().all(|&byte| byte == 0) {
                if pax.is_some() {
                    return Err(ReadError::Format(format!(
                        "a pax header is not followed by an entry (at byte {})",
                        self.offset
                    )));
                }
                self.fill(&mut block)?;
                if block.iter().any(|&byte| byte != 0) {
                    return Err(ReadError::Format(format!(
                        "a single zero block in the middle of the archive (at byte {})",
                        self.offset - BLOCK as u64
                    )));
                }
                self.finish()?;
                return Ok(None);
            }
            let at = self.offset - BLOCK as u64;
            let raw = parse_header(&block).map_err(|message| {
                ReadError::Format(format!("invalid header at byte {at}: {message}"))
            })?;
            if raw.flag == b'x' {
                if pax.is_some() {
                    return Err(ReadError::Format(format!(
                        "two pax headers in a row at byte {at}"
                    )));
                }
                if raw.size > MAX_PAX_BYTES {
                    return Err(ReadError::Format(format!(
                        "pax header at byte {at} is {} bytes, more than {MAX_PAX_BYTES}",
                        raw.size
                    )));
                }
                let mut data = vec![0u8; usize::try_from(raw.size).unwrap_or(0)];
                self.fill(&mut data)?;
                let mut pad = vec![0u8; padding(raw.size)];
                self.fill(&mut pad)?;
                pax = Some(parse_pax(&data).map_err(|message| {
                    ReadError::Format(format!("invalid pax header at byte {at}: {message}"))
                })?);
                continue;
            }
            let kind = match raw.flag {
                b'0' | 0 => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'5' => Kind::Dir,
                other => {
                    return Err(ReadError::Format(format!(
                        "entry {} at byte {at} has type {:?}: only files, directories, symbolic \
                         and hard links are restored",
                        String::from_utf8_lossy(&raw.name).escape_debug(),
                        char::from(other)
                    )));
                }
            };
            let mut entry = Entry {
                kind,
                name: raw.name,
                link: raw.link,
                mode: raw.mode,
                uid: raw.uid,
                gid: raw.gid,
                mtime: raw.mtime,
                size: raw.size,
                xattrs: Vec::new(),
            };
            for (key, value) in pax.take().unwrap_or_default() {
                apply_pax(&mut entry, &key, value).map_err(|message| {
                    ReadError::Format(format!("invalid pax record at byte {at}: {message}"))
                })?;
            }
            if entry.kind != Kind::File && entry.size != 0 {
                return Err(ReadError::Format(format!(
                    "entry {} at byte {at} is not a file but has {} content bytes",
                    String::from_utf8_lossy(&entry.name).escape_debug(),
                    entry.size
                )));
            }
            self.remaining = entry.size;
            self.pad = padding(entry.size);
            return Ok(Some(entry));
        }
    }

    /// Reads content of the current entry; 0 at its end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    /// Skips what is left of the current entry's content and its padding.
    fn skip_rest(&mut self) -> Result<(), ReadError> {
        let mut buf = [0u8; 8192];
        while self.remaining > 0 {
            self.read(&mut buf)?;
        }
        while self.pad > 0 {
            let n = self.pad.min(buf.len());
            self.fill(&mut buf[..n])?;
            self.pad -= n;
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        self.inner.read_exact(buf)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// After the end blocks: reads the rest of the stream, which must be zero bytes.
    fn finish(&mut self) -> Result<(), ReadError> {
        self.done = true;
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err.into()),
            };
            if n == 0 {
                return Ok(());
            }
            if buf[..n].iter().any(|&byte| byte != 0) {
                return Err(ReadError::Format(format!(
                    "data after the end of the archive (at byte {})",
                    self.offset
                )));
            }
            self.offset += n as u64;
        }
    }
}

/// The fields of a ustar header block.
#[derive(Debug)]
struct RawHeader {
    flag: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
}

fn parse_header(block: &[u8; BLOCK]) -> Result<RawHeader, String> {
    let stored = parse_octal(&block[148..156]).map_err(|err| format!("checksum: {err}"))?;
    if stored != checksum(block) {
        return Err("wrong checksum".into());
    }
    if &block[257..263] != b"ustar\0" || &block[263..265] != b"00" {
        return Err("not a ustar/pax header".into());
    }
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())].to_vec()
    };
    let mut name = field(0..100);
    let prefix = field(345..500);
    if !prefix.is_empty() {
        let mut full = prefix;
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    let number = |what: &str, range: std::ops::Range<usize>| {
        parse_octal(&block[range]).map_err(|err| format!("{what}: {err}"))
    };
    Ok(RawHeader {
        flag: block[156],
        name,
        link: field(157..257),
        mode: u32::try_from(number("mode", 100..108)? & 0o7777).unwrap_or(0),
        uid: number("uid", 108..116)?,
        gid: number("gid", 116..124)?,
        size: number("size", 124..136)?,
        mtime: i64::try_from(number("mtime", 136..148)?).map_err(|_| "mtime out of range")?,
    })
}

/// An octal field: optional leading spaces, digits, then NUL or spaces to the end.
fn parse_octal(field: &[u8]) -> Result<u64, String> {
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(text).map_err(|_| "not octal digits".to_string())?;
    let text = text.trim_matches(' ');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| format!("{text:?} is not an octal number"))
}

/// A pax record or an xattr: key (name) and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Parses pax records `<length> <key>=<value>\n`.
fn parse_pax(mut data: &[u8]) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or("a record without a length")?;
        let length: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or("a record length is not a number")?;
        if length <= space + 1 || length > data.len() || data[length - 1] != b'\n' {
            return Err("a record's length does not match its content".into());
        }
        let record = &data[space + 1..length - 1];
        let equals = record.iter().position(|&b| b == b'=').ok_or("a record without '='")?;
        records.push((record[..equals].to_vec(), record[equals + 1..].to_vec()));
        data = &data[length..];
    }
    Ok(records)
}

fn apply_pax(entry: &mut Entry, key: &[u8], value: Vec<u8>) -> Result<(), String> {
    let number = |value: &[u8]| -> Result<i128, String> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<i128>().ok())
            .ok_or_else(|| format!("{} is not a whole number", String::from_utf8_lossy(key)))
    };
    let unsigned = |value: &[u8]| -> Result<u64, String> {
        u64::try_from(number(value)?)
            .map_err(|_| format!("{} is out of range", String::from_utf8_lossy(key)))
    };
    match key {
        b"path" => entry.name = value,
        b"linkpath" => entry.link = value,
        b"size" => entry.size = unsigned(&value)?,
        b"uid" => entry.uid = unsigned(&value)?,
        b"gid" => entry.gid = unsigned(&value)?,
        b"mtime" => {
            // Fractions are accepted (and dropped); the writer never produces them.
            let whole = value.split(|&b| b == b'.').next().unwrap_or_default();
            entry.mtime = i64::try_from(number(whole)?).map_err(|_| "mtime is out of range")?;
        }
        _ => {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if name.is_empty() {
                    return Err("an xattr record without a name".into());
                }
                entry.xattrs.push((name.to_vec(), value));
            }
            // Other records (hdrcharset, atime, comment...) carry nothing a restore uses.
        }
    }
    Ok(())
}
