//! The agent as a process: `supervise` with a command, signals, zombie reaping, the HTTP API on a
//! real socket. Uses the test-built binary; the Docker test (docker.rs) covers the static one as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use burstflare_agent::VERSION;
use common::{Agent, children, get, request, wait_for};
use nix::sys::signal::Signal;

#[test]
fn version_flag_and_subcommand() {
    for arg in ["--version", "version"] {
        let out = Command::new(common::agent_bin()).arg(arg).output().unwrap();
        assert!(out.status.success(), "{arg}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("burstflare-agent {VERSION}\n"));
    }
}

#[test]
fn reports_the_command_exit_records_activity_and_stops_on_sigterm() {
    let mut agent = Agent::start(&["--", "sh", "-c", "sleep 0.2; exit 3"]);

    let ready = get(agent.port, "/ready");
    assert_eq!(ready.status, 200);
    assert!(ready.headers.contains("content-type: application/json"), "{}", ready.headers);
    assert!(ready.headers.contains("content-length:"), "{}", ready.headers);
    assert_eq!(ready.body["ready"], true);
    assert_eq!(ready.body["version"], VERSION);
    let started_at = ready.body["started_at"].as_u64().unwrap();

    // The command exits with 3 after 0.2 s; the agent reports it and keeps serving.
    wait_for("exit_code 3 in /ready", Duration::from_secs(5), || {
        get(agent.port, "/ready").body["command"]["exit_code"] == 3
    });
    let command = get(agent.port, "/ready").body["command"].clone();
    assert_eq!(command["running"], false);
    assert!(command["pid"].as_u64().is_some(), "{command}");

    let first = get(agent.port, "/activity").body["last_active_at"].as_u64().unwrap();
    assert!(first >= started_at);
    std::thread::sleep(Duration::from_millis(20));
    let posted = request(agent.port, "POST", "/activity").unwrap();
    assert_eq!(posted.status, 204);
    let second = get(agent.port, "/activity").body["last_active_at"].as_u64().unwrap();
    assert!(second > first, "POST /activity did not move last_active_at ({first} -> {second})");

    assert_eq!(get(agent.port, "/nope").status, 404);

    let sent = Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "{status:?} after {:?}", sent.elapsed());

    let log = agent.stderr();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        assert!(line.starts_with("burstflare-agent: "), "unprefixed log line {line:?} in:\n{log}");
    }
    assert!(log.contains("exited with status 3"), "{log}");
}

#[test]
fn sigterm_is_forwarded_to_the_command_process_group() {
    // `; true` keeps sh around as the parent of sleep: both are in the command's process group.
    let mut agent = Agent::start(&["--", "sh", "-c", "sleep 30; true"]);
    let command = get(agent.port, "/ready").body["command"].clone();
    assert_eq!(command["running"], true, "{command}");

    let sent = Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(2));
    let log = agent.stderr();
    assert!(log.contains("forwarding"), "{log}");
}

#[test]
fn sighup_is_forwarded_without_stopping_the_agent() {
    let agent =
        Agent::start(&["--", "sh", "-c", "trap 'exit 7' HUP; while :; do sleep 0.05; done"]);
    std::thread::sleep(Duration::from_millis(100)); // let sh install its trap
    agent.signal(Signal::SIGHUP);
    wait_for("exit_code 7 after SIGHUP", Duration::from_secs(5), || {
        get(agent.port, "/ready").body["command"]["exit_code"] == 7
    });
    // The agent itself keeps serving.
    assert_eq!(get(agent.port, "/ready").status, 200);
}

#[test]
fn orphans_are_reaped() {
    // The inner sh starts `sleep 1` in the background and exits at once: the sleep is orphaned and
    // re-parented to the agent (a child subreaper), which must reap it when it exits.
    let agent = Agent::start(&["--", "sh", "-c", "sh -c 'sleep 1 &'; exec sleep 30"]);
    let command =
        u32::try_from(get(agent.port, "/ready").body["command"]["pid"].as_u64().unwrap()).unwrap();
    let command = i32::try_from(command).unwrap();

    let mut orphan = None;
    wait_for("the orphan to be re-parented to the agent", Duration::from_secs(5), || {
        orphan = children(agent.pid()).into_iter().find(|(pid, _, _)| *pid != command);
        orphan.is_some()
    });
    let (orphan_pid, _, comm) = orphan.unwrap();
    assert_eq!(comm, "sleep");

    wait_for("the orphan to be reaped", Duration::from_secs(5), || {
        children(agent.pid()).iter().all(|(pid, _, _)| *pid != orphan_pid)
    });
    let left = children(agent.pid());
    assert!(left.iter().all(|(_, state, _)| *state != 'Z'), "zombie children: {left:?}");
    assert_eq!(left.len(), 1, "only the command should be left: {left:?}");
    assert_eq!(left[0].0, command);
    // The command still runs.
    assert_eq!(get(agent.port, "/ready").body["command"]["running"], true);
}

#[test]
fn without_a_command_it_serves_and_stops_on_sigterm() {
    let mut agent = Agent::start(&[]);
    let ready = get(agent.port, "/ready");
    assert_eq!(
        ready.body["command"],
        serde_json::json!({"running": false, "pid": null, "exit_code": null})
    );
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(2)).code(), Some(0));
}

#[test]
fn exit_with_command_exits_with_its_code() {
    let mut agent = Agent::start(&["--exit-with-command", "--", "sh", "-c", "sleep 1; exit 5"]);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(5));
}

#[test]
fn a_command_that_cannot_start_is_reported_as_127() {
    let agent = Agent::start(&["--", "/nonexistent/burstflare-command"]);
    let command = get(agent.port, "/ready").body["command"].clone();
    assert_eq!(command, serde_json::json!({"running": false, "pid": null, "exit_code": 127}));
}

#[test]
fn listen_address_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(common::agent_bin())
        .args(["supervise", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"), "{out:?}");
}
