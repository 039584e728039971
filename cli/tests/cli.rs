//! `flare` as a user runs it, without a server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flare");

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn flare_version_as_json_reports_the_client_and_why_the_server_is_unavailable() {
    let out = Command::new(BIN)
        .args(["version", "--output", "json", "--server", &closed_port_url()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client"], env!("CARGO_PKG_VERSION"));
    assert!(v["server"].is_null());
    let err = v["server_error"].as_str().unwrap();
    assert!(
        err.contains("could not reach the BurstFlare server") && err.contains("--server"),
        "{err}"
    );
}

#[test]
fn an_unknown_output_format_is_rejected_with_the_accepted_values() {
    let out = Command::new(BIN).args(["--output", "yaml", "version"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'yaml'") && err.contains("text, json"), "{err}");
}

#[test]
fn flare_health_fails_with_a_hint_when_the_server_is_down() {
    let out = Command::new(BIN).args(["health", "--server", &closed_port_url()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: could not reach the BurstFlare server"), "{err}");
}

#[test]
fn flare_help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["version", "health", "--output", "--server"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}
