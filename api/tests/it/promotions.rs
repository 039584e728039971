//! Promotions end to end (docs/catalog.md): the API starts `TemplatePromotion` on the real
//! Temporal dev server; canaries are real containers on the local Docker engine from images the
//! real build pipeline pushed to the local registry; the catalog is the real database; new
//! sessions get what the catalog says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::json;

use crate::sessions::{Stack, stack_with};

/// Uploads `deploy/templates/devbox` as a new version of template `name` (created when missing),
/// after `edit` changed the bundle directory, and waits for its build. Returns the version.
async fn upload(s: &Stack, name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox");
    for entry in std::fs::read_dir(&sample).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let manifest = dir.path().join("burstflare.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("name = \"devbox\"", &format!("name = \"{name}\"")))
        .unwrap();
    edit(dir.path());
    let packed = sdk::bundle::pack(dir.path(), &sdk::bundle::Limits::default()).unwrap();
    let body = sdk::CreateVersion {
        size: packed.size,
        sha256: packed.sha256.clone(),
        create_template: true,
        description: String::new(),
    };
    let ticket = s.client.create_version(&s.ws, name, &body).await.unwrap();
    let mut req = reqwest::Client::new().put(&ticket.upload_url);
    for (k, v) in &ticket.headers {
        if !k.eq_ignore_ascii_case("content-length") {
            req = req.header(k, v);
        }
    }
    assert!(req.body(packed.bytes).send().await.unwrap().status().is_success());
    let version = ticket.version.version.clone();
    let confirmed = s.client.confirm_version(&s.ws, name, &version).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let b = s.client.build(&s.ws, &confirmed.build.id).await.unwrap();
        if b.status == "succeeded" {
            return version;
        }
        assert!(!sdk::build_is_final(&b.status), "build {}: {:?}", b.status, b.error);
        assert!(Instant::now() < deadline, "build still {}", b.status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Appends `text` to the bundle file `file`.
fn append(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    let mut content = std::fs::read_to_string(&path).unwrap();
    content.push('\n');
    content.push_str(text);
    std::fs::write(&path, content).unwrap();
}

/// Waits until promotion `id` has ended.
async fn finished(s: &Stack, id: &str) -> sdk::Promotion {
    wait_for(s, id, |p| sdk::promotion_is_final(&p.status), Duration::from_secs(300)).await
}

async fn wait_for(
    s: &Stack,
    id: &str,
    done: impl Fn(&sdk::Promotion) -> bool,
    within: Duration,
) -> sdk::Promotion {
    let deadline = Instant::now() + within;
    loop {
        let p = s.client.promotion(&s.ws, id).await.unwrap();
        if done(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline && !(sdk::promotion_is_final(&p.status)),
            "promotion never got there: {p:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The template's catalog entry, as the API shows it.
async fn entry(s: &Stack, template: &str) -> Option<sdk::CatalogEntryView> {
    s.client.catalog(&s.ws).await.unwrap().entries.into_iter().find(|e| e.template == template)
}

async fn revision(s: &Stack) -> u64 {
    s.client.catalog(&s.ws).await.unwrap().revision
}

async fn session(s: &Stack, template: &str, name: &str) -> sdk::SessionDetail {
    let d = s.create(template, name).await.unwrap();
    assert_eq!(d.state, "running", "{d:?}");
    d
}

/// The image of the session's running container.
async fn image_of(session_id: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=burstflare.session={session_id}"),
            "--format",
            "{{.Image}}",
        ])
        .output()
        .await
        .unwrap();
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!image.is_empty() && !image.contains('\n'), "one running container: {image:?}");
    image
}

/// Containers (running or not) labelled with `id` as their session: a canary's.
async fn containers_of(id: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=burstflare.session={id}"), "-q"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn status_of(e: &sdk::ClientError) -> u16 {
    e.status().unwrap_or(0)
}

fn field_of(e: &sdk::ClientError) -> String {
    match e {
        sdk::ClientError::Api { error, .. } => {
            error.details["field"].as_str().unwrap_or_default().to_string()
        }
        _ => String::new(),
    }
}

/// Lifts the free plan's session limits for the stack's workspace: these tests run several.
async fn lift_limits(s: &Stack) {
    sqlx::query(
        "INSERT INTO quotas (workspace_id, plan_id, overrides_json, updated_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(s.ws_id().await)
    .bind(domain::store::FREE_PLAN_ID)
    .bind(r#"{"max_running_sessions":null,"max_sessions":null}"#)
    .bind(domain::store::now_ms())
    .execute(s.store().pool())
    .await
    .unwrap();
}

/// A member of the stack's workspace with `role`, through an invitation; their client.
async fn member(s: &Stack, email: &str, name: &str, role: &str) -> sdk::Client {
    let invite =
        sdk::CreateInvite { email: email.into(), role: role.into(), expires_in_days: None };
    let created = s.client.create_invite(&s.ws, &invite).await.unwrap();
    let token = created.link.rsplit('/').next().unwrap().to_string();
    let boot =
        burstflare_api::bootstrap::run(&s.store(), email, Some(name), true, 30).await.unwrap();
    let client = s.app.client.clone().with_token(boot.token);
    let _: serde_json::Value = client
        .request(
            sdk::client::Method::POST,
            "/api/v1/invites/accept",
            Some(&json!({ "token": token })),
        )
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn promote_rollback_and_demote_change_what_new_sessions_get_and_nothing_else() {
    let s = stack_with(|_| {}).await;
    lift_limits(&s).await;
    let v1 = upload(&s, "web", |_| {}).await;
    assert_eq!(v1, "1");
    let start = s.client.catalog(&s.ws).await.unwrap();
    assert!(start.entries.iter().all(|e| e.template != "web"), "{start:?}");

    // Promote the only version: canary, catalog, rollout to the one runtime host.
    let p = s.client.promote_template(&s.ws, "web", &sdk::PromoteRequest::default()).await.unwrap();
    assert_eq!((p.kind.as_str(), p.version.as_str(), p.template.as_str()), ("promote", "1", "web"));
    assert!(!sdk::promotion_is_final(&p.status), "answered at once: {p:?}");
    assert!(p.workflow_id.starts_with("promote-"), "{p:?}");
    assert_eq!(p.requested_by.as_ref().unwrap().display_name, "Dev");
    let done = finished(&s, &p.id).await;
    assert_eq!(done.status, "succeeded", "{done:#?}");
    assert_eq!(done.error, None);
    assert_eq!(
        done.nodes,
        vec![sdk::PromotionNode { node: "local".into(), state: "ready".into() }],
        "{done:#?}"
    );
    assert!(done.finished_at.is_some());
    assert!(containers_of(&p.id).await.is_empty(), "the canary is removed");
    let first = s.client.catalog(&s.ws).await.unwrap();
    assert!(first.revision > start.revision, "{first:?}");
    let e = first.entries.iter().find(|e| e.template == "web").unwrap();
    assert_eq!((e.version.as_str(), e.previous_version.as_deref()), ("1", None));
    assert_eq!(e.revision, first.revision);
    assert_eq!(Some(e.image_ref.clone()), done.image_ref);
    assert_eq!((e.cpu_millis, e.memory_mb, e.archived), (2000, 2048, false));
    let image1 = e.image_ref.clone();
    let detail = s.client.template(&s.ws, "web").await.unwrap();
    assert_eq!(detail.active_version.as_deref(), Some("1"));

    // A session of version 1, then version 2 is built: new sessions keep getting version 1
    // (the catalog's, not the newest build) until version 2 is promoted.
    let before = session(&s, "web", "before").await;
    assert_eq!(before.version, "1");
    assert_eq!(image_of(&before.id).await, image1);
    let v2 = upload(&s, "web", |d| append(d, "motd", "version two")).await;
    assert_eq!(v2, "2");
    let still = session(&s, "web", "still").await;
    assert_eq!(still.version, "1", "an unpromoted build changes nothing");
    s.client.delete_session(&s.ws, &still.id, true).await.unwrap();

    // Bad requests change nothing and say what was wrong.
    let rev = revision(&s).await;
    for (version, field) in [("nine", "version"), ("7", "version"), ("", "version")] {
        let body = sdk::PromoteRequest { version: Some(version.into()) };
        let err = s.client.promote_template(&s.ws, "web", &body).await.unwrap_err();
        assert_eq!((status_of(&err), field_of(&err).as_str()), (400, field), "{version}: {err}");
    }
    let long = sdk::PromoteRequest { version: Some("1".repeat(40)) };
    let err = s.client.promote_template(&s.ws, "web", &long).await.unwrap_err();
    assert!(err.to_string().contains("at most 20 characters"), "{err}");
    let err = s
        .client
        .promote_template(&s.ws, "web", &sdk::PromoteRequest { version: Some("1".into()) })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("version 1 of web is already active"), "{err}");
    let err = s.client.promote_template(&s.ws, "nothing-here", &Default::default()).await;
    assert_eq!(status_of(&err.unwrap_err()), 404);
    let err = s.client.demote_template(&s.ws, "web").await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("web has no previous version to go back to"), "{err}");
    let err = s
        .client
        .rollback_template(&s.ws, "web", &sdk::RollbackRequest { version: "1".into() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already active"), "{err}");
    let raw: Result<serde_json::Value, _> = s
        .client
        .request(
            sdk::client::Method::POST,
            &sdk::client::template_path(&s.ws, "web", "/rollback"),
            Some(&json!({ "to": "1" })),
        )
        .await;
    let err = raw.unwrap_err();
    assert_eq!((status_of(&err), field_of(&err).as_str()), (400, "body"), "{err}");
    assert_eq!(revision(&s).await, rev, "nothing changed");
    assert_eq!(s.client.promotions(&s.ws, "web").await.unwrap().len(), 1);

    // Promote version 2 (the newest built, by default).
    let p2 = s.client.promote_template(&s.ws, "web", &Default::default()).await.unwrap();
    assert_eq!(p2.version, "2");
    let done2 = finished(&s, &p2.id).await;
    assert_eq!(done2.status, "succeeded", "{done2:#?}");
    let second = s.client.catalog(&s.ws).await.unwrap();
    assert!(second.revision > first.revision);
    let e = entry(&s, "web").await.unwrap();
    assert_eq!((e.version.as_str(), e.previous_version.as_deref()), ("2", Some("1")));
    let image2 = e.image_ref.clone();
    assert_ne!(image1, image2);
    let after = session(&s, "web", "after").await;
    assert_eq!(after.version, "2");
    assert_eq!(image_of(&after.id).await, image2);
    // The session started before keeps its version and its image, and keeps running.
    let kept = s.client.session(&s.ws, &before.id).await.unwrap();
    assert_eq!((kept.state.as_str(), kept.version.as_str()), ("running", "1"));
    assert_eq!(image_of(&before.id).await, image1);

    // Rolling back to the earlier image is one call, without canary or approval.
    let rb = s
        .client
        .rollback_template(&s.ws, "web", &sdk::RollbackRequest { version: "1".into() })
        .await
        .unwrap();
    assert_eq!((rb.kind.as_str(), rb.version.as_str()), ("rollback", "1"));
    let rb = finished(&s, &rb.id).await;
    assert_eq!(rb.status, "succeeded", "{rb:#?}");
    let e = entry(&s, "web").await.unwrap();
    assert_eq!((e.version.as_str(), e.previous_version.as_deref()), ("1", Some("2")));
    assert!(e.revision > second.revision);
    let back = session(&s, "web", "back").await;
    assert_eq!((back.version.as_str(), image_of(&back.id).await), ("1", image1.clone()));
    // A rollback goes back, never forward past the canary.
    let err = s
        .client
        .rollback_template(&s.ws, "web", &sdk::RollbackRequest { version: "2".into() })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("newer than the active version 1"), "{err}");

    // Demote goes back to the version active before: 2.
    let dm = s.client.demote_template(&s.ws, "web").await.unwrap();
    assert_eq!((dm.kind.as_str(), dm.version.as_str()), ("demote", "2"));
    assert_eq!(finished(&s, &dm.id).await.status, "succeeded");
    let e = entry(&s, "web").await.unwrap();
    assert_eq!((e.version.as_str(), e.previous_version.as_deref()), ("2", Some("1")));
    let again = session(&s, "web", "again").await;
    assert_eq!(again.version, "2");

    // The history, newest first, each run readable by id; audit events for each.
    let list = s.client.promotions(&s.ws, "web").await.unwrap();
    let kinds: Vec<(&str, &str, &str)> =
        list.iter().map(|p| (p.kind.as_str(), p.version.as_str(), p.status.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("demote", "2", "succeeded"),
            ("rollback", "1", "succeeded"),
            ("promote", "2", "succeeded"),
            ("promote", "1", "succeeded"),
        ]
    );
    assert_eq!(s.client.promotion(&s.ws, &list[1].id).await.unwrap(), list[1]);
    let actions = s.audit_actions().await;
    for a in [
        "template.promote.requested",
        "template.promote.succeeded",
        "template.rollback.requested",
        "template.rollback.succeeded",
        "template.demote.requested",
        "template.demote.succeeded",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    let requested = actions.iter().filter(|a| *a == "template.promote.requested").count();
    assert_eq!(requested, 2, "refused requests write nothing: {actions:?}");

    // Someone else's workspace sees none of it.
    let other = s.other_member_client().await;
    let mine = other.me().await.unwrap();
    let their_ws = mine.workspaces[0].slug.clone();
    let err = other.promotion(&their_ws, &p.id).await.unwrap_err();
    assert_eq!(status_of(&err), 404, "{err}");
    let err = other.catalog(&s.ws).await.unwrap_err();
    assert_eq!(status_of(&err), 404, "{err}");
    assert!(other.catalog(&their_ws).await.unwrap().entries.is_empty());

    for id in [&before.id, &after.id, &back.id, &again.id] {
        s.client.delete_session(&s.ws, id, true).await.unwrap();
    }
    s.app.stop().await;
}

#[tokio::test]
async fn a_broken_version_fails_its_canary_and_the_previous_one_stays_active() {
    let s = stack_with(|_| {}).await;
    upload(&s, "shaky", |_| {}).await;
    let good = s.client.promote_template(&s.ws, "shaky", &Default::default()).await.unwrap();
    assert_eq!(finished(&s, &good.id).await.status, "succeeded");
    let rev = revision(&s).await;

    // Version 2's smoke command fails.
    let v2 = upload(&s, "shaky", |d| {
        append(d, "burstflare.toml", "[hooks]\nsmoke = \"echo smoke says no >&2; exit 3\"\n");
    })
    .await;
    let p = s
        .client
        .promote_template(&s.ws, "shaky", &sdk::PromoteRequest { version: Some(v2.clone()) })
        .await
        .unwrap();
    let failed = finished(&s, &p.id).await;
    assert_eq!(failed.status, "failed", "{failed:#?}");
    let why = failed.error.clone().unwrap_or_default();
    assert!(why.contains("the smoke command exited with code 3"), "{why}");
    assert!(failed.nodes.is_empty(), "never rolled out: {failed:#?}");
    assert!(containers_of(&p.id).await.is_empty(), "the canary is removed");
    assert_eq!(revision(&s).await, rev, "the catalog did not change");
    assert_eq!(entry(&s, "shaky").await.unwrap().version, "1");

    // Version 3's image cannot run the agent at all (a directory where it is mounted).
    let v3 = upload(&s, "shaky", |d| {
        append(d, "Dockerfile", "RUN mkdir -p /opt/burstflare/agent/in-the-way\n");
    })
    .await;
    let p3 = s
        .client
        .promote_template(&s.ws, "shaky", &sdk::PromoteRequest { version: Some(v3) })
        .await
        .unwrap();
    let failed3 = finished(&s, &p3.id).await;
    assert_eq!(failed3.status, "failed", "{failed3:#?}");
    let why = failed3.error.clone().unwrap_or_default();
    assert!(why.contains("the canary's agent did not come up"), "{why}");
    assert!(why.contains("/opt/burstflare/agent"), "the cause is named: {why}");
    assert!(containers_of(&p3.id).await.is_empty(), "the canary is removed");
    assert_eq!(revision(&s).await, rev, "the catalog did not change");
    assert_eq!(entry(&s, "shaky").await.unwrap().version, "1");

    // New sessions still get the good version, and it works.
    let d = session(&s, "shaky", "still-good").await;
    assert_eq!(d.version, "1");
    let list = s.client.promotions(&s.ws, "shaky").await.unwrap();
    let states: Vec<&str> = list.iter().map(|p| p.status.as_str()).collect();
    assert_eq!(states, ["failed", "failed", "succeeded"]);
    let actions = s.audit_actions().await;
    let failures = actions.iter().filter(|a| *a == "template.promote.failed").count();
    assert_eq!(failures, 2, "{actions:?}");
    // Version 4 names a session user its image does not have: the agent comes up, but the
    // canary's user check fails (exit 97), before any smoke command.
    let v4 = upload(&s, "shaky", |d| {
        let path = d.join("burstflare.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("user = \"dev\"", "user = \"ghost\"")).unwrap();
    })
    .await;
    let p4 = s
        .client
        .promote_template(&s.ws, "shaky", &sdk::PromoteRequest { version: Some(v4) })
        .await
        .unwrap();
    let failed4 = finished(&s, &p4.id).await;
    assert_eq!(failed4.status, "failed", "{failed4:#?}");
    let why = failed4.error.clone().unwrap_or_default();
    assert!(why.contains("exited with code 97"), "{why}");
    assert_eq!(entry(&s, "shaky").await.unwrap().version, "1");
    // Nothing is stuck: the same version can be tried again (and fails the same way).
    let p5 = s
        .client
        .promote_template(&s.ws, "shaky", &sdk::PromoteRequest { version: Some(v2) })
        .await
        .unwrap();
    assert_eq!(finished(&s, &p5.id).await.status, "failed");
    s.client.delete_session(&s.ws, &d.id, true).await.unwrap();
    s.app.stop().await;
}

#[tokio::test]
async fn approval_needs_another_owner_or_admin_and_times_out_without_one() {
    let s = stack_with(|c| c.promotion.approval_timeout_secs = 20).await;
    let admin = member(&s, "admin@example.com", "Admin", "admin").await;
    let dev = member(&s, "member@example.com", "Member", "member").await;
    upload(&s, "gated", |_| {}).await;

    // The policy: visible to everyone, changed by owners and admins only.
    let policy = dev.promotion_policy(&s.ws).await.unwrap();
    assert_eq!((policy.requires_approval, policy.approval_timeout_secs), (false, 20));
    let on = sdk::PromotionPolicy { requires_approval: true, approval_timeout_secs: 0 };
    let err = dev.set_promotion_policy(&s.ws, &on).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let set = s.client.set_promotion_policy(&s.ws, &on).await.unwrap();
    assert_eq!((set.requires_approval, set.approval_timeout_secs), (true, 20));
    assert!(s.client.promotion_policy(&s.ws).await.unwrap().requires_approval);
    let err = dev.promote_template(&s.ws, "gated", &Default::default()).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(err.to_string().contains("only owners and admins may promote"), "{err}");

    // Nobody approves: cancelled when the time is up, and the catalog never changed.
    let rev = revision(&s).await;
    let p = s.client.promote_template(&s.ws, "gated", &Default::default()).await.unwrap();
    let waiting =
        wait_for(&s, &p.id, |p| p.status == "awaiting_approval", Duration::from_secs(120)).await;
    assert_eq!(waiting.step.as_deref(), Some("awaiting approval"));
    // Meanwhile: no second run of the template, not even an archive.
    let err = admin.promote_template(&s.ws, "gated", &Default::default()).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let text = err.to_string();
    assert!(text.contains("awaiting approval") && text.contains(&p.id), "{text}");
    assert!(text.contains("flare template promotions gated"), "{text}");
    let err = s.client.archive_template(&s.ws, "gated").await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    // A member may look but not approve; the requester may not approve their own.
    assert_eq!(dev.promotion(&s.ws, &p.id).await.unwrap().status, "awaiting_approval");
    let err = dev.approve_promotion(&s.ws, &p.id).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(err.to_string().contains("only owners and admins"), "{err}");
    let err = s.client.approve_promotion(&s.ws, &p.id).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(err.to_string().contains("another owner or admin"), "{err}");
    let err = admin.approve_promotion(&s.ws, "01900000-0000-7000-8000-000000000000").await;
    assert_eq!(status_of(&err.unwrap_err()), 404);
    let cancelled = finished(&s, &p.id).await;
    assert_eq!(cancelled.status, "cancelled", "{cancelled:#?}");
    assert!(cancelled.error.as_deref().unwrap_or_default().contains("nobody approved"));
    assert_eq!(cancelled.approved_by, None);
    assert_eq!(revision(&s).await, rev, "the catalog did not change");
    assert!(entry(&s, "gated").await.is_none());
    let err = admin.approve_promotion(&s.ws, &p.id).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("is cancelled, not awaiting approval"), "{err}");

    // Another owner or admin approves: it goes on, and who approved is kept.
    let p2 = s.client.promote_template(&s.ws, "gated", &Default::default()).await.unwrap();
    wait_for(&s, &p2.id, |p| p.status == "awaiting_approval", Duration::from_secs(120)).await;
    assert!(entry(&s, "gated").await.is_none(), "nothing changes before the approval");
    let approved = admin.approve_promotion(&s.ws, &p2.id).await.unwrap();
    assert_eq!(approved.approved_by.as_ref().unwrap().display_name, "Admin");
    let done = finished(&s, &p2.id).await;
    assert_eq!(done.status, "succeeded", "{done:#?}");
    assert_eq!(done.approved_by.as_ref().unwrap().display_name, "Admin");
    assert_eq!(done.requested_by.as_ref().unwrap().display_name, "Dev");
    assert!(done.approved_at.is_some());
    assert_eq!(entry(&s, "gated").await.unwrap().version, "1");
    assert!(revision(&s).await > rev);
    let actions = s.audit_actions().await;
    for a in [
        "workspace.promotion_policy.changed",
        "template.promote.requested",
        "template.promote.cancelled",
        "template.promote.approved",
        "template.promote.succeeded",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    s.app.stop().await;
}

/// Starts `burstflare node` as runtime host `id`, against the stack.
fn spawn_node_as(s: &Stack, id: &str) -> tokio::process::Child {
    let stack = s.app.stack.as_ref().unwrap();
    let c = &stack.config;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stack.dir.join(format!("logs/node-{id}.log")))
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_burstflare"))
        .arg("node")
        .env("BURSTFLARE_TEMPORAL__ADDRESS", c.temporal.address.as_str())
        .env("BURSTFLARE_DATABASE__URL", c.database.url.expose_secret())
        .env("BURSTFLARE_NODE__ID", id)
        .env("BURSTFLARE_NODE__AGENT_PATH", &c.node.agent_path)
        .env("BURSTFLARE_NODE__DATA_DIR", stack.dir.join(format!("node-{id}")))
        .env("BURSTFLARE_RUNTIME__SECRET", c.runtime.secret.expose_secret())
        .env("BURSTFLARE_STORAGE__ENDPOINT", c.storage.endpoint.as_str())
        .env("BURSTFLARE_STORAGE__BUCKET", &c.storage.bucket)
        .env("BURSTFLARE_STORAGE__REGION", &c.storage.region)
        .env("BURSTFLARE_STORAGE__ACCESS_KEY_ID", &c.storage.access_key_id)
        .env("BURSTFLARE_STORAGE__SECRET_ACCESS_KEY", c.storage.secret_access_key.expose_secret())
        .env("BURSTFLARE_STORAGE__FORCE_PATH_STYLE", c.storage.force_path_style.to_string())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_runtime_host_down_during_the_rollout_is_waited_for_and_the_promotion_finishes() {
    let s = stack_with(|_| {}).await;
    upload(&s, "rolling", |_| {}).await;
    // A second runtime host registers, then dies while it is still counted as live.
    let extra = "zz-extra";
    let mut node = spawn_node_as(&s, extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = s.store().live_nodes(domain::store::now_ms() - 90_000).await.unwrap();
        if live.iter().any(|n| n.id == extra) {
            break;
        }
        assert!(Instant::now() < deadline, "{extra} never registered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.start_kill().unwrap();
    node.wait().await.unwrap();

    let rev = revision(&s).await;
    let p = s.client.promote_template(&s.ws, "rolling", &Default::default()).await.unwrap();
    let step = format!("rolling out to {extra}");
    let stuck =
        wait_for(&s, &p.id, |p| p.step.as_deref() == Some(step.as_str()), Duration::from_secs(120))
            .await;
    assert_eq!(stuck.status, "running");
    assert_eq!(
        stuck.nodes,
        vec![
            sdk::PromotionNode { node: "local".into(), state: "ready".into() },
            sdk::PromotionNode { node: extra.into(), state: "pending".into() },
        ],
        "{stuck:#?}"
    );
    // The catalog changed before the rollout: new sessions get the version already.
    let during = s.client.catalog(&s.ws).await.unwrap();
    assert_eq!(during.revision, rev + 1);
    assert_eq!(entry(&s, "rolling").await.unwrap().version, "1");

    // The host comes back: its worker takes the pre-pull and the promotion finishes.
    let _back = spawn_node_as(&s, extra);
    let done = finished(&s, &p.id).await;
    assert_eq!(done.status, "succeeded", "{done:#?}");
    assert_eq!(
        done.nodes,
        vec![
            sdk::PromotionNode { node: "local".into(), state: "ready".into() },
            sdk::PromotionNode { node: extra.into(), state: "ready".into() },
        ]
    );
    // One catalog change, no rollback revision.
    let after = s.client.catalog(&s.ws).await.unwrap();
    assert_eq!(after.revision, rev + 1, "{after:?}");
    let e = entry(&s, "rolling").await.unwrap();
    assert_eq!((e.version.as_str(), e.revision), ("1", rev + 1));
    assert_eq!(Some(e.image_ref), done.image_ref);
    s.app.stop().await;
}

#[tokio::test]
async fn archiving_runs_as_a_promotion_keeps_running_sessions_and_refuses_new_ones() {
    let s = stack_with(|_| {}).await;
    // A template without versions is archived at once.
    let body = sdk::CreateTemplate { name: "empty".into(), description: String::new() };
    s.client.create_template(&s.ws, &body).await.unwrap();
    let empty = s.client.archive_template(&s.ws, "empty").await.unwrap();
    assert!(empty.archived_at.is_some());
    assert!(s.client.promotions(&s.ws, "empty").await.unwrap().is_empty());

    upload(&s, "old", |_| {}).await;
    let p = s.client.promote_template(&s.ws, "old", &Default::default()).await.unwrap();
    assert_eq!(finished(&s, &p.id).await.status, "succeeded");
    let running = session(&s, "old", "running").await;
    let rev = revision(&s).await;

    let archived = s.client.archive_template(&s.ws, "old").await.unwrap();
    assert!(archived.archived_at.is_some(), "{archived:?}");
    assert_eq!(archived.active_version, None);
    // The run is listed with the others.
    let list = s.client.promotions(&s.ws, "old").await.unwrap();
    let run = &list[0];
    assert_eq!(
        (run.kind.as_str(), run.status.as_str(), run.version.as_str()),
        ("archive", "succeeded", "1"),
        "{list:#?}"
    );
    // Out of the catalog, one revision later.
    let cat = s.client.catalog(&s.ws).await.unwrap();
    assert_eq!(cat.revision, rev + 1);
    assert!(cat.entries.iter().all(|e| e.template != "old"), "{cat:?}");
    // The running session keeps going; new ones are refused; nothing can be promoted.
    let kept = s.client.session(&s.ws, &running.id).await.unwrap();
    assert_eq!(kept.state, "running");
    image_of(&running.id).await;
    let err = s.create("old", "new-one").await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("archived"), "{err}");
    let err = s.client.promote_template(&s.ws, "old", &Default::default()).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("archived"), "{err}");
    // Archiving again changes nothing.
    s.client.archive_template(&s.ws, "old").await.unwrap();
    assert_eq!(s.client.promotions(&s.ws, "old").await.unwrap().len(), 2);
    assert_eq!(revision(&s).await, rev + 1);
    let actions = s.audit_actions().await;
    for a in ["template.archive.requested", "template.archived", "template.archive.succeeded"] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| *a == "template.archived").count(), 2, "{actions:?}");
    s.client.delete_session(&s.ws, &running.id, true).await.unwrap();
    s.app.stop().await;
}
