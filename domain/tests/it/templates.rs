//! Templates, their versions and their builds: one story per aggregate, told once and checked on
//! both backends.

use domain::ids::{DisplayName, Email, Slug, TemplateBuildId, TemplateId, TemplateVersionId};
use domain::store::{Store, StoreError, TemplateRecord, User, VersionRecord, Workspace, now_ms};

use crate::support::{self, on_both_backends};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

async fn sign_up(store: &Store, name: &str) -> (User, Workspace) {
    let email = Email::parse(&format!("{}@example.com", name.to_lowercase())).unwrap();
    let name = DisplayName::parse(name).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap()
}

async fn shared_workspace(store: &Store, owner: &User, slug: &str) -> Workspace {
    let name = DisplayName::parse(slug).unwrap();
    store.create_workspace(&owner.id, &name, &Slug::parse(slug).unwrap(), now_ms()).await.unwrap()
}

fn bundle_key(id: &TemplateVersionId) -> String {
    format!("bundles/{id}.tar.zst")
}

async fn draft(store: &Store, template: &TemplateRecord, by: &User) -> VersionRecord {
    store
        .create_draft_version(&template.id, 1234, SHA, now_ms() + 600_000, &by.id, bundle_key)
        .await
        .unwrap()
}

/// A version that went through its upload, ready to build.
async fn uploaded(store: &Store, template: &TemplateRecord, by: &User) -> VersionRecord {
    let version = draft(store, template, by).await;
    store.accept_upload(&version.id, r#"{"name":"x"}"#).await.unwrap()
}

async fn templates(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;

    let rust =
        store.create_template(&acme.id, "rust", "The Rust toolchain", &alice.id).await.unwrap();
    assert_eq!(
        (&rust.workspace_id, rust.name.as_str(), rust.description.as_str()),
        (&acme.id, "rust", "The Rust toolchain")
    );
    assert_eq!(rust.created_by, Some(alice.id.clone()));
    assert_eq!((rust.created_at, rust.archived_at), (rust.updated_at, None));

    // A name is taken within a workspace, not across workspaces.
    let err = store.create_template(&acme.id, "rust", "again", &alice.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "template name" }), "{err:?}");
    let other = store.create_template(&personal.id, "rust", "mine", &alice.id).await.unwrap();
    assert_ne!(other.id, rust.id);

    // Lookups are scoped by workspace.
    assert_eq!(store.template_by_name(&acme.id, "rust").await.unwrap(), Some(rust.clone()));
    assert_eq!(store.template_by_id(&acme.id, &rust.id).await.unwrap(), Some(rust.clone()));
    assert_eq!(store.template_by_name(&personal.id, "rust").await.unwrap(), Some(other.clone()));
    assert_eq!(store.template_by_id(&personal.id, &rust.id).await.unwrap(), None);
    assert_eq!(store.template_by_name(&acme.id, "go").await.unwrap(), None);
    assert_eq!(store.template_by_id(&acme.id, &TemplateId::new()).await.unwrap(), None);

    // Archiving is idempotent and keeps the first time; an archived name stays taken.
    let (archived, changed) = store.archive_template(&acme.id, &rust.id).await.unwrap();
    assert!(changed);
    let first = archived.archived_at.expect("archived");
    assert_eq!(archived.updated_at, first);
    let (again, changed) = store.archive_template(&acme.id, &rust.id).await.unwrap();
    assert!(!changed);
    assert_eq!(again, archived);
    let err = store.create_template(&acme.id, "rust", "again", &alice.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "template name" }), "{err:?}");
    let err = store.archive_template(&personal.id, &rust.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        store.template_by_id(&personal.id, &other.id).await.unwrap().unwrap().archived_at,
        None
    );

    // The active version comes from the runtime catalog.
    assert_eq!(store.active_version_of(&rust.id).await.unwrap(), None);
    let v1 = uploaded(store, &rust, &alice).await;
    let v2 = draft(store, &rust, &alice).await;
    sqlx::query(
        "INSERT INTO runtime_catalog (template_id, active_version_id, image_ref, updated_at)
         VALUES ($1, $2, 'registry/rust:v1', $3)",
    )
    .bind(rust.id.as_str())
    .bind(v1.id.as_str())
    .bind(now_ms())
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(store.active_version_of(&rust.id).await.unwrap().as_deref(), Some("1"));
    assert_eq!(store.active_version_of(&other.id).await.unwrap(), None);

    // The catalog listing counts every version, drafts included.
    let listed = store.templates_in_workspace(&acme.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].versions, listed[0].archived), (2, true));
    assert_eq!(listed[0].active_version.as_deref(), Some("1"));
    assert!(store.delete_draft_version(&v2.id).await.unwrap());
    assert_eq!(store.templates_in_workspace(&acme.id).await.unwrap()[0].versions, 1);
}

on_both_backends!(templates => templates_on_sqlite, templates_on_postgres);

async fn versions(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = store.create_template(&ws.id, "rust", "", &alice.id).await.unwrap();
    let go = store.create_template(&ws.id, "go", "", &alice.id).await.unwrap();

    // Drafts are numbered per template, with what the upload will be checked against.
    let v1 = draft(store, &rust, &alice).await;
    assert_eq!((v1.version.as_str(), v1.status.as_str()), ("1", "draft"));
    assert_eq!(v1.template_id, rust.id);
    assert_eq!(v1.manifest_json, "{}");
    assert_eq!(v1.bundle_key, Some(bundle_key(&v1.id)));
    assert_eq!((v1.bundle_size, v1.bundle_sha256.as_deref()), (Some(1234), Some(SHA)));
    assert!(v1.upload_expires_at.is_some());
    assert_eq!((v1.image_ref.as_ref(), v1.image_digest.as_ref()), (None, None));
    assert_eq!(v1.created_by, Some(alice.id.clone()));
    assert_eq!(store.version_by_id(&v1.id).await.unwrap(), Some(v1.clone()));
    assert_eq!(store.version_of(&rust.id, "1").await.unwrap(), Some(v1.clone()));
    assert_eq!(store.version_of(&go.id, "1").await.unwrap(), None);
    assert_eq!(store.version_by_id(&TemplateVersionId::new()).await.unwrap(), None);
    assert_eq!(draft(store, &go, &alice).await.version, "1");

    // Up to 10, listed by number: "10" is newest, not between "1" and "2".
    for expected in 2..=10 {
        assert_eq!(draft(store, &rust, &alice).await.version, expected.to_string());
    }
    let listed: Vec<String> =
        store.versions_of(&rust.id).await.unwrap().into_iter().map(|v| v.version).collect();
    let expected: Vec<String> = (1..=10).rev().map(|n: u32| n.to_string()).collect();
    assert_eq!(listed, expected);
    assert_eq!(store.versions_of(&go.id).await.unwrap().len(), 1);

    // The next number follows the highest, even when a lower one was deleted.
    let v10 = store.version_of(&rust.id, "10").await.unwrap().unwrap();
    let v9 = store.version_of(&rust.id, "9").await.unwrap().unwrap();
    assert!(store.delete_draft_version(&v9.id).await.unwrap());
    assert_eq!(draft(store, &rust, &alice).await.version, "11");
    assert!(store.delete_draft_version(&v10.id).await.unwrap());

    // A draft for a template that does not exist.
    let err = store
        .create_draft_version(&TemplateId::new(), 1, SHA, 0, &alice.id, bundle_key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store
        .create_draft_version(&rust.id, u64::MAX, SHA, 0, &alice.id, bundle_key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Accepting an upload: draft → uploaded, once; the same acceptance again is a no-op.
    let manifest = r#"{"name":"rust","image":"x"}"#;
    let accepted = store.accept_upload(&v1.id, manifest).await.unwrap();
    assert_eq!((accepted.status.as_str(), accepted.manifest_json.as_str()), ("uploaded", manifest));
    assert_eq!(accepted.bundle_key, v1.bundle_key);
    assert_eq!(store.accept_upload(&v1.id, manifest).await.unwrap(), accepted);
    let err = store.accept_upload(&v1.id, r#"{"other":1}"#).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "version state" }), "{err:?}");
    let err = store.accept_upload(&TemplateVersionId::new(), manifest).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Only drafts are deleted.
    assert!(!store.delete_draft_version(&v1.id).await.unwrap());
    assert!(!store.delete_draft_version(&TemplateVersionId::new()).await.unwrap());
    assert!(store.version_by_id(&v1.id).await.unwrap().is_some());

    // Statuses: anything but draft, and never back from built.
    let err = store.set_version_status(&v1.id, "draft", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let err = store.set_version_status(&v1.id, "bogus", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let building = store.set_version_status(&v1.id, "building", None).await.unwrap();
    assert_eq!(building.status, "building");
    let err = store.accept_upload(&v1.id, manifest).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "version state" }), "{err:?}");
    let built = store
        .set_version_status(&v1.id, "built", Some(("reg/rust:v1", "sha256:abc")))
        .await
        .unwrap();
    assert_eq!(built.status, "built");
    assert_eq!(
        (built.image_ref.as_deref(), built.image_digest.as_deref()),
        (Some("reg/rust:v1"), Some("sha256:abc"))
    );
    for status in ["failed", "building", "uploaded"] {
        let after = store.set_version_status(&v1.id, status, Some(("x", "y"))).await.unwrap();
        assert_eq!(after, built, "{status}");
    }
    let err =
        store.set_version_status(&TemplateVersionId::new(), "failed", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // A failed version keeps no image unless given one, and can be built again.
    let v2 = store.version_of(&rust.id, "2").await.unwrap().unwrap();
    let failed = store.set_version_status(&v2.id, "failed", None).await.unwrap();
    assert_eq!((failed.status.as_str(), failed.image_ref.as_ref()), ("failed", None));
    assert_eq!(
        store.set_version_status(&v2.id, "building", None).await.unwrap().status,
        "building"
    );
}

on_both_backends!(versions => versions_on_sqlite, versions_on_postgres);

async fn concurrent_drafts(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = store.create_template(&ws.id, "rust", "", &alice.id).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (store, rust, alice) = (store.clone(), rust.clone(), alice.clone());
        tasks.spawn(async move { draft(&store, &rust, &alice).await.version });
    }
    let mut numbers: Vec<u32> =
        tasks.join_all().await.into_iter().map(|v| v.parse().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    assert_eq!(store.versions_of(&rust.id).await.unwrap().len(), 5);
}

on_both_backends!(concurrent_drafts => concurrent_drafts_on_sqlite, concurrent_drafts_on_postgres);

async fn builds(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let rust = store.create_template(&acme.id, "rust", "", &alice.id).await.unwrap();
    let v1 = uploaded(store, &rust, &alice).await;

    let b1 = store.create_build(&v1.id, Some(&alice.id)).await.unwrap();
    assert_eq!((b1.attempt, b1.status.as_str()), (1, "queued"));
    assert_eq!(b1.workflow_id, format!("build-{}-1", v1.id));
    assert_eq!((&b1.version_id, &b1.template_id, &b1.workspace_id), (&v1.id, &rust.id, &acme.id));
    assert_eq!((b1.template_name.as_str(), b1.version.as_str()), ("rust", "1"));
    assert_eq!(b1.requested_by, Some(alice.id.clone()));
    assert_eq!(b1.requested_by_name.as_deref(), Some("Alice"));
    assert_eq!((b1.started_at, b1.finished_at, b1.error.as_ref()), (None, None, None));
    assert_eq!((b1.image_ref.as_ref(), b1.image_digest.as_ref()), (None, None));
    assert_eq!(b1.created_at, b1.updated_at);
    assert_eq!(store.build_by_id(&b1.id).await.unwrap(), Some(b1.clone()));
    assert_eq!(store.build_in_workspace(&acme.id, &b1.id).await.unwrap(), Some(b1.clone()));
    assert_eq!(store.build_in_workspace(&personal.id, &b1.id).await.unwrap(), None);
    assert_eq!(store.build_by_id(&TemplateBuildId::new()).await.unwrap(), None);

    // One active build per version.
    let err = store.create_build(&v1.id, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "build" }), "{err:?}");
    let err = store.create_build(&TemplateVersionId::new(), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Unknown states are refused before touching the database.
    for bad in ["running", "", "QUEUED"] {
        let err = store.set_build_status(&b1.id, bad, None, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    let err =
        store.set_build_status(&TemplateBuildId::new(), "failed", None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Forward only among active states; staying put changes nothing.
    let (same, changed) = store.set_build_status(&b1.id, "queued", None, None).await.unwrap();
    assert!(!changed);
    assert_eq!(same, b1);
    let (validating, changed) =
        store.set_build_status(&b1.id, "validating", None, None).await.unwrap();
    assert!(changed);
    assert_eq!(validating.status, "validating");
    let started = validating.started_at.expect("started");
    assert_eq!(validating.finished_at, None);
    for unchanged in ["validating", "queued"] {
        let (after, changed) = store.set_build_status(&b1.id, unchanged, None, None).await.unwrap();
        assert!(!changed, "{unchanged}");
        assert_eq!(after, validating);
    }
    let (building, changed) = store.set_build_status(&b1.id, "building", None, None).await.unwrap();
    assert!(changed);
    assert_eq!((building.status.as_str(), building.started_at), ("building", Some(started)));
    let (after, changed) = store.set_build_status(&b1.id, "validating", None, None).await.unwrap();
    assert!(!changed);
    assert_eq!(after, building);

    // Any active state may finish; a finished build never changes.
    let (failed, changed) =
        store.set_build_status(&b1.id, "failed", Some("docker build: exit 1"), None).await.unwrap();
    assert!(changed);
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref()),
        ("failed", Some("docker build: exit 1"))
    );
    assert_eq!(failed.started_at, Some(started));
    let finished = failed.finished_at.expect("finished");
    assert!(finished >= started);
    for to in ["succeeded", "cancelled", "failed", "pushing", "queued"] {
        let (after, changed) =
            store.set_build_status(&b1.id, to, Some("late"), Some(("r", "d"))).await.unwrap();
        assert!(!changed, "{to}");
        assert_eq!(after, failed, "{to}");
    }
    assert_eq!(store.latest_build_of_version(&v1.id).await.unwrap(), Some(failed.clone()));

    // After a failure, a retry is a new attempt; it may skip ahead, and keeps its image.
    let b2 = store.create_build(&v1.id, None).await.unwrap();
    assert_eq!((b2.attempt, b2.status.as_str()), (2, "queued"));
    assert_eq!(b2.workflow_id, format!("build-{}-2", v1.id));
    assert_eq!((b2.requested_by.as_ref(), b2.requested_by_name.as_ref()), (None, None));
    let (pushing, changed) = store
        .set_build_status(&b2.id, "pushing", None, Some(("reg/rust:v1", "sha256:feed")))
        .await
        .unwrap();
    assert!(changed);
    assert!(pushing.started_at.is_some());
    assert_eq!(pushing.image_digest.as_deref(), Some("sha256:feed"));
    let (succeeded, changed) =
        store.set_build_status(&b2.id, "succeeded", None, None).await.unwrap();
    assert!(changed);
    assert!(succeeded.finished_at.is_some());
    assert_eq!(
        (
            succeeded.image_ref.as_deref(),
            succeeded.image_digest.as_deref(),
            succeeded.error.as_ref()
        ),
        (Some("reg/rust:v1"), Some("sha256:feed"), None)
    );

    // A build cancelled while queued.
    let b3 = store.create_build(&v1.id, Some(&alice.id)).await.unwrap();
    assert_eq!(b3.attempt, 3);
    let (cancelled, changed) =
        store.set_build_status(&b3.id, "cancelled", None, None).await.unwrap();
    assert!(changed);
    assert_eq!(cancelled.status, "cancelled");
    assert!(cancelled.finished_at.is_some());

    // Listings: by version latest attempt first, by template newest first and limited.
    let attempts = |builds: Vec<domain::store::BuildRecord>| {
        builds.into_iter().map(|b| (b.version, b.attempt)).collect::<Vec<_>>()
    };
    assert_eq!(
        attempts(store.builds_of_version(&v1.id).await.unwrap()),
        [("1".to_owned(), 3), ("1".to_owned(), 2), ("1".to_owned(), 1)]
    );
    assert_eq!(store.latest_build_of_version(&v1.id).await.unwrap(), Some(cancelled.clone()));
    let v2 = uploaded(store, &rust, &alice).await;
    assert_eq!(store.latest_build_of_version(&v2.id).await.unwrap(), None);
    assert!(store.builds_of_version(&v2.id).await.unwrap().is_empty());
    // A build of another version may be active at the same time.
    // (A moment later, so that it is the newest by time, not just by tie-break.)
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let c1 = store.create_build(&v2.id, Some(&alice.id)).await.unwrap();
    assert_eq!(c1.attempt, 1);
    let newest = store.builds_of_template(&rust.id, 10).await.unwrap();
    assert_eq!(newest.len(), 4);
    assert_eq!(newest[0].id, c1.id, "the latest build comes first");
    let mut created: Vec<i64> = newest.iter().map(|b| b.created_at).collect();
    created.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(newest.iter().map(|b| b.created_at).collect::<Vec<_>>(), created);
    assert_eq!(store.builds_of_template(&rust.id, 2).await.unwrap(), newest[..2].to_vec());
    let other = store.create_template(&acme.id, "go", "", &alice.id).await.unwrap();
    assert!(store.builds_of_template(&other.id, 10).await.unwrap().is_empty());

    // Stale active builds: only those still going, changed before the cut-off.
    let stale = store.stale_active_builds(now_ms() + 1_000).await.unwrap();
    assert_eq!(stale.iter().map(|b| &b.id).collect::<Vec<_>>(), [&c1.id]);
    assert!(store.stale_active_builds(c1.updated_at).await.unwrap().is_empty());
}

on_both_backends!(builds => builds_on_sqlite, builds_on_postgres);

/// Build minutes are recorded once per key, however often a retried activity asks.
async fn build_usage(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let since = now_ms() - 1;
    let key = "build-x-1:build_minutes";
    let kind = domain::store::USAGE_BUILD_MINUTES;
    assert!(store.record_usage(&ws.id, Some(&alice.id), kind, 3, now_ms(), key).await.unwrap());
    assert!(!store.record_usage(&ws.id, Some(&alice.id), kind, 3, now_ms(), key).await.unwrap());
    assert!(
        store
            .record_usage(&ws.id, None, kind, 2, now_ms(), "build-x-2:build_minutes")
            .await
            .unwrap()
    );
    assert_eq!(store.usage_summary(&ws.id, since).await.unwrap().build_minutes, 5);
}

on_both_backends!(build_usage => build_usage_on_sqlite, build_usage_on_postgres);
