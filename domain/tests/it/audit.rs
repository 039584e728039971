//! Filtering the audit log, told once and checked on both backends.

use domain::ids::{DisplayName, Email, UserId};
use domain::store::{AuditEntry, AuditFilter, Store};

use crate::support::{self, on_both_backends};

async fn audit_filters(store: &Store) {
    let (alice, personal) = store
        .create_user_with_personal_workspace(
            &Email::parse("alice@example.com").unwrap(),
            &DisplayName::parse("Alice").unwrap(),
        )
        .await
        .unwrap();
    let (bob, elsewhere) = store
        .create_user_with_personal_workspace(
            &Email::parse("bob@example.com").unwrap(),
            &DisplayName::parse("Bob").unwrap(),
        )
        .await
        .unwrap();

    let entry = |action: &str, actor: &UserId, at: i64| {
        let mut entry = AuditEntry::new(action).actor(actor).workspace(&personal.id);
        entry.at = at;
        entry
    };
    let signed_in = entry("auth.signed_in", &alice.id, 1_000)
        .ip("203.0.113.7")
        .user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0");
    let signed_out = entry("auth.signed_out", &alice.id, 2_000);
    let passkey_added = entry("auth.passkey.added", &bob.id, 3_000);
    let passkey_removed = entry("auth.passkey.removed", &bob.id, 3_000);
    // Near misses for the "auth." prefix: another word, another case.
    let authx = entry("authx.thing", &alice.id, 3_500);
    let upper = entry("AUTH.shouting", &alice.id, 3_600);
    // '_' is a plain character in a prefix, not a wildcard.
    let underscore = entry("self_check.ran", &alice.id, 3_700);
    let wildcard_bait = entry("selfXcheck.ran", &alice.id, 3_800);
    let member_added = entry("workspace.member.added", &alice.id, 4_000);
    let all = [
        &signed_in,
        &signed_out,
        &passkey_added,
        &passkey_removed,
        &authx,
        &upper,
        &underscore,
        &wildcard_bait,
        &member_added,
    ];
    for e in all {
        store.append_audit(e).await.unwrap();
    }
    let mut other = AuditEntry::new("auth.signed_in").actor(&alice.id).workspace(&elsewhere.id);
    other.at = 1_000;
    store.append_audit(&other).await.unwrap();

    let list = |filter: AuditFilter| {
        let workspace = personal.id.clone();
        async move { store.list_audit_filtered(&workspace, &filter, 100, None).await.unwrap() }
    };
    let newest_first = |entries: &[&AuditEntry]| {
        let mut entries: Vec<AuditEntry> = entries.iter().map(|e| (*e).clone()).collect();
        entries.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        entries
    };
    let action = |a: &str| AuditFilter { action: Some(a.to_owned()), ..AuditFilter::default() };

    // No filter is the plain listing; the user agent is stored and read back.
    assert_eq!(list(AuditFilter::default()).await, newest_first(&all));
    assert_eq!(store.list_audit(&personal.id, 100, None).await.unwrap(), newest_first(&all));
    let read_back = list(action("auth.signed_in")).await;
    assert_eq!(read_back, vec![signed_in.clone()]);
    assert_eq!(
        read_back[0].user_agent.as_deref(),
        Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
    );

    // An action ending in '.' is a prefix, case-sensitive and without wildcards; any other is exact.
    assert_eq!(
        list(action("auth.")).await,
        newest_first(&[&signed_in, &signed_out, &passkey_added, &passkey_removed])
    );
    assert_eq!(
        list(action("auth.passkey.")).await,
        newest_first(&[&passkey_added, &passkey_removed])
    );
    assert_eq!(list(action("self_check.")).await, vec![underscore.clone()]);
    assert!(list(action("auth")).await.is_empty());
    assert!(list(action("auth.passkey")).await.is_empty());

    // By actor, and by time: `since` inclusive, `until` exclusive.
    let by_bob = AuditFilter { actor: Some(bob.id.clone()), ..AuditFilter::default() };
    assert_eq!(list(by_bob).await, newest_first(&[&passkey_added, &passkey_removed]));
    let window = AuditFilter { since: Some(2_000), until: Some(3_600), ..AuditFilter::default() };
    assert_eq!(
        list(window).await,
        newest_first(&[&signed_out, &passkey_added, &passkey_removed, &authx])
    );
    let since_only = AuditFilter { since: Some(3_700), ..AuditFilter::default() };
    assert_eq!(list(since_only).await, newest_first(&[&underscore, &wildcard_bait, &member_added]));
    let until_only = AuditFilter { until: Some(2_000), ..AuditFilter::default() };
    assert_eq!(list(until_only).await, vec![signed_in.clone()]);

    // Filters combine.
    let combined = AuditFilter {
        action: Some("auth.".to_owned()),
        actor: Some(alice.id.clone()),
        since: Some(1_500),
        until: None,
    };
    assert_eq!(list(combined).await, vec![signed_out.clone()]);

    // Paging a filtered listing with a cursor, including entries that share a millisecond.
    let filter = action("auth.");
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page =
            store.list_audit_filtered(&personal.id, &filter, 3, cursor.as_ref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(AuditEntry::cursor);
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(pages.concat(), list(action("auth.")).await);
}

on_both_backends!(audit_filters =>
    the_audit_log_filters_by_action_prefix_actor_and_time_and_pages_on_sqlite,
    the_audit_log_filters_by_action_prefix_actor_and_time_and_pages_on_postgres);
