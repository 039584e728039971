//! What a workspace's pages list: its sessions, its template catalog and its usage, plus renaming
//! it. Sessions, templates and usage events are written by workflows that do not exist yet, so the
//! fixtures insert those rows with plain SQL; each story is told once and checked on both backends.

use domain::ids::{
    DisplayName, Email, SessionId, Slug, TemplateId, TemplateVersionId, UsageEventId, UserId,
    WorkspaceId,
};
use domain::store::{SessionFilter, SessionRow, Store, StoreError, TemplateRow, User, Workspace};

use crate::support::{self, on_both_backends};

/// An arbitrary "now": the store takes time as an argument, so tests move it by hand.
const T: i64 = 1_700_000_000_000;

async fn sign_up(store: &Store, name: &str) -> (User, Workspace) {
    let email = Email::parse(&format!("{}@example.com", name.to_lowercase())).unwrap();
    let name = DisplayName::parse(name).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap()
}

async fn shared_workspace(store: &Store, owner: &User, slug: &str) -> Workspace {
    let name = DisplayName::parse(slug).unwrap();
    store.create_workspace(&owner.id, &name, &Slug::parse(slug).unwrap(), T).await.unwrap()
}

async fn template(
    store: &Store,
    workspace: &WorkspaceId,
    name: &str,
    updated_at: i64,
    archived_at: Option<i64>,
) -> TemplateId {
    let id = TemplateId::new();
    sqlx::query(
        "INSERT INTO templates
             (id, workspace_id, name, description, created_at, updated_at, archived_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(workspace.as_str())
    .bind(name)
    .bind(format!("The {name} toolchain"))
    .bind(T)
    .bind(updated_at)
    .bind(archived_at)
    .execute(store.pool())
    .await
    .unwrap();
    id
}

async fn version(store: &Store, template: &TemplateId, version: &str) -> TemplateVersionId {
    let id = TemplateVersionId::new();
    sqlx::query(
        "INSERT INTO template_versions
             (id, template_id, version, manifest_json, status, created_at, updated_at)
         VALUES ($1, $2, $3, '{}', 'built', $4, $4)",
    )
    .bind(id.as_str())
    .bind(template.as_str())
    .bind(version)
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();
    id
}

/// Points the runtime catalog at `active`, remembering `previous` the way a promotion does.
async fn promote(
    store: &Store,
    template: &TemplateId,
    active: &TemplateVersionId,
    previous: Option<&TemplateVersionId>,
) {
    sqlx::query(
        "INSERT INTO runtime_catalog
             (template_id, active_version_id, image_ref, previous_version_id, updated_at)
         VALUES ($1, $2, 'registry.local/img:tag', $3, $4)",
    )
    .bind(template.as_str())
    .bind(active.as_str())
    .bind(previous.map(TemplateVersionId::as_str))
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();
}

/// A template with one promoted version, enough to hang sessions on.
async fn runnable_template(
    store: &Store,
    workspace: &WorkspaceId,
    name: &str,
) -> (TemplateId, TemplateVersionId) {
    let template = template(store, workspace, name, T, None).await;
    let v1 = version(store, &template, "v1").await;
    promote(store, &template, &v1, None).await;
    (template, v1)
}

/// What a session row needs besides its name, state and times.
struct Place<'a> {
    workspace: &'a WorkspaceId,
    template: &'a (TemplateId, TemplateVersionId),
}

async fn session(
    store: &Store,
    place: &Place<'_>,
    owner: &UserId,
    name: &str,
    state: &str,
    updated_at: i64,
    last_active_at: Option<i64>,
) -> SessionId {
    let id = SessionId::new();
    sqlx::query(
        "INSERT INTO sessions
             (id, workspace_id, owner_user_id, template_id, template_version_id, name, state,
              workflow_id, created_at, updated_at, last_active_at, deleted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id.as_str())
    .bind(place.workspace.as_str())
    .bind(owner.as_str())
    .bind(place.template.0.as_str())
    .bind(place.template.1.as_str())
    .bind(name)
    .bind(state)
    .bind(format!("session-{id}"))
    .bind(T)
    .bind(updated_at)
    .bind(last_active_at)
    .bind((state == "deleted").then_some(updated_at))
    .execute(store.pool())
    .await
    .unwrap();
    id
}

async fn usage_event(store: &Store, workspace: &WorkspaceId, kind: &str, quantity: i64, at: i64) {
    let id = UsageEventId::new();
    sqlx::query(
        "INSERT INTO usage_events (id, workspace_id, kind, quantity, at, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_str())
    .bind(workspace.as_str())
    .bind(kind)
    .bind(quantity)
    .bind(at)
    .bind(format!("test-{id}"))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn names(store: &Store, workspace: &WorkspaceId, filter: SessionFilter) -> Vec<String> {
    let rows = store.sessions_in_workspace(workspace, filter).await.unwrap();
    rows.into_iter().map(|s| s.name).collect()
}

async fn session_listing(store: &Store) {
    let (alice, _) = sign_up(store, "Alice").await;
    let (bob, bobs) = sign_up(store, "Bob").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let python = runnable_template(store, &acme.id, "python").await;
    let node = runnable_template(store, &acme.id, "node").await;
    let at_acme = |template| Place { workspace: &acme.id, template };

    let nap =
        session(store, &at_acme(&python), &alice.id, "nap", "sleeping", T + 3, Some(T + 2)).await;
    session(store, &at_acme(&python), &alice.id, "work", "running", T + 5, Some(T + 5)).await;
    session(store, &at_acme(&node), &bob.id, "boot", "provisioning", T + 4, None).await;
    session(store, &at_acme(&node), &bob.id, "warm", "starting", T + 2, None).await;
    session(store, &at_acme(&python), &alice.id, "done", "stopped", T + 6, Some(T + 6)).await;
    session(store, &at_acme(&node), &bob.id, "broke", "failed", T + 1, None).await;
    // Deleted sessions are the newest of all, and one of them gave its name back to a live one.
    session(store, &at_acme(&python), &alice.id, "gone", "deleted", T + 9, None).await;
    session(store, &at_acme(&python), &alice.id, "work", "deleted", T + 8, None).await;
    // Bob's personal workspace has its own template and a session newer than any at Acme.
    let bobs_python = runnable_template(store, &bobs.id, "python").await;
    let at_bobs = Place { workspace: &bobs.id, template: &bobs_python };
    session(store, &at_bobs, &bob.id, "elsewhere", "running", T + 100, None).await;

    let all = |owner: Option<&User>| SessionFilter {
        include_ended: true,
        owner: owner.map(|u| u.id.clone()),
    };
    let active = |owner: Option<&User>| SessionFilter {
        include_ended: false,
        owner: owner.map(|u| u.id.clone()),
    };

    assert_eq!(
        names(store, &acme.id, SessionFilter::default()).await,
        ["work", "boot", "nap", "warm"],
        "active sessions of everyone, most recently changed first"
    );
    assert_eq!(
        names(store, &acme.id, all(None)).await,
        ["done", "work", "boot", "nap", "warm", "broke"],
        "stopped and failed too, never deleted"
    );
    assert_eq!(names(store, &acme.id, all(Some(&alice))).await, ["done", "work", "nap"]);
    assert_eq!(names(store, &acme.id, active(Some(&alice))).await, ["work", "nap"]);
    assert_eq!(names(store, &acme.id, active(Some(&bob))).await, ["boot", "warm"]);
    assert_eq!(names(store, &acme.id, all(Some(&bob))).await, ["boot", "warm", "broke"]);
    assert_eq!(names(store, &bobs.id, all(None)).await, ["elsewhere"]);
    assert_eq!(names(store, &bobs.id, all(Some(&alice))).await, Vec::<String>::new());
    assert!(names(store, &WorkspaceId::new(), all(None)).await.is_empty());

    let rows = store.sessions_in_workspace(&acme.id, active(Some(&alice))).await.unwrap();
    assert_eq!(
        rows[1],
        SessionRow {
            id: nap,
            name: "nap".to_owned(),
            state: "sleeping".to_owned(),
            template_name: "python".to_owned(),
            owner_id: alice.id.clone(),
            owner_name: "Alice".to_owned(),
            created_at: T,
            updated_at: T + 3,
            last_active_at: Some(T + 2),
        }
    );
    let boot = &store.sessions_in_workspace(&acme.id, active(Some(&bob))).await.unwrap()[0];
    assert_eq!(
        (boot.template_name.as_str(), boot.owner_name.as_str(), boot.last_active_at),
        ("node", "Bob", None)
    );
}

on_both_backends!(session_listing =>
    sessions_are_listed_newest_first_by_state_and_owner_and_deleted_ones_never_on_sqlite,
    sessions_are_listed_newest_first_by_state_and_owner_and_deleted_ones_never_on_postgres);

async fn template_catalog(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;

    // Promoted to v2 while v3 waits: the active version is the catalog's, not the newest.
    let python = template(store, &acme.id, "python", T + 4, None).await;
    let v1 = version(store, &python, "v1").await;
    let v2 = version(store, &python, "v2").await;
    version(store, &python, "v3").await;
    promote(store, &python, &v2, Some(&v1)).await;
    // Built but never promoted.
    let node = template(store, &acme.id, "node", T + 2, None).await;
    version(store, &node, "v1").await;
    // Archived after its one version was promoted.
    let old = template(store, &acme.id, "old", T + 3, Some(T + 3)).await;
    let old_v1 = version(store, &old, "2023.1").await;
    promote(store, &old, &old_v1, None).await;
    // Nothing uploaded yet.
    let empty = template(store, &acme.id, "empty", T + 1, None).await;
    // Same name in another workspace, with versions of its own.
    let theirs = template(store, &personal.id, "python", T + 9, None).await;
    version(store, &theirs, "v1").await;
    let theirs_v2 = version(store, &theirs, "v2").await;
    promote(store, &theirs, &theirs_v2, None).await;

    let row =
        |id: &TemplateId, name: &str, active: Option<&str>, versions, at, archived| TemplateRow {
            id: id.clone(),
            name: name.to_owned(),
            description: format!("The {name} toolchain"),
            active_version: active.map(str::to_owned),
            versions,
            updated_at: at,
            archived,
        };
    assert_eq!(
        store.templates_in_workspace(&acme.id).await.unwrap(),
        [
            row(&empty, "empty", None, 0, T + 1, false),
            row(&node, "node", None, 1, T + 2, false),
            row(&old, "old", Some("2023.1"), 1, T + 3, true),
            row(&python, "python", Some("v2"), 3, T + 4, false),
        ]
    );
    assert_eq!(
        store.templates_in_workspace(&personal.id).await.unwrap(),
        [row(&theirs, "python", Some("v2"), 2, T + 9, false)]
    );
    assert!(store.templates_in_workspace(&WorkspaceId::new()).await.unwrap().is_empty());
}

on_both_backends!(template_catalog =>
    the_template_catalog_shows_active_versions_counts_and_archived_templates_by_name_on_sqlite,
    the_template_catalog_shows_active_versions_counts_and_archived_templates_by_name_on_postgres);

async fn usage(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let since = T + 1_000;

    // Nothing recorded yet: zeros, not NULLs.
    let nothing = store.usage_summary(&acme.id, since).await.unwrap();
    assert_eq!((nothing.runtime_minutes, nothing.build_minutes, nothing.storage_bytes), (0, 0, 0));
    assert_eq!(nothing.active_sessions, 0);

    usage_event(store, &acme.id, "runtime_minutes", 30, since - 1).await;
    usage_event(store, &acme.id, "runtime_minutes", 10, since).await;
    // More than an INTEGER holds, so a 32-bit sum anywhere would show.
    usage_event(store, &acme.id, "runtime_minutes", 5_000_000_000, since + 5).await;
    usage_event(store, &acme.id, "build_minutes", 100, since - 60_000).await;
    usage_event(store, &acme.id, "build_minutes", 7, since + 1).await;
    usage_event(store, &acme.id, "build_minutes", 8, since + 2).await;
    // A gauge: the newest reading wins, even when it is neither the largest nor the sum.
    usage_event(store, &acme.id, "storage_bytes", 500, since - 10).await;
    usage_event(store, &acme.id, "storage_bytes", 9_000_000_000, since + 1).await;
    usage_event(store, &acme.id, "storage_bytes", 300, since + 2).await;
    usage_event(store, &acme.id, "snapshot_restores", 1_000, since + 3).await;
    // Another workspace: busy, and its only storage reading predates the period.
    usage_event(store, &personal.id, "runtime_minutes", 1_000, since + 1).await;
    usage_event(store, &personal.id, "build_minutes", 1_000, since + 1).await;
    usage_event(store, &personal.id, "storage_bytes", 4_096, since - 100).await;
    usage_event(store, &personal.id, "storage_bytes", 77_777, since + 50).await;

    let python = runnable_template(store, &acme.id, "python").await;
    let at_acme = Place { workspace: &acme.id, template: &python };
    for (name, state) in [
        ("a", "provisioning"),
        ("b", "starting"),
        ("c", "running"),
        ("d", "sleeping"),
        ("e", "stopped"),
        ("f", "failed"),
        ("g", "deleted"),
    ] {
        session(store, &at_acme, &alice.id, name, state, T, None).await;
    }
    let theirs = runnable_template(store, &personal.id, "python").await;
    let at_personal = Place { workspace: &personal.id, template: &theirs };
    session(store, &at_personal, &alice.id, "solo", "running", T, None).await;

    let acme_usage = store.usage_summary(&acme.id, since).await.unwrap();
    assert_eq!(acme_usage.runtime_minutes, 5_000_000_010, "only events at or after since");
    assert_eq!(acme_usage.build_minutes, 15);
    assert_eq!(acme_usage.storage_bytes, 300);
    assert_eq!(acme_usage.active_sessions, 4, "provisioning, starting, running, sleeping");

    // Moving `since` moves the sums, not the gauge or the live count.
    let later = store.usage_summary(&acme.id, since + 2).await.unwrap();
    assert_eq!((later.runtime_minutes, later.build_minutes), (5_000_000_000, 8));
    assert_eq!((later.storage_bytes, later.active_sessions), (300, 4));
    let future = store.usage_summary(&acme.id, since + 60_000).await.unwrap();
    assert_eq!((future.runtime_minutes, future.build_minutes), (0, 0));
    assert_eq!((future.storage_bytes, future.active_sessions), (300, 4));

    let mine = store.usage_summary(&personal.id, since).await.unwrap();
    assert_eq!((mine.runtime_minutes, mine.build_minutes), (1_000, 1_000));
    assert_eq!((mine.storage_bytes, mine.active_sessions), (77_777, 1));
    sqlx::query("DELETE FROM usage_events WHERE workspace_id = $1 AND at > $2")
        .bind(personal.id.as_str())
        .bind(since)
        .execute(store.pool())
        .await
        .unwrap();
    let quiet = store.usage_summary(&personal.id, since).await.unwrap();
    assert_eq!(
        (quiet.runtime_minutes, quiet.build_minutes, quiet.storage_bytes),
        (0, 0, 4_096),
        "the last storage reading stands until the next one, however old"
    );
}

on_both_backends!(usage =>
    usage_sums_minutes_since_a_time_reads_storage_as_a_gauge_and_counts_active_sessions_on_sqlite,
    usage_sums_minutes_since_a_time_reads_storage_as_a_gauge_and_counts_active_sessions_on_postgres);

/// Read behind the store's back, since `Workspace` does not carry `updated_at`.
async fn stored_name_and_updated_at(store: &Store, id: &WorkspaceId) -> (String, i64) {
    sqlx::query_as("SELECT name, updated_at FROM workspaces WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn renaming(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let new_name = DisplayName::parse("Acme Inc.").unwrap();

    let renamed = store.rename_workspace(&acme.id, &new_name, T + 5).await.unwrap();
    assert_eq!(renamed, Workspace { name: new_name.clone(), ..acme.clone() }, "only the name");
    assert_eq!(store.workspace_by_id(&acme.id).await.unwrap(), Some(renamed));
    assert_eq!(stored_name_and_updated_at(store, &acme.id).await, ("Acme Inc.".to_owned(), T + 5));
    assert_eq!(store.workspace_by_id(&personal.id).await.unwrap(), Some(personal.clone()));

    let err = store.rename_workspace(&WorkspaceId::new(), &new_name, T + 6).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    sqlx::query("UPDATE workspaces SET deleted_at = $2 WHERE id = $1")
        .bind(acme.id.as_str())
        .bind(T + 7)
        .execute(store.pool())
        .await
        .unwrap();
    let other_name = DisplayName::parse("Zombie").unwrap();
    let err = store.rename_workspace(&acme.id, &other_name, T + 8).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        stored_name_and_updated_at(store, &acme.id).await,
        ("Acme Inc.".to_owned(), T + 5),
        "a refused rename changes nothing"
    );
}

on_both_backends!(renaming =>
    a_workspace_is_renamed_unless_it_is_missing_or_deleted_on_sqlite,
    a_workspace_is_renamed_unless_it_is_missing_or_deleted_on_postgres);
