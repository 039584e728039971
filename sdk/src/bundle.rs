//! Template bundles: the manifest (`burstflare.toml`), packing a template directory into a
//! bundle, and verifying an untrusted bundle before it is built.
//!
//! A bundle is a tar archive compressed with zstd. Its root holds [`MANIFEST_FILE`] and
//! [`DOCKERFILE`]; everything else is build context. The CLI makes one with [`pack`]; the server
//! checks one with [`inspect`], which never writes to disk and hands back a normalized plain tar
//! of exactly the entries it validated. The format and every limit are described in
//! `docs/templates.md`.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The only manifest schema this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// The manifest's file name, at the root of a bundle.
pub const MANIFEST_FILE: &str = "burstflare.toml";
/// The Dockerfile's file name, at the root of a bundle.
pub const DOCKERFILE: &str = "Dockerfile";
/// The base image used when a manifest names none.
pub const DEFAULT_BASE_IMAGE: &str = "burstflare/base:latest";
/// The largest manifest accepted, in bytes (64 KiB).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// The zstd level [`pack`] compresses with.
pub const ZSTD_LEVEL: i32 = 3;

/// The longest template name, in characters.
pub const MAX_NAME_CHARS: usize = 63;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// The longest base image reference, in bytes.
pub const MAX_BASE_IMAGE_BYTES: usize = 255;
/// The most persisted paths.
pub const MAX_PERSISTED_PATHS: usize = 16;
/// The longest persisted path, in bytes.
pub const MAX_PERSISTED_PATH_BYTES: usize = 255;
/// The most environment variables.
pub const MAX_ENV: usize = 64;
/// The longest environment variable name, in characters.
pub const MAX_ENV_NAME_CHARS: usize = 128;
/// The longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// The most ports.
pub const MAX_PORTS: usize = 16;
/// The longest port name, in characters.
pub const MAX_PORT_NAME_CHARS: usize = 63;
/// The port the session agent's SSH server listens on; templates cannot publish it.
pub const RESERVED_SSH_PORT: u16 = 22;
/// The most labels.
pub const MAX_LABELS: usize = 32;
/// The longest label key, in characters.
pub const MAX_LABEL_KEY_CHARS: usize = 63;
/// The longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;

/// Longest message a [`BundleError`] carries, in characters.
const MAX_MESSAGE_CHARS: usize = 300;
/// Longest excerpt of user input quoted in a message, in characters.
const MAX_QUOTE_CHARS: usize = 80;
/// Largest pax extended header accepted by [`inspect`].
const MAX_PAX_BYTES: u64 = 64 * 1024;
/// Most symlinks followed while resolving one link target.
const MAX_LINK_HOPS: u32 = 40;
/// Most path components stepped through while resolving all link targets of a bundle.
const MAX_LINK_STEPS: u64 = 2_000_000;
/// Paths a persisted path may not be, or be under.
const FORBIDDEN_PERSISTED_ROOTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Size limits for packing and verifying a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest compressed bundle, in bytes (default 64 MiB).
    pub max_bundle_bytes: u64,
    /// Largest sum of the sizes of the regular files, uncompressed (default 512 MiB).
    pub max_content_bytes: u64,
    /// Most entries (files, directories and links) (default 20 000).
    pub max_files: u64,
    /// Longest entry path or link target, in bytes (default 1024).
    pub max_path_bytes: usize,
}

impl Default for Limits {
    /// The limits the server applies unless configured otherwise.
    fn default() -> Self {
        Limits {
            max_bundle_bytes: 64 * 1024 * 1024,
            max_content_bytes: 512 * 1024 * 1024,
            max_files: 20_000,
            max_path_bytes: 1024,
        }
    }
}

/// A validation failure: which field (e.g. "persisted_paths[2]", "env[0].name", "bundle.size",
/// "bundle.path", "Dockerfile") and a message that names the limit, e.g. "description is 1203
/// characters; the limit is 1000".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {message}")]
pub struct BundleError {
    pub field: String,
    pub message: String,
}

impl BundleError {
    /// Makes an error; the message is cut to 300 characters.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if message.chars().count() > MAX_MESSAGE_CHARS {
            let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
            cut.push('…');
            cut
        } else {
            message
        };
        BundleError { field: field.into(), message }
    }
}

/// The template manifest, `burstflare.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The template's name: `^[a-z][a-z0-9-]{0,62}$`.
    pub name: String,
    /// Free text, at most 1000 characters; tab and newline are the only control characters allowed.
    #[serde(default)]
    pub description: String,
    /// The image the Dockerfile builds on, passed as build argument `BASE_IMAGE`.
    #[serde(default = "default_base_image")]
    pub base_image: String,
    /// Absolute paths inside the container that survive sleep and restart.
    #[serde(default)]
    pub persisted_paths: Vec<String>,
    /// Environment variables set in every session.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Ports the session publishes.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// CPU, memory and disk of a session.
    #[serde(default)]
    pub resources: Resources,
    /// Minutes without activity before a session sleeps: 5..=1440, default 30.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_minutes: u32,
    /// Free-form key/value labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Commands run inside the session at lifecycle points.
    #[serde(default)]
    pub hooks: Hooks,
    /// The user SSH logins, commands, SFTP and the browser terminal run as (a name from the
    /// image's /etc/passwd: `^[a-z_][a-z0-9_-]{0,31}$`); default: the user the agent runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Largest snapshot of the persisted paths, in bytes of file content (at least 1 MiB); the
    /// workspace's plan may set a smaller one. A session holding more keeps running and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_snapshot_bytes: Option<u64>,
}

/// Smallest `max_snapshot_bytes` a manifest may set.
pub const MIN_SNAPSHOT_BYTES: u64 = 1024 * 1024;

/// Longest hook command, in bytes.
pub const MAX_HOOK_BYTES: usize = 4096;

/// Lifecycle hooks of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run with `sh -c` inside the session before it sleeps or stops; a hook that fails or runs
    /// out of time does not prevent the stop.
    #[serde(default)]
    pub stop: Option<String>,
    /// Seconds the stop hook may take: 1..=300, default 30.
    #[serde(default = "default_hook_timeout")]
    pub stop_timeout_secs: u32,
    /// Run with `sh -c` inside the canary container when a version is promoted, once its agent
    /// is ready; the promotion goes on only if it exits 0 (docs/catalog.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke: Option<String>,
    /// Seconds the smoke command may take: 1..=600, default 60.
    #[serde(default = "default_smoke_timeout")]
    pub smoke_timeout_secs: u32,
}

fn default_smoke_timeout() -> u32 {
    60
}

fn default_hook_timeout() -> u32 {
    30
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            stop: None,
            stop_timeout_secs: default_hook_timeout(),
            smoke: None,
            smoke_timeout_secs: default_smoke_timeout(),
        }
    }
}

fn check_hook(field: &str, cmd: Option<&String>, errors: &mut Vec<BundleError>) {
    let Some(cmd) = cmd else { return };
    if cmd.trim().is_empty() || cmd.len() > MAX_HOOK_BYTES {
        errors.push(BundleError::new(
            field,
            format!(
                "{field} is {} bytes; it must hold a command of at most {MAX_HOOK_BYTES} bytes",
                cmd.len()
            ),
        ));
    } else if cmd.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        errors.push(BundleError::new(
            field,
            format!("{field} must not hold control characters other than tab and newline"),
        ));
    }
}

fn check_hooks(h: &Hooks, errors: &mut Vec<BundleError>) {
    check_hook("hooks.stop", h.stop.as_ref(), errors);
    check_range("hooks.stop_timeout_secs", h.stop_timeout_secs, 1, 300, "seconds", errors);
    check_hook("hooks.smoke", h.smoke.as_ref(), errors);
    check_range("hooks.smoke_timeout_secs", h.smoke_timeout_secs, 1, 600, "seconds", errors);
}

/// An environment variable of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, unique in the manifest.
    pub name: String,
    /// At most 4096 bytes; tab is the only control character allowed.
    pub value: String,
    /// When true, [`Manifest::view`] hides the value.
    #[serde(default)]
    pub secret: bool,
}

/// A port a session publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// 1..=65535, unique, not 22.
    pub port: u16,
    /// Optional name: at most 63 characters of `[a-z0-9-]`, unique when not empty.
    #[serde(default)]
    pub name: String,
    /// "http" (default) or "tcp".
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

/// The resources of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Thousandths of a CPU: 100..=64000, default 2000.
    pub cpu_millis: u32,
    /// Memory in MiB: 128..=262144, default 2048.
    pub memory_mb: u32,
    /// Disk in GiB: 1..=2048, default 10.
    pub disk_gb: u32,
}

impl Default for Resources {
    /// Two CPUs, 2 GiB of memory, 10 GiB of disk.
    fn default() -> Self {
        Resources { cpu_millis: 2000, memory_mb: 2048, disk_gb: 10 }
    }
}

/// A manifest as anyone in the workspace may see it: secret values removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestView {
    pub schema: u32,
    pub name: String,
    pub description: String,
    pub base_image: String,
    pub persisted_paths: Vec<String>,
    pub env: Vec<EnvView>,
    pub ports: Vec<Port>,
    pub resources: Resources,
    pub idle_timeout_minutes: u32,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// An environment variable as shown to anyone: `value` is `None` when `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvView {
    pub name: String,
    pub value: Option<String>,
    pub secret: bool,
}

/// Serde default of [`Manifest::base_image`].
fn default_base_image() -> String {
    DEFAULT_BASE_IMAGE.to_owned()
}

/// Serde default of [`Manifest::idle_timeout_minutes`].
fn default_idle_timeout() -> u32 {
    30
}

/// Serde default of [`Port::protocol`].
fn default_protocol() -> String {
    "http".to_owned()
}

impl Manifest {
    /// Parses TOML and validates every field; the first failure is returned. Never panics on any
    /// input.
    pub fn parse(text: &str) -> Result<Manifest, BundleError> {
        Manifest::parse_all(text).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| BundleError::new(MANIFEST_FILE, "is invalid"))
        })
    }

    /// Same as [`Manifest::parse`] but returns all failures (for the CLI to print them all).
    /// Syntax and type errors stop parsing, so they come alone.
    pub fn parse_all(text: &str) -> Result<Manifest, Vec<BundleError>> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(vec![BundleError::new(
                MANIFEST_FILE,
                format!(
                    "{MANIFEST_FILE} is {} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (64 KiB)",
                    text.len()
                ),
            )]);
        }
        // Syntax first, then the schema version (so a newer schema with new fields is reported as
        // such, not as unknown fields), then the typed fields, then the rules.
        let table: toml::Table = toml::from_str(text).map_err(|e| vec![toml_error(text, &e)])?;
        match table.get("schema") {
            None => {
                return Err(vec![BundleError::new(
                    "schema",
                    format!("is missing; add `schema = {SCHEMA_VERSION}` to {MANIFEST_FILE}"),
                )]);
            }
            Some(toml::Value::Integer(n)) if *n == i64::from(SCHEMA_VERSION) => {}
            Some(toml::Value::Integer(n)) => {
                return Err(vec![BundleError::new(
                    "schema",
                    format!(
                        "schema {n} is not supported; this server reads schema = {SCHEMA_VERSION}"
                    ),
                )]);
            }
            Some(other) => {
                return Err(vec![BundleError::new(
                    "schema",
                    format!("must be the integer {SCHEMA_VERSION}, not a {}", other.type_str()),
                )]);
            }
        }
        let manifest: Manifest = toml::from_str(text).map_err(|e| vec![toml_error(text, &e)])?;
        let errors = manifest.validate();
        if errors.is_empty() { Ok(manifest) } else { Err(errors) }
    }

    /// Checks every rule and returns every failure, in field order (empty when valid).
    pub fn validate(&self) -> Vec<BundleError> {
        let mut errors = Vec::new();
        if self.schema != SCHEMA_VERSION {
            errors.push(BundleError::new(
                "schema",
                format!(
                    "schema {} is not supported; this server reads schema = {SCHEMA_VERSION}",
                    self.schema
                ),
            ));
        }
        if let Err(e) = validate_template_name(&self.name) {
            errors.push(e);
        }
        check_description(&self.description, &mut errors);
        check_base_image(&self.base_image, &mut errors);
        check_persisted_paths(&self.persisted_paths, &mut errors);
        if let Some(max) = self.max_snapshot_bytes
            && max < MIN_SNAPSHOT_BYTES
        {
            errors.push(BundleError::new(
                "max_snapshot_bytes",
                format!("max_snapshot_bytes is {max}; the least is {MIN_SNAPSHOT_BYTES} (1 MiB)"),
            ));
        }
        check_env(&self.env, &mut errors);
        check_ports(&self.ports, &mut errors);
        check_resources(&self.resources, &mut errors);
        check_range(
            "idle_timeout_minutes",
            self.idle_timeout_minutes,
            5,
            1440,
            "minutes",
            &mut errors,
        );
        check_labels(&self.labels, &mut errors);
        check_hooks(&self.hooks, &mut errors);
        if let Some(user) = &self.user {
            let ok = user.len() <= 32
                && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && user
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !ok {
                errors.push(BundleError::new(
                    "user",
                    "user: 1 to 32 characters of a-z, 0-9, '_' and '-', starting with a letter or '_'",
                ));
            }
        }
        errors
    }

    /// A copy safe to show anyone in the workspace: values of env vars with `secret = true`
    /// replaced by `None`.
    pub fn view(&self) -> ManifestView {
        ManifestView {
            schema: self.schema,
            name: self.name.clone(),
            description: self.description.clone(),
            base_image: self.base_image.clone(),
            persisted_paths: self.persisted_paths.clone(),
            env: self
                .env
                .iter()
                .map(|v| EnvView {
                    name: v.name.clone(),
                    value: if v.secret { None } else { Some(v.value.clone()) },
                    secret: v.secret,
                })
                .collect(),
            ports: self.ports.clone(),
            resources: self.resources,
            idle_timeout_minutes: self.idle_timeout_minutes,
            labels: self.labels.clone(),
            user: self.user.clone(),
        }
    }
}

/// Checks a template name: `^[a-z][a-z0-9-]{0,62}$`. The error's field is "name".
pub fn validate_template_name(name: &str) -> Result<(), BundleError> {
    let err = |m: String| Err(BundleError::new("name", m));
    let len = name.chars().count();
    if len == 0 {
        return err(format!("is empty; a name is 1 to {MAX_NAME_CHARS} characters"));
    }
    if len > MAX_NAME_CHARS {
        return err(format!("name is {len} characters; the limit is {MAX_NAME_CHARS}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return err(format!("name {} must start with a lowercase letter a-z", quote(name)));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return err(format!(
            "name {} contains {}; only a-z, 0-9 and '-' are allowed",
            quote(name),
            describe_char(c)
        ));
    }
    Ok(())
}

/// Checks the description: length and control characters (tab and newline allowed).
fn check_description(text: &str, errors: &mut Vec<BundleError>) {
    let len = text.chars().count();
    if len > MAX_DESCRIPTION_CHARS {
        errors.push(BundleError::new(
            "description",
            format!("description is {len} characters; the limit is {MAX_DESCRIPTION_CHARS}"),
        ));
    } else if let Some(msg) = control_char_message(text, &['\t', '\n']) {
        errors.push(BundleError::new("description", msg));
    }
}

/// Checks a docker image reference: charset, length, no "..", no leading '/' or '-'.
fn check_base_image(image: &str, errors: &mut Vec<BundleError>) {
    let field = "base_image";
    let msg = if image.is_empty() {
        Some("is empty; name an image such as \"burstflare/base:latest\"".to_owned())
    } else if image.len() > MAX_BASE_IMAGE_BYTES {
        Some(format!("base_image is {} bytes; the limit is {MAX_BASE_IMAGE_BYTES}", image.len()))
    } else if let Some(c) = image.chars().find(|c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '/' | ':' | '@' | '-'))
    }) {
        Some(format!(
            "base_image {} contains {}; only a-z, 0-9 and . _ / : @ - are allowed",
            quote(image),
            describe_char(c)
        ))
    } else if image.contains("..") {
        Some(format!("base_image {} must not contain \"..\"", quote(image)))
    } else if image.starts_with('/') || image.starts_with('-') {
        Some(format!("base_image {} must not start with '/' or '-'", quote(image)))
    } else {
        None
    };
    if let Some(m) = msg {
        errors.push(BundleError::new(field, m));
    }
}

/// Checks persisted paths: count, and for each: absolute, canonical, not a kernel filesystem,
/// not repeated.
fn check_persisted_paths(paths: &[String], errors: &mut Vec<BundleError>) {
    if paths.len() > MAX_PERSISTED_PATHS {
        errors.push(BundleError::new(
            "persisted_paths",
            format!(
                "persisted_paths has {} entries; the limit is {MAX_PERSISTED_PATHS}",
                paths.len()
            ),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, path) in paths.iter().enumerate() {
        let field = format!("persisted_paths[{i}]");
        let q = quote(path);
        let msg = if let Some(m) = control_char_message(path, &[]) {
            Some(m)
        } else if path.len() > MAX_PERSISTED_PATH_BYTES {
            Some(format!("path is {} bytes; the limit is {MAX_PERSISTED_PATH_BYTES}", path.len()))
        } else if !path.starts_with('/') {
            Some(format!("{q} must be an absolute path starting with '/'"))
        } else if path == "/" {
            Some("\"/\" cannot be persisted; name a directory such as \"/home/dev\"".to_owned())
        } else if path.contains("//") {
            Some(format!("{q} must not contain \"//\""))
        } else if path.ends_with('/') {
            Some(format!("{q} must not end with '/'"))
        } else if path.split('/').any(|c| c == ".." || c == ".") {
            Some(format!("{q} must not contain \"..\" or \".\" components"))
        } else if let Some(root) = FORBIDDEN_PERSISTED_ROOTS.iter().find(|r| {
            path == *r || path.strip_prefix(**r).is_some_and(|rest| rest.starts_with('/'))
        }) {
            Some(format!("{q} is under {root}, which is not persisted"))
        } else if let Some(first) = seen.get(path.as_str()) {
            Some(format!("{q} repeats persisted_paths[{first}]"))
        } else {
            seen.insert(path, i);
            None
        };
        if let Some(m) = msg {
            errors.push(BundleError::new(field, m));
        }
    }
    // A snapshot packs each path on its own: one inside another would be packed twice and
    // restored over itself.
    for (j, inner) in paths.iter().enumerate() {
        if let Some(i) = paths[..j].iter().position(|outer| {
            inner.strip_prefix(outer.as_str()).is_some_and(|rest| rest.starts_with('/'))
                || outer.strip_prefix(inner.as_str()).is_some_and(|rest| rest.starts_with('/'))
        }) {
            errors.push(BundleError::new(
                format!("persisted_paths[{j}]"),
                format!(
                    "{} and persisted_paths[{i}] ({}) are inside one another; persisted paths \
                     must not nest (keep the outer one)",
                    quote(inner),
                    quote(&paths[i])
                ),
            ));
        }
    }
}

/// Checks environment variables: count, names, uniqueness and values. Values are never quoted.
fn check_env(env: &[EnvVar], errors: &mut Vec<BundleError>) {
    if env.len() > MAX_ENV {
        errors.push(BundleError::new(
            "env",
            format!("env has {} entries; the limit is {MAX_ENV}", env.len()),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, var) in env.iter().enumerate() {
        let name = &var.name;
        let len = name.chars().count();
        let name_msg = if len == 0 {
            Some("is empty".to_owned())
        } else if len > MAX_ENV_NAME_CHARS {
            Some(format!("name is {len} characters; the limit is {MAX_ENV_NAME_CHARS}"))
        } else if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            Some(format!("{} must start with a letter or '_'", quote(name)))
        } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            Some(format!(
                "{} contains {}; only A-Z, a-z, 0-9 and '_' are allowed",
                quote(name),
                describe_char(c)
            ))
        } else if let Some(first) = seen.get(name.as_str()) {
            Some(format!("{} repeats env[{first}].name", quote(name)))
        } else {
            seen.insert(name, i);
            None
        };
        if let Some(m) = name_msg {
            errors.push(BundleError::new(format!("env[{i}].name"), m));
        }
        let value_msg = if var.value.len() > MAX_ENV_VALUE_BYTES {
            Some(format!("value is {} bytes; the limit is {MAX_ENV_VALUE_BYTES}", var.value.len()))
        } else {
            control_char_message(&var.value, &['\t'])
        };
        if let Some(m) = value_msg {
            errors.push(BundleError::new(format!("env[{i}].value"), m));
        }
    }
}

/// Checks ports: count, range, the reserved SSH port, uniqueness, names and protocols.
fn check_ports(ports: &[Port], errors: &mut Vec<BundleError>) {
    if ports.len() > MAX_PORTS {
        errors.push(BundleError::new(
            "ports",
            format!("ports has {} entries; the limit is {MAX_PORTS}", ports.len()),
        ));
    }
    let mut seen: HashMap<u16, usize> = HashMap::new();
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    for (i, port) in ports.iter().enumerate() {
        let port_msg = if port.port == 0 {
            Some("port 0 is out of range; the range is 1..=65535".to_owned())
        } else if port.port == RESERVED_SSH_PORT {
            Some(format!("port {RESERVED_SSH_PORT} is reserved for the session agent's SSH server"))
        } else if let Some(first) = seen.get(&port.port) {
            Some(format!("port {} repeats ports[{first}].port", port.port))
        } else {
            seen.insert(port.port, i);
            None
        };
        if let Some(m) = port_msg {
            errors.push(BundleError::new(format!("ports[{i}].port"), m));
        }
        let name = &port.name;
        let len = name.chars().count();
        let name_msg = if len > MAX_PORT_NAME_CHARS {
            Some(format!("name is {len} characters; the limit is {MAX_PORT_NAME_CHARS}"))
        } else if let Some(c) =
            name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            Some(format!(
                "{} contains {}; only a-z, 0-9 and '-' are allowed",
                quote(name),
                describe_char(c)
            ))
        } else if name.is_empty() {
            None
        } else if let Some(first) = seen_names.get(name.as_str()) {
            Some(format!("{} repeats ports[{first}].name", quote(name)))
        } else {
            seen_names.insert(name, i);
            None
        };
        if let Some(m) = name_msg {
            errors.push(BundleError::new(format!("ports[{i}].name"), m));
        }
        if port.protocol != "http" && port.protocol != "tcp" {
            errors.push(BundleError::new(
                format!("ports[{i}].protocol"),
                format!("protocol {} is not \"http\" or \"tcp\"", quote(&port.protocol)),
            ));
        }
    }
}

/// Checks the resource ranges.
fn check_resources(r: &Resources, errors: &mut Vec<BundleError>) {
    check_range("resources.cpu_millis", r.cpu_millis, 100, 64_000, "millicpus", errors);
    check_range("resources.memory_mb", r.memory_mb, 128, 262_144, "MiB", errors);
    check_range("resources.disk_gb", r.disk_gb, 1, 2048, "GiB", errors);
}

/// Pushes an error when `value` is outside `min..=max`; the message names the range.
fn check_range(
    field: &str,
    value: u32,
    min: u32,
    max: u32,
    unit: &str,
    errors: &mut Vec<BundleError>,
) {
    if !(min..=max).contains(&value) {
        let short = field.rsplit('.').next().unwrap_or(field);
        errors.push(BundleError::new(
            field,
            format!("{short} is {value}; the range is {min}..={max} ({unit})"),
        ));
    }
}

/// Checks labels: count, key syntax, value length and control characters.
fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<BundleError>) {
    if labels.len() > MAX_LABELS {
        errors.push(BundleError::new(
            "labels",
            format!("labels has {} entries; the limit is {MAX_LABELS}", labels.len()),
        ));
    }
    for (key, value) in labels {
        let field = format!("labels.{}", excerpt(key));
        let len = key.chars().count();
        let edge_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let key_msg = if len == 0 {
            Some("the key is empty".to_owned())
        } else if len > MAX_LABEL_KEY_CHARS {
            Some(format!("key is {len} characters; the limit is {MAX_LABEL_KEY_CHARS}"))
        } else if let Some(c) = key.chars().find(|c| !(edge_ok(*c) || matches!(c, '.' | '-' | '/')))
        {
            Some(format!(
                "key {} contains {}; only a-z, 0-9 and . - / are allowed",
                quote(key),
                describe_char(c)
            ))
        } else if !key.starts_with(edge_ok) || !key.ends_with(edge_ok) {
            Some(format!("key {} must start and end with a-z or 0-9", quote(key)))
        } else {
            None
        };
        if let Some(m) = key_msg {
            errors.push(BundleError::new(field.clone(), m));
        }
        let vlen = value.chars().count();
        let value_msg = if vlen > MAX_LABEL_VALUE_CHARS {
            Some(format!("value is {vlen} characters; the limit is {MAX_LABEL_VALUE_CHARS}"))
        } else {
            control_char_message(value, &[])
        };
        if let Some(m) = value_msg {
            errors.push(BundleError::new(field, m));
        }
    }
}

/// A message for the first control character of `text` not in `allowed`, if any.
fn control_char_message(text: &str, allowed: &[char]) -> Option<String> {
    let (pos, c) =
        text.chars().enumerate().find(|(_, c)| c.is_control() && !allowed.contains(c))?;
    let allowed = match allowed {
        [] => "no control characters are allowed".to_owned(),
        ['\t'] => "tab is the only control character allowed".to_owned(),
        _ => "tab and newline are the only control characters allowed".to_owned(),
    };
    Some(format!("contains the control character U+{:04X} at character {pos}; {allowed}", c as u32))
}

/// Names a character for a message: printable ones quoted, others as U+XXXX.
fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}

/// At most [`MAX_QUOTE_CHARS`] characters of `s`, with control characters escaped.
fn excerpt(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_QUOTE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` for a message: an excerpt in double quotes.
fn quote(s: &str) -> String {
    format!("\"{}\"", excerpt(s))
}

// ---------------------------------------------------------------------------------------------
// TOML errors
// ---------------------------------------------------------------------------------------------

/// Turns a toml error into a [`BundleError`] naming the key at the error's position.
fn toml_error(text: &str, err: &toml::de::Error) -> BundleError {
    let raw = err.message();
    let mut message: String =
        raw.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    if message.is_empty() {
        message = "is not valid TOML".to_owned();
    }
    let missing =
        raw.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).map(excerpt);
    let field = match err.span() {
        Some(span) => {
            let pos = span.start.min(text.len());
            let (line, column) = line_column(text, pos);
            message = format!("{message} (line {line}, column {column})");
            field_at(text, pos, missing.as_deref())
        }
        None => missing.unwrap_or_else(|| MANIFEST_FILE.to_owned()),
    };
    BundleError::new(field, message)
}

/// 1-based line and column (in bytes) of byte offset `pos`.
fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let before = text.as_bytes().get(..pos).unwrap_or_default();
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    (line, pos - line_start + 1)
}

/// Best guess of the field at byte offset `pos`: the table header in force (with an index for
/// arrays of tables) and the nearest `key =` before the position, or `missing` inside that table.
fn field_at(text: &str, pos: usize, missing: Option<&str>) -> String {
    let mut table = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut last_key: Option<String> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if pos < start {
            break;
        }
        let trimmed = line.trim();
        if let Some((name, is_array)) = table_header(trimmed) {
            table = if is_array {
                let n = counts.entry(name.clone()).or_insert(0);
                let path = format!("{name}[{n}]");
                *n += 1;
                path
            } else {
                name
            };
            last_key = None;
        } else if let Some(key) = line_key(trimmed) {
            if pos < offset && missing.is_some() {
                // A table missing a field, inside an inline table on this line: `key = {…}`.
                let indent = line.len() - line.trim_start().len();
                if pos > start + indent {
                    table = if table.is_empty() { key } else { format!("{table}.{key}") };
                }
                last_key = None;
            } else {
                last_key = Some(key);
            }
        }
        if pos < offset {
            break;
        }
    }
    let leaf = match missing {
        Some(m) => Some(m.to_owned()),
        None => last_key,
    };
    match (table.is_empty(), leaf) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table,
        (true, None) => MANIFEST_FILE.to_owned(),
    }
}

/// The name of a `[table]` or `[[array]]` header line, and whether it is an array of tables.
fn table_header(line: &str) -> Option<(String, bool)> {
    let (inner, is_array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.split("]]").next()?, true)
    } else if let Some(rest) = line.strip_prefix('[') {
        (rest.split(']').next()?, false)
    } else {
        return None;
    };
    let name: String =
        inner.chars().filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'').collect();
    if name.is_empty() { None } else { Some((excerpt(&name), is_array)) }
}

/// The key of a `key = value` line, if the line starts like one.
fn line_key(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plausible = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '));
    if !plausible {
        return None;
    }
    let key: String = key.chars().filter(|c| !matches!(c, '"' | '\'' | ' ')).collect();
    if key.is_empty() { None } else { Some(excerpt(&key)) }
}

// ---------------------------------------------------------------------------------------------
// The entry tree shared by pack and inspect
// ---------------------------------------------------------------------------------------------

/// What an accepted entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink(String),
    Hardlink,
}

/// The entries accepted so far, with the counters the limits apply to.
struct Tree<'l> {
    limits: &'l Limits,
    kinds: HashMap<String, Kind>,
    /// Every proper ancestor of every entry (directories implied by paths).
    parents: HashSet<String>,
    symlinks: Vec<(String, String)>,
    files: u64,
    content_bytes: u64,
}

impl<'l> Tree<'l> {
    /// An empty tree checked against `limits`.
    fn new(limits: &'l Limits) -> Self {
        Tree {
            limits,
            kinds: HashMap::new(),
            parents: HashSet::new(),
            symlinks: Vec::new(),
            files: 0,
            content_bytes: 0,
        }
    }

    /// Accepts the entry `path` (normalized) of `kind` holding `size` bytes, or says why not.
    fn add(&mut self, path: &str, kind: Kind, size: u64) -> Result<(), BundleError> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(BundleError::new(
                "bundle.files",
                format!(
                    "the bundle has more than {} entries; the limit is {} files, directories and links",
                    self.limits.max_files, self.limits.max_files
                ),
            ));
        }
        if kind == Kind::File {
            self.content_bytes = self.content_bytes.saturating_add(size);
            if self.content_bytes > self.limits.max_content_bytes {
                return Err(BundleError::new(
                    "bundle.size",
                    format!(
                        "the files add up to more than {} bytes at {}; the limit is {} bytes uncompressed",
                        self.limits.max_content_bytes,
                        quote(path),
                        self.limits.max_content_bytes
                    ),
                ));
            }
        }
        if self.kinds.contains_key(path) {
            return Err(BundleError::new(
                "bundle.path",
                format!("{} appears more than once in the bundle", quote(path)),
            ));
        }
        if kind != Kind::Dir && self.parents.contains(path) {
            return Err(BundleError::new(
                "bundle.path",
                format!("{} is used both as a directory and as a file or link", quote(path)),
            ));
        }
        let mut ancestor = path;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            match self.kinds.get(parent) {
                None | Some(Kind::Dir) => {}
                Some(_) => {
                    return Err(BundleError::new(
                        "bundle.path",
                        format!(
                            "{} is inside {}, which is not a directory",
                            quote(path),
                            quote(parent)
                        ),
                    ));
                }
            }
            if !self.parents.insert(parent.to_owned()) {
                break; // its ancestors were recorded with it
            }
            ancestor = parent;
        }
        if let Kind::Symlink(target) = &kind {
            self.symlinks.push((path.to_owned(), target.clone()));
        }
        self.kinds.insert(path.to_owned(), kind);
        Ok(())
    }

    /// Checks the target of a hard link `path -> target` (a path from the bundle root): it must
    /// name an earlier regular file.
    fn check_hardlink(&self, path: &str, target: &[u8]) -> Result<String, BundleError> {
        let normalized = normalize_path(target, self.limits, "hard link target").map_err(|e| {
            BundleError::new("bundle.link", format!("hard link {}: {}", quote(path), e.message))
        })?;
        match normalized {
            Some(t) if self.kinds.get(&t) == Some(&Kind::File) => Ok(t),
            _ => Err(BundleError::new(
                "bundle.link",
                format!(
                    "hard link {} points to {}, which is not an earlier regular file of the bundle",
                    quote(path),
                    quote(&String::from_utf8_lossy(target))
                ),
            )),
        }
    }

    /// Checks a symlink target's syntax before the entry is accepted.
    fn check_symlink_target(&self, path: &str, target: &[u8]) -> Result<String, BundleError> {
        let fail = |why: &str| {
            Err(BundleError::new("bundle.link", format!("symlink {} {why}", quote(path))))
        };
        if target.is_empty() {
            return fail("has an empty target");
        }
        if target.contains(&0) {
            return fail("has a target containing NUL");
        }
        if target.len() > self.limits.max_path_bytes {
            return fail(&format!(
                "has a target of {} bytes; the limit is {}",
                target.len(),
                self.limits.max_path_bytes
            ));
        }
        let Ok(target) = std::str::from_utf8(target) else {
            return fail("has a target that is not valid UTF-8");
        };
        if target.starts_with('/') {
            return fail(&format!(
                "points to the absolute path {}; links must stay inside the bundle",
                quote(target)
            ));
        }
        Ok(target.to_owned())
    }

    /// After all entries: every symlink, followed through the other symlinks of the bundle,
    /// must resolve inside the bundle.
    fn check_symlinks(&self) -> Result<(), BundleError> {
        let mut steps = 0u64;
        for (path, target) in &self.symlinks {
            let mut cur: Vec<&str> = path.split('/').collect();
            cur.pop();
            let mut hops = 0;
            match self.resolve(cur, target, &mut hops, &mut steps) {
                Ok(_) => {}
                Err(Unresolved::Escapes) => {
                    return Err(BundleError::new(
                        "bundle.link",
                        format!(
                            "symlink {} -> {} points outside the bundle",
                            quote(path),
                            quote(target)
                        ),
                    ));
                }
                Err(Unresolved::TooDeep) => {
                    return Err(BundleError::new(
                        "bundle.link",
                        format!(
                            "symlink {} -> {} goes through more than {MAX_LINK_HOPS} links (a loop?)",
                            quote(path),
                            quote(target)
                        ),
                    ));
                }
                Err(Unresolved::TooMuchWork) => {
                    return Err(BundleError::new(
                        "bundle.link",
                        format!(
                            "the bundle's symlinks take more than {MAX_LINK_STEPS} steps to resolve"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Resolves `target` from directory `cur` (components from the root), following symlinks
    /// of the bundle. Paths not in the bundle are taken as plain directories.
    fn resolve<'a>(
        &'a self,
        mut cur: Vec<&'a str>,
        target: &'a str,
        hops: &mut u32,
        steps: &mut u64,
    ) -> Result<Vec<&'a str>, Unresolved> {
        if target.starts_with('/') {
            return Err(Unresolved::Escapes);
        }
        for comp in target.split('/') {
            *steps += 1;
            if *steps > MAX_LINK_STEPS {
                return Err(Unresolved::TooMuchWork);
            }
            match comp {
                "" | "." => {}
                ".." => {
                    if cur.pop().is_none() {
                        return Err(Unresolved::Escapes);
                    }
                }
                name => {
                    cur.push(name);
                    if let Some(Kind::Symlink(next)) = self.kinds.get(&cur.join("/")) {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Err(Unresolved::TooDeep);
                        }
                        cur.pop();
                        cur = self.resolve(cur, next, hops, steps)?;
                    }
                }
            }
        }
        Ok(cur)
    }
}

/// Why a symlink could not be resolved inside the bundle.
enum Unresolved {
    Escapes,
    TooDeep,
    TooMuchWork,
}

/// Normalizes an entry path: relative, no NUL, no "..", within the length limit, UTF-8; "." and
/// empty components dropped. `None` for the root directory itself ("." or "./").
fn normalize_path(raw: &[u8], limits: &Limits, what: &str) -> Result<Option<String>, BundleError> {
    let shown = || quote(&String::from_utf8_lossy(raw));
    let fail = |why: String| Err(BundleError::new("bundle.path", why));
    if raw.is_empty() {
        return fail(format!("an entry has an empty {what}"));
    }
    if raw.contains(&0) {
        return fail(format!("{what} {} contains NUL", shown()));
    }
    if raw.len() > limits.max_path_bytes {
        return fail(format!(
            "{what} {} is {} bytes; the limit is {}",
            shown(),
            raw.len(),
            limits.max_path_bytes
        ));
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return fail(format!("{what} {} is not valid UTF-8", shown()));
    };
    if text.starts_with('/') {
        return fail(format!(
            "{what} {} is absolute; entries must be relative to the bundle root",
            quote(text)
        ));
    }
    let mut parts = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                return fail(format!(
                    "{what} {} contains \"..\"; entries must stay inside the bundle",
                    quote(text)
                ));
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() { Ok(None) } else { Ok(Some(parts.join("/"))) }
}

/// The mode stored for an entry: permission bits and sticky bit, never setuid or setgid.
fn clean_mode(mode: u32) -> u32 {
    mode & 0o7777 & !0o6000
}

/// A tar header with everything but type, mode and size zeroed (uid/gid 0, mtime 0).
fn normalized_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(clean_mode(mode));
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// pack
// ---------------------------------------------------------------------------------------------

/// A packed bundle.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The bundle: tar + zstd.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
    /// Length of `bytes`.
    pub size: u64,
    /// Entries packed: files, directories and links.
    pub files: u64,
    /// Sum of the sizes of the regular files.
    pub content_bytes: u64,
    /// The bundle's manifest.
    pub manifest: Manifest,
}

/// A `Vec<u8>` writer that fails once more than `cap` bytes are written, and says so in a flag.
struct CappedVec {
    buf: Vec<u8>,
    cap: u64,
    exceeded: Rc<Cell<bool>>,
}

impl Write for CappedVec {
    /// Appends, or fails when the cap would be passed.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if (self.buf.len() as u64).saturating_add(data.len() as u64) > self.cap {
            self.exceeded.set(true);
            return Err(io::Error::other("the bundle exceeds its size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    /// Nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that counts the bytes it passes on.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    /// Reads from the inner reader and counts.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

type PackBuilder = tar::Builder<zstd::stream::write::Encoder<'static, CappedVec>>;

/// Packs directory `dir` deterministically (entries sorted by name, mtime 0, uid/gid 0, mode
/// preserved and masked to 0o7777 minus setuid/setgid) as tar + zstd (level 3).
///
/// Refuses (naming the path) what [`inspect`] would refuse: symlinks pointing outside `dir`
/// (absolute targets or escaping with `..`), devices, fifos, sockets, names that are not UTF-8,
/// paths over `max_path_bytes`, more than `max_files` entries, content over
/// `max_content_bytes`, a missing or invalid manifest, a missing Dockerfile, and a result over
/// `max_bundle_bytes`. Follows no symlinks (stores them as symlinks). Skips nothing except a
/// `.git` directory at the root.
pub fn pack(dir: &Path, limits: &Limits) -> Result<Packed, BundleError> {
    let manifest = read_manifest_file(dir)?;
    match fs::symlink_metadata(dir.join(DOCKERFILE)) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => {
            return Err(BundleError::new(DOCKERFILE, "Dockerfile must be a regular file"));
        }
        Err(e) => {
            return Err(BundleError::new(
                DOCKERFILE,
                format!("cannot read {}: {e}", dir.join(DOCKERFILE).display()),
            ));
        }
    }

    let exceeded = Rc::new(Cell::new(false));
    let sink =
        CappedVec { buf: Vec::new(), cap: limits.max_bundle_bytes, exceeded: Rc::clone(&exceeded) };
    let mut encoder = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(pack_io)?;
    encoder.include_checksum(true).map_err(pack_io)?;
    let mut builder = tar::Builder::new(encoder);
    let mut tree = Tree::new(limits);

    let written = walk(dir, "", &mut builder, &mut tree)
        .and_then(|()| tree.check_symlinks())
        .and_then(|()| {
            let encoder = builder.into_inner().map_err(pack_io)?;
            encoder.finish().map_err(pack_io)
        });
    if exceeded.get() {
        return Err(BundleError::new(
            "bundle.size",
            format!(
                "the compressed bundle is larger than {} bytes; the limit is {} bytes",
                limits.max_bundle_bytes, limits.max_bundle_bytes
            ),
        ));
    }
    let sink = written?;
    let bytes = sink.buf;
    Ok(Packed {
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        files: tree.files,
        content_bytes: tree.content_bytes,
        bytes,
        manifest,
    })
}

/// An I/O error while writing the bundle.
fn pack_io(e: io::Error) -> BundleError {
    BundleError::new("bundle", format!("cannot write the bundle: {e}"))
}

/// Reads and parses `dir/burstflare.toml`, which must be a regular file.
fn read_manifest_file(dir: &Path) -> Result<Manifest, BundleError> {
    let path = dir.join(MANIFEST_FILE);
    let meta = fs::symlink_metadata(&path).map_err(|e| {
        BundleError::new(MANIFEST_FILE, format!("cannot read {}: {e}", path.display()))
    })?;
    if !meta.file_type().is_file() {
        return Err(BundleError::new(MANIFEST_FILE, "burstflare.toml must be a regular file"));
    }
    let mut bytes = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            BundleError::new(MANIFEST_FILE, format!("cannot read {}: {e}", path.display()))
        })?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(BundleError::new(
            MANIFEST_FILE,
            format!(
                "{MANIFEST_FILE} is {} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (64 KiB)",
                meta.len()
            ),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| BundleError::new(MANIFEST_FILE, "burstflare.toml is not valid UTF-8"))?;
    Manifest::parse(&text)
}

/// Appends the entries of `abs` (the bundle path `rel`) to the archive, sorted by name, and
/// recurses into directories.
fn walk(
    abs: &Path,
    rel: &str,
    builder: &mut PackBuilder,
    tree: &mut Tree<'_>,
) -> Result<(), BundleError> {
    let cannot = |p: &Path, e: io::Error| {
        BundleError::new("bundle.path", format!("cannot read {}: {e}", p.display()))
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(abs).map_err(|e| cannot(abs, e))? {
        let entry = entry.map_err(|e| cannot(abs, e))?;
        let name = entry.file_name().into_string().map_err(|n| {
            BundleError::new(
                "bundle.path",
                format!(
                    "{} has a name that is not valid UTF-8",
                    quote(&Path::new(rel).join(n).to_string_lossy())
                ),
            )
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let child = abs.join(&name);
        let meta = fs::symlink_metadata(&child).map_err(|e| cannot(&child, e))?;
        let ft = meta.file_type();
        if rel.is_empty() && name == ".git" && ft.is_dir() {
            continue;
        }
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if path.len() > tree.limits.max_path_bytes {
            return Err(BundleError::new(
                "bundle.path",
                format!(
                    "path {} is {} bytes; the limit is {}",
                    quote(&path),
                    path.len(),
                    tree.limits.max_path_bytes
                ),
            ));
        }
        let mode = file_mode(&meta);
        let append_err = |e: io::Error| {
            BundleError::new("bundle.path", format!("cannot pack {}: {e}", quote(&path)))
        };
        if ft.is_dir() {
            tree.add(&path, Kind::Dir, 0)?;
            let mut h = normalized_header(tar::EntryType::Directory, mode, 0);
            builder.append_data(&mut h, &path, io::empty()).map_err(append_err)?;
            walk(&child, &path, builder, tree)?;
        } else if ft.is_file() {
            let size = meta.len();
            tree.add(&path, Kind::File, size)?;
            let file = fs::File::open(&child).map_err(|e| cannot(&child, e))?;
            let mut reader = Counting { inner: file.take(size), count: 0 };
            let mut h = normalized_header(tar::EntryType::Regular, mode, size);
            builder.append_data(&mut h, &path, &mut reader).map_err(append_err)?;
            if reader.count != size {
                return Err(BundleError::new(
                    "bundle.path",
                    format!("{} changed size while it was being packed", quote(&path)),
                ));
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&child).map_err(|e| cannot(&child, e))?;
            let target = target.into_os_string().into_string().map_err(|_| {
                BundleError::new(
                    "bundle.link",
                    format!("symlink {} has a target that is not valid UTF-8", quote(&path)),
                )
            })?;
            let target = tree.check_symlink_target(&path, target.as_bytes())?;
            tree.add(&path, Kind::Symlink(target.clone()), 0)?;
            let mut h = normalized_header(tar::EntryType::Symlink, 0o777, 0);
            builder.append_link(&mut h, &path, &target).map_err(append_err)?;
        } else {
            return Err(BundleError::new(
                "bundle.entry",
                format!(
                    "{} is a {}; a bundle holds only regular files, directories and symlinks",
                    quote(&path),
                    special_kind(&ft)
                ),
            ));
        }
    }
    Ok(())
}

/// The permission bits of a file.
#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

/// The permission bits of a file (0o755 for directories, 0o644 otherwise).
#[cfg(not(unix))]
fn file_mode(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

/// Names a special file type.
#[cfg(unix)]
fn special_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Names a special file type.
#[cfg(not(unix))]
fn special_kind(_ft: &fs::FileType) -> &'static str {
    "special file"
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

/// A verified bundle.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The bundle's manifest.
    pub manifest: Manifest,
    /// The build context re-packed as a plain (uncompressed) tar holding exactly the validated
    /// entries, normalized (paths cleaned, uid/gid 0, mtime 0, no setuid/setgid).
    pub context_tar: Vec<u8>,
    /// Entries: files, directories and links.
    pub files: u64,
    /// Sum of the sizes of the regular files.
    pub content_bytes: u64,
}

/// A reader that fails once more than `remaining` bytes have passed, and says so in a flag.
struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    /// Reads at most one byte past the budget, then fails.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want =
            buf.len().min(usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            self.exceeded.set(true);
            self.remaining = 0;
            return Err(io::Error::other("the bundle expands beyond its limit"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Bytes of tar structure allowed on top of `max_content_bytes` when decompressing: per entry a
/// header, padding, and long-name / long-link / pax headers; plus the end-of-archive blocks.
fn tar_overhead(limits: &Limits) -> u64 {
    let path_blocks = (limits.max_path_bytes as u64 + 1).div_ceil(512).saturating_mul(512);
    let per_entry = 4 * 512 + 2 * path_blocks;
    limits.max_files.saturating_add(1).saturating_mul(per_entry).saturating_add(10 * 1024)
}

/// The zstd frame magic number.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Verifies an untrusted bundle and returns its manifest and a normalized build context.
///
/// Checks: size <= `max_bundle_bytes`; decompression bounded (stops as soon as more than
/// `max_content_bytes` + tar overhead is produced, never allocating a claimed size up front);
/// every entry path relative, without `..`, NUL or absolute form, at most `max_path_bytes`, not
/// repeated; only regular files, directories, symlinks whose target (resolved from the link's
/// directory, through the bundle's other symlinks) stays inside, and hard links to earlier
/// regular files; at most `max_files` entries and `max_content_bytes` of content;
/// `burstflare.toml` at the root parses with [`Manifest::parse`] (its errors pass through);
/// `Dockerfile` at the root is a regular file. Nothing is written to disk.
pub fn inspect(bundle: &[u8], limits: &Limits) -> Result<Inspected, BundleError> {
    if bundle.len() as u64 > limits.max_bundle_bytes {
        return Err(BundleError::new(
            "bundle.size",
            format!(
                "the bundle is {} bytes; the limit is {} bytes compressed",
                bundle.len(),
                limits.max_bundle_bytes
            ),
        ));
    }
    if !bundle.starts_with(&ZSTD_MAGIC) {
        return Err(BundleError::new(
            "bundle.format",
            "the bundle is not zstd-compressed (a bundle is a tar archive compressed with zstd)",
        ));
    }
    let exceeded = Rc::new(Cell::new(false));
    let decoder = zstd::stream::read::Decoder::with_buffer(bundle).map_err(|e| {
        BundleError::new("bundle.format", format!("cannot start decompressing the bundle: {e}"))
    })?;
    let reader = Bounded {
        inner: decoder,
        remaining: limits.max_content_bytes.saturating_add(tar_overhead(limits)),
        exceeded: Rc::clone(&exceeded),
    };
    let mut archive = tar::Archive::new(reader);
    let result = read_entries(&mut archive, limits).and_then(|inspected| {
        // Read to the end of the stream, so that a truncated or corrupt frame (checksum) is
        // noticed even when the tar's end marker came before the damage.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_error)?;
        Ok(inspected)
    });
    if exceeded.get() {
        return Err(BundleError::new(
            "bundle.size",
            format!(
                "the bundle expands to more than its content limit of {} bytes (plus tar overhead)",
                limits.max_content_bytes
            ),
        ));
    }
    result
}

/// Extension headers waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    any: bool,
}

/// Maps a read error while walking the archive.
fn read_error(e: io::Error) -> BundleError {
    BundleError::new(
        "bundle.format",
        format!("the bundle is not a valid tar.zst or is truncated: {e}"),
    )
}

/// Reads an extension header's data, refusing more than `max` bytes.
fn read_extension<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, BundleError> {
    let size = entry.size();
    if size > max {
        return Err(BundleError::new(
            "bundle.path",
            format!("a {what} header is {size} bytes; the limit is {max}"),
        ));
    }
    let mut data = Vec::new();
    entry.take(max).read_to_end(&mut data).map_err(read_error)?;
    if data.len() as u64 != size {
        return Err(read_error(io::Error::from(io::ErrorKind::UnexpectedEof)));
    }
    while data.last() == Some(&0) {
        data.pop();
    }
    Ok(data)
}

/// Walks the archive in raw mode (handling long names and pax headers here, with bounded sizes)
/// and builds the normalized context tar.
fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    limits: &Limits,
) -> Result<Inspected, BundleError> {
    let mut tree = Tree::new(limits);
    let mut context = tar::Builder::new(Vec::new());
    let mut manifest_text: Option<Vec<u8>> = None;
    let mut dockerfile = false;
    let mut pending = Pending::default();
    let long_max = limits.max_path_bytes as u64 + 1;

    let entries = archive.entries().map_err(read_error)?.raw(true);
    for entry in entries {
        let mut entry = entry.map_err(read_error)?;
        let header = entry.header().clone();
        let et = header.entry_type();
        match et {
            tar::EntryType::GNULongName => {
                if pending.long_name.is_some() {
                    return Err(BundleError::new(
                        "bundle.format",
                        "two long-name headers in a row",
                    ));
                }
                pending.long_name = Some(read_extension(&mut entry, long_max, "long-name")?);
                pending.any = true;
                continue;
            }
            tar::EntryType::GNULongLink => {
                if pending.long_link.is_some() {
                    return Err(BundleError::new(
                        "bundle.format",
                        "two long-link headers in a row",
                    ));
                }
                pending.long_link = Some(read_extension(&mut entry, long_max, "long-link")?);
                pending.any = true;
                continue;
            }
            tar::EntryType::XHeader => {
                let data = read_extension(&mut entry, MAX_PAX_BYTES, "pax")?;
                apply_pax(&data, &mut pending)?;
                pending.any = true;
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // e.g. `git archive` stores the commit id here; nothing in it applies to us.
                read_extension(&mut entry, MAX_PAX_BYTES, "pax global")?;
                continue;
            }
            _ => {}
        }
        let p = std::mem::take(&mut pending);
        let raw_path = match p.pax_path.or(p.long_name) {
            Some(v) => v,
            None => header.path_bytes().into_owned(),
        };
        let raw_link = match p.pax_link.or(p.long_link) {
            Some(v) => Some(v),
            None => header.link_name_bytes().map(|c| c.into_owned()),
        };
        let size = entry.size();
        if let Some(pax_size) = p.pax_size
            && pax_size != size
        {
            return Err(BundleError::new(
                "bundle.format",
                "a pax header overrides an entry's size; such entries are not supported",
            ));
        }
        let Some(path) = normalize_path(&raw_path, limits, "path")? else {
            // The root directory itself ("./"): nothing to keep, but nothing else may be it.
            if et != tar::EntryType::Directory {
                return Err(BundleError::new(
                    "bundle.path",
                    "an entry that is not a directory names the bundle root",
                ));
            }
            continue;
        };
        let mode = header.mode().map_err(|e| {
            BundleError::new("bundle.format", format!("entry {} has a bad mode: {e}", quote(&path)))
        })?;
        let appended = match et {
            tar::EntryType::Regular => {
                tree.add(&path, Kind::File, size)?;
                let mut h = normalized_header(tar::EntryType::Regular, mode, size);
                if path == MANIFEST_FILE {
                    if size > MAX_MANIFEST_BYTES as u64 {
                        return Err(BundleError::new(
                            MANIFEST_FILE,
                            format!(
                                "{MANIFEST_FILE} is {size} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (64 KiB)"
                            ),
                        ));
                    }
                    let mut data = Vec::new();
                    (&mut entry).take(size).read_to_end(&mut data).map_err(read_error)?;
                    if data.len() as u64 != size {
                        return Err(read_error(io::Error::from(io::ErrorKind::UnexpectedEof)));
                    }
                    let r = context.append_data(&mut h, &path, data.as_slice());
                    manifest_text = Some(data);
                    r
                } else {
                    if path == DOCKERFILE {
                        dockerfile = true;
                    }
                    let mut reader = Counting { inner: &mut entry, count: 0 };
                    let r = context.append_data(&mut h, &path, &mut reader);
                    if r.is_ok() && reader.count != size {
                        return Err(read_error(io::Error::from(io::ErrorKind::UnexpectedEof)));
                    }
                    r
                }
            }
            tar::EntryType::Directory => {
                tree.add(&path, Kind::Dir, 0)?;
                let mut h = normalized_header(tar::EntryType::Directory, mode, 0);
                context.append_data(&mut h, &path, io::empty())
            }
            tar::EntryType::Symlink => {
                let target =
                    tree.check_symlink_target(&path, raw_link.as_deref().unwrap_or_default())?;
                tree.add(&path, Kind::Symlink(target.clone()), 0)?;
                let mut h = normalized_header(tar::EntryType::Symlink, 0o777, 0);
                context.append_link(&mut h, &path, &target)
            }
            tar::EntryType::Link => {
                let target = tree.check_hardlink(&path, raw_link.as_deref().unwrap_or_default())?;
                tree.add(&path, Kind::Hardlink, 0)?;
                let mut h = normalized_header(tar::EntryType::Link, mode, 0);
                context.append_link(&mut h, &path, &target)
            }
            other => {
                let what = match other {
                    tar::EntryType::Char => "a character device",
                    tar::EntryType::Block => "a block device",
                    tar::EntryType::Fifo => "a fifo",
                    tar::EntryType::Continuous => "a contiguous file",
                    tar::EntryType::GNUSparse => "a sparse file",
                    _ => "an unknown entry type",
                };
                return Err(BundleError::new(
                    "bundle.entry",
                    format!(
                        "{} is {what}; a bundle holds only regular files, directories, symlinks and hard links",
                        quote(&path)
                    ),
                ));
            }
        };
        appended.map_err(|e| {
            BundleError::new("bundle.path", format!("cannot keep entry {}: {e}", quote(&path)))
        })?;
        if (path == MANIFEST_FILE || path == DOCKERFILE) && et != tar::EntryType::Regular {
            return Err(BundleError::new(
                if path == MANIFEST_FILE { MANIFEST_FILE } else { DOCKERFILE },
                format!("{path} must be a regular file"),
            ));
        }
    }
    if pending.any {
        return Err(BundleError::new(
            "bundle.format",
            "the bundle ends with extension headers that describe no entry (truncated?)",
        ));
    }
    tree.check_symlinks()?;
    let Some(manifest_text) = manifest_text else {
        return Err(BundleError::new(
            MANIFEST_FILE,
            format!("the bundle has no {MANIFEST_FILE} at its root"),
        ));
    };
    let text = String::from_utf8(manifest_text)
        .map_err(|_| BundleError::new(MANIFEST_FILE, "burstflare.toml is not valid UTF-8"))?;
    let manifest = Manifest::parse(&text)?;
    if !dockerfile {
        return Err(BundleError::new(
            DOCKERFILE,
            format!("the bundle has no {DOCKERFILE} at its root"),
        ));
    }
    let context_tar = context.into_inner().map_err(|e| {
        BundleError::new("bundle.format", format!("cannot finish the context: {e}"))
    })?;
    Ok(Inspected { manifest, context_tar, files: tree.files, content_bytes: tree.content_bytes })
}

/// Applies the records of a pax extended header to the next entry. Sparse-file records are
/// refused; other records (times, owners, xattrs) are ignored.
fn apply_pax(data: &[u8], pending: &mut Pending) -> Result<(), BundleError> {
    for ext in tar::PaxExtensions::new(data) {
        let ext =
            ext.map_err(|e| BundleError::new("bundle.format", format!("bad pax header: {e}")))?;
        let key = ext.key_bytes();
        if key == b"path" {
            pending.pax_path = Some(ext.value_bytes().to_vec());
        } else if key == b"linkpath" {
            pending.pax_link = Some(ext.value_bytes().to_vec());
        } else if key == b"size" {
            let size = std::str::from_utf8(ext.value_bytes())
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| BundleError::new("bundle.format", "bad size in a pax header"))?;
            pending.pax_size = Some(size);
        } else if key.starts_with(b"GNU.sparse.") {
            return Err(BundleError::new(
                "bundle.entry",
                "the bundle holds a sparse file; a bundle holds only regular files, directories, symlinks and hard links",
            ));
        }
    }
    Ok(())
}
