//! CLI sign-in: device authorizations (RFC 8628) and rotating refresh tokens with their families.
//! One story per concern, told once and checked on both backends.

use domain::ids::{DeviceAuthorizationId, DisplayName, Email, RefreshFamilyId, UserId};
use domain::store::{CliSession, DevicePoll, Rotation, Store, StoreError, User};

use crate::support::{self, on_both_backends};

/// An arbitrary "now": the store takes time as an argument, so tests move it by hand.
const T: i64 = 1_700_000_000_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

const LAPTOP: &str = "flare 0.1.0 on alice-laptop";

async fn sign_up(store: &Store, local: &str) -> User {
    let email = Email::parse(&format!("{local}@example.com")).unwrap();
    let name = DisplayName::parse(local).unwrap();
    store.create_user_with_personal_workspace(&email, &name).await.unwrap().0
}

/// A device code asked for at `T` with a 5 s interval, expiring 10 minutes later.
async fn device_code(
    store: &Store,
    device_code_hash: &[u8],
    user_code: &str,
) -> DeviceAuthorizationId {
    store
        .create_device_authorization(
            device_code_hash,
            user_code,
            LAPTOP,
            None,
            5,
            T,
            T + 10 * MINUTE,
        )
        .await
        .unwrap()
        .id
}

async fn poll(store: &Store, device_code_hash: &[u8], now: i64) -> DevicePoll {
    store.poll_device_authorization(device_code_hash, now).await.unwrap()
}

async fn device_approval(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let created = store
        .create_device_authorization(
            b"device",
            "BCDFGHJK",
            LAPTOP,
            Some("192.0.2.7"),
            5,
            T,
            T + 10 * MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(created.status, "pending");
    assert_eq!((created.interval_secs, created.ip.as_deref()), (5, Some("192.0.2.7")));
    assert_eq!(created.approved_user_id, None);
    assert_eq!(
        store.pending_device_authorization("BCDFGHJK", T + SECOND).await.unwrap(),
        Some(created.clone())
    );

    // Polls on time are pending; each poll too soon adds 5 s to the interval, for good.
    assert_eq!(poll(store, b"device", T + 5 * SECOND).await, DevicePoll::Pending);
    assert_eq!(
        poll(store, b"device", T + 6 * SECOND).await,
        DevicePoll::SlowDown { interval_secs: 10 }
    );
    assert_eq!(
        poll(store, b"device", T + 15 * SECOND).await,
        DevicePoll::SlowDown { interval_secs: 15 }
    );
    assert_eq!(poll(store, b"device", T + 30 * SECOND).await, DevicePoll::Pending);
    assert_eq!(poll(store, b"device", T + 45 * SECOND).await, DevicePoll::Pending);
    let shown = store.pending_device_authorization("BCDFGHJK", T + 46 * SECOND).await.unwrap();
    assert_eq!(shown.unwrap().interval_secs, 15);

    // Approved once; after that the code is no longer on offer, nor can it be decided again.
    store.decide_device_authorization(&created.id, &alice.id, true, T + MINUTE).await.unwrap();
    assert_eq!(store.pending_device_authorization("BCDFGHJK", T + MINUTE).await.unwrap(), None);
    for approve in [true, false] {
        let err = store
            .decide_device_authorization(&created.id, &alice.id, approve, T + MINUTE)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }

    // Two polls racing for the approved code: exactly one collects it.
    let (a, b) = tokio::join!(
        store.poll_device_authorization(b"device", T + 2 * MINUTE),
        store.poll_device_authorization(b"device", T + 2 * MINUTE),
    );
    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort_by_key(|answer| matches!(answer, DevicePoll::Expired));
    assert_eq!(
        answers,
        [
            DevicePoll::Approved { user: alice.id.clone(), client_name: LAPTOP.to_owned() },
            DevicePoll::Expired,
        ]
    );
    assert_eq!(poll(store, b"device", T + 3 * MINUTE).await, DevicePoll::Expired);
}

on_both_backends!(device_approval =>
    a_device_code_slows_down_fast_polls_and_is_exchanged_once_after_approval_on_sqlite,
    a_device_code_slows_down_fast_polls_and_is_exchanged_once_after_approval_on_postgres);

async fn device_endings(store: &Store) {
    let alice = sign_up(store, "alice").await;

    // Unknown codes, device or user, find nothing.
    assert_eq!(poll(store, b"nobody", T).await, DevicePoll::Unknown);
    assert_eq!(store.pending_device_authorization("ZZZZZZZZ", T).await.unwrap(), None);
    let err = store
        .decide_device_authorization(&DeviceAuthorizationId::new(), &alice.id, true, T)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // The user code must match exactly (the caller normalizes it first).
    let denied = device_code(store, b"denied", "DDDDDDDD").await;
    assert_eq!(store.pending_device_authorization("DDDDDDDX", T).await.unwrap(), None);
    assert_eq!(store.pending_device_authorization("dddddddd", T).await.unwrap(), None);

    // Denied stays denied: the CLI hears it on every poll, and nobody can approve it afterwards.
    store.decide_device_authorization(&denied, &alice.id, false, T + SECOND).await.unwrap();
    assert_eq!(poll(store, b"denied", T + 5 * SECOND).await, DevicePoll::Denied);
    assert_eq!(poll(store, b"denied", T + 10 * SECOND).await, DevicePoll::Denied);
    let err =
        store.decide_device_authorization(&denied, &alice.id, true, T + MINUTE).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(poll(store, b"denied", T + 2 * MINUTE).await, DevicePoll::Denied);

    // Undecided at its expiry: off the approval page, cannot be decided, and expired for the CLI.
    let expiry = T + 10 * MINUTE;
    let undecided = device_code(store, b"undecided", "EEEEEEEE").await;
    assert_eq!(poll(store, b"undecided", T + 5 * SECOND).await, DevicePoll::Pending);
    assert_eq!(store.pending_device_authorization("EEEEEEEE", expiry).await.unwrap(), None);
    let err =
        store.decide_device_authorization(&undecided, &alice.id, true, expiry).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(poll(store, b"undecided", expiry).await, DevicePoll::Expired);
    assert_eq!(poll(store, b"undecided", expiry + MINUTE).await, DevicePoll::Expired);

    // Approved but not collected before the device code expires: expired too.
    let uncollected = device_code(store, b"uncollected", "FFFFFFFF").await;
    store.decide_device_authorization(&uncollected, &alice.id, true, T + SECOND).await.unwrap();
    assert_eq!(poll(store, b"uncollected", expiry).await, DevicePoll::Expired);
    assert_eq!(poll(store, b"uncollected", expiry + MINUTE).await, DevicePoll::Expired);
}

on_both_backends!(device_endings =>
    a_device_code_can_be_denied_or_expire_and_unknown_codes_find_nothing_on_sqlite,
    a_device_code_can_be_denied_or_expire_and_unknown_codes_find_nothing_on_postgres);

async fn user_code_clash(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let first = device_code(store, b"first", "KKKKKKKK").await;

    // A user code already pending is refused, and the refused request leaves nothing behind.
    let err = store
        .create_device_authorization(b"second", "KKKKKKKK", LAPTOP, None, 5, T, T + 10 * MINUTE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "user code" }), "{err:?}");
    assert_eq!(poll(store, b"second", T + SECOND).await, DevicePoll::Unknown);
    assert_eq!(store.pending_device_authorization("KKKKKKKK", T).await.unwrap().unwrap().id, first);

    // Once decided, the code can be handed out again.
    store.decide_device_authorization(&first, &alice.id, true, T + SECOND).await.unwrap();
    let third = device_code(store, b"third", "KKKKKKKK").await;

    // A pending code past its expiry, though nobody polled it since, frees its user code too.
    let expiry = T + 10 * MINUTE;
    let fourth = store
        .create_device_authorization(b"fourth", "KKKKKKKK", LAPTOP, None, 5, expiry, expiry + HOUR)
        .await
        .unwrap();
    assert_eq!(poll(store, b"third", expiry + SECOND).await, DevicePoll::Expired);
    let shown = store.pending_device_authorization("KKKKKKKK", expiry + SECOND).await.unwrap();
    assert_eq!(shown, Some(fourth));
    let err = store
        .decide_device_authorization(&third, &alice.id, true, expiry + SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

on_both_backends!(user_code_clash =>
    a_user_code_is_unique_among_pending_codes_and_free_again_once_decided_or_expired_on_sqlite,
    a_user_code_is_unique_among_pending_codes_and_free_again_once_decided_or_expired_on_postgres);

/// Signs `user` in from the CLI at `now`: the first refresh token of a new family, valid for a day.
async fn log_in(store: &Store, user: &UserId, refresh_hash: &[u8], now: i64) -> RefreshFamilyId {
    let family = RefreshFamilyId::new();
    store.create_refresh_token(user, &family, refresh_hash, LAPTOP, now, now + DAY).await.unwrap();
    family
}

async fn rotate(store: &Store, old: &[u8], new: &[u8], now: i64) -> Rotation {
    store.rotate_refresh_token(old, new, now, now + DAY).await.unwrap()
}

async fn access_token_works(store: &Store, token_hash: &[u8], now: i64) -> bool {
    store.api_token_by_hash(token_hash, now).await.unwrap().is_some()
}

async fn refresh_rotation(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    let family = log_in(store, &alice.id, b"r1", T).await;
    let access = store
        .create_family_access_token(&alice.id, &family, LAPTOP, b"a1", T, T + HOUR)
        .await
        .unwrap();
    assert_eq!((access.user_id.clone(), access.expires_at), (alice.id.clone(), Some(T + HOUR)));
    assert!(access_token_works(store, b"a1", T + SECOND).await);

    // Each refresh spends the token and issues its successor in the same family.
    let rotated = Rotation::Rotated {
        user: alice.id.clone(),
        family: family.clone(),
        client_name: LAPTOP.into(),
    };
    assert_eq!(rotate(store, b"r1", b"r2", T + MINUTE).await, rotated);
    store
        .create_family_access_token(&alice.id, &family, LAPTOP, b"a2", T + MINUTE, T + HOUR)
        .await
        .unwrap();
    assert_eq!(rotate(store, b"r2", b"r3", T + 2 * MINUTE).await, rotated);

    // Only the token's own user can mint in a family.
    let err = store
        .create_family_access_token(&bob.id, &family, LAPTOP, b"stolen", T, T + HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // A spent token presented again (a copy somebody kept) revokes the whole family: the current
    // refresh token and every access token minted from it, and nothing can be minted in it again.
    let reused = Rotation::Reused { user: alice.id.clone(), family: family.clone() };
    assert_eq!(rotate(store, b"r1", b"thief", T + 3 * MINUTE).await, reused);
    assert_eq!(rotate(store, b"thief", b"x", T + 3 * MINUTE).await, Rotation::Invalid);
    assert_eq!(rotate(store, b"r3", b"r4", T + 4 * MINUTE).await, reused);
    assert!(!access_token_works(store, b"a1", T + 4 * MINUTE).await);
    assert!(!access_token_works(store, b"a2", T + 4 * MINUTE).await);
    let err = store
        .create_family_access_token(&alice.id, &family, LAPTOP, b"a3", T + 4 * MINUTE, T + HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.list_cli_sessions(&alice.id, T + 4 * MINUTE).await.unwrap().is_empty());

    // Unknown and expired tokens are invalid and change nothing: the expired one is not spent, so
    // presenting it again is not reuse.
    assert_eq!(rotate(store, b"nobody", b"y", T).await, Rotation::Invalid);
    let bobs = log_in(store, &bob.id, b"b1", T).await;
    store.create_family_access_token(&bob.id, &bobs, LAPTOP, b"ba", T, T + 2 * DAY).await.unwrap();
    for now in [T + DAY, T + DAY + MINUTE] {
        assert_eq!(rotate(store, b"b1", b"b2", now).await, Rotation::Invalid);
    }
    assert!(access_token_works(store, b"ba", T + DAY + MINUTE).await);
}

on_both_backends!(refresh_rotation =>
    a_reused_refresh_token_revokes_its_whole_family_with_its_access_tokens_on_sqlite,
    a_reused_refresh_token_revokes_its_whole_family_with_its_access_tokens_on_postgres);

async fn concurrent_rotation(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let family = log_in(store, &alice.id, b"r1", T).await;

    let (a, b) = tokio::join!(
        store.rotate_refresh_token(b"r1", b"left", T + MINUTE, T + DAY),
        store.rotate_refresh_token(b"r1", b"right", T + MINUTE, T + DAY),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let rotated = Rotation::Rotated {
        user: alice.id.clone(),
        family: family.clone(),
        client_name: LAPTOP.into(),
    };
    assert_eq!(u8::from(a == rotated) + u8::from(b == rotated), 1, "{a:?} {b:?}");
    let (winner, loser): (&[u8], _) = if a == rotated { (b"left", b) } else { (b"right", a) };
    // The loser is told it raced its own CLI; nothing is revoked, and the winner's successor
    // keeps working.
    assert_eq!(loser, Rotation::Concurrent);
    assert_eq!(rotate(store, winner, b"next", T + 2 * MINUTE).await, rotated);

    // The same spent token long after the race is a stolen copy: the family goes.
    let reused = Rotation::Reused { user: alice.id.clone(), family: family.clone() };
    assert_eq!(rotate(store, b"r1", b"late", T + 3 * MINUTE).await, reused);
    assert_eq!(rotate(store, b"next", b"after", T + 4 * MINUTE).await, reused);
}

on_both_backends!(concurrent_rotation =>
    two_rotations_of_one_refresh_token_at_once_have_exactly_one_winner_on_sqlite,
    two_rotations_of_one_refresh_token_at_once_have_exactly_one_winner_on_postgres);

async fn logout(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let family = log_in(store, &alice.id, b"r1", T).await;
    store.create_family_access_token(&alice.id, &family, LAPTOP, b"a1", T, T + HOUR).await.unwrap();
    assert!(matches!(rotate(store, b"r1", b"r2", T + MINUTE).await, Rotation::Rotated { .. }));

    // Logging out ends the family once; again, or with an unknown token, is a quiet no-op.
    let ended = Some((alice.id.clone(), family.clone()));
    assert_eq!(store.revoke_refresh_family_by_token(b"r2", T + 2 * MINUTE).await.unwrap(), ended);
    assert_eq!(store.revoke_refresh_family_by_token(b"r2", T + 3 * MINUTE).await.unwrap(), None);
    assert_eq!(store.revoke_refresh_family_by_token(b"r1", T + 3 * MINUTE).await.unwrap(), None);
    assert_eq!(store.revoke_refresh_family_by_token(b"nobody", T).await.unwrap(), None);
    assert!(!access_token_works(store, b"a1", T + 3 * MINUTE).await);
    let reused = Rotation::Reused { user: alice.id.clone(), family: family.clone() };
    assert_eq!(rotate(store, b"r2", b"r3", T + 3 * MINUTE).await, reused);
    assert!(store.list_cli_sessions(&alice.id, T + 3 * MINUTE).await.unwrap().is_empty());
    let err = store.revoke_refresh_family(&alice.id, &family, T + 4 * MINUTE).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Any token of the family logs it out, spent or expired ones too.
    let other = log_in(store, &alice.id, b"o1", T).await;
    assert!(matches!(rotate(store, b"o1", b"o2", T + MINUTE).await, Rotation::Rotated { .. }));
    let ended = Some((alice.id.clone(), other.clone()));
    assert_eq!(store.revoke_refresh_family_by_token(b"o1", T + 2 * DAY).await.unwrap(), ended);
    assert_eq!(
        rotate(store, b"o2", b"o3", T + 2 * DAY).await,
        Rotation::Reused { user: alice.id.clone(), family: other }
    );
}

on_both_backends!(logout =>
    logging_out_with_any_token_of_a_family_revokes_it_once_on_sqlite,
    logging_out_with_any_token_of_a_family_revokes_it_once_on_postgres);

async fn cli_sessions(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    let laptop = log_in(store, &alice.id, b"laptop-1", T).await;
    let desktop = RefreshFamilyId::new();
    store
        .create_refresh_token(
            &alice.id,
            &desktop,
            b"desktop-1",
            "flare on desktop",
            T + MINUTE,
            T + DAY,
        )
        .await
        .unwrap();
    // Logged in yesterday and never refreshed: gone from the list.
    log_in(store, &alice.id, b"stale-1", T - DAY).await;
    let bobs = log_in(store, &bob.id, b"bob-1", T).await;

    let now = T + 2 * MINUTE;
    let desktop_session = CliSession {
        family: desktop.clone(),
        client_name: "flare on desktop".into(),
        created_at: T + MINUTE,
        last_used_at: None,
    };
    let mut laptop_session = CliSession {
        family: laptop.clone(),
        client_name: LAPTOP.into(),
        created_at: T,
        last_used_at: None,
    };
    assert_eq!(
        store.list_cli_sessions(&alice.id, now).await.unwrap(),
        vec![desktop_session.clone(), laptop_session.clone()]
    );

    // Refreshing and using access tokens show as the last use; the login time stays.
    assert!(matches!(
        rotate(store, b"laptop-1", b"laptop-2", T + 3 * MINUTE).await,
        Rotation::Rotated { .. }
    ));
    laptop_session.last_used_at = Some(T + 3 * MINUTE);
    assert_eq!(
        store.list_cli_sessions(&alice.id, T + 3 * MINUTE).await.unwrap()[1],
        laptop_session
    );
    store
        .create_family_access_token(
            &alice.id,
            &laptop,
            LAPTOP,
            b"laptop-a",
            T + 3 * MINUTE,
            T + HOUR,
        )
        .await
        .unwrap();
    assert!(access_token_works(store, b"laptop-a", T + 4 * MINUTE).await);
    laptop_session.last_used_at = Some(T + 4 * MINUTE);
    assert_eq!(
        store.list_cli_sessions(&alice.id, T + 4 * MINUTE).await.unwrap()[1],
        laptop_session
    );

    // Bob cannot end Alice's session, and hears the same as for a session that does not exist.
    for (user, family) in
        [(&bob.id, &laptop), (&alice.id, &bobs), (&alice.id, &RefreshFamilyId::new())]
    {
        let err = store.revoke_refresh_family(user, family, now).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }
    assert_eq!(store.list_cli_sessions(&alice.id, now).await.unwrap().len(), 2);
    assert_eq!(store.list_cli_sessions(&bob.id, now).await.unwrap().len(), 1);

    // Alice ends her laptop session: its tokens stop working, the desktop one carries on.
    store.revoke_refresh_family(&alice.id, &laptop, T + 5 * MINUTE).await.unwrap();
    assert_eq!(
        store.list_cli_sessions(&alice.id, T + 5 * MINUTE).await.unwrap(),
        vec![desktop_session]
    );
    assert!(!access_token_works(store, b"laptop-a", T + 5 * MINUTE).await);
    assert!(matches!(
        rotate(store, b"laptop-2", b"laptop-3", T + 6 * MINUTE).await,
        Rotation::Reused { .. }
    ));
    assert!(matches!(
        rotate(store, b"desktop-1", b"desktop-2", T + 6 * MINUTE).await,
        Rotation::Rotated { .. }
    ));
    let err = store.revoke_refresh_family(&alice.id, &laptop, T + 7 * MINUTE).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.list_cli_sessions(&bob.id, T + 7 * MINUTE).await.unwrap()[0].family, bobs);
}

on_both_backends!(cli_sessions =>
    a_user_lists_and_ends_their_own_cli_sessions_but_not_someone_elses_on_sqlite,
    a_user_lists_and_ends_their_own_cli_sessions_but_not_someone_elses_on_postgres);
