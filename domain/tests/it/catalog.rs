//! The runtime catalog, its revisions, promotions and the promotion policy: each story told once
//! and checked on both backends.

use domain::ids::{DisplayName, Email, Slug, TemplateId, TemplateVersionId, UserId};
use domain::store::{
    CatalogChange, NewPromotion, PromotionRecord, PromotionUpdate, Store, StoreError,
    TemplateRecord, User, VersionRecord, Workspace, now_ms,
};
use serde_json::json;

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

/// A version of `template` that went through its upload, with `manifest` as its manifest.
async fn uploaded(
    store: &Store,
    template: &TemplateRecord,
    by: &User,
    manifest: &str,
) -> VersionRecord {
    let version = store
        .create_draft_version(&template.id, 1234, SHA, now_ms() + 600_000, &by.id, |id| {
            format!("bundles/{id}.tar.zst")
        })
        .await
        .unwrap();
    store.accept_upload(&version.id, manifest).await.unwrap()
}

/// A built version of `template`, its image `registry.local/<name>:<number>`.
async fn built(store: &Store, template: &TemplateRecord, by: &User) -> VersionRecord {
    let manifest = json!({
        "schema": 1, "name": template.name,
        "resources": {"cpu_millis": 1500, "memory_mb": 3072, "disk_gb": 10}
    })
    .to_string();
    let v = uploaded(store, template, by, &manifest).await;
    let image = format!("registry.local/{}:{}", template.name, v.version);
    store.set_version_status(&v.id, "built", Some((&image, "sha256:abc"))).await.unwrap()
}

fn change(revision: u64, previous: Option<&TemplateVersionId>, changed: bool) -> CatalogChange {
    CatalogChange {
        revision,
        previous_version_id: previous.map(|v| v.as_str().to_owned()),
        changed,
    }
}

async fn the_catalog_moves_by_numbered_revisions(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let rust = store.create_template(&acme.id, "rust", "", &alice.id).await.unwrap();
    let go = store.create_template(&acme.id, "go", "", &alice.id).await.unwrap();
    let mine = store.create_template(&personal.id, "node", "", &alice.id).await.unwrap();

    // Before the first change: revision 0, nothing in it, no history.
    let empty = store.catalog().await.unwrap();
    assert_eq!((empty.revision, empty.generated_at, empty.entries.len()), (0, 0, 0));
    assert!(store.catalog_revisions(10).await.unwrap().is_empty());
    assert_eq!(store.catalog_revision(1).await.unwrap(), None);

    // The first change is revision 1, with the whole document.
    let r1 = built(store, &rust, &alice).await;
    let before = now_ms();
    let c = store
        .set_catalog_version(&rust.id, &r1.id, "promote", "promote-rust/1:catalog", Some(&alice.id))
        .await
        .unwrap();
    assert_eq!(c, change(1, None, true));
    let doc = store.catalog().await.unwrap();
    assert_eq!(doc.revision, 1);
    assert!(doc.generated_at >= before, "{doc:?}");
    assert_eq!(doc.entries.len(), 1);
    let e = &doc.entries[0];
    assert_eq!(
        (e.workspace_id.as_str(), e.workspace_slug.as_str(), e.template_id.as_str()),
        (acme.id.as_str(), "acme", rust.id.as_str())
    );
    assert_eq!(
        (e.template_name.as_str(), e.version_id.as_str(), e.version.as_str()),
        ("rust", r1.id.as_str(), "1")
    );
    assert_eq!(e.image_ref, "registry.local/rust:1");
    assert_eq!((e.previous_version_id.as_deref(), e.previous_version.as_deref()), (None, None));
    assert_eq!((e.revision, e.cpu_millis, e.memory_mb, e.archived), (1, 1500, 3072, false));
    assert_eq!(e.updated_at, doc.generated_at);
    let (recorded, reason, actor, at) = store.catalog_revision(1).await.unwrap().unwrap();
    assert_eq!(
        (recorded, reason.as_str(), actor, at),
        (doc.clone(), "promote", Some(alice.id.clone()), doc.generated_at)
    );
    assert_eq!(store.active_version_of(&rust.id).await.unwrap().as_deref(), Some("1"));

    // The same change key again: the first answer, nothing written.
    let again = store
        .set_catalog_version(&rust.id, &r1.id, "promote", "promote-rust/1:catalog", None)
        .await
        .unwrap();
    assert_eq!(again, change(1, None, false));
    // Even once the catalog moved on (a retried step after a later change).
    let r2 = built(store, &rust, &alice).await;
    let c2 = store
        .set_catalog_version(&rust.id, &r2.id, "promote", "promote-rust/2:catalog", Some(&alice.id))
        .await
        .unwrap();
    assert_eq!(c2, change(2, Some(&r1.id), true));
    let replay = store
        .set_catalog_version(&rust.id, &r1.id, "promote", "promote-rust/1:catalog", None)
        .await
        .unwrap();
    assert_eq!(replay, change(1, None, false));
    assert_eq!(store.catalog().await.unwrap().revision, 2);
    assert_eq!(store.active_version_of(&rust.id).await.unwrap().as_deref(), Some("2"));
    // A key used for another change is refused.
    let err = store
        .set_catalog_version(&rust.id, &r2.id, "promote", "promote-rust/1:catalog", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "catalog change key" }), "{err:?}");
    let err =
        store.clear_catalog_version(&rust.id, "archive", "promote-rust/1:catalog", None).await;
    assert!(matches!(err, Err(StoreError::Conflict { what: "catalog change key" })), "{err:?}");

    // The previous version is tracked.
    let doc = store.catalog().await.unwrap();
    let e = &doc.entries[0];
    assert_eq!((e.version.as_str(), e.image_ref.as_str()), ("2", "registry.local/rust:2"));
    assert_eq!(
        (e.previous_version_id.as_deref(), e.previous_version.as_deref()),
        (Some(r1.id.as_str()), Some("1"))
    );
    assert_eq!(e.revision, 2);

    // Setting the version already active writes nothing and records nothing for the key.
    let same = store
        .set_catalog_version(&rust.id, &r2.id, "promote", "promote-rust/3:catalog", None)
        .await
        .unwrap();
    assert_eq!(same, change(2, Some(&r2.id), false));
    assert_eq!(store.catalog_revisions(10).await.unwrap().len(), 2);
    // ... so the key is still free for a real change.
    let back = store
        .set_catalog_version(&rust.id, &r1.id, "demote", "promote-rust/3:catalog", None)
        .await
        .unwrap();
    assert_eq!(back, change(3, Some(&r2.id), true));
    let e = store.catalog().await.unwrap().entries.remove(0);
    assert_eq!((e.version.as_str(), e.previous_version.as_deref()), ("1", Some("2")));

    // Refused: another template's version, a version not built, one without an image, unknowns.
    let g1 = built(store, &go, &alice).await;
    let err = store.set_catalog_version(&rust.id, &g1.id, "promote", "k-other", None).await;
    assert!(
        matches!(&err, Err(StoreError::Invalid(m)) if m.contains("not a version of")),
        "{err:?}"
    );
    let g2 = uploaded(store, &go, &alice, "{}").await;
    let err = store.set_catalog_version(&go.id, &g2.id, "promote", "k-uploaded", None).await;
    assert!(matches!(&err, Err(StoreError::Invalid(m)) if m.contains("uploaded")), "{err:?}");
    let g3 = uploaded(store, &go, &alice, "{}").await;
    store.set_version_status(&g3.id, "built", None).await.unwrap();
    let err = store.set_catalog_version(&go.id, &g3.id, "promote", "k-no-image", None).await;
    assert!(matches!(&err, Err(StoreError::Invalid(m)) if m.contains("no image")), "{err:?}");
    let (no_version, no_template, no_user) =
        (TemplateVersionId::new(), TemplateId::new(), UserId::new());
    let err = store.set_catalog_version(&go.id, &no_version, "promote", "k-x", None).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    let err = store.set_catalog_version(&no_template, &g1.id, "promote", "k-y", None).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    let err = store.set_catalog_version(&go.id, &g1.id, "promote", "k-z", Some(&no_user)).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    let err = store.set_catalog_version(&go.id, &g1.id, "promote", " ", None).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    // None of them wrote anything.
    assert_eq!(store.catalog().await.unwrap().revision, 3);

    // Several templates: entries sorted by workspace slug, then template name; a manifest
    // without resources gets the defaults.
    store.set_catalog_version(&go.id, &g1.id, "promote", "promote-go/1", None).await.unwrap();
    let n1 = uploaded(store, &mine, &alice, "{}").await;
    store
        .set_version_status(&n1.id, "built", Some(("registry.local/node:1", "sha256:x")))
        .await
        .unwrap();
    let c = store.set_catalog_version(&mine.id, &n1.id, "promote", "promote-node/1", None);
    assert_eq!(c.await.unwrap(), change(5, None, true));
    let doc = store.catalog().await.unwrap();
    let names: Vec<(&str, &str, u64)> = doc
        .entries
        .iter()
        .map(|e| (e.workspace_slug.as_str(), e.template_name.as_str(), e.revision))
        .collect();
    assert_eq!(
        names,
        [("acme", "go", 4), ("acme", "rust", 3), (personal.slug.as_str(), "node", 5)]
    );
    assert_eq!((doc.entries[2].cpu_millis, doc.entries[2].memory_mb), (2000, 2048));

    // The archived flag is the template's when the revision is made.
    store.archive_template(&acme.id, &go.id).await.unwrap();
    // Clearing: the entry goes, with a revision of its own; clearing again changes nothing.
    let c = store.clear_catalog_version(&go.id, "archive", "archive-go", Some(&alice.id)).await;
    assert_eq!(c.unwrap(), change(6, Some(&g1.id), true));
    let doc = store.catalog().await.unwrap();
    assert_eq!(
        doc.entries.iter().map(|e| e.template_name.as_str()).collect::<Vec<_>>(),
        ["rust", "node"]
    );
    assert_eq!(store.active_version_of(&go.id).await.unwrap(), None);
    let c = store.clear_catalog_version(&go.id, "archive", "archive-go", None).await;
    assert_eq!(c.unwrap(), change(6, Some(&g1.id), false));
    let c = store.clear_catalog_version(&go.id, "archive", "archive-go-again", None).await;
    assert_eq!(c.unwrap(), change(6, None, false));
    let c = store.clear_catalog_version(&TemplateId::new(), "archive", "archive-none", None).await;
    assert_eq!(c.unwrap(), change(6, None, false));
    // Promoted again after a clear, a template starts without a previous version.
    let c = store.set_catalog_version(&go.id, &g1.id, "promote", "promote-go/again", None).await;
    assert_eq!(c.unwrap(), change(7, None, true));
    let doc = store.catalog().await.unwrap();
    let go_entry = doc.entries.iter().find(|e| e.template_name == "go").unwrap();
    assert!(go_entry.archived);
    assert_eq!(go_entry.previous_version_id, None);

    // The history: newest first, limited; each revision keeps its own document.
    let history = store.catalog_revisions(3).await.unwrap();
    let summary: Vec<(u64, &str, Option<&str>)> =
        history.iter().map(|(r, reason, t, _)| (*r, reason.as_str(), t.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (7, "promote", Some(go.id.as_str())),
            (6, "archive", Some(go.id.as_str())),
            (5, "promote", Some(mine.id.as_str()))
        ]
    );
    assert!(history.windows(2).all(|w| w[0].3 >= w[1].3));
    assert_eq!(store.catalog_revisions(100).await.unwrap().len(), 7);
    let (r3, reason, actor, _) = store.catalog_revision(3).await.unwrap().unwrap();
    assert_eq!((r3.revision, reason.as_str(), actor), (3, "demote", None));
    assert_eq!(r3.entries.len(), 1);
    assert_eq!(r3.entries[0].version, "1");
    assert_eq!(store.catalog_revision(8).await.unwrap(), None);
    assert_eq!(store.catalog_revision(u64::MAX).await.unwrap(), None);
}

on_both_backends!(
    the_catalog_moves_by_numbered_revisions =>
    the_catalog_moves_by_numbered_revisions_on_sqlite,
    the_catalog_moves_by_numbered_revisions_on_postgres
);

async fn concurrent_changes_get_distinct_revisions(store: &Store) {
    let (alice, _) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let mut versions = Vec::new();
    for i in 0..6 {
        let t = store.create_template(&acme.id, &format!("t{i}"), "", &alice.id).await.unwrap();
        let v = built(store, &t, &alice).await;
        versions.push((t.id, v.id));
    }
    let changes = futures::future::join_all(versions.iter().map(|(t, v)| {
        let store = store.clone();
        async move { store.set_catalog_version(t, v, "promote", &format!("k-{t}"), None).await }
    }))
    .await;
    let mut revisions: Vec<u64> = changes.into_iter().map(|c| c.unwrap().revision).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, [1, 2, 3, 4, 5, 6]);
    let doc = store.catalog().await.unwrap();
    assert_eq!((doc.revision, doc.entries.len()), (6, 6));
    // Each revision's document holds exactly the changes up to it.
    for r in 1..=6u64 {
        let (doc, _, _, _) = store.catalog_revision(r).await.unwrap().unwrap();
        assert_eq!(doc.entries.len() as u64, r);
        assert!(doc.entries.iter().all(|e| e.revision <= r));
    }
}

on_both_backends!(
    concurrent_changes_get_distinct_revisions =>
    concurrent_changes_get_distinct_revisions_on_sqlite,
    concurrent_changes_get_distinct_revisions_on_postgres
);

async fn promotions(store: &Store) {
    let (alice, _) = sign_up(store, "Alice").await;
    let (bob, _) = sign_up(store, "Bob").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let other = shared_workspace(store, &alice, "other").await;
    let rust = store.create_template(&acme.id, "rust", "", &alice.id).await.unwrap();
    let go = store.create_template(&acme.id, "go", "", &alice.id).await.unwrap();
    let v1 = built(store, &rust, &alice).await;
    let g1 = built(store, &go, &alice).await;
    let at = 1_700_000_000_000;

    let new = NewPromotion {
        id: "0190a000-0000-7000-8000-000000000001",
        workspace: &acme.id,
        template: &rust.id,
        version: &v1.id,
        workflow_id: "promote-rust",
        kind: "promote",
        requested_by: &alice.id,
        at,
    };
    let p = store.create_promotion(&new).await.unwrap();
    assert_eq!((p.id.as_str(), &p.workspace_id, &p.template_id), (new.id, &acme.id, &rust.id));
    assert_eq!(
        (&p.version_id, p.version.as_str(), p.workflow_id.as_str()),
        (&v1.id, "1", "promote-rust")
    );
    assert_eq!(
        (p.kind.as_str(), p.status.as_str(), p.step.as_deref(), p.error.as_deref()),
        ("promote", "running", None, None)
    );
    assert_eq!(
        (p.requested_by.as_ref(), p.approved_by.as_ref(), p.approved_at),
        (Some(&alice.id), None, None)
    );
    assert_eq!((p.created_at, p.updated_at, p.finished_at), (at, at, None));
    assert_eq!(p.progress, json!({}));
    // Idempotent on id; an id taken by another template's promotion is a conflict.
    assert_eq!(store.create_promotion(&NewPromotion { at: at + 5, ..new }).await.unwrap(), p);
    let err =
        store.create_promotion(&NewPromotion { template: &go.id, version: &g1.id, ..new }).await;
    assert!(matches!(err, Err(StoreError::Conflict { what: "promotion id" })), "{err:?}");
    // Refused: unknown kind, a version of another template, a template of another workspace.
    let fresh = NewPromotion { id: "p-2", ..new };
    let err = store.create_promotion(&NewPromotion { kind: "publish", ..fresh }).await;
    assert!(matches!(&err, Err(StoreError::Invalid(m)) if m.contains("kind")), "{err:?}");
    let err = store.create_promotion(&NewPromotion { version: &g1.id, ..fresh }).await;
    assert!(
        matches!(&err, Err(StoreError::Invalid(m)) if m.contains("not a version of")),
        "{err:?}"
    );
    let err = store.create_promotion(&NewPromotion { workspace: &other.id, ..fresh }).await;
    assert!(matches!(&err, Err(StoreError::Invalid(m)) if m.contains("workspace")), "{err:?}");
    let unknown = TemplateVersionId::new();
    let err = store.create_promotion(&NewPromotion { version: &unknown, ..fresh }).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    let ghost = UserId::new();
    let err = store.create_promotion(&NewPromotion { requested_by: &ghost, ..fresh }).await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert_eq!(store.promotion("p-2").await.unwrap(), None);

    // Approval only while awaiting it.
    let err = store.approve_promotion(new.id, &bob.id, at + 1).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("running")), "{err:?}");
    let err = store.approve_promotion("nope", &bob.id, at + 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Updates: status, step, error and progress, each kept when not given.
    let waiting = store
        .update_promotion(
            new.id,
            &PromotionUpdate {
                status: Some("awaiting_approval"),
                step: Some("canary"),
                at: at + 10,
                ..PromotionUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.step.as_deref()),
        ("awaiting_approval", Some("canary"))
    );
    assert_eq!((waiting.updated_at, waiting.finished_at), (at + 10, None));
    let approved = store.approve_promotion(new.id, &bob.id, at + 20).await.unwrap();
    assert_eq!(
        (approved.approved_by.as_ref(), approved.approved_at),
        (Some(&bob.id), Some(at + 20))
    );
    assert_eq!(approved.status, "awaiting_approval", "the workflow moves it on");
    // A second approval keeps the first.
    let twice = store.approve_promotion(new.id, &alice.id, at + 30).await.unwrap();
    assert_eq!((twice.approved_by.as_ref(), twice.approved_at), (Some(&bob.id), Some(at + 20)));

    let progress = json!({"node-a": "pulled", "node-b": "pulling"});
    let rolling = store
        .update_promotion(
            new.id,
            &PromotionUpdate {
                status: Some("running"),
                step: Some("rollout"),
                error: Some(Some("node-b is slow")),
                progress: Some(&progress),
                at: at + 40,
            },
        )
        .await
        .unwrap();
    assert_eq!((rolling.status.as_str(), rolling.step.as_deref()), ("running", Some("rollout")));
    assert_eq!((rolling.error.as_deref(), &rolling.progress), (Some("node-b is slow"), &progress));
    let kept = store
        .update_promotion(new.id, &PromotionUpdate { at: at + 50, ..PromotionUpdate::default() })
        .await
        .unwrap();
    assert_eq!(kept, PromotionRecord { updated_at: at + 50, ..rolling.clone() });
    let cleared = store
        .update_promotion(
            new.id,
            &PromotionUpdate { error: Some(None), at: at + 60, ..PromotionUpdate::default() },
        )
        .await
        .unwrap();
    assert_eq!(cleared.error, None);
    let err = store
        .update_promotion(
            new.id,
            &PromotionUpdate { status: Some("done"), at: at + 70, ..PromotionUpdate::default() },
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("status")), "{err:?}");
    let err = store
        .update_promotion("nope", &PromotionUpdate { at: at + 70, ..PromotionUpdate::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // A final status sets finished_at; afterwards nothing changes it.
    let long = "x".repeat(5000);
    let done = store
        .update_promotion(
            new.id,
            &PromotionUpdate {
                status: Some("rolled_back"),
                step: Some("rollback"),
                error: Some(Some(&long)),
                at: at + 80,
                ..PromotionUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (done.status.as_str(), done.finished_at, done.updated_at),
        ("rolled_back", Some(at + 80), at + 80)
    );
    assert_eq!(done.error.as_ref().map(String::len), Some(2000));
    let after = store
        .update_promotion(
            new.id,
            &PromotionUpdate {
                status: Some("succeeded"),
                step: Some("done"),
                error: Some(None),
                progress: Some(&json!({})),
                at: at + 90,
            },
        )
        .await
        .unwrap();
    assert_eq!(after, done);
    let err = store.approve_promotion(new.id, &bob.id, at + 100).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("rolled_back")), "{err:?}");

    // Listing: newest first, limited, per template.
    let second = NewPromotion { id: "p-3", kind: "demote", at: at + 200, ..new };
    store.create_promotion(&second).await.unwrap();
    let third = NewPromotion { id: "p-4", kind: "rollback", at: at + 300, ..new };
    store.create_promotion(&third).await.unwrap();
    let go_promotion = NewPromotion { id: "p-5", template: &go.id, version: &g1.id, ..new };
    store.create_promotion(&go_promotion).await.unwrap();
    let listed: Vec<String> = store
        .promotions_of_template(&rust.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, ["p-4", "p-3", new.id]);
    let listed = store.promotions_of_template(&rust.id, 2).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(), ["rollback", "demote"]);
    assert_eq!(store.promotions_of_template(&go.id, 10).await.unwrap().len(), 1);
    assert!(store.promotions_of_template(&TemplateId::new(), 10).await.unwrap().is_empty());
}

on_both_backends!(promotions => promotions_on_sqlite, promotions_on_postgres);

async fn the_promotion_policy_is_per_workspace(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    assert!(!store.promotion_requires_approval(&acme.id).await.unwrap());
    store.set_promotion_policy(&acme.id, true).await.unwrap();
    assert!(store.promotion_requires_approval(&acme.id).await.unwrap());
    assert!(!store.promotion_requires_approval(&personal.id).await.unwrap());
    store.set_promotion_policy(&acme.id, true).await.unwrap();
    assert!(store.promotion_requires_approval(&acme.id).await.unwrap());
    store.set_promotion_policy(&acme.id, false).await.unwrap();
    assert!(!store.promotion_requires_approval(&acme.id).await.unwrap());
    let unknown = domain::ids::WorkspaceId::new();
    assert!(matches!(store.set_promotion_policy(&unknown, true).await, Err(StoreError::NotFound)));
    assert!(matches!(store.promotion_requires_approval(&unknown).await, Err(StoreError::NotFound)));
}

on_both_backends!(
    the_promotion_policy_is_per_workspace =>
    the_promotion_policy_is_per_workspace_on_sqlite,
    the_promotion_policy_is_per_workspace_on_postgres
);
