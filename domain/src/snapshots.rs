//! Content-addressed snapshot storage (issue 9, docs/snapshots.md).
//!
//! A snapshot is the agent's deterministic tar stream of a session's persisted paths. It is cut
//! into content-defined chunks (FastCDC: unchanged files give the same chunks, so a later snapshot
//! uploads only what changed), each stored zstd-compressed under the sha256 of its plain bytes in
//! the workspace's prefix, `workspaces/<ws>/chunks/<aa>/<sha256>`. Every chunk this upload wrote
//! is read back and checked before the manifest, which lists the chunks in order, is returned;
//! the caller writes the manifest last and only then moves the session's latest pointer.
//! Reading verifies every chunk's size and hash and fails loudly on the first mismatch.
//!
//! Manifests are stored at `workspaces/<ws>/snapshots/<snapshot_id>.json`
//! ([`ChunkStore::put_manifest`], [`ChunkStore::get_manifest`]). Garbage collection
//! ([`ChunkStore::collect_garbage`]) is a mark and sweep over one workspace: the chunks of the
//! live manifests are marked, and chunks and manifests neither live nor younger than a grace
//! period are deleted. An upload that reuses a chunk older than `refresh_after` writes it again,
//! so a chunk an in-flight snapshot relies on is always younger than the grace period (which must
//! therefore exceed `refresh_after` plus the longest upload, plus any clock skew between the node
//! and the S3 server).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::blob::{BlobError, BlobStore};

/// Smallest, average and largest chunk, in bytes.
pub const CHUNK_MIN: u32 = 256 * 1024;
pub const CHUNK_AVG: u32 = 1024 * 1024;
pub const CHUNK_MAX: u32 = 4 * 1024 * 1024;
/// zstd level of stored chunks.
const LEVEL: i32 = 3;
/// Version of [`SnapshotManifest`].
pub const MANIFEST_SCHEMA: u32 = 1;
/// Default of [`ChunkStore::with_refresh_after`].
pub const DEFAULT_REFRESH_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Longest snapshot id (the file name of its manifest).
const SNAPSHOT_ID_MAX: usize = 128;
/// Deletions garbage collection runs at once.
const GC_PARALLEL_DELETES: usize = 8;

/// One chunk of a snapshot stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// sha256 of the plain bytes (hex).
    pub sha256: String,
    /// Plain size.
    pub size: u64,
}

/// What a snapshot is made of: its chunks in stream order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub schema: u32,
    pub chunks: Vec<ChunkRef>,
    /// Plain size of the whole stream.
    pub size: u64,
    /// sha256 of the whole stream (hex).
    pub sha256: String,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub chunks: u64,
    /// Chunks that were not stored yet (the rest were already there).
    pub new_chunks: u64,
    /// Chunks that were stored already but older than `refresh_after`, and were written again
    /// (so that garbage collection sees them as recent).
    pub refreshed_chunks: u64,
    /// Compressed bytes written (new and refreshed chunks).
    pub stored_bytes: u64,
}

/// Chunk requests in flight at once during an upload or a read (storage round trips overlap;
/// chunks are still cut, hashed and written in order).
pub const IN_FLIGHT: usize = 8;

/// What storing one chunk did.
enum Stored {
    Reused,
    New(u64),
    Refreshed(u64),
}

/// What a garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Objects under the workspace's `chunks/`.
    pub chunks_seen: u64,
    /// Unreferenced chunks older than the grace period, deleted.
    pub chunks_deleted: u64,
    /// Stored (compressed) bytes of the deleted chunks.
    pub bytes_freed: u64,
    /// Unreferenced chunks younger than the grace period (an upload in flight may be about to
    /// reference them), kept.
    pub kept_recent: u64,
    /// Manifests that are not live and older than the grace period, deleted.
    pub manifests_deleted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot stream: {0}")]
    Source(String),
    #[error("storage: {0}")]
    Storage(#[from] BlobError),
    /// A stored chunk does not hold what its name says: never restore from it.
    #[error("chunk {sha256} is corrupt: {why}")]
    Corrupt { sha256: String, why: String },
    #[error("writing the restored stream: {0}")]
    Sink(String),
    /// A manifest key (or snapshot id) that this store refuses to touch: outside this
    /// workspace's `snapshots/` (workspace isolation), or not of the form
    /// `workspaces/<ws>/snapshots/<snapshot_id>.json` with a plain id. Nothing was read or written.
    #[error("manifest key {key:?} refused: {why}")]
    ManifestKey { key: String, why: String },
    /// A manifest that cannot be used: not JSON of a [`SnapshotManifest`], an unknown schema,
    /// chunk sizes that do not add up to its size, a malformed hash, or (when writing) one that
    /// did not read back identical. Never restore from it.
    #[error("manifest {key} is unusable: {why}")]
    BadManifest { key: String, why: String },
}

/// The chunks of one workspace.
#[derive(Clone)]
pub struct ChunkStore {
    blob: BlobStore,
    prefix: String,
    refresh_after: Duration,
}

/// `sha256(data)` in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A snapshot id usable as a file name: 1 to 128 of `[A-Za-z0-9_.-]`, not starting with `.`
/// (so never `.` or `..`: s3s-fs and other file-backed stores resolve keys as paths).
fn check_snapshot_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > SNAPSHOT_ID_MAX {
        return Err(format!("a snapshot id has 1 to {SNAPSHOT_ID_MAX} characters"));
    }
    if id.starts_with('.') {
        return Err("a snapshot id cannot start with '.'".into());
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err("a snapshot id holds only letters, digits, '_', '-' and '.'".into());
    }
    Ok(())
}

/// What [`ChunkStore::get_manifest`] accepts, and [`ChunkStore::put_manifest`] writes.
fn check_manifest(m: &SnapshotManifest) -> Result<(), String> {
    if m.schema != MANIFEST_SCHEMA {
        return Err(format!(
            "schema {} is not known (this build reads {MANIFEST_SCHEMA})",
            m.schema
        ));
    }
    if !is_sha256_hex(&m.sha256) {
        return Err("its sha256 is not 64 lowercase hex digits".into());
    }
    let mut sum = 0u64;
    for (i, c) in m.chunks.iter().enumerate() {
        if !is_sha256_hex(&c.sha256) {
            return Err(format!("chunk {i}: its sha256 is not 64 lowercase hex digits"));
        }
        if c.size == 0 || c.size > u64::from(CHUNK_MAX) {
            return Err(format!("chunk {i}: size {} is not within 1..={CHUNK_MAX}", c.size));
        }
        sum = sum.checked_add(c.size).ok_or("the chunk sizes overflow")?;
    }
    if sum != m.size {
        return Err(format!("its chunks add up to {sum} bytes, not its size {}", m.size));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Compresses a chunk for storage.
pub fn pack_chunk(data: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    zstd::bulk::compress(data, LEVEL).map_err(|e| SnapshotError::Source(format!("zstd: {e}")))
}

/// Decompresses a stored chunk and checks it is `expected`.
pub fn unpack_chunk(stored: &[u8], expected: &ChunkRef) -> Result<Vec<u8>, SnapshotError> {
    let corrupt = |why: String| SnapshotError::Corrupt { sha256: expected.sha256.clone(), why };
    let capacity = usize::try_from(expected.size).map_err(|e| corrupt(e.to_string()))?;
    let plain = zstd::bulk::decompress(stored, capacity.max(1))
        .map_err(|e| corrupt(format!("does not decompress ({e})")))?;
    if plain.len() as u64 != expected.size {
        return Err(corrupt(format!("{} bytes, expected {}", plain.len(), expected.size)));
    }
    let got = sha256_hex(&plain);
    if got != expected.sha256 {
        return Err(corrupt(format!("its content hashes to {got}")));
    }
    Ok(plain)
}

impl ChunkStore {
    /// The chunks under `workspaces/<workspace>/`.
    pub fn for_workspace(blob: BlobStore, workspace: &str) -> Self {
        Self {
            blob,
            prefix: format!("workspaces/{workspace}"),
            refresh_after: DEFAULT_REFRESH_AFTER,
        }
    }

    /// An existing chunk whose LastModified is older than this is written again during upload
    /// (so garbage collection, which only deletes unreferenced chunks older than its grace, can
    /// never delete a chunk an in-flight snapshot just decided to reuse: the grace must exceed
    /// this plus the longest upload). Default: 12 h ([`DEFAULT_REFRESH_AFTER`]).
    pub fn with_refresh_after(self, d: Duration) -> Self {
        Self { refresh_after: d, ..self }
    }

    /// `workspaces/<ws>/snapshots/<snapshot_id>.json`
    pub fn manifest_key(&self, snapshot_id: &str) -> String {
        format!("{}/snapshots/{snapshot_id}.json", self.prefix)
    }

    fn manifests_prefix(&self) -> String {
        format!("{}/snapshots/", self.prefix)
    }

    fn chunks_prefix(&self) -> String {
        format!("{}/chunks/", self.prefix)
    }

    /// Checks that `key` is a manifest key of this workspace.
    fn check_manifest_key(&self, key: &str) -> Result<(), SnapshotError> {
        let refuse = |why: String| SnapshotError::ManifestKey { key: key.to_string(), why };
        let Some(rest) = key.strip_prefix(&self.manifests_prefix()) else {
            return Err(refuse(format!("not under {}", self.manifests_prefix())));
        };
        let Some(id) = rest.strip_suffix(".json") else {
            return Err(refuse("a manifest key ends with .json".into()));
        };
        check_snapshot_id(id).map_err(refuse)
    }

    /// Writes the manifest (JSON) at [`Self::manifest_key`], reads it back and compares;
    /// returns its key. Called last, after every chunk is stored. Refuses (nothing written) an
    /// invalid snapshot id ([`SnapshotError::ManifestKey`]: 1 to 128 of `[A-Za-z0-9_.-]`, not
    /// starting with `.`) and a manifest [`Self::get_manifest`] would refuse
    /// ([`SnapshotError::BadManifest`]).
    pub async fn put_manifest(
        &self,
        snapshot_id: &str,
        m: &SnapshotManifest,
    ) -> Result<String, SnapshotError> {
        let key = self.manifest_key(snapshot_id);
        check_snapshot_id(snapshot_id)
            .map_err(|why| SnapshotError::ManifestKey { key: key.clone(), why })?;
        let bad = |why: String| SnapshotError::BadManifest { key: key.clone(), why };
        check_manifest(m).map_err(bad)?;
        let body = serde_json::to_vec(m).map_err(|e| bad(e.to_string()))?;
        self.blob.put(&key, body.clone(), "application/json").await?;
        if self.blob.get(&key).await? != body {
            return Err(bad("it did not read back as written".into()));
        }
        Ok(key)
    }

    /// Reads a manifest. Refuses, without reading anything, a key that is not a manifest key of
    /// this workspace ([`SnapshotError::ManifestKey`]: workspace isolation, a key from another
    /// workspace is never read); refuses JSON that does not parse, an unknown schema, a malformed
    /// hash, a chunk size outside 1..=[`CHUNK_MAX`], or chunk sizes that do not add up to its
    /// size ([`SnapshotError::BadManifest`]). A missing manifest is
    /// `SnapshotError::Storage(BlobError::NotFound)`.
    pub async fn get_manifest(&self, key: &str) -> Result<SnapshotManifest, SnapshotError> {
        self.check_manifest_key(key)?;
        let bytes = self.blob.get(key).await?;
        let bad = |why: String| SnapshotError::BadManifest { key: key.to_string(), why };
        #[derive(Deserialize)]
        struct Schema {
            schema: u32,
        }
        // The schema first: a newer manifest must say "unknown schema", not "missing field".
        let schema: Schema =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if schema.schema != MANIFEST_SCHEMA {
            return Err(bad(format!(
                "schema {} is not known (this build reads {MANIFEST_SCHEMA})",
                schema.schema
            )));
        }
        let m: SnapshotManifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        check_manifest(&m).map_err(bad)?;
        Ok(m)
    }

    /// Mark and sweep for this workspace. Reads every manifest in `live_manifest_keys` (if any
    /// cannot be read or is refused, returns that error and deletes nothing), then deletes the
    /// objects under the workspace's `chunks/` that no live manifest references and whose
    /// LastModified is older than now - `grace`, and the manifests under `snapshots/` that are
    /// not live and older than now - `grace`. Younger unreferenced objects belong to snapshots
    /// in flight and are kept. `grace` must exceed `refresh_after` plus the longest upload (and
    /// any clock skew with the S3 server). A failed deletion stops the sweep with its error;
    /// running it again is safe.
    pub async fn collect_garbage(
        &self,
        live_manifest_keys: &[String],
        grace: Duration,
    ) -> Result<GcReport, SnapshotError> {
        let mut live_chunks = HashSet::new();
        let mut live_manifests = HashSet::new();
        for key in live_manifest_keys {
            let m = self.get_manifest(key).await?;
            live_chunks.extend(m.chunks.iter().map(|c| self.chunk_key(&c.sha256)));
            live_manifests.insert(key.as_str());
        }
        let cutoff = now_ms().saturating_sub(duration_ms(grace));
        let mut report = GcReport::default();

        let mut doomed = Vec::new();
        for o in self.blob.list(&self.chunks_prefix()).await? {
            report.chunks_seen += 1;
            if live_chunks.contains(&o.key) {
                continue;
            }
            if o.last_modified < cutoff {
                report.chunks_deleted += 1;
                report.bytes_freed += o.size;
                doomed.push(o.key);
            } else {
                report.kept_recent += 1;
            }
        }
        for o in self.blob.list(&self.manifests_prefix()).await? {
            if !live_manifests.contains(o.key.as_str()) && o.last_modified < cutoff {
                report.manifests_deleted += 1;
                doomed.push(o.key);
            }
        }
        // Owned futures: borrowing ones make this future's `Send` depend on higher-ranked
        // lifetimes the compiler cannot prove (callers spawn it).
        let deletions = doomed.into_iter().map(|key| {
            let blob = self.blob.clone();
            async move { blob.delete(&key).await }
        });
        let mut deletions = futures::stream::iter(deletions).buffer_unordered(GC_PARALLEL_DELETES);
        while let Some(done) = deletions.next().await {
            done?;
        }
        Ok(report)
    }

    /// Where chunk `sha256` is stored.
    pub fn chunk_key(&self, sha256: &str) -> String {
        let fan = sha256.get(..2).unwrap_or("00");
        format!("{}/chunks/{fan}/{sha256}", self.prefix)
    }

    /// Cuts `source` into chunks, stores those not stored yet (and again those stored longer
    /// ago than `refresh_after`), reads each one it wrote back to check it, and returns the
    /// manifest. Nothing refers to the chunks until the caller writes the manifest, so a failed
    /// upload leaves only unreferenced chunks for garbage collection.
    pub async fn upload<R: AsyncRead + Unpin>(
        &self,
        source: R,
    ) -> Result<(SnapshotManifest, UploadStats), SnapshotError> {
        let mut chunker =
            fastcdc::v2020::AsyncStreamCDC::new(source, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
        let mut whole = Sha256::new();
        let mut chunks = Vec::new();
        let mut stats = UploadStats::default();
        let mut size = 0u64;
        let mut failed = None;
        // Chunks are cut and hashed in order; the storage round trips of up to IN_FLIGHT of
        // them (HEAD, then PUT and the read-back GET of a new one) overlap.
        {
            let stored = chunker
                .as_stream()
                .map(|chunk| {
                    let chunk = chunk.map_err(|e| SnapshotError::Source(e.to_string()));
                    if let Ok(c) = &chunk {
                        whole.update(&c.data);
                    }
                    async move { self.store_chunk(chunk?.data).await }
                })
                .buffered(IN_FLIGHT);
            let mut stored = std::pin::pin!(stored);
            while let Some(result) = stored.next().await {
                let (r, outcome) = match result {
                    Ok(done) => done,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                size += r.size;
                stats.chunks += 1;
                match outcome {
                    Stored::Reused => {}
                    Stored::New(bytes) => {
                        stats.new_chunks += 1;
                        stats.stored_bytes += bytes;
                    }
                    Stored::Refreshed(bytes) => {
                        stats.refreshed_chunks += 1;
                        stats.stored_bytes += bytes;
                    }
                }
                chunks.push(r);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let manifest = SnapshotManifest {
            schema: MANIFEST_SCHEMA,
            chunks,
            size,
            sha256: hex::encode(whole.finalize()),
        };
        Ok((manifest, stats))
    }

    /// Stores one chunk unless storage has it (recently enough), reading a written one back.
    async fn store_chunk(&self, data: Vec<u8>) -> Result<(ChunkRef, Stored), SnapshotError> {
        let r = ChunkRef { sha256: sha256_hex(&data), size: data.len() as u64 };
        let key = self.chunk_key(&r.sha256);
        let refresh_after = duration_ms(self.refresh_after);
        let fresh = match self.blob.head(&key).await? {
            None => true,
            Some(info) if now_ms().saturating_sub(info.last_modified) > refresh_after => false,
            Some(_) => return Ok((r, Stored::Reused)),
        };
        let packed = pack_chunk(&data)?;
        let bytes = packed.len() as u64;
        self.blob.put(&key, packed, "application/zstd").await?;
        // Read it back: what storage acknowledged is not always what it keeps.
        unpack_chunk(&self.blob.get(&key).await?, &r)?;
        Ok((r, if fresh { Stored::New(bytes) } else { Stored::Refreshed(bytes) }))
    }

    /// Checks that every chunk of `manifest` is stored and holds what it should, without
    /// writing anything anywhere.
    pub async fn verify(&self, manifest: &SnapshotManifest) -> Result<(), SnapshotError> {
        self.read(manifest, tokio::io::sink()).await.map(|_| ())
    }

    /// Removes chunk `r` if storage holds it damaged (it reads, but not as what its name
    /// says), so that the next upload of the same content stores it again, healing every
    /// snapshot that refers to it. A chunk that is missing or cannot be read right now is
    /// left alone. Returns whether it was removed.
    pub async fn remove_if_damaged(&self, r: &ChunkRef) -> Result<bool, SnapshotError> {
        let key = self.chunk_key(&r.sha256);
        let stored = match self.blob.get(&key).await {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(SnapshotError::Storage(e)),
        };
        if unpack_chunk(&stored, r).is_ok() {
            return Ok(false);
        }
        self.blob.delete(&key).await?;
        Ok(true)
    }

    /// Writes the stream of `manifest` to `sink`, checking every chunk and the whole stream on
    /// the way; stops at the first problem (the caller must then discard what it received).
    pub async fn read<W: AsyncWrite + Unpin>(
        &self,
        manifest: &SnapshotManifest,
        mut sink: W,
    ) -> Result<u64, SnapshotError> {
        let mut whole = Sha256::new();
        let mut written = 0u64;
        // Up to IN_FLIGHT chunks are fetched ahead; each is checked and written in order.
        let fetched = futures::stream::iter(manifest.chunks.iter().cloned())
            .map(|r| async move {
                match self.blob.get(&self.chunk_key(&r.sha256)).await {
                    Ok(bytes) => Ok((r, bytes)),
                    Err(BlobError::NotFound { .. }) => Err(SnapshotError::Corrupt {
                        sha256: r.sha256.clone(),
                        why: "is missing from storage".into(),
                    }),
                    // A failed request says nothing about the chunk: the caller may retry.
                    Err(e) => Err(SnapshotError::Storage(e)),
                }
            })
            .buffered(IN_FLIGHT);
        let mut fetched = std::pin::pin!(fetched);
        while let Some(next) = fetched.next().await {
            let (r, stored) = next?;
            let plain = unpack_chunk(&stored, &r)?;
            whole.update(&plain);
            sink.write_all(&plain).await.map_err(|e| SnapshotError::Sink(e.to_string()))?;
            written += plain.len() as u64;
        }
        sink.flush().await.map_err(|e| SnapshotError::Sink(e.to_string()))?;
        let got = hex::encode(whole.finalize());
        if written != manifest.size || got != manifest.sha256 {
            return Err(SnapshotError::Corrupt {
                sha256: manifest.sha256.clone(),
                why: format!("the whole stream is {written} bytes hashing to {got}"),
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_any_flipped_byte_is_caught() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let r = ChunkRef { sha256: sha256_hex(&data), size: data.len() as u64 };
        let stored = pack_chunk(&data).unwrap();
        assert_eq!(unpack_chunk(&stored, &r).unwrap(), data);
        let mut flipped = stored.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        let err = unpack_chunk(&flipped, &r).unwrap_err();
        assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
        let wrong = ChunkRef { sha256: sha256_hex(b"other"), size: r.size };
        assert!(unpack_chunk(&stored, &wrong).unwrap_err().to_string().contains("hashes to"));
        let short = ChunkRef { sha256: r.sha256.clone(), size: r.size - 1 };
        assert!(unpack_chunk(&stored, &short).is_err());
    }

    #[test]
    fn snapshot_ids_and_manifests_are_checked() {
        for ok in ["snap-1", "01J9Z.x_y", "a"] {
            assert!(check_snapshot_id(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(SNAPSHOT_ID_MAX + 1);
        for bad in ["", ".", "..", ".x", "a/b", "a\\b", "é", "a b", long.as_str()] {
            assert!(check_snapshot_id(bad).is_err(), "{bad:?}");
        }
        let h = sha256_hex(b"x");
        let chunk = |size| ChunkRef { sha256: h.clone(), size };
        let m = SnapshotManifest {
            schema: MANIFEST_SCHEMA,
            chunks: vec![chunk(3), chunk(u64::from(CHUNK_MAX))],
            size: 3 + u64::from(CHUNK_MAX),
            sha256: h.clone(),
        };
        assert_eq!(check_manifest(&m), Ok(()));
        let empty = SnapshotManifest { chunks: vec![], size: 0, ..m.clone() };
        assert_eq!(check_manifest(&empty), Ok(()));
        let broken: [fn(&mut SnapshotManifest); 6] = [
            |m| m.size += 1,
            |m| m.schema = 2,
            |m| m.sha256 = m.sha256.to_uppercase(),
            |m| m.chunks[0].sha256.push('0'),
            |m| m.chunks[0].size = 0,
            |m| m.chunks[1].size += 1,
        ];
        for f in broken {
            let mut b = m.clone();
            f(&mut b);
            assert!(check_manifest(&b).is_err(), "{b:?}");
        }
    }
}
