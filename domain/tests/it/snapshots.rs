//! Snapshots and the session's latest-snapshot pointer: each story told once and checked on both
//! backends.

use domain::ids::{DisplayName, Email, SessionId, SnapshotId, UserId, WorkspaceId};
use domain::store::{
    Backend, NewSession, NewSnapshot, SnapshotRecord, Store, StoreError, UploadedSnapshot, User,
    Workspace, now_ms,
};

use crate::support::{self, on_both_backends};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const T: i64 = 1_700_000_000_000;

async fn sign_up(store: &Store, name: &str) -> (User, Workspace) {
    let email = Email::parse(&format!("{}@example.com", name.to_lowercase())).unwrap();
    let name = DisplayName::parse(name).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap()
}

/// A session named `name` of `owner` in `ws`, on a fresh template.
async fn session(store: &Store, ws: &WorkspaceId, owner: &UserId, name: &str) -> SessionId {
    let template = store.create_template(ws, name, "", owner).await.unwrap();
    let version = store
        .create_draft_version(&template.id, 1, SHA, now_ms() + 600_000, owner, |id| {
            format!("bundles/{id}.tar.zst")
        })
        .await
        .unwrap();
    store.accept_upload(&version.id, "{}").await.unwrap();
    let new = NewSession {
        workspace: ws,
        owner,
        template: &template.id,
        version: &version.id,
        name,
        image_ref: "registry.local/acme/rust:1",
        idle_timeout_minutes: 30,
        idempotency_key: None,
    };
    store.create_session(&new).await.unwrap().0.id
}

/// Where snapshots are taken.
struct Place<'a> {
    store: &'a Store,
    session: &'a SessionId,
    workspace: &'a WorkspaceId,
}

impl Place<'_> {
    async fn begin(&self, trigger: &str, at: i64) -> SnapshotRecord {
        let id = SnapshotId::new();
        self.begin_id(&id, trigger, at).await
    }

    async fn begin_id(&self, id: &SnapshotId, trigger: &str, at: i64) -> SnapshotRecord {
        let new = NewSnapshot {
            id,
            session: self.session,
            workspace: self.workspace,
            trigger,
            created_by: None,
            at,
        };
        self.store.begin_snapshot(&new).await.unwrap()
    }

    async fn upload(&self, id: &SnapshotId) -> SnapshotRecord {
        self.store.snapshot_uploaded(id, &manifest(&manifest_key(id))).await.unwrap()
    }

    /// Begun at `at`, uploaded and committed; returns it and whether the pointer moved to it.
    async fn take(&self, at: i64) -> (SnapshotRecord, bool) {
        let s = self.begin("sleep", at).await;
        self.upload(&s.id).await;
        self.store.commit_snapshot(&s.id, at + 1).await.unwrap()
    }

    async fn failed(&self, at: i64) -> SnapshotRecord {
        let s = self.begin("stop", at).await;
        self.store.fail_snapshot(&s.id, "agent went away").await.unwrap()
    }

    async fn latest(&self) -> Option<SnapshotId> {
        self.store.latest_snapshot(self.session).await.unwrap().map(|r| r.id)
    }

    async fn listed(&self) -> Vec<SnapshotId> {
        let all = self.store.snapshots_of_session(self.session).await.unwrap();
        all.into_iter().map(|r| r.id).collect()
    }
}

fn manifest_key(id: &SnapshotId) -> String {
    format!("workspaces/w/manifests/{id}.json")
}

fn manifest(key: &str) -> UploadedSnapshot<'_> {
    UploadedSnapshot {
        manifest_key: key,
        size_bytes: 5_000_000,
        sha256: SHA,
        chunks: 5,
        new_chunks: 2,
        stored_bytes: 1_200_000,
    }
}

/// Two fresh snapshot ids, smaller first.
fn two_ids() -> (SnapshotId, SnapshotId) {
    let (a, b) = (SnapshotId::new(), SnapshotId::new());
    if a < b { (a, b) } else { (b, a) }
}

async fn latest_at(store: &Store, session: &SessionId) -> Option<i64> {
    sqlx::query_scalar("SELECT latest_snapshot_at FROM sessions WHERE id = $1")
        .bind(session.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn is_invalid(err: &StoreError, words: &str) -> bool {
    matches!(err, StoreError::Invalid(m) if m.contains(words))
}

async fn lifecycle(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let place = Place { store, session: &dev, workspace: &ws.id };

    // Begin: a pending row with nothing uploaded yet.
    let id = SnapshotId::new();
    let new = NewSnapshot {
        id: &id,
        session: &dev,
        workspace: &ws.id,
        trigger: "manual",
        created_by: Some(&alice.id),
        at: T,
    };
    let pending = store.begin_snapshot(&new).await.unwrap();
    let expected = SnapshotRecord {
        id: id.clone(),
        session_id: dev.clone(),
        workspace_id: ws.id.clone(),
        trigger: "manual".to_owned(),
        status: "pending".to_owned(),
        manifest_key: None,
        size_bytes: None,
        sha256: None,
        chunks: None,
        new_chunks: None,
        stored_bytes: None,
        error: None,
        created_by: Some(alice.id.clone()),
        created_at: T,
        verified_at: None,
        latest: false,
    };
    assert_eq!(pending, expected);
    // The same id again (a retried activity) returns the row unchanged, whatever it asks for.
    let again = NewSnapshot { trigger: "sleep", created_by: None, at: T + 5, ..new };
    assert_eq!(store.begin_snapshot(&again).await.unwrap(), expected);
    assert_eq!(store.snapshot_by_id(&id).await.unwrap(), Some(expected.clone()));
    assert_eq!(place.listed().await, std::slice::from_ref(&id));

    // Refused begins.
    let other = SnapshotId::new();
    let err = store
        .begin_snapshot(&NewSnapshot { id: &other, trigger: "cron", ..new })
        .await
        .unwrap_err();
    assert!(is_invalid(&err, "trigger"), "{err:?}");
    let nowhere = SessionId::new();
    let err = store
        .begin_snapshot(&NewSnapshot { id: &other, session: &nowhere, ..new })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let elsewhere = WorkspaceId::new();
    let err = store
        .begin_snapshot(&NewSnapshot { id: &other, workspace: &elsewhere, ..new })
        .await
        .unwrap_err();
    assert!(is_invalid(&err, "workspace"), "{err:?}");
    let nobody = UserId::new();
    let err = store
        .begin_snapshot(&NewSnapshot { id: &other, created_by: Some(&nobody), ..new })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let second = session(store, &ws.id, &alice.id, "second").await;
    let err = store.begin_snapshot(&NewSnapshot { session: &second, ..new }).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "snapshot id" }), "{err:?}");
    assert_eq!(store.snapshot_by_id(&other).await.unwrap(), None);

    // Not uploaded yet: it can be neither committed nor restored.
    let err = store.commit_snapshot(&id, T + 1).await.unwrap_err();
    assert!(is_invalid(&err, "pending"), "{err:?}");
    let err = store.select_snapshot(&dev, &id, T + 1).await.unwrap_err();
    assert!(is_invalid(&err, "pending"), "{err:?}");

    // Uploaded: the manifest's facts; a retry changes nothing.
    let key = manifest_key(&id);
    let uploaded = store.snapshot_uploaded(&id, &manifest(&key)).await.unwrap();
    let expected = SnapshotRecord {
        status: "uploaded".to_owned(),
        manifest_key: Some(key.clone()),
        size_bytes: Some(5_000_000),
        sha256: Some(SHA.to_owned()),
        chunks: Some(5),
        new_chunks: Some(2),
        stored_bytes: Some(1_200_000),
        ..expected
    };
    assert_eq!(uploaded, expected);
    let other_key = format!("{key}.other");
    assert_eq!(store.snapshot_uploaded(&id, &manifest(&other_key)).await.unwrap(), expected);
    let err = store.snapshot_uploaded(&id, &manifest("")).await.unwrap_err();
    assert!(is_invalid(&err, "manifest_key"), "{err:?}");
    let err = store.snapshot_uploaded(&SnapshotId::new(), &manifest(&key)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let huge = UploadedSnapshot { size_bytes: u64::MAX, ..manifest(&key) };
    let err = store.snapshot_uploaded(&id, &huge).await.unwrap_err();
    assert!(is_invalid(&err, "size_bytes"), "{err:?}");

    // Committed: verified, and the session's first snapshot becomes its latest.
    assert_eq!(place.latest().await, None);
    assert_eq!(store.latest_snapshot_key(&dev).await.unwrap(), None);
    let (verified, moved) = store.commit_snapshot(&id, T + 10).await.unwrap();
    assert!(moved);
    let expected = SnapshotRecord {
        status: "verified".to_owned(),
        verified_at: Some(T + 10),
        latest: true,
        ..expected
    };
    assert_eq!(verified, expected);
    assert_eq!(store.latest_snapshot(&dev).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.latest_snapshot_key(&dev).await.unwrap(), Some(key.clone()));
    assert_eq!(latest_at(store, &dev).await, Some(T));
    // A retried commit answers the same and keeps the first verified_at.
    assert_eq!(store.commit_snapshot(&id, T + 20).await.unwrap(), (expected.clone(), true));
    // Uploading it again is a retry too.
    assert_eq!(store.snapshot_uploaded(&id, &manifest(&key)).await.unwrap(), expected);
    let err = store.commit_snapshot(&SnapshotId::new(), T).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Failing a verified snapshot changes nothing.
    assert_eq!(store.fail_snapshot(&id, "late failure").await.unwrap(), expected);

    // A failure while pending, and one after the upload: the error is kept, cut at 2000
    // characters.
    let broken = place.begin("restart", T + 30).await;
    let long = "é".repeat(2500);
    let failed = store.fail_snapshot(&broken.id, &long).await.unwrap();
    assert_eq!(
        failed,
        SnapshotRecord {
            status: "failed".to_owned(),
            error: Some("é".repeat(2000)),
            ..broken.clone()
        }
    );
    assert_eq!(store.fail_snapshot(&broken.id, "again").await.unwrap(), failed);
    let err = store.snapshot_uploaded(&broken.id, &manifest(&key)).await.unwrap_err();
    assert!(is_invalid(&err, "failed"), "{err:?}");
    let err = store.commit_snapshot(&broken.id, T + 31).await.unwrap_err();
    assert!(is_invalid(&err, "failed"), "{err:?}");
    let late = place.begin("stop", T + 40).await;
    place.upload(&late.id).await;
    let failed_late = store.fail_snapshot(&late.id, "verify: chunk 3 is missing").await.unwrap();
    assert_eq!(failed_late.status, "failed");
    assert_eq!(failed_late.manifest_key, Some(manifest_key(&late.id)));
    assert_eq!(failed_late.error.as_deref(), Some("verify: chunk 3 is missing"));
    let err = store.fail_snapshot(&SnapshotId::new(), "x").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // None of that moved the pointer; the listing is newest first.
    assert_eq!(place.latest().await, Some(id.clone()));
    assert_eq!(place.listed().await, [late.id.clone(), broken.id.clone(), id.clone()]);
    let listed = store.snapshots_of_session(&dev).await.unwrap();
    assert_eq!(listed[2], expected);
    assert_eq!(store.snapshot_of_session(&dev, &id).await.unwrap(), Some(expected));
    assert!(store.snapshots_of_session(&second).await.unwrap().is_empty());
}

on_both_backends!(lifecycle =>
    a_snapshot_is_begun_uploaded_committed_or_failed_idempotently_on_sqlite,
    a_snapshot_is_begun_uploaded_committed_or_failed_idempotently_on_postgres);

async fn pointer_order(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let place = Place { store, session: &dev, workspace: &ws.id };

    // A slow snapshot (begun first, committed last) does not move the pointer back.
    let slow = place.begin("manual", T).await;
    let fast = place.begin("sleep", T + 10).await;
    place.upload(&fast.id).await;
    assert!(store.commit_snapshot(&fast.id, T + 11).await.unwrap().1);
    place.upload(&slow.id).await;
    let (slow, moved) = store.commit_snapshot(&slow.id, T + 12).await.unwrap();
    assert!(!moved);
    assert_eq!((slow.status.as_str(), slow.latest), ("verified", false));
    assert_eq!(place.latest().await, Some(fast.id.clone()));
    assert_eq!(latest_at(store, &dev).await, Some(T + 10));
    // Its retry still does not.
    assert!(!store.commit_snapshot(&slow.id, T + 13).await.unwrap().1);

    // Two snapshots begun at the same millisecond: the larger id wins, whichever commits first.
    let (small, large) = two_ids();
    place.begin_id(&small, "manual", T + 20).await;
    place.begin_id(&large, "manual", T + 20).await;
    place.upload(&small).await;
    place.upload(&large).await;
    assert!(store.commit_snapshot(&large, T + 21).await.unwrap().1);
    assert!(!store.commit_snapshot(&small, T + 22).await.unwrap().1);
    assert_eq!(place.latest().await, Some(large.clone()));

    let (small, large) = two_ids();
    place.begin_id(&small, "manual", T + 30).await;
    place.begin_id(&large, "manual", T + 30).await;
    place.upload(&small).await;
    place.upload(&large).await;
    assert!(store.commit_snapshot(&small, T + 31).await.unwrap().1);
    assert!(store.commit_snapshot(&large, T + 32).await.unwrap().1);
    assert_eq!(place.latest().await, Some(large.clone()));
    assert_eq!(latest_at(store, &dev).await, Some(T + 30));
    let small = store.snapshot_by_id(&small).await.unwrap().unwrap();
    assert!(!small.latest);

    // Exactly one snapshot of the session is marked latest.
    let listed = store.snapshots_of_session(&dev).await.unwrap();
    assert_eq!(listed.iter().filter(|r| r.latest).count(), 1);
    assert_eq!(listed[0].id, large);
}

/// Commits racing each other end with the pointer at the newest, whatever order they ran in.
async fn racing_commits(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let place = Place { store, session: &dev, workspace: &ws.id };
    let mut ids = Vec::new();
    // Begun in an order unrelated to their creation times.
    for at in [3, 7, 1, 6, 2, 8, 4, 5] {
        let s = place.begin("sleep", T + at).await;
        place.upload(&s.id).await;
        ids.push((at, s.id));
    }
    let mut commits = tokio::task::JoinSet::new();
    for (_, id) in ids.clone() {
        let store = store.clone();
        commits.spawn(async move { store.commit_snapshot(&id, T + 100).await.unwrap() });
    }
    let mut committed = 0;
    while let Some(done) = commits.join_next().await {
        let (record, _) = done.unwrap();
        assert_eq!(record.status, "verified");
        committed += 1;
    }
    assert_eq!(committed, 8);
    let newest = ids.iter().find(|(at, _)| *at == 8).unwrap().1.clone();
    assert_eq!(place.latest().await, Some(newest));
    assert_eq!(latest_at(store, &dev).await, Some(T + 8));
}

on_both_backends!(racing_commits =>
    racing_commits_leave_the_pointer_at_the_newest_on_sqlite,
    racing_commits_leave_the_pointer_at_the_newest_on_postgres);

on_both_backends!(pointer_order =>
    commits_move_the_pointer_forward_only_with_ties_broken_by_id_on_sqlite,
    commits_move_the_pointer_forward_only_with_ties_broken_by_id_on_postgres);

async fn restore(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let (bob, bobs_ws) = sign_up(store, "Bob").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let bobs = session(store, &bobs_ws.id, &bob.id, "bobs").await;
    let place = Place { store, session: &dev, workspace: &ws.id };
    let bob_place = Place { store, session: &bobs, workspace: &bobs_ws.id };

    let (a, _) = place.take(T).await;
    let (b, moved) = place.take(T + 10).await;
    assert!(moved);
    assert_eq!(
        store.previous_verified_snapshot(&dev, &b.id).await.unwrap().map(|r| r.id),
        Some(a.id.clone())
    );
    assert_eq!(store.previous_verified_snapshot(&dev, &a.id).await.unwrap(), None);

    // Restoring the older one points at it, with the time of the restore as its order.
    let restored = store.select_snapshot(&dev, &a.id, T + 100).await.unwrap();
    assert_eq!(restored, SnapshotRecord { latest: true, ..a.clone() });
    assert_eq!(place.latest().await, Some(a.id.clone()));
    assert_eq!(latest_at(store, &dev).await, Some(T + 100));
    // Again: the same.
    assert_eq!(store.select_snapshot(&dev, &a.id, T + 100).await.unwrap(), restored);

    // A snapshot begun before the restore does not undo it; one begun after it moves it on.
    let (c, moved) = place.take(T + 50).await;
    assert!(!moved);
    assert_eq!(place.latest().await, Some(a.id.clone()));
    let (d, moved) = place.take(T + 200).await;
    assert!(moved);
    assert_eq!(place.latest().await, Some(d.id.clone()));
    assert_eq!(latest_at(store, &dev).await, Some(T + 200));

    // "The previous one" goes by creation, whatever the pointer did.
    let session = &dev;
    let previous = |of: SnapshotId| async move {
        store.previous_verified_snapshot(session, &of).await.unwrap().map(|r| r.id)
    };
    assert_eq!(previous(d.id.clone()).await, Some(c.id.clone()));
    assert_eq!(previous(c.id.clone()).await, Some(b.id.clone()));
    // Failed and pending ones are skipped.
    let e = place.failed(T + 300).await;
    let f = place.begin("manual", T + 310).await;
    let (g, _) = place.take(T + 320).await;
    assert_eq!(previous(g.id.clone()).await, Some(d.id.clone()));
    assert_eq!(previous(e.id.clone()).await, Some(d.id.clone()));
    // An anchor that is not the session's has no previous one.
    assert_eq!(previous(SnapshotId::new()).await, None);

    // Only verified snapshots of the session itself can be restored.
    let err = store.select_snapshot(&dev, &e.id, T + 400).await.unwrap_err();
    assert!(is_invalid(&err, "failed"), "{err:?}");
    let err = store.select_snapshot(&dev, &f.id, T + 400).await.unwrap_err();
    assert!(is_invalid(&err, "pending"), "{err:?}");
    let err = store.select_snapshot(&dev, &SnapshotId::new(), T + 400).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.select_snapshot(&SessionId::new(), &a.id, T + 400).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Another session's snapshot is not found through this one, for anything.
    let (bobs_snapshot, _) = bob_place.take(T).await;
    let err = store.select_snapshot(&dev, &bobs_snapshot.id, T + 400).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.delete_snapshot(&dev, &bobs_snapshot.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.snapshot_of_session(&dev, &bobs_snapshot.id).await.unwrap(), None);
    assert_eq!(store.previous_verified_snapshot(&dev, &bobs_snapshot.id).await.unwrap(), None);
    assert_eq!(store.latest_snapshot(&bobs).await.unwrap().map(|r| r.id), Some(bobs_snapshot.id));
    assert_eq!(place.latest().await, Some(g.id.clone()));

    // A deleted snapshot cannot be restored.
    store.delete_snapshot(&dev, &b.id).await.unwrap();
    let err = store.select_snapshot(&dev, &b.id, T + 400).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(previous(c.id.clone()).await, Some(a.id.clone()));
}

on_both_backends!(restore =>
    a_restore_points_at_an_older_snapshot_until_a_newer_one_is_committed_on_sqlite,
    a_restore_points_at_an_older_snapshot_until_a_newer_one_is_committed_on_postgres);

async fn retention(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let other = session(store, &ws.id, &alice.id, "other").await;
    let place = Place { store, session: &dev, workspace: &ws.id };
    let other_place = Place { store, session: &other, workspace: &ws.id };

    let pending = place.begin("manual", T - 100).await;
    let uploaded = place.begin("manual", T - 90).await;
    place.upload(&uploaded.id).await;
    let mut verified = Vec::new();
    let mut failed = Vec::new();
    for i in 0..5 {
        verified.push(place.take(T + 10 * i).await.0.id);
        if i < 3 {
            failed.push(place.failed(T + 10 * i + 5).await.id);
        }
    }
    let (others, _) = other_place.take(T).await;
    // The user restored the second oldest.
    store.select_snapshot(&dev, &verified[1], T + 1000).await.unwrap();

    // Keeping none is keeping one: the newest verified stays, and so does the restored one; the
    // newest failed one stays; pending and uploaded ones are never touched.
    let retired = store.retire_snapshots(&dev, 0, 1).await.unwrap();
    let mut retired_ids: Vec<SnapshotId> = retired.iter().map(|r| r.id.clone()).collect();
    retired_ids.sort();
    let mut expected = vec![
        verified[0].clone(),
        verified[2].clone(),
        verified[3].clone(),
        failed[0].clone(),
        failed[1].clone(),
    ];
    expected.sort();
    assert_eq!(retired_ids, expected);
    assert!(retired.iter().all(|r| r.status == "deleted" && !r.latest));
    assert_eq!(
        store.snapshot_by_id(&verified[0]).await.unwrap().unwrap(),
        retired.iter().find(|r| r.id == verified[0]).unwrap().clone()
    );
    assert_eq!(
        place.listed().await,
        [
            verified[4].clone(),
            failed[2].clone(),
            verified[1].clone(),
            uploaded.id.clone(),
            pending.id.clone()
        ]
    );
    assert_eq!(place.latest().await, Some(verified[1].clone()));
    // Nothing more to retire; another session's snapshots were never considered.
    assert!(store.retire_snapshots(&dev, 0, 1).await.unwrap().is_empty());
    assert!(store.retire_snapshots(&dev, 5, 5).await.unwrap().is_empty());
    assert_eq!(other_place.listed().await, std::slice::from_ref(&others.id));

    // Keeping more keeps more: with the pointer on the newest, two verified stay.
    let (newest, _) = place.take(T + 2000).await;
    let retired = store.retire_snapshots(&dev, 2, 0).await.unwrap();
    let mut retired_ids: Vec<SnapshotId> = retired.into_iter().map(|r| r.id).collect();
    retired_ids.sort();
    let mut expected = vec![verified[1].clone(), failed[2].clone()];
    expected.sort();
    assert_eq!(retired_ids, expected);
    assert_eq!(
        place.listed().await,
        [newest.id.clone(), verified[4].clone(), uploaded.id.clone(), pending.id.clone()]
    );

    let err = store.retire_snapshots(&SessionId::new(), 1, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(retention =>
    retention_keeps_the_pointers_target_the_newest_verified_and_unfinished_snapshots_on_sqlite,
    retention_keeps_the_pointers_target_the_newest_verified_and_unfinished_snapshots_on_postgres);

async fn deleting(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let (_, elsewhere) = sign_up(store, "Bob").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let other = session(store, &ws.id, &alice.id, "other").await;
    let bobs = session(store, &elsewhere.id, &elsewhere.owner, "bobs").await;
    let place = Place { store, session: &dev, workspace: &ws.id };
    let other_place = Place { store, session: &other, workspace: &ws.id };
    let bob_place = Place { store, session: &bobs, workspace: &elsewhere.id };

    let (old, _) = place.take(T).await;
    let (latest, _) = place.take(T + 10).await;
    let failed = place.failed(T + 20).await;
    let pending = place.begin("manual", T + 30).await;
    let uploaded = place.begin("manual", T + 40).await;
    place.upload(&uploaded.id).await;
    let (others, _) = other_place.take(T).await;
    let (bobs_snapshot, _) = bob_place.take(T).await;

    // What garbage collection keeps: uploaded and verified manifests of the workspace.
    let mut live = vec![
        manifest_key(&old.id),
        manifest_key(&latest.id),
        manifest_key(&uploaded.id),
        manifest_key(&others.id),
    ];
    live.sort();
    assert_eq!(store.live_manifest_keys(&ws.id).await.unwrap(), live);
    assert_eq!(
        store.live_manifest_keys(&elsewhere.id).await.unwrap(),
        [manifest_key(&bobs_snapshot.id)]
    );
    assert_eq!(store.live_manifest_keys(&WorkspaceId::new()).await.unwrap(), Vec::<String>::new());

    // The latest cannot be deleted, nor one still being taken.
    let err = store.delete_snapshot(&dev, &latest.id).await.unwrap_err();
    assert!(is_invalid(&err, "latest snapshot cannot be deleted"), "{err:?}");
    let err = store.delete_snapshot(&dev, &pending.id).await.unwrap_err();
    assert!(is_invalid(&err, "still being taken"), "{err:?}");
    let err = store.delete_snapshot(&dev, &uploaded.id).await.unwrap_err();
    assert!(is_invalid(&err, "still being taken"), "{err:?}");

    // Another one can, once.
    let deleted = store.delete_snapshot(&dev, &old.id).await.unwrap();
    assert_eq!(
        deleted,
        SnapshotRecord { status: "deleted".to_owned(), latest: false, ..old.clone() }
    );
    assert_eq!(store.snapshot_by_id(&old.id).await.unwrap(), Some(deleted));
    assert_eq!(store.snapshot_of_session(&dev, &old.id).await.unwrap(), None);
    let err = store.delete_snapshot(&dev, &old.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.delete_snapshot(&dev, &SnapshotId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    store.delete_snapshot(&dev, &failed.id).await.unwrap();
    live.retain(|k| *k != manifest_key(&old.id));
    assert_eq!(store.live_manifest_keys(&ws.id).await.unwrap(), live);
    assert_eq!(place.listed().await, [uploaded.id.clone(), pending.id.clone(), latest.id.clone()]);

    // Deleting the session: the pointer is cleared and every snapshot deleted.
    let retired = store.retire_all_snapshots(&dev).await.unwrap();
    let retired_ids: Vec<SnapshotId> = retired.iter().map(|r| r.id.clone()).collect();
    assert_eq!(retired_ids, [uploaded.id.clone(), pending.id.clone(), latest.id.clone()]);
    assert!(retired.iter().all(|r| r.status == "deleted" && !r.latest));
    assert_eq!(place.latest().await, None);
    assert_eq!(latest_at(store, &dev).await, None);
    assert_eq!(store.latest_snapshot_key(&dev).await.unwrap(), None);
    assert_eq!(place.listed().await, Vec::<SnapshotId>::new());
    assert_eq!(store.live_manifest_keys(&ws.id).await.unwrap(), [manifest_key(&others.id)]);
    assert!(store.retire_all_snapshots(&dev).await.unwrap().is_empty());
    let err = store.retire_all_snapshots(&SessionId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // The pending one's workflow finds it gone.
    let err = store.snapshot_uploaded(&pending.id, &manifest("k")).await.unwrap_err();
    assert!(is_invalid(&err, "deleted"), "{err:?}");
    assert_eq!(store.fail_snapshot(&pending.id, "x").await.unwrap().status, "deleted");
    assert_eq!(other_place.latest().await, Some(others.id));
}

on_both_backends!(deleting =>
    deleting_refuses_the_latest_and_retiring_all_clears_the_pointer_on_sqlite,
    deleting_refuses_the_latest_and_retiring_all_clears_the_pointer_on_postgres);

async fn last_taken(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let other = session(store, &ws.id, &alice.id, "other").await;
    let place = Place { store, session: &dev, workspace: &ws.id };

    assert_eq!(store.last_snapshot_at(&dev, "manual").await.unwrap(), None);
    let first = place.begin("manual", T).await;
    assert_eq!(store.last_snapshot_at(&dev, "manual").await.unwrap(), Some(T));
    // A failed one does not count; a deleted one does.
    let broken = place.begin("manual", T + 10).await;
    store.fail_snapshot(&broken.id, "x").await.unwrap();
    assert_eq!(store.last_snapshot_at(&dev, "manual").await.unwrap(), Some(T));
    place.upload(&first.id).await;
    store.commit_snapshot(&first.id, T + 1).await.unwrap();
    let (second, _) = place.take(T + 20).await;
    assert_eq!(second.trigger, "sleep");
    store.delete_snapshot(&dev, &first.id).await.unwrap();
    assert_eq!(store.last_snapshot_at(&dev, "manual").await.unwrap(), Some(T));
    // Per trigger and per session.
    assert_eq!(store.last_snapshot_at(&dev, "sleep").await.unwrap(), Some(T + 20));
    assert_eq!(store.last_snapshot_at(&dev, "pre-restore").await.unwrap(), None);
    assert_eq!(store.last_snapshot_at(&other, "manual").await.unwrap(), None);
    let err = store.last_snapshot_at(&dev, "hourly").await.unwrap_err();
    assert!(is_invalid(&err, "trigger"), "{err:?}");
}

on_both_backends!(last_taken =>
    the_last_snapshot_of_a_trigger_is_found_for_the_manual_interval_on_sqlite,
    the_last_snapshot_of_a_trigger_is_found_for_the_manual_interval_on_postgres);

/// The schema refuses an unknown trigger by itself, and 0005 fills the new columns of rows written
/// before it.
async fn migration(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let place = Place { store, session: &dev, workspace: &ws.id };
    let s = place.begin("manual", T).await;
    let err = sqlx::query("UPDATE snapshots SET trigger_kind = 'hourly' WHERE id = $1")
        .bind(s.id.as_str())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.as_database_error().unwrap().is_check_violation(), "{err}");
}

on_both_backends!(migration =>
    the_schema_refuses_an_unknown_trigger_on_sqlite,
    the_schema_refuses_an_unknown_trigger_on_postgres);

/// Runs the migrations before 0005, writes a snapshot and a pointer the way 0001 allowed, then
/// the rest: the snapshot gets its session's workspace and the pointer its ordering value.
async fn backfill(store: &Store) {
    let dialect = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(dialect);
    let before = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "0005" {
            std::fs::copy(entry.path(), before.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
    assert_eq!(migrator.iter().count(), 4);
    migrator.run(store.pool()).await.unwrap();

    let (alice, ws) = sign_up(store, "Alice").await;
    let dev = session(store, &ws.id, &alice.id, "dev").await;
    let id = SnapshotId::new();
    sqlx::query(
        "INSERT INTO snapshots (id, session_id, content_key, size_bytes, sha256, status,
                                created_at, verified_at)
         VALUES ($1, $2, 'snapshots/old', 10, $3, 'verified', $4, $4)",
    )
    .bind(id.as_str())
    .bind(dev.as_str())
    .bind(SHA)
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET latest_snapshot_id = $2 WHERE id = $1")
        .bind(dev.as_str())
        .bind(id.as_str())
        .execute(store.pool())
        .await
        .unwrap();

    store.migrate().await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), Vec::<i64>::new());
    let old = store.latest_snapshot(&dev).await.unwrap().unwrap();
    assert_eq!(
        old,
        SnapshotRecord {
            id: id.clone(),
            session_id: dev.clone(),
            workspace_id: ws.id.clone(),
            trigger: "manual".to_owned(),
            status: "verified".to_owned(),
            manifest_key: Some("snapshots/old".to_owned()),
            size_bytes: Some(10),
            sha256: Some(SHA.to_owned()),
            chunks: None,
            new_chunks: None,
            stored_bytes: None,
            error: None,
            created_by: None,
            created_at: T,
            verified_at: Some(T),
            latest: true,
        }
    );
    assert_eq!(latest_at(store, &dev).await, Some(T));
    assert_eq!(store.live_manifest_keys(&ws.id).await.unwrap(), ["snapshots/old"]);
    // An older snapshot committed now does not displace it; a newer one does.
    let place = Place { store, session: &dev, workspace: &ws.id };
    assert!(!place.take(T - 1).await.1);
    assert!(place.take(T + 1).await.1);
}

#[tokio::test]
async fn migration_0005_fills_in_rows_written_before_it_on_sqlite() {
    let (store, _dir) = support::sqlite_unmigrated().await;
    backfill(&store).await;
}

#[tokio::test]
async fn migration_0005_fills_in_rows_written_before_it_on_postgres() {
    backfill(&support::postgres_unmigrated().await).await;
}
