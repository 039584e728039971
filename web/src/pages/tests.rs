//! Rendering tests over every page: CSRF fields, labels, heading order, escaping, and the
//! contract between the pages and `passkeys.js`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::{Flash, FlashKind, PageContext};

const EVIL: &str = r#"<script>alert("x")</script>'&"#;
const CSRF: &str = "csrf-tok&en";

// ---- a tiny HTML start-tag reader, enough for maud's output ----

#[derive(Debug)]
struct Tag {
    name: String,
    attrs: Vec<(String, Option<String>)>,
    /// Byte offset of the `<`.
    start: usize,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn start_tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut tags = vec![];
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        i = start + 1;
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let name_end =
            i + html[i..].find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap();
        let name = html[i..name_end].to_ascii_lowercase();
        let mut attrs = vec![];
        let mut j = name_end;
        loop {
            while b[j].is_ascii_whitespace() {
                j += 1;
            }
            if b[j] == b'>' {
                break;
            }
            if b[j] == b'/' {
                j += 1;
                continue;
            }
            let n_end = j + html[j..]
                .find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/')
                .unwrap();
            let n = html[j..n_end].to_string();
            j = n_end;
            if b[j] == b'=' {
                assert_eq!(b[j + 1], b'"', "unquoted attribute {n} in <{name}>");
                let v_start = j + 2;
                let v_end = v_start + html[v_start..].find('"').unwrap();
                attrs.push((n, Some(unescape(&html[v_start..v_end]))));
                j = v_end + 1;
            } else {
                attrs.push((n, None));
            }
        }
        tags.push(Tag { name, attrs, start });
        i = j;
    }
    tags
}

// ---- fixtures ----

struct Fixture {
    user: sdk::UserInfo,
    workspaces: Vec<sdk::WorkspaceSummary>,
    passkeys: Vec<sdk::PasskeyInfo>,
    sessions: Vec<sdk::BrowserSessionInfo>,
    tokens: Vec<sdk::TokenInfo>,
    ssh_keys: Vec<sdk::SshKey>,
    members: Vec<sdk::MemberInfo>,
    invites: Vec<sdk::InviteInfo>,
    audit: sdk::AuditPage,
    codes: Vec<String>,
    /// Dev sessions (not browser sessions), one per state.
    runtime: Vec<sdk::SessionSummary>,
    templates: Vec<sdk::TemplateSummary>,
    /// A template with three versions: v3 building, v2 failed, v1 built (and active).
    detail: sdk::TemplateDetail,
    versions: Vec<sdk::TemplateVersion>,
    /// Newest first: v3 attempt 1 (building), v2 attempt 1 (failed), v1 attempt 1 (succeeded).
    builds: Vec<sdk::TemplateBuild>,
}

fn user(id: &str, name: &str, email: &str) -> sdk::UserInfo {
    sdk::UserInfo { id: id.into(), email: email.into(), display_name: name.into() }
}

fn fixture() -> Fixture {
    let ws = |id: &str, slug: &str, role: &str, personal| sdk::WorkspaceSummary {
        id: id.into(),
        slug: slug.into(),
        name: format!("{EVIL} {slug}"),
        personal,
        role: role.into(),
    };
    Fixture {
        user: user("u-me", EVIL, "me@example.com"),
        workspaces: vec![ws("w-1", "acme", "admin", false), ws("w-2", "me", "owner", true)],
        passkeys: vec![
            sdk::PasskeyInfo {
                id: "pk-1".into(),
                name: EVIL.into(),
                created_at: 0,
                last_used_at: None,
            },
            sdk::PasskeyInfo {
                id: "pk-2".into(),
                name: "Phone".into(),
                created_at: 1_700_000_000_000,
                last_used_at: Some(1_700_000_060_000),
            },
        ],
        sessions: vec![
            sdk::BrowserSessionInfo {
                id: "s-1".into(),
                created_at: 0,
                last_seen_at: 1,
                ip: Some("192.0.2.1".into()),
                user_agent: Some(EVIL.into()),
                current: true,
            },
            sdk::BrowserSessionInfo {
                id: "s-2".into(),
                created_at: 0,
                last_seen_at: 1,
                ip: None,
                user_agent: None,
                current: false,
            },
        ],
        tokens: vec![sdk::TokenInfo {
            id: "t-1".into(),
            name: EVIL.into(),
            created_at: 0,
            expires_at: Some(86_400_000),
            last_used_at: None,
        }],
        ssh_keys: vec![
            sdk::SshKey {
                id: "k-1".into(),
                name: EVIL.into(),
                algorithm: "ssh-ed25519".into(),
                fingerprint: "SHA256:xm8Vw0SpC1bxjeYp2q8mB0ZnDVvtKx0QOXVuDS8Y7hE".into(),
                public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl".into(),
                created_at: 1_700_000_000_000,
            },
            sdk::SshKey {
                id: "k/2".into(),
                name: "Laptop".into(),
                algorithm: "rsa-sha2-512".into(),
                fingerprint: "SHA256:Pj3Ck0hL3cuVmZb1yWz1kq0Q3dJm5mB1QbS3n4xVb2o".into(),
                public_key: "ssh-rsa AAAAB3NzaC1yc2E".into(),
                created_at: 0,
            },
        ],
        members: vec![
            sdk::MemberInfo {
                user: user("u-owner", "Olga Owner", "o@example.com"),
                role: "owner".into(),
                joined_at: 0,
            },
            sdk::MemberInfo {
                user: user("u-me", EVIL, "me@example.com"),
                role: "admin".into(),
                joined_at: 0,
            },
            sdk::MemberInfo {
                user: user("u-2", EVIL, "evil@example.com"),
                role: "member".into(),
                joined_at: 0,
            },
            sdk::MemberInfo {
                user: user("u-3", "Vic Viewer", "v@example.com"),
                role: "viewer".into(),
                joined_at: 0,
            },
        ],
        invites: vec![sdk::InviteInfo {
            id: "i-1".into(),
            email: EVIL.into(),
            role: "viewer".into(),
            created_at: 0,
            expires_at: 604_800_000,
        }],
        audit: sdk::AuditPage {
            events: vec![
                sdk::AuditEvent {
                    id: "e-1".into(),
                    at: 0,
                    actor: Some(EVIL.into()),
                    action: EVIL.into(),
                    target_kind: Some("member".into()),
                    target_id: Some(EVIL.into()),
                    ip: Some(EVIL.into()),
                    user_agent: Some(EVIL.into()),
                    detail: serde_json::json!({ "name": EVIL }),
                },
                sdk::AuditEvent {
                    id: "e-2".into(),
                    at: 0,
                    actor: None,
                    action: "session.start".into(),
                    target_kind: None,
                    target_id: None,
                    ip: None,
                    user_agent: None,
                    detail: serde_json::Value::Null,
                },
            ],
            next: Some("e-2 &=+#".into()),
        },
        codes: (0..10).map(|i| format!("code-{i}")).collect(),
        runtime: sdk::SESSION_STATES
            .iter()
            .enumerate()
            .map(|(i, state)| sdk::SessionSummary {
                id: format!("ses-{state}"),
                name: format!("{EVIL} {state}"),
                state: (*state).into(),
                template: format!("{EVIL} tpl"),
                owner: if i % 2 == 0 {
                    sdk::UserRef { id: "u-me".into(), display_name: EVIL.into() }
                } else {
                    sdk::UserRef { id: "u-2".into(), display_name: "Other <b>".into() }
                },
                created_at: 0,
                updated_at: 0,
                last_active_at: (i % 3 != 0).then_some(1_700_000_000_000),
            })
            .collect(),
        templates: vec![
            sdk::TemplateSummary {
                id: "t-old".into(),
                name: format!("{EVIL} old"),
                description: String::new(),
                active_version: Some("v3".into()),
                versions: 3,
                updated_at: 0,
                archived: true,
            },
            sdk::TemplateSummary {
                id: "t-rust".into(),
                name: "rust".into(),
                description: EVIL.into(),
                active_version: Some("v2 <b>".into()),
                versions: 2,
                updated_at: 0,
                archived: false,
            },
            sdk::TemplateSummary {
                id: "t-new".into(),
                name: "node".into(),
                description: "Node.js 22".into(),
                active_version: None,
                versions: 1,
                updated_at: 0,
                archived: false,
            },
        ],
        detail: sample_detail(),
        versions: sample_versions(),
        builds: sample_builds(),
    }
}

/// A secret variable's value: it must never reach a page (the view drops it, and the page
/// would not show it even if it came along).
const SECRET_VALUE: &str = "s3cr3t-value-never-shown";

fn sample_manifest() -> sdk::bundle::ManifestView {
    sdk::bundle::ManifestView {
        schema: 1,
        name: "rust".into(),
        description: EVIL.into(),
        base_image: "ubuntu:24.04".into(),
        persisted_paths: vec!["/home/dev".into(), format!("/data/{EVIL}")],
        env: vec![
            sdk::bundle::EnvView {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                secret: false,
            },
            sdk::bundle::EnvView {
                name: "API_KEY".into(),
                value: Some(SECRET_VALUE.into()),
                secret: true,
            },
            sdk::bundle::EnvView { name: "EMPTY".into(), value: None, secret: false },
            sdk::bundle::EnvView { name: "EVIL".into(), value: Some(EVIL.into()), secret: false },
        ],
        ports: vec![
            sdk::bundle::Port { port: 8080, name: "web".into(), protocol: "http".into() },
            sdk::bundle::Port { port: 5432, name: String::new(), protocol: "tcp".into() },
        ],
        resources: sdk::bundle::Resources { cpu_millis: 1500, memory_mb: 4096, disk_gb: 20 },
        idle_timeout_minutes: 45,
        labels: [("team".to_string(), EVIL.to_string())].into_iter().collect(),
        user: None,
    }
}

fn sample_build(version: &str, status: &str) -> sdk::TemplateBuild {
    let done = sdk::build_is_final(status);
    sdk::TemplateBuild {
        id: format!("b-{version}"),
        template: "rust".into(),
        version: version.into(),
        attempt: 1,
        status: status.into(),
        workflow_id: format!("build-tv-{version}-1"),
        requested_by: Some(sdk::UserRef { id: "u-me".into(), display_name: EVIL.into() }),
        image_ref: (status == "succeeded")
            .then(|| format!("registry.local/burstflare/t:v{version}")),
        image_digest: (status == "succeeded").then(|| format!("sha256:{}", "ab".repeat(32))),
        error: (status == "failed").then(|| format!("step 3/7: {EVIL} exited with 1")),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        started_at: Some(1_700_000_001_000),
        finished_at: done.then_some(1_700_000_126_000),
    }
}

fn sample_builds() -> Vec<sdk::TemplateBuild> {
    vec![sample_build("3", "building"), sample_build("2", "failed"), sample_build("1", "succeeded")]
}

fn sample_version(
    version: &str,
    status: &str,
    build: Option<sdk::TemplateBuild>,
) -> sdk::TemplateVersion {
    let built = status == "built";
    sdk::TemplateVersion {
        id: format!("tv-{version}"),
        template: "rust".into(),
        version: version.into(),
        status: status.into(),
        bundle_size: Some(1536),
        bundle_sha256: Some(format!("0123456789abcdef{}", "0".repeat(48))),
        manifest: Some(sample_manifest()),
        image_ref: built.then(|| "registry.local/burstflare/t:v1".into()),
        image_digest: built.then(|| format!("sha256:{}", "ab".repeat(32))),
        created_by: None,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        latest_build: build,
    }
}

fn sample_versions() -> Vec<sdk::TemplateVersion> {
    let b = sample_builds();
    vec![
        sample_version("3", "building", Some(b[0].clone())),
        sample_version("2", "failed", Some(b[1].clone())),
        sample_version("1", "built", Some(b[2].clone())),
    ]
}

fn sample_detail() -> sdk::TemplateDetail {
    let v = sample_versions();
    sdk::TemplateDetail {
        id: "t-rust".into(),
        name: "rust".into(),
        description: EVIL.into(),
        active_version: Some("1".into()),
        latest_version: Some(v[0].clone()),
        latest_built_version: Some(v[2].clone()),
        versions: 3,
        created_at: 0,
        updated_at: 1_700_000_000_000,
        archived_at: None,
    }
}

fn sample_run(kind: &str, version: &str, status: &str, by: &str) -> sdk::Promotion {
    sdk::Promotion {
        id: format!("p-{kind}-{version}-{status}"),
        template: "rust".into(),
        template_id: "t-rust".into(),
        kind: kind.into(),
        version: version.into(),
        version_id: format!("v-{version}"),
        image_ref: Some(format!("127.0.0.1:5000/acme/rust:{version}")),
        status: status.into(),
        step: Some(format!("rolling out to {EVIL}")),
        error: (status == "rolled_back").then(|| format!("host {EVIL} could not pull")),
        nodes: vec![
            sdk::PromotionNode { node: "node-1".into(), state: "ready".into() },
            sdk::PromotionNode { node: EVIL.into(), state: "pending".into() },
        ],
        workflow_id: "promote-t-rust".into(),
        requested_by: Some(sdk::UserRef { id: by.into(), display_name: format!("{EVIL} req") }),
        approved_by: None,
        approved_at: None,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_001_000,
        finished_at: sdk::promotion_is_final(status).then_some(1_700_000_002_000),
    }
}

fn sample_entry() -> sdk::CatalogEntryView {
    sdk::CatalogEntryView {
        template: "rust".into(),
        template_id: "t-rust".into(),
        version: "1".into(),
        version_id: "v-1".into(),
        image_ref: format!("127.0.0.1:5000/acme/rust:1{EVIL}"),
        previous_version: Some("0".into()),
        revision: 7,
        updated_at: 1_700_000_000_000,
        cpu_millis: 1000,
        memory_mb: 1024,
        archived: false,
    }
}

fn empty_detail() -> sdk::TemplateDetail {
    sdk::TemplateDetail {
        id: "t-new".into(),
        name: "node".into(),
        description: String::new(),
        active_version: None,
        latest_version: None,
        latest_built_version: None,
        versions: 0,
        created_at: 0,
        updated_at: 0,
        archived_at: None,
    }
}

fn log_of(b: &sdk::TemplateBuild, done: bool) -> sdk::BuildLog {
    sdk::BuildLog {
        build: b.clone(),
        text: format!("step 1/7: FROM ubuntu\n{EVIL}\n"),
        next: 2,
        done,
    }
}

fn usage() -> sdk::UsageSummary {
    sdk::UsageSummary {
        since: 1_700_000_000_000,
        runtime_minutes: 12_345,
        build_minutes: 67,
        storage_bytes: 3 * 1024 * 1024 * 1024 / 2,
        active_sessions: 4,
    }
}

/// The dashboard of `ws` as the API would answer it: only sessions that have not ended.
fn dashboard_of(f: &Fixture, ws: &sdk::WorkspaceSummary, activity: bool) -> sdk::Dashboard {
    sdk::Dashboard {
        workspace: ws.clone(),
        active_sessions: f
            .runtime
            .iter()
            .filter(|s| !["stopped", "deleted", "failed"].contains(&s.state.as_str()))
            .cloned()
            .collect(),
        recent_activity: activity.then(|| f.audit.events.clone()),
        usage: usage(),
    }
}

fn with_role(ws: &sdk::WorkspaceSummary, role: &str) -> sdk::WorkspaceSummary {
    sdk::WorkspaceSummary { role: role.into(), ..ws.clone() }
}

/// What owners and admins may do to sessions.
const MANAGER: SessionRights = SessionRights { use_sessions: true, manage_any: true };
/// What members may do: their own sessions only.
const MEMBER: SessionRights = SessionRights { use_sessions: true, manage_any: false };
/// Viewers only look.
const VIEWER: SessionRights = SessionRights { use_sessions: false, manage_any: false };

/// The fixture's sessions that ended (stopped, deleted, failed), as a list with only those.
fn ended_only(f: &Fixture) -> Vec<sdk::SessionSummary> {
    f.runtime
        .iter()
        .filter(|s| ["stopped", "deleted", "failed"].contains(&s.state.as_str()))
        .cloned()
        .collect()
}

fn startable() -> Vec<StartableTemplate> {
    vec![
        StartableTemplate { name: "rust".into(), version: "2".into() },
        StartableTemplate { name: format!("{EVIL} tpl"), version: "v1".into() },
    ]
}

/// A session in `state` owned by `owner` (`u-me` is the fixture's viewer).
fn sample_session(state: &str, owner: &str) -> sdk::SessionDetail {
    sdk::SessionDetail {
        id: format!("ses-{state}"),
        name: format!("{EVIL} {state}"),
        state: state.into(),
        template: "rust".into(),
        version: "2".into(),
        owner: sdk::UserRef { id: owner.into(), display_name: format!("{EVIL} owner") },
        node: (state != "provisioning").then(|| "node-1 <a>".into()),
        workflow_id: format!("session-ses-{state}"),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_300_000,
        started_at: Some(1_700_000_060_000),
        stopped_at: (state == "stopped").then_some(1_700_000_200_000),
        last_active_at: None,
        error: (state == "failed").then(|| format!("the container exited: {EVIL}")),
    }
}

fn sample_events() -> Vec<sdk::SessionEvent> {
    vec![
        sdk::SessionEvent {
            seq: 1,
            kind: "state.provisioning".into(),
            detail: serde_json::Value::Null,
            at: 1_700_000_000_000,
        },
        sdk::SessionEvent {
            seq: 2,
            kind: "op.start.accepted".into(),
            detail: serde_json::json!({ "by": EVIL, "attempt": 2 }),
            at: 1_700_000_001_000,
        },
        sdk::SessionEvent {
            seq: 7,
            kind: "state.running".into(),
            detail: serde_json::json!({}),
            at: 1_700_000_061_000,
        },
    ]
}

fn sample_why() -> sdk::SessionWhy {
    sdk::SessionWhy {
        state: "running".into(),
        step: "waiting for the agent".into(),
        attempts: 3,
        idle_deadline: Some(1_700_001_800_000),
        lifetime_deadline: None,
        pending: vec!["sleep".into(), "stop".into()],
        node: Some("node-1".into()),
        generation: 4,
        last_error: Some(format!("agent did not answer: {EVIL}")),
        retry_at: None,
        retry_op: None,
    }
}

fn ctx<'a>(f: &'a Fixture, csrf: Option<&'a str>) -> PageContext<'a> {
    PageContext {
        user: Some(&f.user),
        workspaces: &f.workspaces,
        current_workspace: Some(&f.workspaces[0]),
        csrf,
        flash: Some(Flash { kind: FlashKind::Error, message: EVIL }),
        bot_check_site_key: None,
        must_add_passkey: true,
    }
}

/// Every page, in every interesting state, rendered with `csrf`.
fn all_pages(f: &Fixture, csrf: Option<&str>) -> Vec<(&'static str, String)> {
    let signed_in = ctx(f, csrf);
    let signed_out =
        PageContext { csrf, bot_check_site_key: Some("site<key>"), ..PageContext::default() };
    let ws = &f.workspaces[0];
    let version = sdk::VersionResponse {
        name: "burstflare".into(),
        version: "0.1.0".into(),
        api: "v1".into(),
        commit: None,
    };
    let health = sdk::HealthResponse::from_checks(BTreeMap::new());
    let startable = startable();
    vec![
        ("home signed in", home_with(&signed_in, &version, &health)),
        ("home signed out", home_with(&signed_out, &version, &health)),
        ("error", error_page_with(&signed_in, 404, EVIL)),
        ("signup", signup(&signed_out)),
        ("signin", signin(&signed_out, Some("/invite/abc"))),
        ("recover", recover(&signed_out, Some(EVIL))),
        (
            "account with token",
            account(
                &signed_in,
                &f.passkeys,
                &f.sessions,
                &f.tokens,
                &f.ssh_keys,
                &[sdk::CliSessionInfo {
                    id: "fam-1".into(),
                    client_name: EVIL.into(),
                    created_at: 0,
                    last_used_at: None,
                }],
                7,
                Some(ShownOnce::Token { name: EVIL, secret: "bf_secret<>" }),
            ),
        ),
        (
            "account with codes",
            account(
                &signed_in,
                &f.passkeys,
                &f.sessions,
                &f.tokens,
                &[],
                &[],
                0,
                Some(ShownOnce::RecoveryCodes(&f.codes)),
            ),
        ),
        ("account empty", account(&signed_in, &[], &[], &[], &[], &[], 1, None)),
        (
            "members manager",
            members(&signed_in, ws, &f.members, &f.invites, true, Some("https://x/invite/t<")),
        ),
        ("members viewer", members(&signed_in, ws, &f.members, &f.invites, false, None)),
        (
            "members personal",
            members(&signed_in, &f.workspaces[1], &f.members[..1], &[], true, None),
        ),
        ("audit", audit(&signed_in, ws, &f.audit, Some("a&b"), Some(EVIL))),
        (
            "audit empty",
            audit(&signed_in, ws, &sdk::AuditPage { events: vec![], next: None }, None, None),
        ),
        ("invite signed in", invite(&signed_in, EVIL, "member", "tok-1", true)),
        ("invite signed out", invite(&signed_out, EVIL, "viewer", "tok-1", false)),
        ("new workspace", new_workspace(&signed_in, Some(EVIL))),
        ("dashboard admin", dashboard(&signed_in, &dashboard_of(f, ws, true))),
        (
            "dashboard member",
            dashboard(&signed_in, &dashboard_of(f, &with_role(ws, "member"), false)),
        ),
        (
            "dashboard empty",
            dashboard(
                &signed_in,
                &sdk::Dashboard {
                    workspace: ws.clone(),
                    active_sessions: vec![],
                    recent_activity: Some(vec![]),
                    usage: usage(),
                },
            ),
        ),
        (
            "sessions",
            sessions(
                &signed_in,
                ws,
                &f.runtime,
                false,
                MANAGER,
                Some(&NewSession { templates: &startable, idempotency_key: "key-1" }),
            ),
        ),
        (
            "sessions with ended",
            sessions(
                &signed_in,
                ws,
                &f.runtime,
                true,
                MEMBER,
                Some(&NewSession { templates: &[], idempotency_key: "key-2" }),
            ),
        ),
        ("sessions viewer", sessions(&signed_in, ws, &f.runtime, true, VIEWER, None)),
        ("sessions none", sessions(&signed_in, ws, &[], false, VIEWER, None)),
        ("sessions only ended", sessions(&signed_in, ws, &ended_only(f), false, MEMBER, None)),
        (
            "session running, mine",
            session_detail(
                &signed_in,
                ws,
                &sample_session("running", "u-me"),
                Some(&sample_why()),
                &sample_events(),
                MEMBER,
            ),
        ),
        (
            "session failed, someone else's",
            session_detail(&signed_in, ws, &sample_session("failed", "u-2"), None, &[], MANAGER),
        ),
        (
            "session deleted, viewer",
            session_detail(
                &signed_in,
                &with_role(ws, "viewer"),
                &sample_session("deleted", "u-2"),
                Some(&sample_why()),
                &sample_events(),
                VIEWER,
            ),
        ),
        (
            "terminal running, mine",
            terminal(
                &signed_in,
                ws,
                &sample_session("running", "u-me"),
                Some(&sample_why()),
                MEMBER,
            ),
        ),
        (
            "terminal sleeping, viewer",
            terminal(
                &signed_in,
                &with_role(ws, "viewer"),
                &sample_session("sleeping", "u-me"),
                None,
                VIEWER,
            ),
        ),
        ("templates", templates(&signed_in, ws, &f.templates, true, None)),
        (
            "templates with a failed form",
            templates(
                &signed_in,
                ws,
                &f.templates,
                true,
                Some(&NewTemplate {
                    name: EVIL,
                    description: EVIL,
                    error: Some(EVIL),
                    field: Some("name"),
                }),
            ),
        ),
        ("templates empty manager", templates(&signed_in, ws, &[], true, None)),
        (
            "templates empty viewer",
            templates(&signed_in, &with_role(ws, "viewer"), &[], false, None),
        ),
        (
            "template detail manager",
            template_detail(&signed_in, ws, &f.detail, &f.versions, &f.builds, true),
        ),
        (
            "template detail viewer",
            template_detail(
                &signed_in,
                &with_role(ws, "viewer"),
                &f.detail,
                &f.versions,
                &f.builds,
                false,
            ),
        ),
        ("template detail empty", template_detail(&signed_in, ws, &empty_detail(), &[], &[], true)),
        (
            "template detail promotion awaiting",
            template_detail_with_promotions(
                &signed_in,
                ws,
                &f.detail,
                &f.versions,
                &f.builds,
                true,
                Some(&TemplatePromotions {
                    runs: &[
                        sample_run("promote", "3", "awaiting_approval", "u-other"),
                        sample_run("rollback", "1", "rolled_back", "u-me"),
                    ],
                    entry: Some(&sample_entry()),
                    revision: 7,
                    policy: &sdk::PromotionPolicy {
                        requires_approval: true,
                        approval_timeout_secs: 86_400,
                    },
                    can_promote: true,
                }),
            ),
        ),
        (
            "template detail promotion idle",
            template_detail_with_promotions(
                &signed_in,
                ws,
                &f.detail,
                &[sample_version("4", "built", None), sample_version("1", "built", None)],
                &f.builds,
                true,
                Some(&TemplatePromotions {
                    runs: &[sample_run("promote", "1", "succeeded", "u-me")],
                    entry: Some(&sample_entry()),
                    revision: 7,
                    policy: &sdk::PromotionPolicy {
                        requires_approval: false,
                        approval_timeout_secs: 600,
                    },
                    can_promote: true,
                }),
            ),
        ),
        (
            "build running",
            build_page(&signed_in, ws, &f.builds[0], Some(&log_of(&f.builds[0], false)), true),
        ),
        (
            "build failed",
            build_page(&signed_in, ws, &f.builds[1], Some(&log_of(&f.builds[1], true)), true),
        ),
        (
            "build succeeded viewer",
            build_page(
                &signed_in,
                &with_role(ws, "viewer"),
                &f.builds[2],
                Some(&log_of(&f.builds[2], true)),
                false,
            ),
        ),
        ("build without log", build_page(&signed_in, ws, &f.builds[2], None, true)),
        ("settings manager", settings(&signed_in, ws, true)),
        ("settings member", settings(&signed_in, &with_role(ws, "member"), false)),
    ]
    .into_iter()
    .map(|(n, m)| (n, m.into_string()))
    .collect()
}

// ---- tests ----

#[test]
fn every_post_form_carries_the_csrf_token() {
    let f = fixture();
    let field = r#"<input type="hidden" name="csrf" value="csrf-tok&amp;en">"#;
    for (name, html) in all_pages(&f, Some(CSRF)) {
        let posts = html.matches(r#"<form method="post""#).count();
        assert_eq!(posts, html.matches(field).count(), "{name}: POST forms vs csrf fields");
        assert!(html.contains(r#"<meta name="csrf-token" content="csrf-tok&amp;en">"#), "{name}");
        for form in start_tags(&html).iter().filter(|t| t.name == "form") {
            let method = form.attr("method").unwrap_or("get");
            let end = form.start + html[form.start..].find("</form>").unwrap();
            let inner = &html[form.start..end];
            if method == "post" {
                assert!(
                    inner.contains(field),
                    "{name}: form {:?} has no csrf field",
                    form.attr("action")
                );
            } else {
                assert!(!inner.contains("name=\"csrf\""), "{name}: GET form leaks the csrf token");
            }
        }
    }
    // Pages with forms really were checked.
    let pages = all_pages(&f, Some(CSRF));
    let total: usize = pages.iter().map(|(_, h)| h.matches(r#"<form method="post""#).count()).sum();
    assert!(total > 30, "only {total} POST forms seen");

    for (name, html) in all_pages(&f, None) {
        assert!(!html.contains("name=\"csrf\""), "{name}");
        assert!(!html.contains("csrf-token"), "{name}");
    }
}

#[test]
fn every_input_and_select_has_a_label_and_ids_are_unique() {
    let f = fixture();
    for (name, html) in all_pages(&f, Some(CSRF)) {
        let tags = start_tags(&html);
        let mut ids = BTreeSet::new();
        for t in &tags {
            if let Some(id) = t.attr("id") {
                assert!(ids.insert(id.to_string()), "{name}: duplicate id {id}");
            }
        }
        let labelled: BTreeSet<&str> =
            tags.iter().filter(|t| t.name == "label").filter_map(|t| t.attr("for")).collect();
        for t in &tags {
            let needs_label = match t.name.as_str() {
                "input" => !matches!(t.attr("type"), Some("hidden" | "submit" | "button")),
                "select" | "textarea" => true,
                _ => false,
            };
            if needs_label {
                let id = t
                    .attr("id")
                    .unwrap_or_else(|| panic!("{name}: <{}> without id: {t:?}", t.name));
                assert!(labelled.contains(id), "{name}: no <label for={id:?}>");
            }
        }
        for l in labelled {
            assert!(ids.contains(l), "{name}: label for missing id {l}");
        }
    }
}

#[test]
fn headings_are_in_order_with_one_h1() {
    let f = fixture();
    for (name, html) in all_pages(&f, Some(CSRF)) {
        let levels: Vec<u8> = start_tags(&html)
            .iter()
            .filter_map(|t| match t.name.as_bytes() {
                [b'h', d @ b'1'..=b'6'] => Some(d - b'0'),
                _ => None,
            })
            .collect();
        assert_eq!(levels.first(), Some(&1), "{name}: {levels:?}");
        assert_eq!(levels.iter().filter(|l| **l == 1).count(), 1, "{name}: {levels:?}");
        for w in levels.windows(2) {
            assert!(w[1] <= w[0] + 1, "{name}: heading jumps in {levels:?}");
        }
    }
}

#[test]
fn user_data_is_escaped_everywhere() {
    let f = fixture();
    for (name, html) in all_pages(&f, Some(CSRF)) {
        assert!(!html.contains("<script>alert"), "{name}");
        assert!(!html.contains("site<key>"), "{name}");
        assert!(!html.contains("t<\""), "{name}");
        // Every <script> is one of ours.
        for t in start_tags(&html).iter().filter(|t| t.name == "script") {
            let src = t.attr("src").unwrap_or_default();
            assert!(
                [
                    crate::PASSKEYS_JS_PATH,
                    crate::LIVE_JS_PATH,
                    crate::BUILD_LOG_JS_PATH,
                    crate::SESSION_JS_PATH,
                    crate::PROMOTION_JS_PATH,
                    crate::TERMINAL_JS_PATH,
                    crate::XTERM_JS_PATH,
                    crate::XTERM_FIT_JS_PATH,
                    crate::TURNSTILE_JS_URL
                ]
                .contains(&src),
                "{name}: {src}"
            );
        }
    }
    let pages = all_pages(&f, Some(CSRF));
    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'&amp;";
    for (name, html) in &pages {
        if !name.starts_with("home") && !name.starts_with("signup") && !name.starts_with("signin") {
            assert!(html.contains(escaped), "{name} does not show the escaped user data");
        }
    }
}

#[test]
fn a_viewer_sees_no_management_controls() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let html = members(&c, ws, &f.members, &f.invites, false, Some("https://x/invite/secret"))
        .into_string();
    assert!(!html.contains("/role\""));
    assert!(!html.contains("/remove\""));
    assert!(!html.contains("/invites"));
    assert!(!html.contains("name=\"role\""));
    assert!(!html.contains("invite/secret"), "the invite link is for managers");
    assert!(!html.contains("evil@example.com\"") && !html.contains("Pending invites"));
    let main = &html[html.find("<main").unwrap()..];
    assert_eq!(main.matches(r#"<form method="post""#).count(), 1, "only the leave form");
    assert!(html.contains(r#"action="/w/acme/leave""#));
    // Every member is still listed.
    for m in &f.members {
        assert!(html.contains(&m.user.email), "{}", m.user.email);
    }
}

#[test]
fn a_manager_gets_controls_except_for_themselves_and_owners() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF)); // an admin of acme
    let ws = &f.workspaces[0];
    let html =
        members(&c, ws, &f.members, &f.invites, true, Some("https://x/invite/abc")).into_string();
    assert!(html.contains(r#"action="/w/acme/members/u-2/role""#));
    assert!(html.contains(r#"action="/w/acme/members/u-3/remove""#));
    assert!(!html.contains("/members/u-me/"), "no controls on yourself");
    assert!(!html.contains("/members/u-owner/"), "an admin cannot change the owner");
    assert!(!html.contains(r#"<option value="owner""#), "an admin cannot make owners");
    assert!(html.contains(r#"action="/w/acme/invites""#));
    assert!(html.contains(r#"action="/w/acme/invites/i-1/revoke""#));
    assert!(html.contains(r#"<option value="viewer" selected>viewer</option>"#));
    assert!(html.contains("https://x/invite/abc"));
    assert!(html.contains("Copy it now: it will not be shown again"));

    let owner_ws = sdk::WorkspaceSummary { role: "owner".into(), ..ws.clone() };
    let html = members(&c, &owner_ws, &f.members, &f.invites, true, None).into_string();
    assert!(html.contains("/members/u-owner/role"), "an owner can change another owner");
    assert!(html.contains(r#"<option value="owner""#));
}

#[test]
fn the_personal_workspace_cannot_be_left() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let html = members(&c, &f.workspaces[1], &f.members, &[], false, None).into_string();
    assert!(!html.contains("/leave\""));
    assert!(html.contains("personal workspace"));
}

#[test]
fn the_older_link_keeps_the_filters_url_encoded() {
    let f = fixture();
    let c = ctx(&f, None);
    let html =
        audit(&c, &f.workspaces[0], &f.audit, Some("member.role changed&x=1"), Some("a+b@x.com"))
            .into_string();
    let older = start_tags(&html)
        .into_iter()
        .find(|t| t.name == "a" && t.attr("rel") == Some("next"))
        .expect("an Older link");
    assert_eq!(
        older.attr("href"),
        Some(
            "/w/acme/audit?before=e-2%20%26%3D%2B%23&action=member.role%20changed%26x%3D1&actor=a%2Bb%40x.com"
        )
    );
    // The filter form is a GET form that shows the current filters.
    assert!(html.contains(r#"<form method="get" action="/w/acme/audit""#));
    assert!(html.contains(r#"value="member.role changed&amp;x=1""#));

    let plain = audit(&c, &f.workspaces[0], &f.audit, None, Some("")).into_string();
    assert!(plain.contains(r#"href="/w/acme/audit?before=e-2%20%26%3D%2B%23""#));

    let last = sdk::AuditPage { events: f.audit.events.clone(), next: None };
    let html = audit(&c, &f.workspaces[0], &last, None, None).into_string();
    assert!(!html.contains("rel=\"next\""));
}

#[test]
fn the_audit_table_shows_each_event() {
    let f = fixture();
    let html = audit(&ctx(&f, None), &f.workspaces[0], &f.audit, None, None).into_string();
    assert!(html.contains("<details class=\"event-detail\">"), "non-empty detail is shown");
    assert_eq!(main_of(&html).matches("<details").count(), 1, "null detail is not");
    assert!(html.contains(">system<"), "events without actor are the system's");
    assert!(html.contains(r#"<time datetime="1970-01-01T00:00:00Z""#));
}

#[test]
fn navigation_depends_on_being_signed_in() {
    let f = fixture();
    let html = error_page_with(&ctx(&f, Some(CSRF)), 404, "x").into_string();
    assert!(html.contains(r#"<form class="switcher" method="get" action="/switch">"#));
    assert!(html.contains(r#"<select id="ws-switch" name="ws">"#));
    assert!(html.contains(r#"<option value="acme" selected>"#));
    assert!(html.contains(r#"<option value="me">"#));
    assert!(html.contains(">Switch</button>"));
    for href in ["/", "/w/acme/members", "/w/acme/audit", "/account"] {
        assert!(html.contains(&format!("href=\"{href}\"")), "{href}");
    }
    assert!(html.contains(r#"<form method="post" action="/signout""#));
    assert!(!html.contains("href=\"/signin\""));
    assert!(html.contains("href=\"/account#passkeys\""), "the must-add-passkey banner");

    let no_current = PageContext { current_workspace: None, ..ctx(&f, None) };
    let html = error_page_with(&no_current, 404, "x").into_string();
    assert!(html.contains("/w/acme/members"), "falls back to the first workspace");

    let html = error_page(404, "x").into_string();
    assert!(html.contains("href=\"/signin\"") && html.contains("href=\"/signup\""));
    assert!(!html.contains("/signout") && !html.contains("/switch") && !html.contains("/account"));
    assert!(html.contains(&format!(r#"<script src="{}" defer>"#, crate::PASSKEYS_JS_PATH)));
    assert!(!html.contains("challenges.cloudflare.com"));
}

#[test]
fn flash_messages_are_announced() {
    let f = fixture();
    let ok = PageContext {
        flash: Some(Flash { kind: FlashKind::Success, message: "Saved." }),
        ..ctx(&f, None)
    };
    let html = error_page_with(&ok, 200, "x").into_string();
    assert!(
        html.contains(
            r#"<div class="flash success" role="status" aria-live="polite">Saved.</div>"#
        )
    );
    let html = error_page_with(&ctx(&f, None), 200, "x").into_string();
    assert!(html.contains(r#"<div class="flash error" role="alert">"#));
}

#[test]
fn the_bot_check_widget_appears_only_with_a_site_key() {
    let with = PageContext { bot_check_site_key: Some("0x4AAA"), ..PageContext::default() };
    for html in [signup(&with).into_string(), signin(&with, None).into_string()] {
        assert!(html.contains(r#"<div class="cf-turnstile" data-sitekey="0x4AAA"></div>"#));
        assert!(html.contains(
            r#"<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer>"#
        ));
    }
    let without = PageContext::default();
    for html in [signup(&without).into_string(), signin(&without, None).into_string()] {
        assert!(!html.contains("cf-turnstile"));
        assert!(!html.contains("challenges.cloudflare.com"));
    }
}

#[test]
fn passkey_forms_carry_what_the_script_needs() {
    let f = fixture();
    let c = PageContext::default();
    let signup = signup(&c).into_string();
    let signin = signin(&c, Some("/invite/abc")).into_string();
    let account = account(&ctx(&f, None), &f.passkeys, &[], &[], &[], &[], 3, None).into_string();
    for (kind, id, html) in [
        ("signup", "signup-form", &signup),
        ("signin", "signin-form", &signin),
        ("add", "add-passkey-form", &account),
    ] {
        let tags = start_tags(html);
        let form = tags.iter().find(|t| t.attr("data-passkey") == Some(kind)).expect(kind);
        assert_eq!(form.attr("id"), Some(id));
        let status: Vec<_> =
            tags.iter().filter(|t| t.attr("id") == Some("passkey-status")).collect();
        assert_eq!(status.len(), 1, "{kind}");
        assert_eq!(status[0].attr("role"), Some("status"));
        assert_eq!(status[0].attr("aria-live"), Some("polite"));
        assert_eq!(status[0].attr("data-state"), Some("idle"));
        assert!(html.contains("<noscript>"), "{kind}");
    }
    let tags = start_tags(&signup);
    let email = tags.iter().find(|t| t.attr("id") == Some("signup-email")).unwrap();
    assert_eq!((email.attr("type"), email.attr("maxlength")), (Some("email"), Some("254")));
    assert!(email.has("required"));
    let dn = tags.iter().find(|t| t.attr("name") == Some("display_name")).unwrap();
    assert_eq!(dn.attr("maxlength"), Some("100"));
    assert!(dn.has("required"));
    let codes = tags.iter().find(|t| t.attr("id") == Some("recovery-codes")).unwrap();
    assert!(codes.has("hidden"));
    assert!(signup.contains(r#"href="/">I saved these codes</a>"#));
    assert!(signup.contains("Create account with a passkey"));
    assert!(signin.contains(r#"data-return-to="/invite/abc""#));
    assert!(signin.contains(r#"href="/signup?return_to=/invite/abc""#));
    assert!(signin.contains(r#"href="/recover""#));
}

#[test]
fn signin_keeps_only_local_return_targets() {
    let c = PageContext::default();
    for bad in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let html = signin(&c, Some(bad)).into_string();
        assert!(!html.contains("data-return-to"), "{bad}");
        assert!(!html.contains("evil.example"), "{bad}");
    }
}

#[test]
fn the_invite_page_accepts_or_sends_you_to_sign_in_and_back() {
    let f = fixture();
    let html = invite(&ctx(&f, Some(CSRF)), "Acme", "member", "tok/1", true).into_string();
    assert!(html.contains(r#"<form method="post" action="/invite/tok%2F1/accept""#));
    assert!(!html.contains("return_to"));
    let html = invite(&PageContext::default(), "Acme", "member", "tok-1", false).into_string();
    assert!(html.contains(r#"href="/signin?return_to=/invite/tok-1""#));
    assert!(html.contains(r#"href="/signup?return_to=/invite/tok-1""#));
    assert!(!html.contains("<form method=\"post\""));
}

#[test]
fn the_account_page_lists_everything_with_its_forms() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let html =
        account(&c, &f.passkeys, &f.sessions, &f.tokens, &f.ssh_keys, &[], 4, None).into_string();
    for section in ["passkeys", "sessions", "tokens", "ssh-keys", "recovery"] {
        assert!(
            start_tags(&html).iter().any(|t| t.name == "section" && t.attr("id") == Some(section)),
            "{section}"
        );
    }
    for action in [
        "/account/passkeys/pk-1/rename",
        "/account/passkeys/pk-2/delete",
        "/account/sessions/s-2/revoke",
        "/account/tokens",
        "/account/tokens/t-1/revoke",
        "/account/ssh-keys",
        "/account/ssh-keys/k-1/delete",
        "/account/ssh-keys/k%2F2/delete",
        "/account/recovery-codes",
    ] {
        assert!(html.contains(&format!("action=\"{action}\"")), "{action}");
    }
    assert!(
        !html.contains("/account/sessions/s-1/revoke"),
        "the current session signs out instead"
    );
    assert!(html.contains("This session"));
    assert!(html.contains("You have 4 unused recovery codes."));
    assert!(
        html.contains(
            r#"<time datetime="2023-11-14T22:14:20Z" title="UTC">2023-11-14 22:14</time>"#
        )
    );
    let tags = start_tags(&html);
    let days = tags.iter().find(|t| t.attr("name") == Some("expires_in_days")).unwrap();
    assert_eq!(
        (days.attr("type"), days.attr("min"), days.attr("max"), days.attr("value")),
        (Some("number"), Some("1"), Some("366"), Some("30"))
    );
    assert!(!html.contains("not be shown again"));
}

#[test]
fn secrets_shown_once_are_in_a_copy_box() {
    let f = fixture();
    let c = ctx(&f, None);
    let html = account(
        &c,
        &[],
        &[],
        &[],
        &[],
        &[],
        10,
        Some(ShownOnce::Token { name: "ci", secret: "bf_abc" }),
    )
    .into_string();
    assert!(html.contains("Copy it now: it will not be shown again"));
    assert!(html.contains(
        r#"<pre class="secret" id="shown-once-secret" aria-label="New API token">bf_abc</pre>"#
    ));
    assert!(html.contains(r#"data-copy="shown-once-secret" hidden>Copy</button>"#));
    let html = account(&c, &[], &[], &[], &[], &[], 10, Some(ShownOnce::RecoveryCodes(&f.codes)))
        .into_string();
    assert!(html.contains(&f.codes.join("\n")));
}

#[test]
fn the_ssh_keys_section_lists_each_key_with_a_remove_form_and_the_add_form() {
    let f = fixture();
    let html =
        account(&ctx(&f, Some(CSRF)), &[], &[], &[], &f.ssh_keys, &[], 4, None).into_string();
    let start = start_tags(&html)
        .iter()
        .find(|t| t.name == "section" && t.attr("id") == Some("ssh-keys"))
        .expect("the SSH keys section")
        .start;
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    assert!(html.contains(r##"<a href="#ssh-keys">SSH keys</a>"##), "in the table of contents");
    // Each key: name (escaped), algorithm, fingerprint, added date.
    for needle in [
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'&amp;",
        "<code>ssh-ed25519</code>",
        "<code>SHA256:xm8Vw0SpC1bxjeYp2q8mB0ZnDVvtKx0QOXVuDS8Y7hE</code>",
        r#"<time datetime="2023-11-14T22:13:20Z" title="UTC">2023-11-14 22:13</time>"#,
        "Laptop",
        "<code>rsa-sha2-512</code>",
        "<code>flare ssh</code> registers its own key automatically",
        "<code>docs/ssh.md</code>",
    ] {
        assert!(section.contains(needle), "{needle} in {section}");
    }
    // The public key itself is not shown: the fingerprint identifies it.
    assert!(!section.contains("AAAAC3NzaC1lZDI1NTE5"));
    let tags = start_tags(section);
    let forms: Vec<_> = tags.iter().filter(|t| t.name == "form").collect();
    let field = r#"<input type="hidden" name="csrf" value="csrf-tok&amp;en">"#;
    assert_eq!(section.matches(field).count(), 3, "two remove forms and the add form");
    let actions: Vec<_> = forms.iter().map(|t| t.attr("action").unwrap()).collect();
    assert_eq!(
        actions,
        ["/account/ssh-keys/k-1/delete", "/account/ssh-keys/k%2F2/delete", "/account/ssh-keys"]
    );
    for form in &forms {
        assert_eq!(form.attr("method"), Some("post"));
    }
    // Removing asks first, naming the key; adding does not.
    assert_eq!(
        forms[1].attr("data-confirm"),
        Some("Remove the SSH key “Laptop”? It can no longer connect to your sessions.")
    );
    assert!(forms[0].attr("data-confirm").unwrap().contains(EVIL));
    assert!(!forms[2].has("data-confirm"));
    assert!(section.contains(">Remove<span class=\"visually-hidden\"> SSH key Laptop</span>"));
    // The add form: a name and one pasted public key.
    let name = tags.iter().find(|t| t.attr("id") == Some("ssh-key-name")).unwrap();
    assert_eq!((name.attr("name"), name.attr("maxlength")), (Some("name"), Some("64")));
    assert!(name.has("required"));
    let key = tags.iter().find(|t| t.attr("id") == Some("ssh-key-public-key")).unwrap();
    assert_eq!((key.name.as_str(), key.attr("name")), ("textarea", Some("public_key")));
    assert_eq!(key.attr("spellcheck"), Some("false"));
    assert!(key.has("required"));
    assert!(section.contains(">Add SSH key</button>"));

    // Without keys: says so, and still offers the form.
    let empty = account(&ctx(&f, Some(CSRF)), &[], &[], &[], &[], &[], 4, None).into_string();
    assert!(empty.contains("You have no SSH key."));
    assert!(empty.contains(r#"action="/account/ssh-keys""#));
    assert!(!empty.contains("/account/ssh-keys/"), "no remove form");
}

#[test]
fn the_script_speaks_the_pages_and_the_api_contract() {
    let js = crate::PASSKEYS_JS;
    for needle in [
        "/api/v1/auth/signup/start",
        "/api/v1/auth/signup/finish",
        "/api/v1/auth/signin/start",
        "/api/v1/auth/signin/finish",
        "/api/v1/me/passkeys/start",
        "/api/v1/me/passkeys/finish",
        "passkey-status",
        "recovery-codes",
        "recovery-codes-list",
        "recovery-codes-done",
        "returnTo",
        "csrf-token",
        "X-CSRF-Token",
        "cf-turnstile-response",
        "NotAllowedError",
        "The passkey prompt was cancelled or not allowed.",
        "same-origin",
        "form[data-passkey]",
        "data-copy",
        "data-confirm",
    ] {
        assert!(js.contains(needle), "passkeys.js lacks {needle}");
    }
}

// ---- the workspace shell: navigation, dashboard, sessions, templates, settings ----

/// The `aria-current="page"` links of a page's navigation, as (href, text).
fn current_links(html: &str) -> Vec<(String, String)> {
    start_tags(html)
        .iter()
        .filter(|t| t.name == "a" && t.attr("aria-current") == Some("page"))
        .map(|t| {
            let open = t.start + html[t.start..].find('>').unwrap() + 1;
            let close = open + html[open..].find("</a>").unwrap();
            (t.attr("href").unwrap().to_string(), html[open..close].to_string())
        })
        .collect()
}

/// The main element's part of a page (the navigation left out).
fn main_of(html: &str) -> &str {
    &html[html.find("<main").unwrap()..html.find("</main>").unwrap()]
}

#[test]
fn the_navigation_marks_the_current_page() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let pages = [
        ("/w/acme", "Dashboard", dashboard(&c, &dashboard_of(&f, ws, true))),
        (
            "/w/acme/sessions",
            "Sessions",
            sessions(&c, ws, &f.runtime, true, SessionRights::default(), None),
        ),
        ("/w/acme/templates", "Templates", templates(&c, ws, &f.templates, true, None)),
        ("/w/acme/members", "Members", members(&c, ws, &f.members, &[], true, None)),
        ("/w/acme/audit", "Audit log", audit(&c, ws, &f.audit, None, None)),
        ("/w/acme/settings", "Settings", settings(&c, ws, true)),
        ("/account", "Account", account(&c, &[], &[], &[], &[], &[], 5, None)),
        ("/workspaces/new", "New workspace", new_workspace(&c, None)),
    ];
    for (href, text, page) in pages {
        let html = page.into_string();
        assert_eq!(current_links(&html), vec![(href.to_string(), text.to_string())], "{href}");
    }
    // Pages outside the navigation mark nothing.
    assert!(current_links(&error_page_with(&c, 404, "x").into_string()).is_empty());
    // A page of another workspace than the one the navigation points into marks nothing.
    let other =
        sessions(&c, &f.workspaces[1], &[], false, SessionRights::default(), None).into_string();
    assert!(current_links(&other).is_empty());
    assert!(other.contains(r#"href="/w/acme/sessions""#));
}

#[test]
fn the_navigation_links_into_the_workspace_and_hides_management_from_members() {
    let f = fixture();
    let html = error_page_with(&ctx(&f, Some(CSRF)), 404, "x").into_string();
    let nav = &html[html.find("<nav").unwrap()..html.find("</nav>").unwrap()];
    for (href, text) in [
        ("/w/acme", "Dashboard"),
        ("/w/acme/sessions", "Sessions"),
        ("/w/acme/templates", "Templates"),
        ("/w/acme/members", "Members"),
        ("/w/acme/audit", "Audit log"),
        ("/w/acme/settings", "Settings"),
        ("/account", "Account"),
        ("/workspaces/new", "New workspace"),
    ] {
        assert!(nav.contains(&format!(r#"<a href="{href}">{text}</a>"#)), "{href} {text}");
    }
    // The account menu: a disclosure with the user's (escaped) name, holding the sign-out form.
    let menu_at = nav.find(r#"<details class="menu">"#).expect("an account menu");
    let menu = &nav[menu_at..nav[menu_at..].find("</details>").unwrap() + menu_at];
    assert!(menu.contains("&lt;script&gt;alert"), "the name, escaped");
    assert!(menu.contains("me@example.com"));
    assert!(menu.contains(r#"<a href="/account">Account</a>"#));
    let signout = r#"<form method="post" action="/signout" class="inline-form"><input type="hidden" name="csrf" value="csrf-tok&amp;en"><button class="linklike" type="submit">Sign out</button></form>"#;
    assert!(menu.contains(signout), "{menu}");
    assert_eq!(html.matches(r#"action="/signout""#).count(), 1);

    for role in ["member", "viewer", "someone-new"] {
        let mut workspaces = f.workspaces.clone();
        workspaces[0].role = role.into();
        let c = PageContext {
            workspaces: &workspaces,
            current_workspace: Some(&workspaces[0]),
            ..ctx(&f, None)
        };
        let html = error_page_with(&c, 404, "x").into_string();
        assert!(html.contains(r#"href="/w/acme/members""#), "{role}");
        assert!(html.contains(r#"href="/w/acme/sessions""#), "{role}");
        assert!(!html.contains("/w/acme/audit"), "{role} sees the audit link");
        assert!(!html.contains("/w/acme/settings"), "{role} sees the settings link");
    }
    for role in ["owner", "admin"] {
        let mut workspaces = f.workspaces.clone();
        workspaces[0].role = role.into();
        let c = PageContext {
            workspaces: &workspaces,
            current_workspace: Some(&workspaces[0]),
            ..ctx(&f, None)
        };
        let html = error_page_with(&c, 404, "x").into_string();
        assert!(
            html.contains(r#"href="/w/acme/audit""#) && html.contains(r#"href="/w/acme/settings""#)
        );
    }

    // Slugs are percent-encoded in every link.
    let odd = vec![sdk::WorkspaceSummary { slug: "a b".into(), ..f.workspaces[0].clone() }];
    let c = PageContext { workspaces: &odd, current_workspace: None, ..ctx(&f, None) };
    let html = sessions(&c, &odd[0], &[], false, SessionRights::default(), None).into_string();
    assert!(html.contains(r#"href="/w/a%20b/templates""#));
    assert!(html.contains(r#"data-live="/api/v1/workspaces/a%20b/sessions""#));
    assert_eq!(current_links(&html), vec![("/w/a%20b/sessions".into(), "Sessions".into())]);

    // Every page loads the live script, deferred.
    assert!(html.contains(&format!(r#"<script src="{}" defer>"#, crate::LIVE_JS_PATH)));
}

#[test]
fn session_tables_are_live_with_a_row_and_badge_per_session() {
    let f = fixture();
    let c = ctx(&f, None);
    let ws = &f.workspaces[0];
    for (name, html, expected, hide) in [
        (
            "dashboard",
            dashboard(&c, &dashboard_of(&f, ws, true)).into_string(),
            vec!["provisioning", "starting", "running", "sleeping", "stopping", "deleting"],
            "stopped deleted failed",
        ),
        (
            "sessions",
            sessions(&c, ws, &f.runtime, false, SessionRights::default(), None).into_string(),
            vec!["provisioning", "starting", "running", "sleeping", "stopping", "deleting"],
            "stopped deleted failed",
        ),
        (
            "sessions with ended",
            sessions(&c, ws, &f.runtime, true, SessionRights::default(), None).into_string(),
            sdk::SESSION_STATES.to_vec(),
            "",
        ),
    ] {
        let tags = start_tags(&html);
        let tables: Vec<_> = tags.iter().filter(|t| t.name == "table").collect();
        assert_eq!(tables.len(), 1, "{name}");
        assert_eq!(tables[0].attr("data-live"), Some("/api/v1/workspaces/acme/sessions"), "{name}");
        assert_eq!(tables[0].attr("data-live-hide"), Some(hide), "{name}");
        // The table sits in a horizontally scrolling, keyboard-reachable region.
        let wrapper =
            tags.iter().rev().find(|t| t.start < tables[0].start && t.name == "div").unwrap();
        assert_eq!(wrapper.attr("class"), Some("table-scroll"), "{name}");
        assert_eq!(wrapper.attr("tabindex"), Some("0"), "{name}");
        assert!(wrapper.attr("aria-label").is_some(), "{name}");

        let rows: Vec<&str> = tags
            .iter()
            .filter(|t| t.name == "tr")
            .filter_map(|t| t.attr("data-session-id"))
            .collect();
        let want: Vec<String> = expected.iter().map(|s| format!("ses-{s}")).collect();
        assert_eq!(rows, want, "{name}");
        let badges: Vec<(&str, &str)> = tags
            .iter()
            .filter(|t| t.name == "span" && t.has("data-state"))
            .map(|t| (t.attr("data-state").unwrap(), t.attr("class").unwrap()))
            .collect();
        assert_eq!(badges.len(), expected.len(), "{name}");
        for ((state, class), want) in badges.iter().zip(&expected) {
            assert_eq!(state, want, "{name}");
            assert_eq!(*class, format!("badge state state-{want}"), "{name}");
        }
        // The live indicator is there, for the script to show.
        assert!(html.contains(r#"<span class="live-updating">Updating…</span>"#), "{name}");
    }
    let html = sessions(&c, ws, &f.runtime, true, SessionRights::default(), None).into_string();
    assert!(html.contains(r#"<time datetime="2023-11-14T22:13:20Z""#), "last active");
    assert!(html.contains(">never<"), "never active");
    assert!(html.contains("(you)"), "own sessions are marked");
    assert!(html.contains("Other &lt;b&gt;"));
}

#[test]
fn empty_lists_say_what_to_do() {
    let f = fixture();
    let c = ctx(&f, None);
    let ws = &f.workspaces[0];
    let empty = sdk::Dashboard {
        workspace: ws.clone(),
        active_sessions: vec![],
        recent_activity: None,
        usage: usage(),
    };
    let html = dashboard(&c, &empty).into_string();
    let main = main_of(&html);
    assert!(main.contains("No sessions running"));
    assert!(main.contains(r#"href="/w/acme/templates""#), "links to the catalog");
    assert!(!main.contains("<table"));
    // Still watched: a session that starts shows up.
    assert!(
        main.contains(r#"<div class="empty-state" data-live="/api/v1/workspaces/acme/sessions""#)
    );
    assert!(!main.contains("Recent activity"), "no activity for roles without the audit log");

    let html = sessions(&c, ws, &[], false, SessionRights::default(), None).into_string();
    let main = main_of(&html);
    assert!(main.contains("No sessions yet."));
    assert!(main.contains("<code>flare session create</code>"));
    assert!(main.contains(r#"href="/w/acme/templates""#));
    assert!(main.contains(r#"data-live="/api/v1/workspaces/acme/sessions""#));

    let html =
        sessions(&c, ws, &ended_only(&f), false, SessionRights::default(), None).into_string();
    let main = main_of(&html);
    assert!(main.contains("3 stopped or failed sessions are hidden"));
    assert!(main.contains(r#"href="/w/acme/sessions?show_ended=true""#));

    let html = templates(&c, ws, &[], true, None).into_string();
    assert!(main_of(&html).contains("Owners and admins of this workspace publish templates"));
    assert!(main_of(&html).contains("As an admin, you can publish"));
    let html = templates(&c, &with_role(ws, "member"), &[], false, None).into_string();
    assert!(main_of(&html).contains("Ask an owner or admin"));
}

#[test]
fn the_sessions_filter_is_a_get_form_that_keeps_its_state() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    for show in [false, true] {
        let html = sessions(&c, ws, &f.runtime, show, SessionRights::default(), None).into_string();
        assert!(html.contains(
            r#"<form class="filter-form inline-filter" method="get" action="/w/acme/sessions">"#
        ));
        let tags = start_tags(&html);
        let check = tags.iter().find(|t| t.attr("id") == Some("show-ended")).unwrap();
        assert_eq!(
            (check.attr("type"), check.attr("name"), check.attr("value")),
            (Some("checkbox"), Some("show_ended"), Some("true"))
        );
        assert_eq!(check.has("checked"), show);
        assert!(html.contains(r#"<label for="show-ended">Show stopped and failed</label>"#));
    }
}

#[test]
fn the_dashboard_sums_up_usage_and_activity() {
    let f = fixture();
    let c = ctx(&f, None);
    let html = dashboard(&c, &dashboard_of(&f, &f.workspaces[0], true)).into_string();
    let main = main_of(&html);
    for needle in [
        "<dd>12,345 min</dd>",
        "<dd>67 min</dd>",
        "<dd>1.5 GiB</dd>",
        "<dd>4</dd>",
        r#"<time datetime="2023-11-14T22:13:20Z""#,
        "Recent activity",
        r#"href="/w/acme/audit""#,
        "<code>session.start</code>",
        "system",
        r#"href="/w/acme/sessions""#,
    ] {
        assert!(main.contains(needle), "{needle}");
    }
    let cards = start_tags(main).iter().filter(|t| t.name == "section").count();
    assert_eq!(cards, 3);
    let html = dashboard(&c, &dashboard_of(&f, &f.workspaces[0], false)).into_string();
    assert_eq!(start_tags(main_of(&html)).iter().filter(|t| t.name == "section").count(), 2);
}

#[test]
fn the_catalog_shows_versions_and_archived_templates_last() {
    let f = fixture();
    let html = templates(&ctx(&f, None), &f.workspaces[0], &f.templates, false, None).into_string();
    let main = main_of(&html);
    let rust = main.find(">rust</a></h2>").unwrap();
    let node = main.find(">node</a></h2>").unwrap();
    let old = main.find(" old</a></h2>").unwrap();
    assert!(rust < node && node < old, "caller's order, archived last");
    assert!(main.contains(r#"<span class="badge version">v2 &lt;b&gt;</span>"#));
    assert!(main.contains(r#"<span class="badge unpromoted">not promoted</span>"#));
    assert!(main.contains(r#"<span class="badge archived">archived</span>"#));
    assert_eq!(main.matches(r#"class="card template-card archived""#).count(), 1);
    assert!(main.contains("<dd>3</dd>") && main.contains("No description."));
}

#[test]
fn settings_can_be_changed_only_by_managers() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let html = settings(&c, ws, true).into_string();
    let main = main_of(&html);
    assert!(main.contains(r#"<form method="post" action="/w/acme/settings""#));
    let tags = start_tags(main);
    let name = tags.iter().find(|t| t.attr("name") == Some("name")).unwrap();
    assert_eq!((name.attr("id"), name.attr("maxlength")), (Some("ws-settings-name"), Some("100")));
    assert_eq!(name.attr("value"), Some(ws.name.as_str()), "prefilled, and escaped on the wire");
    assert!(name.has("required"));
    assert!(main.contains("<code>acme</code>") && main.contains("Shared"));
    assert!(main.contains(r#"<span class="badge role-admin">admin</span>"#));

    let html = settings(&c, &f.workspaces[1], false).into_string();
    let main = main_of(&html);
    assert!(!main.contains("<form"));
    assert!(main.contains("Only owners and admins"));
    assert!(main.contains("Personal"));
}

#[test]
fn the_live_script_speaks_the_pages_contract() {
    let js = crate::LIVE_JS;
    for needle in [
        "[data-live]",
        "data-session-id",
        "sessionId",
        "[data-state]",
        "dataset.liveHide",
        "visibilityState",
        "\"visible\"",
        "same-origin",
        "is-updating",
        "is-stale",
        "location.reload()",
        "badge state state-",
        "details.menu",
        "Escape",
        "5000",
    ] {
        assert!(js.contains(needle), "live.js lacks {needle}");
    }
    for state in sdk::SESSION_STATES {
        assert!(js.contains(&format!("\"{state}\"")), "live.js does not know {state}");
    }
    // The classes the script toggles are styled.
    for class in [".is-updating", ".is-stale", ".live-updating", ".live-stale", ".menu-panel"] {
        assert!(crate::STYLESHEET.contains(class), "app.css lacks {class}");
    }
    for state in sdk::SESSION_STATES {
        assert!(
            crate::STYLESHEET.contains(&format!(".badge.state-{state}")),
            "no colour for {state}"
        );
    }
}

// ---- templates, versions and builds ----

#[test]
fn the_catalog_links_each_template_and_offers_the_new_template_form_to_managers() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let html = templates(&c, ws, &f.templates, true, None).into_string();
    let main = main_of(&html);
    assert!(main.contains(r#"<h2><a href="/w/acme/templates/rust">rust</a></h2>"#), "{main}");
    // Names are percent-encoded in links and escaped in text.
    assert!(main.contains(
        r#"href="/w/acme/templates/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%27%26%20old""#
    ));
    assert!(main.contains(r#"<form method="post" action="/w/acme/templates" class="stack-form">"#));
    let tags = start_tags(main);
    let name = tags.iter().find(|t| t.attr("id") == Some("template-name")).unwrap();
    assert_eq!((name.attr("name"), name.attr("maxlength")), (Some("name"), Some("63")));
    assert_eq!(name.attr("pattern"), Some(r"[a-z][a-z0-9\-]{0,62}"));
    assert!(name.has("required") && !name.has("aria-invalid") && !name.has("autofocus"));
    let description = tags.iter().find(|t| t.attr("id") == Some("template-description")).unwrap();
    assert_eq!(
        (description.name.as_str(), description.attr("name")),
        ("textarea", Some("description"))
    );
    assert!(main.contains("<code>flare template upload NAME DIR</code>"));

    // A viewer (or member) gets no form, only the catalog.
    for role in ["viewer", "member"] {
        let html = templates(&c, &with_role(ws, role), &f.templates, false, None).into_string();
        let main = main_of(&html);
        assert!(!main.contains("<form"), "{role}");
        assert!(!main.contains("New template"), "{role}");
        assert!(main.contains(r#"href="/w/acme/templates/rust""#), "{role}");
    }
}

#[test]
fn a_failed_new_template_form_comes_back_with_its_values_and_the_field_marked() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let form = NewTemplate {
        name: "Bad Name",
        description: "keeps <this>",
        error: Some("name: name \"Bad Name\" must start with a lowercase letter a-z"),
        field: Some("name"),
    };
    let html = templates(&c, ws, &[], true, Some(&form)).into_string();
    let main = main_of(&html);
    assert!(main.contains(
        r#"<div class="flash error" id="new-template-error" role="alert">name: name &quot;Bad Name&quot; must start"#
    ));
    let tags = start_tags(main);
    let name = tags.iter().find(|t| t.attr("id") == Some("template-name")).unwrap();
    assert_eq!(name.attr("value"), Some("Bad Name"));
    assert_eq!(name.attr("aria-invalid"), Some("true"));
    assert!(name.has("autofocus"));
    assert_eq!(name.attr("aria-describedby"), Some("new-template-error template-name-hint"));
    let description = tags.iter().find(|t| t.attr("id") == Some("template-description")).unwrap();
    assert!(!description.has("aria-invalid"));
    assert!(main.contains(">keeps &lt;this&gt;</textarea>"));

    let form = NewTemplate { field: Some("description"), ..form };
    let html = templates(&c, ws, &[], true, Some(&form)).into_string();
    let tags = start_tags(main_of(&html));
    let description = tags.iter().find(|t| t.attr("id") == Some("template-description")).unwrap();
    assert_eq!(description.attr("aria-invalid"), Some("true"));
    let name = tags.iter().find(|t| t.attr("id") == Some("template-name")).unwrap();
    assert!(!name.has("aria-invalid"));
}

#[test]
fn a_secret_value_never_reaches_the_template_page() {
    let f = fixture();
    for can_manage in [true, false] {
        let html = template_detail(
            &ctx(&f, Some(CSRF)),
            &f.workspaces[0],
            &f.detail,
            &f.versions,
            &f.builds,
            can_manage,
        )
        .into_string();
        assert!(!html.contains(SECRET_VALUE), "a secret value is on the page");
        let main = main_of(&html);
        assert!(main.contains("<td><code>API_KEY</code></td>"));
        assert!(main.contains(r#"<span class="badge masked""#) && main.contains(">secret</span>"));
        assert!(main.contains("<td><code>RUST_LOG</code></td><td><code>debug</code></td>"));
        assert!(main.contains("(empty)"));
    }
}

#[test]
fn the_template_page_shows_the_manifest_versions_and_builds() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let html = template_detail(&c, &f.workspaces[0], &f.detail, &f.versions, &f.builds, true)
        .into_string();
    let main = main_of(&html);
    for needle in [
        // Overview and the way back.
        r#"<a href="/w/acme/templates">Templates</a>"#,
        r#"<span class="badge version">v1</span>"#,
        r#"v3 <span class="badge vstate vstate-building">building</span>"#,
        // The upload command, exactly.
        r#"<pre class="command" id="upload-command" aria-label="Upload command"><code>flare template upload rust . --workspace acme</code></pre>"#,
        r#"data-copy="upload-command""#,
        // The manifest of v1, the newest built version.
        "of v1, the newest built version",
        "<code>ubuntu:24.04</code>",
        "1.5 CPU · 4.0 GiB memory · 20 GiB disk",
        "45 min",
        "<li><code>/home/dev</code></li>",
        "<td><code>8080</code></td><td>web</td><td>http</td>",
        "<td><code>5432</code></td><td></td><td>tcp</td>",
        "<td><code>team</code></td>",
        // Versions: size, hash and digest prefixes, the active one, the latest build.
        r#"<th scope="row">v1 <span class="badge current">active</span></th>"#,
        r#"<td class="nowrap">1.5 KiB</td>"#,
        r#"<code title="0123456789abcdef000000000000000000000000000000000000000000000000">0123456789ab</code>"#,
        r#">sha256:abababababab</code>"#,
        r#"<a href="/w/acme/builds/b-2">Build 1</a> <span class="badge build build-failed" data-build-state="failed">failed</span>"#,
        r#"<span class="badge vstate vstate-built">built</span>"#,
        // Builds: links, who, when, how long.
        r#"<tr data-build-id="b-3">"#,
        r#"<a href="/w/acme/builds/b-1">Attempt 1"#,
        r#"<span class="badge build build-building" data-build-state="building">building</span>"#,
        "2m 05s",
        ">running<",
    ] {
        assert!(main.contains(needle), "{needle} is missing from {main}");
    }
    // The archive form, for managers, asks first.
    assert!(main.contains(r#"<form method="post" action="/w/acme/templates/rust/archive" class="inline-form" data-confirm="#));

    // Nothing to show yet.
    let html = template_detail(&c, &f.workspaces[0], &empty_detail(), &[], &[], true).into_string();
    let main = main_of(&html);
    assert!(main.contains("No version has built yet."));
    assert!(main.contains("No versions yet."));
    assert!(main.contains("No builds yet"));
    assert!(main.contains(r#"<span class="badge unpromoted">not promoted</span>"#));
    assert!(!main.contains("<table"));
}

#[test]
fn only_managers_of_a_live_template_can_archive_it() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let viewer =
        template_detail(&c, &with_role(ws, "viewer"), &f.detail, &f.versions, &f.builds, false)
            .into_string();
    assert!(!main_of(&viewer).contains("<form"), "a viewer gets no forms");
    assert!(!viewer.contains("/archive"));

    let archived = sdk::TemplateDetail { archived_at: Some(1_700_000_000_000), ..f.detail.clone() };
    let html = template_detail(&c, ws, &archived, &f.versions, &f.builds, true).into_string();
    let main = main_of(&html);
    assert!(!main.contains("/archive"), "already archived");
    assert!(main.contains(r#"<span class="badge archived">archived</span>"#));
    assert!(main.contains("takes no new versions"));
    assert!(!main.contains("upload-command"), "no upload command for an archived template");
}

#[test]
fn the_build_page_shows_the_log_the_error_and_the_right_buttons() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let [running, failed, succeeded] = [&f.builds[0], &f.builds[1], &f.builds[2]];

    // Running: the log so far, the script that follows it, Cancel shown and Retry waiting.
    let html = build_page(&c, ws, running, Some(&log_of(running, false)), true).into_string();
    let main = main_of(&html);
    let tags = start_tags(main);
    let pre = tags.iter().find(|t| t.name == "pre" && t.attr("id") == Some("build-log")).unwrap();
    assert_eq!(pre.attr("data-build-log"), Some("/api/v1/workspaces/acme/builds/b-3/log"));
    assert_eq!((pre.attr("data-next"), pre.attr("data-done")), (Some("2"), Some("false")));
    assert_eq!(pre.attr("role"), Some("log"));
    assert!(main.contains("step 1/7: FROM ubuntu\n&lt;script&gt;alert"), "the log, escaped");
    assert!(
        main.contains(&format!(r#"<script src="{}" defer></script>"#, crate::BUILD_LOG_JS_PATH))
    );
    let cancel = tags.iter().find(|t| t.attr("data-build-action") == Some("cancel")).unwrap();
    assert_eq!(cancel.attr("action"), Some("/w/acme/builds/b-3/cancel"));
    assert!(!cancel.has("hidden"));
    let retry = tags.iter().find(|t| t.attr("data-build-action") == Some("retry")).unwrap();
    assert_eq!(retry.attr("action"), Some("/w/acme/builds/b-3/retry"));
    assert!(retry.has("hidden"), "no retry while it runs");
    let error = tags.iter().find(|t| t.attr("id") == Some("build-error")).unwrap();
    assert!(error.has("hidden"));
    assert!(main.contains(
        r#"<span class="badge build build-building" data-build-state="building">building</span>"#
    ));
    assert!(main.contains("<code>temporal workflow show -w build-tv-3-1</code>"));
    assert!(main.contains(r#"<a href="/w/acme/templates/rust">rust</a>"#), "back to the template");
    assert!(main.contains(r#"<a href="/w/acme/builds/b-3">Reload</a>"#));
    assert!(!html.contains("http-equiv"), "no meta refresh");

    // Failed: the error up front, Retry, no Cancel, no script once the log is complete.
    let html = build_page(&c, ws, failed, Some(&log_of(failed, true)), true).into_string();
    let main = main_of(&html);
    let tags = start_tags(main);
    let error = tags.iter().find(|t| t.attr("id") == Some("build-error")).unwrap();
    assert!(!error.has("hidden") && error.attr("role") == Some("alert"));
    assert!(main.contains("step 3/7: &lt;script&gt;alert"));
    let retry = tags.iter().find(|t| t.attr("data-build-action") == Some("retry")).unwrap();
    assert!(!retry.has("hidden"));
    assert!(!main.contains("/cancel"));
    assert!(!html.contains(crate::BUILD_LOG_JS_PATH));
    assert!(main.contains(r#"data-done="true""#));
    assert!(main.contains("2m 05s"));

    // Succeeded: the image, nothing to retry or cancel.
    let html = build_page(&c, ws, succeeded, Some(&log_of(succeeded, true)), true).into_string();
    let main = main_of(&html);
    assert!(!main.contains("<form"));
    assert!(main.contains("<code>registry.local/burstflare/t:v1</code>"));
    assert!(main.contains(&format!("<code>sha256:{}</code>", "ab".repeat(32))));

    // A viewer sees the same build with no buttons at all.
    for b in [running, failed] {
        let html = build_page(&c, &with_role(ws, "viewer"), b, Some(&log_of(b, false)), false)
            .into_string();
        let main = main_of(&html);
        assert!(!main.contains("<form"), "{}", b.status);
        assert!(!main.contains("/retry") && !main.contains("/cancel"), "{}", b.status);
    }

    // A log that could not be read: said so, and the script keeps trying.
    let html = build_page(&c, ws, succeeded, None, true).into_string();
    assert!(main_of(&html).contains("The log could not be read just now."));
    assert!(html.contains(crate::BUILD_LOG_JS_PATH));
    assert!(main_of(&html).contains(r#"data-next="0""#));
}

#[test]
fn build_and_version_badges_carry_a_class_per_state() {
    for state in sdk::BUILD_STATES {
        assert_eq!(
            crate::components::build_badge(state).into_string(),
            format!(
                r#"<span class="badge build build-{state}" data-build-state="{state}">{state}</span>"#
            )
        );
        assert!(
            crate::STYLESHEET.contains(&format!(".badge.build-{state}")),
            "no colour for {state}"
        );
        assert!(
            crate::BUILD_LOG_JS.contains(&format!("\"{state}\"")),
            "build-log.js lacks {state}"
        );
    }
    for state in sdk::VERSION_STATES {
        assert_eq!(
            crate::components::version_badge(state).into_string(),
            format!(r#"<span class="badge vstate vstate-{state}">{state}</span>"#)
        );
        assert!(
            crate::STYLESHEET.contains(&format!(".badge.vstate-{state}")),
            "no colour for {state}"
        );
    }
    let odd = crate::components::build_badge("x\" y").into_string();
    assert!(odd.contains(r#"class="badge build build-unknown""#), "{odd}");
    assert_eq!(crate::components::version_label("12"), "v12");
    assert_eq!(crate::components::version_label("v1"), "v1");
    assert_eq!(crate::components::format_duration(5_000), "5s");
    assert_eq!(crate::components::format_duration(3_725_000), "1h 02m");
    assert_eq!(crate::components::format_duration(-1), "0s");
}

#[test]
fn the_build_log_script_speaks_the_pages_and_the_api_contract() {
    let js = crate::BUILD_LOG_JS;
    for needle in [
        "pre[data-build-log]",
        "dataset.buildLog",
        "dataset.next",
        "?from=",
        "body.next",
        "body.text",
        "body.done",
        "body.build",
        "[data-build-state]",
        "badge build build-",
        "build-error",
        "build-error-text",
        "build-log-empty",
        "form[data-build-action='retry']",
        "form[data-build-action='cancel']",
        "same-origin",
        "visibilityState",
        "is-updating",
        "is-stale",
        "scrollTop",
        "createTextNode",
        "1000",
        "build-image",
        "build-digest",
        "build-started",
        "build-finished",
        "build-duration",
        "image_ref",
        "image_digest",
        "started_at",
        "finished_at",
    ] {
        assert!(js.contains(needle), "build-log.js lacks {needle}");
    }
    // The details the script fills in are there to fill.
    let f = fixture();
    let b = &f.builds[0];
    let html = build_page(&ctx(&f, None), &f.workspaces[0], b, None, false).into_string();
    for id in ["build-image", "build-digest", "build-started", "build-finished", "build-duration"] {
        assert!(html.contains(&format!(r#"<dd id="{id}">"#)), "no #{id}");
    }
    assert!(!js.contains("innerHTML"), "log text is only ever inserted as text");
    for class in [".build-log", ".command", ".breadcrumb", ".badge.masked"] {
        assert!(crate::STYLESHEET.contains(class), "app.css lacks {class}");
    }
}

// ---- sessions: controls, the new session form, the session page ----

/// The POST forms of `html` (within `<main>`), as (action, hidden, `next`, `data-states`).
fn control_forms(html: &str) -> Vec<(String, bool, String, String)> {
    session_forms(main_of(html))
}

/// The session control forms (`data-session-op`) in `main`, as (action, hidden, `next`,
/// `data-states`).
fn session_forms(main: &str) -> Vec<(String, bool, String, String)> {
    let tags = start_tags(main);
    tags.iter()
        .filter(|t| t.name == "form" && t.attr("method") == Some("post"))
        .filter(|t| t.has("data-session-op"))
        .map(|form| {
            let end = form.start + main[form.start..].find("</form>").unwrap();
            let next = tags
                .iter()
                .filter(|t| t.start > form.start && t.start < end)
                .find(|t| t.name == "input" && t.attr("name") == Some("next"))
                .and_then(|t| t.attr("value"))
                .unwrap_or_default()
                .to_string();
            (
                form.attr("action").unwrap().to_string(),
                form.has("hidden"),
                next,
                form.attr("data-states").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The visible control forms' actions of `html`.
fn visible_controls(html: &str) -> Vec<String> {
    control_forms(html).into_iter().filter(|f| !f.1).map(|f| f.0).collect()
}

#[test]
fn session_controls_follow_the_state_and_the_role() {
    let all = |state: &str, rights, mine| session_controls(state, rights, mine);
    // Their own sessions, for members and up.
    for rights in [MEMBER, MANAGER] {
        assert_eq!(all("running", rights, true), ["stop", "sleep", "restart", "delete"]);
        assert_eq!(all("sleeping", rights, true), ["start", "delete"]);
        assert_eq!(all("stopped", rights, true), ["start", "delete"]);
        for state in ["provisioning", "starting", "stopping", "failed"] {
            assert_eq!(all(state, rights, true), ["delete"], "{state}");
        }
        for state in ["deleting", "deleted", "no-such-state"] {
            assert!(all(state, rights, true).is_empty(), "{state}");
        }
    }
    // Other people's: owners and admins stop and delete them; members cannot touch them.
    assert_eq!(all("running", MANAGER, false), ["stop", "delete"]);
    assert_eq!(all("sleeping", MANAGER, false), ["delete"]);
    assert!(all("deleted", MANAGER, false).is_empty());
    for state in sdk::SESSION_STATES {
        assert!(all(state, MEMBER, false).is_empty(), "member, someone else's {state}");
        // Viewers only look, even at sessions that would be theirs.
        assert!(all(state, VIEWER, true).is_empty(), "viewer, {state}");
        assert!(all(state, VIEWER, false).is_empty(), "viewer, {state}");
        // Every state has a colour and both scripts know it.
        assert!(crate::STYLESHEET.contains(&format!(".badge.state-{state}")), "{state}");
        assert!(crate::SESSION_JS.contains(&format!("\"{state}\"")), "session.js: {state}");
        assert!(crate::LIVE_JS.contains(&format!("\"{state}\"")), "live.js: {state}");
    }
    // Only the operations the API has, plus delete.
    for op in crate::components::SESSION_CONTROLS {
        assert!(op == "delete" || sdk::SESSION_OPS.contains(&op), "{op}");
    }
}

#[test]
fn session_rows_link_to_their_page_and_hold_the_controls_for_their_state() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    for (rights, show_ended) in [(MANAGER, true), (MEMBER, true), (MANAGER, false)] {
        let html = sessions(&c, ws, &f.runtime, show_ended, rights, None).into_string();
        let next = if show_ended { "/w/acme/sessions?show_ended=true" } else { "/w/acme/sessions" };
        let mut want = Vec::new();
        let ended = ["stopped", "deleted", "failed"];
        for s in f.runtime.iter().filter(|s| show_ended || !ended.contains(&s.state.as_str())) {
            let link = format!(r#"<th scope="row"><a href="/w/acme/sessions/{}">"#, s.id);
            assert!(html.contains(&link), "{link}");
            let mine = s.owner.id == "u-me";
            for op in session_controls(&s.state, rights, mine) {
                want.push(format!("/w/acme/sessions/{}/{op}", s.id));
            }
        }
        assert!(!want.is_empty());
        assert_eq!(visible_controls(&html), want, "{rights:?}");
        for (action, _, form_next, states) in control_forms(&html) {
            assert_eq!(form_next, next, "{action}");
            let op = action.rsplit('/').next().unwrap();
            assert_eq!(states, crate::components::control_states(op).join(" "), "{action}");
        }
        assert!(html.contains(r#"<th scope="col">Actions</th>"#));
        // Deleting asks first (with the script).
        assert!(html.contains(r#"action="/w/acme/sessions/ses-running/delete" class="inline-form" data-session-op="delete""#));
        assert!(html.contains("data-confirm=\"Delete the session &lt;script&gt;"));
    }
    // A member gets no controls on other people's sessions, not even hidden ones.
    let html = sessions(&c, ws, &f.runtime, true, MEMBER, None).into_string();
    assert!(!html.contains("/w/acme/sessions/ses-starting/"), "someone else's session");
    assert!(html.contains("/w/acme/sessions/ses-provisioning/delete"));
    // The dashboard lists sessions without controls.
    let html = dashboard(&c, &dashboard_of(&f, ws, true)).into_string();
    assert!(control_forms(&html).is_empty());
    assert!(html.contains(r#"<a href="/w/acme/sessions/ses-running">"#));
}

#[test]
fn a_viewer_sees_sessions_without_any_control() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = with_role(&f.workspaces[0], "viewer");
    let html = sessions(&c, &ws, &f.runtime, true, VIEWER, None).into_string();
    let main = main_of(&html);
    assert!(!main.contains(r#"method="post""#), "a POST form for a viewer");
    assert!(!main.contains("Actions") && !main.contains("New session"));
    assert_eq!(main.matches("data-session-id=").count(), f.runtime.len());
    for state in sdk::SESSION_STATES {
        let s = sample_session(state, "u-me");
        let html = session_detail(&c, &ws, &s, Some(&sample_why()), &sample_events(), VIEWER)
            .into_string();
        let main = main_of(&html);
        assert!(!main.contains(r#"method="post""#), "{state}: a POST form for a viewer");
        assert!(!main.contains("session-controls"), "{state}");
    }
}

#[test]
fn the_new_session_form_offers_the_templates_with_a_built_version() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let startable = startable();
    let new = NewSession { templates: &startable, idempotency_key: "k-<1>" };
    let html = sessions(&c, ws, &f.runtime, false, MEMBER, Some(&new)).into_string();
    let main = main_of(&html);
    assert!(main.contains(r#"<h2 id="new-session-heading">New session</h2>"#));
    assert!(main.contains(r#"<form method="post" action="/w/acme/sessions" class="stack-form">"#));
    assert!(main.contains(r#"<input type="hidden" name="idempotency_key" value="k-&lt;1&gt;">"#));
    let tags = start_tags(main);
    let select = tags.iter().find(|t| t.attr("id") == Some("new-session-template")).unwrap();
    assert_eq!((select.name.as_str(), select.attr("name")), ("select", Some("template")));
    assert!(select.has("required"));
    let options: Vec<&str> =
        tags.iter().filter(|t| t.name == "option").filter_map(|t| t.attr("value")).collect();
    assert_eq!(options, ["rust", &format!("{EVIL} tpl")]);
    assert!(main.contains(">rust (v2)</option>"));
    assert!(main.contains("&lt;/script&gt;'&amp; tpl (v1)</option>"));
    let name = tags.iter().find(|t| t.attr("id") == Some("new-session-name")).unwrap();
    assert_eq!(name.attr("name"), Some("name"));
    assert!(!name.has("required"), "the name is optional");

    // No template with a built version: said so, no form.
    let none = NewSession { templates: &[], idempotency_key: "k" };
    let html = sessions(&c, ws, &[], false, MEMBER, Some(&none)).into_string();
    let main = main_of(&html);
    assert!(main.contains("No template has a built version yet"));
    assert!(!main.contains(r#"<form method="post" action="/w/acme/sessions""#));
    assert!(!main.contains("with the form below"));
    let html = sessions(&c, ws, &[], false, MEMBER, Some(&new)).into_string();
    assert!(main_of(&html).contains("with the form below"), "the empty list points at the form");
}

#[test]
fn the_session_page_shows_its_details_why_events_and_controls() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let s = sample_session("running", "u-me");
    let html =
        session_detail(&c, ws, &s, Some(&sample_why()), &sample_events(), MEMBER).into_string();
    let main = main_of(&html);
    let path = "/w/acme/sessions/ses-running";
    assert!(main.contains(
        r#"<p class="lead session-status">State: <span class="badge state state-running" data-state="running">running</span></p>"#
    ));
    assert!(main.contains(r#"<a href="/w/acme/templates/rust">rust v2</a>"#));
    assert!(main.contains(r#"<a href="/w/acme/sessions">Sessions</a>"#), "breadcrumb");
    assert!(main.contains(r#"<dd id="session-node"><code>node-1 &lt;a&gt;</code></dd>"#));
    assert!(main.contains("(you)"));
    assert!(main.contains(r#"<dd id="session-last-active"><span class="muted">never</span></dd>"#));
    assert!(main.contains(r#"<dd id="session-stopped"><span class="muted">—</span></dd>"#));
    assert!(main.contains("<code>session-ses-running</code>"));
    // No error: the notice is there, hidden, for the script.
    assert!(main.contains(r#"id="session-error" role="alert" hidden"#));
    // The controls for a running session of one's own, coming back here.
    assert_eq!(
        visible_controls(&html),
        ["stop", "sleep", "restart", "delete"].map(|op| format!("{path}/{op}"))
    );
    assert!(control_forms(&html).iter().all(|f| f.2 == path));
    assert!(control_forms(&html).iter().any(|f| f.0.ends_with("/start") && f.1), "start, hidden");
    // Why.
    for needle in [
        "<dd>waiting for the agent</dd>",
        "<dd>3</dd>",
        "<li><code>sleep</code></li><li><code>stop</code></li>",
        "agent did not answer: &lt;script&gt;",
        "<dd>4</dd>",
        r#"<time datetime="2023-11-14T22:43:20Z" title="UTC">2023-11-14 22:43</time>"#,
    ] {
        assert!(main.contains(needle), "why: {needle}");
    }
    // Events, oldest first, to the second, details in one line, escaped.
    let tags = start_tags(main);
    let seqs: Vec<&str> =
        tags.iter().filter(|t| t.name == "li").filter_map(|t| t.attr("data-seq")).collect();
    assert_eq!(seqs, ["1", "2", "7"]);
    assert!(main.contains(
        r#"<li data-seq="1"><time datetime="2023-11-14T22:13:20Z" title="UTC">2023-11-14 22:13:20</time> <code class="event-kind">state.provisioning</code></li>"#
    ));
    // (Keys in the order the JSON has them: sorted, unless serde_json preserves order.)
    let detail = main.find(r#"<span class="session-event-detail">"#).unwrap();
    let detail = &main[detail..detail + main[detail..].find("</span>").unwrap()];
    assert!(detail.contains("attempt=2"), "{detail}");
    assert!(
        detail.contains("by=&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'&amp;"),
        "{detail}"
    );
    assert!(
        main.contains(r#"<code class="event-kind">state.running</code></li>"#),
        "{{}} shows nothing"
    );
    let list =
        start_tags(main).into_iter().find(|t| t.attr("id") == Some("session-events")).unwrap();
    assert_eq!(
        list.attr("data-session-events"),
        Some("/api/v1/workspaces/acme/sessions/ses-running/events")
    );
    assert_eq!(list.attr("data-session"), Some("/api/v1/workspaces/acme/sessions/ses-running"));
    assert_eq!((list.attr("data-after"), list.attr("data-done")), (Some("7"), Some("false")));
    assert!(main.contains(r#"<p class="muted" id="session-events-empty" hidden>"#));
    assert!(html.contains(&format!(r#"<script src="{}" defer>"#, crate::SESSION_JS_PATH)));
    assert!(main.contains(&format!(r#"<a href="{path}">Reload</a>"#)), "works without the script");

    // Failed, someone else's, seen by an admin: the error stands out; stop is not offered
    // while it is not running, delete is; the workflow could not be asked.
    let s = sample_session("failed", "u-2");
    let html = session_detail(&c, ws, &s, None, &[], MANAGER).into_string();
    let main = main_of(&html);
    assert!(
        main.contains(
            r#"<div class="notice error session-error" id="session-error" role="alert">"#
        )
    );
    assert!(main.contains("This session failed: "));
    assert!(main.contains("the container exited: &lt;script&gt;"));
    assert_eq!(visible_controls(&html), ["/w/acme/sessions/ses-failed/delete"]);
    assert_eq!(control_forms(&html).len(), 2, "stop (hidden) and delete only");
    assert!(main.contains("could not be asked just now"));
    assert!(main.contains(r#"<p class="muted" id="session-events-empty">No events yet.</p>"#));
    assert!(main.contains(r#"data-after="0""#));
    assert!(!main.contains("(you)"));

    // A member looking at someone else's session: no controls at all.
    let html = session_detail(&c, ws, &s, None, &[], MEMBER).into_string();
    assert!(control_forms(&html).is_empty() && !html.contains("session-controls"));

    // Deleted: said so, nothing to do, nothing to poll.
    let s = sample_session("deleted", "u-me");
    let html = session_detail(&c, ws, &s, None, &sample_events(), MEMBER).into_string();
    let main = main_of(&html);
    assert!(visible_controls(&html).is_empty());
    assert!(main.contains(r#"<p class="notice" id="session-deleted" role="status">"#));
    assert!(main.contains(r#"data-done="true""#));
    assert!(!html.contains(crate::SESSION_JS_PATH));
    // Not the current page of the navigation, but in the workspace's.
    assert!(current_links(&html).is_empty());
}

#[test]
fn only_the_newest_events_are_rendered() {
    let f = fixture();
    let events: Vec<sdk::SessionEvent> = (1..=MAX_EVENTS_SHOWN as u64 + 3)
        .map(|seq| sdk::SessionEvent {
            seq,
            kind: format!("k{seq}"),
            detail: serde_json::json!("text"),
            at: 0,
        })
        .collect();
    let s = sample_session("running", "u-me");
    let html =
        session_detail(&ctx(&f, None), &f.workspaces[0], &s, None, &events, MEMBER).into_string();
    assert!(html.contains("The 3 oldest events are not shown."));
    assert!(!html.contains(r#"data-seq="3""#) && html.contains(r#"data-seq="4""#));
    assert!(html.contains(&format!(r#"data-after="{}""#, MAX_EVENTS_SHOWN + 3)));
    assert!(html.contains(r#"<span class="session-event-detail">text</span>"#));
}

#[test]
fn the_session_script_speaks_the_pages_and_the_api_contract() {
    let js = crate::SESSION_JS;
    for needle in [
        "ol[data-session-events]",
        "dataset.sessionEvents",
        "dataset.session",
        "dataset.after",
        "dataset.done",
        "?after=",
        "e.seq",
        "e.kind",
        "e.detail",
        "e.at",
        "dataset.seq",
        "event-kind",
        "session-event-detail",
        ".session-status [data-state]",
        "badge state state-",
        "session-error",
        "session-error-text",
        "session-error-title",
        "This session failed: ",
        "session-deleted",
        "session-events-empty",
        "session-node",
        "session-started",
        "session-stopped",
        "session-last-active",
        "session-updated",
        "started_at",
        "stopped_at",
        "last_active_at",
        "updated_at",
        "s.node",
        "s.error",
        "form[data-states]",
        "dataset.states",
        "\"deleted\"",
        "404",
        "same-origin",
        "visibilityState",
        "is-updating",
        "is-stale",
        "2000",
    ] {
        assert!(js.contains(needle), "session.js lacks {needle}");
    }
    assert!(!js.contains("innerHTML"), "event text is only ever inserted as text");
    // The list's rows follow their state too.
    assert!(crate::LIVE_JS.contains("form[data-states]"));
    for class in [".session-events", ".session-events-scroll", ".session-error", ".session-actions"]
    {
        assert!(crate::STYLESHEET.contains(class), "app.css lacks {class}");
    }
    // What the page renders for the script to update is there.
    let f = fixture();
    let s = sample_session("starting", "u-me");
    let html =
        session_detail(&ctx(&f, None), &f.workspaces[0], &s, None, &[], MEMBER).into_string();
    for id in [
        "session-node",
        "session-started",
        "session-stopped",
        "session-last-active",
        "session-updated",
    ] {
        assert!(html.contains(&format!(r#"<dd id="{id}">"#)), "no #{id}");
    }
    for id in ["session-error", "session-error-text", "session-error-title", "session-deleted"] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "no #{id}");
    }
}

#[test]
fn event_details_read_as_one_line() {
    let e = |detail| sdk::SessionEvent { seq: 1, kind: "k".into(), detail, at: 0 };
    use super::sessions::event_detail_text as text;
    assert_eq!(text(&e(serde_json::Value::Null)), None);
    assert_eq!(text(&e(serde_json::json!({}))), None);
    assert_eq!(text(&e(serde_json::json!("hi"))).as_deref(), Some("hi"));
    assert_eq!(text(&e(serde_json::json!(3))).as_deref(), Some("3"));
    assert_eq!(text(&e(serde_json::json!([1, "a"]))).as_deref(), Some(r#"[1,"a"]"#));
    let line = text(&e(serde_json::json!({"op": "sleep", "n": 2, "ok": true, "x": null}))).unwrap();
    let mut pairs: Vec<&str> = line.split(' ').collect();
    pairs.sort_unstable();
    assert_eq!(pairs, ["n=2", "ok=true", "op=sleep", "x=null"]);
}

// ---- the browser terminal and the session's Connect card ----

/// Asserts `html` is well-formed: every element but the void ones is closed, in order.
fn assert_well_formed(name: &str, html: &str) {
    const VOID: [&str; 8] = ["meta", "link", "input", "br", "img", "hr", "source", "wbr"];
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let at = i + off;
        let end = at + html[at..].find('>').unwrap_or_else(|| panic!("{name}: unclosed tag"));
        let tag = &html[at + 1..end];
        i = end + 1;
        if tag.starts_with('!') {
            continue;
        }
        if let Some(closing) = tag.strip_prefix('/') {
            let top = open.pop().unwrap_or_else(|| panic!("{name}: </{closing}> closes nothing"));
            assert_eq!(top, closing, "{name}: <{top}> closed by </{closing}>");
            continue;
        }
        let tag_name: String =
            tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>();
        assert!(!tag_name.is_empty(), "{name}: a stray < before {tag:?}");
        if !VOID.contains(&tag_name.as_str()) && !tag.ends_with('/') {
            open.push(tag_name);
        }
    }
    assert!(open.is_empty(), "{name}: never closed: {open:?}");
}

/// A running session of the fixture's viewer with a name as sessions really have.
fn plain_session(state: &str) -> sdk::SessionDetail {
    sdk::SessionDetail { name: "dev-abcd".into(), ..sample_session(state, "u-me") }
}

#[test]
fn every_page_is_well_formed() {
    let f = fixture();
    for (name, html) in all_pages(&f, Some(CSRF)) {
        assert_well_formed(name, &html);
    }
}

#[test]
fn the_terminal_page_is_a_full_page_terminal_with_hooks_for_its_script() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let s = sample_session("running", "u-me");
    let html = terminal(&c, ws, &s, Some(&sample_why()), MEMBER).into_string();
    assert_well_formed("terminal", &html);
    let tags = start_tags(&html);
    let by_id = |id: &str| {
        tags.iter().find(|t| t.attr("id") == Some(id)).unwrap_or_else(|| panic!("no #{id}"))
    };

    // The terminal's element and what the script reads from it.
    let screen = by_id("terminal");
    assert_eq!(screen.name, "div");
    assert_eq!(
        screen.attr("data-terminal"),
        Some("/api/v1/workspaces/acme/sessions/ses-running/terminal")
    );
    assert_eq!(screen.attr("data-session"), Some("/api/v1/workspaces/acme/sessions/ses-running"));
    assert_eq!(screen.attr("data-why"), Some("/api/v1/workspaces/acme/sessions/ses-running/why"));
    assert_eq!(screen.attr("data-session-id"), Some("ses-running"));
    assert_eq!(screen.attr("data-session-page"), Some("/w/acme/sessions/ses-running"));
    let status = by_id("terminal-status");
    assert_eq!(status.attr("data-state"), Some("connecting"));
    assert_eq!(status.attr("role"), Some("status"));
    assert_eq!(status.attr("aria-live"), Some("polite"));
    for button in ["terminal-new-shell", "terminal-reconnect"] {
        let b = by_id(button);
        assert_eq!((b.name.as_str(), b.attr("type")), ("button", Some("button")), "{button}");
        assert!(b.has("hidden"), "{button} shows only when it applies");
    }
    assert!(html.contains(">Start a new shell</button>"));
    assert!(html.contains("<noscript>"), "says it needs JavaScript");

    // Our scripts only, from our origin, in order, none inline; xterm.js's stylesheet too.
    let scripts: Vec<&str> =
        tags.iter().filter(|t| t.name == "script").map(|t| t.attr("src").unwrap()).collect();
    assert_eq!(scripts, [crate::XTERM_JS_PATH, crate::XTERM_FIT_JS_PATH, crate::TERMINAL_JS_PATH]);
    assert_eq!(html.matches("<script").count(), html.matches("defer></script>").count());
    assert!(html.contains(&format!(r#"<link rel="stylesheet" href="{}">"#, crate::XTERM_CSS_PATH)));
    assert!(
        html.contains(&format!(r#"<link rel="stylesheet" href="{}">"#, crate::STYLESHEET_PATH))
    );
    assert!(html.contains(r#"<meta name="csrf-token" content="csrf-tok&amp;en">"#));

    // The bar: name (escaped), state, template, owner, deadlines, the way back, help.
    assert!(html.contains(r#"<h1 class="terminal-title">&lt;script&gt;alert"#));
    assert!(html.contains(
        r#"<span class="session-status"><span class="badge state state-running" data-state="running">running</span></span>"#
    ));
    assert!(html.contains("rust v2"));
    assert!(html.contains("&lt;/script&gt;'&amp; owner"));
    assert!(html.contains(r#"<a class="terminal-back" href="/w/acme/sessions/ses-running">"#));
    let idle = by_id("terminal-idle");
    assert_eq!(idle.attr("data-idle-deadline"), Some("1700001800000"));
    assert!(!by_id("terminal-idle-part").has("hidden"));
    assert!(
        html.contains(r#"<span id="terminal-idle-deadline"><time datetime="2023-11-14T22:43:20Z""#)
    );
    assert!(html.contains(r#"<span id="terminal-last-active"><span class="muted">never</span>"#));
    for key in ["Ctrl+Shift+C", "Ctrl+Shift+V", "⌘C", "⌘V"] {
        assert!(html.contains(&format!("<kbd>{key}</kbd>")), "help: {key}");
    }

    // Sleep, Stop and Restart (back to the session's page), Start hidden (back here), with
    // the CSRF token and the session's name for screen readers.
    let forms = session_forms(&html);
    let page = "/w/acme/sessions/ses-running";
    let want: Vec<(String, bool, String, String)> = [
        ("start", true, format!("{page}/terminal")),
        ("sleep", false, page.to_string()),
        ("stop", false, page.to_string()),
        ("restart", false, page.to_string()),
    ]
    .into_iter()
    .map(|(op, hidden, next)| {
        let states = crate::components::control_states(op).join(" ");
        (format!("{page}/{op}"), hidden, next, states)
    })
    .collect();
    assert_eq!(forms, want);
    assert!(!html.contains("/delete\""), "no delete from the terminal");
    let field = r#"<input type="hidden" name="csrf" value="csrf-tok&amp;en">"#;
    assert_eq!(html.matches(r#"<form method="post""#).count(), 4);
    assert_eq!(html.matches(field).count(), 4);
    assert!(html.contains(
        r#"Sleep<span class="visually-hidden"> &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'&amp; running</span></button>"#
    ));

    // Sleeping, without the workflow's word: Start shows, the idle deadline does not.
    let s = sample_session("sleeping", "u-me");
    let html = terminal(&c, ws, &s, None, MEMBER).into_string();
    let visible: Vec<String> =
        session_forms(&html).into_iter().filter(|f| !f.1).map(|f| f.0).collect();
    assert_eq!(visible, ["/w/acme/sessions/ses-sleeping/start"]);
    let tags = start_tags(&html);
    let part = tags.iter().find(|t| t.attr("id") == Some("terminal-idle-part")).unwrap();
    assert!(part.has("hidden"));
    let idle = tags.iter().find(|t| t.attr("id") == Some("terminal-idle")).unwrap();
    assert!(!idle.has("data-idle-deadline"));

    // A viewer (a session from before a downgrade) gets the terminal but no controls.
    let html = terminal(&c, &with_role(ws, "viewer"), &s, None, VIEWER).into_string();
    assert!(session_forms(&html).is_empty());
    assert!(!html.contains(r#"method="post""#));
}

#[test]
fn the_terminal_script_speaks_the_pages_and_the_servers_contract() {
    let js = crate::TERMINAL_JS;
    for needle in [
        "getElementById(\"terminal\")",
        "terminal-status",
        "terminal-new-shell",
        "terminal-reconnect",
        "terminal-idle",
        "terminal-idle-part",
        "terminal-idle-deadline",
        "terminal-idle-in",
        "terminal-last-active",
        "dataset.terminal",
        "dataset.session",
        "dataset.why",
        "dataset.sessionId",
        "dataset.state",
        "\"connecting\"",
        "\"connected\"",
        "\"reconnecting\"",
        "\"closed\"",
        "\"exited\"",
        "Connecting…",
        "Reconnecting…",
        "\"Connected\"",
        "Disconnected: ",
        "Shell exited with code ",
        "type: \"resize\"",
        "\"exit\"",
        "\"closing\"",
        "message.code",
        "message.reason",
        "arraybuffer",
        "new TextDecoder()",
        "stream: true",
        "new TextEncoder()",
        "\"wss:\"",
        "\"ws:\"",
        "cols",
        "rows",
        "tid",
        "sessionStorage",
        "crypto.getRandomValues",
        "[1000, 2000, 5000, 10000, 20000, 30000]",
        "window.Terminal",
        "FitAddon.FitAddon",
        "window.burstflareTerminal = { term, fit }",
        "burstflareXtermMissing",
        "onData",
        "onResize",
        "attachCustomKeyEventHandler",
        "getSelection",
        "same-origin",
        "404",
        "\"running\"",
        "form[data-states]",
        ".session-status [data-state]",
        "visibilityState",
    ] {
        assert!(js.contains(needle), "terminal.js lacks {needle}");
    }
    assert!(!js.contains("innerHTML"), "output and messages are only ever inserted as text");
    for state in sdk::SESSION_STATES {
        assert!(js.contains(&format!("\"{state}\"")), "terminal.js: {state}");
    }
    for class in [
        ".terminal-page",
        ".terminal-bar",
        ".terminal-screen",
        ".terminal-status",
        ".terminal-idle",
    ] {
        assert!(crate::STYLESHEET.contains(class), "app.css lacks {class}");
    }
}

#[test]
fn xterm_is_embedded_under_versioned_paths() {
    for (path, ext) in [
        (crate::XTERM_JS_PATH, ".js"),
        (crate::XTERM_CSS_PATH, ".css"),
        (crate::XTERM_FIT_JS_PATH, ".js"),
    ] {
        assert!(path.starts_with("/assets/vendor/") && path.ends_with(ext), "{path}");
        assert!(
            path.contains(&format!("-{}", crate::XTERM_VERSION)) || path.contains("addon-fit-")
        );
    }
    assert!(crate::TERMINAL_JS_PATH.starts_with("/assets/terminal-"));
    for text in [crate::XTERM_JS, crate::XTERM_CSS, crate::XTERM_FIT_JS] {
        assert!(!text.contains("sourceMappingURL="), "the maps are not served");
    }
    if crate::XTERM_INSTALLED {
        assert_ne!(crate::XTERM_VERSION, "missing");
        assert!(crate::XTERM_JS.contains("Terminal"));
        assert!(crate::XTERM_FIT_JS.contains("FitAddon"));
        assert!(crate::XTERM_CSS.contains(".xterm"));
    } else {
        assert_eq!(crate::XTERM_VERSION, "missing");
        assert!(crate::XTERM_JS.contains("xterm.js is not installed: run `make setup`"));
        assert!(crate::XTERM_JS.contains("burstflareXtermMissing"));
    }
}

#[test]
fn the_owner_of_a_session_gets_the_terminal_link_and_the_ssh_commands() {
    let f = fixture();
    let c = ctx(&f, Some(CSRF));
    let ws = &f.workspaces[0];
    let html = session_detail(&c, ws, &plain_session("running"), None, &[], MEMBER).into_string();
    let main = main_of(&html);
    let link = start_tags(main)
        .into_iter()
        .find(|t| t.attr("id") == Some("session-open-terminal"))
        .expect("an Open in browser link");
    assert_eq!(link.name, "a");
    assert_eq!(link.attr("href"), Some("/w/acme/sessions/ses-running/terminal"));
    assert!(main.contains("Open in browser"));
    assert!(main.contains("<code>flare ssh dev-abcd</code>"));
    assert!(main.contains("<code>ssh dev-abcd.acme.burstflare</code>"));
    assert!(main.contains("<code>flare ssh-config</code>"));
    assert!(main.contains("<code>-w acme</code>"));
    assert!(main.contains(r#"data-copy="session-ssh-command""#));
    // Shown whatever the state (the terminal page can start it), until it is deleted.
    let html = session_detail(&c, ws, &plain_session("sleeping"), None, &[], MEMBER).into_string();
    assert!(main_of(&html).contains("/w/acme/sessions/ses-sleeping/terminal"));
    let html = session_detail(&c, ws, &plain_session("deleted"), None, &[], MEMBER).into_string();
    assert!(!html.contains("/terminal\"") && !html.contains("flare ssh"));
    // Someone else's session, even for an admin who may stop it: neither.
    let theirs = sdk::SessionDetail { name: "dev-abcd".into(), ..sample_session("running", "u-2") };
    for rights in [MANAGER, MEMBER, VIEWER] {
        let html = session_detail(&c, ws, &theirs, None, &[], rights).into_string();
        assert!(!html.contains("/terminal\""), "{rights:?}");
        assert!(!html.contains("session-open-terminal") && !html.contains("flare ssh"));
    }
    // Odd names are quoted for the shell.
    let html =
        session_detail(&c, ws, &sample_session("running", "u-me"), None, &[], MEMBER).into_string();
    assert!(html.contains("<code>flare ssh '&lt;script&gt;"), "quoted and escaped");
}

fn promotion_page(runs: &[sdk::Promotion], can_promote: bool, me: &str) -> String {
    let f = fixture();
    let mut user = f.user.clone();
    user.id = me.into();
    let c = PageContext { user: Some(&user), ..ctx(&f, Some("tok")) };
    let versions = [sample_version("4", "built", None), sample_version("1", "built", None)];
    let entry = sample_entry();
    let policy = sdk::PromotionPolicy { requires_approval: true, approval_timeout_secs: 7200 };
    let card =
        TemplatePromotions { runs, entry: Some(&entry), revision: 7, policy: &policy, can_promote };
    template_detail_with_promotions(
        &c,
        &f.workspaces[0],
        &f.detail,
        &versions,
        &f.builds,
        true,
        Some(&card),
    )
    .into_string()
}

#[test]
fn the_promotion_card_offers_promote_rollback_and_demote_only_to_promoters_with_nothing_in_flight()
{
    let idle = [sample_run("promote", "1", "succeeded", "u-me")];
    let html = promotion_page(&idle, true, "u-me");
    let main = main_of(&html);
    assert!(main.contains(r#"action="/w/acme/templates/rust/promote""#), "{main}");
    assert!(main.contains(r#"action="/w/acme/templates/rust/rollback""#));
    assert!(main.contains(r#"action="/w/acme/templates/rust/demote""#));
    assert!(main.contains("Demote to v0"));
    // The active version is not offered again; the other built one is.
    assert!(main.contains(r#"<option value="4">v4</option>"#));
    assert!(!main.contains(r#"<option value="1">"#));
    assert!(main.contains("Catalog revision"), "{main}");
    assert!(main.contains("up to 2 h"), "the policy and its timeout: {main}");
    assert!(!main.contains(crate::PROMOTION_JS_PATH), "no script without a run in flight");
    // A member sees the card but no forms.
    let html = promotion_page(&idle, false, "u-me");
    let main = main_of(&html);
    assert!(main.contains("Promotion") && !main.contains("/promote\""), "{main}");
    assert!(!main.contains("/rollback\"") && !main.contains("/demote\""));
}

#[test]
fn a_run_in_flight_shows_its_progress_and_the_approve_button_only_to_another_promoter() {
    let runs = [sample_run("promote", "4", "awaiting_approval", "u-asker")];
    let html = promotion_page(&runs, true, "u-me");
    let main = main_of(&html);
    assert!(
        main.contains(
            r#"data-promotion="/api/v1/workspaces/acme/promotions/p-promote-4-awaiting_approval""#
        ),
        "{main}"
    );
    assert!(main.contains(r#"action="/w/acme/promotions/p-promote-4-awaiting_approval/approve""#));
    assert!(html.contains(&format!(r#"<script src="{}" defer>"#, crate::PROMOTION_JS_PATH)));
    assert!(main.contains("node-1") && main.contains("badge node-ready"), "{main}");
    assert!(!main.contains("/promote\""), "no second promotion while one runs");
    // The requester cannot approve their own promotion; a member cannot approve at all.
    let own = main_of(&promotion_page(&runs, true, "u-asker")).to_string();
    assert!(!own.contains("/approve") && own.contains("another owner or admin"), "{own}");
    let member = main_of(&promotion_page(&runs, false, "u-me")).to_string();
    assert!(!member.contains("/approve") && member.contains("Waiting for an owner or admin"));
}

#[test]
fn promotion_js_knows_every_promotion_state_and_the_final_ones() {
    let js = crate::PROMOTION_JS;
    for state in sdk::PROMOTION_STATES {
        assert!(js.contains(&format!("\"{state}\"")), "promotion.js: {state}");
    }
    for needle in
        ["[data-promotion]", "[data-promotion-step]", "[data-promotion-nodes]", "location.reload()"]
    {
        assert!(js.contains(needle), "promotion.js lacks {needle}");
    }
}
