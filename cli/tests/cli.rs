//! `flare` as a user runs it, without a server: each run gets an empty environment and its own
//! configuration directory. Help texts are compared with `tests/golden/`; after changing help on
//! purpose, regenerate them with `FLARE_BLESS=1 cargo test -p burstflare-cli --test cli`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flare");

/// A `flare` with a fresh configuration directory and nothing from the caller's environment.
struct Flare {
    dir: tempfile::TempDir,
}

impl Flare {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("FLARE_CONFIG_DIR", self.config_dir())
            .env("HOME", self.dir.path())
            .env("COLUMNS", "100")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "flare {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn write_credentials(&self, server: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(self.config_dir()).unwrap();
        let path = self.config_dir().join("credentials.toml");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .unwrap();
        write!(
            f,
            "[profiles.default]\nserver = \"{server}\"\nkind = \"api_token\"\naccess_token = \"bf_secret_test_token\"\n"
        )
        .unwrap();
        path
    }
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn flare_version_as_json_reports_the_client_and_why_the_server_is_unavailable() {
    let out = Flare::new().run_ok(&["version", "--output", "json", "--server", &closed_port_url()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
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
    let flare = Flare::new();
    let out = flare.run(&["--output", "yaml", "version"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("'yaml'") && err.contains("text, json"), "{err}");

    let out = flare.cmd(&["version"]).env("FLARE_OUTPUT", "yaml").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn flare_health_fails_with_a_hint_when_the_server_is_down() {
    let out = Flare::new().run(&["health", "--server", &closed_port_url()]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(err.starts_with("error: could not reach the BurstFlare server"), "{err}");
    assert!(err.contains("\nhint: check the server URL"), "{err}");
}

#[test]
fn flare_help_lists_the_commands() {
    let text = Flare::new().run_ok(&["--help"]);
    for cmd in [
        "version",
        "health",
        "auth",
        "workspace",
        "template",
        "session",
        "snapshot",
        "ssh",
        "port-forward",
        "ssh-config",
        "ssh-key",
        "config",
        "completion",
        "--output",
        "--server",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

/// Compares `flare ARGS` with `tests/golden/NAME`, or writes it there with `FLARE_BLESS=1`.
/// Trailing spaces are ignored: clap pads some blank lines, editors strip them.
fn assert_golden(args: &[&str], name: &str) {
    let actual = Flare::new().run_ok(args);
    let normalize = |s: &str| {
        s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string() + "\n"
    };
    let actual = normalize(&actual);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("FLARE_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = normalize(&std::fs::read_to_string(&path).unwrap_or_default());
    if expected != actual {
        panic!(
            "`flare {}` differs from {} (- golden, + now); if the change is intended, run \
             FLARE_BLESS=1 cargo test -p burstflare-cli --test cli\n{}",
            args.join(" "),
            path.display(),
            line_diff(&expected, &actual)
        );
    }
}

/// A line diff (longest common subsequence), enough for help texts.
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn flare_help_matches_the_golden_file() {
    assert_golden(&["--help"], "flare.txt");
}

#[test]
fn flare_auth_help_matches_the_golden_file() {
    assert_golden(&["auth", "--help"], "auth.txt");
}

#[test]
fn flare_workspace_help_matches_the_golden_file() {
    assert_golden(&["workspace", "--help"], "workspace.txt");
}

#[test]
fn flare_template_help_matches_the_golden_files() {
    assert_golden(&["template", "--help"], "template.txt");
    assert_golden(&["template", "upload", "--help"], "template-upload.txt");
    assert_golden(&["template", "logs", "--help"], "template-logs.txt");
    assert_golden(&["template", "promote", "--help"], "template-promote.txt");
    assert_golden(&["template", "demote", "--help"], "template-demote.txt");
    assert_golden(&["template", "rollback", "--help"], "template-rollback.txt");
    assert_golden(&["template", "approve", "--help"], "template-approve.txt");
    assert_golden(&["template", "promotions", "--help"], "template-promotions.txt");
    assert_golden(&["template", "catalog", "--help"], "template-catalog.txt");
    assert_golden(&["template", "policy", "--help"], "template-policy.txt");
}

#[test]
fn flare_session_help_matches_the_golden_files() {
    assert_golden(&["session", "--help"], "session.txt");
    assert_golden(&["session", "create", "--help"], "session-create.txt");
    assert_golden(&["session", "delete", "--help"], "session-delete.txt");
    assert_golden(&["session", "events", "--help"], "session-events.txt");
    assert_golden(&["session", "why", "--help"], "session-why.txt");
}

#[test]
fn flare_snapshot_help_matches_the_golden_files() {
    assert_golden(&["snapshot", "--help"], "snapshot.txt");
    assert_golden(&["snapshot", "save", "--help"], "snapshot-save.txt");
    assert_golden(&["snapshot", "list", "--help"], "snapshot-list.txt");
    assert_golden(&["snapshot", "restore", "--help"], "snapshot-restore.txt");
    assert_golden(&["snapshot", "delete", "--help"], "snapshot-delete.txt");
}

#[test]
fn flare_ssh_help_matches_the_golden_files() {
    assert_golden(&["ssh", "--help"], "ssh.txt");
    assert_golden(&["port-forward", "--help"], "port-forward.txt");
    assert_golden(&["ssh-config", "--help"], "ssh-config.txt");
    assert_golden(&["ssh-key", "--help"], "ssh-key.txt");
    assert_golden(&["ssh-key", "add", "--help"], "ssh-key-add.txt");
    assert_golden(&["ssh-key", "remove", "--help"], "ssh-key-remove.txt");
}

#[test]
fn the_help_documents_the_exit_codes() {
    let text = Flare::new().run_ok(&["--help"]);
    for line in
        ["0  success", "2  usage", "3  not signed in", "4  not found", "5  server unreachable"]
    {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn config_values_round_trip_per_profile() {
    let flare = Flare::new();
    flare.run_ok(&["config", "set", "server", "https://bf.example.com/"]);
    flare.run_ok(&["config", "set", "workspace", "acme"]);
    flare.run_ok(&[
        "--profile",
        "staging",
        "config",
        "set",
        "server",
        "https://staging.example.com",
    ]);

    assert_eq!(flare.run_ok(&["config", "get", "server"]), "https://bf.example.com\n");
    assert_eq!(flare.run_ok(&["config", "get", "workspace"]), "acme\n");
    assert_eq!(flare.run_ok(&["--profile", "staging", "config", "get", "workspace"]), "");

    let list: serde_json::Value =
        serde_json::from_str(&flare.run_ok(&["config", "list", "--output", "json"])).unwrap();
    assert_eq!(
        list,
        serde_json::json!({"profile": "default", "server": "https://bf.example.com", "workspace": "acme"})
    );

    let profiles: serde_json::Value =
        serde_json::from_str(&flare.run_ok(&["config", "profiles", "--output", "json"])).unwrap();
    let names: Vec<&str> =
        profiles.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "staging"]);
    assert_eq!(profiles[0]["active"], true);
    assert_eq!(profiles[1]["server"], "https://staging.example.com");
    assert_eq!(profiles[1]["signed_in"], false);

    // FLARE_PROFILE picks the profile like --profile does.
    let out =
        flare.cmd(&["config", "get", "server"]).env("FLARE_PROFILE", "staging").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "https://staging.example.com\n");

    flare.run_ok(&["config", "unset", "workspace"]);
    let got: serde_json::Value =
        serde_json::from_str(&flare.run_ok(&["config", "get", "workspace", "--output", "json"]))
            .unwrap();
    assert!(got["value"].is_null(), "{got}");
    let text = std::fs::read_to_string(flare.config_dir().join("config.toml")).unwrap();
    assert!(text.contains("[profiles.staging]") && !text.contains("acme"), "{text}");
}

#[test]
fn config_refuses_values_that_cannot_work_and_changes_nothing() {
    let flare = Flare::new();
    let out = flare.run(&["config", "set", "workspace", "Not A Slug"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lowercase a-z"), "{}", stderr(&out));
    let out = flare.run(&["config", "set", "server", "ftp://example.com"]);
    assert_eq!(out.status.code(), Some(2));
    let out = flare.run(&["config", "set", "colour", "blue"]);
    assert_eq!(out.status.code(), Some(2), "only known keys are accepted");
    assert!(!flare.config_dir().join("config.toml").exists());
}

#[test]
fn an_api_token_login_that_cannot_be_checked_stores_nothing() {
    let flare = Flare::new();
    let server = closed_port_url();
    let out = flare
        .cmd(&["auth", "login", "--token", "--server", &server])
        .env("FLARE_TOKEN", "bf_secret_test_token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    let mut child = flare
        .cmd(&["auth", "login", "--token", "--server", &server, "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"bf_secret_test_token\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("bf_secret") && !stderr(&out).contains("bf_secret"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["error"]["code"], "unreachable");

    assert!(!flare.config_dir().join("credentials.toml").exists());
}

#[test]
fn an_api_token_login_without_a_token_is_a_usage_error() {
    let out = Flare::new().run(&["auth", "login", "--token", "--server", &closed_port_url()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hint: pipe it in"), "{}", stderr(&out));
}

#[test]
fn whoami_without_credentials_exits_3_with_a_hint() {
    let flare = Flare::new();
    let out = flare.run(&["auth", "whoami", "--server", &closed_port_url()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.starts_with("error: not signed in"), "{err}");
    assert!(err.contains("\nhint: run `flare auth login` to sign in"), "{err}");

    let out = flare.run(&["--profile", "work", "auth", "whoami", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert!(v["error"]["message"].as_str().unwrap().contains("profile work"), "{v}");
    assert_eq!(v["error"]["hint"], "run `flare auth login --profile work` to sign in");
}

#[test]
fn a_credentials_file_others_can_read_is_refused_with_the_fix() {
    let flare = Flare::new();
    let server = closed_port_url();
    let path = flare.write_credentials(&server, 0o644);
    let out = flare.run(&["auth", "whoami", "--server", &server]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("accessible by other users"), "{err}");
    assert!(err.contains(&format!("hint: run `chmod 600 {}`", path.display())), "{err}");
    assert!(!err.contains("bf_secret"), "{err}");
}

#[test]
fn stored_credentials_are_never_sent_to_another_server() {
    let flare = Flare::new();
    flare.write_credentials("https://bf.example.com", 0o600);
    let out = flare.run(&["auth", "whoami", "--server", &closed_port_url()]);
    assert_eq!(out.status.code(), Some(3), "exit 3 before any request: {}", stderr(&out));
    assert!(
        stderr(&out).contains("signed in to https://bf.example.com, not to"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stored_credentials_are_used_for_the_profiles_server() {
    let flare = Flare::new();
    let server = closed_port_url();
    flare.write_credentials(&server, 0o600);
    flare.run_ok(&["config", "set", "server", &server]);
    // Signed in, so the request is sent and the closed port makes it exit 5, not 3.
    let out = flare.run(&["workspace", "list"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let profiles = flare.run_ok(&["config", "profiles"]);
    assert!(profiles.contains("* default") && profiles.contains("yes"), "{profiles}");
    assert!(!profiles.contains("bf_secret"), "{profiles}");
}

#[test]
fn members_without_a_workspace_says_how_to_pick_one() {
    let out = Flare::new().run(&["workspace", "members"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("flare workspace switch SLUG"), "{}", stderr(&out));
}

#[test]
fn invite_roles_are_limited_to_the_ones_an_invite_can_give() {
    let out = Flare::new().run(&["workspace", "invite", "a@example.com", "--role", "owner"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("viewer, member, admin"), "{}", stderr(&out));
}

#[test]
fn completion_bash_prints_a_script_for_flare() {
    let flare = Flare::new();
    let script = flare.run_ok(&["completion", "bash"]);
    assert!(script.contains("_flare()") && script.contains("complete -F _flare"), "{script}");
    for shell in ["zsh", "fish"] {
        assert!(flare.run_ok(&["completion", shell]).contains("flare"));
    }
    assert_eq!(flare.run(&["completion", "powershell"]).status.code(), Some(2));
}

/// A bundle directory with `manifest` as its burstflare.toml and a Dockerfile.
fn bundle_dir(flare: &Flare, name: &str, manifest: &str) -> PathBuf {
    let dir = flare.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("burstflare.toml"), manifest).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM burstflare/base:latest\n").unwrap();
    dir
}

/// `flare template upload` as a signed-in user of a server that is down: exit 5 would mean it
/// tried to reach the server.
fn upload(flare: &Flare, name: &str, dir: &Path, extra: &[&str]) -> Output {
    let server = closed_port_url();
    let mut args = vec!["template", "upload", name, dir.to_str().unwrap(), "-w", "acme"];
    args.extend_from_slice(extra);
    flare.cmd(&args).env("FLARE_SERVER", &server).env("FLARE_TOKEN", "bf_x").output().unwrap()
}

#[test]
fn an_invalid_manifest_is_reported_in_full_without_contacting_the_server() {
    let flare = Flare::new();
    let dir = bundle_dir(
        &flare,
        "bad",
        "schema = 1\nname = \"go\"\nidle_timeout_minutes = 1\nports = [{ port = 22 }]\n",
    );
    let out = upload(&flare, "go", &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(err.contains("error: idle_timeout_minutes: "), "{err}");
    assert!(err.contains("error: ports[0].port: "), "{err}");
    assert!(err.contains("nothing was sent to the server"), "{err}");
    assert!(out.stdout.is_empty());

    let out = upload(&flare, "go", &dir, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "invalid_bundle");
    let fields: Vec<&str> = v["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "{v}");
    assert!(fields.contains(&"idle_timeout_minutes"), "{v}");
}

#[test]
fn a_bundle_for_another_template_or_a_missing_dir_is_refused_locally() {
    let flare = Flare::new();
    let dir = bundle_dir(&flare, "ok", "schema = 1\nname = \"go\"\n");
    let out = upload(&flare, "python", &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("names the template go, but it is being uploaded as python"));

    let out = upload(&flare, "go", &flare.dir.path().join("nope"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // A valid bundle gets as far as the server (which is down here).
    let out = upload(&flare, "go", &dir, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "unreachable");
}

#[test]
fn template_logs_takes_a_version_or_a_build_not_both() {
    let out = Flare::new().run(&["template", "logs", "go", "3", "--build", "b1", "-w", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

/// `flare session ARGS` as a signed-in user of a server that is down: exit 5 would mean it
/// tried to reach the server.
fn session(flare: &Flare, args: &[&str]) -> Output {
    let server = closed_port_url();
    let mut all = vec!["session"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-w", "acme"]);
    flare.cmd(&all).env("FLARE_SERVER", &server).env("FLARE_TOKEN", "bf_x").output().unwrap()
}

#[test]
fn session_delete_without_a_terminal_needs_yes_and_asks_nothing_of_the_server() {
    let flare = Flare::new();
    let out = session(&flare, &["delete", "go-abcd"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("without confirmation"), "{err}");
    assert!(err.contains("hint: run `flare session delete go-abcd --yes`"), "{err}");

    let out = session(&flare, &["delete", "go-abcd", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "invalid_usage");

    // With --yes the request is made (and the server is down).
    let out = session(&flare, &["delete", "go-abcd", "--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn session_commands_report_an_unreachable_server_as_one_json_error() {
    let flare = Flare::new();
    for args in [
        &["create", "--template", "go"][..],
        &["create", "--template", "go", "--no-wait"],
        &["list", "--all"],
        &["show", "go-abcd"],
        &["stop", "go-abcd"],
        &["sleep", "go-abcd", "--no-wait"],
        &["events", "go-abcd"],
        &["why", "go-abcd"],
    ] {
        let mut args = args.to_vec();
        args.extend_from_slice(&["--output", "json"]);
        let out = session(&flare, &args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "unreachable", "{args:?}");
    }
}

#[test]
fn snapshot_restore_without_a_terminal_needs_yes_and_asks_nothing_of_the_server() {
    let flare = Flare::new();
    let id = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";
    let out = offline(&flare, &["snapshot", "restore", "go-abcd", id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("without confirmation"), "{err}");
    assert!(
        err.contains(&format!("hint: run `flare snapshot restore go-abcd {id} --yes`")),
        "{err}"
    );

    let out = offline(&flare, &["snapshot", "restore", "go-abcd", id, "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "invalid_usage");

    // With --yes the request is made (and the server is down).
    let out = offline(&flare, &["snapshot", "restore", "go-abcd", id, "--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn snapshot_commands_report_an_unreachable_server_as_one_json_error() {
    let flare = Flare::new();
    let id = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";
    for args in [
        &["save", "go-abcd"][..],
        &["save", "go-abcd", "--no-wait"],
        &["list", "go-abcd"],
        &["restore", "go-abcd", id, "-y"],
        &["delete", "go-abcd", id],
    ] {
        let mut all = vec!["snapshot"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        let out = offline(&flare, &all);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "unreachable", "{args:?}");
    }
    // Without a workspace nothing is asked either.
    let out =
        flare.cmd(&["snapshot", "list", "go-abcd"]).env("FLARE_TOKEN", "bf_x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no workspace selected"), "{}", stderr(&out));
}

#[test]
fn session_create_needs_a_template() {
    let out = Flare::new().run(&["session", "create", "--name", "x", "-w", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--template <NAME>"), "{}", stderr(&out));
}

/// `flare ARGS` as a signed-in user (FLARE_TOKEN) of a server that is down.
fn offline(flare: &Flare, args: &[&str]) -> Output {
    flare
        .cmd(args)
        .env("FLARE_SERVER", closed_port_url())
        .env("FLARE_TOKEN", "bf_x")
        .env("FLARE_WORKSPACE", "acme")
        .output()
        .unwrap()
}

#[test]
fn ssh_stdio_errors_go_to_stderr_only_and_exit_255() {
    let flare = Flare::new();
    let out = offline(&flare, &["ssh", "--stdio", "dev", "--output", "json"]);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "stdout carries SSH: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).starts_with("error: could not reach the BurstFlare server"),
        "{}",
        stderr(&out)
    );

    // Not signed in: the usual message, still on stderr and 255.
    let out = flare.cmd(&["ssh", "--stdio", "dev.acme.burstflare"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("hint: run `flare auth login` to sign in"), "{}", stderr(&out));

    let out = offline(&flare, &["ssh", "--stdio", "dev.burstflare"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("SESSION.WORKSPACE.burstflare"), "{}", stderr(&out));

    // --stdio is the ProxyCommand only: no ssh options, no command.
    let out = offline(&flare, &["ssh", "--stdio", "dev", "--ssh-arg=-v"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = offline(&flare, &["ssh", "--stdio", "dev", "--", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn port_forward_checks_its_ports_before_anything_else() {
    let flare = Flare::new();
    for (spec, says) in [
        ("0:3000", "LOCAL port `0`"),
        ("8080:99999", "REMOTE port `99999`"),
        ("http:80", "LOCAL port `http`"),
        ("8080:::1:80", "brackets"),
    ] {
        let out = offline(&flare, &["port-forward", "dev", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{spec}: {}", stderr(&out));
    }
    let out = offline(&flare, &["port-forward", "dev", "8080:3000", "--output", "json"]);
    assert_eq!(out.status.code(), Some(5), "a valid spec gets as far as the server");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "unreachable");
}

#[test]
fn ssh_config_print_shows_the_block_without_writing_anything() {
    let flare = Flare::new();
    let text = flare.run_ok(&["ssh-config", "--print", "--profile", "work"]);
    assert!(text.contains("Host *.burstflare\n"), "{text}");
    assert!(text.contains(&format!("  ProxyCommand {BIN} --config-dir ")), "{text}");
    assert!(text.contains(" --profile work ssh --stdio %h\n"), "{text}");
    assert!(text.contains("  StrictHostKeyChecking yes\n"), "{text}");
    let ssh_dir = flare.config_dir().join("ssh");
    assert!(
        text.contains(&format!("  UserKnownHostsFile {}/known_hosts\n", ssh_dir.display())),
        "{text}"
    );
    assert!(text.contains(&format!("  IdentityFile {}/id_ed25519\n", ssh_dir.display())), "{text}");
    assert!(!flare.dir.path().join(".ssh").exists());

    let v: serde_json::Value =
        serde_json::from_str(&flare.run_ok(&["ssh-config", "--print", "--output", "json"]))
            .unwrap();
    assert!(v["content"].as_str().unwrap().contains("Host *.burstflare"), "{v}");
    assert_eq!(
        v["include_line"],
        format!("Include {}/.ssh/burstflare_config", flare.dir.path().display())
    );

    let out = flare.run(&["ssh-config", "--print", "--remove"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ssh_config_needs_a_sign_in_and_writes_nothing_without_one() {
    let flare = Flare::new();
    let out = flare.run(&["ssh-config", "--server", &closed_port_url()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = offline(&flare, &["ssh-config"]);
    assert!(matches!(out.status.code(), Some(1 | 5)), "{}", stderr(&out));
    assert!(!flare.dir.path().join(".ssh").exists());
    let text = flare.run_ok(&["ssh-config", "--remove"]);
    assert!(text.starts_with("Nothing to remove"), "{text}");
}

#[test]
fn ssh_key_add_refuses_what_is_not_a_public_key() {
    let flare = Flare::new();
    let path = flare.dir.path().join("notes.txt");
    std::fs::write(&path, "hello there\n").unwrap();
    let out = offline(&flare, &["ssh-key", "add", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not an OpenSSH public key"), "{}", stderr(&out));
    let out = offline(&flare, &["ssh-key", "add", "/nonexistent/key.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = offline(&flare, &["ssh", "dev", "--identity", "/nonexistent/id"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("there is no private key /nonexistent/id"), "{}", stderr(&out));
}
