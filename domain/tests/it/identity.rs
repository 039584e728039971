//! Credentials and sign-in state: passkeys, WebAuthn ceremonies, browser sessions, API tokens and
//! recovery codes. One story per aggregate, told once and checked on both backends.

use domain::ids::{ApiTokenId, BrowserSessionId, CeremonyId, DisplayName, Email, PasskeyId};
use domain::store::{Ceremony, CeremonyKind, Store, StoreError, User};

use crate::support::{self, on_both_backends};

/// An arbitrary "now": the store takes time as an argument, so tests move it by hand.
const T: i64 = 1_700_000_000_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

async fn sign_up(store: &Store, local: &str) -> User {
    let email = Email::parse(&format!("{local}@example.com")).unwrap();
    let name = DisplayName::parse(local).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap().0
}

async fn passkeys(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    assert!(store.passkeys_for_user(&alice.id).await.unwrap().is_empty());

    // Credential ids are raw bytes, not text.
    let laptop_cred = [0_u8, 159, 146, 150, 255, b'\'', 0];
    let laptop =
        store.add_passkey(&alice.id, &laptop_cred, "Laptop", r#"{"v":1}"#, 0, T).await.unwrap();
    assert_eq!(laptop.credential_id, laptop_cred);
    assert_eq!((laptop.sign_count, laptop.last_used_at), (0, None));

    // A credential id is registered once, whoever presents it again.
    for user in [&bob, &alice] {
        let err =
            store.add_passkey(&user.id, &laptop_cred, "Again", "{}", 0, T + 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { what: "credential" }), "{err:?}");
    }
    assert!(store.passkeys_for_user(&bob.id).await.unwrap().is_empty());

    let phone = store.add_passkey(&alice.id, b"phone", "Phone", "{}", 5, T + 2).await.unwrap();
    assert_eq!(
        store.passkeys_for_user(&alice.id).await.unwrap(),
        vec![laptop.clone(), phone.clone()],
        "oldest first"
    );
    assert_eq!(store.passkey_by_credential_id(&laptop_cred).await.unwrap(), Some(laptop.clone()));
    assert_eq!(store.passkey_by_credential_id(b"nobody").await.unwrap(), None);

    // Authenticators that do not count stay at 0, and that is fine.
    store.record_passkey_use(&laptop.id, r#"{"v":2}"#, 0, T + 10).await.unwrap();
    store.record_passkey_use(&laptop.id, r#"{"v":3}"#, 0, T + 11).await.unwrap();
    let used = store.passkey_by_credential_id(&laptop_cred).await.unwrap().unwrap();
    assert_eq!((used.passkey_json.as_str(), used.sign_count), (r#"{"v":3}"#, 0));
    assert_eq!(used.last_used_at, Some(T + 11));

    // Once counting, the counter must grow: equal, lower or back to zero is refused and changes nothing.
    store.record_passkey_use(&laptop.id, r#"{"v":4}"#, 3, T + 12).await.unwrap();
    for regressed in [3, 2, 0] {
        let err = store.record_passkey_use(&laptop.id, "{}", regressed, T + 13).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { what: "sign_count" }), "{regressed}: {err:?}");
    }
    let used = store.passkey_by_credential_id(&laptop_cred).await.unwrap().unwrap();
    assert_eq!((used.passkey_json.as_str(), used.sign_count), (r#"{"v":4}"#, 3));
    assert_eq!(used.last_used_at, Some(T + 12));
    // A counter that starts above zero is held to the same rule.
    let err = store.record_passkey_use(&phone.id, "{}", 5, T + 14).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "sign_count" }), "{err:?}");
    store.record_passkey_use(&phone.id, "{}", 6, T + 14).await.unwrap();
    let err = store.record_passkey_use(&PasskeyId::new(), "{}", 1, T + 14).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Only the owner can rename or delete a passkey; to anyone else it does not exist.
    let err = store.rename_passkey(&bob.id, &laptop.id, "Mine now").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.delete_passkey(&bob.id, &laptop.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.delete_passkey(&alice.id, &PasskeyId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    store.rename_passkey(&alice.id, &laptop.id, "Work laptop").await.unwrap();
    let renamed = store.passkey_by_credential_id(&laptop_cred).await.unwrap().unwrap();
    assert_eq!(renamed.name, "Work laptop");
    assert_eq!(store.passkeys_for_user(&alice.id).await.unwrap().len(), 2);

    // The last passkey stays while there is no unused recovery code to get back in with.
    store.delete_passkey(&alice.id, &phone.id).await.unwrap();
    let err = store.delete_passkey(&alice.id, &laptop.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "last passkey" }), "{err:?}");
    store.replace_recovery_codes(&alice.id, &[b"code".to_vec()], T + 20).await.unwrap();
    assert!(store.use_recovery_code(&alice.id, b"code", T + 21).await.unwrap());
    let err = store.delete_passkey(&alice.id, &laptop.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "last passkey" }), "a used code: {err:?}");
    assert_eq!(store.passkeys_for_user(&alice.id).await.unwrap(), vec![renamed]);

    store.replace_recovery_codes(&alice.id, &[b"fresh".to_vec()], T + 22).await.unwrap();
    store.delete_passkey(&alice.id, &laptop.id).await.unwrap();
    assert!(store.passkeys_for_user(&alice.id).await.unwrap().is_empty());
    assert_eq!(store.passkey_by_credential_id(&laptop_cred).await.unwrap(), None);

    // Two deletions racing for the last two passkeys cannot remove both.
    store.replace_recovery_codes(&bob.id, &[], T + 30).await.unwrap();
    let one = store.add_passkey(&bob.id, b"bob-1", "One", "{}", 0, T + 30).await.unwrap();
    let two = store.add_passkey(&bob.id, b"bob-2", "Two", "{}", 0, T + 30).await.unwrap();
    let (a, b) = tokio::join!(
        store.delete_passkey(&bob.id, &one.id),
        store.delete_passkey(&bob.id, &two.id)
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    assert_eq!(store.passkeys_for_user(&bob.id).await.unwrap().len(), 1);
}

on_both_backends!(passkeys =>
    passkeys_are_unique_refuse_counter_regressions_and_the_last_one_stays_on_sqlite,
    passkeys_are_unique_refuse_counter_regressions_and_the_last_one_stays_on_postgres);

async fn ceremonies(store: &Store) {
    let alice = sign_up(store, "alice").await;
    const TTL: i64 = 5 * MINUTE;

    let sign_up_ceremony = store
        .put_ceremony(
            CeremonyKind::Registration,
            None,
            r#"{"challenge":"c1"}"#,
            r#"{"email":"new@example.com"}"#,
            T,
            TTL,
        )
        .await
        .unwrap();

    // Presented as the other kind, it is not found, and left for its own kind.
    assert_eq!(
        store.take_ceremony(&sign_up_ceremony, CeremonyKind::Authentication, T).await.unwrap(),
        None
    );
    let taken = store.take_ceremony(&sign_up_ceremony, CeremonyKind::Registration, T + 1).await;
    assert_eq!(
        taken.unwrap(),
        Some(Ceremony {
            user_id: None,
            state_json: r#"{"challenge":"c1"}"#.to_owned(),
            context_json: r#"{"email":"new@example.com"}"#.to_owned(),
        })
    );
    // Single use: a replayed answer finds nothing.
    assert_eq!(
        store.take_ceremony(&sign_up_ceremony, CeremonyKind::Registration, T + 2).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_ceremony(&CeremonyId::new(), CeremonyKind::Registration, T).await.unwrap(),
        None
    );

    // A ceremony taken at its expiry is gone, and stays gone even for a clock that runs behind.
    let sign_in = store
        .put_ceremony(CeremonyKind::Authentication, Some(&alice.id), "{}", "{}", T, TTL)
        .await
        .unwrap();
    assert_eq!(
        store.take_ceremony(&sign_in, CeremonyKind::Authentication, T + TTL).await.unwrap(),
        None
    );
    assert_eq!(store.take_ceremony(&sign_in, CeremonyKind::Authentication, T).await.unwrap(), None);

    // Just before expiry, it is taken with its user.
    let add_passkey = store
        .put_ceremony(
            CeremonyKind::Registration,
            Some(&alice.id),
            "{}",
            r#"{"name":"Key"}"#,
            T,
            TTL,
        )
        .await
        .unwrap();
    let taken = store.take_ceremony(&add_passkey, CeremonyKind::Registration, T + TTL - 1).await;
    let taken = taken.unwrap().unwrap();
    assert_eq!(taken.user_id, Some(alice.id.clone()));
    assert_eq!(taken.context_json, r#"{"name":"Key"}"#);

    // Purging removes exactly the expired ones.
    let mut short = Vec::new();
    for _ in 0..2 {
        short.push(
            store
                .put_ceremony(CeremonyKind::Authentication, None, "{}", "{}", T, 100)
                .await
                .unwrap(),
        );
    }
    let long =
        store.put_ceremony(CeremonyKind::Authentication, None, "{}", "{}", T, 1_000).await.unwrap();
    assert_eq!(store.purge_expired_ceremonies(T + 100).await.unwrap(), 2);
    assert_eq!(store.purge_expired_ceremonies(T + 100).await.unwrap(), 0);
    assert!(
        store.take_ceremony(&long, CeremonyKind::Authentication, T + 100).await.unwrap().is_some()
    );

    // Two answers racing for one ceremony: exactly one gets it.
    let raced =
        store.put_ceremony(CeremonyKind::Authentication, None, "{}", "{}", T, TTL).await.unwrap();
    let (a, b) = tokio::join!(
        store.take_ceremony(&raced, CeremonyKind::Authentication, T + 1),
        store.take_ceremony(&raced, CeremonyKind::Authentication, T + 1),
    );
    assert_eq!(u8::from(a.unwrap().is_some()) + u8::from(b.unwrap().is_some()), 1);
}

on_both_backends!(ceremonies =>
    a_ceremony_is_taken_once_by_its_own_kind_before_it_expires_on_sqlite,
    a_ceremony_is_taken_once_by_its_own_kind_before_it_expires_on_postgres);

async fn browser_sessions(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    const IDLE: i64 = 30 * MINUTE;
    const ABSOLUTE: i64 = 12 * HOUR;

    let session = store
        .create_browser_session(
            &alice.id,
            b"hash-1",
            "csrf-1",
            T,
            IDLE,
            ABSOLUTE,
            Some("203.0.113.7"),
            Some("Firefox"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(session.csrf_token, "csrf-1");
    assert_eq!((session.created_at, session.last_seen_at), (T, T));
    assert_eq!(session.idle_expires_at, T + IDLE);
    assert_eq!(session.absolute_expires_at, T + ABSOLUTE);
    assert_eq!(
        store.browser_session_by_token_hash(b"hash-1", T, IDLE).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.browser_session_by_token_hash(b"unknown", T, IDLE).await.unwrap(), None);

    // Use within a minute of the last write does not write again; after a minute it slides.
    let seen = store.browser_session_by_token_hash(b"hash-1", T + 30 * SECOND, IDLE).await;
    assert_eq!(seen.unwrap(), Some(session.clone()), "not rewritten within a minute");
    let slid = store
        .browser_session_by_token_hash(b"hash-1", T + 61 * SECOND, IDLE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slid.last_seen_at, T + 61 * SECOND);
    assert_eq!(slid.idle_expires_at, T + 61 * SECOND + IDLE);
    let reread = store.browser_session_by_token_hash(b"hash-1", T + 62 * SECOND, IDLE).await;
    assert_eq!(reread.unwrap(), Some(slid.clone()), "the slide was stored");
    // Slid, it outlives its first idle expiry.
    assert!(
        store.browser_session_by_token_hash(b"hash-1", T + IDLE, IDLE).await.unwrap().is_some()
    );

    // Left idle, a session ends at its idle expiry.
    for hash in [b"idle-1", b"idle-2"] {
        store
            .create_browser_session(&alice.id, hash, "c", T, IDLE, ABSOLUTE, None, None, false)
            .await
            .unwrap();
    }
    let just_before = store.browser_session_by_token_hash(b"idle-1", T + IDLE - 1, IDLE).await;
    assert!(just_before.unwrap().is_some());
    assert_eq!(store.browser_session_by_token_hash(b"idle-2", T + IDLE, IDLE).await.unwrap(), None);

    // However busy, a session ends at its absolute expiry; sliding never passes it.
    let short = store
        .create_browser_session(&alice.id, b"hash-abs", "c", T, IDLE, 2 * HOUR, None, None, true)
        .await
        .unwrap();
    let mut now = T;
    while now < T + 2 * HOUR - 20 * MINUTE {
        now += 20 * MINUTE;
        assert!(
            store.browser_session_by_token_hash(b"hash-abs", now, IDLE).await.unwrap().is_some(),
            "alive at {}",
            now - T
        );
    }
    let late = store.browser_session_by_token_hash(b"hash-abs", T + 2 * HOUR - 1, IDLE).await;
    let late = late.unwrap().unwrap();
    assert_eq!(late.idle_expires_at, short.absolute_expires_at, "capped at the absolute expiry");
    assert!(late.must_add_passkey);
    assert_eq!(
        store.browser_session_by_token_hash(b"hash-abs", T + 2 * HOUR, IDLE).await.unwrap(),
        None
    );

    // Listing shows live sessions only, newest first.
    let newer = store
        .create_browser_session(&alice.id, b"hash-2", "c", T + 1, IDLE, ABSOLUTE, None, None, true)
        .await
        .unwrap();
    let listed: Vec<BrowserSessionId> = store
        .list_browser_sessions(&alice.id, T + 2 * HOUR)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(listed.is_empty(), "every session was idle at T + 2h: {listed:?}");
    let listed = store.list_browser_sessions(&alice.id, T + 2).await.unwrap();
    let ids: Vec<&BrowserSessionId> = listed.iter().map(|s| &s.id).collect();
    assert_eq!(ids[0], &newer.id);
    assert!(ids.contains(&&session.id));
    assert!(store.list_browser_sessions(&bob.id, T).await.unwrap().is_empty());

    // The recovery restriction is lifted from all of a user's sessions at once.
    store.clear_must_add_passkey(&alice.id).await.unwrap();
    assert!(
        store
            .list_browser_sessions(&alice.id, T + 2)
            .await
            .unwrap()
            .iter()
            .all(|s| !s.must_add_passkey)
    );

    // Revocation takes effect on the very next request; someone else's session is not found.
    let err = store.revoke_browser_session(&bob.id, &newer.id, T + 3).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    store.revoke_browser_session(&alice.id, &newer.id, T + 3).await.unwrap();
    assert_eq!(store.browser_session_by_token_hash(b"hash-2", T + 3, IDLE).await.unwrap(), None);
    let err = store.revoke_browser_session(&alice.id, &newer.id, T + 4).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "already revoked: {err:?}");
    let err =
        store.revoke_browser_session(&alice.id, &BrowserSessionId::new(), T).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Signing out by cookie is idempotent.
    let now = T + 2 * MINUTE;
    assert!(store.browser_session_by_token_hash(b"hash-1", now, IDLE).await.unwrap().is_some());
    store.revoke_browser_session_by_token_hash(b"hash-1", now).await.unwrap();
    store.revoke_browser_session_by_token_hash(b"hash-1", now).await.unwrap();
    store.revoke_browser_session_by_token_hash(b"never-issued", now).await.unwrap();
    assert_eq!(store.browser_session_by_token_hash(b"hash-1", now, IDLE).await.unwrap(), None);
    let listed = store.list_browser_sessions(&alice.id, now).await.unwrap();
    assert!(!listed.is_empty() && listed.iter().all(|s| s.id != session.id), "{listed:?}");
}

on_both_backends!(browser_sessions =>
    a_browser_session_ends_when_idle_at_its_absolute_expiry_or_when_revoked_on_sqlite,
    a_browser_session_ends_when_idle_at_its_absolute_expiry_or_when_revoked_on_postgres);

async fn api_tokens(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;

    let forever = store.create_api_token(&alice.id, "ci", b"tok-1", T, None).await.unwrap();
    let hourly =
        store.create_api_token(&alice.id, "script", b"tok-2", T + 1, Some(T + HOUR)).await.unwrap();
    assert_eq!(
        (forever.name.as_str(), forever.expires_at, forever.last_used_at),
        ("ci", None, None)
    );
    let listed = store.list_api_tokens(&alice.id, T + 1).await.unwrap();
    assert_eq!(listed, vec![hourly.clone(), forever.clone()], "newest first");
    assert!(store.list_api_tokens(&bob.id, T).await.unwrap().is_empty());

    // Use is recorded, at most once a minute.
    let used = store.api_token_by_hash(b"tok-1", T + 5).await.unwrap().unwrap();
    assert_eq!((used.id.clone(), used.last_used_at), (forever.id.clone(), Some(T + 5)));
    let used = store.api_token_by_hash(b"tok-1", T + 5 + 30 * SECOND).await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(T + 5), "not rewritten within a minute");
    let used = store.api_token_by_hash(b"tok-1", T + 5 + 61 * SECOND).await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(T + 5 + 61 * SECOND));
    let listed = store.list_api_tokens(&alice.id, T + 2 * MINUTE).await.unwrap();
    assert_eq!(listed[1].last_used_at, Some(T + 5 + 61 * SECOND), "the use was stored");
    assert_eq!(store.api_token_by_hash(b"unknown", T).await.unwrap(), None);

    // An expiring token works until its expiry, then neither authenticates nor is listed.
    assert!(store.api_token_by_hash(b"tok-2", T + HOUR - 1).await.unwrap().is_some());
    assert_eq!(store.api_token_by_hash(b"tok-2", T + HOUR).await.unwrap(), None);
    assert_eq!(store.list_api_tokens(&alice.id, T + HOUR).await.unwrap().len(), 1);

    // Revocation is immediate; someone else's token, or a revoked one, is not found.
    let err = store.revoke_api_token(&bob.id, &forever.id, T + 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    store.revoke_api_token(&alice.id, &forever.id, T + 10).await.unwrap();
    assert_eq!(store.api_token_by_hash(b"tok-1", T + 10).await.unwrap(), None);
    let err = store.revoke_api_token(&alice.id, &forever.id, T + 11).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.revoke_api_token(&alice.id, &ApiTokenId::new(), T).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let listed = store.list_api_tokens(&alice.id, T + 11).await.unwrap();
    assert_eq!(listed.into_iter().map(|t| t.id).collect::<Vec<_>>(), vec![hourly.id]);
}

on_both_backends!(api_tokens =>
    an_api_token_works_until_it_expires_or_is_revoked_on_sqlite,
    an_api_token_works_until_it_expires_or_is_revoked_on_postgres);

async fn recovery_codes(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    let codes = |names: &[&str]| names.iter().map(|n| n.as_bytes().to_vec()).collect::<Vec<_>>();

    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 0);
    store.replace_recovery_codes(&alice.id, &codes(&["a", "b", "c"]), T).await.unwrap();
    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 3);

    // Each code works once, for its own user only.
    assert!(store.use_recovery_code(&alice.id, b"a", T + 1).await.unwrap());
    assert!(!store.use_recovery_code(&alice.id, b"a", T + 2).await.unwrap());
    assert!(!store.use_recovery_code(&bob.id, b"b", T + 2).await.unwrap());
    assert!(!store.use_recovery_code(&alice.id, b"z", T + 2).await.unwrap());
    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 2);
    assert_eq!(store.count_unused_recovery_codes(&bob.id).await.unwrap(), 0);

    // A new set replaces the old one entirely.
    store.replace_recovery_codes(&alice.id, &codes(&["d", "e"]), T + 3).await.unwrap();
    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 2);
    assert!(!store.use_recovery_code(&alice.id, b"b", T + 4).await.unwrap(), "old codes are gone");
    assert!(store.use_recovery_code(&alice.id, b"d", T + 4).await.unwrap());

    // A set that cannot be stored changes nothing: the old set still works.
    let err =
        store.replace_recovery_codes(&alice.id, &codes(&["x", "x"]), T + 5).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "recovery code" }), "{err:?}");
    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 1);
    assert!(!store.use_recovery_code(&alice.id, b"x", T + 6).await.unwrap());
    assert!(store.use_recovery_code(&alice.id, b"e", T + 6).await.unwrap());

    // Two sign-ins racing with one code: exactly one gets in.
    store.replace_recovery_codes(&bob.id, &codes(&["raced"]), T).await.unwrap();
    let (a, b) = tokio::join!(
        store.use_recovery_code(&bob.id, b"raced", T + 1),
        store.use_recovery_code(&bob.id, b"raced", T + 1),
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);
    assert_eq!(store.count_unused_recovery_codes(&bob.id).await.unwrap(), 0);

    // Replacing with nothing leaves none.
    store.replace_recovery_codes(&alice.id, &codes(&["f"]), T + 7).await.unwrap();
    store.replace_recovery_codes(&alice.id, &[], T + 8).await.unwrap();
    assert_eq!(store.count_unused_recovery_codes(&alice.id).await.unwrap(), 0);
}

on_both_backends!(recovery_codes =>
    a_recovery_code_works_once_and_a_new_set_invalidates_the_old_one_on_sqlite,
    a_recovery_code_works_once_and_a_new_set_invalidates_the_old_one_on_postgres);
