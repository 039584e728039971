//! The snapshot chunk store (`domain::snapshots`) against a real S3 server (the embedded one,
//! spoken to through aws-sdk-s3): deduplication across snapshots, verification on read, and a
//! flipped byte in storage caught loudly.

use burstflare_api::s3::EmbeddedS3;
use domain::blob::BlobStore;
use domain::snapshots::{ChunkStore, SnapshotError};

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
