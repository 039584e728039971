//! Packing and verifying bundles: a round trip, determinism, the sample template, and hostile
//! bundles built by hand (raw tar headers, so that nothing sanitizes the attack on the way).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sdk::bundle::{BundleError, Inspected, Limits, inspect, pack, sha256_hex};
use tar::{EntryType, Header};

const MANIFEST: &str = "schema = 1\nname = \"demo\"\npersisted_paths = [\"/home/dev\"]\n";
const DOCKERFILE: &str = "FROM burstflare/base:latest\nCOPY hello.txt /hello.txt\n";

// --- helpers ---------------------------------------------------------------------------------

/// A tar archive built entry by entry with raw headers.
struct RawTar {
    b: tar::Builder<Vec<u8>>,
}

impl RawTar {
    /// An empty archive.
    fn new() -> Self {
        RawTar { b: tar::Builder::new(Vec::new()) }
    }

    /// An archive holding a valid manifest and Dockerfile.
    fn valid() -> Self {
        let mut t = RawTar::new();
        t.file("burstflare.toml", MANIFEST.as_bytes());
        t.file("Dockerfile", DOCKERFILE.as_bytes());
        t
    }

    /// Appends an entry whose name bytes are written into the header as they are.
    fn raw(&mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// Appends a regular file.
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Regular, b"", data)
    }

    /// Appends a directory.
    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Directory, b"", b"")
    }

    /// Appends a symlink.
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Symlink, target.as_bytes(), b"")
    }

    /// Appends a hard link.
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Link, target.as_bytes(), b"")
    }

    /// The archive, uncompressed.
    fn tar(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.b, tar::Builder::new(Vec::new())).into_inner().unwrap()
    }

    /// The archive compressed with zstd: a bundle.
    fn zst(&mut self) -> Vec<u8> {
        zstd::encode_all(self.tar().as_slice(), 3).unwrap()
    }
}

/// Inspects with default limits, expecting a failure.
fn refused(bundle: &[u8]) -> BundleError {
    refused_with(bundle, &Limits::default())
}

/// Inspects with `limits`, expecting a failure.
fn refused_with(bundle: &[u8], limits: &Limits) -> BundleError {
    match inspect(bundle, limits) {
        Ok(i) => panic!("expected a refusal, got {} entries", i.files),
        Err(e) => e,
    }
}

/// Asserts a refusal on `field` whose message contains `needle`.
fn assert_refused(bundle: &[u8], field: &str, needle: &str) {
    let e = refused(bundle);
    assert_eq!(e.field, field, "{e}");
    assert!(e.message.contains(needle), "{e} should contain {needle:?}");
}

/// One entry of a plain tar: (path, type, mode, size, link target, uid, gid, mtime).
type Listed = (String, EntryType, u32, u64, Option<String>, u64, u64, u64);

/// The entries of a plain tar.
fn listing(tar_bytes: &[u8]) -> Vec<Listed> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.size().unwrap(),
                e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

/// The content of `path` in a plain tar.
fn content(tar_bytes: &[u8], path: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new(path) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{path} not in the tar");
}

/// A sample template directory.
fn sample_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("burstflare.toml"), MANIFEST).unwrap();
    std::fs::write(p.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(p.join("hello.txt"), "hello\n").unwrap();
    std::fs::create_dir_all(p.join("bin")).unwrap();
    std::fs::write(p.join("bin/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(p.join("bin/run.sh"), std::fs::Permissions::from_mode(0o6755))
        .unwrap();
    symlink("bin/run.sh", p.join("run")).unwrap();
    symlink("../hello.txt", p.join("bin/hello")).unwrap();
    let deep = p.join("a".repeat(60)).join("b".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("long-name.txt"), "deep").unwrap();
    std::fs::create_dir_all(p.join(".git/objects")).unwrap();
    std::fs::write(p.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::create_dir_all(p.join("vendor/.git")).unwrap();
    std::fs::write(p.join("vendor/.git/HEAD"), "kept").unwrap();
    d
}

/// The sample template shipped in the repository.
fn devbox_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox")
}

// --- round trip ------------------------------------------------------------------------------

#[test]
fn pack_then_inspect_round_trips() {
    let d = sample_dir();
    let packed = pack(d.path(), &Limits::default()).unwrap();
    assert_eq!(packed.size, packed.bytes.len() as u64);
    assert_eq!(packed.sha256, sha256_hex(&packed.bytes));
    assert_eq!(packed.sha256.len(), 64);
    assert_eq!(packed.manifest.name, "demo");

    let Inspected { manifest, context_tar, files, content_bytes } =
        inspect(&packed.bytes, &Limits::default()).unwrap();
    assert_eq!(manifest, packed.manifest);
    assert_eq!(files, packed.files);
    assert_eq!(content_bytes, packed.content_bytes);

    let list = listing(&context_tar);
    let paths: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
    let long_dir = "a".repeat(60);
    let deep_dir = format!("{long_dir}/{}", "b".repeat(60));
    let deep_file = format!("{deep_dir}/long-name.txt");
    assert_eq!(
        paths,
        [
            "Dockerfile",
            long_dir.as_str(),
            deep_dir.as_str(),
            deep_file.as_str(),
            "bin",
            "bin/hello",
            "bin/run.sh",
            "burstflare.toml",
            "hello.txt",
            "run",
            "vendor",
            "vendor/.git",
            "vendor/.git/HEAD",
        ]
    );
    assert_eq!(files, paths.len() as u64);
    let expected_content = (DOCKERFILE.len() + MANIFEST.len() + 6 + 4 + 19 + 4) as u64;
    assert_eq!(content_bytes, expected_content);
    for (path, kind, mode, _, link, uid, gid, mtime) in &list {
        assert_eq!((*uid, *gid, *mtime), (0, 0, 0), "{path}");
        match path.as_str() {
            "bin/run.sh" => assert_eq!(*mode, 0o755, "setuid/setgid must be dropped"),
            "run" => {
                assert_eq!(*kind, EntryType::Symlink);
                assert_eq!(link.as_deref(), Some("bin/run.sh"));
            }
            "bin/hello" => assert_eq!(link.as_deref(), Some("../hello.txt")),
            "hello.txt" => assert_eq!(*mode, 0o644),
            _ => {}
        }
    }
    assert_eq!(content(&context_tar, "hello.txt"), b"hello\n");
    assert_eq!(content(&context_tar, &deep_file), b"deep");
}

#[test]
fn pack_is_deterministic() {
    let d = sample_dir();
    let a = pack(d.path(), &Limits::default()).unwrap();
    // Touching files (new mtimes) must not change the bundle.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(d.path().join("hello.txt"), "hello\n").unwrap();
    let b = pack(d.path(), &Limits::default()).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.bytes, b.bytes);
    std::fs::write(d.path().join("hello.txt"), "changed\n").unwrap();
    let c = pack(d.path(), &Limits::default()).unwrap();
    assert_ne!(a.sha256, c.sha256);
}

#[test]
fn the_sample_devbox_template_packs_and_inspects() {
    let packed = pack(&devbox_dir(), &Limits::default()).unwrap();
    let inspected = inspect(&packed.bytes, &Limits::default()).unwrap();
    assert_eq!(inspected.manifest.name, "devbox");
    assert_eq!(inspected.manifest.base_image, "burstflare/base:latest");
    let paths: Vec<String> = listing(&inspected.context_tar).into_iter().map(|e| e.0).collect();
    assert_eq!(paths, ["Dockerfile", "burstflare.toml", "motd", "welcome.sh"]);
    let dockerfile = String::from_utf8(content(&inspected.context_tar, "Dockerfile")).unwrap();
    assert!(dockerfile.contains("ARG BASE_IMAGE=burstflare/base:latest"));
    assert!(dockerfile.contains("FROM ${BASE_IMAGE}"));
    assert!(inspected.manifest.view().env.iter().any(|e| e.secret && e.value.is_none()));
}

#[test]
fn inspect_accepts_common_tar_shapes() {
    // A root "./" entry, "./"-prefixed paths, an internal symlink, a hard link to an earlier file,
    // a pax global header (as `git archive` writes), and a pax path for a long name.
    let mut t = RawTar::new();
    t.raw(
        b"pax_global_header",
        EntryType::XGlobalHeader,
        b"",
        b"52 comment=0123456789012345678901234567890123456789\n",
    );
    t.dir("./");
    t.file("./burstflare.toml", MANIFEST.as_bytes());
    t.file("./Dockerfile", DOCKERFILE.as_bytes());
    t.dir("./src/");
    t.file("./src/main.rs", b"fn main() {}\n");
    t.symlink("./latest", "src/main.rs");
    t.symlink("./src/self", ".");
    t.hardlink("./copy.rs", "src/main.rs");
    let long = format!("src/{}.txt", "x".repeat(200));
    t.b.append_pax_extensions([("path", long.as_bytes())]).unwrap();
    t.file("src/short.txt", b"pax");
    let bundle = t.zst();
    let i = inspect(&bundle, &Limits::default()).unwrap();
    let list = listing(&i.context_tar);
    let paths: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "burstflare.toml",
            "Dockerfile",
            "src",
            "src/main.rs",
            "latest",
            "src/self",
            "copy.rs",
            long.as_str()
        ]
    );
    assert_eq!(list[6].1, EntryType::Link);
    assert_eq!(list[6].4.as_deref(), Some("src/main.rs"));
    assert_eq!(i.files, 8);
    assert_eq!(content(&i.context_tar, &long), b"pax");
}

// --- hostile paths ---------------------------------------------------------------------------

#[test]
fn parent_traversal_is_refused() {
    assert_refused(&RawTar::valid().file("../evil", b"x").zst(), "bundle.path", "\"..\"");
    assert_refused(&RawTar::valid().file("a/../../x", b"x").zst(), "bundle.path", "\"..\"");
    assert_refused(&RawTar::valid().file("a/..", b"x").zst(), "bundle.path", "\"..\"");
}

#[test]
fn absolute_paths_are_refused() {
    assert_refused(
        &RawTar::valid().file("/etc/passwd", b"root::0:0::/:/bin/sh\n").zst(),
        "bundle.path",
        "absolute",
    );
}

#[test]
fn pax_paths_are_checked_too() {
    let mut t = RawTar::valid();
    t.b.append_pax_extensions([("path", b"../../etc/cron.d/x".as_slice())]).unwrap();
    t.file("innocent", b"x");
    assert_refused(&t.zst(), "bundle.path", "\"..\"");

    let mut t = RawTar::valid();
    t.b.append_pax_extensions([("path", b"a\0b".as_slice())]).unwrap();
    t.file("innocent", b"x");
    assert_refused(&t.zst(), "bundle.path", "NUL");
}

#[test]
fn gnu_long_names_are_checked_too() {
    let mut t = RawTar::valid();
    let name = format!("{}/../../../../etc/x", "d".repeat(120));
    t.raw(b"././@LongLink", EntryType::GNULongName, b"", name.as_bytes());
    t.file("short", b"x");
    assert_refused(&t.zst(), "bundle.path", "\"..\"");
}

#[test]
fn over_long_paths_are_refused() {
    let limits = Limits { max_path_bytes: 50, ..Limits::default() };
    let e = refused_with(&RawTar::valid().file(&"p".repeat(51), b"x").zst(), &limits);
    assert_eq!(e.field, "bundle.path");
    assert!(e.message.contains("51 bytes") && e.message.contains("the limit is 50"), "{e}");
    // A long-name header larger than the limit is refused before it is read.
    let mut t = RawTar::valid();
    t.raw(b"././@LongLink", EntryType::GNULongName, b"", &vec![b'x'; 4096]);
    t.file("short", b"x");
    let e = refused(&t.zst());
    assert_eq!(e.field, "bundle.path");
    assert!(e.message.contains("the limit is 1025"), "{e}");
}

#[test]
fn non_utf8_paths_are_refused() {
    assert_refused(
        &RawTar::valid().raw(b"caf\xe9", EntryType::Regular, b"", b"x").zst(),
        "bundle.path",
        "UTF-8",
    );
}

#[test]
fn duplicated_paths_are_refused() {
    assert_refused(
        &RawTar::valid().file("a", b"1").file("a", b"2").zst(),
        "bundle.path",
        "more than once",
    );
    assert_refused(
        &RawTar::valid().file("a", b"1").file("./a", b"2").zst(),
        "bundle.path",
        "more than once",
    );
    assert_refused(
        &RawTar::valid().file("Dockerfile", b"FROM x").zst(),
        "bundle.path",
        "more than once",
    );
}

#[test]
fn files_used_as_directories_are_refused() {
    assert_refused(
        &RawTar::valid().file("a", b"1").file("a/b", b"2").zst(),
        "bundle.path",
        "not a directory",
    );
    assert_refused(
        &RawTar::valid().file("a/b", b"2").file("a", b"1").zst(),
        "bundle.path",
        "both as a directory",
    );
}

// --- hostile links ---------------------------------------------------------------------------

#[test]
fn symlink_to_an_absolute_path_is_refused() {
    assert_refused(&RawTar::valid().symlink("etc", "/etc").zst(), "bundle.link", "absolute");
}

#[test]
fn symlink_escaping_with_dotdot_is_refused() {
    assert_refused(&RawTar::valid().symlink("a", "../../..").zst(), "bundle.link", "outside");
    assert_refused(
        &RawTar::valid().dir("d").symlink("d/up", "../..").zst(),
        "bundle.link",
        "outside",
    );
}

#[test]
fn symlink_escaping_through_other_symlinks_is_refused() {
    // Lexically "up/../x" stays inside, but "up" is "." so it resolves to "../x".
    assert_refused(
        &RawTar::valid().symlink("up", ".").symlink("l", "up/../x").zst(),
        "bundle.link",
        "outside",
    );
    // The same with the helper link arriving after the one using it.
    assert_refused(
        &RawTar::valid().dir("d").symlink("d/l", "e/../../x").symlink("d/e", ".").zst(),
        "bundle.link",
        "outside",
    );
    // Entries placed under a symlink are refused outright.
    assert_refused(
        &RawTar::valid().symlink("up", "..").file("up/x", b"x").zst(),
        "bundle.path",
        "not a directory",
    );
    assert_refused(
        &RawTar::valid().symlink("s", "d").file("s/x", b"x").zst(),
        "bundle.path",
        "not a directory",
    );
}

#[test]
fn symlink_loops_are_refused() {
    assert_refused(
        &RawTar::valid().symlink("a", "b").symlink("b", "a").zst(),
        "bundle.link",
        "more than 40 links",
    );
}

#[test]
fn hardlink_to_outside_is_refused() {
    assert_refused(
        &RawTar::valid().hardlink("h", "../../etc/shadow").zst(),
        "bundle.link",
        "\"..\"",
    );
    assert_refused(&RawTar::valid().hardlink("h", "/etc/shadow").zst(), "bundle.link", "absolute");
    assert_refused(
        &RawTar::valid().hardlink("h", "later").file("later", b"x").zst(),
        "bundle.link",
        "earlier regular file",
    );
    assert_refused(
        &RawTar::valid().dir("d").hardlink("h", "d").zst(),
        "bundle.link",
        "earlier regular file",
    );
}

// --- hostile entry types ---------------------------------------------------------------------

#[test]
fn devices_and_fifos_are_refused() {
    assert_refused(
        &RawTar::valid().raw(b"null", EntryType::Char, b"", b"").zst(),
        "bundle.entry",
        "character device",
    );
    assert_refused(
        &RawTar::valid().raw(b"sda", EntryType::Block, b"", b"").zst(),
        "bundle.entry",
        "block device",
    );
    assert_refused(
        &RawTar::valid().raw(b"pipe", EntryType::Fifo, b"", b"").zst(),
        "bundle.entry",
        "fifo",
    );
    assert_refused(
        &RawTar::valid().raw(b"c", EntryType::Continuous, b"", b"").zst(),
        "bundle.entry",
        "contiguous",
    );
    assert_refused(
        &RawTar::valid().raw(b"odd", EntryType::new(b'Z'), b"", b"").zst(),
        "bundle.entry",
        "unknown",
    );
}

// --- limits ----------------------------------------------------------------------------------

#[test]
fn zip_bomb_is_refused_quickly() {
    // A single file claiming 1 GiB of zeros, streamed through the encoder so that this test never
    // holds 1 GiB either.
    const GIB: u64 = 1 << 30;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let mut h = Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(GIB);
    h.set_cksum();
    enc.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(GIB >> 20) {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap(); // end of archive
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());

    let started = Instant::now();
    let e = refused(&bomb);
    assert_eq!(e.field, "bundle.size", "{e}");
    assert!(e.message.contains(&(512u64 << 20).to_string()), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn decompression_is_bounded_even_when_no_entry_claims_the_bytes() {
    // Headers that count toward no entry (pax global headers) still count toward the bound.
    let limits = Limits {
        max_content_bytes: 1 << 20,
        max_files: 10,
        max_path_bytes: 100,
        ..Limits::default()
    };
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    {
        let mut t = tar::Builder::new(&mut enc);
        let chunk = vec![b'a'; 60 * 1024];
        for _ in 0..200 {
            let mut h = Header::new_gnu();
            h.set_path("pax_global_header").unwrap();
            h.set_entry_type(EntryType::XGlobalHeader);
            h.set_size(chunk.len() as u64);
            h.set_cksum();
            t.append(&h, chunk.as_slice()).unwrap();
        }
        t.finish().unwrap();
    }
    let bundle = enc.finish().unwrap();
    let e = refused_with(&bundle, &limits);
    assert_eq!(e.field, "bundle.size", "{e}");
    assert!(e.message.contains("1048576"), "{e}");
}

#[test]
fn too_many_files_are_refused() {
    let limits = Limits { max_files: 5, ..Limits::default() };
    let mut t = RawTar::valid();
    for i in 0..4 {
        t.file(&format!("f{i}"), b"x");
    }
    let e = refused_with(&t.zst(), &limits);
    assert_eq!(e.field, "bundle.files");
    assert!(e.message.contains("the limit is 5"), "{e}");
}

#[test]
fn too_much_content_is_refused() {
    let limits = Limits { max_content_bytes: 1000, ..Limits::default() };
    let e = refused_with(&RawTar::valid().file("big", &[7u8; 1000]).zst(), &limits);
    assert_eq!(e.field, "bundle.size");
    assert!(e.message.contains("the limit is 1000 bytes"), "{e}");
}

#[test]
fn too_large_a_bundle_is_refused() {
    let bundle = RawTar::valid().zst();
    let limits = Limits { max_bundle_bytes: bundle.len() as u64 - 1, ..Limits::default() };
    let e = refused_with(&bundle, &limits);
    assert_eq!(e.field, "bundle.size");
    assert!(e.message.contains(&format!("the limit is {} bytes", bundle.len() - 1)), "{e}");
}

// --- manifest and Dockerfile -----------------------------------------------------------------

#[test]
fn missing_dockerfile_is_refused() {
    let bundle = RawTar::new().file("burstflare.toml", MANIFEST.as_bytes()).zst();
    assert_refused(&bundle, "Dockerfile", "no Dockerfile");
    let bundle = RawTar::new()
        .file("burstflare.toml", MANIFEST.as_bytes())
        .file("sub/Dockerfile", b"FROM x")
        .zst();
    assert_refused(&bundle, "Dockerfile", "no Dockerfile");
    let bundle = RawTar::new()
        .file("burstflare.toml", MANIFEST.as_bytes())
        .file("real", b"FROM x")
        .symlink("Dockerfile", "real")
        .zst();
    assert_refused(&bundle, "Dockerfile", "regular file");
}

#[test]
fn missing_manifest_is_refused() {
    assert_refused(
        &RawTar::new().file("Dockerfile", DOCKERFILE.as_bytes()).zst(),
        "burstflare.toml",
        "no burstflare.toml",
    );
    let bundle = RawTar::new().file("Dockerfile", b"FROM x").dir("burstflare.toml").zst();
    assert_refused(&bundle, "burstflare.toml", "regular file");
}

#[test]
fn manifest_errors_pass_through() {
    let bad = "schema = 1\nname = \"Bad Name\"\n";
    let bundle =
        RawTar::new().file("burstflare.toml", bad.as_bytes()).file("Dockerfile", b"FROM x").zst();
    assert_refused(&bundle, "name", "lowercase letter");
    let bundle = RawTar::new()
        .file("burstflare.toml", b"schema = 2\nname = \"x\"\n")
        .file("Dockerfile", b"x")
        .zst();
    assert_refused(&bundle, "schema", "schema 2 is not supported");
    let huge = vec![b'#'; 70 * 1024];
    let bundle = RawTar::new().file("burstflare.toml", &huge).file("Dockerfile", b"x").zst();
    assert_refused(&bundle, "burstflare.toml", "65536");
    let bundle = RawTar::new().file("burstflare.toml", b"\xff\xfe").file("Dockerfile", b"x").zst();
    assert_refused(&bundle, "burstflare.toml", "UTF-8");
}

// --- not a bundle ----------------------------------------------------------------------------

#[test]
fn not_zstd_is_refused() {
    assert_refused(b"", "bundle.format", "zstd");
    assert_refused(b"hello world", "bundle.format", "zstd");
    assert_refused(&RawTar::valid().tar(), "bundle.format", "zstd");
    assert_refused(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "bundle.format", "zstd");
}

#[test]
fn zstd_but_not_tar_is_refused() {
    let e = refused(&zstd::encode_all(&[0x41u8; 4096][..], 3).unwrap());
    assert_eq!(e.field, "bundle.format", "{e}");
}

#[test]
fn truncated_bundles_are_refused() {
    let d = sample_dir();
    let packed = pack(d.path(), &Limits::default()).unwrap();
    let n = packed.bytes.len();
    for cut in [4, 10, n / 4, n / 2, n - 20, n - 4, n - 1] {
        let e = refused(&packed.bytes[..cut]);
        assert_eq!(e.field, "bundle.format", "cut at {cut}/{n}: {e}");
    }
}

#[test]
fn a_truncated_tar_inside_a_valid_frame_is_refused() {
    let tar_bytes = RawTar::valid().file("data", &[1u8; 5000]).tar();
    for cut in [600, 2000, tar_bytes.len() - 3000] {
        let bundle = zstd::encode_all(&tar_bytes[..cut], 3).unwrap();
        let e = refused(&bundle);
        assert_eq!(e.field, "bundle.format", "cut at {cut}: {e}");
    }
}

// --- pack refusals ---------------------------------------------------------------------------

/// Packs `dir` with default limits, expecting a refusal.
fn pack_refused(dir: &Path) -> BundleError {
    match pack(dir, &Limits::default()) {
        Ok(p) => panic!("expected a refusal, got {} entries", p.files),
        Err(e) => e,
    }
}

#[test]
fn pack_refuses_escaping_symlinks() {
    let d = sample_dir();
    symlink("/etc", d.path().join("etc")).unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "bundle.link");
    assert!(e.message.contains("\"etc\"") && e.message.contains("absolute"), "{e}");

    let d = sample_dir();
    symlink("../../..", d.path().join("bin/up")).unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "bundle.link");
    assert!(e.message.contains("\"bin/up\"") && e.message.contains("outside"), "{e}");
}

#[test]
fn pack_refuses_fifos_and_sockets() {
    let d = sample_dir();
    let status =
        std::process::Command::new("mkfifo").arg(d.path().join("bin/pipe")).status().unwrap();
    assert!(status.success());
    let e = pack_refused(d.path());
    assert_eq!(e.field, "bundle.entry");
    assert!(e.message.contains("\"bin/pipe\" is a fifo"), "{e}");

    let d = sample_dir();
    let _listener = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "bundle.entry");
    assert!(e.message.contains("\"sock\" is a socket"), "{e}");
}

#[test]
fn pack_refuses_a_missing_or_invalid_manifest_and_a_missing_dockerfile() {
    let d = sample_dir();
    std::fs::remove_file(d.path().join("burstflare.toml")).unwrap();
    assert_eq!(pack_refused(d.path()).field, "burstflare.toml");

    let d = sample_dir();
    std::fs::write(
        d.path().join("burstflare.toml"),
        "schema = 1\nname = \"x\"\nports = [{ port = 22 }]\n",
    )
    .unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "ports[0].port", "{e}");

    let d = sample_dir();
    std::fs::remove_file(d.path().join("Dockerfile")).unwrap();
    assert_eq!(pack_refused(d.path()).field, "Dockerfile");

    let d = sample_dir();
    std::fs::remove_file(d.path().join("Dockerfile")).unwrap();
    symlink("hello.txt", d.path().join("Dockerfile")).unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "Dockerfile");
    assert!(e.message.contains("regular file"), "{e}");
}

#[test]
fn pack_applies_the_limits() {
    let d = sample_dir();
    let e = pack(d.path(), &Limits { max_files: 3, ..Limits::default() }).unwrap_err();
    assert_eq!(e.field, "bundle.files");
    assert!(e.message.contains("the limit is 3"), "{e}");

    let e = pack(d.path(), &Limits { max_content_bytes: 50, ..Limits::default() }).unwrap_err();
    assert_eq!(e.field, "bundle.size");
    assert!(e.message.contains("the limit is 50 bytes"), "{e}");

    let e = pack(d.path(), &Limits { max_path_bytes: 100, ..Limits::default() }).unwrap_err();
    assert_eq!(e.field, "bundle.path");
    assert!(e.message.contains("the limit is 100"), "{e}");

    let mut noise = vec![0u8; 256 * 1024];
    let mut x: u32 = 1;
    for b in &mut noise {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    std::fs::write(d.path().join("noise.bin"), &noise).unwrap();
    let e =
        pack(d.path(), &Limits { max_bundle_bytes: 64 * 1024, ..Limits::default() }).unwrap_err();
    assert_eq!(e.field, "bundle.size");
    assert!(e.message.contains("the limit is 65536 bytes"), "{e}");
}

#[test]
fn pack_refuses_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let d = sample_dir();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(d.path().join(name), "x").unwrap();
    let e = pack_refused(d.path());
    assert_eq!(e.field, "bundle.path");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn packed_bundles_are_plain_tar_zstd() {
    let d = sample_dir();
    let packed = pack(d.path(), &Limits::default()).unwrap();
    let tar_bytes = zstd::decode_all(packed.bytes.as_slice()).unwrap();
    let paths: Vec<String> = listing(&tar_bytes).into_iter().map(|e| e.0).collect();
    assert!(paths.contains(&"burstflare.toml".to_owned()));
    assert!(!paths.iter().any(|p| p.starts_with(".git")), "{paths:?}");
    let mut out = std::io::sink();
    out.write_all(&tar_bytes).unwrap();
}
