//! Runs the fuzz seed corpus (`fuzz/corpus/*/`) through the fuzzed functions on stable, so CI
//! exercises it without cargo-fuzz. Seeds named `valid-*` must be accepted and `invalid-*`
//! refused; any other file (e.g. one added by a fuzzing run) must merely not panic.
//!
//! `BURSTFLARE_WRITE_FUZZ_SEEDS=1 cargo test -p burstflare-sdk --test fuzz_corpus` rewrites the
//! generated bundle seeds in `fuzz/corpus/bundle/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use sdk::bundle::{Limits, Manifest, inspect, pack};
use tar::{EntryType, Header};

/// `fuzz/corpus/<target>/`.
fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// The files of a corpus directory, sorted.
fn seeds(target: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What a seed's name says about it: Some(true) for `valid-*`, Some(false) for `invalid-*`.
fn expectation(path: &Path) -> Option<bool> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("valid-") {
        Some(true)
    } else if name.starts_with("invalid-") {
        Some(false)
    } else {
        None
    }
}

#[test]
fn manifest_corpus() {
    let files = seeds("manifest");
    assert!(files.len() >= 3, "the manifest corpus is missing");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let result = Manifest::parse(&text);
        let all = Manifest::parse_all(&text);
        assert_eq!(
            result.as_ref().err(),
            all.as_ref().err().and_then(|v| v.first()),
            "{}",
            path.display()
        );
        match expectation(&path) {
            Some(true) => assert!(result.is_ok(), "{}: {result:?}", path.display()),
            Some(false) => assert!(result.is_err(), "{}", path.display()),
            None => {}
        }
    }
}

#[test]
fn bundle_corpus() {
    if std::env::var_os("BURSTFLARE_WRITE_FUZZ_SEEDS").is_some() {
        write_bundle_seeds();
    }
    let files = seeds("bundle");
    assert!(files.len() >= 3, "the bundle corpus is missing");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let result = inspect(&bytes, &Limits::default());
        match expectation(&path) {
            Some(true) => assert!(result.is_ok(), "{}: {:?}", path.display(), result.err()),
            Some(false) => assert!(result.is_err(), "{}", path.display()),
            None => {}
        }
    }
}

/// A bundle holding a valid manifest and Dockerfile plus one raw entry.
fn with_raw_entry(name: &[u8], kind: EntryType, link: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in
        [("burstflare.toml", "schema = 1\nname = \"seed\"\n"), ("Dockerfile", "FROM x\n")]
    {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    zstd::encode_all(b.into_inner().unwrap().as_slice(), 3).unwrap()
}

/// Writes the generated bundle seeds.
fn write_bundle_seeds() {
    let dir = corpus("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let devbox = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox");
    let packed = pack(&devbox, &Limits::default()).unwrap();
    std::fs::write(dir.join("valid-devbox.tar.zst"), &packed.bytes).unwrap();
    let seeds: [(&str, Vec<u8>); 4] = [
        ("invalid-traversal.tar.zst", with_raw_entry(b"../evil", EntryType::Regular, b"")),
        ("invalid-symlink-escape.tar.zst", with_raw_entry(b"up", EntryType::Symlink, b"../../..")),
        ("invalid-fifo.tar.zst", with_raw_entry(b"pipe", EntryType::Fifo, b"")),
        ("valid-internal-link.tar.zst", with_raw_entry(b"df", EntryType::Symlink, b"Dockerfile")),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
