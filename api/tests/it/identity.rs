//! Passkey ceremonies, browser sessions, recovery, tokens, CSRF: with a software authenticator
//! against the real API and store.

use serde_json::json;

use crate::browserish::Api;

async fn audit_actions(api: &Api, email: &str) -> Vec<String> {
    let email = domain::ids::Email::parse(email).unwrap();
    let user = api.state.store.user_by_email(&email).await.unwrap().unwrap();
    let ws = api.state.store.workspaces_for_user(&user.id).await.unwrap();
    let personal = ws.iter().find(|w| w.workspace.personal).unwrap();
    let mut entries = api.state.store.list_audit(&personal.workspace.id, 200, None).await.unwrap();
    entries.reverse();
    entries.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn a_person_signs_up_signs_out_and_signs_in_again_with_the_same_passkey() {
    let api = Api::start().await;
    let mut b = api.browser();
    let codes = b.sign_up("ada@example.com", "Ada").await;
    assert_eq!(codes.len(), 10);
    let me = b.get("/api/v1/me").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["user"]["email"], "ada@example.com");
    assert_eq!(me.body["workspaces"][0]["role"], "owner");

    b.load_csrf(&api).await;
    let out = b.post("/api/v1/auth/signout", json!({})).await;
    assert_eq!(out.status, 204);
    let old_cookie = out.set_cookie.clone();
    assert!(old_cookie.unwrap().ends_with('='), "sign-out clears the cookie");
    assert_eq!(b.get("/api/v1/me").await.status, 401);

    let r = b.sign_in("ada@example.com").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(b.get("/api/v1/me").await.status, 200);

    assert_eq!(
        audit_actions(&api, "ada@example.com").await,
        ["auth.signup", "auth.signin", "auth.signout", "auth.signin"]
    );
}

#[tokio::test]
async fn every_sign_in_issues_a_new_session_token() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("t@example.com", "T").await;
    let first = b.cookie.clone().unwrap();
    b.sign_in("t@example.com").await;
    let second = b.cookie.clone().unwrap();
    assert_ne!(first, second);
    assert!(first.starts_with("bf_session=bfs_"));
}

#[tokio::test]
async fn a_replayed_assertion_and_a_reused_challenge_are_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("r@example.com", "R").await;
    let (id, options) = b.sign_in_start("r@example.com").await;
    let cred = b.assert(&options);
    let body = json!({"ceremony_id": id, "credential": cred});
    assert_eq!(b.post("/api/v1/auth/signin/finish", body.clone()).await.status, 200);
    // Same ceremony again: its state was deleted on first use.
    let again = b.post("/api/v1/auth/signin/finish", body).await;
    assert_eq!(again.status, 401, "{:?}", again.body);
    // The old assertion against a new ceremony: the challenge differs.
    let (id2, _) = b.sign_in_start("r@example.com").await;
    let replay =
        b.post("/api/v1/auth/signin/finish", json!({"ceremony_id": id2, "credential": cred})).await;
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    assert!(audit_actions(&api, "r@example.com").await.contains(&"auth.signin_failed".to_string()));
}

#[tokio::test]
async fn an_assertion_for_another_origin_is_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("o@example.com", "O").await;
    let (id, options) = b.sign_in_start("o@example.com").await;
    let rcr: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(options).unwrap();
    // `localhost` on another port is another origin.
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    let other = webauthn_rs::prelude::Url::parse("http://localhost:1").unwrap();
    let cred = serde_json::to_value(b.passkey.do_authentication(other, rcr).unwrap()).unwrap();
    let r =
        b.post("/api/v1/auth/signin/finish", json!({"ceremony_id": id, "credential": cred})).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn an_assertion_without_user_verification_is_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("uv@example.com", "UV").await;
    let (id, mut options) = b.sign_in_start("uv@example.com").await;
    // A client that ignores the server's "required" and signs without verifying the user.
    options["publicKey"]["userVerification"] = json!("discouraged");
    let cred = b.assert(&options);
    let r =
        b.post("/api/v1/auth/signin/finish", json!({"ceremony_id": id, "credential": cred})).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[tokio::test]
async fn a_bogus_signature_is_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("sig@example.com", "Sig").await;
    let (id, options) = b.sign_in_start("sig@example.com").await;
    let mut cred = b.assert(&options);
    let sig = cred["response"]["signature"].as_str().unwrap().to_string();
    let flipped: String = sig.chars().rev().collect();
    cred["response"]["signature"] = json!(flipped);
    let r =
        b.post("/api/v1/auth/signin/finish", json!({"ceremony_id": id, "credential": cred})).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[tokio::test]
async fn a_sign_counter_that_goes_backwards_is_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("c@example.com", "C").await;
    // The server has seen a higher counter than the authenticator will send (a clone).
    sqlx::query("UPDATE passkeys SET sign_count = 1000")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let r = b.sign_in("c@example.com").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("counter"));
}

#[tokio::test]
async fn an_expired_ceremony_cannot_be_finished() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("e@example.com", "E").await;
    let (id, options) = b.sign_in_start("e@example.com").await;
    sqlx::query("UPDATE webauthn_ceremonies SET expires_at = 0")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let cred = b.assert(&options);
    let r =
        b.post("/api/v1/auth/signin/finish", json!({"ceremony_id": id, "credential": cred})).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_forces_adding_a_passkey() {
    let api = Api::start().await;
    let mut b = api.browser();
    let codes = b.sign_up("rec@example.com", "Rec").await;
    b.cookie = None;
    let r = b
        .post(
            "/api/v1/auth/recover",
            json!({"email": "rec@example.com", "code": codes[3].to_lowercase()}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let me = b.get("/api/v1/me").await;
    assert_eq!(me.body["must_add_passkey"], true);
    // Anything else waits until a passkey is added.
    assert_eq!(b.get("/api/v1/me/tokens").await.status, 403);

    b.load_csrf(&api).await;
    b.passkey = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true);
    let start = b.post("/api/v1/me/passkeys/start", json!({"name": "New laptop"})).await;
    assert_eq!(start.status, 200, "{:?}", start.body);
    let cred = b.register(&start.body["options"]);
    let fin = b
        .post(
            "/api/v1/me/passkeys/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": cred}),
        )
        .await;
    assert_eq!(fin.status, 200, "{:?}", fin.body);
    assert_eq!(b.get("/api/v1/me/tokens").await.status, 200);

    // The same code again is refused.
    let mut other = api.browser();
    let again = other
        .post("/api/v1/auth/recover", json!({"email": "rec@example.com", "code": codes[3]}))
        .await;
    assert_eq!(again.status, 401);
    let actions = audit_actions(&api, "rec@example.com").await;
    assert!(
        actions.contains(&"auth.recover".to_string())
            && actions.contains(&"auth.recover_failed".to_string())
    );
}

#[tokio::test]
async fn regenerating_recovery_codes_invalidates_the_old_set() {
    let api = Api::start().await;
    let mut b = api.browser();
    let old = b.sign_up("rg@example.com", "Rg").await;
    b.load_csrf(&api).await;
    let new = b.post("/api/v1/me/recovery-codes", json!({})).await;
    assert_eq!(new.status, 200);
    let mut anon = api.browser();
    assert_eq!(
        anon.post("/api/v1/auth/recover", json!({"email": "rg@example.com", "code": old[0]}))
            .await
            .status,
        401
    );
    let code = new.body["codes"][0].as_str().unwrap();
    assert_eq!(
        anon.post("/api/v1/auth/recover", json!({"email": "rg@example.com", "code": code}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn revoking_a_session_locks_it_out_on_the_very_next_request() {
    let api = Api::start().await;
    let mut laptop = api.browser();
    laptop.sign_up("s@example.com", "S").await;
    let mut phone = api.browser();
    phone.passkey = std::mem::replace(
        &mut laptop.passkey,
        webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true),
    );
    assert_eq!(phone.sign_in("s@example.com").await.status, 200);
    assert_eq!(phone.get("/api/v1/me").await.status, 200);

    laptop.load_csrf(&api).await;
    let sessions = laptop.get("/api/v1/me/sessions").await;
    let list = sessions.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let other = list.iter().find(|s| s["current"] == false).unwrap();
    let r = laptop
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/sessions/{}", other["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(phone.get("/api/v1/me").await.status, 401);
    assert_eq!(laptop.get("/api/v1/me").await.status, 200);
    assert!(audit_actions(&api, "s@example.com").await.contains(&"session.revoke".to_string()));
}

#[tokio::test]
async fn api_tokens_work_as_bearer_until_revoked_or_expired_and_are_shown_once() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("tok@example.com", "Tok").await;
    b.load_csrf(&api).await;
    let created = b.post("/api/v1/me/tokens", json!({"name": "ci", "expires_in_days": 7})).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("bfp_"));
    let listed = b.get("/api/v1/me/tokens").await;
    assert!(!listed.body.to_string().contains(&secret), "the list never shows the secret");

    let mut cli = api.browser();
    cli.origin = None;
    cli.bearer = Some(secret.clone());
    assert_eq!(cli.get("/api/v1/me").await.status, 200);
    // Bearer requests carry no ambient credential: no CSRF token or Origin needed.
    assert_eq!(cli.post("/api/v1/me/recovery-codes", json!({})).await.status, 200);

    let id = created.body["token"]["id"].as_str().unwrap();
    assert_eq!(
        b.send(reqwest::Method::DELETE, &format!("/api/v1/me/tokens/{id}"), None).await.status,
        204
    );
    assert_eq!(cli.get("/api/v1/me").await.status, 401);

    let created = b.post("/api/v1/me/tokens", json!({"name": "short"})).await;
    sqlx::query("UPDATE api_tokens SET expires_at = 1")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    cli.bearer = Some(created.body["secret"].as_str().unwrap().to_string());
    assert_eq!(cli.get("/api/v1/me").await.status, 401);

    let bad = b.post("/api/v1/me/tokens", json!({"name": "x", "expires_in_days": 999})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["message"], "expires_in_days: must be between 1 and 366");
    assert_eq!(bad.body["details"]["field"], "expires_in_days");
}

#[tokio::test]
async fn ssh_keys_are_added_listed_and_removed_through_the_account_page_forms() {
    use crate::shell::submit;
    // Throwaway keys: ssh-keygen -t ed25519, and -t rsa -b 1024 (too short).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl someone@laptop";
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCZP/bQbczbiyEfhhULAI86jQW1CGau4VdkrcIRiz/I68C3NKXDSuUsYRhwMPT+yUsoeN6BvNrS8kiCWhKUuwyMHamimHc7A3xmyD616UiS1aynQQGPdNh8tXkGhdsyTE1hpFgw+HtoHoV3EoUQJgpRP7aUnWklOwNyJigYkrbraw== old@laptop";
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("keys@example.com", "Keys").await;
    b.load_csrf(&api).await;
    let page = |r: crate::browserish::Reply| r.body.as_str().unwrap().to_string();
    assert!(page(b.get("/account").await).contains("You have no SSH key."));

    // Without the CSRF token nothing happens.
    let fields = [("name", "Laptop <1>"), ("public_key", ED25519)];
    let (status, ..) = submit(&b, "/account/ssh-keys", &fields, false).await;
    assert_eq!(status, 403);

    // Added: back to the section with a notice, and listed there and by the API.
    let (status, location, flash, _) = submit(&b, "/account/ssh-keys", &fields, true).await;
    assert_eq!((status, location.as_deref()), (303, Some("/account#ssh-keys")));
    assert_eq!(flash.as_deref(), Some("ok:SSH key “Laptop <1>” added."));
    let keys = b.get("/api/v1/me/ssh-keys").await.body;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let id = keys[0]["id"].as_str().unwrap().to_string();
    let fingerprint = keys[0]["fingerprint"].as_str().unwrap().to_string();
    let html = page(b.get("/account").await);
    assert!(html.contains("Laptop &lt;1&gt;"), "{html}");
    assert!(html.contains("<code>ssh-ed25519</code>"));
    assert!(html.contains(&format!("<code>{fingerprint}</code>")));
    assert!(html.contains(&format!(r#"action="/account/ssh-keys/{id}/delete""#)));
    assert!(!html.contains("You have no SSH key."));

    // The same key again (under another name) is the same entry, not a second one.
    let again = [("name", "Other"), ("public_key", ED25519)];
    let (status, _, flash, _) = submit(&b, "/account/ssh-keys", &again, true).await;
    assert_eq!(status, 303);
    assert_eq!(flash.as_deref(), Some("ok:This key is already registered, as “Laptop <1>”."));
    // The JSON API shares the logic: 200 with the existing entry, and the same errors.
    let r = b.post("/api/v1/me/ssh-keys", json!({"name": "Other", "public_key": ED25519})).await;
    assert_eq!((r.status.as_u16(), &r.body["id"]), (200, &json!(id)));
    let r = b.post("/api/v1/me/ssh-keys", json!({"name": "Old", "public_key": RSA_1024})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["details"]["field"], "public_key");

    // Refused keys and names: back with the error naming the field; nothing added.
    for (fields, error) in [
        (
            [("name", "Old"), ("public_key", RSA_1024)],
            "err:public_key: RSA keys must have at least 2048 bits (this one has 1024)",
        ),
        (
            [("name", "Old"), ("public_key", "not a key")],
            "err:public_key: not an OpenSSH public key",
        ),
        ([("name", " "), ("public_key", ED25519)], "err:name: must be 1 to 64 characters"),
    ] {
        let (status, location, flash, _) = submit(&b, "/account/ssh-keys", &fields, true).await;
        assert_eq!((status, location.as_deref()), (303, Some("/account#ssh-keys")));
        let flash = flash.unwrap();
        assert!(flash.starts_with(error), "{flash}");
    }
    assert_eq!(b.get("/api/v1/me/ssh-keys").await.body.as_array().unwrap().len(), 1);

    // Someone else cannot remove it, nor can a form without the token.
    let mut other = api.browser();
    other.sign_up("other@example.com", "Other").await;
    other.load_csrf(&api).await;
    let remove = format!("/account/ssh-keys/{id}/delete");
    assert_eq!(submit(&other, &remove, &[], true).await.0, 404);
    assert_eq!(submit(&b, &remove, &[], false).await.0, 403);
    assert_eq!(b.get("/api/v1/me/ssh-keys").await.body.as_array().unwrap().len(), 1);

    // Removed: a notice, gone from the page and the API; removing again is a 404.
    let (status, location, flash, _) = submit(&b, &remove, &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some("/account#ssh-keys")));
    assert_eq!(flash.as_deref(), Some("ok:SSH key removed."));
    assert!(page(b.get("/account").await).contains("You have no SSH key."));
    assert_eq!(b.get("/api/v1/me/ssh-keys").await.body, json!([]));
    assert_eq!(submit(&b, &remove, &[], true).await.0, 404);
    assert_eq!(submit(&b, "/account/ssh-keys/not-an-id/delete", &[], true).await.0, 404);

    // One add and one remove in the account's audit log, naming the key.
    let email = domain::ids::Email::parse("keys@example.com").unwrap();
    let user = api.state.store.user_by_email(&email).await.unwrap().unwrap();
    let ws = api.state.store.workspaces_for_user(&user.id).await.unwrap();
    let personal = ws.iter().find(|w| w.workspace.personal).unwrap();
    let mut events = api.state.store.list_audit(&personal.workspace.id, 200, None).await.unwrap();
    events.reverse();
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| e.action.starts_with("ssh_key."))
        .map(|e| (e.action, e.target_id, e.detail))
        .collect();
    let detail = json!({ "name": "Laptop <1>", "fingerprint": fingerprint });
    assert_eq!(
        events,
        [
            ("ssh_key.add".to_string(), Some(id.clone()), detail.clone()),
            ("ssh_key.remove".to_string(), Some(id.clone()), detail),
        ]
    );
}

#[tokio::test]
async fn writes_without_the_csrf_token_or_from_another_origin_are_refused() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("csrf@example.com", "Csrf").await;
    // No token.
    let r = b.post("/api/v1/me/tokens", json!({"name": "x"})).await;
    assert_eq!(r.status, 403);
    assert!(r.body["message"].as_str().unwrap().contains("CSRF"));
    // Wrong token.
    b.csrf = Some("not-the-token".into());
    assert_eq!(b.post("/api/v1/me/tokens", json!({"name": "x"})).await.status, 403);
    // Right token, other origin.
    b.load_csrf(&api).await;
    b.origin = Some("http://evil.example".into());
    let r = b.post("/api/v1/me/tokens", json!({"name": "x"})).await;
    assert_eq!(r.status, 403);
    assert!(r.body["message"].as_str().unwrap().contains("cross-origin"));
    // No Origin at all is refused too.
    b.origin = None;
    assert_eq!(b.post("/api/v1/me/tokens", json!({"name": "x"})).await.status, 403);
    // Nothing was created.
    b.origin = Some(api.base.clone());
    assert_eq!(b.get("/api/v1/me/tokens").await.body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_last_passkey_cannot_be_removed_without_a_recovery_code() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("last@example.com", "Last").await;
    b.load_csrf(&api).await;
    let keys = b.get("/api/v1/me/passkeys").await;
    let id = keys.body[0]["id"].as_str().unwrap().to_string();
    sqlx::query("UPDATE recovery_codes SET used_at = 1")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let r = b.send(reqwest::Method::DELETE, &format!("/api/v1/me/passkeys/{id}"), None).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    // With recovery codes available it may go.
    b.post("/api/v1/me/recovery-codes", json!({})).await;
    let r = b.send(reqwest::Method::DELETE, &format!("/api/v1/me/passkeys/{id}"), None).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn sign_up_refuses_bad_input_naming_the_field_and_creates_nothing() {
    let api = Api::start().await;
    let mut b = api.browser();
    let r =
        b.post("/api/v1/auth/signup/start", json!({"email": "nope", "display_name": "X"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["details"]["field"], "email");
    let r = b
        .post("/api/v1/auth/signup/start", json!({"email": "a@b.example", "display_name": ""}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["details"]["field"], "display_name");
    assert_eq!(api.state.store.count_users().await.unwrap(), 0);
}

#[tokio::test]
async fn sign_up_and_sign_in_challenges_pass_the_bot_check_of_the_turnstile_stand_in() {
    let stand_in =
        testkit::turnstile::TurnstileStandIn::start("ts-secret", "good-token").await.unwrap();
    let url = stand_in.siteverify_url();
    let api = Api::start_with(|c| {
        c.turnstile.secret = secrecy::SecretString::from("ts-secret".to_string());
        c.turnstile.site_key = "site-key-1".into();
        c.turnstile.siteverify_url = url;
    })
    .await;
    let mut b = api.browser();
    let body = |token: Option<&str>| json!({"email": "bot@example.com", "display_name": "Bot", "bot_check": token});
    let r = b.post("/api/v1/auth/signup/start", body(None)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["details"]["field"], "bot_check");
    let r = b.post("/api/v1/auth/signup/start", body(Some("forged"))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = b.post("/api/v1/auth/signup/start", body(Some("good-token"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cred = b.register(&r.body["options"]);
    let fin = b
        .post(
            "/api/v1/auth/signup/finish",
            json!({"ceremony_id": r.body["ceremony_id"], "credential": cred}),
        )
        .await;
    assert_eq!(fin.status, 200);

    let r = b.post("/api/v1/auth/signin/start", json!({"email": "bot@example.com"})).await;
    assert_eq!(r.status, 400);
    let r = b
        .post(
            "/api/v1/auth/signin/start",
            json!({"email": "bot@example.com", "bot_check": "good-token"}),
        )
        .await;
    assert_eq!(r.status, 200);
    // The stand-in saw the client's address; the page carries the site key.
    assert!(stand_in.received().iter().all(|rcv| rcv.remoteip.as_deref() == Some("127.0.0.1")));
    let page = reqwest::get(format!("{}/signup", api.base)).await.unwrap().text().await.unwrap();
    assert!(page.contains("site-key-1"));

    // Turnstile down: fail closed, and say it is temporary.
    stand_in.stop().await;
    let r = b
        .post(
            "/api/v1/auth/signin/start",
            json!({"email": "bot@example.com", "bot_check": "good-token"}),
        )
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
}
