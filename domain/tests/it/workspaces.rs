//! Shared workspaces, their members and invitations. One story per aggregate, told once and checked
//! on both backends.

use domain::ids::{DisplayName, Email, InviteId, Slug, UserId, WorkspaceId};
use domain::store::{FREE_PLAN_ID, Role, Store, StoreError, User, Workspace};

use crate::support::{self, on_both_backends};

/// An arbitrary "now": the store takes time as an argument, so tests move it by hand.
const T: i64 = 1_700_000_000_000;
const DAY: i64 = 24 * 60 * 60 * 1_000;

fn email(local: &str) -> Email {
    Email::parse(&format!("{local}@example.com")).unwrap()
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

async fn sign_up(store: &Store, local: &str) -> User {
    let name = DisplayName::parse(local).unwrap();
    store.create_user_with_personal_workspace(&email(local), &name).await.unwrap().0
}

/// Adds `user` to `workspace` as `role` the way people join: through an invite.
async fn join(store: &Store, workspace: &Workspace, user: &User, role: Role, now: i64) {
    let token = format!("join-{}-{}", workspace.id, user.id);
    store
        .create_invite(&workspace.id, &user.email, role, token.as_bytes(), None, now, now + DAY)
        .await
        .unwrap();
    assert_eq!(store.accept_invite(token.as_bytes(), &user.id, now).await.unwrap().1, role);
}

async fn roles(store: &Store, workspace: &WorkspaceId) -> Vec<(String, Role)> {
    let members = store.members(workspace).await.unwrap();
    members.into_iter().map(|m| (m.user.email.local_part().to_owned(), m.role)).collect()
}

fn owned(pairs: &[(&str, Role)]) -> Vec<(String, Role)> {
    pairs.iter().map(|(who, role)| ((*who).to_owned(), *role)).collect()
}

async fn workspaces(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    let carol = sign_up(store, "carol").await;

    let acme = store
        .create_workspace(&alice.id, &DisplayName::parse("Acme").unwrap(), &slug("acme"), T)
        .await
        .unwrap();
    assert!(!acme.personal);
    assert_eq!(
        (acme.owner.clone(), acme.plan.as_str(), acme.created_at),
        (alice.id.clone(), FREE_PLAN_ID, T)
    );
    assert_eq!(store.workspace_by_slug(&slug("acme")).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.workspace_by_id(&acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.workspace_by_slug(&slug("nope")).await.unwrap(), None);
    assert_eq!(store.workspace_by_id(&WorkspaceId::new()).await.unwrap(), None);
    let members = store.members(&acme.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((&members[0].user, members[0].role, members[0].joined_at), (&alice, Role::Owner, T));
    let alices = store.workspaces_for_user(&alice.id).await.unwrap();
    assert_eq!(alices.len(), 2);
    assert!(alices[0].workspace.personal, "personal first");
    assert_eq!((&alices[1].workspace, alices[1].role), (&acme, Role::Owner));

    // A slug is taken whether by a shared or a personal workspace, and a refused one leaves nothing.
    for taken in ["acme", "bob"] {
        let err = store
            .create_workspace(&bob.id, &DisplayName::parse("Copy").unwrap(), &slug(taken), T)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { what: "slug" }), "{taken}: {err:?}");
    }
    assert_eq!(store.workspaces_for_user(&bob.id).await.unwrap().len(), 1);

    join(store, &acme, &bob, Role::Admin, T + 1).await;
    join(store, &acme, &carol, Role::Viewer, T + 2).await;
    assert_eq!(
        roles(store, &acme.id).await,
        owned(&[("alice", Role::Owner), ("bob", Role::Admin), ("carol", Role::Viewer)]),
        "in the order they joined"
    );

    // The last owner can be neither demoted nor removed.
    for role in [Role::Admin, Role::Member, Role::Viewer] {
        let err = store.set_member_role(&acme.id, &alice.id, role).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { what: "last owner" }), "{role}: {err:?}");
    }
    let err = store.remove_member(&acme.id, &alice.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "last owner" }), "{err:?}");
    // Nor can the only owner of a personal workspace.
    let personal = &store.workspaces_for_user(&bob.id).await.unwrap()[0].workspace;
    let err = store.remove_member(&personal.id, &bob.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "last owner" }), "{err:?}");

    // Once there is another owner, the first can step down; then the other is the last.
    store.set_member_role(&acme.id, &bob.id, Role::Owner).await.unwrap();
    store.set_member_role(&acme.id, &alice.id, Role::Member).await.unwrap();
    let err = store.remove_member(&acme.id, &bob.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "last owner" }), "{err:?}");
    store.set_member_role(&acme.id, &bob.id, Role::Owner).await.unwrap(); // unchanged is fine
    store.set_member_role(&acme.id, &carol.id, Role::Member).await.unwrap();
    assert_eq!(
        roles(store, &acme.id).await,
        owned(&[("alice", Role::Member), ("bob", Role::Owner), ("carol", Role::Member)])
    );
    assert_eq!(store.membership(&acme.id, &alice.id).await.unwrap(), Some(Role::Member));

    // Changing someone who is not a member, or in a workspace that does not exist, is not found.
    let dave = sign_up(store, "dave").await;
    let err = store.set_member_role(&acme.id, &dave.id, Role::Member).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.remove_member(&acme.id, &dave.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.set_member_role(&WorkspaceId::new(), &bob.id, Role::Member).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.remove_member(&WorkspaceId::new(), &bob.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    store.remove_member(&acme.id, &carol.id).await.unwrap();
    assert_eq!(store.membership(&acme.id, &carol.id).await.unwrap(), None);
    let err = store.remove_member(&acme.id, &carol.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Two owners demoting each other at the same moment cannot leave the workspace ownerless.
    store.set_member_role(&acme.id, &alice.id, Role::Owner).await.unwrap();
    let (a, b) = tokio::join!(
        store.set_member_role(&acme.id, &alice.id, Role::Admin),
        store.set_member_role(&acme.id, &bob.id, Role::Admin),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let owners =
        roles(store, &acme.id).await.into_iter().filter(|(_, r)| *r == Role::Owner).count();
    assert_eq!(owners, 1);
    for user in [&alice, &bob] {
        store.set_member_role(&acme.id, &user.id, Role::Owner).await.unwrap();
    }
    let (a, b) = tokio::join!(
        store.remove_member(&acme.id, &alice.id),
        store.remove_member(&acme.id, &bob.id),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let left = roles(store, &acme.id).await;
    assert_eq!((left.len(), left[0].1), (1, Role::Owner), "{left:?}");
}

on_both_backends!(workspaces =>
    a_workspace_always_keeps_an_owner_on_sqlite,
    a_workspace_always_keeps_an_owner_on_postgres);

async fn invites(store: &Store) {
    let alice = sign_up(store, "alice").await;
    let bob = sign_up(store, "bob").await;
    let carol = sign_up(store, "carol").await;
    let name = DisplayName::parse("Acme").unwrap();
    let acme = store.create_workspace(&alice.id, &name, &slug("acme"), T).await.unwrap();
    let other = store.create_workspace(&carol.id, &name, &slug("other"), T).await.unwrap();

    // Ownership is not granted by invitation.
    let err = store
        .create_invite(&acme.id, &email("bob"), Role::Owner, b"owner", Some(&alice.id), T, T + DAY)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m == "role: invites grant admin, member or viewer"),
        "{err:?}"
    );

    let first = store
        .create_invite(&acme.id, &email("Bob"), Role::Member, b"bob-1", Some(&alice.id), T, T + DAY)
        .await
        .unwrap();
    assert_eq!((first.email.as_str(), first.role), ("bob@example.com", Role::Member));
    assert_eq!(
        (first.invited_by.as_ref(), first.accepted_at, first.revoked_at),
        (Some(&alice.id), None, None)
    );
    let second = store
        .create_invite(&acme.id, &email("bob"), Role::Admin, b"bob-2", None, T + 1, T + DAY)
        .await
        .unwrap();
    assert_eq!(
        store.list_invites(&acme.id, T + 1).await.unwrap(),
        vec![second.clone(), first.clone()]
    );
    assert!(store.list_invites(&other.id, T + 1).await.unwrap().is_empty());

    // Accepting joins the workspace with the invite's role, once.
    let (joined, role) = store.accept_invite(b"bob-1", &bob.id, T + 2).await.unwrap();
    assert_eq!((joined, role), (acme.clone(), Role::Member));
    assert_eq!(store.membership(&acme.id, &bob.id).await.unwrap(), Some(Role::Member));
    let err = store.accept_invite(b"bob-1", &carol.id, T + 3).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "used: {err:?}");
    assert_eq!(store.list_invites(&acme.id, T + 3).await.unwrap(), vec![second.clone()]);

    // Someone already in the workspace is refused, and the invite stays usable.
    let err = store.accept_invite(b"bob-2", &bob.id, T + 4).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "membership" }), "{err:?}");
    assert_eq!(store.membership(&acme.id, &bob.id).await.unwrap(), Some(Role::Member), "unchanged");
    assert_eq!(store.list_invites(&acme.id, T + 4).await.unwrap(), vec![second.clone()]);
    store.remove_member(&acme.id, &bob.id).await.unwrap();
    let (_, role) = store.accept_invite(b"bob-2", &bob.id, T + 5).await.unwrap();
    assert_eq!(role, Role::Admin);

    // An invite is good until its expiry, exclusive.
    store
        .create_invite(&acme.id, &email("carol"), Role::Viewer, b"late", None, T, T + 10)
        .await
        .unwrap();
    assert_eq!(store.list_invites(&acme.id, T + 9).await.unwrap().len(), 1);
    assert!(store.list_invites(&acme.id, T + 10).await.unwrap().is_empty());
    let err = store.accept_invite(b"late", &carol.id, T + 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "expired: {err:?}");
    let err = store.revoke_invite(&acme.id, &first.id, T + 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "accepted: {err:?}");

    // A revoked invite cannot be accepted; revoking goes through its own workspace only, once.
    let revoked = store
        .create_invite(&acme.id, &email("carol"), Role::Viewer, b"revoked", None, T, T + DAY)
        .await
        .unwrap();
    let err = store.revoke_invite(&other.id, &revoked.id, T + 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    store.revoke_invite(&acme.id, &revoked.id, T + 1).await.unwrap();
    let err = store.revoke_invite(&acme.id, &revoked.id, T + 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.revoke_invite(&acme.id, &InviteId::new(), T + 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store.accept_invite(b"revoked", &carol.id, T + 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "revoked: {err:?}");
    let err = store.accept_invite(b"never-issued", &carol.id, T + 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.list_invites(&acme.id, T + 10).await.unwrap().is_empty());
    assert_eq!(store.membership(&acme.id, &carol.id).await.unwrap(), None);

    // Two people racing for one invite: exactly one gets in.
    let dave = sign_up(store, "dave").await;
    store
        .create_invite(&acme.id, &email("team"), Role::Member, b"raced", None, T, T + DAY)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.accept_invite(b"raced", &carol.id, T + 3),
        store.accept_invite(b"raced", &dave.id, T + 3),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let joined: Vec<UserId> = store
        .members(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user.id)
        .filter(|id| *id == carol.id || *id == dave.id)
        .collect();
    assert_eq!(joined.len(), 1);
}

on_both_backends!(invites =>
    an_invite_admits_one_person_once_before_it_expires_or_is_revoked_on_sqlite,
    an_invite_admits_one_person_once_before_it_expires_or_is_revoked_on_postgres);
