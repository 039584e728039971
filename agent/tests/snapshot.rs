//! `POST /snapshot/pack` and `POST /snapshot/restore` against the test-built agent process (run as
//! the current user, with a token), plus the pure pieces (path checks, the tar format) in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burstflare_agent::snapshot::restore::{mount_conflict, swap_contents};
use burstflare_agent::snapshot::tarfmt::{self, Entry, Kind, Reader};
use burstflare_agent::snapshot::{PackRequest, validate_paths};
use common::{Agent, Answer, http, parse_answer, request_head, wait_for};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
use serde_json::{Value, json};

const TOKEN: &str = "snapshot-test-token";

fn agent() -> Agent {
    Agent::start_with_env(&[], &[("BURSTFLARE_AGENT_TOKEN", TOKEN)])
}

const AUTH: (&str, &str) = ("Authorization", "Bearer snapshot-test-token");

fn pack(port: u16, paths: &[&Path], max_bytes: u64) -> Answer {
    let paths: Vec<String> = paths.iter().map(|p| p.to_str().unwrap().to_string()).collect();
    let body = json!({ "paths": paths, "max_bytes": max_bytes }).to_string();
    http(
        port,
        "POST",
        "/snapshot/pack",
        &[AUTH, ("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn pack_ok(port: u16, paths: &[&Path]) -> Vec<u8> {
    let answer = pack(port, paths, u64::MAX);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(answer.headers.contains("content-type: application/x-tar"), "{}", answer.headers);
    assert!(answer.complete, "the stream was cut");
    answer.body
}

fn paths_header(paths: &[&Path]) -> String {
    let paths: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    serde_json::to_string(&paths).unwrap()
}

fn restore(port: u16, paths: &[&Path], tar: &[u8]) -> Answer {
    let header = paths_header(paths);
    http(port, "POST", "/snapshot/restore", &[AUTH, ("X-BurstFlare-Paths", &header)], tar)
}

// ---------------------------------------------------------------------------------------------
// Trees and their manifests.

fn set_mtime(path: &Path, secs: i64) {
    let time = Timespec { tv_sec: secs, tv_nsec: 123_456_789 };
    let times = Timestamps { last_access: time, last_modification: time };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether the filesystem of `dir` takes `user.*` xattrs.
fn user_xattrs_work(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let ok =
        rustix::fs::setxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_ok();
    std::fs::remove_file(&probe).unwrap();
    ok
}

/// A varied tree under `root`: every kind of entry the snapshot keeps and some it skips. Returns
/// how many entries should be skipped (fifo, socket).
fn build_tree(root: &Path, xattrs: bool) -> u64 {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join(".bashrc"), b"export PS1='$ '\n").unwrap();
    let big: Vec<u8> =
        (0..1_600_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("a/big.bin"), &big).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    // A name that does not fit the 100 bytes of a ustar header, and one that is not UTF-8.
    let long_dir = root.join("d".repeat(60));
    std::fs::create_dir(&long_dir).unwrap();
    std::fs::write(long_dir.join("f".repeat(80)), b"long name").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"not utf-8").unwrap();
    // Modes.
    std::fs::write(root.join("secret"), b"0600").unwrap();
    chmod(&root.join("secret"), 0o600);
    std::fs::write(root.join("tool"), b"#!/bin/sh\n").unwrap();
    chmod(&root.join("tool"), 0o755);
    std::fs::write(root.join("suid"), b"setuid").unwrap();
    chmod(&root.join("suid"), 0o4755);
    std::fs::create_dir(root.join("shared")).unwrap();
    chmod(&root.join("shared"), 0o1777);
    std::fs::create_dir(root.join("private")).unwrap();
    std::fs::write(root.join("private/key"), b"k").unwrap();
    // Links: relative, absolute, dangling, long; a hard link pair across directories.
    std::os::unix::fs::symlink("a/b", root.join("rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("t".repeat(150), root.join("long-target")).unwrap();
    std::fs::write(root.join("hard1"), b"shared inode").unwrap();
    std::fs::hard_link(root.join("hard1"), root.join("a/b/hard2")).unwrap();
    if xattrs {
        let flags = rustix::fs::XattrFlags::empty();
        rustix::fs::setxattr(root.join(".bashrc"), "user.test", b"value\0with nul", flags).unwrap();
        rustix::fs::setxattr(root.join("a"), "user.dir", b"on a directory", flags).unwrap();
    }
    if is_root() {
        std::os::unix::fs::chown(root.join("secret"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("abs"), Some(4321), Some(8765)).unwrap();
        // chown clears setuid: set it again.
        std::os::unix::fs::chown(root.join("suid"), Some(1000), Some(1000)).unwrap();
        chmod(&root.join("suid"), 0o4755);
    }
    // Skipped: a fifo and a socket.
    rustix::fs::mknodat(CWD, root.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0)
        .unwrap();
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
    chmod(&root.join("private"), 0o700);
    // Mtimes last, deepest first (creating entries moves their directory's mtime).
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for (i, path) in all.iter().enumerate() {
        set_mtime(path, 1_600_000_000 + i as i64 * 1000);
    }
    set_mtime(root, 1_500_000_000);
    2
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push(path.clone());
        if meta.is_dir() {
            collect(&path, out);
        }
    }
}

/// Everything a snapshot keeps about a tree, by relative path: type, mode, owner, size, mtime,
/// link target, content hash, hard-link group (the first path of the inode), `user.*` xattrs.
/// Sockets, fifos and devices are left out (snapshots skip them).
fn manifest(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut all = Vec::new();
    collect(root, &mut all);
    all.push(root.to_path_buf());
    all.sort();
    let mut first_of_inode: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut out = BTreeMap::new();
    for path in all {
        let rel = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        let (kind, detail) = if kind.is_dir() {
            ("dir", String::new())
        } else if kind.is_symlink() {
            ("symlink", std::fs::read_link(&path).unwrap().display().to_string())
        } else if kind.is_file() {
            let mut hasher = DefaultHasher::new();
            hasher.write(&std::fs::read(&path).unwrap());
            let group = first_of_inode.entry(meta.ino()).or_insert_with(|| rel.clone());
            ("file", format!("{:x} inode-of {}", hasher.finish(), String::from_utf8_lossy(group)))
        } else {
            continue; // sockets, fifos and devices are not snapshotted
        };
        let mut xattrs = String::new();
        if !meta.file_type().is_symlink() {
            let mut names = vec![0u8; 4096];
            if let Ok(n) = rustix::fs::listxattr(&path, &mut names[..]) {
                let mut listed: Vec<&[u8]> =
                    names[..n].split(|&b| b == 0).filter(|n| n.starts_with(b"user.")).collect();
                listed.sort();
                for name in listed {
                    let mut value = vec![0u8; 4096];
                    let len = rustix::fs::getxattr(&path, name, &mut value[..]).unwrap();
                    xattrs += &format!(" {}={:?}", String::from_utf8_lossy(name), &value[..len]);
                }
            }
        }
        let size = if kind == "dir" { 0 } else { meta.size() };
        out.insert(
            rel,
            format!(
                "{kind} mode {:o} owner {}:{} size {size} mtime {} {detail}{xattrs}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.mtime(),
            ),
        );
    }
    out
}

fn assert_same(before: &BTreeMap<Vec<u8>, String>, after: &BTreeMap<Vec<u8>, String>) {
    for (path, line) in before {
        assert_eq!(after.get(path), Some(line), "{:?}", String::from_utf8_lossy(path));
    }
    for path in after.keys() {
        assert!(before.contains_key(path), "unexpected {:?}", String::from_utf8_lossy(path));
    }
}

/// Names in `dir` that look like restore leftovers.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".bf-restore-") || name.contains(".bf-old-"))
        .collect()
}

/// The entries of a tar stream (with our reader).
fn entries(tar: &[u8]) -> Vec<Entry> {
    let mut reader = Reader::new(tar);
    let mut found = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        found.push(entry);
    }
    found
}

// ---------------------------------------------------------------------------------------------

#[test]
fn pack_is_deterministic_and_restore_brings_the_tree_back() {
    let base = tempfile::tempdir().unwrap();
    let (home, work, absent) =
        (base.path().join("home/dev"), base.path().join("work"), base.path().join("absent"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/main.rs"), b"fn main() {}\n").unwrap();
    let xattrs = user_xattrs_work(base.path());
    let skipped = build_tree(&home, xattrs);
    let paths = [home.as_path(), work.as_path(), absent.as_path()];
    let (home_before, work_before) = (manifest(&home), manifest(&work));

    let mut agent = agent();
    let first = pack_ok(agent.port, &paths);
    let second = pack_ok(agent.port, &paths);
    assert!(first == second, "two packs of the same files differ");

    // The stream: our order and names, numeric ids only, whole-second mtimes.
    let list = entries(&first);
    let prefix = home.to_str().unwrap().trim_start_matches('/').to_string();
    let names: Vec<String> =
        list.iter().map(|e| String::from_utf8_lossy(&e.name).into_owned()).collect();
    assert_eq!(names[0], format!("{prefix}/"));
    assert!(names.contains(&format!("{prefix}/a/b/c/deep.txt")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("/fifo") || n.ends_with("/sock")), "{names:?}");
    let home_entries: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
    let mut sorted = home_entries.clone();
    sorted.sort_by_key(|n| {
        n.trim_end_matches('/').split('/').map(str::to_string).collect::<Vec<_>>()
    });
    assert_eq!(home_entries, sorted, "depth first, names in byte order");
    let hard: Vec<&Entry> = list.iter().filter(|e| e.kind == Kind::HardLink).collect();
    assert_eq!(hard.len(), 1);
    assert_eq!(hard[0].name, format!("{prefix}/hard1").into_bytes());
    assert_eq!(hard[0].link, format!("{prefix}/a/b/hard2").into_bytes());
    let dangling = list.iter().find(|e| e.name.ends_with(b"/dangling")).unwrap();
    assert_eq!((dangling.kind, dangling.link.as_slice()), (Kind::Symlink, &b"nowhere/at/all"[..]));
    if xattrs {
        let bashrc = list.iter().find(|e| e.name.ends_with(b"/.bashrc")).unwrap();
        assert_eq!(bashrc.xattrs, vec![(b"user.test".to_vec(), b"value\0with nul".to_vec())]);
    }
    assert!(first.windows(5).all(|w| w != b"uname"), "no user names");
    assert_eq!(first.len() % 512, 0);
    assert!(first.ends_with(&[0; 1024]));

    // GNU tar reads it and extracts the same tree.
    let out = Command::new("tar")
        .arg("-tvf")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .output_with(&first);
    assert!(out.status.success(), "tar -t: {}", String::from_utf8_lossy(&out.stderr));
    let extracted = tempfile::tempdir().unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C"])
        .arg(extracted.path())
        .output_with(&first);
    assert!(out.status.success(), "tar -x: {}", String::from_utf8_lossy(&out.stderr));
    assert_same(&home_before, &manifest(&extracted.path().join(&prefix)));

    // Change everything, then restore.
    std::fs::remove_file(home.join("a/big.bin")).unwrap();
    std::fs::write(home.join("new-file"), b"new").unwrap();
    std::fs::write(home.join(".bashrc"), b"changed").unwrap();
    chmod(&home.join("tool"), 0o644);
    std::fs::remove_file(home.join("rel")).unwrap();
    std::os::unix::fs::symlink("elsewhere", home.join("rel")).unwrap();
    std::fs::remove_dir_all(home.join("a/b/c")).unwrap();
    std::fs::create_dir(work.join("target")).unwrap();
    std::fs::remove_file(home.join("a/b/hard2")).unwrap();
    let answer = restore(agent.port, &paths, &first);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let stats = answer.json();
    assert_eq!(stats["hardlinks"], 1);
    assert_eq!(stats["symlinks"], 4);
    assert_eq!(stats["absent"], json!([absent.to_str().unwrap()]));
    assert!(stats["files"].as_u64().unwrap() >= 12, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 1_600_000, "{stats}");
    assert_eq!(stats["xattrs_skipped"], 0);
    assert_same(&home_before, &manifest(&home));
    assert_same(&work_before, &manifest(&work));
    assert!(!absent.exists(), "an absent path stays absent");
    assert!(leftovers(home.parent().unwrap()).is_empty());
    assert!(leftovers(base.path()).is_empty());

    // The restored tree packs to the same bytes.
    assert!(pack_ok(agent.port, &paths) == first, "the restored tree packs differently");

    let log = agent.stderr();
    assert!(log.contains(&format!("skipped {skipped} (sockets, fifos, devices)")), "{log}");
    assert!(log.contains("snapshot restore of"), "{log}");
}

trait OutputWith {
    fn output_with(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}

#[test]
fn over_max_bytes_is_413_before_any_byte() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("data");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a"), vec![7u8; 1500]).unwrap();
    std::fs::write(root.join("b"), vec![7u8; 500]).unwrap();
    // A hard link counts once.
    std::fs::hard_link(root.join("a"), root.join("a2")).unwrap();
    let agent = agent();
    let answer = pack(agent.port, &[&root], 1999);
    assert_eq!(answer.status, 413, "{}", String::from_utf8_lossy(&answer.body));
    assert!(answer.headers.contains("content-type: application/json"));
    let body = answer.json();
    assert_eq!(body["field"], "max_bytes");
    assert_eq!(body["size"], 2000);
    assert_eq!(body["max_bytes"], 1999);
    assert!(body["error"].as_str().unwrap().contains("2000 bytes"), "{body}");
    let answer = pack(agent.port, &[&root], 2000);
    assert_eq!(answer.status, 200);
    assert_eq!(entries(&answer.body).len(), 4);
    assert!(answer.headers.contains("x-burstflare-snapshot-bytes: 2000"), "{}", answer.headers);
}

#[test]
fn bad_paths_are_400_naming_the_field() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let link = base.path().join("link");
    std::os::unix::fs::symlink(base.path(), &link).unwrap();
    let agent = agent();
    let post = |body: Value| {
        let answer =
            http(agent.port, "POST", "/snapshot/pack", &[AUTH], body.to_string().as_bytes());
        assert_eq!(answer.status, 400, "{body}: {}", String::from_utf8_lossy(&answer.body));
        answer.json()
    };
    let field = |body: Value| post(body)["field"].as_str().unwrap().to_string();
    assert_eq!(field(json!({"paths": ["/home/dev", "relative"], "max_bytes": 1})), "paths[1]");
    assert_eq!(
        field(json!({"paths": ["/home/dev", "/home/dev/.cache"], "max_bytes": 1})),
        "paths[1]"
    );
    assert_eq!(field(json!({"paths": ["/"], "max_bytes": 1})), "paths[0]");
    assert_eq!(field(json!({"paths": [], "max_bytes": 1})), "paths");
    assert_eq!(field(json!({"paths": ["/a"]})), "max_bytes");
    assert_eq!(field(json!({"paths": ["/a"], "max_bytes": -1})), "max_bytes");
    assert_eq!(field(json!({"paths": ["/a"], "max_bytes": 1, "extra": 1})), "extra");
    let body = post(json!({"paths": ["/a", file.to_str().unwrap()], "max_bytes": 1}));
    assert_eq!(body["field"], "paths[1]");
    assert!(body["error"].as_str().unwrap().contains("not a directory"), "{body}");
    let body = post(json!({"paths": [link.to_str().unwrap()], "max_bytes": 1}));
    assert!(body["error"].as_str().unwrap().contains("symbolic link"), "{body}");
    let answer = http(agent.port, "POST", "/snapshot/pack", &[AUTH], b"{not json");
    assert_eq!((answer.status, answer.json()["field"].as_str()), (400, Some("body")));

    let answer = http(agent.port, "POST", "/snapshot/restore", &[AUTH], b"");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["field"], "X-BurstFlare-Paths");
    let answer = http(
        agent.port,
        "POST",
        "/snapshot/restore",
        &[AUTH, ("X-BurstFlare-Paths", r#"["/ok", "/x/../y"]"#)],
        b"",
    );
    assert_eq!((answer.status, answer.json()["field"].as_str()), (400, Some("paths[1]")));
}

#[test]
fn path_rules() {
    let ok = |paths: Value| validate_paths(&paths).map_err(|f| (f.field.unwrap(), f.message));
    assert_eq!(ok(json!(["/home/dev", "/workspace"])).unwrap(), vec!["/home/dev", "/workspace"]);
    assert_eq!(
        ok(json!(["/home/dev", "/home/devx"])).unwrap().len(),
        2,
        "a name prefix is not nesting"
    );
    for (paths, field, words) in [
        (json!("/home"), "paths", "array"),
        (json!(["/a/"]), "paths[0]", "end with"),
        (json!(["/a//b"]), "paths[0]", "//"),
        (json!(["/a/./b"]), "paths[0]", "components"),
        (json!(["/a", "/a"]), "paths[1]", "repeats paths[0]"),
        (json!(["/a/b", "/a"]), "paths[1]", "contains paths[0]"),
        (json!(["/proc/self"]), "paths[0]", "/proc"),
        (json!(["/dev"]), "paths[0]", "/dev"),
        (json!([format!("/{}", "x".repeat(255))]), "paths[0]", "limit"),
        (json!(["/a\nb"]), "paths[0]", "control"),
        (json!([1]), "paths[0]", "string"),
        (json!((0..33).map(|i| format!("/p{i}")).collect::<Vec<_>>()), "paths", "limit is 32"),
    ] {
        let (got, message) = ok(paths.clone()).unwrap_err();
        assert_eq!(got, field, "{paths}");
        assert!(message.contains(words), "{paths}: {message}");
    }
    let request = PackRequest::parse(br#"{"paths":["/w"],"max_bytes":10}"#).unwrap();
    assert_eq!((request.paths, request.max_bytes), (vec!["/w".to_string()], 10));
}

/// The swap for directories that cannot be renamed (overlayfs directories of the image; the
/// Docker test goes through it for real).
#[test]
fn contents_swap() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("dev");
    std::fs::create_dir_all(root.join("old-dir/x")).unwrap();
    std::fs::write(root.join("old-file"), b"old").unwrap();
    std::fs::write(root.join("same"), b"old").unwrap();
    let ready = base.path().join(".dev.bf-ready-1");
    std::fs::create_dir_all(ready.join("new-dir/y")).unwrap();
    std::fs::write(ready.join("same"), b"new").unwrap();
    std::os::unix::fs::symlink("same", ready.join("link")).unwrap();
    chmod(&ready, 0o751);
    set_mtime(&ready, 1_234_567_890);
    let expected = manifest(&ready);
    let parent = rustix::fs::open(
        base.path(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    swap_contents(
        base.path(),
        std::os::fd::AsFd::as_fd(&parent),
        b"dev",
        OsStr::new(".dev.bf-ready-1"),
    )
    .unwrap();
    let mut got = manifest(&root);
    // The path keeps its inode; mtimes are whole seconds.
    let line = got.get_mut(&Vec::new()).unwrap();
    assert!(line.contains("mode 751") && line.contains("mtime 1234567890"), "{line}");
    got.insert(Vec::new(), expected[&Vec::new()].clone());
    assert_same(&expected, &got);
    assert!(!ready.exists());
    assert!(leftovers(base.path()).is_empty(), "{:?}", leftovers(base.path()));
}

#[test]
fn mounts_inside_paths_are_found() {
    let table = b"22 1 0:21 / / rw - overlay overlay rw\n\
        30 22 0:5 / /dev rw - tmpfs tmpfs rw\n\
        40 22 8:1 /data /home/dev/my\\040cache rw - ext4 /dev/sda1 rw\n\
        41 22 8:1 /a /workspace rw - ext4 /dev/sda1 rw\n";
    let paths = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(mount_conflict(table, &paths(&["/home/devx", "/srv"])), None);
    assert_eq!(
        mount_conflict(table, &paths(&["/srv", "/home/dev"])),
        Some((1, "/home/dev/my cache".to_string()))
    );
    assert_eq!(mount_conflict(table, &paths(&["/workspace"])), Some((0, "/workspace".to_string())));
}

#[test]
fn the_tar_format_round_trips() {
    let mut big =
        Entry::new(Kind::File, format!("{}/{}", "a".repeat(90), "b".repeat(90)).into_bytes());
    big.size = 9 << 30; // more than the 11 octal digits hold
    big.uid = 3_000_000;
    big.gid = 7;
    big.mtime = -5;
    big.mode = 0o4755;
    big.xattrs =
        vec![(b"user.a".to_vec(), vec![0, 1, 2, b'\n']), (b"user.b".to_vec(), b"".to_vec())];
    let mut link = Entry::new(Kind::Symlink, b"x/\xffname".to_vec());
    link.link = vec![b'/'; 300];
    let mut dir = Entry::new(Kind::Dir, b"x/".to_vec());
    dir.mode = 0o1777;
    dir.mtime = 1_700_000_000;
    for entry in [big, link, dir] {
        let mut bytes = Vec::new();
        tarfmt::encode(&entry, &mut bytes);
        let mut again = Vec::new();
        tarfmt::encode(&entry, &mut again);
        assert_eq!(bytes, again);
        assert_eq!(bytes.len() % 512, 0);
        // Content (of size 0 for the check) and the end.
        let mut stream = bytes.clone();
        if entry.size > 0 {
            let mut header = entry.clone();
            header.size = 0;
            stream.clear();
            tarfmt::encode(&header, &mut stream);
        }
        stream.extend_from_slice(&tarfmt::END);
        let mut reader = Reader::new(stream.as_slice());
        let mut read = reader.next_entry().unwrap().unwrap();
        if entry.size > 0 {
            read.size = entry.size;
        }
        assert_eq!(read, entry);
        assert!(reader.next_entry().unwrap().is_none());
    }
    // A header with a wrong checksum, a missing end, a lone zero block.
    let mut bytes = Vec::new();
    tarfmt::encode(&Entry::new(Kind::Dir, b"d/".to_vec()), &mut bytes);
    let mut bad = bytes.clone();
    bad[0] = b'e';
    bad.extend_from_slice(&tarfmt::END);
    assert!(Reader::new(bad.as_slice()).next_entry().unwrap_err().to_string().contains("checksum"));
    let mut reader = Reader::new(bytes.as_slice());
    reader.next_entry().unwrap();
    assert!(reader.next_entry().unwrap_err().to_string().contains("truncated"));
    let mut lone = bytes.clone();
    lone.extend_from_slice(&[0; 512]);
    lone.extend_from_slice(&bytes);
    let mut reader = Reader::new(lone.as_slice());
    reader.next_entry().unwrap();
    assert!(reader.next_entry().unwrap_err().to_string().contains("zero block"));
}

/// A tar of `entries` (files get `content`), ended properly.
fn craft(entries: &[Entry], content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut entry = entry.clone();
        if entry.kind == Kind::File {
            entry.size = content.len() as u64;
        }
        tarfmt::encode(&entry, &mut out);
        if entry.kind == Kind::File {
            out.extend_from_slice(content);
            out.resize(out.len() + tarfmt::padding(content.len() as u64), 0);
        }
    }
    out.extend_from_slice(&tarfmt::END);
    out
}

fn entry(kind: Kind, name: &str, link: &str) -> Entry {
    let mut entry = Entry::new(kind, name.as_bytes().to_vec());
    entry.link = link.as_bytes().to_vec();
    entry.mode = 0o755;
    entry.uid = u64::from(rustix::process::geteuid().as_raw());
    entry.gid = u64::from(rustix::process::getegid().as_raw());
    entry
}

#[test]
fn malicious_and_broken_streams_change_nothing() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("home/dev");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("keep"), b"original").unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("target"), b"outside").unwrap();
    let before = manifest(&root);
    let agent = agent();
    let r = root.to_str().unwrap().trim_start_matches('/').to_string();
    let o = outside.to_str().unwrap().trim_start_matches('/').to_string();
    let dir = entry(Kind::Dir, &format!("{r}/"), "");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            craft(&[dir.clone(), entry(Kind::File, &format!("{r}/../evil"), "")], b"x"),
            "components",
        ),
        (
            "absolute",
            craft(&[dir.clone(), entry(Kind::File, &format!("/{r}/abs"), "")], b"x"),
            "absolute",
        ),
        (
            "outside",
            craft(&[dir.clone(), entry(Kind::File, &format!("{o}/new"), "")], b"x"),
            "outside the paths",
        ),
        (
            "hard link out",
            craft(
                &[dir.clone(), entry(Kind::HardLink, &format!("{r}/h"), &format!("{o}/target"))],
                b"",
            ),
            "outside",
        ),
        (
            "hard link to nothing",
            craft(
                &[dir.clone(), entry(Kind::HardLink, &format!("{r}/h"), &format!("{r}/none"))],
                b"",
            ),
            "not a file earlier",
        ),
        (
            "through a symlink",
            craft(
                &[
                    dir.clone(),
                    entry(Kind::Symlink, &format!("{r}/l"), outside.to_str().unwrap()),
                    entry(Kind::File, &format!("{r}/l/escaped"), ""),
                ],
                b"x",
            ),
            "not in the snapshot",
        ),
        (
            "before its directory",
            craft(&[entry(Kind::File, &format!("{r}/x"), "")], b"x"),
            "before",
        ),
        (
            "duplicate",
            craft(
                &[
                    dir.clone(),
                    entry(Kind::File, &format!("{r}/x"), ""),
                    entry(Kind::File, &format!("{r}/x"), ""),
                ],
                b"x",
            ),
            "duplicate",
        ),
        ("root not a dir", craft(&[entry(Kind::File, &r, "")], b"x"), "must be a directory"),
    ];
    for (what, tar, words) in cases {
        let answer = restore(agent.port, &[&root], &tar);
        assert_eq!(answer.status, 400, "{what}: {}", String::from_utf8_lossy(&answer.body));
        let body = answer.json();
        assert!(body["error"].as_str().unwrap().contains(words), "{what}: {body}");
        assert!(body["entry"].is_string(), "{what}: {body}");
        assert_same(&before, &manifest(&root));
        assert!(leftovers(root.parent().unwrap()).is_empty(), "{what}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "{what}");
        assert!(!base.path().join("home/evil").exists());
    }

    // Broken streams: truncated, garbage, empty, data after the end, no end.
    let mut good = craft(&[dir.clone(), entry(Kind::File, &format!("{r}/new"), "")], &[1u8; 5000]);
    let cut = good[..good.len() / 2].to_vec();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let no_end = good[..good.len() - 1024].to_vec();
    good.extend_from_slice(b"trailing");
    for (what, tar, words) in [
        ("truncated", cut, "truncated"),
        ("garbage", garbage, "invalid header"),
        ("empty", Vec::new(), "truncated"),
        ("no end", no_end, "truncated"),
        ("trailing data", good, "after the end"),
    ] {
        let answer = restore(agent.port, &[&root], &tar);
        assert_eq!(answer.status, 400, "{what}: {}", String::from_utf8_lossy(&answer.body));
        let message = answer.json()["error"].as_str().unwrap().to_string();
        assert!(message.contains(words), "{what}: {message}");
        assert_same(&before, &manifest(&root));
        assert!(leftovers(root.parent().unwrap()).is_empty(), "{what}");
    }
}

#[test]
fn leftovers_of_a_killed_restore_are_cleaned_up() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("dev");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"current").unwrap();
    // A staging directory of a killed restore, and the old tree of a swap cut in the middle
    // (for another path that is missing now).
    std::fs::create_dir_all(base.path().join(".dev.bf-restore-0123/x")).unwrap();
    let gone = base.path().join("gone");
    std::fs::create_dir_all(base.path().join(".gone.bf-old-4567")).unwrap();
    std::fs::write(base.path().join(".gone.bf-old-4567/kept"), b"old").unwrap();
    let agent = agent();
    let tar = pack_ok(agent.port, &[&root]);
    let answer = restore(agent.port, &[&root, &gone], &tar);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(leftovers(base.path()).is_empty(), "{:?}", leftovers(base.path()));
    assert_eq!(std::fs::read(gone.join("kept")).unwrap(), b"old", "the old tree is put back");
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"current");

    // A complete tree whose swap was cut is swapped in first (here the stream has nothing).
    let cut = base.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::write(cut.join("stale"), b"before the cut").unwrap();
    std::fs::create_dir(base.path().join(".cut.bf-ready-89ab")).unwrap();
    std::fs::write(base.path().join(".cut.bf-ready-89ab/fresh"), b"snapshot").unwrap();
    let answer = restore(agent.port, &[&cut], &tarfmt::END);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["absent"], json!([cut.to_str().unwrap()]));
    assert_eq!(std::fs::read(cut.join("fresh")).unwrap(), b"snapshot");
    assert!(!cut.join("stale").exists());
    assert!(leftovers(base.path()).is_empty(), "{:?}", leftovers(base.path()));

    // A path whose parent is gone is restored with its parents (made as by `mkdir -p`).
    let nested = base.path().join("x/y/dev");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("f"), b"nested").unwrap();
    let before = manifest(&nested);
    let tar = pack_ok(agent.port, &[&nested]);
    std::fs::remove_dir_all(base.path().join("x")).unwrap();
    let answer = restore(agent.port, &[&nested], &tar);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_same(&before, &manifest(&nested));
}

#[test]
fn tokens_are_checked() {
    let agent = agent();
    let body = br#"{"paths":["/tmp"],"max_bytes":1}"#;
    let answer = http(agent.port, "POST", "/snapshot/pack", &[], body);
    assert_eq!(answer.status, 401);
    let answer =
        http(agent.port, "POST", "/snapshot/pack", &[("Authorization", "Bearer nope")], body);
    assert_eq!(answer.status, 401);
    let answer = http(
        agent.port,
        "POST",
        "/snapshot/restore",
        &[("X-BurstFlare-Paths", r#"["/tmp"]"#)],
        b"",
    );
    assert_eq!(answer.status, 401);
    let answer = http(agent.port, "GET", "/snapshot/pack", &[AUTH], b"");
    assert_eq!(answer.status, 404);
    let tokenless = Agent::start(&[]);
    let answer = http(tokenless.port, "POST", "/snapshot/pack", &[AUTH], body);
    assert_eq!(answer.status, 503);
}

/// A pack the client stops reading holds the lock (409 for others); a file that shrinks while
/// it is read keeps the size of its header (zeros) and is counted as changed.
#[test]
fn one_operation_at_a_time_and_files_changing_while_packed() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let big = root.join("big");
    let size: u64 = 64 << 20;
    std::fs::File::create(&big).unwrap().set_len(size).unwrap();
    let mut agent = agent();
    let body = json!({ "paths": [root.to_str().unwrap()], "max_bytes": u64::MAX }).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
        .write_all(request_head("POST", "/snapshot/pack", &[AUTH], Some(body.len())).as_bytes())
        .unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = vec![0u8; 4096];
    let n = stream.read(&mut raw).unwrap();
    raw.truncate(n);
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw));

    // The pack waits for us: others are refused.
    let other = pack(agent.port, &[&root], u64::MAX);
    assert_eq!(other.status, 409, "{}", String::from_utf8_lossy(&other.body));
    let other = restore(agent.port, &[&root], &tarfmt::END);
    assert_eq!(other.status, 409);

    // Shrink the file while the pack is in the middle of it, then read the rest.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(1 << 20).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    raw.extend_from_slice(&rest);
    let answer = parse_answer(&raw);
    assert!(answer.complete);
    let list = entries(&answer.body);
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].size, size, "the header's size is kept");
    assert_eq!(answer.body.len() as u64, 512 + 512 + size + 1024);

    // The lock is free again.
    wait_for("the lock", Duration::from_secs(5), || {
        pack(agent.port, &[&root], u64::MAX).status == 200
    });
    let log = agent.stderr();
    assert!(log.contains("changed during snapshot 1"), "{log}");
}

/// A restore whose client goes away mid-stream changes nothing and frees the lock.
#[test]
fn an_interrupted_restore_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("dev");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), vec![1u8; 300_000]).unwrap();
    let agent = agent();
    let tar = pack_ok(agent.port, &[&root]);
    std::fs::write(root.join("f"), b"current").unwrap();
    let before = manifest(&root);
    let header = paths_header(&[&root]);
    let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
    stream
        .write_all(
            request_head(
                "POST",
                "/snapshot/restore",
                &[AUTH, ("X-BurstFlare-Paths", &header)],
                None,
            )
            .as_bytes(),
        )
        .unwrap();
    let part = &tar[..100_000];
    stream.write_all(format!("{:x}\r\n", part.len()).as_bytes()).unwrap();
    stream.write_all(part).unwrap();
    stream.write_all(b"\r\n").unwrap();
    let started = Instant::now();
    wait_for("the staging directory", Duration::from_secs(5), || {
        !leftovers(base.path()).is_empty()
    });
    assert_eq!(pack(agent.port, &[&root], u64::MAX).status, 409);
    drop(stream);
    wait_for("the cleanup", Duration::from_secs(5), || leftovers(base.path()).is_empty());
    assert_same(&before, &manifest(&root));
    wait_for("the lock", Duration::from_secs(5), || {
        pack(agent.port, &[&root], u64::MAX).status == 200
    });
    assert!(started.elapsed() < Duration::from_secs(10));
}
