//! The Cloudflare runtime target: a Wrangler project generated from the runtime catalog
//! (docs/catalog.md).
//!
//! Every template in the catalog that is not archived gets one container class (a Durable
//! Object class extending `Container` from `@cloudflare/containers`) with its own Durable Object
//! binding and a `containers` entry running the active version's image. Classes are named after
//! the template (its name for people, its id for uniqueness), not after the version: promoting a
//! version changes the image of an existing class, which Cloudflare rolls out, instead of
//! creating a class and deleting another, which would destroy the old class's objects.
//!
//! Durable Object classes are created and deleted by `migrations`, which Cloudflare applies in
//! order and remembers by tag, so a deployment's migrations must only ever grow.
//! [`wrangler_config`] starts a history (one migration creating every class);
//! [`wrangler_config_after`] continues the history of a previously generated config, appending
//! one migration (tag `r<revision>`) for the classes that appeared or went. [`write_bundle`]
//! does the latter when its directory already holds a config.

use std::collections::BTreeSet;
use std::path::Path;

use domain::store::{CatalogDocument, CatalogEntry};
use serde::{Deserialize, Serialize};

/// Where the generated worker goes, from its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareTarget {
    /// The Worker's name: lowercase letters, digits and dashes. Container applications are
    /// named `<worker_name>-<class name, lowercase>`.
    pub worker_name: String,
    /// The Cloudflare account to deploy to; `None` leaves it to Wrangler's login or
    /// `CLOUDFLARE_ACCOUNT_ID`.
    pub account_id: Option<String>,
    /// Most container instances of each template at once.
    pub max_instances: u32,
}

/// The config's file name in a bundle.
pub const CONFIG_FILE: &str = "wrangler.jsonc";
/// The worker script's path in a bundle, relative to the config.
pub const WORKER_FILE: &str = "worker/index.js";
/// The Workers compatibility date of the generated config (supported by the pinned wrangler's
/// workerd).
pub const COMPATIBILITY_DATE: &str = "2025-10-01";
/// The worker script template, `deploy/cloudflare/worker/index.js`.
pub const WORKER_TEMPLATE: &str = include_str!("../cloudflare/worker/index.js");

const GENERATED_BEGIN: &str = "// @generated:begin";
const GENERATED_END: &str = "// @generated:end";

/// Longest part of a class name taken from the template's name.
const NAME_PART_CHARS: usize = 24;

/// Cloudflare's preset instance types, smallest first: (name, vCPU in thousandths, memory MiB).
pub const INSTANCE_TYPES: [(&str, u32, u32); 6] = [
    ("lite", 62, 256),
    ("basic", 250, 1024),
    ("standard-1", 500, 4096),
    ("standard-2", 1000, 6144),
    ("standard-3", 2000, 8192),
    ("standard-4", 4000, 12288),
];

/// The smallest preset instance type with at least `cpu_millis` and `memory_mb`; the largest
/// (`standard-4`) when none is big enough.
pub fn instance_type(cpu_millis: u32, memory_mb: u32) -> &'static str {
    INSTANCE_TYPES
        .iter()
        .find(|(_, cpu, mem)| *cpu >= cpu_millis && *mem >= memory_mb)
        .map_or("standard-4", |(name, _, _)| name)
}

/// One template's container class in the generated project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerClass {
    pub template_id: String,
    /// A JavaScript class name: `<TemplateName>_<template id hex>`, e.g.
    /// `RustDev_0190a0000000700080000000000000b0`.
    pub class_name: String,
    /// A JavaScript identifier for `env`: `<TEMPLATE_NAME>_<TEMPLATE ID HEX>`.
    pub binding: String,
    pub image: String,
    pub instance_type: &'static str,
}

/// The template id's 32 hex digits (anything but ASCII letters and digits dropped).
fn id_part(template_id: &str) -> String {
    template_id.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The template name's words (split at anything but ASCII letters and digits).
fn name_words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn class_name(entry: &CatalogEntry) -> String {
    let mut name: String = name_words(&entry.template_name)
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map_or(String::new(), |c| c.to_ascii_uppercase().to_string() + chars.as_str())
        })
        .collect::<String>()
        .chars()
        .take(NAME_PART_CHARS)
        .collect();
    // An identifier starts with a letter (template names do; this keeps hand-made ones valid).
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert(0, 'T');
    }
    format!("{name}_{}", id_part(&entry.template_id).to_ascii_lowercase())
}

fn binding_name(entry: &CatalogEntry) -> String {
    let mut name: String = name_words(&entry.template_name)
        .join("_")
        .to_ascii_uppercase()
        .chars()
        .take(NAME_PART_CHARS)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert(0, 'T');
    }
    format!("{name}_{}", id_part(&entry.template_id).to_ascii_uppercase())
}

/// The container classes of `doc`: one per entry that is not archived, in the document's order.
pub fn container_classes(doc: &CatalogDocument) -> Vec<ContainerClass> {
    doc.entries
        .iter()
        .filter(|e| !e.archived)
        .map(|e| ContainerClass {
            template_id: e.template_id.clone(),
            class_name: class_name(e),
            binding: binding_name(e),
            image: e.image_ref.clone(),
            instance_type: instance_type(e.cpu_millis, e.memory_mb),
        })
        .collect()
}

/// One entry of wrangler's `migrations`. Kinds this generator never writes are kept as they
/// are when a history is continued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Migration {
    tag: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    new_sqlite_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    new_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted_classes: Vec<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl Migration {
    fn new(tag: String, created: Vec<String>, deleted: Vec<String>) -> Self {
        Migration {
            tag,
            new_sqlite_classes: created,
            new_classes: Vec::new(),
            deleted_classes: deleted,
            other: serde_json::Map::new(),
        }
    }
}

#[derive(Serialize)]
struct Config<'a> {
    name: &'a str,
    main: &'a str,
    compatibility_date: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    vars: Vars,
    containers: Vec<ContainerConfig<'a>>,
    durable_objects: DurableObjects<'a>,
    migrations: &'a [Migration],
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Vars {
    /// The catalog revision the worker was generated from (`GET /_burstflare/catalog`).
    BURSTFLARE_CATALOG_REVISION: String,
}

#[derive(Serialize)]
struct ContainerConfig<'a> {
    class_name: &'a str,
    image: &'a str,
    instance_type: &'a str,
    max_instances: u32,
}

#[derive(Serialize)]
struct DurableObjects<'a> {
    bindings: Vec<Binding<'a>>,
}

#[derive(Serialize)]
struct Binding<'a> {
    name: &'a str,
    class_name: &'a str,
}

/// The part of a generated config [`wrangler_config_after`] reads.
#[derive(Deserialize)]
struct Previous {
    #[serde(default)]
    migrations: Vec<Migration>,
}

fn render_config(
    doc: &CatalogDocument,
    target: &CloudflareTarget,
    classes: &[ContainerClass],
    migrations: &[Migration],
) -> String {
    let config = Config {
        name: &target.worker_name,
        main: WORKER_FILE,
        compatibility_date: COMPATIBILITY_DATE,
        account_id: target.account_id.as_deref(),
        vars: Vars { BURSTFLARE_CATALOG_REVISION: doc.revision.to_string() },
        containers: classes
            .iter()
            .map(|c| ContainerConfig {
                class_name: &c.class_name,
                image: &c.image,
                instance_type: c.instance_type,
                max_instances: target.max_instances,
            })
            .collect(),
        durable_objects: DurableObjects {
            bindings: classes
                .iter()
                .map(|c| Binding { name: &c.binding, class_name: &c.class_name })
                .collect(),
        },
        migrations,
    };
    let body = serde_json::to_string_pretty(&config)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    format!(
        "// Wrangler config of the BurstFlare Cloudflare target, runtime catalog revision {}.\n\
         // Generated by deploy::cloudflare from the control-plane database: do not edit.\n\
         // Its migrations are this deployment's history: keep this file between deploys\n\
         // (docs/catalog.md).\n{body}\n",
        doc.revision
    )
}

/// A fresh wrangler config (JSONC) for `doc`: a history with one migration (tag `r<revision>`)
/// creating every class, or none for an empty catalog. For a deployment that already exists use
/// [`wrangler_config_after`], which keeps its history.
pub fn wrangler_config(doc: &CatalogDocument, target: &CloudflareTarget) -> String {
    let classes = container_classes(doc);
    let created: Vec<String> = classes.iter().map(|c| c.class_name.clone()).collect();
    let migrations = if created.is_empty() {
        Vec::new()
    } else {
        vec![Migration::new(format!("r{}", doc.revision), created, Vec::new())]
    };
    render_config(doc, target, &classes, &migrations)
}

/// Removes `//` comment lines, which the generated configs have only on lines of their own.
fn strip_line_comments(jsonc: &str) -> String {
    jsonc.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The config for `doc` that continues the migration history of `previous` (a config this
/// module generated earlier, as deployed): its migrations are kept as they are, and when the set
/// of classes changed, one migration is appended (tag `r<revision>`) creating the new classes
/// and deleting the ones that went (deleting a class destroys its Durable Objects, and so the
/// containers of that template still running on Cloudflare). `Err` if `previous` is not such
/// a config.
pub fn wrangler_config_after(
    previous: &str,
    doc: &CatalogDocument,
    target: &CloudflareTarget,
) -> Result<String, String> {
    let previous: Previous = serde_json::from_str(&strip_line_comments(previous))
        .map_err(|e| format!("the previous wrangler config does not parse: {e}"))?;
    let mut live = BTreeSet::new();
    for m in &previous.migrations {
        live.extend(m.new_sqlite_classes.iter().chain(&m.new_classes).cloned());
        for gone in &m.deleted_classes {
            live.remove(gone);
        }
        if let Some(renamed) = m.other.get("renamed_classes").and_then(|r| r.as_array()) {
            for r in renamed {
                if let (Some(from), Some(to)) = (r["from"].as_str(), r["to"].as_str()) {
                    live.remove(from);
                    live.insert(to.to_owned());
                }
            }
        }
    }
    let classes = container_classes(doc);
    let wanted: BTreeSet<String> = classes.iter().map(|c| c.class_name.clone()).collect();
    let created: Vec<String> = wanted.difference(&live).cloned().collect();
    let deleted: Vec<String> = live.difference(&wanted).cloned().collect();
    let mut migrations = previous.migrations;
    if !created.is_empty() || !deleted.is_empty() {
        let base = format!("r{}", doc.revision);
        let mut tag = base.clone();
        let mut n = 1;
        while migrations.iter().any(|m| m.tag == tag) {
            n += 1;
            tag = format!("{base}-{n}");
        }
        migrations.push(Migration::new(tag, created, deleted));
    }
    Ok(render_config(doc, target, &classes, &migrations))
}

/// The worker script for `doc`: [`WORKER_TEMPLATE`] with one exported class per container class
/// and the table routing a template id to its binding.
pub fn worker_script(doc: &CatalogDocument) -> String {
    let classes = container_classes(doc);
    let mut generated = format!("{GENERATED_BEGIN} (runtime catalog revision {})\n", doc.revision);
    for c in &classes {
        generated
            .push_str(&format!("export class {} extends SessionContainer {{}}\n", c.class_name));
    }
    generated.push_str("/** Template id -> Durable Object binding. */\nconst TEMPLATES = {\n");
    for c in &classes {
        let id = serde_json::Value::from(c.template_id.as_str());
        generated.push_str(&format!("  {id}: \"{}\",\n", c.binding));
    }
    generated.push_str("};\n");
    match (WORKER_TEMPLATE.find(GENERATED_BEGIN), WORKER_TEMPLATE.find(GENERATED_END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{generated}{}", &WORKER_TEMPLATE[..begin], &WORKER_TEMPLATE[end..])
        }
        // The template is part of this crate and a unit test checks its markers.
        _ => format!("{WORKER_TEMPLATE}\n{generated}"),
    }
}

/// Writes a Wrangler project for `doc` into `dir`: [`CONFIG_FILE`] and [`WORKER_FILE`]. When
/// `dir` already holds a config (the previous bundle, as deployed), its migration history is
/// continued ([`wrangler_config_after`]); otherwise a fresh one starts ([`wrangler_config`]).
///
/// The worker imports `@cloudflare/containers`: run wrangler where Node finds it, e.g. with
/// `dir` under `deploy/cloudflare/` (whose `node_modules` `make setup` installs) or with a
/// `node_modules` link in `dir`.
pub fn write_bundle(
    dir: &Path,
    doc: &CatalogDocument,
    target: &CloudflareTarget,
) -> std::io::Result<()> {
    let config_path = dir.join(CONFIG_FILE);
    let config = match std::fs::read_to_string(&config_path) {
        Ok(previous) => wrangler_config_after(&previous, doc, target).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", config_path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => wrangler_config(doc, target),
        Err(e) => return Err(e),
    };
    let worker_path = dir.join(WORKER_FILE);
    if let Some(parent) = worker_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&worker_path, worker_script(doc))?;
    std::fs::write(&config_path, config)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn entry(
        id_digit: char,
        name: &str,
        cpu_millis: u32,
        memory_mb: u32,
        archived: bool,
    ) -> CatalogEntry {
        CatalogEntry {
            workspace_id: "0190a000-0000-7000-8000-0000000000aa".to_owned(),
            workspace_slug: "acme".to_owned(),
            template_id: format!("0190a000-0000-7000-8000-00000000000{id_digit}"),
            template_name: name.to_owned(),
            version_id: format!("0190a000-0000-7000-8000-0000000001{id_digit}0"),
            version: "1".to_owned(),
            image_ref: format!("registry.local:5000/acme/{name}:1"),
            previous_version_id: None,
            previous_version: None,
            updated_at: 1,
            revision: 1,
            cpu_millis,
            memory_mb,
            archived,
        }
    }

    fn doc(revision: u64, entries: Vec<CatalogEntry>) -> CatalogDocument {
        CatalogDocument { revision, generated_at: 1_700_000_000_000, entries }
    }

    fn target() -> CloudflareTarget {
        CloudflareTarget {
            worker_name: "burstflare".to_owned(),
            account_id: None,
            max_instances: 4,
        }
    }

    fn config_json(text: &str) -> serde_json::Value {
        serde_json::from_str(&strip_line_comments(text)).unwrap()
    }

    fn is_identifier(s: &str) -> bool {
        s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    }

    #[test]
    fn class_and_binding_names_are_identifiers_from_the_template() {
        let e = entry('1', "rust-dev", 2000, 2048, false);
        let classes = container_classes(&doc(1, vec![e.clone()]));
        let c = &classes[0];
        assert_eq!(c.class_name, "RustDev_0190a000000070008000000000000001");
        assert_eq!(c.binding, "RUST_DEV_0190A000000070008000000000000001");
        assert!(is_identifier(&c.class_name) && is_identifier(&c.binding));
        // A name that is not a template name still gives identifiers.
        let odd = entry('2', "9-lives--x", 1, 1, false);
        let c = &container_classes(&doc(1, vec![odd]))[0];
        assert!(c.class_name.starts_with("T9LivesX_"), "{}", c.class_name);
        assert!(c.binding.starts_with("T9_LIVES_X_"), "{}", c.binding);
        assert!(is_identifier(&c.class_name) && is_identifier(&c.binding));
        // A new version of the template keeps its class.
        let newer = CatalogEntry { version_id: "x".to_owned(), version: "2".to_owned(), ..e };
        let again = &container_classes(&doc(2, vec![newer]))[0];
        assert_eq!(
            (&again.class_name, &again.binding),
            (&classes[0].class_name, &classes[0].binding)
        );
    }

    #[test]
    fn the_instance_type_is_the_smallest_that_fits() {
        assert_eq!(instance_type(50, 128), "lite");
        assert_eq!(instance_type(250, 1024), "basic");
        assert_eq!(instance_type(500, 1025), "standard-1");
        assert_eq!(instance_type(1000, 6000), "standard-2");
        assert_eq!(instance_type(2000, 2048), "standard-3");
        assert_eq!(instance_type(4000, 12288), "standard-4");
        assert_eq!(instance_type(64_000, 262_144), "standard-4");
    }

    #[test]
    fn the_config_has_a_class_binding_and_container_per_active_template() {
        let d = doc(
            7,
            vec![
                entry('1', "go", 250, 512, false),
                entry('2', "old", 2000, 2048, true),
                entry('3', "rust", 2000, 2048, false),
            ],
        );
        let t = CloudflareTarget { account_id: Some("0123abcd".to_owned()), ..target() };
        let text = wrangler_config(&d, &t);
        assert!(text.starts_with(
            "// Wrangler config of the BurstFlare Cloudflare target, runtime catalog revision 7.\n"
        ));
        assert_eq!(wrangler_config(&d, &t), text, "deterministic");
        let json = config_json(&text);
        assert_eq!(json["name"], "burstflare");
        assert_eq!(json["main"], WORKER_FILE);
        assert_eq!(json["account_id"], "0123abcd");
        assert_eq!(json["vars"]["BURSTFLARE_CATALOG_REVISION"], "7");
        let classes: Vec<&str> = json["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["class_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            classes,
            ["Go_0190a000000070008000000000000001", "Rust_0190a000000070008000000000000003"]
        );
        assert_eq!(json["containers"][0]["image"], "registry.local:5000/acme/go:1");
        assert_eq!(json["containers"][0]["instance_type"], "basic");
        assert_eq!(json["containers"][1]["instance_type"], "standard-3");
        assert_eq!(json["containers"][1]["max_instances"], 4);
        assert_eq!(
            json["durable_objects"]["bindings"][1]["name"],
            "RUST_0190A000000070008000000000000003"
        );
        assert_eq!(json["durable_objects"]["bindings"][1]["class_name"], classes[1]);
        assert_eq!(
            json["migrations"],
            serde_json::json!([{"tag": "r7", "new_sqlite_classes": classes}])
        );
        // Without an account, no account_id; an empty catalog has no classes and no migrations.
        let json = config_json(&wrangler_config(&doc(0, vec![]), &target()));
        assert!(json.get("account_id").is_none());
        assert_eq!(
            (
                json["containers"].as_array().unwrap().len(),
                json["migrations"].as_array().unwrap().len()
            ),
            (0, 0)
        );
    }

    #[test]
    fn a_continued_config_keeps_its_history_and_appends_the_difference() {
        let go = entry('1', "go", 250, 512, false);
        let rust = entry('3', "rust", 2000, 2048, false);
        let first = wrangler_config(&doc(3, vec![go.clone()]), &target());
        // A promotion of go (new image): same classes, the history is left alone.
        let promoted =
            CatalogEntry { image_ref: "registry.local:5000/acme/go:2".to_owned(), ..go.clone() };
        let second =
            wrangler_config_after(&first, &doc(4, vec![promoted.clone()]), &target()).unwrap();
        let json = config_json(&second);
        assert_eq!(json["migrations"], config_json(&first)["migrations"]);
        assert_eq!(json["containers"][0]["image"], "registry.local:5000/acme/go:2");
        // A template added, then go archived: one migration each, in order.
        let third = wrangler_config_after(
            &second,
            &doc(5, vec![promoted.clone(), rust.clone()]),
            &target(),
        )
        .unwrap();
        let archived = CatalogEntry { archived: true, ..promoted };
        let fourth =
            wrangler_config_after(&third, &doc(6, vec![archived, rust]), &target()).unwrap();
        let go_class = "Go_0190a000000070008000000000000001";
        let rust_class = "Rust_0190a000000070008000000000000003";
        assert_eq!(
            config_json(&fourth)["migrations"],
            serde_json::json!([
                {"tag": "r3", "new_sqlite_classes": [go_class]},
                {"tag": "r5", "new_sqlite_classes": [rust_class]},
                {"tag": "r6", "deleted_classes": [go_class]},
            ])
        );
        // The same revision again changes nothing; a clash of tags gets a suffix.
        assert_eq!(
            wrangler_config_after(
                &fourth,
                &doc(6, vec![entry('3', "rust", 2000, 2048, false)]),
                &target()
            )
            .unwrap(),
            fourth
        );
        let again = wrangler_config_after(&fourth, &doc(6, vec![]), &target()).unwrap();
        assert_eq!(
            config_json(&again)["migrations"][3],
            serde_json::json!({"tag": "r6-2", "deleted_classes": [rust_class]})
        );
        // Kinds this module does not write are kept and understood.
        let hand = r#"{"migrations": [{"tag": "a", "new_classes": ["X"]},
                       {"tag": "b", "renamed_classes": [{"from": "X", "to": "Y"}]}]}"#;
        let json = config_json(&wrangler_config_after(hand, &doc(9, vec![]), &target()).unwrap());
        assert_eq!(json["migrations"][1]["renamed_classes"][0]["to"], "Y");
        assert_eq!(
            json["migrations"][2],
            serde_json::json!({"tag": "r9", "deleted_classes": ["Y"]})
        );
        assert!(wrangler_config_after("not json", &doc(1, vec![]), &target()).is_err());
    }

    #[test]
    fn the_worker_exports_each_class_and_routes_each_template() {
        let d = doc(2, vec![entry('1', "go", 250, 512, false), entry('2', "old", 1, 1, true)]);
        let script = worker_script(&d);
        assert!(
            WORKER_TEMPLATE.contains(GENERATED_BEGIN) && WORKER_TEMPLATE.contains(GENERATED_END)
        );
        assert_eq!(script.matches(GENERATED_BEGIN).count(), 1);
        assert!(script.contains("// @generated:begin (runtime catalog revision 2)\n"), "{script}");
        assert!(script.contains(
            "export class Go_0190a000000070008000000000000001 extends SessionContainer {}\n"
        ));
        assert!(script.contains(
            "  \"0190a000-0000-7000-8000-000000000001\": \"GO_0190A000000070008000000000000001\",\n"
        ));
        assert!(!script.contains("Old_"), "archived templates get no class");
        assert!(
            script.contains("import { Container, getContainer } from \"@cloudflare/containers\";")
        );
    }

    #[test]
    fn write_bundle_starts_a_history_then_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let go = entry('1', "go", 250, 512, false);
        write_bundle(dir.path(), &doc(1, vec![go.clone()]), &target()).unwrap();
        let first = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(first, wrangler_config(&doc(1, vec![go.clone()]), &target()));
        let worker = std::fs::read_to_string(dir.path().join(WORKER_FILE)).unwrap();
        assert_eq!(worker, worker_script(&doc(1, vec![go])));
        write_bundle(dir.path(), &doc(2, vec![]), &target()).unwrap();
        let second = config_json(&std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap());
        assert_eq!(second["migrations"].as_array().unwrap().len(), 2);
        std::fs::write(dir.path().join(CONFIG_FILE), "garbage").unwrap();
        let err = write_bundle(dir.path(), &doc(3, vec![]), &target()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
