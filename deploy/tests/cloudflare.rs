//! The generated Wrangler project passes the pinned wrangler's dry run (`wrangler deploy
//! --dry-run`), offline: no Cloudflare account, no image build or pull, no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use deploy::cloudflare::{self, CloudflareTarget};
use deploy::publish::{self, Published};
use domain::store::{CatalogDocument, CatalogEntry};

/// deploy/cloudflare/node_modules, installed by `make setup` (`npm ci --prefix deploy/cloudflare`).
fn node_modules() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflare/node_modules");
    assert!(
        modules.join(".bin/wrangler").exists() && modules.join("@cloudflare/containers").is_dir(),
        "{} has no wrangler or @cloudflare/containers: run `make setup` (it runs \
         `npm ci --prefix deploy/cloudflare`)",
        modules.display()
    );
    modules
}

fn entry(n: u8, slug: &str, name: &str, image: &str, archived: bool) -> CatalogEntry {
    CatalogEntry {
        workspace_id: format!("0190a000-0000-7000-8000-0000000000a{n}"),
        workspace_slug: slug.to_owned(),
        template_id: format!("0190a000-0000-7000-8000-0000000000b{n}"),
        template_name: name.to_owned(),
        version_id: format!("0190a000-0000-7000-8000-0000000000c{n}"),
        version: "2".to_owned(),
        image_ref: image.to_owned(),
        previous_version_id: Some(format!("0190a000-0000-7000-8000-0000000000d{n}")),
        previous_version: Some("1".to_owned()),
        updated_at: 1_700_000_000_000,
        revision: 5,
        cpu_millis: 2000,
        memory_mb: 2048,
        archived,
    }
}

/// Whether this process may make a network namespace: then wrangler runs in one, with no
/// network at all, which proves the dry run is offline.
fn can_unshare_network() -> bool {
    Command::new("unshare").args(["-n", "true"]).output().is_ok_and(|o| o.status.success())
}

/// Runs `wrangler deploy --dry-run --outdir <out>` in `dir`; returns its stdout and stderr.
fn dry_run(dir: &Path, out: &Path, home: &Path) -> String {
    let wrangler = node_modules().join(".bin/wrangler");
    let mut cmd = if can_unshare_network() {
        let mut cmd = Command::new("unshare");
        cmd.arg("-n").arg(&wrangler);
        cmd
    } else {
        Command::new(&wrangler)
    };
    let output = cmd
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(out)
        .current_dir(dir)
        // No metrics, no update check (it hides with the banner), logs and settings in a
        // throwaway place, and no credentials even if the caller has some.
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("WRANGLER_HIDE_BANNER", "true")
        .env("WRANGLER_LOG_PATH", home.join("logs"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home)
        .env("CI", "true")
        .env_remove("CLOUDFLARE_API_TOKEN")
        .env_remove("CLOUDFLARE_API_KEY")
        .env_remove("CLOUDFLARE_ACCOUNT_ID")
        .output()
        .expect("run wrangler");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "wrangler deploy --dry-run failed in {}:\n{text}",
        dir.display()
    );
    text
}

#[test]
fn the_generated_wrangler_project_passes_the_dry_run_and_so_does_its_next_revision() {
    let modules = node_modules();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    // The worker imports @cloudflare/containers: let Node find the pinned one.
    std::os::unix::fs::symlink(&modules, bundle.join("node_modules")).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let target = CloudflareTarget {
        worker_name: "burstflare-test".to_owned(),
        account_id: None,
        max_instances: 3,
    };
    let rust = entry(1, "acme", "rust-dev", "registry.example.com:5000/acme/rust-dev:2", false);
    let go = entry(
        2,
        "zeta",
        "go",
        "registry.example.com:5000/zeta/go@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        false,
    );
    let doc = CatalogDocument {
        revision: 5,
        generated_at: 1_700_000_000_000,
        entries: vec![rust.clone(), go.clone()],
    };
    cloudflare::write_bundle(&bundle, &doc, &target).unwrap();

    let out = dry_run(&bundle, &tmp.path().join("dist-5"), &home);
    let classes = cloudflare::container_classes(&doc);
    assert_eq!(classes.len(), 2);
    for c in &classes {
        // "env.RUST_DEV_0190… (RustDev_0190…)      Durable Object"
        let binding = format!("env.{} ({})", c.binding, c.class_name);
        assert!(
            out.lines().any(|l| l.contains(&binding) && l.contains("Durable Object")),
            "no {binding} in:\n{out}"
        );
        // "- burstflare-test-rustdev_0190… (registry…/rust-dev:2)"
        let container = format!("- burstflare-test-{} ({})", c.class_name.to_lowercase(), c.image);
        assert!(out.contains(&container), "no {container} in:\n{out}");
    }
    assert!(out.contains("--dry-run: exiting now."), "{out}");
    // The bundled worker holds both classes.
    let bundled = std::fs::read_to_string(tmp.path().join("dist-5/index.js")).unwrap();
    for c in &classes {
        assert!(bundled.contains(&c.class_name), "{} not in the bundled worker", c.class_name);
    }

    // The next revision: go archived, rust promoted to a new image. The history grows by one
    // migration deleting go's class, and wrangler accepts that too.
    let next = CatalogDocument {
        revision: 6,
        generated_at: 1_700_000_100_000,
        entries: vec![
            CatalogEntry {
                image_ref: "registry.example.com:5000/acme/rust-dev:3".to_owned(),
                revision: 6,
                ..rust
            },
            CatalogEntry { archived: true, ..go },
        ],
    };
    cloudflare::write_bundle(&bundle, &next, &target).unwrap();
    let config = std::fs::read_to_string(bundle.join(cloudflare::CONFIG_FILE)).unwrap();
    assert!(config.contains("\"tag\": \"r6\""), "{config}");
    assert!(config.contains("\"deleted_classes\""), "{config}");
    let out = dry_run(&bundle, &tmp.path().join("dist-6"), &home);
    assert!(out.contains("registry.example.com:5000/acme/rust-dev:3"), "{out}");
    assert!(!out.contains(&classes[1].binding), "{out}");
}

#[test]
fn publish_checks_each_revision_keeps_the_history_and_never_goes_backwards() {
    let modules = node_modules();
    let wrangler_dir = modules.parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("published");
    let target = CloudflareTarget {
        worker_name: "burstflare-test".to_owned(),
        account_id: None,
        max_instances: 2,
    };
    let rust = entry(1, "acme", "rust-dev", "registry.example.com:5000/acme/rust-dev:2", false);
    let go = entry(2, "zeta", "go", "registry.example.com:5000/zeta/go:1", false);
    let doc = |revision: u64, entries: Vec<CatalogEntry>| CatalogDocument {
        revision,
        generated_at: 1_700_000_000_000 + i64::try_from(revision).unwrap(),
        entries,
    };

    // No credentials: checked with the dry run, not deployed.
    let first = publish::publish(
        &dir,
        &doc(5, vec![rust.clone(), go.clone()]),
        &target,
        wrangler_dir,
        None,
    )
    .unwrap();
    assert_eq!(first, Published::Done { revision: 5, deployed: false });
    assert_eq!(publish::published_revision(&dir), Some(5));
    assert!(dir.join(cloudflare::WORKER_FILE).exists());
    assert!(!dir.join(".staging").exists(), "the staging directory is cleared");
    let catalog = std::fs::read_to_string(dir.join(publish::CATALOG_FILE)).unwrap();
    assert_eq!(deploy::catalog::parse(&catalog).unwrap().entries.len(), 2);

    // An older revision (a slower promotion finishing late) changes nothing.
    let before = std::fs::read_to_string(dir.join(cloudflare::CONFIG_FILE)).unwrap();
    let late = publish::publish(&dir, &doc(4, vec![rust.clone()]), &target, wrangler_dir, None);
    assert_eq!(late.unwrap(), Published::Skipped { published: 5 });
    assert_eq!(std::fs::read_to_string(dir.join(cloudflare::CONFIG_FILE)).unwrap(), before);

    // The next revision continues the migration history.
    let next = publish::publish(&dir, &doc(6, vec![rust]), &target, wrangler_dir, None).unwrap();
    assert_eq!(next, Published::Done { revision: 6, deployed: false });
    let config = std::fs::read_to_string(dir.join(cloudflare::CONFIG_FILE)).unwrap();
    assert!(config.contains("\"tag\": \"r5\"") && config.contains("\"tag\": \"r6\""), "{config}");
    assert!(config.contains("\"deleted_classes\""), "{config}");

    // Without the pinned wrangler, the error says how to get it.
    let err = publish::publish(&dir, &doc(7, vec![]), &target, tmp.path(), None).unwrap_err();
    assert!(err.to_string().contains("make setup"), "{err}");
    assert_eq!(publish::published_revision(&dir), Some(6));
}
