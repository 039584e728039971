//! The activity computation, the HTTP routing/JSON, and the parsing behind SSH and terminals
//! (passwd/group, request headers and query, environment names, SFTP listings), without a
//! process or a socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::time::{Duration, SystemTime};

use base64::Engine;
use burstflare_agent::activity::{Activity, last_active_at, newest_mtime_ms};
use burstflare_agent::children::ExitStatus;
use burstflare_agent::connect::{PtyParams, check_bearer, is_authorized, parse_authorized_keys};
use burstflare_agent::http::{AgentState, CommandStatus, Reply, route};
use burstflare_agent::sftp::{attributes, ls_date, mode_string, normalize};
use burstflare_agent::spawn::{env_name_allowed, session_env};
use burstflare_agent::ssh::{loopback_addresses, signal_name};
use burstflare_agent::terminal::TerminalControl;
use burstflare_agent::user::{self, GroupEntry, Identity, PasswdEntry, parse_group, parse_passwd};
use burstflare_agent::{VERSION, now_ms, unix_ms};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use russh::Sig;
use russh::keys::PublicKey;
use serde_json::json;

#[test]
fn last_active_at_is_the_latest_signal() {
    assert_eq!(last_active_at(100, None, None), 100);
    assert_eq!(last_active_at(100, Some(250), None), 250);
    assert_eq!(last_active_at(100, None, Some(300)), 300);
    assert_eq!(last_active_at(100, Some(250), Some(300)), 300);
    assert_eq!(last_active_at(100, Some(400), Some(300)), 400);
    // Terminals older than the agent (a pts from before a restart) do not move it back.
    assert_eq!(last_active_at(100, None, Some(50)), 100);
}

#[test]
fn recording_activity_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let activity = Activity::new(1_000, dir.path());
    assert_eq!(activity.recorded_at_ms(), None);
    assert_eq!(activity.last_active_at_ms(), 1_000);
    activity.record_at(5_000);
    activity.record_at(3_000);
    assert_eq!(activity.recorded_at_ms(), Some(5_000));
    assert_eq!(activity.last_active_at_ms(), 5_000);
    let before = now_ms();
    activity.record();
    assert!(activity.last_active_at_ms() >= before);
}

#[test]
fn newest_pts_mtime_counts_as_activity() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(newest_mtime_ms(dir.path()), None, "empty dir");
    assert_eq!(newest_mtime_ms(&dir.path().join("missing")), None, "missing dir");

    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    for (name, offset_s) in [("0", 10), ("1", 30), ("ptmx", 20)] {
        let file = File::create(dir.path().join(name)).unwrap();
        file.set_modified(base + Duration::from_secs(offset_s)).unwrap();
    }
    let newest = unix_ms(base + Duration::from_secs(30));
    assert_eq!(newest_mtime_ms(dir.path()), Some(newest));

    let activity = Activity::new(1_000, dir.path());
    assert_eq!(activity.last_active_at_ms(), newest);
    activity.record_at(newest + 1);
    assert_eq!(activity.last_active_at_ms(), newest + 1);
}

fn state() -> (tempfile::TempDir, AgentState) {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::new(1_234, dir.path());
    (dir, state)
}

#[test]
fn ready_reports_version_start_and_command() {
    let (_dir, state) = state();
    let reply = route("GET", "/ready", &state);
    assert_eq!(
        reply,
        Reply {
            status: 200,
            body: Some(json!({
                "ready": true,
                "version": VERSION,
                "started_at": 1_234,
                "command": {"running": false, "pid": null, "exit_code": null},
            })),
        }
    );

    state.set_command(CommandStatus { running: true, pid: Some(42), exit_code: None });
    let body = route("GET", "/ready", &state).body.unwrap();
    assert_eq!(body["command"], json!({"running": true, "pid": 42, "exit_code": null}));

    state.set_command(CommandStatus { running: false, pid: Some(42), exit_code: Some(3) });
    let body = route("GET", "/ready", &state).body.unwrap();
    assert_eq!(body["command"], json!({"running": false, "pid": 42, "exit_code": 3}));
}

#[test]
fn activity_get_and_post() {
    let (_dir, state) = state();
    assert_eq!(
        route("GET", "/activity", &state),
        Reply { status: 200, body: Some(json!({"last_active_at": 1_234})) }
    );
    let before = now_ms();
    assert_eq!(route("POST", "/activity", &state), Reply { status: 204, body: None });
    let body = route("GET", "/activity", &state).body.unwrap();
    let last = body["last_active_at"].as_u64().unwrap();
    assert!(last >= before && last <= now_ms(), "{last} not in [{before}, now]");
}

#[test]
fn everything_else_is_404() {
    let (_dir, state) = state();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/readyz"),
        ("GET", "/ready/"),
        ("POST", "/ready"),
        ("PUT", "/activity"),
        ("DELETE", "/activity"),
        ("HEAD", "/ready"),
        ("GET", "/activity/x"),
    ] {
        let reply = route(method, path, &state);
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(reply.body, Some(json!({"error": "not found"})), "{method} {path}");
    }
    // A rejected POST records nothing.
    route("POST", "/activities", &state);
    assert_eq!(state.activity.recorded_at_ms(), None);
}

#[test]
fn command_status_serializes_with_nulls() {
    let json = serde_json::to_value(CommandStatus::default()).unwrap();
    assert_eq!(json, json!({"running": false, "pid": null, "exit_code": null}));
}

// --- session user -------------------------------------------------------------------------------

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

broken line
dev:x:1000:1000:Dev,,,:/home/dev:/bin/zsh
odd:x:notanumber:1:::/bin/sh
bare:x:1001:1001:::
";

const GROUP: &str = "\
root:x:0:
docker:x:998:dev,someone
wheel:x:10: dev 
dev:x:1000:
other:x:5:someone
bad
";

#[test]
fn passwd_and_group_lines_are_parsed_and_bad_ones_skipped() {
    let accounts = parse_passwd(PASSWD);
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["root", "daemon", "dev", "bare"]);
    assert_eq!(
        accounts[2],
        PasswdEntry {
            name: "dev".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/dev".into(),
            shell: "/bin/zsh".into()
        }
    );
    let groups = parse_group(GROUP);
    assert_eq!(groups.len(), 5);
    assert_eq!(
        groups[1],
        GroupEntry {
            name: "docker".into(),
            gid: 998,
            members: vec!["dev".into(), "someone".into()]
        }
    );
    assert_eq!(groups[2].members, vec!["dev".to_string()]);
    assert!(groups[3].members.is_empty());
}

#[test]
fn the_session_user_is_resolved_with_its_groups_when_the_agent_is_root() {
    let dev = user::resolve(Some("dev"), 0, 0, PASSWD, GROUP).unwrap();
    assert_eq!(
        dev,
        Identity {
            name: "dev".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 998, 10],
            home: "/home/dev".into(),
            shell: "/bin/zsh".into(),
            switch: true,
        }
    );
    // By uid too.
    assert_eq!(user::resolve(Some("1000"), 0, 0, PASSWD, GROUP).unwrap().name, "dev");
    // A uid without an account.
    let numeric = user::resolve(Some("4242"), 0, 0, PASSWD, GROUP).unwrap();
    assert_eq!((numeric.uid, numeric.gid, numeric.groups.clone()), (4242, 4242, vec![4242]));
    assert_eq!(numeric.home.to_str(), Some("/"));
    // An account without home or shell.
    let bare = user::resolve(Some("bare"), 0, 0, PASSWD, GROUP).unwrap();
    assert_eq!((bare.home.to_str(), bare.shell.to_str()), (Some("/"), Some(user::FALLBACK_SHELL)));
    // A name that does not exist is an error that names it.
    let err = user::resolve(Some("ghost"), 0, 0, PASSWD, GROUP).unwrap_err();
    assert!(err.to_string().contains("\"ghost\""), "{err}");
}

#[test]
fn without_root_or_a_setting_processes_run_as_the_agent() {
    // Not root: the setting is ignored; the agent's own account describes it.
    let own = user::resolve(Some("dev"), 1000, 1000, PASSWD, GROUP).unwrap();
    assert_eq!((own.name.as_str(), own.uid, own.switch), ("dev", 1000, false));
    let root = user::resolve(None, 0, 0, PASSWD, GROUP).unwrap();
    assert_eq!(
        (root.name.as_str(), root.home.to_str(), root.switch),
        ("root", Some("/root"), false)
    );
    let blank = user::resolve(Some("  "), 0, 0, PASSWD, GROUP).unwrap();
    assert!(!blank.switch);
    // No account at all.
    let nobody = user::resolve(None, 777, 778, PASSWD, GROUP).unwrap();
    assert_eq!((nobody.name.as_str(), nobody.uid, nobody.gid), ("777", 777, 778));
}

// --- request checks -----------------------------------------------------------------------------

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_bearer_token_is_required_and_compared() {
    let ok = headers(&[("authorization", "Bearer s3cret")]);
    assert!(check_bearer(Some("s3cret"), &ok).is_ok());
    assert!(check_bearer(Some("s3cret"), &headers(&[("authorization", "bearer s3cret")])).is_ok());
    for bad in [
        headers(&[]),
        headers(&[("authorization", "Bearer wrong")]),
        headers(&[("authorization", "Bearer s3cre")]),
        headers(&[("authorization", "Basic s3cret")]),
        headers(&[("authorization", "s3cret")]),
    ] {
        let reply = check_bearer(Some("s3cret"), &bad).unwrap_err();
        assert_eq!(reply.status, 401, "{bad:?}");
    }
    // No token configured: 503, whatever is sent.
    assert_eq!(check_bearer(None, &ok).unwrap_err().status, 503);
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJzopQkuPVr4XOQQca3bohBPzrjO6S7Rc+CT45tNA6DI";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEdCmJxMQNO7O7UiccKOkzivbMRNPpsI08iFdKIs4ya3vZ05kvw9lkfqheKdXFR8yS7i012sZASR5ysGaI68rLw=";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn authorized_keys_are_base64_lines_of_openssh_keys() {
    let keys =
        parse_authorized_keys(&b64(&format!("{ED25519} laptop\n\n# old key\n{ECDSA}\n"))).unwrap();
    assert_eq!(keys.len(), 2);
    // The comment does not matter; algorithm and key data do.
    let offered = PublicKey::from_openssh(&format!("{ED25519} another-comment")).unwrap();
    assert!(is_authorized(&keys, &offered));
    let only_ecdsa = parse_authorized_keys(&b64(ECDSA)).unwrap();
    assert!(!is_authorized(&only_ecdsa, &offered));

    for (value, reason) in [
        ("", "missing"),
        ("%%%", "not base64"),
        (&b64("\n# nothing\n"), "no keys"),
        (&b64("ssh-ed25519 AAAAnotakey"), "line 1"),
        (&b64(&format!("{ED25519}\nssh-rsa garbage")), "line 2"),
    ] {
        let err = parse_authorized_keys(value).unwrap_err();
        assert!(err.contains(reason), "{value:?}: {err}");
    }
}

#[test]
fn terminal_query_parameters_are_validated_by_name() {
    assert_eq!(PtyParams::parse(None).unwrap(), PtyParams { cols: 80, rows: 24, tid: None });
    assert_eq!(
        PtyParams::parse(Some("cols=120&rows=40&tid=tab_1-x&other=ignored")).unwrap(),
        PtyParams { cols: 120, rows: 40, tid: Some("tab_1-x".into()) }
    );
    assert_eq!(PtyParams::parse(Some("cols=1000&rows=1")).unwrap().cols, 1000);
    for (query, name) in [
        ("cols=0", "cols"),
        ("cols=1001", "cols"),
        ("cols=", "cols"),
        ("rows=-3", "rows"),
        ("rows=99999999", "rows"),
        ("tid=", "tid"),
        ("tid=a.b", "tid"),
        ("tid=%41", "tid"),
    ] {
        let err = PtyParams::parse(Some(query)).unwrap_err();
        assert!(err.starts_with(&format!("invalid {name}")), "{query}: {err}");
    }
    let long = format!("tid={}", "a".repeat(65));
    assert!(PtyParams::parse(Some(&long)).is_err());
    assert!(PtyParams::parse(Some(&format!("tid={}", "a".repeat(64)))).is_ok());
}

#[test]
fn terminal_control_messages_match_the_sdk_json() {
    let cases = [
        (
            TerminalControl::Resize { cols: 100, rows: 30 },
            json!({"type": "resize", "cols": 100, "rows": 30}),
        ),
        (TerminalControl::Exit { code: 7 }, json!({"type": "exit", "code": 7})),
        (
            TerminalControl::Closing { reason: "bye".into() },
            json!({"type": "closing", "reason": "bye"}),
        ),
    ];
    for (control, value) in cases {
        assert_eq!(serde_json::to_value(&control).unwrap(), value);
        assert_eq!(serde_json::from_value::<TerminalControl>(value).unwrap(), control);
    }
}

// --- processes ----------------------------------------------------------------------------------

#[test]
fn clients_may_set_shell_style_names_but_not_loader_or_agent_ones() {
    for name in ["LANG", "LC_ALL", "TERM", "COLORTERM", "FOO_1", "_x", "a"] {
        assert!(env_name_allowed(name), "{name}");
    }
    for name in [
        "",
        "1X",
        "A-B",
        "A=B",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BURSTFLARE_AGENT_TOKEN",
        "BURSTFLARE_X",
        "É",
    ] {
        assert!(!env_name_allowed(name), "{name}");
    }
}

#[test]
fn session_env_sets_the_identity_and_keeps_client_variables() {
    let identity = user::resolve(Some("dev"), 0, 0, PASSWD, GROUP).unwrap();
    let env = session_env(
        &identity,
        &[("LANG".into(), "C.UTF-8".into()), ("HOME".into(), "/elsewhere".into())],
    );
    let get = |name: &str| {
        env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.to_string_lossy().into_owned())
    };
    assert_eq!(get("LANG").as_deref(), Some("C.UTF-8"));
    // The identity wins over a client's HOME; each name appears once.
    assert_eq!(get("HOME").as_deref(), Some("/home/dev"));
    assert_eq!(get("USER").as_deref(), Some("dev"));
    assert_eq!(get("LOGNAME").as_deref(), Some("dev"));
    assert!(get("PATH").is_some());
    assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
    assert!(env.iter().all(|(n, _)| n != "BURSTFLARE_AGENT_TOKEN"));
}

#[test]
fn exit_statuses_read_like_a_shell() {
    assert_eq!(ExitStatus::Code(3).code(), 3);
    let killed = ExitStatus::Signal { signal: 9, core_dumped: false };
    assert_eq!(killed.code(), 137);
    assert_eq!(killed.to_string(), "137 (killed by SIGKILL)");
    assert_eq!(ExitStatus::Code(0).to_string(), "0");
    assert!(matches!(signal_name(9), Sig::KILL));
    assert!(matches!(signal_name(15), Sig::TERM));
    assert!(matches!(signal_name(12), Sig::Custom(name) if name == "USR2"));
}

#[test]
fn remote_forwards_bind_loopback_addresses_only() {
    assert_eq!(loopback_addresses("localhost").unwrap().len(), 2);
    assert_eq!(
        loopback_addresses("127.0.0.1").unwrap(),
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(loopback_addresses("::1").unwrap().len(), 1);
    for address in ["", "*", "0.0.0.0", "::", "10.0.0.1", "example.com"] {
        assert!(loopback_addresses(address).is_none(), "{address}");
    }
}

// --- SFTP ---------------------------------------------------------------------------------------

#[test]
fn sftp_long_names_look_like_ls() {
    assert_eq!(mode_string(0o100644), "-rw-r--r--");
    assert_eq!(mode_string(0o040755), "drwxr-xr-x");
    assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
    assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
    assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
    assert_eq!(mode_string(0o020620), "crw--w----");
    // 2001-09-09 01:46:40 UTC: recent (same day) and old.
    assert_eq!(ls_date(1_000_000_000, 1_000_000_100), "Sep  9 01:46");
    assert_eq!(ls_date(1_000_000_000, 1_100_000_000), "Sep  9  2001");
    assert_eq!(ls_date(0, 0), "Jan  1 00:00");
    assert_eq!(ls_date(951_782_400, 2_000_000_000), "Feb 29  2000");
}

#[test]
fn sftp_attributes_keep_the_file_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "12345").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("file", &link).unwrap();
    let attrs = attributes(&std::fs::symlink_metadata(&link).unwrap());
    assert_eq!(attrs.permissions.unwrap() & 0o170000, 0o120000);
    let attrs = attributes(&std::fs::metadata(&file).unwrap());
    assert_eq!(attrs.permissions.unwrap() & 0o170000, 0o100000);
    assert_eq!(attrs.size, Some(5));
    assert_eq!(normalize(std::path::Path::new("/a/./b/../c/")).to_str(), Some("/a/c"));
    assert_eq!(normalize(std::path::Path::new("/../..")).to_str(), Some("/"));
}
