//! What a restored tree is compared on: every entry's name, type, mode, owner, mtime, size,
//! content hash, link target and hard-link sharing, in a fixed order.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// One entry, its path relative to the root ("" for the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    pub path: PathBuf,
    /// `d`, `f`, `l` or `?`.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub link: Option<PathBuf>,
    /// For a later name of an inode seen before: the first name.
    pub hardlink_to: Option<PathBuf>,
}

/// The entries under `root`, depth first, each directory's entries in byte order of their
/// names; symbolic links are not followed.
pub fn listing(root: &Path) -> anyhow::Result<Vec<EntryFacts>> {
    let mut out = Vec::new();
    let mut inodes = HashMap::new();
    walk(root, PathBuf::new(), &mut inodes, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Path,
    rel: PathBuf,
    inodes: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<EntryFacts>,
) -> anyhow::Result<()> {
    let path = root.join(&rel);
    let meta = fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
    let ft = meta.file_type();
    let mut facts = EntryFacts {
        path: rel.clone(),
        kind: '?',
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        size: 0,
        sha256: None,
        link: None,
        hardlink_to: None,
    };
    if ft.is_dir() {
        facts.kind = 'd';
        out.push(facts);
        let mut names: Vec<_> = fs::read_dir(&path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            walk(root, rel.join(name), inodes, out)?;
        }
        return Ok(());
    }
    if ft.is_symlink() {
        facts.kind = 'l';
        facts.link = Some(fs::read_link(&path)?);
    } else if ft.is_file() {
        facts.kind = 'f';
        facts.size = meta.len();
        if meta.nlink() > 1 {
            let first = inodes.entry((meta.dev(), meta.ino())).or_insert_with(|| rel.clone());
            if *first != rel {
                facts.hardlink_to = Some(first.clone());
            }
        }
        facts.sha256 = Some(hash_file(&path)?);
    }
    out.push(facts);
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Fails naming the first entry that differs.
pub fn same(expected: &[EntryFacts], got: &[EntryFacts], what: &str) -> anyhow::Result<()> {
    for (e, g) in expected.iter().zip(got) {
        if e != g {
            anyhow::bail!(
                "{what}: {} differs:\n  expected {e:?}\n  got      {g:?}",
                e.path.display()
            );
        }
    }
    if expected.len() != got.len() {
        anyhow::bail!("{what}: {} entries, expected {}", got.len(), expected.len());
    }
    Ok(())
}
