//! Dev sessions, their events, their limits and the nodes they run on: each story told once and
//! checked on both backends.

use domain::ids::{
    DisplayName, Email, SessionId, Slug, SnapshotId, TemplateId, TemplateVersionId, UsageEventId,
    UserId, WorkspaceId,
};
use domain::store::{
    FREE_PLAN_ID, NewSession, SessionEventRecord, SessionFilter, SessionLimits, SessionRecord,
    SessionWrite, Store, StoreError, User, Workspace, now_ms,
};
use serde_json::json;

use crate::support::{self, on_both_backends};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const T: i64 = 1_700_000_000_000;
const IMAGE: &str = "registry.local/acme/rust:1";

async fn sign_up(store: &Store, name: &str) -> (User, Workspace) {
    let email = Email::parse(&format!("{}@example.com", name.to_lowercase())).unwrap();
    let name = DisplayName::parse(name).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap()
}

async fn shared_workspace(store: &Store, owner: &User, slug: &str) -> Workspace {
    let name = DisplayName::parse(slug).unwrap();
    store.create_workspace(&owner.id, &name, &Slug::parse(slug).unwrap(), now_ms()).await.unwrap()
}

/// A template of `ws` with one uploaded version, enough to hang sessions on.
async fn template(
    store: &Store,
    ws: &WorkspaceId,
    name: &str,
    by: &User,
) -> (TemplateId, TemplateVersionId) {
    let template = store.create_template(ws, name, "", &by.id).await.unwrap();
    let version = store
        .create_draft_version(&template.id, 1, SHA, now_ms() + 600_000, &by.id, |id| {
            format!("bundles/{id}.tar.zst")
        })
        .await
        .unwrap();
    store.accept_upload(&version.id, "{}").await.unwrap();
    (template.id, version.id)
}

/// Where sessions are created, and by whom.
struct Place<'a> {
    workspace: &'a WorkspaceId,
    owner: &'a UserId,
    template: &'a (TemplateId, TemplateVersionId),
}

impl Place<'_> {
    fn new_session<'a>(&'a self, name: &'a str, key: Option<&'a str>) -> NewSession<'a> {
        NewSession {
            workspace: self.workspace,
            owner: self.owner,
            template: &self.template.0,
            version: &self.template.1,
            name,
            image_ref: IMAGE,
            idle_timeout_minutes: 30,
            idempotency_key: key,
        }
    }

    async fn create(&self, store: &Store, name: &str) -> SessionRecord {
        let (session, created) = store.create_session(&self.new_session(name, None)).await.unwrap();
        assert!(created);
        session
    }
}

async fn set_state(store: &Store, id: &SessionId, state: &str, at: i64) -> SessionRecord {
    store.write_session_state(id, &SessionWrite::state(state, at)).await.unwrap()
}

async fn create_and_look_up(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let (bob, _) = sign_up(store, "Bob").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let rust = template(store, &acme.id, "rust", &alice).await;
    let mine = template(store, &personal.id, "rust", &alice).await;
    let alices = Place { workspace: &acme.id, owner: &alice.id, template: &rust };
    let bobs = Place { workspace: &acme.id, owner: &bob.id, template: &rust };
    let at_home = Place { workspace: &personal.id, owner: &alice.id, template: &mine };

    let before = now_ms();
    let (dev, created) =
        store.create_session(&alices.new_session("dev", Some("k1"))).await.unwrap();
    assert!(created);
    assert_eq!(
        dev,
        SessionRecord {
            id: dev.id.clone(),
            workspace_id: acme.id.clone(),
            owner: alice.id.clone(),
            owner_name: "Alice".to_owned(),
            template_id: rust.0.clone(),
            template_name: "rust".to_owned(),
            version_id: rust.1.clone(),
            version: "1".to_owned(),
            name: "dev".to_owned(),
            state: "provisioning".to_owned(),
            workflow_id: format!("session-{}", dev.id),
            node_id: None,
            generation: 0,
            container_id: None,
            image_ref: Some(IMAGE.to_owned()),
            error: None,
            idle_timeout_minutes: 30,
            created_at: dev.created_at,
            updated_at: dev.created_at,
            started_at: None,
            stopped_at: None,
            last_active_at: None,
            deleted_at: None,
        }
    );
    assert!(dev.created_at >= before && dev.created_at <= now_ms());

    // A retry with the same key gets the same session, whatever else it asks for.
    let (again, created) =
        store.create_session(&alices.new_session("other", Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(again, dev);
    let by_key = store.session_by_idempotency_key(&acme.id, &alice.id, "k1").await.unwrap();
    assert_eq!(by_key, Some(dev.clone()));
    assert_eq!(store.session_by_idempotency_key(&acme.id, &alice.id, "k9").await.unwrap(), None);
    assert_eq!(
        store.session_by_idempotency_key(&personal.id, &alice.id, "k1").await.unwrap(),
        None
    );
    // Keys are per owner: Bob's "k1" is his own.
    let (bobs_dev, created) =
        store.create_session(&bobs.new_session("bobs-dev", Some("k1"))).await.unwrap();
    assert!(created);
    assert_ne!(bobs_dev.id, dev.id);

    // Names are taken among the workspace's live sessions, whoever owns them.
    for (place, key) in [(&alices, None), (&bobs, None), (&alices, Some("k2"))] {
        let err = store.create_session(&place.new_session("dev", key)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { what: "session name" }), "{err:?}");
    }
    let stopped = set_state(store, &bobs_dev.id, "failed", T).await;
    assert_eq!(stopped.state, "failed");
    let err = store.create_session(&bobs.new_session("bobs-dev", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "session name" }), "failed is still live");
    let elsewhere = at_home.create(store, "dev").await;

    // A deleted session gives its name back; its key still answers with it.
    set_state(store, &dev.id, "deleting", T + 1).await;
    let err = store.create_session(&alices.new_session("dev", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "session name" }), "deleting is live");
    let deleted = set_state(store, &dev.id, "deleted", T + 2).await;
    let reborn = alices.create(store, "dev").await;
    assert_ne!(reborn.id, dev.id);
    let (answer, created) =
        store.create_session(&alices.new_session("dev", Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(answer, deleted);

    // Lookups: by id whatever the state, by name among live sessions, always within a workspace.
    let find = |ws: &WorkspaceId, what: String| {
        let ws = ws.clone();
        async move { store.session_in_workspace(&ws, &what).await.unwrap() }
    };
    assert_eq!(store.session_by_id(&dev.id).await.unwrap(), Some(deleted.clone()));
    assert_eq!(store.session_by_id(&SessionId::new()).await.unwrap(), None);
    assert_eq!(find(&acme.id, "dev".to_owned()).await, Some(reborn.clone()));
    assert_eq!(find(&acme.id, dev.id.to_string()).await, Some(deleted.clone()));
    assert_eq!(find(&acme.id, dev.id.to_string().to_uppercase()).await, Some(deleted));
    assert_eq!(find(&acme.id, reborn.id.to_string()).await, Some(reborn.clone()));
    assert_eq!(find(&acme.id, "bobs-dev".to_owned()).await, Some(stopped));
    assert_eq!(find(&personal.id, "dev".to_owned()).await, Some(elsewhere.clone()));
    assert_eq!(find(&personal.id, reborn.id.to_string()).await, None);
    assert_eq!(find(&acme.id, elsewhere.id.to_string()).await, None);
    assert_eq!(find(&acme.id, "nope".to_owned()).await, None);
    assert_eq!(find(&acme.id, SessionId::new().to_string()).await, None);

    // What a session points at must exist.
    let missing = (TemplateId::new(), rust.1.clone());
    let nowhere = Place { workspace: &acme.id, owner: &alice.id, template: &missing };
    let err = store.create_session(&nowhere.new_session("x", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(create_and_look_up =>
    sessions_are_created_once_per_key_named_uniquely_while_live_and_found_by_id_or_name_on_sqlite,
    sessions_are_created_once_per_key_named_uniquely_while_live_and_found_by_id_or_name_on_postgres);

async fn state_writes(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = template(store, &ws.id, "rust", &alice).await;
    let place = Place { workspace: &ws.id, owner: &alice.id, template: &rust };
    let s = place.create(store, "dev").await;
    // Listeners hear each state written through this store or a clone of it, by session id.
    let mut writes = store.clone().session_writes();

    let starting = store
        .write_session_state(
            &s.id,
            &SessionWrite {
                state: "starting",
                at: T + 1,
                node_id: Some("host-a"),
                generation: Some(1),
                container_id: Some(Some("c1")),
                error: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(starting.state, "starting");
    assert_eq!((starting.node_id.as_deref(), starting.generation), (Some("host-a"), 1));
    assert_eq!(starting.container_id.as_deref(), Some("c1"));
    assert_eq!((starting.created_at, starting.updated_at), (s.created_at, T + 1));
    assert_eq!((starting.started_at, starting.stopped_at, starting.deleted_at), (None, None, None));

    let running = set_state(store, &s.id, "running", T + 2).await;
    assert_eq!(
        running,
        SessionRecord {
            state: "running".to_owned(),
            updated_at: T + 2,
            started_at: Some(T + 2),
            ..starting.clone()
        }
    );

    // Sleeping stops the container: its id is cleared, the rest is kept.
    let sleep = SessionWrite { container_id: Some(None), ..SessionWrite::state("sleeping", T + 3) };
    let sleeping = store.write_session_state(&s.id, &sleep).await.unwrap();
    assert_eq!(
        sleeping,
        SessionRecord {
            state: "sleeping".to_owned(),
            updated_at: T + 3,
            stopped_at: Some(T + 3),
            container_id: None,
            ..running.clone()
        }
    );
    // A retried write writes the same values.
    assert_eq!(store.write_session_state(&s.id, &sleep).await.unwrap(), sleeping);

    // Waking: a new container, a new generation, started_at moves and stopped_at stays.
    let wake = SessionWrite {
        generation: Some(2),
        container_id: Some(Some("c2")),
        ..SessionWrite::state("running", T + 4)
    };
    let woken = store.write_session_state(&s.id, &wake).await.unwrap();
    assert_eq!((woken.started_at, woken.stopped_at), (Some(T + 4), Some(T + 3)));
    assert_eq!((woken.generation, woken.container_id.as_deref()), (2, Some("c2")));
    assert_eq!(woken.node_id.as_deref(), Some("host-a"));

    let fail = SessionWrite {
        error: Some(Some("image pull failed")),
        ..SessionWrite::state("failed", T + 5)
    };
    let failed = store.write_session_state(&s.id, &fail).await.unwrap();
    assert_eq!(
        (failed.error.as_deref(), failed.stopped_at),
        (Some("image pull failed"), Some(T + 5))
    );

    let restart = SessionWrite { error: Some(None), ..SessionWrite::state("starting", T + 6) };
    let restarted = store.write_session_state(&s.id, &restart).await.unwrap();
    assert_eq!((restarted.error, restarted.stopped_at), (None, Some(T + 5)));

    let stopping = set_state(store, &s.id, "stopping", T + 7).await;
    assert_eq!((stopping.stopped_at, stopping.started_at), (Some(T + 5), Some(T + 4)));
    let stopped = set_state(store, &s.id, "stopped", T + 8).await;
    assert_eq!(stopped.stopped_at, Some(T + 8));
    let deleting = set_state(store, &s.id, "deleting", T + 9).await;
    assert_eq!(deleting.deleted_at, None);
    let deleted = set_state(store, &s.id, "deleted", T + 10).await;
    assert_eq!((deleted.state.as_str(), deleted.deleted_at), ("deleted", Some(T + 10)));
    assert_eq!((deleted.updated_at, deleted.created_at), (T + 10, s.created_at));

    let err =
        store.write_session_state(&s.id, &SessionWrite::state("paused", T)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.session_by_id(&s.id).await.unwrap(), Some(deleted));
    let err = store
        .write_session_state(&SessionId::new(), &SessionWrite::state("running", T))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // Every successful write was announced, in order; the refused ones were not.
    let mut heard = Vec::new();
    while let Ok(id) = writes.try_recv() {
        heard.push(id);
    }
    assert_eq!(heard.len(), 11, "{heard:?}");
    assert!(heard.iter().all(|id| *id == s.id.to_string()), "{heard:?}");

    // Activity only ever moves forward, and changes nothing else.
    let other = place.create(store, "other").await;
    store.touch_session_activity(&other.id, T + 10).await.unwrap();
    store.touch_session_activity(&other.id, T + 5).await.unwrap();
    let touched = store.session_by_id(&other.id).await.unwrap().unwrap();
    assert_eq!(touched, SessionRecord { last_active_at: Some(T + 10), ..other.clone() });
    store.touch_session_activity(&other.id, T + 11).await.unwrap();
    let touched = store.session_by_id(&other.id).await.unwrap().unwrap();
    assert_eq!(touched.last_active_at, Some(T + 11));
    let err = store.touch_session_activity(&SessionId::new(), T).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(state_writes =>
    the_workflow_writes_state_fields_and_timestamps_unconditionally_on_sqlite,
    the_workflow_writes_state_fields_and_timestamps_unconditionally_on_postgres);

async fn events(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = template(store, &ws.id, "rust", &alice).await;
    let place = Place { workspace: &ws.id, owner: &alice.id, template: &rust };
    let s = place.create(store, "dev").await;
    let other = place.create(store, "other").await;

    for (seq, kind) in [(3, "state.running"), (1, "state.provisioning"), (2, "state.starting")] {
        let detail = json!({ "seq": seq });
        assert!(
            store.append_session_event(&s.id, seq, kind, &detail, T + seq as i64).await.unwrap()
        );
    }
    assert!(
        store
            .append_session_event(&other.id, 1, "state.provisioning", &json!({}), T)
            .await
            .unwrap()
    );
    // A retried append changes nothing, even if it says something else.
    let retried = store.append_session_event(&s.id, 2, "op.sleep", &json!({"x": 1}), T + 99).await;
    assert!(!retried.unwrap());

    let event = |seq: u64, kind: &str| SessionEventRecord {
        seq,
        kind: kind.to_owned(),
        detail: json!({ "seq": seq }),
        at: T + seq as i64,
    };
    let all = store.session_events(&s.id, 0, 100).await.unwrap();
    assert_eq!(
        all,
        [event(1, "state.provisioning"), event(2, "state.starting"), event(3, "state.running")]
    );
    assert_eq!(store.session_events(&s.id, 1, 100).await.unwrap(), all[1..]);
    assert_eq!(store.session_events(&s.id, 0, 2).await.unwrap(), all[..2]);
    assert!(store.session_events(&s.id, 3, 100).await.unwrap().is_empty());
    assert!(store.session_events(&s.id, u64::MAX, 100).await.unwrap().is_empty());
    assert_eq!(store.session_events(&other.id, 0, 100).await.unwrap().len(), 1);
    assert!(store.session_events(&SessionId::new(), 0, 100).await.unwrap().is_empty());

    let err = store
        .append_session_event(&SessionId::new(), 1, "state.running", &json!({}), T)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(events =>
    session_events_are_appended_once_per_seq_and_read_oldest_first_on_sqlite,
    session_events_are_appended_once_per_seq_and_read_oldest_first_on_postgres);

async fn counts(store: &Store) {
    let (alice, _) = sign_up(store, "Alice").await;
    let (bob, bobs) = sign_up(store, "Bob").await;
    let acme = shared_workspace(store, &alice, "acme").await;
    let rust = template(store, &acme.id, "rust", &alice).await;
    let alices = Place { workspace: &acme.id, owner: &alice.id, template: &rust };
    let bobs_place = Place { workspace: &acme.id, owner: &bob.id, template: &rust };

    let states = [
        "provisioning",
        "starting",
        "running",
        "sleeping",
        "stopping",
        "stopped",
        "deleting",
        "deleted",
        "failed",
    ];
    for (i, state) in states.into_iter().enumerate() {
        let s = alices.create(store, state).await;
        if state != "provisioning" {
            set_state(store, &s.id, state, T + i as i64).await;
        }
    }
    let b = bobs_place.create(store, "bobs").await;
    set_state(store, &b.id, "running", T + 20).await;

    assert_eq!(store.count_live_sessions(&acme.id, None).await.unwrap(), 6);
    assert_eq!(store.count_live_sessions(&acme.id, Some(&alice.id)).await.unwrap(), 5);
    assert_eq!(store.count_live_sessions(&acme.id, Some(&bob.id)).await.unwrap(), 1);
    assert_eq!(store.count_running_sessions(&acme.id).await.unwrap(), 4);
    assert_eq!(store.count_live_sessions(&bobs.id, None).await.unwrap(), 0);
    assert_eq!(store.count_running_sessions(&bobs.id).await.unwrap(), 0);

    // Listings: being stopped or deleted is active; stopped and failed have ended.
    let acme_id = &acme.id;
    let names = |filter: SessionFilter| async move {
        let rows = store.sessions_in_workspace(acme_id, filter).await.unwrap();
        let mut names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    };
    let active = names(SessionFilter { include_ended: false, owner: Some(alice.id.clone()) }).await;
    assert_eq!(active, ["deleting", "provisioning", "running", "sleeping", "starting", "stopping"]);
    let all = names(SessionFilter { include_ended: true, owner: None }).await;
    assert_eq!(
        all,
        [
            "bobs",
            "deleting",
            "failed",
            "provisioning",
            "running",
            "sleeping",
            "starting",
            "stopped",
            "stopping"
        ]
    );
    let usage = store.usage_summary(&acme.id, 0).await.unwrap();
    assert_eq!(usage.active_sessions, 6, "the same states as count_live_sessions");
}

on_both_backends!(counts =>
    sessions_are_counted_and_listed_by_state_on_sqlite,
    sessions_are_counted_and_listed_by_state_on_postgres);

async fn limits(store: &Store) {
    let (alice, personal) = sign_up(store, "Alice").await;
    let acme = shared_workspace(store, &alice, "acme").await;

    let free = SessionLimits {
        max_sessions: Some(3),
        max_running_sessions: Some(1),
        max_snapshot_bytes: Some(5_368_709_120),
    };
    assert_eq!(store.session_limits(&personal.id).await.unwrap(), free);
    assert_eq!(store.session_limits(&acme.id).await.unwrap(), free);

    // Overrides replace the plan's limits key by key; null lifts one.
    sqlx::query(
        "INSERT INTO quotas (workspace_id, plan_id, overrides_json, updated_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(acme.id.as_str())
    .bind(FREE_PLAN_ID)
    .bind(r#"{"max_running_sessions":null,"max_templates":50}"#)
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(
        store.session_limits(&acme.id).await.unwrap(),
        SessionLimits {
            max_sessions: Some(3),
            max_running_sessions: None,
            max_snapshot_bytes: Some(5_368_709_120),
        }
    );
    sqlx::query("UPDATE quotas SET overrides_json = $2 WHERE workspace_id = $1")
        .bind(acme.id.as_str())
        .bind(r#"{"max_sessions":10,"max_running_sessions":4}"#)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        store.session_limits(&acme.id).await.unwrap(),
        SessionLimits {
            max_sessions: Some(10),
            max_running_sessions: Some(4),
            max_snapshot_bytes: Some(5_368_709_120),
        }
    );
    assert_eq!(store.session_limits(&personal.id).await.unwrap(), free, "per workspace");

    sqlx::query("UPDATE quotas SET overrides_json = $2 WHERE workspace_id = $1")
        .bind(acme.id.as_str())
        .bind(r#"{"max_sessions":-1}"#)
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.session_limits(&acme.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    let err = store.session_limits(&WorkspaceId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(limits =>
    session_limits_come_from_the_plan_with_quota_overrides_on_top_on_sqlite,
    session_limits_come_from_the_plan_with_quota_overrides_on_top_on_postgres);

async fn nodes(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = template(store, &ws.id, "rust", &alice).await;
    let place = Place { workspace: &ws.id, owner: &alice.id, template: &rust };

    let before = now_ms();
    assert!(store.live_nodes(0).await.unwrap().is_empty());
    store.heartbeat_node("host-b", "27.0.1", Some("0.1.0"), None).await.unwrap();
    store.heartbeat_node("host-a", "27.0.1", None, Some("http://127.0.0.1:7443")).await.unwrap();
    store.heartbeat_node("host-c", "26.1.0", Some("0.1.0"), None).await.unwrap();
    store.heartbeat_node("host-old", "20.0.0", None, None).await.unwrap();
    sqlx::query("UPDATE nodes SET first_seen_at = 5, last_seen_at = 10 WHERE id = 'host-old'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.heartbeat_node(" ", "27.0.1", None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Pin sessions: two live ones on host-b, one on host-c, and a deleted one on host-a, which
    // does not count.
    let pin = |name: &'static str, node: &'static str, state: &'static str| {
        let place = &place;
        async move {
            let s = place.create(store, name).await;
            let w = SessionWrite { node_id: Some(node), ..SessionWrite::state(state, T) };
            store.write_session_state(&s.id, &w).await.unwrap();
        }
    };
    pin("one", "host-b", "running").await;
    pin("two", "host-b", "stopped").await;
    pin("three", "host-c", "sleeping").await;
    pin("gone", "host-a", "deleted").await;
    pin("far", "host-old", "running").await;

    let live = store.live_nodes(before).await.unwrap();
    let load: Vec<(&str, u64)> = live.iter().map(|n| (n.id.as_str(), n.sessions)).collect();
    assert_eq!(load, [("host-a", 0), ("host-c", 1), ("host-b", 2)]);
    let a = &live[0];
    assert_eq!((a.docker_version.as_str(), a.agent_version.as_deref()), ("27.0.1", None));
    assert!(a.first_seen_at >= before && a.first_seen_at == a.last_seen_at);
    assert_eq!(a.tunnel_url.as_deref(), Some("http://127.0.0.1:7443"));
    let by_id = store.node_by_id("host-b").await.unwrap().expect("host-b");
    assert_eq!((by_id.sessions, by_id.tunnel_url), (2, None));
    assert!(store.node_by_id("nowhere").await.unwrap().is_none());
    // Ties (host-c and host-old have one session each) go by id.
    let all = store.live_nodes(0).await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["host-a", "host-c", "host-old", "host-b"]
    );

    // A heartbeat updates what the node runs and when it was last seen, not when it first was.
    store.heartbeat_node("host-old", "27.0.1", Some("0.2.0"), None).await.unwrap();
    let old = store.live_nodes(before).await.unwrap().into_iter().find(|n| n.id == "host-old");
    let old = old.expect("seen again");
    assert_eq!((old.first_seen_at, old.sessions), (5, 1));
    assert!(old.last_seen_at >= before);
    assert_eq!(
        (old.docker_version.as_str(), old.agent_version.as_deref()),
        ("27.0.1", Some("0.2.0"))
    );
}

on_both_backends!(nodes =>
    nodes_report_in_and_are_listed_least_loaded_first_on_sqlite,
    nodes_report_in_and_are_listed_least_loaded_first_on_postgres);

async fn connect_material(store: &Store) {
    use domain::connect::parse_public_key;
    use domain::ids::{RuntimeTokenId, SshKeyId};
    let (alice, ws) = sign_up(store, "Alice").await;
    let (bob, _) = sign_up(store, "Bob").await;
    let rust = template(store, &ws.id, "rust", &alice).await;
    let place = Place { workspace: &ws.id, owner: &alice.id, template: &rust };
    let session = place.create(store, "dev").await;

    // SSH keys: added once per user, listed oldest first, removable only by their owner.
    let key = parse_public_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b",
    )
    .unwrap();
    let (k1, created) = store.add_ssh_key(&alice.id, "laptop", &key, T).await.unwrap();
    assert!(created);
    let (again, created) = store.add_ssh_key(&alice.id, "renamed", &key, T + 1).await.unwrap();
    assert!(!created);
    assert_eq!(again, k1, "the same key again answers with the existing entry");
    let (bobs, created) = store.add_ssh_key(&bob.id, "bob", &key, T).await.unwrap();
    assert!(created && bobs.id != k1.id, "another user may register the same key");
    assert_eq!(store.ssh_keys(&alice.id).await.unwrap(), std::slice::from_ref(&k1));
    let theirs = store.remove_ssh_key(&bob.id, &k1.id).await;
    assert!(matches!(theirs, Err(StoreError::NotFound)), "someone else's key");
    assert!(matches!(
        store.remove_ssh_key(&alice.id, &SshKeyId::new()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.remove_ssh_key(&alice.id, &k1.id).await.unwrap(), k1);
    assert!(store.ssh_keys(&alice.id).await.unwrap().is_empty());
    assert_eq!(store.ssh_keys(&bob.id).await.unwrap().len(), 1);

    // Runtime tokens: found by hash while active; renew moves the expiry forward only; revoke
    // ends them for good; other users and sessions cannot touch them.
    let now = now_ms();
    let t = store
        .create_runtime_token(&alice.id, &session.id, b"hash-1", now, now + 60_000)
        .await
        .unwrap();
    let found = store.runtime_token_by_hash(b"hash-1", now).await.unwrap().expect("active");
    assert_eq!(found, t);
    assert!(store.runtime_token_by_hash(b"hash-1", now + 60_000).await.unwrap().is_none());
    assert!(store.runtime_token_by_hash(b"other", now).await.unwrap().is_none());
    let renewed =
        store.renew_runtime_token(&alice.id, &session.id, &t.id, now, now + 120_000).await.unwrap();
    assert_eq!(renewed.expires_at, now + 120_000);
    let not_back =
        store.renew_runtime_token(&alice.id, &session.id, &t.id, now, now + 90_000).await.unwrap();
    assert_eq!(not_back.expires_at, now + 120_000, "never moves backwards");
    for (user, sid, id) in [
        (&bob.id, &session.id, &t.id),
        (&alice.id, &SessionId::new(), &t.id),
        (&alice.id, &session.id, &RuntimeTokenId::new()),
    ] {
        let renew = store.renew_runtime_token(user, sid, id, now, now + 200_000).await;
        assert!(matches!(renew, Err(StoreError::NotFound)));
        let revoke = store.revoke_runtime_token(user, sid, id, now).await;
        assert!(matches!(revoke, Err(StoreError::NotFound)));
    }
    let revoked = store.revoke_runtime_token(&alice.id, &session.id, &t.id, now + 1).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(now + 1));
    assert!(!revoked.active_at(now + 2));
    assert!(store.runtime_token_by_hash(b"hash-1", now + 2).await.unwrap().is_none());
    let dead = store.renew_runtime_token(&alice.id, &session.id, &t.id, now + 2, now + 300_000);
    assert!(matches!(dead.await, Err(StoreError::NotFound)), "a revoked token stays dead");
    store.revoke_runtime_token(&alice.id, &session.id, &t.id, now + 3).await.unwrap();

    // An expired token cannot be renewed either, and purging removes it.
    let old = store
        .create_runtime_token(&alice.id, &session.id, b"hash-2", now - 10_000, now - 5_000)
        .await
        .unwrap();
    let late = store.renew_runtime_token(&alice.id, &session.id, &old.id, now, now + 60_000);
    assert!(matches!(late.await, Err(StoreError::NotFound)));
    assert_eq!(store.purge_runtime_tokens(now).await.unwrap(), 1);
    assert!(store.runtime_token(&old.id).await.unwrap().is_none());
    assert!(store.runtime_token(&t.id).await.unwrap().is_some(), "not expired yet");
}

on_both_backends!(connect_material =>
    ssh_keys_and_runtime_tokens_on_sqlite,
    ssh_keys_and_runtime_tokens_on_postgres);

/// The rebuilt sessions table (SQLite) and the replaced constraint (PostgreSQL) keep every
/// foreign key and check that points at or from sessions.
async fn migrated_schema(store: &Store) {
    let (alice, ws) = sign_up(store, "Alice").await;
    let rust = template(store, &ws.id, "rust", &alice).await;
    let place = Place { workspace: &ws.id, owner: &alice.id, template: &rust };
    let s = place.create(store, "dev").await;

    // Events of a session that does not exist are refused by the database.
    let err = sqlx::query(
        "INSERT INTO session_events (session_id, seq, kind, detail_json, at)
         VALUES ($1, 1, 'x', '{}', 0)",
    )
    .bind(SessionId::new().as_str())
    .execute(store.pool())
    .await
    .unwrap_err();
    assert!(err.as_database_error().unwrap().is_foreign_key_violation(), "{err}");
    // So is a session in a workspace that does not exist.
    let err = sqlx::query(
        "INSERT INTO sessions (id, workspace_id, owner_user_id, template_id, template_version_id,
                               name, workflow_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'x', $6, 0, 0)",
    )
    .bind(SessionId::new().as_str())
    .bind(WorkspaceId::new().as_str())
    .bind(alice.id.as_str())
    .bind(rust.0.as_str())
    .bind(rust.1.as_str())
    .bind(format!("session-{}", SessionId::new()))
    .execute(store.pool())
    .await
    .unwrap_err();
    assert!(err.as_database_error().unwrap().is_foreign_key_violation(), "{err}");

    // The state CHECK knows the new states and still refuses unknown ones.
    let err = sqlx::query("UPDATE sessions SET state = 'paused' WHERE id = $1")
        .bind(s.id.as_str())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.as_database_error().unwrap().is_check_violation(), "{err}");
    sqlx::query("UPDATE sessions SET state = 'stopping' WHERE id = $1")
        .bind(s.id.as_str())
        .execute(store.pool())
        .await
        .unwrap();

    // A snapshot and a usage event of the session, and a snapshot as its latest.
    store.append_session_event(&s.id, 1, "state.provisioning", &json!({}), T).await.unwrap();
    let snapshot = SnapshotId::new();
    sqlx::query(
        "INSERT INTO snapshots (id, session_id, content_key, size_bytes, sha256, created_at)
         VALUES ($1, $2, 'snapshots/x', 1, $3, $4)",
    )
    .bind(snapshot.as_str())
    .bind(s.id.as_str())
    .bind(SHA)
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET latest_snapshot_id = $2 WHERE id = $1")
        .bind(s.id.as_str())
        .bind(snapshot.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let err = sqlx::query("UPDATE sessions SET latest_snapshot_id = $2 WHERE id = $1")
        .bind(s.id.as_str())
        .bind(SnapshotId::new().as_str())
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.as_database_error().unwrap().is_foreign_key_violation(), "{err}");
    let usage = UsageEventId::new();
    sqlx::query(
        "INSERT INTO usage_events (id, workspace_id, user_id, session_id, kind, quantity, at,
                                   idempotency_key)
         VALUES ($1, $2, $3, $4, 'runtime_minutes', 1, $5, 'k')",
    )
    .bind(usage.as_str())
    .bind(ws.id.as_str())
    .bind(alice.id.as_str())
    .bind(s.id.as_str())
    .bind(T)
    .execute(store.pool())
    .await
    .unwrap();

    // Deleting the session cascades to its events and snapshots, and keeps its usage.
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(s.id.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let id = &s.id;
    let remaining = |sql: &'static str| async move {
        let n: i64 =
            sqlx::query_scalar(sql).bind(id.as_str()).fetch_one(store.pool()).await.unwrap();
        n
    };
    assert_eq!(remaining("SELECT COUNT(*) FROM session_events WHERE session_id = $1").await, 0);
    assert_eq!(remaining("SELECT COUNT(*) FROM snapshots WHERE session_id = $1").await, 0);
    let session_of_usage: Option<String> =
        sqlx::query_scalar("SELECT session_id FROM usage_events WHERE id = $1")
            .bind(usage.as_str())
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(session_of_usage, None);
}

on_both_backends!(migrated_schema =>
    the_migrated_sessions_table_keeps_its_foreign_keys_and_checks_on_sqlite,
    the_migrated_sessions_table_keeps_its_foreign_keys_and_checks_on_postgres);
