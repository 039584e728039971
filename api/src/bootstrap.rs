//! `burstflare admin bootstrap`: the first account of a headless install.

use serde::Serialize;

use domain::Store;
use domain::ids::{DisplayName, Email};
use domain::secrets::{self, SecretKind};
use domain::store::{AuditEntry, now_ms};

#[derive(Debug, Serialize)]
pub struct Bootstrapped {
    pub user_id: String,
    pub email: String,
    pub workspace: String,
    /// The API token's secret: printed once, stored hashed.
    pub token: String,
    pub recovery_codes: Vec<String>,
}

pub async fn run(
    store: &Store,
    email: &str,
    name: Option<&str>,
    force: bool,
    token_days: u32,
) -> anyhow::Result<Bootstrapped> {
    let email = Email::parse(email)?;
    let default_name = email.as_str().split('@').next().unwrap_or("owner").to_string();
    let name = DisplayName::parse(name.unwrap_or(&default_name))?;
    if !(1..=366).contains(&token_days) {
        anyhow::bail!("--token-days: must be between 1 and 366");
    }
    let users = store.count_users().await?;
    if users > 0 && !force {
        anyhow::bail!(
            "the database already has {users} user(s): bootstrap creates the first one only \
             (pass --force to create another account anyway)"
        );
    }
    let (user, workspace) =
        store.create_user_with_personal_workspace(&email, &name).await.map_err(|e| match e {
            domain::StoreError::Conflict { .. } => {
                anyhow::anyhow!("--email: an account with {email} exists already")
            }
            other => other.into(),
        })?;
    let now = now_ms();
    let (token, hash) = secrets::generate(SecretKind::ApiToken);
    let t = store
        .create_api_token(
            &user.id,
            "bootstrap",
            &hash,
            now,
            Some(now + i64::from(token_days) * 86_400_000),
        )
        .await?;
    let codes = secrets::recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|(_, h)| h.clone()).collect();
    store.replace_recovery_codes(&user.id, &hashes, now).await?;
    store
        .append_audit(
            &AuditEntry::new("auth.bootstrap")
                .actor(&user.id)
                .workspace(&workspace.id)
                .target("api_token", t.id.to_string())
                .detail(serde_json::json!({ "forced": force, "token_days": token_days })),
        )
        .await?;
    Ok(Bootstrapped {
        user_id: user.id.to_string(),
        email: email.to_string(),
        workspace: workspace.slug.to_string(),
        token,
        recovery_codes: codes.into_iter().map(|(c, _)| c).collect(),
    })
}
