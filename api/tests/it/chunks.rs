//! The snapshot chunk store (`domain::snapshots`) against a real S3 server (the embedded one,
//! spoken to through aws-sdk-s3): deduplication across snapshots, verification on read, and a
//! flipped byte in storage caught loudly; manifests and workspace isolation; garbage
//! collection and the refresh of old chunks; S3 faults injected into the server.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use burstflare_api::s3::{EmbeddedS3, FaultAction, FaultRule};
use domain::blob::{BlobError, BlobStore};
use domain::snapshots::{ChunkStore, GcReport, SnapshotError, unpack_chunk};

async fn store() -> (ChunkStore, EmbeddedS3, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = EmbeddedS3::start(&dir.path().join("s3"), "chunk-access", "chunk-secret-key")
        .await
        .unwrap();
    let mut cfg = domain::Config::default().storage;
    cfg.endpoint = url::Url::parse(&s3.endpoint()).unwrap();
    cfg.access_key_id = "chunk-access".into();
    cfg.secret_access_key = secrecy::SecretString::from("chunk-secret-key".to_string());
    cfg.force_path_style = true;
    let blob = BlobStore::new(&cfg);
    blob.ensure_bucket().await.unwrap();
    (ChunkStore::for_workspace(blob, "ws-1"), s3, dir)
}

/// 24 MB of mixed content: text-like runs and random blocks.
fn stream() -> Vec<u8> {
    let mut data = Vec::with_capacity(24 << 20);
    let mut rng = rand::rng();
    for i in 0..24u32 {
        if i % 3 == 0 {
            let line = format!("line {i} of a file that compresses well\n");
            while data.len() < ((i + 1) << 20) as usize {
                data.extend_from_slice(line.as_bytes());
            }
            data.truncate(((i + 1) << 20) as usize);
        } else {
            let mut block = vec![0u8; 1 << 20];
            rand::RngCore::fill_bytes(&mut rng, &mut block);
            data.extend_from_slice(&block);
        }
    }
    data
}

#[tokio::test]
async fn snapshots_dedupe_unchanged_chunks_and_reads_are_verified() {
    let (store, _s3, dir) = store().await;
    let first = stream();
    let (m1, s1) = store.upload(first.as_slice()).await.unwrap();
    assert_eq!(m1.size, first.len() as u64);
    assert_eq!(s1.new_chunks, s1.chunks, "{s1:?}");
    assert!(s1.chunks >= 6, "content-defined chunks of about 1 MiB: {s1:?}");
    let mut back = Vec::new();
    assert_eq!(store.read(&m1, &mut back).await.unwrap(), first.len() as u64);
    assert!(back == first, "the stream reads back byte for byte");

    // The same stream again stores nothing; a small change in the middle stores a few chunks.
    let (again, s2) = store.upload(first.as_slice()).await.unwrap();
    assert_eq!((again, s2.new_chunks), (m1.clone(), 0));
    let mut second = first.clone();
    second.splice(12_000_000..12_000_000, b"a few inserted bytes".iter().copied());
    let (m3, s3) = store.upload(second.as_slice()).await.unwrap();
    assert!(s3.new_chunks >= 1 && s3.new_chunks <= 3, "only around the edit: {s3:?}");
    let mut back = Vec::new();
    store.read(&m3, &mut back).await.unwrap();
    assert!(back == second);

    // Flip one byte of a stored chunk (on the S3 server's disk): reading fails loudly, naming it.
    let victim = &m1.chunks[m1.chunks.len() / 2];
    let key = store.chunk_key(&victim.sha256);
    let path = walk(dir.path()).into_iter().find(|p| p.to_string_lossy().ends_with(&key)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = store.verify(&m1).await.unwrap_err();
    match err {
        SnapshotError::Corrupt { sha256, .. } => assert_eq!(sha256, victim.sha256),
        other => panic!("expected a corrupt chunk, got {other}"),
    }
    // A chunk that is gone is just as loud.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.verify(&m1).await, Err(SnapshotError::Corrupt { .. })));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// An embedded S3 server, its blob store, and ChunkStores of two workspaces.
struct Env {
    blob: BlobStore,
    ws1: ChunkStore,
    ws2: ChunkStore,
    s3: EmbeddedS3,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        let (ws1, s3, dir) = store().await;
        let mut cfg = domain::Config::default().storage;
        cfg.endpoint = url::Url::parse(&s3.endpoint()).unwrap();
        cfg.access_key_id = "chunk-access".into();
        cfg.secret_access_key = secrecy::SecretString::from("chunk-secret-key".to_string());
        cfg.force_path_style = true;
        let blob = BlobStore::new(&cfg);
        let ws2 = ChunkStore::for_workspace(blob.clone(), "ws-2");
        Self { blob, ws1, ws2, s3, dir }
    }

    /// The file s3s-fs keeps `key` in.
    fn file(&self, key: &str) -> std::path::PathBuf {
        self.dir.path().join("s3").join(self.blob.bucket()).join(key)
    }

    /// Sets the LastModified of `key` (s3s-fs takes it from the file's mtime).
    fn set_modified(&self, key: &str, at: SystemTime) {
        let f = std::fs::File::options().write(true).open(self.file(key)).unwrap();
        f.set_modified(at).unwrap();
    }

    fn age(&self, key: &str, by: Duration) {
        self.set_modified(key, SystemTime::now() - by);
    }

    async fn exists(&self, key: &str) -> bool {
        self.blob.head(key).await.unwrap().is_some()
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut v);
    v
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn head_and_list_give_sizes_and_ages_across_pages() {
    let env = Env::new().await;
    // 1100 objects, more than a page of 1000: written straight into the server's directory
    // (s3s-fs lists its files), as 1100 PUTs would take seconds. One through the API.
    let dir = env.file("listing");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1100 {
        std::fs::write(dir.join(format!("{i:05}")), vec![b'x'; i % 7]).unwrap();
    }
    env.blob.put("listing/00003", b"xyz".to_vec(), "text/plain").await.unwrap();
    // Neighbours that share the prefix's characters but not the prefix.
    env.blob.put("listing-other/x", b"no".to_vec(), "text/plain").await.unwrap();
    env.blob.put("listinh", b"no".to_vec(), "text/plain").await.unwrap();

    let info = env.blob.head("listing/00003").await.unwrap().unwrap();
    assert_eq!((info.key.as_str(), info.size), ("listing/00003", 3));
    assert!((info.last_modified - now_ms()).abs() < 60_000, "{info:?}");
    assert_eq!(env.blob.head("listing/nothing").await.unwrap(), None);
    assert_eq!(env.blob.size_of("listing/00006").await.unwrap(), Some(6));
    // An age set on disk: 2001-09-09T01:46:40Z.
    env.set_modified("listing/01050", SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let old = env.blob.head("listing/01050").await.unwrap().unwrap();
    assert_eq!(old.last_modified, 1_000_000_000_000);

    let all = env.blob.list("listing/").await.unwrap();
    assert_eq!(all.len(), 1100, "every page");
    for (i, o) in all.iter().enumerate() {
        assert_eq!(o.key, format!("listing/{i:05}"), "in key order, each once");
        assert_eq!(o.size, (i % 7) as u64);
    }
    assert_eq!(all[1050].last_modified, 1_000_000_000_000);
    assert!((all[1049].last_modified - now_ms()).abs() < 60_000);
    assert!(env.blob.list("nothing/").await.unwrap().is_empty());
}

#[tokio::test]
async fn manifests_round_trip_and_foreign_or_broken_ones_are_refused() {
    let env = Env::new().await;
    let data = random(700_000);
    let (m, _) = env.ws1.upload(data.as_slice()).await.unwrap();
    let key = env.ws1.put_manifest("snap-1", &m).await.unwrap();
    assert_eq!(key, "workspaces/ws-1/snapshots/snap-1.json");
    assert_eq!(key, env.ws1.manifest_key("snap-1"));
    assert_eq!(env.ws1.get_manifest(&key).await.unwrap(), m);

    // Workspace isolation: another workspace's manifest (which exists) is never read.
    let (m2, _) = env.ws2.upload(random(1000).as_slice()).await.unwrap();
    let foreign = env.ws2.put_manifest("snap-1", &m2).await.unwrap();
    assert_eq!(env.ws2.get_manifest(&foreign).await.unwrap(), m2);
    for bad in [
        foreign.as_str(),
        "workspaces/ws-1/snapshots/../../ws-2/snapshots/snap-1.json",
        "workspaces/ws-1/snapshots/x/../../../ws-2/snapshots/snap-1.json",
        "workspaces/ws-10/snapshots/snap-1.json",
        "workspaces/ws-1/chunks/snap-1.json",
        "workspaces/ws-1/snapshots/snap-1",
        "workspaces/ws-1/snapshots/.json",
        "/workspaces/ws-1/snapshots/snap-1.json",
    ] {
        let err = env.ws1.get_manifest(bad).await.unwrap_err();
        assert!(matches!(err, SnapshotError::ManifestKey { .. }), "{bad}: {err}");
    }
    for id in ["", "../x", "a/b", ".hidden", "sp ace"] {
        let err = env.ws1.put_manifest(id, &m).await.unwrap_err();
        assert!(matches!(err, SnapshotError::ManifestKey { .. }), "{id:?}: {err}");
    }

    // A missing manifest is NotFound.
    let err = env.ws1.get_manifest(&env.ws1.manifest_key("nope")).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Storage(BlobError::NotFound { .. })), "{err}");

    // Tampered manifests on the server.
    let tampered = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(&m).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let size = m.size;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped-size", tampered(&|v| v["size"] = (size + 1).into()), "add up to"),
        ("chunk-size", tampered(&|v| v["chunks"][0]["size"] = (size - 1).into()), "add up to"),
        ("schema", tampered(&|v| v["schema"] = 2.into()), "schema 2"),
        ("traversal", tampered(&|v| v["chunks"][0]["sha256"] = "../../ws-2/x".into()), "hex"),
        ("not-json", b"{\"schema\":1,".to_vec(), "not a manifest"),
        ("no-chunks", br#"{"schema":1,"size":0}"#.to_vec(), "not a manifest"),
    ];
    for (id, body, want) in cases {
        let key = env.ws1.manifest_key(id);
        env.blob.put(&key, body, "application/json").await.unwrap();
        match env.ws1.get_manifest(&key).await {
            Err(SnapshotError::BadManifest { why, .. }) => {
                assert!(why.contains(want), "{id}: {why}")
            }
            other => panic!("{id}: expected a bad manifest, got {other:?}"),
        }
    }

    // put_manifest refuses to write what get_manifest would refuse.
    let mut wrong = m.clone();
    wrong.size += 1;
    let err = env.ws1.put_manifest("snap-wrong", &wrong).await.unwrap_err();
    assert!(matches!(err, SnapshotError::BadManifest { .. }), "{err}");
    assert!(!env.exists(&env.ws1.manifest_key("snap-wrong")).await);
}

#[tokio::test]
async fn garbage_collection_keeps_live_and_recent_chunks_and_aborts_on_a_missing_manifest() {
    let env = Env::new().await;
    let ws = &env.ws1;
    // Two live snapshots, the second the first plus more (so they share all but the first's
    // last chunk).
    let a = random(2_000_000);
    let mut b = a.clone();
    b.extend(random(500_000));
    let (ma, _) = ws.upload(a.as_slice()).await.unwrap();
    let (mb, _) = ws.upload(b.as_slice()).await.unwrap();
    let ka = ws.put_manifest("snap-a", &ma).await.unwrap();
    let kb = ws.put_manifest("snap-b", &mb).await.unwrap();
    let live: HashSet<String> =
        ma.chunks.iter().chain(&mb.chunks).map(|c| ws.chunk_key(&c.sha256)).collect();
    // An abandoned snapshot (chunks and a manifest nobody points to), and one in flight.
    let (mc, _) = ws.upload(random(600_000).as_slice()).await.unwrap();
    let kc = ws.put_manifest("snap-abandoned", &mc).await.unwrap();
    let (md, _) = ws.upload(random(600_000).as_slice()).await.unwrap();
    let kd = ws.put_manifest("snap-in-flight", &md).await.unwrap();
    // Another workspace's old, unreferenced chunk.
    let (mo, _) = env.ws2.upload(random(1000).as_slice()).await.unwrap();
    let other = env.ws2.chunk_key(&mo.chunks[0].sha256);
    env.age(&other, 30 * DAY);

    // Everything is old but the snapshot in flight.
    for k in live.iter().chain([&ka, &kb, &kc]) {
        env.age(k, 3 * DAY);
    }
    let mut freed = 0;
    for c in &mc.chunks {
        let key = ws.chunk_key(&c.sha256);
        env.age(&key, 3 * DAY);
        freed += env.blob.head(&key).await.unwrap().unwrap().size;
    }

    // A live manifest that cannot be read: nothing is deleted.
    let before = env.blob.list("workspaces/").await.unwrap();
    let missing = ws.manifest_key("snap-missing");
    let err = ws.collect_garbage(&[ka.clone(), missing, kb.clone()], DAY).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Storage(BlobError::NotFound { .. })), "{err}");
    let foreign = env.ws2.manifest_key("snap-1");
    let err = ws.collect_garbage(&[ka.clone(), foreign], DAY).await.unwrap_err();
    assert!(matches!(err, SnapshotError::ManifestKey { .. }), "{err}");
    assert_eq!(env.blob.list("workspaces/").await.unwrap(), before);

    let report = ws.collect_garbage(&[ka.clone(), kb.clone()], DAY).await.unwrap();
    let seen = live.len() + mc.chunks.len() + md.chunks.len();
    assert_eq!(
        report,
        GcReport {
            chunks_seen: seen as u64,
            chunks_deleted: mc.chunks.len() as u64,
            bytes_freed: freed,
            kept_recent: md.chunks.len() as u64,
            manifests_deleted: 1,
        }
    );
    for c in &mc.chunks {
        assert!(!env.exists(&ws.chunk_key(&c.sha256)).await, "old and unreferenced: deleted");
    }
    assert!(!env.exists(&kc).await, "an old manifest that is not live: deleted");
    for k in &live {
        assert!(env.exists(k).await, "referenced: kept");
    }
    assert!(env.exists(&kd).await, "a recent manifest: kept");
    ws.verify(&md).await.unwrap();
    assert!(env.exists(&other).await, "another workspace is not touched");
    // Both live snapshots still read back whole.
    for (k, data) in [(&ka, &a), (&kb, &b)] {
        let m = ws.get_manifest(k).await.unwrap();
        let mut back = Vec::new();
        ws.read(&m, &mut back).await.unwrap();
        assert!(&back == data);
    }
    // A second run finds nothing more to delete.
    let again = ws.collect_garbage(&[ka, kb], DAY).await.unwrap();
    assert_eq!((again.chunks_deleted, again.manifests_deleted), (0, 0));
}

#[tokio::test]
async fn uploads_rewrite_chunks_older_than_refresh_after() {
    let env = Env::new().await;
    let ws = env.ws1.clone().with_refresh_after(HOUR);
    // Streams shorter than the smallest chunk: one chunk each.
    let (old, recent) = (random(100_000), random(100_000));
    let (mo, _) = ws.upload(old.as_slice()).await.unwrap();
    let (mr, _) = ws.upload(recent.as_slice()).await.unwrap();
    let ko = ws.chunk_key(&mo.chunks[0].sha256);
    let kr = ws.chunk_key(&mr.chunks[0].sha256);
    env.age(&ko, 2 * HOUR);
    env.age(&kr, HOUR / 2);
    let before_o = env.blob.head(&ko).await.unwrap().unwrap().last_modified;
    let before_r = env.blob.head(&kr).await.unwrap().unwrap().last_modified;

    let (again, stats) = ws.upload(old.as_slice()).await.unwrap();
    assert_eq!(again, mo);
    assert_eq!((stats.chunks, stats.new_chunks, stats.refreshed_chunks), (1, 0, 1), "{stats:?}");
    assert!(stats.stored_bytes > 0);
    let after_o = env.blob.head(&ko).await.unwrap().unwrap().last_modified;
    assert!(after_o > before_o + HOUR.as_millis() as i64, "moved forward: {before_o} -> {after_o}");
    assert!((after_o - now_ms()).abs() < 60_000);

    let (_, stats) = ws.upload(recent.as_slice()).await.unwrap();
    assert_eq!((stats.new_chunks, stats.refreshed_chunks, stats.stored_bytes), (0, 0, 0));
    assert_eq!(env.blob.head(&kr).await.unwrap().unwrap().last_modified, before_r);
    ws.verify(&mo).await.unwrap();
    ws.verify(&mr).await.unwrap();
}

#[tokio::test]
async fn injected_faults_are_retried_fail_loudly_or_delay() {
    let env = Env::new().await;
    let ws = &env.ws1;
    let faults = env.s3.faults();
    assert_eq!(faults.hits(), 0);

    // Two failed chunk PUTs: the SDK's retries absorb them.
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: "/workspaces/ws-1/chunks/".into(),
        times: 2,
        action: FaultAction::Status(503),
    });
    let data = random(600_000);
    let (m, stats) = ws.upload(data.as_slice()).await.unwrap();
    assert_eq!(stats.new_chunks, stats.chunks);
    assert_eq!(faults.hits(), 2);
    ws.verify(&m).await.unwrap();
    faults.clear();
    assert_eq!(faults.hits(), 0);

    // Every PUT of the manifest fails: put_manifest fails, and no manifest exists.
    let key = ws.manifest_key("snap-f");
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: key.clone(),
        times: 0,
        action: FaultAction::Status(500),
    });
    let err = ws.put_manifest("snap-f", &m).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Storage(BlobError::Request { .. })), "{err}");
    assert!(err.to_string().contains("InternalError"), "{err}");
    assert!(faults.hits() >= 2, "retried: {}", faults.hits());
    assert!(!env.exists(&key).await);
    assert!(matches!(
        ws.get_manifest(&key).await,
        Err(SnapshotError::Storage(BlobError::NotFound { .. }))
    ));
    // A fault on HEAD answers without a body, as HEAD must.
    faults.add(FaultRule {
        method: Some(http::Method::HEAD),
        path_contains: key.clone(),
        times: 1,
        action: FaultAction::Status(403),
    });
    assert!(env.blob.head(&key).await.is_err());
    faults.clear();
    assert_eq!(ws.put_manifest("snap-f", &m).await.unwrap(), key);

    // A delayed GET is served, late.
    let chunk = ws.chunk_key(&m.chunks[0].sha256);
    faults.add(FaultRule {
        method: Some(http::Method::GET),
        path_contains: chunk.clone(),
        times: 1,
        action: FaultAction::Delay(Duration::from_millis(800)),
    });
    let t0 = Instant::now();
    let stored = env.blob.get(&chunk).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(800), "{:?}", t0.elapsed());
    assert_eq!(faults.hits(), 1);
    assert_eq!(unpack_chunk(&stored, &m.chunks[0]).unwrap().len() as u64, m.chunks[0].size);
    let t0 = Instant::now();
    env.blob.get(&chunk).await.unwrap();
    assert!(t0.elapsed() < Duration::from_millis(800), "the rule was used up");
    assert_eq!(faults.hits(), 1);
}
