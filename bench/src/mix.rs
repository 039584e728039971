//! The data the snapshot benchmark packs: a deterministic mix of files that looks like a
//! developer's persisted home directory (source trees, logs, build outputs, a cache of large
//! binaries), generated from a seed, and the "one percent of the files changed" edit of the
//! incremental snapshot.
//!
//! Everything comes from [`Prng`] (SplitMix64, integers only), so the same seed and size give
//! the same names, contents, modes and mtimes on every machine and every version of this crate's
//! dependencies.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// SplitMix64: tiny, fast, and its output is fixed forever (unlike `rand`'s `StdRng`).
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Shares of the content bytes, in percent: large incompressible blobs, medium files (logs and
/// build outputs), small source-like text files.
pub const BLOB_PERCENT: u64 = 40;
pub const MEDIUM_PERCENT: u64 = 25;
/// Large blobs, each an equal share of [`BLOB_PERCENT`].
pub const BLOBS: u64 = 4;
/// Medium files are 256 KiB to 2 MiB.
const MEDIUM_MIN: u64 = 256 * 1024;
const MEDIUM_MAX: u64 = 2 * 1024 * 1024;
/// Small files: a size class `c` in 0..9 is drawn, then a size in `100·2^c..100·2^(c+1)`:
/// 100 B to 51 KB, about 8.5 KB on average.
const SMALL_CLASSES: u64 = 9;
/// Small files per directory, about.
const FILES_PER_DIR: u64 = 30;
/// Deepest directory below the root.
const MAX_DEPTH: usize = 7;
/// Mtimes are spread over ~4 months from here (2023-11-14).
const EPOCH: i64 = 1_700_000_000;

/// What [`generate`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MixSummary {
    /// File content in bytes (the hard link counted once): what the snapshot's `max_bytes`
    /// counts and what MB/s is computed from.
    pub content_bytes: u64,
    pub small_files: u64,
    pub small_bytes: u64,
    pub medium_files: u64,
    pub medium_bytes: u64,
    pub blob_files: u64,
    pub blob_bytes: u64,
    pub empty_files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    pub max_depth: usize,
}

impl MixSummary {
    pub fn files(&self) -> u64 {
        self.small_files + self.medium_files + self.blob_files + self.empty_files
    }

    /// One line saying what the mix is.
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let pct = |b: u64| 100.0 * b as f64 / self.content_bytes.max(1) as f64;
        format!(
            "{:.1} MB of file content in {} files: {} small source-like text files ({:.1} MB, {:.0}%), \
             {} medium logs and build outputs ({:.1} MB, {:.0}%), {} large incompressible blobs \
             ({:.1} MB, {:.0}%), {} empty files; {} directories up to {} deep, {} symlinks \
             (relative, to directories, dangling), {} hard link",
            mb(self.content_bytes),
            self.files(),
            self.small_files,
            mb(self.small_bytes),
            pct(self.small_bytes),
            self.medium_files,
            mb(self.medium_bytes),
            pct(self.medium_bytes),
            self.blob_files,
            mb(self.blob_bytes),
            pct(self.blob_bytes),
            self.empty_files,
            self.dirs,
            self.max_depth,
            self.symlinks,
            self.hard_links,
        )
    }
}

const WORDS: &[&str] = &[
    "fn",
    "let",
    "mut",
    "self",
    "impl",
    "struct",
    "pub",
    "use",
    "match",
    "Some",
    "None",
    "Ok",
    "Err",
    "return",
    "if",
    "else",
    "for",
    "in",
    "while",
    "async",
    "await",
    "String",
    "Vec",
    "u64",
    "usize",
    "config",
    "request",
    "response",
    "session",
    "workspace",
    "snapshot",
    "error",
    "value",
    "result",
    "path",
    "buffer",
    "stream",
    "chunk",
    "token",
    "=>",
    "=",
    "==",
    "{",
    "}",
    "(",
    ")",
    ";",
    ".",
    "::",
    "&",
    "->",
    "//",
    "TODO:",
    "0",
    "1",
    "42",
    "map_err",
    "context",
    "into",
    "clone",
    "iter",
    "collect",
    "unwrap_or",
    "format!",
    "Result<()>",
    "anyhow",
    "tracing::info!",
    "the",
    "a",
    "of",
    "to",
    "is",
    "when",
    "and",
    "not",
    "every",
    "file",
    "this",
];

/// Source-like text: indented lines of code words and numbered identifiers (zstd -3 makes it
/// about 3 to 4 times smaller).
fn text(rng: &mut Prng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    while out.len() < size {
        for _ in 0..rng.below(4) {
            out.extend_from_slice(b"    ");
        }
        let words = rng.range(2, 12);
        for i in 0..words {
            if i > 0 {
                out.push(b' ');
            }
            if rng.chance(12) {
                let _ = write!(out, "{}_{}", rng.pick(WORDS), rng.below(10_000));
            } else {
                out.extend_from_slice(rng.pick(WORDS).as_bytes());
            }
        }
        out.push(b'\n');
    }
    out.truncate(size);
    out
}

const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
const ROUTES: &[&str] = &["/api/sessions", "/api/templates", "/api/health", "/w/ws-1", "/ssh"];

/// Log lines with timestamps, random request ids and durations.
fn log_text(rng: &mut Prng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 160);
    let mut t = EPOCH as u64 + rng.below(1_000_000);
    while out.len() < size {
        t += rng.below(3);
        let _ = writeln!(
            out,
            "{t}.{:03} {} request id={:016x} route={} status={} took={}ms",
            rng.below(1000),
            rng.pick(LEVELS),
            rng.next_u64(),
            rng.pick(ROUTES),
            if rng.chance(95) { 200 } else { 500 },
            rng.below(500),
        );
    }
    out.truncate(size);
    out
}

/// A build output: 4 KiB pages of random bytes, zeros, and repeated records.
fn object(rng: &mut Prng, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for page in out.chunks_mut(4096) {
        match rng.below(4) {
            0 => rng.fill(page),
            1 => {}
            _ => {
                let mut record = [0u8; 16];
                rng.fill(&mut record);
                for (i, b) in page.iter_mut().enumerate() {
                    *b = record[i % 16];
                }
            }
        }
    }
    out
}

fn random(rng: &mut Prng, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    rng.fill(&mut out);
    out
}

fn write_file(path: &Path, data: &[u8], mode: u32, mtime: i64) -> anyhow::Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data).with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.set_modified(time(mtime))?;
    Ok(())
}

fn time(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
}

fn set_dir_mtime(path: &Path, secs: i64) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|d| d.set_modified(time(secs)))
        .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Fills `root` (created; must not exist or be empty) with about `size` bytes of file content.
/// The result is exact: the shares are cut to the byte.
pub fn generate(root: &Path, size: u64, seed: u64) -> anyhow::Result<MixSummary> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut rng = Prng::new(seed);
    let mut s = MixSummary::default();
    // Directories in creation order with their depth (the root is depth 0).
    let mut dirs: Vec<(PathBuf, usize)> = Vec::new();
    let mkdir = |dirs: &mut Vec<(PathBuf, usize)>, path: PathBuf, depth: usize| {
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        dirs.push((path, depth));
        anyhow::Ok(dirs.len() - 1)
    };

    let blob_budget = size * BLOB_PERCENT / 100;
    let medium_budget = size * MEDIUM_PERCENT / 100;
    let small_budget = size - blob_budget - medium_budget;

    // A cache of large binaries.
    let cache = root.join(".cache");
    mkdir(&mut dirs, cache.clone(), 1)?;
    let blobs_dir = cache.join("blobs");
    mkdir(&mut dirs, blobs_dir.clone(), 2)?;
    for i in 0..BLOBS {
        let len = blob_budget / BLOBS + if i == 0 { blob_budget % BLOBS } else { 0 };
        let data = random(&mut rng, len as usize);
        let mtime = EPOCH + rng.below(10_000_000) as i64;
        write_file(&blobs_dir.join(format!("blob-{i}.bin")), &data, 0o644, mtime)?;
        s.blob_files += 1;
        s.blob_bytes += len;
    }

    // Projects: a source tree each, plus logs and build outputs.
    let projects = 3;
    let mut trees = Vec::new();
    for p in 0..projects {
        let project = root.join(format!("project-{p}"));
        mkdir(&mut dirs, project.clone(), 1)?;
        for sub in ["logs", "build"] {
            mkdir(&mut dirs, project.join(sub), 2)?;
        }
        trees.push(mkdir(&mut dirs, project.join("src"), 2)?);
        trees.push(mkdir(&mut dirs, project.join("docs"), 2)?);
    }

    let mut left = medium_budget;
    while left > 0 {
        let len = rng.range(MEDIUM_MIN, MEDIUM_MAX).min(left);
        left -= len;
        let p = rng.below(projects);
        let i = s.medium_files;
        let mtime = EPOCH + rng.below(10_000_000) as i64;
        let (path, data) = if rng.chance(50) {
            (root.join(format!("project-{p}/logs/app-{i}.log")), log_text(&mut rng, len as usize))
        } else {
            (root.join(format!("project-{p}/build/unit-{i}.o")), object(&mut rng, len as usize))
        };
        write_file(&path, &data, 0o644, mtime)?;
        s.medium_files += 1;
        s.medium_bytes += len;
    }

    // Small text files: directories grow as files are added (a new one every ~30 files, under
    // a random existing directory of a source tree), so the tree is nested and uneven.
    let mut in_tree: Vec<usize> = trees.clone();
    let mut left = small_budget;
    let mut names: Vec<PathBuf> = Vec::new();
    while left > 0 {
        if rng.below(FILES_PER_DIR) == 0 {
            let parent = *rng.pick(&in_tree);
            let (parent_path, depth) = dirs[parent].clone();
            if depth < MAX_DEPTH {
                let path = parent_path.join(format!("mod_{}", dirs.len()));
                in_tree.push(mkdir(&mut dirs, path, depth + 1)?);
            }
        }
        let dir = dirs[*rng.pick(&in_tree)].0.clone();
        let class = rng.below(SMALL_CLASSES);
        let len = rng.range(100 << class, (200 << class) - 1).min(left);
        left -= len;
        let ext = rng.pick(&["rs", "rs", "rs", "md", "toml", "sh", "txt"]);
        let path = dir.join(format!("file_{}.{ext}", s.small_files));
        let mode = if *ext == "sh" { 0o755 } else { 0o644 };
        let mtime = EPOCH + rng.below(10_000_000) as i64;
        write_file(&path, &text(&mut rng, len as usize), mode, mtime)?;
        s.small_files += 1;
        s.small_bytes += len;
        names.push(path.clone());
        // Symlinks: to a sibling file, to the parent directory, or to nothing.
        if rng.chance(2) {
            let link = dir.join(format!("link_{}", s.symlinks));
            let target = match rng.below(3) {
                0 => PathBuf::from(path.file_name().unwrap_or_default()),
                1 => PathBuf::from(".."),
                _ => PathBuf::from("missing/target.rs"),
            };
            symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
            let t =
                rustix::fs::Timespec { tv_sec: EPOCH + rng.below(10_000_000) as i64, tv_nsec: 0 };
            let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &link,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("setting the mtime of {}", link.display()))?;
            s.symlinks += 1;
        }
    }

    // Empty files, and a hard link (its content is counted once).
    for i in 0..3 {
        let path = dirs[trees[i % trees.len()]].0.join(".keep");
        write_file(&path, b"", 0o644, EPOCH)?;
        s.empty_files += 1;
    }
    if let Some(first) = names.first() {
        let link = root.join("README.link");
        fs::hard_link(first, &link).with_context(|| format!("hard linking {}", link.display()))?;
        s.hard_links += 1;
    }

    // Directory mtimes last, deepest first (creating entries moves a directory's mtime).
    let mut order: Vec<&(PathBuf, usize)> = dirs.iter().collect();
    order.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
    for (i, (path, _)) in order.iter().enumerate() {
        set_dir_mtime(path, EPOCH + 20_000_000 + i as i64)?;
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    set_dir_mtime(root, EPOCH + 30_000_000)?;

    s.dirs = dirs.len() as u64 + 1;
    s.max_depth = dirs.iter().map(|(_, d)| *d).max().unwrap_or(0);
    s.content_bytes = content_bytes(root)?;
    Ok(s)
}

/// Bytes of file content under `root`, each inode once (what the agent's `max_bytes` counts).
pub fn content_bytes(root: &Path) -> anyhow::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// The files an edit changed, with what they held before, so it can be undone.
#[derive(Debug)]
pub struct Edit {
    changed: Vec<(PathBuf, Vec<u8>, std::time::SystemTime)>,
}

impl Edit {
    pub fn files(&self) -> usize {
        self.changed.len()
    }

    /// Puts the files back as they were (content and mtime; the directories' mtimes did not
    /// move, since the files were rewritten in place).
    pub fn undo(self) -> anyhow::Result<()> {
        for (path, data, mtime) in self.changed {
            let mut f = fs::OpenOptions::new().write(true).truncate(true).open(&path)?;
            f.write_all(&data)?;
            f.set_modified(mtime)?;
        }
        Ok(())
    }
}

/// Changes `percent` of the regular files under `root` (at least one), picked with `seed`: a
/// line's worth of bytes in the middle is replaced and a line appended, as an editor would,
/// and the mtime moves.
pub fn edit(root: &Path, percent: u64, seed: u64) -> anyhow::Result<Edit> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?; // of the entry itself: links are not followed
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && meta.nlink() == 1 && meta.len() > 0 {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut rng = Prng::new(seed);
    let want = (files.len() as u64 * percent).div_ceil(100).max(1);
    let mut picked = HashSet::new();
    while (picked.len() as u64) < want.min(files.len() as u64) {
        picked.insert(rng.below(files.len() as u64) as usize);
    }
    let mut picked: Vec<usize> = picked.into_iter().collect();
    picked.sort_unstable();
    let mut changed = Vec::new();
    for i in picked {
        let path = &files[i];
        let before = fs::read(path)?;
        let mtime = fs::metadata(path)?.modified()?;
        let mut after = before.clone();
        let mid = after.len() / 2;
        let line = text(&mut rng, 64);
        let end = (mid + line.len()).min(after.len());
        after.splice(mid..end, line.iter().copied());
        after.extend_from_slice(b"// edited by the benchmark\n");
        let mut f = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
        f.write_all(&after)?;
        f.set_modified(time(EPOCH + 40_000_000 + rng.below(1000) as i64))?;
        changed.push((path.clone(), before, mtime));
    }
    Ok(Edit { changed })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::tree;

    #[test]
    fn the_mix_is_deterministic_and_of_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3_000_000;
        let a = generate(&dir.path().join("a"), size, 7).unwrap();
        let b = generate(&dir.path().join("b"), size, 7).unwrap();
        assert_eq!(a, b);
        // The shares are cut to the byte.
        assert_eq!(a.content_bytes, size, "{a:?}");
        assert_eq!(a.blob_bytes, size * BLOB_PERCENT / 100);
        assert_eq!(a.medium_bytes, size * MEDIUM_PERCENT / 100);
        assert!(a.small_files > 100 && a.symlinks > 0 && a.hard_links == 1, "{a:?}");
        assert!(a.max_depth >= 3, "nested directories: {a:?}");
        let la = tree::listing(&dir.path().join("a")).unwrap();
        let lb = tree::listing(&dir.path().join("b")).unwrap();
        assert_eq!(la, lb, "same seed, same names, modes, mtimes and contents");
        assert!(la.iter().any(|e| e.hardlink_to.is_some()));

        let c = generate(&dir.path().join("c"), size, 8).unwrap();
        assert_eq!(c.content_bytes, size);
        assert_ne!(tree::listing(&dir.path().join("c")).unwrap(), la, "another seed differs");
    }

    #[test]
    fn an_edit_changes_about_one_percent_of_the_files_and_undo_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        let s = generate(&root, 2_000_000, 1).unwrap();
        let before = tree::listing(&root).unwrap();
        let e = edit(&root, 1, 99).unwrap();
        let regular = s.files() - s.empty_files - 1; // the hard-linked inode is left alone
        assert_eq!(e.files() as u64, regular.div_ceil(100));
        let during = tree::listing(&root).unwrap();
        let differ = before.iter().zip(&during).filter(|(x, y)| x != y).count();
        assert_eq!(differ, e.files());
        e.undo().unwrap();
        assert_eq!(tree::listing(&root).unwrap(), before);
    }

    #[test]
    fn the_prng_is_fixed() {
        // SplitMix64's reference output for seed 0: a change here changes every mix.
        let mut r = Prng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut buf = [0u8; 11];
        r.fill(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
