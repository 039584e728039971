//! Embeds xterm.js (the browser terminal) from `web/vendor/node_modules`, which
//! `scripts/setup.sh` installs with `npm ci` from the committed `web/vendor/package-lock.json`.
//! The files are copied into `OUT_DIR` (their source-map comments removed: the maps are not
//! served) and `src/lib.rs` includes them from there; their versions become the
//! `BURSTFLARE_XTERM_VERSION` and `BURSTFLARE_XTERM_FIT_VERSION` environment variables, which
//! version the asset paths. When they are not installed, a plain `cargo build` still succeeds:
//! the script becomes a placeholder that shows "xterm.js is not installed" on the terminal page,
//! and cargo prints a warning.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// (file in node_modules, name in OUT_DIR)
const XTERM_JS: (&str, &str) = ("@xterm/xterm/lib/xterm.js", "xterm.js");
const XTERM_CSS: (&str, &str) = ("@xterm/xterm/css/xterm.css", "xterm.css");
const FIT_JS: (&str, &str) = ("@xterm/addon-fit/lib/addon-fit.js", "addon-fit.js");

/// What the page shows instead of a terminal when the library is missing. Plain ES2020, run
/// in place of xterm.js; `terminal.js` sees no `Terminal` and leaves the message alone.
const PLACEHOLDER_JS: &str = r#"// xterm.js was not installed when this binary was built: run `make setup` and rebuild.
(() => {
  "use strict";
  const MESSAGE = "xterm.js is not installed: run `make setup`, then rebuild BurstFlare.";
  const show = () => {
    const screen = document.getElementById("terminal");
    if (screen) {
      const p = document.createElement("p");
      p.className = "terminal-missing";
      p.setAttribute("role", "alert");
      p.textContent = MESSAGE;
      screen.replaceChildren(p);
    }
    const status = document.getElementById("terminal-status");
    if (status) {
      status.dataset.state = "closed";
      status.textContent = "Disconnected: " + MESSAGE;
    }
  };
  window.burstflareXtermMissing = MESSAGE;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})();
"#;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let vendor = manifest.join("vendor");
    let modules = vendor.join("node_modules");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=vendor/package-lock.json");

    let files = [XTERM_JS, XTERM_CSS, FIT_JS];
    let installed = files.iter().all(|(from, _)| modules.join(from).is_file());
    if installed {
        for (from, to) in files {
            let src = modules.join(from);
            println!("cargo:rerun-if-changed={}", src.display());
            let text =
                fs::read_to_string(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
            fs::write(out.join(to), without_source_map(&text))?;
        }
        for package in ["@xterm/xterm", "@xterm/addon-fit"] {
            println!(
                "cargo:rerun-if-changed={}",
                modules.join(package).join("package.json").display()
            );
        }
        let xterm = package_version(&modules.join("@xterm/xterm/package.json"))?;
        let fit = package_version(&modules.join("@xterm/addon-fit/package.json"))?;
        println!("cargo:rustc-env=BURSTFLARE_XTERM_VERSION={xterm}");
        println!("cargo:rustc-env=BURSTFLARE_XTERM_FIT_VERSION={fit}");
        println!("cargo:rustc-env=BURSTFLARE_XTERM_INSTALLED=1");
    } else {
        // Watching the folder (it exists: package.json is committed) notices `npm ci`.
        println!("cargo:rerun-if-changed=vendor");
        println!(
            "cargo:warning=xterm.js is not installed ({} is missing): the browser terminal will \
             show an error. Run `make setup` (npm ci --prefix web/vendor) and rebuild.",
            Path::new("web/vendor/node_modules").join(XTERM_JS.0).display()
        );
        fs::write(out.join(XTERM_JS.1), PLACEHOLDER_JS)?;
        fs::write(out.join(XTERM_CSS.1), "/* xterm.js is not installed: run `make setup` */\n")?;
        fs::write(out.join(FIT_JS.1), "// xterm.js is not installed: run `make setup`\n")?;
        println!("cargo:rustc-env=BURSTFLARE_XTERM_VERSION=missing");
        println!("cargo:rustc-env=BURSTFLARE_XTERM_FIT_VERSION=missing");
        println!("cargo:rustc-env=BURSTFLARE_XTERM_INSTALLED=0");
    }
    Ok(())
}

/// The text without its `//# sourceMappingURL=` / `/*# sourceMappingURL=… */` line: the maps
/// are not served, and a browser with its developer tools open would ask for them.
fn without_source_map(text: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|line| {
            let l = line.trim_start();
            !(l.starts_with("//# sourceMappingURL=") || l.starts_with("/*# sourceMappingURL="))
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The `"version"` of an npm package.json (the first one: it is a top-level key there). A
/// few lines of parsing rather than a JSON dependency for the build script.
fn package_version(path: &Path) -> Result<String, Box<dyn Error>> {
    let text = fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let version = text
        .split_once("\"version\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .filter(|v| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
        })
        .ok_or_else(|| format!("no usable \"version\" in {}", path.display()))?;
    Ok(version)
}
