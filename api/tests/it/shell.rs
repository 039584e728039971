//! The workspace views behind the web shell, through the JSON API: real rows in, the same sdk
//! types out.

use burstflare_api::s3::EmbeddedS3;
use domain::ids::{Email, Slug};
use serde_json::json;

use crate::browserish::{Api, Browser};

/// A template with a promoted version and one session in `state`, inserted as the build and
/// session workflows will (those arrive with their issues).
pub async fn seed_session(
    api: &Api,
    workspace_slug: &str,
    owner_email: &str,
    state: &str,
) -> String {
    let store = &api.state.store;
    let ws = store
        .workspace_by_slug(&domain::ids::Slug::parse(workspace_slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    let owner = store
        .user_by_email(&domain::ids::Email::parse(owner_email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let (t, v, s) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let pool = store.pool();
    sqlx::query("INSERT INTO templates (id, workspace_id, name, description, created_at, updated_at) VALUES ($1, $2, 'rust-dev', 'Rust toolchain', 1, 1)")
        .bind(&t).bind(ws.id.as_str()).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO template_versions (id, template_id, version, manifest_json, status, created_at, updated_at) VALUES ($1, $2, 'v1', '{}', 'built', 1, 1)")
        .bind(&v).bind(&t).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO runtime_catalog (template_id, active_version_id, image_ref, updated_at) VALUES ($1, $2, 'burstflare/t:v1', 1)")
        .bind(&t).bind(&v).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO sessions (id, workspace_id, owner_user_id, template_id, template_version_id, name, state, workflow_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'main', $6, $7, 2, 2)")
        .bind(&s).bind(ws.id.as_str()).bind(owner.id.as_str()).bind(&t).bind(&v).bind(state).bind(format!("session-{s}"))
        .execute(pool).await.unwrap();
    sqlx::query("INSERT INTO usage_events (id, workspace_id, kind, quantity, at, idempotency_key) VALUES ($1, $2, 'runtime_minutes', 42, $3, $4)")
        .bind(uuid::Uuid::now_v7().to_string()).bind(ws.id.as_str()).bind(domain::store::now_ms()).bind(format!("k-{s}"))
        .execute(pool).await.unwrap();
    s
}

#[tokio::test]
async fn the_dashboard_sessions_templates_and_usage_show_the_workspace_rows() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("dash@example.com", "Dash").await;
    b.load_csrf(&api).await;
    b.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let empty = b.get("/api/v1/workspaces/team/dashboard").await;
    assert_eq!(empty.status, 200, "{:?}", empty.body);
    assert_eq!(empty.body["active_sessions"], json!([]));
    assert_eq!(empty.body["usage"]["runtime_minutes"], 0);

    let id = seed_session(&api, "team", "dash@example.com", "running").await;
    let d = b.get("/api/v1/workspaces/team/dashboard").await;
    assert_eq!(d.body["active_sessions"][0]["id"], id.as_str());
    assert_eq!(d.body["active_sessions"][0]["state"], "running");
    assert_eq!(d.body["active_sessions"][0]["template"], "rust-dev");
    assert_eq!(d.body["usage"]["runtime_minutes"], 42);
    assert_eq!(d.body["usage"]["active_sessions"], 1);
    assert!(
        d.body["recent_activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "workspace.create")
    );
    let t = b.get("/api/v1/workspaces/team/templates").await;
    assert_eq!(t.body[0]["active_version"], "v1");

    // A stopped session leaves the default list and shows with ?ended=true.
    sqlx::query("UPDATE sessions SET state = 'stopped'")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    assert_eq!(b.get("/api/v1/workspaces/team/sessions").await.body, json!([]));
    assert_eq!(
        b.get("/api/v1/workspaces/team/sessions?ended=true").await.body[0]["state"],
        "stopped"
    );

    // The sessions page renders the same rows.
    let html = b.get("/w/team/sessions?show_ended=true").await.body.as_str().unwrap().to_string();
    assert!(html.contains(&id) && html.contains("state-stopped"), "{html}");
}

#[tokio::test]
async fn renaming_a_workspace_needs_manage_workspace_names_the_field_and_is_audited() {
    let api = Api::start().await;
    let mut b = api.browser();
    b.sign_up("ren@example.com", "Ren").await;
    b.load_csrf(&api).await;
    b.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let bad =
        b.send(reqwest::Method::PATCH, "/api/v1/workspaces/team", Some(json!({"name": ""}))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["details"]["field"], "name");
    let ok = b
        .send(reqwest::Method::PATCH, "/api/v1/workspaces/team", Some(json!({"name": "The Team"})))
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["name"], "The Team");
    let audit = b.get("/api/v1/workspaces/team/audit?action=workspace.rename").await;
    assert_eq!(audit.body["events"][0]["detail"], json!({"from": "Team", "to": "The Team"}));
}

#[tokio::test]
async fn every_page_is_well_formed_html() {
    use burstflare_api::routes::Kind;
    let (api, _s3) = api_with_storage().await;
    let mut b = api.browser();
    b.sign_up("html@example.com", "Html").await;
    b.load_csrf(&api).await;
    b.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let inv = b
        .post(
            "/api/v1/workspaces/team/invites",
            json!({"email": "x@example.com", "role": "viewer"}),
        )
        .await;
    let token = inv.body["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let session = seed_session(&api, "team", "html@example.com", "running").await;

    let seeded = seed_template(&api, "team", "html@example.com", "web-app").await;
    // The account page with a row in its SSH keys table.
    let key = json!({
        "name": "Laptop <1>",
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    });
    assert_eq!(b.post("/api/v1/me/ssh-keys", key).await.status, 201);

    let mut checked = 0;
    for def in burstflare_api::http::route_table() {
        if def.kind != Kind::Page
            || def.method != axum::http::Method::GET
            || def.path.starts_with("/assets/")
        {
            continue;
        }
        let id = if def.path.contains("/sessions/") { &session } else { &seeded.running };
        let path = def
            .path
            .replace("{ws}", "team")
            .replace("{token}", &token)
            .replace("{name}", &seeded.name)
            .replace("{id}", id);
        let path = if path == "/switch" { "/switch?ws=team".to_string() } else { path };
        let r = b.get(&path).await;
        let html = match r.status.as_u16() {
            200 => r.body.as_str().unwrap().to_string(),
            // Redirects (the home page of a signed-in person, the switcher) lead to pages
            // checked in their own right.
            303 | 307 => continue,
            other => panic!("GET {path}: {other}"),
        };
        let doc = scraper::Html::parse_document(&html);
        assert!(doc.errors.is_empty(), "GET {path} is not well-formed HTML: {:?}", doc.errors);
        assert!(html.starts_with("<!DOCTYPE html>"), "GET {path}");
        checked += 1;
    }
    // The anonymous pages too.
    let mut anon = api.browser();
    for path in ["/", "/signin", "/signup", "/recover"] {
        let r = anon.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        let doc = scraper::Html::parse_document(r.body.as_str().unwrap());
        assert!(doc.errors.is_empty(), "GET {path} is not well-formed HTML: {:?}", doc.errors);
        checked += 1;
    }
    // The other build pages (finished, failed) too.
    for id in [&seeded.succeeded, &seeded.failed] {
        let r = b.get(&format!("/w/team/builds/{id}")).await;
        assert_eq!(r.status, 200, "build {id}");
        let doc = scraper::Html::parse_document(r.body.as_str().unwrap());
        assert!(doc.errors.is_empty(), "build {id} is not well-formed HTML: {:?}", doc.errors);
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} pages checked");
    // The checker itself notices broken markup.
    let broken =
        scraper::Html::parse_document("<!DOCTYPE html><html><body><p></span></body></html>");
    assert!(!broken.errors.is_empty());
}

// ---- templates, versions and builds ----

/// The value of a secret variable in the seeded manifest: no page may show it.
pub const SECRET_VALUE: &str = "s3cr3t-seeded-value";

/// The API with object storage (an embedded S3 server on a free port), so build logs can be
/// written and read. Keep the server alive as long as the API.
pub async fn api_with_storage() -> (Api, (EmbeddedS3, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let s3 =
        EmbeddedS3::start(&dir.path().join("s3"), "test-access", "test-secret-key").await.unwrap();
    let endpoint = url::Url::parse(&s3.endpoint()).unwrap();
    let api = Api::start_with(|c| {
        c.storage.endpoint = endpoint;
        c.storage.access_key_id = "test-access".into();
        c.storage.secret_access_key = secrecy::SecretString::from("test-secret-key".to_string());
        c.storage.force_path_style = true;
    })
    .await;
    api.state.blob.ensure_bucket().await.unwrap();
    (api, (s3, dir))
}

/// The ids of a seeded template's builds.
pub struct SeededTemplate {
    pub name: String,
    /// v1, attempt 1: succeeded with an image (v1 is built).
    pub succeeded: String,
    /// v2, attempt 1: failed with an error.
    pub failed: String,
    /// v3, attempt 1: building, with two log chunks written.
    pub running: String,
}

fn seeded_manifest(name: &str) -> String {
    let m = sdk::bundle::Manifest {
        schema: sdk::bundle::SCHEMA_VERSION,
        name: name.into(),
        description: "A web app".into(),
        base_image: "ubuntu:24.04".into(),
        persisted_paths: vec!["/home/dev".into()],
        env: vec![
            sdk::bundle::EnvVar { name: "RUST_LOG".into(), value: "debug".into(), secret: false },
            sdk::bundle::EnvVar {
                name: "API_KEY".into(),
                value: SECRET_VALUE.into(),
                secret: true,
            },
        ],
        ports: vec![sdk::bundle::Port { port: 8080, name: "web".into(), protocol: "http".into() }],
        resources: sdk::bundle::Resources::default(),
        idle_timeout_minutes: 30,
        labels: [("team".to_string(), "platform".to_string())].into_iter().collect(),
        hooks: Default::default(),
        user: None,
        max_snapshot_bytes: None,
    };
    serde_json::to_string(&m).unwrap()
}

/// A template `name` in `workspace_slug` with three versions and one build each, inserted
/// through the store as the upload and the build workflow would.
pub async fn seed_template(
    api: &Api,
    workspace_slug: &str,
    owner_email: &str,
    name: &str,
) -> SeededTemplate {
    let store = &api.state.store;
    let ws = store.workspace_by_slug(&Slug::parse(workspace_slug).unwrap()).await.unwrap().unwrap();
    let owner = store.user_by_email(&Email::parse(owner_email).unwrap()).await.unwrap().unwrap();
    let t = store.create_template(&ws.id, name, "A web app", &owner.id).await.unwrap();
    let manifest = seeded_manifest(name);
    let mut builds = Vec::new();
    for outcome in ["succeeded", "failed", "building"] {
        let tid = t.id.clone();
        let v = store
            .create_draft_version(
                &t.id,
                1536,
                &"ab".repeat(32),
                domain::store::now_ms() + 60_000,
                &owner.id,
                |id| format!("bundles/{tid}/{id}.tar.zst"),
            )
            .await
            .unwrap();
        let v = store.accept_upload(&v.id, &manifest).await.unwrap();
        let b = store.create_build(&v.id, Some(&owner.id)).await.unwrap();
        store.set_build_status(&b.id, "building", None, None).await.unwrap();
        let image = (
            "registry.local/burstflare/t:v1",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        );
        match outcome {
            "succeeded" => {
                store.set_build_status(&b.id, "succeeded", None, Some(image)).await.unwrap();
                store.set_version_status(&v.id, "built", Some(image)).await.unwrap();
            }
            "failed" => {
                store
                    .set_build_status(
                        &b.id,
                        "failed",
                        Some("step 3/7: RUN make exited with 2 <oops>"),
                        None,
                    )
                    .await
                    .unwrap();
                store.set_version_status(&v.id, "failed", None).await.unwrap();
            }
            _ => {
                store.set_version_status(&v.id, "building", None).await.unwrap();
            }
        }
        let id = b.id.to_string();
        for (seq, text) in [(0, "step 1/7: FROM ubuntu:24.04\n"), (1, "step 2/7: RUN <apt-get>\n")]
        {
            api.state
                .blob
                .put(
                    &activities::build::log_chunk_key(&id, seq),
                    text.as_bytes().to_vec(),
                    "text/plain; charset=utf-8",
                )
                .await
                .unwrap();
        }
        builds.push(id);
    }
    let [succeeded, failed, running] = <[String; 3]>::try_from(builds).unwrap();
    SeededTemplate { name: name.into(), succeeded, failed, running }
}

/// Adds a new member with `role` to `slug` (invited by `owner`, accepted through the API).
/// A browser signed up as `email` that joined `slug` with `role` through an invite of `owner`.
pub async fn join_as(
    api: &Api,
    owner: &mut Browser,
    slug: &str,
    email: &str,
    role: &str,
) -> Browser {
    let inv = owner
        .post(&format!("/api/v1/workspaces/{slug}/invites"), json!({"email": email, "role": role}))
        .await;
    assert_eq!(inv.status, 201, "{:?}", inv.body);
    let token = inv.body["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let mut b = api.browser();
    b.sign_up(email, role).await;
    b.load_csrf(api).await;
    let r = b.post("/api/v1/invites/accept", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    b
}

/// A form post as the pages send it (`csrf` field when `with_csrf`); returns the status, the
/// redirect target and the flash message it sets, if any.
pub async fn submit(
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    with_csrf: bool,
) -> (u16, Option<String>, Option<String>, String) {
    let mut pairs: Vec<(String, String)> =
        fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if with_csrf {
        pairs.push(("csrf".into(), b.csrf.clone().unwrap()));
    }
    let resp = b
        .http
        .post(format!("{}{path}", b.base))
        .form(&pairs)
        .header("cookie", b.cookie.clone().unwrap())
        .header("origin", b.origin.clone().unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let flash = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("bf_flash="))
        .map(|v| {
            let raw = v.split(';').next().unwrap();
            url::form_urlencoded::parse(format!("f={raw}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        })
        .next();
    (status, location, flash, resp.text().await.unwrap())
}

fn html_of(r: &crate::browserish::Reply) -> String {
    r.body.as_str().unwrap_or_else(|| panic!("not a page: {:?}", r.body)).to_string()
}

#[tokio::test]
async fn the_template_and_build_pages_show_the_rows_hide_secrets_and_manage_buttons_by_role() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("tpl-owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    let seeded = seed_template(&api, "team", "tpl-owner@example.com", "web-app").await;

    // The catalog links the template and offers the form.
    let list = html_of(&owner.get("/w/team/templates").await);
    assert!(list.contains(r#"<a href="/w/team/templates/web-app">web-app</a>"#), "{list}");
    assert!(list.contains(r#"<form method="post" action="/w/team/templates""#));

    // The template page: manifest without the secret, versions, builds, the archive form.
    let r = owner.get("/w/team/templates/web-app").await;
    assert_eq!(r.status, 200);
    let html = html_of(&r);
    assert!(!html.contains(SECRET_VALUE), "the secret value is on the page");
    for needle in [
        "<code>ubuntu:24.04</code>",
        "<td><code>API_KEY</code></td>",
        ">secret</span>",
        "<td><code>RUST_LOG</code></td><td><code>debug</code></td>",
        "flare template upload web-app . --workspace team",
        r#"<span class="badge vstate vstate-built">built</span>"#,
        r#"<span class="badge vstate vstate-failed">failed</span>"#,
        r#"<span class="badge vstate vstate-building">building</span>"#,
        r#"<td class="nowrap">1.5 KiB</td>"#,
        ">abababababab</code>",
        ">sha256:0123456789ab</code>",
        "of v1, the newest built version",
        r#"action="/w/team/templates/web-app/archive""#,
    ] {
        assert!(html.contains(needle), "{needle} is not on the template page");
    }
    for id in [&seeded.succeeded, &seeded.failed, &seeded.running] {
        assert!(html.contains(&format!(r#"href="/w/team/builds/{id}""#)), "no link to {id}");
    }

    // The build pages: the log from storage (escaped), the error, the right buttons.
    let running = html_of(&owner.get(&format!("/w/team/builds/{}", seeded.running)).await);
    assert!(running.contains("step 1/7: FROM ubuntu:24.04\nstep 2/7: RUN &lt;apt-get&gt;\n"));
    assert!(running.contains(r#"data-next="2" data-done="false""#), "{running}");
    assert!(running.contains(web::BUILD_LOG_JS_PATH));
    assert!(running.contains(&format!(r#"action="/w/team/builds/{}/cancel""#, seeded.running)));
    assert!(running.contains(r#"href="/w/team/templates/web-app""#), "links back");
    let failed = html_of(&owner.get(&format!("/w/team/builds/{}", seeded.failed)).await);
    assert!(failed.contains("step 3/7: RUN make exited with 2 &lt;oops&gt;"));
    assert!(failed.contains(&format!(r#"action="/w/team/builds/{}/retry""#, seeded.failed)));
    assert!(!failed.contains("/cancel\""));
    assert!(failed.contains(r#"data-done="true""#) && !failed.contains(web::BUILD_LOG_JS_PATH));
    let succeeded = html_of(&owner.get(&format!("/w/team/builds/{}", seeded.succeeded)).await);
    assert!(succeeded.contains("<code>registry.local/burstflare/t:v1</code>"));
    assert!(!succeeded.contains("/retry\"") && !succeeded.contains("/cancel\""));

    // The JSON log the script polls answers to the page's cookie.
    let log =
        owner.get(&format!("/api/v1/workspaces/team/builds/{}/log?from=1", seeded.running)).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    assert_eq!(log.body["text"], "step 2/7: RUN <apt-get>\n");
    assert_eq!((log.body["next"].as_u64(), log.body["done"].as_bool()), (Some(2), Some(false)));

    // A viewer sees the same pages without any manage control.
    let mut viewer = join_as(&api, &mut owner, "team", "tpl-viewer@example.com", "viewer").await;
    let list = html_of(&viewer.get("/w/team/templates").await);
    assert!(!list.contains(r#"action="/w/team/templates""#), "a viewer gets no create form");
    let html = html_of(&viewer.get("/w/team/templates/web-app").await);
    assert!(!html.contains("/archive"), "a viewer sees the archive button");
    assert!(!html.contains(SECRET_VALUE));
    for id in [&seeded.running, &seeded.failed] {
        let html = html_of(&viewer.get(&format!("/w/team/builds/{id}")).await);
        assert!(!html.contains("/retry\"") && !html.contains("/cancel\""), "buttons for a viewer");
        assert!(html.contains("step 1/7"));
    }
    let (status, ..) = submit(&viewer, "/w/team/templates/web-app/archive", &[], true).await;
    assert_eq!(status, 403);
    let (status, ..) =
        submit(&viewer, &format!("/w/team/builds/{}/retry", seeded.failed), &[], true).await;
    assert_eq!(status, 403);
    let (status, ..) = submit(&viewer, "/w/team/templates", &[("name", "nope")], true).await;
    assert_eq!(status, 403);

    // Another workspace's template and builds do not exist for its own members.
    let mut other = api.browser();
    other.sign_up("tpl-other@example.com", "Other").await;
    other.load_csrf(&api).await;
    other.post("/api/v1/workspaces", json!({"name": "Other", "slug": "other"})).await;
    for path in [
        "/w/other/templates/web-app".to_string(),
        format!("/w/other/builds/{}", seeded.running),
        "/w/team/templates/web-app".to_string(),
        format!("/w/team/builds/{}", seeded.running),
        "/w/other/builds/not-an-id".to_string(),
    ] {
        let r = other.get(&path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(html_of(&r).contains("This page does not exist."), "{path}");
    }
    let (status, ..) =
        submit(&other, &format!("/w/other/builds/{}/retry", seeded.failed), &[], true).await;
    assert_eq!(status, 404);
    let r = owner.get("/w/team/templates/no-such-template").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn templates_are_created_and_archived_through_the_forms_with_csrf() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("forms@example.com", "Forms").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;

    // Without the CSRF token nothing happens.
    let (status, ..) = submit(&owner, "/w/team/templates", &[("name", "api")], false).await;
    assert_eq!(status, 403);

    // Created: to its page, with a flash.
    let (status, location, flash, _) = submit(
        &owner,
        "/w/team/templates",
        &[("name", "api"), ("description", "The API <dev> box")],
        true,
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/w/team/templates/api"));
    assert!(flash.unwrap().starts_with("ok:Template created."));
    let html = html_of(&owner.get("/w/team/templates/api").await);
    assert!(html.contains("The API &lt;dev&gt; box"));
    assert!(html.contains("No version has built yet."));

    // Refused: the list again, with the values and the error naming the field.
    let (status, _, _, html) =
        submit(&owner, "/w/team/templates", &[("name", "Bad Name"), ("description", "kept")], true)
            .await;
    assert_eq!(status, 400);
    assert!(html.contains(r#"id="new-template-error" role="alert">name"#), "{html}");
    assert!(html.contains(r#"value="Bad Name""#) && html.contains(">kept</textarea>"));
    assert!(html.contains(r#"aria-invalid="true""#));
    let (status, _, _, html) = submit(&owner, "/w/team/templates", &[("name", "api")], true).await;
    assert_eq!(status, 409);
    assert!(html.contains("name: a template named api exists"), "{html}");
    let long = "x".repeat(1001);
    let (status, _, _, html) =
        submit(&owner, "/w/team/templates", &[("name", "other"), ("description", &long)], true)
            .await;
    assert_eq!(status, 400);
    assert!(html.contains("description: is 1001 characters"), "{html}");

    // Archiving needs the token too; then the page says so and offers no button.
    let (status, ..) = submit(&owner, "/w/team/templates/api/archive", &[], false).await;
    assert_eq!(status, 403);
    assert!(html_of(&owner.get("/w/team/templates/api").await).contains("/archive\""));
    let (status, location, flash, _) =
        submit(&owner, "/w/team/templates/api/archive", &[], true).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/w/team/templates/api"));
    assert_eq!(flash.as_deref(), Some("ok:Template archived: new sessions cannot start from it."));
    let html = html_of(&owner.get("/w/team/templates/api").await);
    assert!(html.contains(r#"<span class="badge archived">archived</span>"#));
    assert!(!html.contains("/archive\""));
    let audit = owner.get("/api/v1/workspaces/team/audit?action=template.archived").await;
    assert_eq!(audit.body["events"][0]["detail"]["name"], "api");
    let (status, ..) = submit(&owner, "/w/team/templates/nothing/archive", &[], true).await;
    assert_eq!(status, 404);

    // Retrying a build that succeeded is refused with a flash, back on its page.
    let seeded = seed_template(&api, "team", "forms@example.com", "web-app").await;
    let back = format!("/w/team/builds/{}", seeded.succeeded);
    let (status, location, flash, _) = submit(&owner, &format!("{back}/retry"), &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some(back.as_str())));
    assert!(flash.unwrap().contains("there is nothing to retry"));
    let (status, ..) = submit(&owner, &format!("{back}/cancel"), &[], false).await;
    assert_eq!(status, 403);
}

// ---- sessions: the list, the session page and their forms ----

/// A session `name` of `template` (which has a built version) owned by `owner_email`, created
/// and moved to `state` through the store as the API and the session workflow do, with three
/// events. Returns its id.
pub async fn seed_store_session(
    api: &Api,
    workspace_slug: &str,
    owner_email: &str,
    template: &str,
    name: &str,
    state: &str,
) -> String {
    let store = &api.state.store;
    let ws = store.workspace_by_slug(&Slug::parse(workspace_slug).unwrap()).await.unwrap().unwrap();
    let owner = store.user_by_email(&Email::parse(owner_email).unwrap()).await.unwrap().unwrap();
    let t = store.template_by_name(&ws.id, template).await.unwrap().unwrap();
    let versions = store.versions_of(&t.id).await.unwrap();
    let v = versions.iter().find(|v| v.status == "built").unwrap();
    let (s, created) = store
        .create_session(&domain::store::NewSession {
            workspace: &ws.id,
            owner: &owner.id,
            template: &t.id,
            version: &v.id,
            name,
            image_ref: "registry.local/burstflare/t:v1",
            idle_timeout_minutes: 30,
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert!(created);
    let at = domain::store::now_ms();
    let error = (state == "failed").then_some(Some("the container exited with 137 <oom>"));
    let write = domain::store::SessionWrite {
        node_id: Some("node-a"),
        generation: Some(1),
        error,
        ..domain::store::SessionWrite::state(state, at)
    };
    store.write_session_state(&s.id, &write).await.unwrap();
    let last = format!("state.{state}");
    for (seq, kind, detail) in [
        (1, "state.provisioning", serde_json::Value::Null),
        (2, "op.start.accepted", json!({ "by": "<someone>" })),
        (3, last.as_str(), json!({})),
    ] {
        store.append_session_event(&s.id, seq, kind, &detail, at + seq as i64).await.unwrap();
    }
    s.id.to_string()
}

/// The session control forms inside `<main>`, as (action, hidden).
fn session_controls(html: &str) -> Vec<(String, bool)> {
    let doc = scraper::Html::parse_document(html);
    let forms = scraper::Selector::parse("main form[data-session-op]").unwrap();
    doc.select(&forms)
        .map(|f| {
            let action = f.value().attr("action").unwrap().to_string();
            (action, f.value().attr("hidden").is_some())
        })
        .collect()
}

/// The visible control forms' actions of one session (`id`) on a page.
fn shown_for(html: &str, id: &str) -> Vec<String> {
    let prefix = format!("/w/team/sessions/{id}/");
    session_controls(html)
        .into_iter()
        .filter(|(action, hidden)| !hidden && action.starts_with(&prefix))
        .map(|(action, _)| action[prefix.len()..].to_string())
        .collect()
}

fn assert_well_formed(what: &str, html: &str) {
    let doc = scraper::Html::parse_document(html);
    assert!(doc.errors.is_empty(), "{what} is not well-formed HTML: {:?}", doc.errors);
    assert!(html.starts_with("<!DOCTYPE html>"), "{what}");
}

#[tokio::test]
async fn the_session_pages_show_state_events_and_the_controls_each_role_may_use() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("ses-owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    seed_template(&api, "team", "ses-owner@example.com", "web-app").await;
    let mut member = join_as(&api, &mut owner, "team", "ses-member@example.com", "member").await;
    let mut viewer = join_as(&api, &mut owner, "team", "ses-viewer@example.com", "viewer").await;
    let own = "ses-owner@example.com";
    let mine = seed_store_session(&api, "team", own, "web-app", "owner-box", "running").await;
    let by_member = "ses-member@example.com";
    let theirs =
        seed_store_session(&api, "team", by_member, "web-app", "member-box", "sleeping").await;
    let broken = seed_store_session(&api, "team", by_member, "web-app", "broken", "failed").await;
    let gone = seed_store_session(&api, "team", own, "web-app", "gone", "deleted").await;

    // The list, as an owner: every row links to its page; the owner's running session has
    // stop, sleep, restart and delete; other people's sessions stop (when running) and delete.
    let html = html_of(&owner.get("/w/team/sessions?show_ended=true").await);
    assert_well_formed("the sessions page", &html);
    for (id, name) in [(&mine, "owner-box"), (&theirs, "member-box"), (&broken, "broken")] {
        assert!(html.contains(&format!(r#"<a href="/w/team/sessions/{id}">{name}</a>"#)), "{name}");
    }
    assert!(!html.contains(&gone), "deleted sessions are not listed");
    assert_eq!(shown_for(&html, &mine), ["stop", "sleep", "restart", "delete"]);
    assert_eq!(shown_for(&html, &theirs), ["delete"]);
    assert_eq!(shown_for(&html, &broken), ["delete"]);
    assert!(
        html.contains(
            r#"<input type="hidden" name="next" value="/w/team/sessions?show_ended=true">"#
        )
    );
    // The new session form offers the template with a built version, and the version it gets.
    assert!(html.contains(r#"<form method="post" action="/w/team/sessions" class="stack-form">"#));
    assert!(html.contains(r#"<option value="web-app">web-app (v1)</option>"#), "{html}");
    assert!(html.contains(r#"name="idempotency_key""#));

    // As a member: their own sessions only.
    let html = html_of(&member.get("/w/team/sessions?show_ended=true").await);
    assert_eq!(shown_for(&html, &theirs), ["start", "delete"]);
    assert_eq!(shown_for(&html, &broken), ["delete"]);
    assert!(
        !html.contains(&format!("/w/team/sessions/{mine}/")),
        "controls on the owner's session"
    );
    assert!(html.contains(r#"action="/w/team/sessions" class="stack-form""#));

    // As a viewer: the same rows, no form at all.
    let html = html_of(&viewer.get("/w/team/sessions?show_ended=true").await);
    assert_well_formed("the sessions page of a viewer", &html);
    assert!(session_controls(&html).is_empty());
    assert!(html.contains(&format!(r#"href="/w/team/sessions/{mine}""#)));
    assert!(
        !html.contains(r#"<form method="post" action="/w/team/sessions""#)
            && !html.contains("New session")
    );

    // The session page: state, details, events, controls; live until deleted.
    let r = owner.get(&format!("/w/team/sessions/{mine}")).await;
    assert_eq!(r.status, 200);
    let html = html_of(&r);
    assert_well_formed("a session page", &html);
    for needle in [
        "<h1>owner-box</h1>",
        r#"<span class="badge state state-running" data-state="running">running</span>"#,
        r#"<a href="/w/team/templates/web-app">web-app v1</a>"#,
        r#"<dd id="session-node"><code>node-a</code></dd>"#,
        r#"<code class="event-kind">op.start.accepted</code> <span class="session-event-detail">by=&lt;someone&gt;</span>"#,
        &format!(r#"data-session="/api/v1/workspaces/team/sessions/{mine}""#),
        r#"data-after="3" data-done="false""#,
        web::SESSION_JS_PATH,
        r#"<h2 id="session-why-heading">Why</h2>"#,
        &format!("<code>session-{mine}</code>"),
    ] {
        assert!(html.contains(needle), "{needle} is not on the session page");
    }
    assert_eq!(shown_for(&html, &mine), ["stop", "sleep", "restart", "delete"]);
    assert!(html.contains(&format!(
        r#"<input type="hidden" name="next" value="/w/team/sessions/{mine}">"#
    )));
    // The JSON the script polls answers to the page's cookie.
    let events =
        owner.get(&format!("/api/v1/workspaces/team/sessions/{mine}/events?after=1")).await;
    assert_eq!(events.status, 200, "{:?}", events.body);
    assert_eq!(events.body[0]["seq"], 2);
    let detail = owner.get(&format!("/api/v1/workspaces/team/sessions/{mine}")).await;
    assert_eq!(detail.body["state"], "running");

    // A failed session: its error stands out.
    let html = html_of(&member.get(&format!("/w/team/sessions/{broken}")).await);
    assert_well_formed("a failed session's page", &html);
    assert!(html.contains("This session failed: "));
    assert!(html.contains("the container exited with 137 &lt;oom&gt;"));
    assert_eq!(shown_for(&html, &broken), ["delete"]);

    // A deleted session: said so, nothing to do or to poll.
    let html = html_of(&owner.get(&format!("/w/team/sessions/{gone}")).await);
    assert_well_formed("a deleted session's page", &html);
    assert!(html.contains(r#"data-done="true""#) && !html.contains(web::SESSION_JS_PATH));
    assert!(shown_for(&html, &gone).is_empty());

    // A viewer sees every session page without a control.
    for id in [&mine, &theirs, &broken] {
        let html = html_of(&viewer.get(&format!("/w/team/sessions/{id}")).await);
        assert_well_formed("a session page of a viewer", &html);
        assert!(session_controls(&html).is_empty(), "controls for a viewer on {id}");
        assert!(!html.contains("session-controls"));
    }

    // Another workspace's session does not exist here, nor this one there.
    let mut other = api.browser();
    other.sign_up("ses-other@example.com", "Other").await;
    other.load_csrf(&api).await;
    other.post("/api/v1/workspaces", json!({"name": "Other", "slug": "other"})).await;
    seed_template(&api, "other", "ses-other@example.com", "web-app").await;
    let foreign =
        seed_store_session(&api, "other", "ses-other@example.com", "web-app", "theirs", "running")
            .await;
    for (path, by_owner) in [
        (format!("/w/team/sessions/{foreign}"), true),
        (format!("/w/other/sessions/{mine}"), true),
        (format!("/w/other/sessions/{mine}"), false),
        (format!("/w/team/sessions/{mine}"), false),
        ("/w/team/sessions/no-such-session".to_string(), true),
    ] {
        let r = if by_owner { owner.get(&path).await } else { other.get(&path).await };
        assert_eq!(r.status, 404, "{path}");
        assert!(html_of(&r).contains("This page does not exist."), "{path}");
    }
    let (status, ..) = submit(&owner, &format!("/w/team/sessions/{foreign}/stop"), &[], true).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn session_forms_need_the_token_and_the_role_and_come_back_only_to_this_workspace() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("sf-owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    seed_template(&api, "team", "sf-owner@example.com", "web-app").await;
    let member = join_as(&api, &mut owner, "team", "sf-member@example.com", "member").await;
    let viewer = join_as(&api, &mut owner, "team", "sf-viewer@example.com", "viewer").await;
    let mine =
        seed_store_session(&api, "team", "sf-owner@example.com", "web-app", "box", "running").await;
    let page = format!("/w/team/sessions/{mine}");

    // Without the CSRF token, or as a viewer, nothing happens.
    for op in ["start", "stop", "sleep", "restart", "delete"] {
        let (status, ..) = submit(&owner, &format!("{page}/{op}"), &[], false).await;
        assert_eq!(status, 403, "{op} without the token");
        let (status, ..) = submit(&viewer, &format!("{page}/{op}"), &[], true).await;
        assert_eq!(status, 403, "{op} by a viewer");
    }
    let (status, ..) = submit(&viewer, "/w/team/sessions", &[("template", "web-app")], true).await;
    assert_eq!(status, 403);
    let (status, ..) = submit(&owner, "/w/team/sessions", &[("template", "web-app")], false).await;
    assert_eq!(status, 403);

    // A member may not touch the owner's session: refused with a flash, back to `next` when it
    // is a page of this workspace, else to the session's page.
    for (next, back) in [
        ("/w/team/sessions", "/w/team/sessions"),
        ("/w/team/sessions?show_ended=true", "/w/team/sessions?show_ended=true"),
        (page.as_str(), page.as_str()),
        ("", page.as_str()),
        ("https://evil.example/w/team/sessions", page.as_str()),
        ("//evil.example/w/team/sessions/", page.as_str()),
        ("/w/other/sessions", page.as_str()),
        ("/w/team/sessions/../../../account", page.as_str()),
        ("/w/team/sessions/%2e%2e/%2E%2E/x", page.as_str()),
        ("/w/teamx/sessions", page.as_str()),
    ] {
        let (status, location, flash, _) =
            submit(&member, &format!("{page}/stop"), &[("next", next)], true).await;
        assert_eq!((status, location.as_deref()), (303, Some(back)), "next={next:?}");
        assert_eq!(flash.as_deref(), Some("err:this session belongs to someone else"), "{next:?}");
    }
    let (status, location, flash, _) = submit(&member, &format!("{page}/delete"), &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some(page.as_str())));
    assert_eq!(flash.as_deref(), Some("err:this session belongs to someone else"));

    // Creating: refused ones come back to the list with the reason (no workflow is started).
    let (status, location, flash, _) =
        submit(&owner, "/w/team/sessions", &[("template", "nope")], true).await;
    assert_eq!((status, location.as_deref()), (303, Some("/w/team/sessions")));
    assert_eq!(flash.as_deref(), Some("err:template: no template named nope in this workspace"));
    let (status, location, flash, _) = submit(
        &member,
        "/w/team/sessions",
        &[("template", "web-app"), ("name", "Not A Name"), ("idempotency_key", "k-1")],
        true,
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/w/team/sessions")));
    assert!(flash.unwrap().starts_with("err:name: 1 to 63 characters"));
    // Nothing was created by any of this.
    let list = owner.get("/api/v1/workspaces/team/sessions?ended=true").await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{:?}", list.body);
}
