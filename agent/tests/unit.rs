//! The activity computation and the HTTP routing/JSON, without a process or a socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::time::{Duration, SystemTime};

use burstflare_agent::activity::{Activity, last_active_at, newest_mtime_ms};
use burstflare_agent::http::{AgentState, CommandStatus, Reply, route};
use burstflare_agent::{VERSION, now_ms, unix_ms};
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
