//! Promotion activities (issue 10, docs/catalog.md): the control plane records a promotion's
//! steps, changes the runtime catalog (one revision per change, idempotent by the workflow's
//! change key) and lists the runtime hosts; each node pre-pulls the promoted image and runs a
//! canary's smoke command. The canary container itself reuses the session activities
//! (`session.ensure_container`, `session.start_container`, `session.remove_containers`).

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::ActivityError;

use domain::Store;
use domain::ids::{TemplateId, TemplateVersionId, UserId, WorkspaceId};
use domain::store::{AuditEntry, PromotionUpdate};

use crate::snapshot::non_retryable;

/// Input of `promotion.update`: where a promotion is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionStep {
    pub promotion_id: String,
    pub workspace_id: String,
    pub template_id: String,
    /// running, awaiting_approval, succeeded, rolled_back, failed or cancelled.
    pub status: Option<String>,
    pub step: Option<String>,
    /// `Some(None)` clears it.
    pub error: Option<Option<String>>,
    /// Per-node rollout progress.
    pub progress: Option<serde_json::Value>,
    /// Workflow time (unix ms).
    pub at: i64,
}

/// Input of `catalog.set` / `catalog.clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSet {
    pub template_id: String,
    /// `None` removes the template from the catalog (archive).
    pub version_id: Option<String>,
    /// promote, demote, rollback, archive, or `rollback-after-failure`.
    pub reason: String,
    /// The workflow id and step: the same key never makes a second revision.
    pub change_key: String,
    pub actor: Option<String>,
}

/// What a catalog change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSetResult {
    pub revision: u64,
    pub previous_version_id: Option<String>,
    pub changed: bool,
}

/// Input of `promotion.smoke` (node): the canary's smoke command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeTest {
    pub container: String,
    pub command: String,
    pub timeout_secs: u64,
}

fn store_err(e: domain::StoreError) -> ActivityError {
    match e {
        domain::StoreError::Database(_) => anyhow::anyhow!("{:#}", anyhow::Error::from(e)).into(),
        other => non_retryable(other.to_string()),
    }
}

fn parse<T>(r: Result<T, domain::ids::IdError>) -> Result<T, ActivityError> {
    r.map_err(|e| non_retryable(e.to_string()))
}

const FINAL: [&str; 4] = ["succeeded", "rolled_back", "failed", "cancelled"];

pub(crate) async fn update(store: &Store, p: &PromotionStep) -> Result<(), ActivityError> {
    let before = store.promotion(&p.promotion_id).await.map_err(store_err)?;
    let u = PromotionUpdate {
        status: p.status.as_deref(),
        step: p.step.as_deref(),
        error: p.error.as_ref().map(|e| e.as_deref()),
        progress: p.progress.as_ref(),
        at: p.at,
    };
    let after = store.update_promotion(&p.promotion_id, &u).await.map_err(store_err)?;
    // One audit event when it ends (a retried update finds it final already).
    let ended = FINAL.contains(&after.status.as_str());
    if ended && before.is_some_and(|b| !FINAL.contains(&b.status.as_str())) {
        let ws = parse(WorkspaceId::parse(&p.workspace_id))?;
        let mut entry = AuditEntry::new(format!("template.{}.{}", after.kind, after.status))
            .workspace(&ws)
            .target("template", p.template_id.as_str())
            .detail(serde_json::json!({
                "promotion": after.id,
                "version_id": after.version_id.to_string(),
                "error": after.error,
                "approved_by": after.approved_by.as_ref().map(ToString::to_string),
            }));
        if let Some(by) = &after.requested_by {
            entry = entry.actor(by);
        }
        store.append_audit(&entry).await.map_err(store_err)?;
    }
    Ok(())
}

pub(crate) async fn set_catalog(
    store: &Store,
    c: &CatalogSet,
) -> Result<CatalogSetResult, ActivityError> {
    let template = parse(TemplateId::parse(&c.template_id))?;
    let actor = parse(c.actor.as_deref().map(UserId::parse).transpose())?;
    let change = match &c.version_id {
        Some(v) => {
            let version = parse(TemplateVersionId::parse(v))?;
            store
                .set_catalog_version(&template, &version, &c.reason, &c.change_key, actor.as_ref())
                .await
        }
        None => {
            store.clear_catalog_version(&template, &c.reason, &c.change_key, actor.as_ref()).await
        }
    }
    .map_err(store_err)?;
    Ok(CatalogSetResult {
        revision: change.revision,
        previous_version_id: change.previous_version_id,
        changed: change.changed,
    })
}

/// The runtime hosts seen in the last 90 s: where a rollout must pre-pull.
pub(crate) async fn live_nodes(store: &Store) -> Result<Vec<String>, ActivityError> {
    let since = domain::store::now_ms() - 90_000;
    let nodes = store.live_nodes(since).await.map_err(store_err)?;
    let mut ids: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
    ids.sort();
    Ok(ids)
}

/// Input of `template.archive`: the template stops offering new sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveTemplate {
    pub workspace_id: String,
    pub template_id: String,
    pub actor: Option<String>,
    pub promotion_id: String,
}

/// Marks the template archived (no new sessions; running ones keep going) and audits
/// `template.archived` the first time. Idempotent: a template archived already is left as it is.
pub(crate) async fn archive_template(
    store: &Store,
    a: &ArchiveTemplate,
) -> Result<(), ActivityError> {
    let ws = parse(WorkspaceId::parse(&a.workspace_id))?;
    let template = parse(TemplateId::parse(&a.template_id))?;
    let (t, changed) = store.archive_template(&ws, &template).await.map_err(store_err)?;
    if changed {
        let mut entry = AuditEntry::new("template.archived")
            .workspace(&ws)
            .target("template", a.template_id.as_str())
            .detail(serde_json::json!({ "name": t.name, "promotion": a.promotion_id }));
        if let Some(by) = parse(a.actor.as_deref().map(UserId::parse).transpose())? {
            entry = entry.actor(&by);
        }
        store.append_audit(&entry).await.map_err(store_err)?;
    }
    Ok(())
}

/// The Cloudflare runtime target, from `[cloudflare]` (docs/catalog.md).
#[derive(Clone)]
pub struct CloudflarePublisher {
    pub bundle_dir: std::path::PathBuf,
    pub wrangler_dir: std::path::PathBuf,
    pub target: deploy::cloudflare::CloudflareTarget,
    /// (account id, API token) when the bundle is deployed for real.
    pub credentials: Option<(String, String)>,
}

impl CloudflarePublisher {
    /// The publisher `[cloudflare]` asks for, if any (`bundle_dir` set).
    pub fn from_config(c: &domain::config::CloudflareConfig) -> Option<Self> {
        use secrecy::ExposeSecret;
        let bundle_dir = c.bundle_dir.clone()?;
        let credentials = c
            .deploys()
            .then(|| c.account_id.clone().map(|a| (a, c.api_token.expose_secret().to_string())))
            .flatten();
        Some(Self {
            bundle_dir,
            wrangler_dir: c.wrangler_dir.clone(),
            target: deploy::cloudflare::CloudflareTarget {
                worker_name: c.worker_name.clone(),
                account_id: c.account_id.clone(),
                max_instances: c.max_instances,
            },
            credentials,
        })
    }
}

/// What `catalog.publish` did: `off` (no Cloudflare target), `checked` (rendered and dry-run),
/// `deployed`, or `skipped` (this revision or a newer one was published already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    pub outcome: String,
    pub revision: u64,
}

pub(crate) async fn publish(
    store: &Store,
    cloudflare: Option<&CloudflarePublisher>,
) -> Result<PublishResult, ActivityError> {
    let doc = store.catalog().await.map_err(store_err)?;
    let Some(cf) = cloudflare.cloned() else {
        return Ok(PublishResult { outcome: "off".into(), revision: doc.revision });
    };
    let revision = doc.revision;
    let done = tokio::task::spawn_blocking(move || {
        let creds = cf.credentials.as_ref().map(|(a, t)| deploy::publish::Credentials {
            account_id: a.clone(),
            api_token: t.clone(),
        });
        deploy::publish::publish(&cf.bundle_dir, &doc, &cf.target, &cf.wrangler_dir, creds.as_ref())
    })
    .await
    .map_err(|e| anyhow::anyhow!("publishing the catalog: {e}"))?;
    use deploy::publish::{PublishError, Published};
    match done {
        Ok(Published::Done { revision, deployed }) => Ok(PublishResult {
            outcome: if deployed { "deployed" } else { "checked" }.into(),
            revision,
        }),
        Ok(Published::Skipped { published }) => {
            Ok(PublishResult { outcome: "skipped".into(), revision: published.max(revision) })
        }
        // A refused project or a missing wrangler does not get better by retrying.
        Err(e @ (PublishError::Invalid { .. } | PublishError::NoWrangler(_))) => {
            Err(non_retryable(format!("the Cloudflare target: {e}")))
        }
        Err(e) => Err(anyhow::anyhow!("the Cloudflare target: {e}").into()),
    }
}
