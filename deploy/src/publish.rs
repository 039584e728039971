//! Publishing a catalog revision to the Cloudflare runtime target: render the Wrangler project,
//! check it with the pinned wrangler's dry run, and deploy it only when credentials are given
//! (docs/catalog.md, "Deploying for real").
//!
//! The bundle directory is the deployment's memory: its `wrangler.jsonc` holds the migration
//! history Cloudflare has applied, and its `catalog.toml` the revision last published. A new
//! bundle is prepared in `<dir>/.staging` (from the current config), checked, deployed, and only
//! then moved into place, so a failed check or deploy leaves the published bundle as it was.
//! A lock file serialises publishers, and a revision older than the one published is skipped,
//! so two promotions finishing out of order never move the target backwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use domain::store::CatalogDocument;

use crate::cloudflare::{CONFIG_FILE, CloudflareTarget, WORKER_FILE, write_bundle};

/// The catalog file kept next to the Wrangler project: the revision published.
pub const CATALOG_FILE: &str = "catalog.toml";

/// Credentials for a real `wrangler deploy`. Never logged.
pub struct Credentials {
    pub account_id: String,
    pub api_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("account_id", &self.account_id).finish_non_exhaustive()
    }
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Checked with the dry run; deployed too when `deployed`.
    Done { revision: u64, deployed: bool },
    /// The bundle directory already holds this revision or a newer one: nothing was written.
    Skipped { published: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Io(String),
    /// The pinned wrangler is not installed where configured.
    #[error(
        "{0} has no node_modules/.bin/wrangler: run `make setup` (npm ci --prefix deploy/cloudflare) or set cloudflare.wrangler_dir"
    )]
    NoWrangler(PathBuf),
    /// `wrangler deploy --dry-run` refused the generated project: a defect, not retryable.
    #[error("wrangler deploy --dry-run refused revision {revision}: {output}")]
    Invalid { revision: u64, output: String },
    /// The real deploy failed (network, credentials, Cloudflare): worth retrying.
    #[error("wrangler deploy of revision {revision} failed: {output}")]
    Deploy { revision: u64, output: String },
}

fn io(what: &str, path: &Path, e: std::io::Error) -> PublishError {
    PublishError::Io(format!("{what} {}: {e}", path.display()))
}

/// The revision in a bundle directory's `catalog.toml`, if it has one.
pub fn published_revision(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(CATALOG_FILE)).ok()?;
    crate::catalog::parse(&text).ok().map(|d| d.revision)
}

/// Renders `doc` into `dir`, checks it with `wrangler deploy --dry-run`, and deploys it when
/// `credentials` are given. Blocking (it runs wrangler): call it from a blocking task.
pub fn publish(
    dir: &Path,
    doc: &CatalogDocument,
    target: &CloudflareTarget,
    wrangler_dir: &Path,
    credentials: Option<&Credentials>,
) -> Result<Published, PublishError> {
    let wrangler = wrangler_dir.join("node_modules/.bin/wrangler");
    if !wrangler.exists() {
        return Err(PublishError::NoWrangler(wrangler_dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io("opening", &lock_path, e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io("locking", &lock_path, e.into()))?;

    if let Some(published) = published_revision(dir).filter(|p| *p >= doc.revision) {
        return Ok(Published::Skipped { published });
    }

    // Prepare in .staging, starting from the published config (its migration history).
    let staging = dir.join(".staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io("clearing", &staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io("creating", &staging, e))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        std::fs::copy(&config, staging.join(CONFIG_FILE)).map_err(|e| io("copying", &config, e))?;
    }
    write_bundle(&staging, doc, target).map_err(|e| io("writing the bundle in", &staging, e))?;
    std::fs::write(staging.join(CATALOG_FILE), crate::catalog::render(doc))
        .map_err(|e| io("writing", &staging, e))?;
    let modules = std::fs::canonicalize(wrangler_dir.join("node_modules"))
        .map_err(|e| io("finding", wrangler_dir, e))?;
    std::os::unix::fs::symlink(&modules, staging.join("node_modules"))
        .map_err(|e| io("linking node_modules into", &staging, e))?;

    let home = staging.join(".home");
    std::fs::create_dir_all(&home).map_err(|e| io("creating", &home, e))?;
    let dist = staging.join(".dist");
    let (ok, output) = run_wrangler(&wrangler, &staging, &home, None, |c| {
        c.args(["deploy", "--dry-run", "--outdir"]).arg(&dist);
    })?;
    if !ok {
        return Err(PublishError::Invalid { revision: doc.revision, output });
    }
    let deployed = match credentials {
        Some(creds) => {
            let (ok, output) = run_wrangler(&wrangler, &staging, &home, Some(creds), |c| {
                c.arg("deploy");
            })?;
            if !ok {
                return Err(PublishError::Deploy { revision: doc.revision, output });
            }
            true
        }
        None => false,
    };

    // Checked (and deployed): move it into place, the catalog file last.
    let worker_dir = dir.join("worker");
    std::fs::create_dir_all(&worker_dir).map_err(|e| io("creating", &worker_dir, e))?;
    for file in [WORKER_FILE, CONFIG_FILE, CATALOG_FILE] {
        let from = staging.join(file);
        std::fs::rename(&from, dir.join(file)).map_err(|e| io("moving", &from, e))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(Published::Done { revision: doc.revision, deployed })
}

/// Runs wrangler in `dir` with nothing that would reach the network unless deploying: no
/// metrics, no error reports, no update check (it hides with the banner), settings and logs in
/// `home`. Answers whether it succeeded and its output (which never holds the token: it is
/// passed in the environment only).
fn run_wrangler(
    wrangler: &Path,
    dir: &Path,
    home: &Path,
    credentials: Option<&Credentials>,
    args: impl FnOnce(&mut Command),
) -> Result<(bool, String), PublishError> {
    let mut cmd = Command::new(wrangler);
    args(&mut cmd);
    cmd.current_dir(dir)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("WRANGLER_HIDE_BANNER", "true")
        .env("WRANGLER_LOG_PATH", home.join("logs"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home)
        .env("CI", "true")
        .env_remove("CLOUDFLARE_API_KEY")
        .env_remove("CLOUDFLARE_API_TOKEN")
        .env_remove("CLOUDFLARE_ACCOUNT_ID");
    if let Some(c) = credentials {
        cmd.env("CLOUDFLARE_API_TOKEN", &c.api_token).env("CLOUDFLARE_ACCOUNT_ID", &c.account_id);
    }
    let out = cmd.output().map_err(|e| io("running", wrangler, e))?;
    let mut text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if let Some(c) = credentials.filter(|c| !c.api_token.is_empty()) {
        text = text.replace(&c.api_token, "[redacted]");
    }
    let tail: String = {
        let chars: Vec<char> = text.trim().chars().collect();
        chars[chars.len().saturating_sub(4000)..].iter().collect()
    };
    Ok((out.status.success(), tail))
}
