//! The blob store: template bundles, build logs and snapshots in any S3 API (the server
//! embedded in `burstflare dev`, R2, Garage, MinIO or AWS), always through aws-sdk-s3.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
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
}
