//! The workspace views behind the web shell, through the JSON API: real rows in, the same sdk
//! types out.

use serde_json::json;

use crate::browserish::Api;

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
    let api = Api::start().await;
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
    seed_session(&api, "team", "html@example.com", "running").await;

    let mut checked = 0;
    for def in burstflare_api::http::route_table() {
        if def.kind != Kind::Page || def.method != axum::http::Method::GET {
            continue;
        }
        let path = def.path.replace("{ws}", "team").replace("{token}", &token);
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
    assert!(checked >= 15, "only {checked} pages checked");
    // The checker itself notices broken markup.
    let broken =
        scraper::Html::parse_document("<!DOCTYPE html><html><body><p></span></body></html>");
    assert!(!broken.errors.is_empty());
}
