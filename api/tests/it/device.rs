//! `flare auth login`'s server side: RFC 8628 device authorization approved in the web UI, and
//! CLI tokens that rotate, refresh and are revoked as a family.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browserish::{Api, Browser};

async fn api() -> Api {
    Api::start_with(|c| {
        c.auth.device_poll_interval_secs = 1;
        c.auth.access_token_ttl_secs = 60;
    })
    .await
}

/// The CLI: no cookie, no Origin, like `flare`.
fn cli(api: &Api) -> Browser {
    let mut b = api.browser();
    b.origin = None;
    b
}

async fn poll(cli: &mut Browser, device_code: &str) -> (u16, Value) {
    let r = cli
        .post(
            "/api/v1/device/token",
            json!({"grant_type": sdk::DEVICE_GRANT_TYPE, "device_code": device_code}),
        )
        .await;
    (r.status.as_u16(), r.body)
}

/// Waits out the polling interval the server asked for (1 s in these tests): polling sooner is
/// what `slow_down` is for.
async fn wait_interval() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

async fn signed_in_user(api: &Api, email: &str) -> Browser {
    let mut b = api.browser();
    b.sign_up(email, "Person").await;
    b.load_csrf(api).await;
    b
}

/// Starts a device login and approves it as `user`; returns the token pair.
async fn login(api: &Api, user: &mut Browser) -> Value {
    let mut c = cli(api);
    let code = c.post("/api/v1/device/code", json!({"client_name": "flare test"})).await;
    assert_eq!(code.status, 200, "{:?}", code.body);
    let user_code = code.body["user_code"].as_str().unwrap().to_string();
    let page = user.get(&format!("/device?code={user_code}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.as_str().unwrap().contains("flare test"));
    let done = user.post_form("/device/approve", &[("code", &user_code)]).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    let (status, pair) = poll(&mut c, code.body["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{pair:?}");
    pair
}

#[tokio::test]
async fn a_device_login_approved_in_the_browser_yields_tokens_that_act_as_the_user() {
    let api = api().await;
    let mut alice = signed_in_user(&api, "dev-alice@example.com").await;
    let mut c = cli(&api);
    let code = c.post("/api/v1/device/code", json!({"client_name": "flare 0.1.0 on laptop"})).await;
    assert_eq!(code.status, 200, "{:?}", code.body);
    let user_code = code.body["user_code"].as_str().unwrap().to_string();
    assert_eq!(user_code.len(), 9);
    assert!(user_code.chars().all(|ch| ch == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(ch)));
    assert_eq!(code.body["interval"], 1);
    assert!(
        code.body["verification_uri_complete"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/device?code={user_code}"))
    );
    let device_code = code.body["device_code"].as_str().unwrap().to_string();

    let (status, err) = poll(&mut c, &device_code).await;
    assert_eq!((status, err["error"].as_str().unwrap()), (400, "authorization_pending"));
    // Polling again at once is too fast.
    let (status, err) = poll(&mut c, &device_code).await;
    assert_eq!((status, err["error"].as_str().unwrap()), (400, "slow_down"));

    // The approval page shows the client and the IP, and takes the code in any case, without dash.
    let typed = user_code.replace('-', "").to_lowercase();
    let page = alice.get(&format!("/device?code={typed}")).await;
    assert_eq!(page.status, 200);
    let html = page.body.as_str().unwrap();
    assert!(html.contains("flare 0.1.0 on laptop") && html.contains("127.0.0.1"), "{html}");
    let done = alice.post_form("/device/approve", &[("code", &typed)]).await;
    assert_eq!(done.status, 200);

    tokio::time::sleep(Duration::from_secs(6)).await; // slow_down added 5 s to the interval
    let (status, pair) = poll(&mut c, &device_code).await;
    assert_eq!(status, 200, "{pair:?}");
    assert!(pair["access_token"].as_str().unwrap().starts_with("bfa_"));
    assert!(pair["refresh_token"].as_str().unwrap().starts_with("bfr_"));
    assert_eq!(pair["expires_in"], 60);
    // The code works once.
    wait_interval().await;
    let (status, _) = poll(&mut c, &device_code).await;
    assert_eq!(status, 400);

    c.bearer = Some(pair["access_token"].as_str().unwrap().to_string());
    let me = c.get("/api/v1/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["email"], "dev-alice@example.com");
    // CLI tokens are not listed among the API tokens, but as a CLI session.
    alice.bearer = None;
    assert_eq!(alice.get("/api/v1/me/tokens").await.body, json!([]));
    let sessions = alice.get("/api/v1/me/cli-sessions").await;
    assert_eq!(sessions.body[0]["client_name"], "flare 0.1.0 on laptop");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_whole_login() {
    let api = api().await;
    let mut alice = signed_in_user(&api, "rot@example.com").await;
    let first = login(&api, &mut alice).await;
    let mut c = cli(&api);
    let r = c.post("/api/v1/token/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = r.body.clone();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    c.bearer = Some(second["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/me").await.status, 200);

    // The first refresh token again, a minute later: someone copied it. The whole family goes.
    sqlx::query("UPDATE refresh_tokens SET used_at = used_at - 60000 WHERE used_at IS NOT NULL")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    c.bearer = None;
    let reuse =
        c.post("/api/v1/token/refresh", json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(reuse.status, 401);
    assert!(reuse.body["message"].as_str().unwrap().contains("flare auth login"));
    c.bearer = Some(second["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/me").await.status, 401);
    c.bearer = None;
    let r =
        c.post("/api/v1/token/refresh", json!({"refresh_token": second["refresh_token"]})).await;
    assert_eq!(r.status, 401);
    let ws = personal(&mut alice).await;
    let audit = alice.get(&format!("/api/v1/workspaces/{ws}/audit?action=cli_session.")).await;
    assert_eq!(audit.body["events"][0]["action"], "cli_session.reuse_revoked");
}

async fn personal(b: &mut Browser) -> String {
    let me = b.get("/api/v1/me").await;
    me.body["workspaces"].as_array().unwrap().iter().find(|w| w["personal"] == true).unwrap()["slug"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_have_exactly_one_winner() {
    let api = api().await;
    let mut alice = signed_in_user(&api, "race@example.com").await;
    let pair = login(&api, &mut alice).await;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let (mut a, mut b) = (cli(&api), cli(&api));
    let (ra, rb) = tokio::join!(
        a.post("/api/v1/token/refresh", body.clone()),
        b.post("/api/v1/token/refresh", body.clone())
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort();
    // The loser gets a clear conflict, not a revocation: it re-reads what the winner stored.
    assert_eq!(statuses, [200, 409]);
    let (winner, loser) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
    assert!(loser.body["message"].as_str().unwrap().contains("re-read"));
    let mut c = cli(&api);
    c.bearer = Some(winner.body["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/me").await.status, 200);
}

#[tokio::test]
async fn revoking_a_cli_session_in_the_web_ui_or_logging_out_cuts_access_at_once() {
    let api = api().await;
    let mut alice = signed_in_user(&api, "cut@example.com").await;
    let pair = login(&api, &mut alice).await;
    let mut c = cli(&api);
    c.bearer = Some(pair["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/me").await.status, 200);
    let id = alice.get("/api/v1/me/cli-sessions").await.body[0]["id"].as_str().unwrap().to_string();
    let r = alice.post_form(&format!("/account/cli-sessions/{id}/revoke"), &[]).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(c.get("/api/v1/me").await.status, 401);
    c.bearer = None;
    assert_eq!(
        c.post("/api/v1/token/refresh", json!({"refresh_token": pair["refresh_token"]}))
            .await
            .status,
        401
    );

    // Logout from the CLI revokes server side too.
    let pair = login(&api, &mut alice).await;
    let r = c.post("/api/v1/token/revoke", json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(r.status, 204);
    c.bearer = Some(pair["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/me").await.status, 401);
    let ws = personal(&mut alice).await;
    let audit = alice.get(&format!("/api/v1/workspaces/{ws}/audit")).await;
    let actions: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"device.approve")
            && actions.contains(&"cli_session.revoke")
            && actions.contains(&"auth.cli_logout"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn denied_expired_and_wrong_codes_are_refused_and_guessing_is_rate_limited() {
    let api = api().await;
    let mut alice = signed_in_user(&api, "neg@example.com").await;
    let mut c = cli(&api);

    let code = c.post("/api/v1/device/code", json!({"client_name": "flare"})).await;
    let user_code = code.body["user_code"].as_str().unwrap().to_string();
    assert_eq!(alice.post_form("/device/deny", &[("code", &user_code)]).await.status, 200);
    let (status, err) = poll(&mut c, code.body["device_code"].as_str().unwrap()).await;
    assert_eq!((status, err["error"].as_str().unwrap()), (400, "access_denied"));

    let code = c.post("/api/v1/device/code", json!({"client_name": "flare"})).await;
    sqlx::query("UPDATE device_authorizations SET expires_at = 1 WHERE status = 'pending'")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let (status, err) = poll(&mut c, code.body["device_code"].as_str().unwrap()).await;
    assert_eq!((status, err["error"].as_str().unwrap()), (400, "expired_token"));
    let user_code = code.body["user_code"].as_str().unwrap();
    assert_eq!(
        alice.get(&format!("/device?code={user_code}")).await.status,
        400,
        "an expired code cannot be approved"
    );

    let (status, err) = poll(&mut c, "bfd_made_up").await;
    assert_eq!((status, err["error"].as_str().unwrap()), (400, "invalid_grant"));
    let bad = c.post("/api/v1/device/code", json!({"client_name": ""})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["details"]["field"], "client_name");

    // Wrong codes: an error naming the field, then a limit.
    let wrong = alice.get("/device?code=BCDF-GHJK").await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.as_str().unwrap().contains("no pending sign-in has this code"));
    for _ in 0..9 {
        alice.get("/device?code=BCDF-GHJK").await;
    }
    assert_eq!(alice.get("/device?code=BCDF-GHJK").await.status, 429);
    // Someone else guessing does not lock out another person.
    let mut bob = signed_in_user(&api, "bob-dev@example.com").await;
    let fresh = c.post("/api/v1/device/code", json!({"client_name": "flare"})).await;
    let page =
        bob.get(&format!("/device?code={}", fresh.body["user_code"].as_str().unwrap())).await;
    assert_eq!(page.status, 200);
}
