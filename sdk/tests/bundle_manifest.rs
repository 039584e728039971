//! The manifest rules of `sdk::bundle`: one failing input per rule, each asserting the field and
//! that the message names the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk::bundle::{BundleError, Manifest, validate_template_name};

const MINIMAL: &str = "schema = 1\nname = \"demo\"\n";

/// Parses `text`, expecting a failure, and returns the first one.
fn fail(text: &str) -> BundleError {
    match Manifest::parse(text) {
        Ok(m) => panic!("expected an error for {text:?}, got {m:?}"),
        Err(e) => e,
    }
}

/// Asserts that `text` fails on `field` with a message containing every one of `needles`.
fn assert_fails(text: &str, field: &str, needles: &[&str]) {
    let e = fail(text);
    assert_eq!(e.field, field, "field for {text:?}: {e}");
    for n in needles {
        assert!(e.message.contains(n), "message {:?} for {text:?} should contain {n:?}", e.message);
    }
    assert!(e.message.chars().count() <= 300, "message too long: {}", e.message);
}

/// `s` as a TOML basic string, control characters escaped as `\uXXXX`.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// MINIMAL plus `extra` lines.
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn minimal_manifest_gets_defaults() {
    let m = Manifest::parse(MINIMAL).unwrap();
    assert_eq!(m.schema, 1);
    assert_eq!(m.name, "demo");
    assert_eq!(m.description, "");
    assert_eq!(m.base_image, "burstflare/base:latest");
    assert!(m.persisted_paths.is_empty() && m.env.is_empty() && m.ports.is_empty());
    assert_eq!(
        (m.resources.cpu_millis, m.resources.memory_mb, m.resources.disk_gb),
        (2000, 2048, 10)
    );
    assert_eq!(m.idle_timeout_minutes, 30);
    assert!(m.labels.is_empty());
}

#[test]
fn partial_resources_and_port_protocol_default() {
    let m =
        Manifest::parse(&with("[[ports]]\nport = 3000\n[resources]\nmemory_mb = 4096")).unwrap();
    assert_eq!(
        (m.resources.cpu_millis, m.resources.memory_mb, m.resources.disk_gb),
        (2000, 4096, 10)
    );
    assert_eq!(m.ports[0].protocol, "http");
    assert_eq!(m.ports[0].name, "");
}

#[test]
fn sample_devbox_manifest_parses() {
    let text = include_str!("../../deploy/templates/devbox/burstflare.toml");
    let m = Manifest::parse(text).unwrap();
    assert_eq!(m.name, "devbox");
    assert_eq!(m.persisted_paths, vec!["/home/dev"]);
    assert!(m.env.iter().any(|e| e.secret));
    assert_eq!(m.ports[0].port, 8080);
}

#[test]
fn view_hides_secret_values() {
    let m = Manifest::parse(&with(
        "[[env]]\nname = \"A\"\nvalue = \"shown\"\n[[env]]\nname = \"B\"\nvalue = \"hidden\"\nsecret = true",
    ))
    .unwrap();
    let v = m.view();
    assert_eq!(v.env[0].value.as_deref(), Some("shown"));
    assert_eq!(v.env[1].value, None);
    assert!(v.env[1].secret);
    let json = serde_json::to_string(&v).unwrap();
    assert!(!json.contains("hidden"));
    assert_eq!(v.name, m.name);
    assert_eq!(v.resources, m.resources);
}

// --- size and syntax -------------------------------------------------------------------------

#[test]
fn input_over_64_kib_is_refused_before_parsing() {
    let text = format!("{MINIMAL}# {}\n", "x".repeat(64 * 1024));
    assert_fails(&text, "burstflare.toml", &["65536"]);
}

#[test]
fn bad_syntax_names_the_line() {
    let e = fail("schema = 1\nname = \"unterminated\n");
    assert!(e.message.contains("line 2"), "{e}");
    let e = fail("schema = 1\nname = \"a\"\nname = \"b\"\n");
    assert!(e.message.contains("line 3"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    assert_fails("schema = 1\nname = 5\n", "name", &["string"]);
    assert_fails(&with("idle_timeout_minutes = \"soon\""), "idle_timeout_minutes", &[]);
    assert_fails(&with("idle_timeout_minutes = -1"), "idle_timeout_minutes", &[]);
}

#[test]
fn unknown_field_names_the_key() {
    assert_fails(&with("colour = \"blue\""), "colour", &["unknown field"]);
    assert_fails(&with("[resources]\ngpus = 1"), "resources.gpus", &["unknown field"]);
}

#[test]
fn errors_inside_arrays_of_tables_name_the_index() {
    let text = with("[[env]]\nname = \"A\"\nvalue = \"x\"\n[[env]]\nname = \"B\"\nvalue = 3");
    assert_fails(&text, "env[1].value", &[]);
    assert_fails(&with("[[ports]]\nport = 70000"), "ports[0].port", &[]);
    assert_fails(
        &with("[[ports]]\nport = 8080\n[[ports]]\nname = \"x\""),
        "ports[1].port",
        &["missing"],
    );
}

#[test]
fn errors_inside_multiline_arrays_name_the_key() {
    assert_fails(&with("persisted_paths = [\n  \"/a\",\n  3,\n]"), "persisted_paths", &[]);
}

#[test]
fn schema_is_required_and_must_be_1() {
    assert_fails("name = \"demo\"\n", "schema", &["schema = 1"]);
    let e = fail("schema = 2\nname = \"demo\"\nfuture_field = true\n");
    assert_eq!(e.field, "schema");
    assert_eq!(e.message, "schema 2 is not supported; this server reads schema = 1");
    assert_fails("schema = \"1\"\nname = \"demo\"\n", "schema", &["integer 1"]);
}

#[test]
fn name_is_required() {
    assert_fails("schema = 1\n", "name", &["missing"]);
}

// --- name ------------------------------------------------------------------------------------

#[test]
fn name_rules() {
    assert!(validate_template_name("a").is_ok());
    assert!(validate_template_name(&format!("a{}", "b".repeat(62))).is_ok());
    let long = format!("a{}", "b".repeat(63));
    let e = validate_template_name(&long).unwrap_err();
    assert_eq!(e.field, "name");
    assert_eq!(e.message, "name is 64 characters; the limit is 63");
    assert_fails("schema = 1\nname = \"\"\n", "name", &["1 to 63"]);
    assert_fails("schema = 1\nname = \"Demo\"\n", "name", &["lowercase letter"]);
    assert_fails("schema = 1\nname = \"1demo\"\n", "name", &["lowercase letter"]);
    assert_fails("schema = 1\nname = \"de_mo\"\n", "name", &["'_'", "a-z, 0-9 and '-'"]);
    assert_fails("schema = 1\nname = \"de\\u0000mo\"\n", "name", &["U+0000"]);
}

// --- description -----------------------------------------------------------------------------

#[test]
fn description_rules() {
    let ok = with("description = \"line one\\nline two\\tindented\"");
    assert!(Manifest::parse(&ok).is_ok());
    let long = with(&format!("description = \"{}\"", "d".repeat(1203)));
    let e = fail(&long);
    assert_eq!(e.field, "description");
    assert_eq!(e.message, "description is 1203 characters; the limit is 1000");
    assert!(Manifest::parse(&with(&format!("description = \"{}\"", "é".repeat(1000)))).is_ok());
    assert_fails(
        &with("description = \"bell\\u0007\""),
        "description",
        &["U+0007", "tab and newline"],
    );
    assert_fails(&with("description = \"cr\\r\""), "description", &["U+000D"]);
}

// --- base_image ------------------------------------------------------------------------------

#[test]
fn base_image_rules() {
    for ok in [
        "debian:12",
        "ghcr.io/acme/dev-box:1.2_3",
        "burstflare/base@sha256:abcdef0123",
        "localhost:5000/x",
    ] {
        assert!(Manifest::parse(&with(&format!("base_image = \"{ok}\""))).is_ok(), "{ok}");
    }
    assert_fails(&with("base_image = \"\""), "base_image", &["empty"]);
    let long = format!("base_image = \"{}\"", "a".repeat(256));
    assert_fails(&with(&long), "base_image", &["256 bytes", "the limit is 255"]);
    assert_fails(&with("base_image = \"Debian:12\""), "base_image", &["'D'", "a-z, 0-9"]);
    assert_fails(&with("base_image = \"a b\""), "base_image", &["U+0020"]);
    assert_fails(&with("base_image = \"a/../b\""), "base_image", &["\"..\""]);
    assert_fails(&with("base_image = \"/abs\""), "base_image", &["'/' or '-'"]);
    assert_fails(&with("base_image = \"-flag\""), "base_image", &["'/' or '-'"]);
}

// --- persisted_paths -------------------------------------------------------------------------

/// A manifest with the given persisted paths.
fn paths(list: &[&str]) -> String {
    let items: Vec<String> = list.iter().map(|p| toml_str(p)).collect();
    with(&format!("persisted_paths = [{}]", items.join(", ")))
}

#[test]
fn persisted_paths_rules() {
    assert!(Manifest::parse(&paths(&["/home/dev", "/opt/data", "/procfs", "/devices"])).is_ok());
    let many: Vec<String> = (0..17).map(|i| format!("/p{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_fails(&paths(&many), "persisted_paths", &["17 entries", "the limit is 16"]);
    assert_fails(&paths(&["/a", "home/dev"]), "persisted_paths[1]", &["absolute"]);
    assert_fails(&paths(&["/"]), "persisted_paths[0]", &["\"/\" cannot be persisted"]);
    assert_fails(&paths(&["/home//dev"]), "persisted_paths[0]", &["\"//\""]);
    assert_fails(&paths(&["/home/dev/"]), "persisted_paths[0]", &["end with '/'"]);
    assert_fails(&paths(&["/home/../etc"]), "persisted_paths[0]", &["\"..\""]);
    assert_fails(&paths(&["/home/./dev"]), "persisted_paths[0]", &["\".\""]);
    assert_fails(&paths(&["/proc"]), "persisted_paths[0]", &["/proc"]);
    assert_fails(&paths(&["/a", "/b", "/sys/fs"]), "persisted_paths[2]", &["/sys"]);
    assert_fails(&paths(&["/dev/shm"]), "persisted_paths[0]", &["/dev"]);
    assert_fails(
        &paths(&["/a", "/b", "/a"]),
        "persisted_paths[2]",
        &["repeats persisted_paths[0]"],
    );
    let long = format!("/{}", "p".repeat(255));
    assert_fails(&paths(&[&long]), "persisted_paths[0]", &["256 bytes", "the limit is 255"]);
    assert_fails(&with("persisted_paths = [\"/a\\u001b\"]"), "persisted_paths[0]", &["U+001B"]);
    // Nesting is refused either way round; siblings sharing a prefix are fine.
    assert_fails(
        &paths(&["/home/dev", "/home/dev/.cache"]),
        "persisted_paths[1]",
        &["inside one another", "persisted_paths[0]", "must not nest"],
    );
    assert_fails(&paths(&["/w/a/b", "/x", "/w/a"]), "persisted_paths[2]", &["persisted_paths[0]"]);
    assert!(Manifest::parse(&paths(&["/home/dev", "/home/developer"])).is_ok());
}

#[test]
fn max_snapshot_bytes_has_a_floor() {
    assert!(Manifest::parse(&with("max_snapshot_bytes = 1048576")).is_ok());
    assert_fails(
        &with("max_snapshot_bytes = 1000"),
        "max_snapshot_bytes",
        &["the least is 1048576"],
    );
}

// --- env -------------------------------------------------------------------------------------

/// A manifest with one `[[env]]` table per (name, value) pair.
fn env(vars: &[(&str, &str)]) -> String {
    let mut s = String::from(MINIMAL);
    for (n, v) in vars {
        s.push_str(&format!("[[env]]\nname = {}\nvalue = {}\n", toml_str(n), toml_str(v)));
    }
    s
}

#[test]
fn env_rules() {
    assert!(Manifest::parse(&env(&[("_A1", "x\ty"), ("b", "")])).is_ok());
    let names: Vec<String> = (0..65).map(|i| format!("V{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    assert_fails(&env(&many), "env", &["65 entries", "the limit is 64"]);
    assert_fails(&env(&[("1A", "x")]), "env[0].name", &["letter or '_'"]);
    assert_fails(&env(&[("A", "x"), ("A-B", "x")]), "env[1].name", &["'-'"]);
    assert_fails(&env(&[("", "x")]), "env[0].name", &["empty"]);
    let long = format!("A{}", "b".repeat(128));
    assert_fails(&env(&[(&long, "x")]), "env[0].name", &["129 characters", "the limit is 128"]);
    assert_fails(
        &env(&[("A", "x"), ("B", "x"), ("A", "y")]),
        "env[2].name",
        &["repeats env[0].name"],
    );
    let big = "v".repeat(4097);
    assert_fails(&env(&[("A", &big)]), "env[0].value", &["4097 bytes", "the limit is 4096"]);
    assert_fails(&env(&[("A", "two\nlines")]), "env[0].value", &["U+000A", "tab is the only"]);
    assert_fails(&env(&[("A", "nul\0")]), "env[0].value", &["U+0000"]);
}

#[test]
fn env_value_is_never_echoed() {
    let e = fail(&env(&[("TOKEN", "hunter2-secret\u{7}")]));
    assert_eq!(e.field, "env[0].value");
    assert!(!e.message.contains("hunter2"), "{e}");
}

// --- ports -----------------------------------------------------------------------------------

/// A manifest with one `[[ports]]` table per (port, name, protocol).
fn ports(list: &[(u32, &str, &str)]) -> String {
    let mut s = String::from(MINIMAL);
    for (p, n, proto) in list {
        s.push_str(&format!("[[ports]]\nport = {p}\nname = {n:?}\nprotocol = {proto:?}\n"));
    }
    s
}

#[test]
fn ports_rules() {
    assert!(
        Manifest::parse(&ports(&[(1, "a", "tcp"), (65535, "", "http"), (8080, "", "http")]))
            .is_ok()
    );
    let many: Vec<(u32, &str, &str)> = (0..17).map(|i| (3000 + i, "", "http")).collect();
    assert_fails(&ports(&many), "ports", &["17 entries", "the limit is 16"]);
    assert_fails(&ports(&[(0, "", "http")]), "ports[0].port", &["1..=65535"]);
    assert_fails(&ports(&[(65536, "", "http")]), "ports[0].port", &[]);
    assert_fails(&ports(&[(22, "", "tcp")]), "ports[0].port", &["reserved", "SSH"]);
    assert_fails(
        &ports(&[(80, "", "http"), (80, "", "tcp")]),
        "ports[1].port",
        &["repeats ports[0].port"],
    );
    let long = "n".repeat(64);
    assert_fails(
        &ports(&[(80, &long, "http")]),
        "ports[0].name",
        &["64 characters", "the limit is 63"],
    );
    assert_fails(&ports(&[(80, "Web", "http")]), "ports[0].name", &["'W'"]);
    assert_fails(
        &ports(&[(80, "web", "http"), (81, "web", "http")]),
        "ports[1].name",
        &["repeats"],
    );
    assert_fails(&ports(&[(80, "", "udp")]), "ports[0].protocol", &["\"http\" or \"tcp\""]);
}

// --- resources and idle timeout --------------------------------------------------------------

#[test]
fn resources_rules() {
    let r = |k: &str, v: u64| with(&format!("[resources]\n{k} = {v}"));
    assert_fails(&r("cpu_millis", 99), "resources.cpu_millis", &["99", "100..=64000"]);
    assert_fails(&r("cpu_millis", 64001), "resources.cpu_millis", &["100..=64000"]);
    assert_fails(&r("memory_mb", 127), "resources.memory_mb", &["128..=262144"]);
    assert_fails(&r("memory_mb", 262_145), "resources.memory_mb", &["128..=262144"]);
    assert_fails(&r("disk_gb", 0), "resources.disk_gb", &["1..=2048"]);
    assert_fails(&r("disk_gb", 2049), "resources.disk_gb", &["1..=2048"]);
    assert!(Manifest::parse(&r("cpu_millis", 100)).is_ok());
    assert!(Manifest::parse(&r("disk_gb", 2048)).is_ok());
}

#[test]
fn idle_timeout_rules() {
    assert_fails(&with("idle_timeout_minutes = 4"), "idle_timeout_minutes", &["is 4", "5..=1440"]);
    assert_fails(&with("idle_timeout_minutes = 1441"), "idle_timeout_minutes", &["5..=1440"]);
    assert!(Manifest::parse(&with("idle_timeout_minutes = 5")).is_ok());
    assert!(Manifest::parse(&with("idle_timeout_minutes = 1440")).is_ok());
}

// --- labels ----------------------------------------------------------------------------------

#[test]
fn labels_rules() {
    let ok = with(
        "[labels]\nteam = \"a\"\n\"burstflare.dev/tier\" = \"gold\"\n0 = \"\"\n\"a-b.c/d\" = \"é\"",
    );
    assert!(Manifest::parse(&ok).is_ok(), "{:?}", Manifest::parse(&ok));
    let many: Vec<String> = (0..33).map(|i| format!("k{i} = \"v\"")).collect();
    assert_fails(
        &with(&format!("[labels]\n{}", many.join("\n"))),
        "labels",
        &["33 entries", "the limit is 32"],
    );
    assert_fails(&with("[labels]\n\"-a\" = \"x\""), "labels.-a", &["start and end"]);
    assert_fails(&with("[labels]\n\"a-\" = \"x\""), "labels.a-", &["start and end"]);
    assert_fails(&with("[labels]\nTeam = \"x\""), "labels.Team", &["'T'"]);
    assert_fails(&with("[labels]\n\"a_b\" = \"x\""), "labels.a_b", &["'_'"]);
    let long = "k".repeat(64);
    assert_fails(
        &with(&format!("[labels]\n{long} = \"x\"")),
        &format!("labels.{long}"),
        &["64 characters", "the limit is 63"],
    );
    let value = "v".repeat(257);
    assert_fails(
        &with(&format!("[labels]\nk = \"{value}\"")),
        "labels.k",
        &["257 characters", "the limit is 256"],
    );
    assert_fails(&with("[labels]\nk = \"a\\tb\""), "labels.k", &["U+0009"]);
}

// --- parse_all -------------------------------------------------------------------------------

#[test]
fn parse_all_returns_every_failure() {
    let text = "schema = 1\nname = \"Bad\"\nidle_timeout_minutes = 1\npersisted_paths = [\"rel\"]\n[[ports]]\nport = 22\n";
    let errors = Manifest::parse_all(text).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "persisted_paths[0]", "ports[0].port", "idle_timeout_minutes"]);
    assert_eq!(Manifest::parse(text).unwrap_err(), errors[0]);
}

#[test]
fn validate_checks_a_built_manifest() {
    let mut m = Manifest::parse(MINIMAL).unwrap();
    assert!(m.validate().is_empty());
    m.schema = 3;
    m.resources.cpu_millis = 1;
    let fields: Vec<String> = m.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["schema", "resources.cpu_millis"]);
}

// --- hostile text ----------------------------------------------------------------------------

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    for open in ["[", "{a=", "[{a="] {
        let text = format!("schema = 1\nname = \"x\"\nv = {}", open.repeat(60 * 1024 / open.len()));
        let e = fail(&text);
        assert!(e.message.chars().count() <= 300);
    }
    let text = format!("{}\n", "[a]\n".repeat(10_000));
    let _ = Manifest::parse(&text);
}

#[test]
fn long_messages_are_capped() {
    let text = format!("schema = 1\nname = \"x\"\n{} = 1\n", "k".repeat(5000));
    let e = fail(&text);
    assert!(e.message.chars().count() <= 300, "{}", e.message.len());
    assert!(e.field.chars().count() <= 100, "{}", e.field);
}

#[test]
fn a_stop_hook_is_bounded_in_length_and_time() {
    let ok = Manifest::parse(
        "schema = 1\nname = \"h\"\n[hooks]\nstop = \"echo bye > /tmp/bye\"\nstop_timeout_secs = 10\n",
    )
    .unwrap();
    assert_eq!(ok.hooks.stop.as_deref(), Some("echo bye > /tmp/bye"));
    assert_eq!(ok.hooks.stop_timeout_secs, 10);
    assert_eq!(Manifest::parse("schema = 1\nname = \"h\"\n").unwrap().hooks.stop_timeout_secs, 30);

    let slow = Manifest::parse("schema = 1\nname = \"h\"\n[hooks]\nstop_timeout_secs = 301\n")
        .unwrap_err();
    assert_eq!(slow.field, "hooks.stop_timeout_secs");
    assert!(slow.message.contains("300"), "{}", slow.message);
    let long = format!("schema = 1\nname = \"h\"\n[hooks]\nstop = \"{}\"\n", "x".repeat(5000));
    let err = Manifest::parse(&long).unwrap_err();
    assert_eq!(err.field, "hooks.stop");
    assert!(err.message.contains("4096"), "{}", err.message);
}

#[test]
fn a_smoke_hook_is_bounded_in_length_and_time() {
    let ok = Manifest::parse(
        "schema = 1\nname = \"h\"\n[hooks]\nsmoke = \"cargo --version\"\nsmoke_timeout_secs = 120\n",
    )
    .unwrap();
    assert_eq!(ok.hooks.smoke.as_deref(), Some("cargo --version"));
    assert_eq!(ok.hooks.smoke_timeout_secs, 120);
    let default = Manifest::parse("schema = 1\nname = \"h\"\n").unwrap();
    assert_eq!((default.hooks.smoke, default.hooks.smoke_timeout_secs), (None, 60));

    let slow = Manifest::parse("schema = 1\nname = \"h\"\n[hooks]\nsmoke_timeout_secs = 601\n")
        .unwrap_err();
    assert_eq!(slow.field, "hooks.smoke_timeout_secs");
    assert!(slow.message.contains("600"), "{}", slow.message);
    let err = Manifest::parse("schema = 1\nname = \"h\"\n[hooks]\nsmoke = \"  \"\n").unwrap_err();
    assert_eq!(err.field, "hooks.smoke");
    let err =
        Manifest::parse("schema = 1\nname = \"h\"\n[hooks]\nsmoke = \"a\\u0007b\"\n").unwrap_err();
    assert!(err.field == "hooks.smoke" && err.message.contains("control"), "{err:?}");
}
