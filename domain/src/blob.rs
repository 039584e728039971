//! The blob store: template bundles, build logs and snapshots in any S3 API (the server
//! embedded in `burstflare dev`, R2, Garage, MinIO or AWS), always through aws-sdk-s3.

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use secrecy::ExposeSecret;

use crate::config::StorageConfig;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("storage request {op} failed: {message}")]
    Request { op: &'static str, message: String },
}

fn request_err<E: ProvideErrorMetadata + std::fmt::Debug>(op: &'static str, e: E) -> BlobError {
    let message = match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{e:?}").chars().take(300).collect(),
    };
    BlobError::Request { op, message }
}

/// Attempts per request (the first one included): the SDK's standard retries (throttling, 5xx,
/// timeouts and connection errors) with exponential backoff and full jitter from
/// [`INITIAL_BACKOFF`] (so at most 0.2 + 0.4 + 0.8 s of waiting). Bodies are in memory, so a
/// retried `PUT` sends them again as they are. Longer outages are the callers' (workflow
/// activities') retries.
const MAX_ATTEMPTS: u32 = 4;
const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
/// Keys per `ListObjectsV2` page (the S3 maximum).
const LIST_PAGE: i32 = 1000;

/// One stored object, as `HeadObject` or `ListObjectsV2` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// unix ms
    pub last_modified: i64,
}

fn millis(op: &'static str, key: &str, t: Option<&DateTime>) -> Result<i64, BlobError> {
    t.and_then(|t| t.to_millis().ok()).ok_or_else(|| BlobError::Request {
        op,
        message: format!("no usable LastModified for {key}"),
    })
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl BlobStore {
    pub fn new(cfg: &StorageConfig) -> Self {
        let creds = Credentials::new(
            cfg.access_key_id.clone(),
            cfg.secret_access_key.expose_secret().to_string(),
            None,
            None,
            "burstflare-config",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .endpoint_url(cfg.endpoint.as_str().trim_end_matches('/'))
            .credentials_provider(creds)
            .force_path_style(cfg.force_path_style)
            // Everything read is checked against its own sha256 by the caller (chunks, bundles),
            // which names what is damaged; the SDK's checksum check would only turn that into an
            // anonymous streaming error.
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .build();
        Self { client: aws_sdk_s3::Client::from_conf(conf), bucket: cfg.bucket.clone() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists already (used by `burstflare dev`; production
    /// buckets are created by the operator).
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        if self.check().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = e.into_service_error();
                if matches!(err.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) {
                    Ok(())
                } else {
                    Err(request_err("CreateBucket", err))
                }
            }
        }
    }

    /// Whether the bucket is reachable with our credentials (the health check).
    pub async fn check(&self) -> Result<(), BlobError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_err("HeadBucket", e.into_service_error()))
    }

    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_err("PutObject", e.into_service_error()))
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let out =
            self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
                let err = e.into_service_error();
                if err.is_no_such_key() {
                    BlobError::NotFound { key: key.to_string() }
                } else {
                    request_err("GetObject", err)
                }
            })?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Request { op: "GetObject", message: e.to_string() })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Deleting a key that does not exist succeeds (S3 semantics), so this is idempotent.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_err("DeleteObject", e.into_service_error()))
    }

    /// A presigned `PUT` for `key` that accepts a body of exactly `size` bytes until
    /// `expires_in` has passed: `Content-Length` is one of the signed headers, so the store
    /// refuses any other size. Returns the URL (it carries a signature: never log it) and the
    /// headers the uploader must send as they are.
    pub async fn presign_put(
        &self,
        key: &str,
        size: u64,
        content_type: &str,
        expires_in: std::time::Duration,
    ) -> Result<PresignedPut, BlobError> {
        let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| BlobError::Request { op: "PresignPutObject", message: e.to_string() })?;
        let length = i64::try_from(size).map_err(|_| BlobError::Request {
            op: "PresignPutObject",
            message: format!("size {size} is too large"),
        })?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length)
            .content_type(content_type)
            .presigned(cfg)
            .await
            .map_err(|e| BlobError::Request { op: "PresignPutObject", message: e.to_string() })?;
        let mut headers: Vec<(String, String)> =
            req.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
            headers.push(("content-length".into(), size.to_string()));
        }
        headers.sort();
        Ok(PresignedPut { url: req.uri().to_string(), headers })
    }

    /// The size of `key`, or `None` if it does not exist.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.head(key).await?.map(|info| info.size))
    }

    /// Size and LastModified of `key`, or `None` if it does not exist. A server that gives no
    /// LastModified is an error (nothing could judge the object's age).
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BlobError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                last_modified: millis("HeadObject", key, out.last_modified())?,
            })),
            Err(e) => {
                let err = e.into_service_error();
                if err.is_not_found() { Ok(None) } else { Err(request_err("HeadObject", err)) }
            }
        }
    }

    /// Every object under `prefix` (all pages), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        self.list_pages(prefix, LIST_PAGE).await
    }

    async fn list_pages(&self, prefix: &str, page: i32) -> Result<Vec<ObjectInfo>, BlobError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(page)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| request_err("ListObjectsV2", e.into_service_error()))?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                objects.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: millis("ListObjectsV2", key, o.last_modified())?,
                });
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            let next = out.next_continuation_token().map(str::to_string);
            // A truncated page without a new token would list the same page forever.
            if next.is_none() || next == token {
                return Err(BlobError::Request {
                    op: "ListObjectsV2",
                    message: format!(
                        "a truncated listing of {prefix} without a new continuation token"
                    ),
                });
            }
            token = next;
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        Ok(objects)
    }

    /// Up to `max` keys under `prefix` that sort after `start_after`, in key order.
    pub async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: i32,
    ) -> Result<Vec<String>, BlobError> {
        let mut req =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).max_keys(max);
        if let Some(after) = start_after {
            req = req.start_after(after);
        }
        let out =
            req.send().await.map_err(|e| request_err("ListObjectsV2", e.into_service_error()))?;
        let mut keys: Vec<String> =
            out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        keys.sort();
        Ok(keys)
    }
}

/// A presigned upload: `PUT` the body to `url` with exactly these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
}
