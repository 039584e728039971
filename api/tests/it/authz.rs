//! Every route of the router x every role x own/foreign workspace, generated from the route
//! table: a route cannot be added without an access rule, and this test checks each rule is
//! what the guard enforces.

use burstflare_api::routes::{Access, Kind};
use domain::policy;
use domain::store::Role;
use serde_json::json;

use crate::browserish::{Api, Browser};

async fn member(api: &Api, owner: &mut Browser, email: &str, role: &str) -> Browser {
    let inv =
        owner.post("/api/v1/workspaces/team/invites", json!({"email": email, "role": role})).await;
    assert_eq!(inv.status, 201, "{:?}", inv.body);
    let token = inv.body["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let mut b = api.browser();
    b.sign_up(email, role).await;
    b.load_csrf(api).await;
    let r = b.post("/api/v1/invites/accept", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    b
}

fn concrete(path: &str, ws: &str) -> String {
    // Ids that do not exist: an allowed caller reaches the handler, which answers 404 itself.
    path.replace("{ws}", ws)
        .replace("{user}", "01900000-0000-7000-8000-000000000000")
        .replace("{id}", "01900000-0000-7000-8000-000000000000")
        .replace("{token}", "bfi_nothing")
}

#[tokio::test]
async fn every_route_enforces_its_access_rule_for_every_role_and_hides_foreign_workspaces() {
    let api = Api::start().await;
    let mut owner = api.browser();
    owner.sign_up("owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    let r = owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut callers = vec![(Role::Owner, owner)];
    for (role, name) in [(Role::Admin, "admin"), (Role::Member, "member"), (Role::Viewer, "viewer")]
    {
        let owner = &mut callers[0].1;
        let b = member(&api, owner, &format!("{name}@example.com"), name).await;
        callers.push((role, b));
    }
    let mut stranger = api.browser();
    stranger.sign_up("stranger@example.com", "Stranger").await;
    stranger.load_csrf(&api).await;
    let mut anonymous = api.browser();

    let mut table = burstflare_api::http::route_table();
    // Leaving changes who is a member: check it last.
    table.sort_by_key(|d| d.path.ends_with("/leave"));
    let mut checked = 0;
    for def in &table {
        let method = reqwest::Method::from_bytes(def.method.as_str().as_bytes()).unwrap();
        // A body that no handler accepts: a caller the guard lets through gets 400 (or 404 for
        // ids that do not exist), never a change.
        let body = (method != reqwest::Method::GET).then(|| json!({"__not_a_field__": true}));
        let path = concrete(def.path, "team");

        if def.access != Access::Public {
            let r = anonymous.send(method.clone(), &path, body.clone()).await;
            match def.kind {
                Kind::Api => assert_eq!(r.status, 401, "anonymous {} {}", def.method, def.path),
                Kind::Page => assert!(
                    r.status == 303 || r.status == 401 || r.status == 403,
                    "anonymous {} {}: {}",
                    def.method,
                    def.path,
                    r.status
                ),
            }
        }
        let Access::Workspace(permission) = def.access else { continue };

        // A workspace that is not yours looks exactly like one that does not exist.
        let foreign = stranger.send(method.clone(), &path, body.clone()).await;
        let missing =
            stranger.send(method.clone(), &concrete(def.path, "no-such-ws"), body.clone()).await;
        assert_eq!(foreign.status, 404, "stranger {} {}", def.method, def.path);
        assert_eq!(foreign.body, missing.body, "{} {}", def.method, def.path);

        for (role, caller) in callers.iter_mut() {
            let r = caller.send(method.clone(), &path, body.clone()).await;
            if policy::allows(*role, permission) {
                assert!(
                    ![401, 403].contains(&r.status.as_u16()),
                    "{role:?} may {} {}: got {} {:?}",
                    def.method,
                    def.path,
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status, 403,
                    "{role:?} may not {} {}: {:?}",
                    def.method, def.path, r.body
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 9, "only {checked} role checks ran");
}

#[tokio::test]
async fn a_viewer_cannot_change_anything_and_an_admin_cannot_touch_owners() {
    let api = Api::start().await;
    let mut owner = api.browser();
    owner.sign_up("o@example.com", "O").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let mut viewer = member(&api, &mut owner, "v@example.com", "viewer").await;
    let mut admin = member(&api, &mut owner, "a@example.com", "admin").await;

    let members = owner.get("/api/v1/workspaces/team/members").await;
    let id_of = |email: &str| {
        members.body.as_array().unwrap().iter().find(|m| m["user"]["email"] == email).unwrap()["user"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (owner_id, viewer_id) = (id_of("o@example.com"), id_of("v@example.com"));

    let r = viewer
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/workspaces/team/members/{owner_id}"),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = viewer
        .post(
            "/api/v1/workspaces/team/invites",
            json!({"email": "x@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(viewer.get("/api/v1/workspaces/team/audit").await.status, 403);

    let r = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/workspaces/team/members/{owner_id}"),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/workspaces/team/members/{viewer_id}"),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // The last owner can neither be demoted nor leave.
    let r = owner
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/workspaces/team/members/{owner_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    let r = owner.post("/api/v1/workspaces/team/leave", json!({})).await;
    assert_eq!(r.status, 409, "{:?}", r.body);

    let audit = owner.get("/api/v1/workspaces/team/audit?action=member.").await;
    let actions: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member.role_change"]);
}

#[tokio::test]
async fn an_invite_link_works_once_and_not_after_it_expires() {
    let api = Api::start().await;
    let mut owner = api.browser();
    owner.sign_up("o2@example.com", "O").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let inv = owner
        .post(
            "/api/v1/workspaces/team/invites",
            json!({"email": "p@example.com", "role": "member"}),
        )
        .await;
    let token = inv.body["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(token.starts_with("bfi_"));

    let mut p = api.browser();
    p.sign_up("p@example.com", "P").await;
    p.load_csrf(&api).await;
    assert_eq!(p.post("/api/v1/invites/accept", json!({"token": token})).await.status, 200);
    let mut q = api.browser();
    q.sign_up("q@example.com", "Q").await;
    q.load_csrf(&api).await;
    assert_eq!(
        q.post("/api/v1/invites/accept", json!({"token": token})).await.status,
        404,
        "reused"
    );

    let inv = owner
        .post(
            "/api/v1/workspaces/team/invites",
            json!({"email": "q@example.com", "role": "viewer"}),
        )
        .await;
    let token = inv.body["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    sqlx::query("UPDATE invites SET expires_at = 1 WHERE accepted_at IS NULL")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    assert_eq!(
        q.post("/api/v1/invites/accept", json!({"token": token})).await.status,
        404,
        "expired"
    );
    assert_eq!(q.get("/api/v1/workspaces/team").await.status, 404);
}

#[tokio::test]
async fn every_mutating_call_writes_exactly_one_audit_event_without_secrets() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("aud@example.com", "Aud").await;
    b.load_csrf(&api).await;
    let store = &api.state.store;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_log")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };

    let mut secrets = Vec::new();
    let steps: Vec<(&str, reqwest::Method, &str, Option<serde_json::Value>)> = vec![
        ("token.create", reqwest::Method::POST, "/api/v1/me/tokens", Some(json!({"name": "ci"}))),
        (
            "recovery_codes.regenerate",
            reqwest::Method::POST,
            "/api/v1/me/recovery-codes",
            Some(json!({})),
        ),
        (
            "workspace.create",
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(json!({"name": "Team", "slug": "team"})),
        ),
        (
            "invite.create",
            reqwest::Method::POST,
            "/api/v1/workspaces/team/invites",
            Some(json!({"email": "z@example.com", "role": "viewer"})),
        ),
    ];
    for (action, method, path, body) in steps {
        let before = count().await;
        let r = b.send(method, path, body).await;
        assert!(r.status.is_success(), "{path}: {:?}", r.body);
        for key in ["secret", "link"] {
            if let Some(s) = r.body[key].as_str() {
                secrets.push(s.rsplit('/').next().unwrap().to_string());
            }
        }
        if let Some(codes) = r.body["codes"].as_array() {
            secrets.extend(codes.iter().map(|c| c.as_str().unwrap().to_string()));
        }
        assert_eq!(count().await, before + 1, "{action} writes one event");
        let last: String =
            sqlx::query_scalar("SELECT action FROM audit_log ORDER BY at DESC, id DESC LIMIT 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(last, action);
    }
    let all: Vec<(String, String)> = sqlx::query_as("SELECT action, detail_json FROM audit_log")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let dump = format!("{all:?}");
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "an audit record contains a secret");
    }
    let cookie = b.cookie.clone().unwrap();
    assert!(!dump.contains(cookie.split_once('=').unwrap().1));
}

async fn audit_count(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(api.state.store.pool())
        .await
        .unwrap()
}

async fn last_action(api: &Api) -> String {
    sqlx::query_scalar("SELECT action FROM audit_log ORDER BY at DESC, id DESC LIMIT 1")
        .fetch_one(api.state.store.pool())
        .await
        .unwrap()
}

/// Runs one mutating call and checks it succeeded and wrote exactly one event, `action`.
async fn once(
    api: &Api,
    b: &mut Browser,
    action: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let before = audit_count(api).await;
    let r = b.send(method, path, body).await;
    assert!(r.status.is_success(), "{path}: {} {:?}", r.status, r.body);
    assert_eq!(audit_count(api).await, before + 1, "{action}: exactly one event");
    assert_eq!(last_action(api).await, action);
    r.body
}

#[tokio::test]
async fn membership_passkey_session_and_token_changes_each_write_exactly_one_event() {
    use reqwest::Method as M;
    let api = Api::start().await;
    let mut o = api.browser();
    o.sign_up("own@example.com", "Own").await;
    o.load_csrf(&api).await;
    once(
        &api,
        &mut o,
        "workspace.create",
        M::POST,
        "/api/v1/workspaces",
        Some(json!({"name": "Team", "slug": "team"})),
    )
    .await;
    let inv = once(
        &api,
        &mut o,
        "invite.create",
        M::POST,
        "/api/v1/workspaces/team/invites",
        Some(json!({"email": "m@example.com", "role": "member"})),
    )
    .await;
    let token = inv["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let spare = once(
        &api,
        &mut o,
        "invite.create",
        M::POST,
        "/api/v1/workspaces/team/invites",
        Some(json!({"email": "n@example.com", "role": "viewer"})),
    )
    .await;
    let spare_id = spare["invite"]["id"].as_str().unwrap().to_string();
    once(
        &api,
        &mut o,
        "invite.revoke",
        M::DELETE,
        &format!("/api/v1/workspaces/team/invites/{spare_id}"),
        None,
    )
    .await;

    let mut m = api.browser();
    m.sign_up("m@example.com", "M").await;
    m.load_csrf(&api).await;
    once(
        &api,
        &mut m,
        "invite.accept",
        M::POST,
        "/api/v1/invites/accept",
        Some(json!({"token": token})),
    )
    .await;
    let mid = m.get("/api/v1/me").await.body["user"]["id"].as_str().unwrap().to_string();
    once(
        &api,
        &mut o,
        "member.role_change",
        M::PATCH,
        &format!("/api/v1/workspaces/team/members/{mid}"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    once(&api, &mut m, "member.leave", M::POST, "/api/v1/workspaces/team/leave", None).await;

    let pk = o.get("/api/v1/me/passkeys").await.body[0]["id"].as_str().unwrap().to_string();
    once(
        &api,
        &mut o,
        "passkey.rename",
        M::PATCH,
        &format!("/api/v1/me/passkeys/{pk}"),
        Some(json!({"name": "Laptop"})),
    )
    .await;
    let t = once(
        &api,
        &mut o,
        "token.create",
        M::POST,
        "/api/v1/me/tokens",
        Some(json!({"name": "x"})),
    )
    .await;
    let tid = t["token"]["id"].as_str().unwrap().to_string();
    once(&api, &mut o, "token.revoke", M::DELETE, &format!("/api/v1/me/tokens/{tid}"), None).await;

    // A second session of the owner, revoked from the first.
    let mut o2 = api.browser();
    o2.passkey = std::mem::replace(
        &mut o.passkey,
        webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true),
    );
    let before = audit_count(&api).await;
    assert_eq!(o2.sign_in("own@example.com").await.status, 200);
    assert_eq!(audit_count(&api).await, before + 1);
    assert_eq!(last_action(&api).await, "auth.signin");
    let sessions = o.get("/api/v1/me/sessions").await;
    let other =
        sessions.body.as_array().unwrap().iter().find(|s| s["current"] == false).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    once(&api, &mut o, "session.revoke", M::DELETE, &format!("/api/v1/me/sessions/{other}"), None)
        .await;
    once(&api, &mut o, "auth.signout", M::POST, "/api/v1/auth/signout", Some(json!({}))).await;
}
