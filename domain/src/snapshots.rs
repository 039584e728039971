//! Content-addressed snapshot storage (issue 9, docs/snapshots.md).
//!
//! A snapshot is the agent's deterministic tar stream of a session's persisted paths. It is cut
//! into content-defined chunks (FastCDC: unchanged files give the same chunks, so a later snapshot
//! uploads only what changed), each stored zstd-compressed under the sha256 of its plain bytes in
//! the workspace's prefix, `workspaces/<ws>/chunks/<aa>/<sha256>`. Every chunk this upload wrote
//! is read back and checked before the manifest, which lists the chunks in order, is returned;
//! the caller writes the manifest last and only then moves the session's latest pointer.
//! Reading verifies every chunk's size and hash and fails loudly on the first mismatch.

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
    /// Compressed bytes written.
    pub stored_bytes: u64,
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
}

/// The chunks of one workspace.
#[derive(Clone)]
pub struct ChunkStore {
    blob: BlobStore,
    prefix: String,
}

/// `sha256(data)` in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
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
        Self { blob, prefix: format!("workspaces/{workspace}") }
    }

    /// Where chunk `sha256` is stored.
    pub fn chunk_key(&self, sha256: &str) -> String {
        let fan = sha256.get(..2).unwrap_or("00");
        format!("{}/chunks/{fan}/{sha256}", self.prefix)
    }

    /// Cuts `source` into chunks, stores those not stored yet, reads each new one back to check
    /// it, and returns the manifest. Nothing refers to the chunks until the caller writes the
    /// manifest, so a failed upload leaves only unreferenced chunks for garbage collection.
    pub async fn upload<R: AsyncRead + Unpin>(
        &self,
        source: R,
    ) -> Result<(SnapshotManifest, UploadStats), SnapshotError> {
        let mut chunker =
            fastcdc::v2020::AsyncStreamCDC::new(source, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
        let mut stream = std::pin::pin!(chunker.as_stream());
        let mut whole = Sha256::new();
        let mut chunks = Vec::new();
        let mut stats = UploadStats::default();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SnapshotError::Source(e.to_string()))?;
            whole.update(&chunk.data);
            let r = ChunkRef { sha256: sha256_hex(&chunk.data), size: chunk.data.len() as u64 };
            size += r.size;
            stats.chunks += 1;
            let key = self.chunk_key(&r.sha256);
            if self.blob.size_of(&key).await?.is_none() {
                let stored = pack_chunk(&chunk.data)?;
                stats.stored_bytes += stored.len() as u64;
                stats.new_chunks += 1;
                self.blob.put(&key, stored, "application/zstd").await?;
                // Read it back: what storage acknowledged is not always what it keeps.
                unpack_chunk(&self.blob.get(&key).await?, &r)?;
            }
            chunks.push(r);
        }
        let manifest = SnapshotManifest {
            schema: MANIFEST_SCHEMA,
            chunks,
            size,
            sha256: hex::encode(whole.finalize()),
        };
        Ok((manifest, stats))
    }

    /// Checks that every chunk of `manifest` is stored and holds what it should, without
    /// writing anything anywhere.
    pub async fn verify(&self, manifest: &SnapshotManifest) -> Result<(), SnapshotError> {
        self.read(manifest, tokio::io::sink()).await.map(|_| ())
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
        for r in &manifest.chunks {
            let stored = match self.blob.get(&self.chunk_key(&r.sha256)).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Err(SnapshotError::Corrupt {
                        sha256: r.sha256.clone(),
                        why: format!("cannot be read ({e})"),
                    });
                }
            };
            let plain = unpack_chunk(&stored, r)?;
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
}
