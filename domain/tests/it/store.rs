//! One story of the store's behaviour, told once and checked on both backends.

use domain::ids::{DisplayName, Email, UserId, WorkspaceId};
use domain::store::{AuditEntry, Backend, FREE_PLAN_ID, Role, Store, StoreError};
use sqlx::Row;

use crate::support;

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn name(s: &str) -> DisplayName {
    DisplayName::parse(s).unwrap()
}

async fn count(store: &Store, table: &str) -> i64 {
    let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    row.get("n")
}

async fn story(store: &Store) {
    store.ping().await.unwrap();

    // Signing up creates the user, a personal workspace and the owner membership.
    assert_eq!(store.count_users().await.unwrap(), 0);
    let (alice, personal) = store
        .create_user_with_personal_workspace(&email("Alice@Example.com"), &name("Alice"))
        .await
        .unwrap();
    assert_eq!(alice.email.as_str(), "alice@example.com");
    assert!(personal.personal);
    assert_eq!(personal.owner, alice.id);
    assert_eq!(personal.slug.as_str(), "alice");
    assert_eq!(personal.plan.as_str(), FREE_PLAN_ID);
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.user_by_email(&email("ALICE@example.com")).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_id(&UserId::new()).await.unwrap(), None);
    assert_eq!(store.user_by_email(&email("nobody@example.com")).await.unwrap(), None);

    // The same email again is refused, and the refused sign-up leaves nothing behind.
    let err = store
        .create_user_with_personal_workspace(&email("alice@example.com"), &name("Other Alice"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "email" }), "{err:?}");
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(count(store, "workspaces").await, 1);
    assert_eq!(count(store, "memberships").await, 1);

    // Another alice (other domain) gets her own personal workspace under a different slug.
    let (alice2, personal2) = store
        .create_user_with_personal_workspace(&email("alice@other.org"), &name("Alice Two"))
        .await
        .unwrap();
    assert_ne!(personal2.slug, personal.slug);
    assert!(personal2.slug.as_str().starts_with("alice-"), "{}", personal2.slug);

    // Memberships: each owns her own workspace and has no role in the other's.
    let listed = store.workspaces_for_user(&alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].workspace, personal);
    assert_eq!(listed[0].role, Role::Owner);
    assert_eq!(store.membership(&personal.id, &alice.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(store.membership(&personal.id, &alice2.id).await.unwrap(), None);
    assert_eq!(store.membership(&WorkspaceId::new(), &alice.id).await.unwrap(), None);

    // Audit: newest first, paged with a cursor; entries sharing a millisecond keep a stable order.
    assert!(store.list_audit(&personal.id, 10, None).await.unwrap().is_empty());
    let mut appended = Vec::new();
    for (i, at) in [1_000, 2_000, 2_000, 2_000, 3_000].into_iter().enumerate() {
        let mut entry =
            AuditEntry::new(format!("test.step{i}")).actor(&alice.id).workspace(&personal.id);
        entry.at = at;
        store.append_audit(&entry).await.unwrap();
        appended.push(entry);
    }
    let elsewhere = AuditEntry::new("test.elsewhere").workspace(&personal2.id);
    store.append_audit(&elsewhere).await.unwrap();
    let detailed = AuditEntry::new("workspace.member.added")
        .actor(&alice.id)
        .workspace(&personal.id)
        .target("user", alice2.id.as_str())
        .ip("203.0.113.7")
        .detail(serde_json::json!({"role": "viewer", "nested": {"n": 1}}));
    store.append_audit(&detailed).await.unwrap();
    let system = AuditEntry::new("system.started");
    store.append_audit(&system).await.unwrap();

    let mut newest_first = appended.clone();
    newest_first.push(detailed.clone());
    newest_first.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
    assert_eq!(newest_first[0], detailed, "the entry made now is the newest");

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_audit(&personal.id, 2, cursor.as_ref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        cursor = page.last().map(AuditEntry::cursor);
        pages.push(page);
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), newest_first);
    let listed_elsewhere = store.list_audit(&personal2.id, 10, None).await.unwrap();
    assert_eq!(listed_elsewhere, vec![elsewhere]);

    // Self-checks: recording the same workflow twice keeps the first row.
    assert_eq!(store.latest_self_check().await.unwrap(), None);
    let first = store.record_self_check("self-check-1", "worker-a").await.unwrap();
    let again = store.record_self_check("self-check-1", "worker-b").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(first.worker, "worker-a");
    assert_eq!(count(store, "self_checks").await, 1);
    let second = store.record_self_check("self-check-2", "worker-b").await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(store.latest_self_check().await.unwrap(), Some(second));

    // `$N` placeholders bind by number on both backends: reused and out of order.
    let row = sqlx::query("SELECT $2 AS b, $1 AS a, $2 AS b_again")
        .bind("one")
        .bind("two")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (a, b, b_again): (String, String, String) =
        (row.get("a"), row.get("b"), row.get("b_again"));
    assert_eq!((a.as_str(), b.as_str(), b_again.as_str()), ("one", "two", "two"));

    store.close().await;
}

#[tokio::test]
async fn the_store_story_holds_on_sqlite() {
    let (store, _dir) = support::sqlite().await;
    assert_eq!(store.backend(), Backend::Sqlite);
    story(&store).await;
}

#[tokio::test]
async fn the_store_story_holds_on_postgres() {
    let store = support::postgres().await;
    assert_eq!(store.backend(), Backend::Postgres);
    story(&store).await;
}

#[tokio::test]
async fn a_sqlite_store_uses_wal_enforces_foreign_keys_and_waits_when_busy() {
    let (store, _dir) = support::sqlite().await;
    let pragma = |name: &'static str| {
        let pool = store.pool().clone();
        async move {
            let row = sqlx::query(&format!("PRAGMA {name}")).fetch_one(&pool).await.unwrap();
            row.try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                .unwrap()
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "5000");
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused() {
    let err = Store::connect("mysql://localhost/burstflare").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}
