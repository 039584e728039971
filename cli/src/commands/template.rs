//! `flare template`: create templates, upload bundles as new versions, follow and manage builds.
//!
//! An upload is four steps: pack the directory locally (nothing is sent when the bundle or its
//! manifest is invalid), ask the server for a version and a presigned upload URL, `PUT` the bundle
//! to storage, and confirm the version, which queues its build.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sdk::bundle::{BundleError, Limits, MANIFEST_FILE, Manifest, ManifestView};
use sdk::{BuildLog, ClientError, TemplateBuild, TemplateDetail, TemplateVersion};
use serde::Serialize;

use crate::fail::{Exit, Failure};
use crate::output;
use crate::session::{Authed, Ctx};

/// How often `logs -f` asks for new log lines.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A build that is final but whose log the server never calls done: stop after this many polls
/// without new lines.
const MAX_IDLE_FINAL_POLLS: u32 = 5;
/// Without --follow, at most this many pages of log are read in one go.
const MAX_PAGES: u32 = 1000;
/// The upload body is streamed in chunks of this size (and the progress bar moves by them).
const UPLOAD_CHUNK: usize = 64 * 1024;
const UPLOAD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a storage error body is shown.
const STORAGE_BODY_EXCERPT: usize = 300;

/// Progress bars and spinners: on stderr, only for people (a terminal, text output).
pub(crate) fn show_progress(ctx: &Ctx) -> bool {
    ctx.text() && std::io::stderr().is_terminal()
}

pub(crate) fn spinner(ctx: &Ctx, message: String) -> ProgressBar {
    if !show_progress(ctx) {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

/// `3` for `3` and `v3`: versions are numbers; people often write them with a `v`.
pub fn normalize_version(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('v').or_else(|| v.strip_prefix('V')).unwrap_or(v).to_string()
}

/// The first 12 hex digits of a sha256 (`sha256:` kept when present).
fn short_hash(h: &str) -> String {
    match h.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.chars().take(12).collect::<String>()),
        None => h.chars().take(12).collect(),
    }
}

/// `45s`, `3m 07s`, `1h 02m`.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn build_duration(b: &TemplateBuild) -> Option<String> {
    Some(duration(b.finished_at? - b.started_at?))
}

pub(crate) fn dash(s: Option<String>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

/// The server's 404 for a template (or a version, or a build) as a failure that names it.
pub(crate) fn not_found_as(e: anyhow::Error, failure: impl FnOnce() -> Failure) -> anyhow::Error {
    let not_found =
        e.chain().any(|c| c.downcast_ref::<ClientError>().is_some_and(ClientError::is_not_found));
    if not_found { failure().into() } else { e }
}

pub(crate) fn no_template(name: &str, ws: &str) -> Failure {
    Failure::not_found(format!("there is no template {name} in workspace {ws}"))
        .hint("`flare template list` shows the workspace's templates")
}

// ---------------------------------------------------------------------------------------------
// create, list, show, versions, builds, archive

pub async fn create(ctx: &Ctx, name: &str, description: Option<&str>) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let body = sdk::CreateTemplate {
        name: name.to_string(),
        description: description.unwrap_or_default().to_string(),
    };
    let mut authed = ctx.signed_in()?;
    let t = authed
        .call(async |c| c.create_template(&ws, &body).await)
        .await
        .with_context(|| format!("creating template {name} in {ws}"))?;
    if !ctx.text() {
        return output::json(&t);
    }
    println!("Created template {} in {ws}.", t.name);
    println!("Upload its first version with `flare template upload {} DIR`.", t.name);
    Ok(())
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.templates(&ws).await)
        .await
        .with_context(|| format!("listing the templates of {ws}"))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!("No templates in {ws} yet; `flare template upload NAME DIR` makes one.");
        return Ok(());
    }
    println!("{}", template_table(&list));
    Ok(())
}

fn template_table(list: &[sdk::TemplateSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                dash(t.active_version.as_ref().map(|v| format!("v{v}"))),
                t.versions.to_string(),
                output::date(t.updated_at),
                if t.archived { "yes".into() } else { String::new() },
            ]
        })
        .collect();
    output::table(&["NAME", "ACTIVE", "VERSIONS", "UPDATED", "ARCHIVED"], &rows)
}

pub async fn show(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let t = authed
        .call(async |c| c.template(&ws, name).await)
        .await
        .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
    if !ctx.text() {
        return output::json(&t);
    }
    println!("{}", detail_text(&t, &ws));
    Ok(())
}

/// `label  value` lines, the values aligned; a value with several lines continues under it.
pub(crate) fn fields(indent: &str, rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = Vec::new();
    for (k, v) in rows {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or_default();
        out.push(format!("{indent}{k:<width$}  {first}").trim_end().to_string());
        for more in lines {
            out.push(format!("{indent}{:width$}  {more}", ""));
        }
    }
    out.join("\n")
}

fn build_summary(b: &TemplateBuild) -> String {
    let mut s = format!("#{} {}", b.attempt, b.status);
    if let Some(d) = build_duration(b) {
        s.push_str(&format!(" in {d}"));
    }
    if let Some(e) = b.error.as_deref().filter(|e| !e.is_empty()) {
        s.push_str(&format!(": {e}"));
    }
    s
}

fn detail_text(t: &TemplateDetail, ws: &str) -> String {
    let mut rows = vec![
        ("template", t.name.clone()),
        ("workspace", ws.to_string()),
        ("description", dash(Some(t.description.clone()))),
        ("active version", dash(t.active_version.as_ref().map(|v| format!("v{v}")))),
        ("versions", t.versions.to_string()),
        ("created", output::date_time(t.created_at)),
        ("updated", output::date_time(t.updated_at)),
    ];
    if let Some(at) = t.archived_at {
        rows.push(("archived", output::date_time(at)));
    }
    let mut out = fields("", &rows);
    out.push_str("\n\n");
    match &t.latest_version {
        None => {
            out.push_str(&format!(
                "No versions yet: `flare template upload {} DIR` uploads the first.",
                t.name
            ));
            return out;
        }
        Some(v) => {
            out.push_str(&format!("Newest version: v{}\n", v.version));
            out.push_str(&fields("  ", &version_rows(v)));
        }
    }
    let manifest_of = match (&t.latest_built_version, &t.latest_version) {
        (Some(b), _) => Some((b, "newest built version")),
        (None, Some(v)) if v.manifest.is_some() => Some((v, "not built yet")),
        _ => None,
    };
    out.push_str("\n\n");
    match manifest_of {
        Some((v, what)) => {
            out.push_str(&format!("Manifest of v{} ({what}):\n", v.version));
            match &v.manifest {
                Some(m) => out.push_str(&fields("  ", &manifest_rows(m))),
                None => out.push_str("  (not available)"),
            }
        }
        None => out.push_str("No version has built yet."),
    }
    out
}

fn version_rows(v: &TemplateVersion) -> Vec<(&'static str, String)> {
    let mut rows = vec![("status", v.status.clone())];
    if let Some(b) = &v.latest_build {
        rows.push(("build", build_summary(b)));
    }
    if let Some(size) = v.bundle_size {
        let sha = v.bundle_sha256.as_deref().map(short_hash).unwrap_or_default();
        rows.push(("bundle", format!("{} {sha}", HumanBytes(size)).trim_end().to_string()));
    }
    if let Some(image) = &v.image_ref {
        rows.push(("image", image.clone()));
    }
    if let Some(digest) = &v.image_digest {
        rows.push(("image digest", digest.clone()));
    }
    let by = v.created_by.as_ref().map(|u| format!(" by {}", u.display_name)).unwrap_or_default();
    rows.push(("uploaded", format!("{}{by}", output::date_time(v.created_at))));
    rows
}

/// `1 CPU`, `0.5 CPU`, `1.25 CPU`.
fn cpus(millis: u32) -> String {
    let whole = millis / 1000;
    let frac = millis % 1000;
    if frac == 0 {
        return format!("{whole} CPU");
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{} CPU", frac.trim_end_matches('0'))
}

fn manifest_rows(m: &ManifestView) -> Vec<(&'static str, String)> {
    let list =
        |items: Vec<String>| if items.is_empty() { "-".to_string() } else { items.join("\n") };
    let ports = m
        .ports
        .iter()
        .map(|p| {
            let mut s = format!("{}/{}", p.port, p.protocol);
            if !p.name.is_empty() {
                s.push_str(&format!(" ({})", p.name));
            }
            s
        })
        .collect();
    let env = m
        .env
        .iter()
        .map(|e| match (&e.value, e.secret) {
            (Some(v), false) => format!("{}={v}", e.name),
            _ => format!("{}=(secret)", e.name),
        })
        .collect();
    let labels = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = &m.resources;
    vec![
        ("base image", m.base_image.clone()),
        ("persisted paths", list(m.persisted_paths.clone())),
        ("ports", list(ports)),
        ("env", list(env)),
        (
            "resources",
            format!("{}, {} MB memory, {} GB disk", cpus(r.cpu_millis), r.memory_mb, r.disk_gb),
        ),
        ("idle timeout", format!("{} min", m.idle_timeout_minutes)),
        ("labels", list(labels)),
    ]
}

pub async fn versions(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.template_versions(&ws, name).await)
        .await
        .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!("{name} has no versions yet; `flare template upload {name} DIR` uploads one.");
        return Ok(());
    }
    println!("{}", version_table(&list));
    Ok(())
}

fn version_table(list: &[TemplateVersion]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                v.status.clone(),
                dash(v.bundle_size.map(|s| HumanBytes(s).to_string())),
                dash(v.bundle_sha256.as_deref().map(short_hash)),
                dash(v.latest_build.as_ref().map(|b| format!("#{} {}", b.attempt, b.status))),
                dash(v.image_digest.as_deref().map(short_hash)),
                output::date_time(v.created_at),
                dash(v.created_by.as_ref().map(|u| u.display_name.clone())),
            ]
        })
        .collect();
    output::table(
        &["VERSION", "STATUS", "SIZE", "SHA256", "BUILD", "IMAGE DIGEST", "UPLOADED", "BY"],
        &rows,
    )
}

pub async fn builds(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.template_builds(&ws, name).await)
        .await
        .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!("{name} has no builds yet.");
        return Ok(());
    }
    println!("{}", build_table(&list));
    Ok(())
}

fn build_table(list: &[TemplateBuild]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            let error: String = b.error.clone().unwrap_or_default().chars().take(60).collect();
            vec![
                b.id.clone(),
                b.version.clone(),
                format!("#{}", b.attempt),
                b.status.clone(),
                output::date_time(b.created_at),
                dash(build_duration(b)),
                error.lines().next().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    output::table(&["ID", "VERSION", "ATTEMPT", "STATUS", "QUEUED", "DURATION", "ERROR"], &rows)
}

pub async fn archive(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let t = authed
        .call(async |c| c.archive_template(&ws, name).await)
        .await
        .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
    if !ctx.text() {
        return output::json(&t);
    }
    println!(
        "Archived template {} in {ws}: new sessions can no longer use it; running sessions are \
         not touched, and no new versions can be uploaded.",
        t.name
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// retry, cancel: the newest build of a version

/// The newest version of a template, for commands whose VERSION was left out.
fn newest_version(detail: &TemplateDetail) -> Result<String, Failure> {
    detail.latest_version.as_ref().map(|v| v.version.clone()).ok_or_else(|| {
        Failure::not_found(format!("template {} has no versions yet", detail.name))
            .hint(format!("upload one with `flare template upload {} DIR`", detail.name))
    })
}

/// The newest build attempt of a version.
fn latest_build(v: &TemplateVersion) -> Result<TemplateBuild, Failure> {
    v.latest_build.clone().ok_or_else(|| {
        Failure::not_found(format!(
            "{} v{} has no build: its bundle was never confirmed ({})",
            v.template, v.version, v.status
        ))
        .hint(format!("upload it again with `flare template upload {} DIR`", v.template))
    })
}

/// VERSION, else the template's newest version, with its newest build.
async fn resolve_version(
    authed: &mut Authed<'_>,
    ws: &str,
    name: &str,
    version: Option<&str>,
) -> anyhow::Result<TemplateVersion> {
    let version = match version {
        Some(v) => normalize_version(v),
        None => {
            let t = authed
                .call(async |c| c.template(ws, name).await)
                .await
                .map_err(|e| not_found_as(e, || no_template(name, ws)))?;
            newest_version(&t)?
        }
    };
    authed.call(async |c| c.template_version(ws, name, &version).await).await.map_err(|e| {
        not_found_as(e, || {
            Failure::not_found(format!("there is no version {version} of {name} in {ws}"))
                .hint(format!("`flare template versions {name}` lists its versions"))
        })
    })
}

pub async fn retry(ctx: &Ctx, name: &str, version: Option<&str>) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let v = resolve_version(&mut authed, &ws, name, version).await?;
    let previous = latest_build(&v)?;
    let b = authed
        .call(async |c| c.retry_build(&ws, &previous.id).await)
        .await
        .with_context(|| format!("retrying {name} v{}", v.version))?;
    if !ctx.text() {
        return output::json(&b);
    }
    println!(
        "Build #{} of {name} v{} {} (build #{} {}).",
        b.attempt, b.version, b.status, previous.attempt, previous.status
    );
    println!("Follow it with `flare template logs {name} {} -f`.", b.version);
    Ok(())
}

pub async fn cancel(ctx: &Ctx, name: &str, version: Option<&str>) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let v = resolve_version(&mut authed, &ws, name, version).await?;
    let build = latest_build(&v)?;
    let b = authed
        .call(async |c| c.cancel_build(&ws, &build.id).await)
        .await
        .with_context(|| format!("cancelling build #{} of {name} v{}", build.attempt, v.version))?;
    if !ctx.text() {
        return output::json(&b);
    }
    if b.status == "cancelled" {
        println!("Cancelled build #{} of {name} v{}.", b.attempt, b.version);
    } else {
        println!(
            "Asked build #{} of {name} v{} to stop (it is {}); `flare template logs {name} {} -f` \
             shows when it has.",
            b.attempt, b.version, b.status, b.version
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// logs

/// What to do after reading one page of a build log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read again from chunk `from` after waiting `wait`.
    Poll {
        from: u64,
        wait: Duration,
    },
    Stop,
}

/// When to read the log again and when to stop: a log is read until the server says it is
/// `done`; without --follow only until it has nothing new to give.
#[derive(Debug)]
struct Follower {
    follow: bool,
    from: u64,
    idle_final_polls: u32,
    pages: u32,
}

impl Follower {
    fn new(follow: bool, from: u64) -> Self {
        Self { follow, from, idle_final_polls: 0, pages: 0 }
    }

    fn after(&mut self, log: &BuildLog) -> Step {
        self.pages += 1;
        if log.done {
            return Step::Stop;
        }
        let advanced = log.next > self.from;
        self.from = self.from.max(log.next);
        let from = self.from;
        if !self.follow {
            // Page through what is there now, then stop.
            return if advanced && self.pages < MAX_PAGES {
                Step::Poll { from, wait: Duration::ZERO }
            } else {
                Step::Stop
            };
        }
        if sdk::build_is_final(&log.build.status) {
            if advanced {
                // Catching up on a finished build's remaining pages: no need to wait.
                self.idle_final_polls = 0;
                return Step::Poll { from, wait: Duration::ZERO };
            }
            self.idle_final_polls += 1;
            if self.idle_final_polls >= MAX_IDLE_FINAL_POLLS {
                return Step::Stop;
            }
        }
        Step::Poll { from, wait: POLL_INTERVAL }
    }
}

/// Reads a build's log from chunk `from`, handing each piece of text to `on_text`; returns one
/// `BuildLog` with all the text read, the newest state of the build, and where it stopped.
async fn read_log(
    mut fetch: impl AsyncFnMut(u64) -> anyhow::Result<BuildLog>,
    mut sleep: impl AsyncFnMut(Duration),
    from: u64,
    follow: bool,
    mut on_text: impl FnMut(&str),
) -> anyhow::Result<BuildLog> {
    let mut follower = Follower::new(follow, from);
    let mut log = fetch(from).await?;
    on_text(&log.text);
    let mut text = std::mem::take(&mut log.text);
    loop {
        match follower.after(&log) {
            Step::Stop => break,
            Step::Poll { from, wait } => {
                if !wait.is_zero() {
                    sleep(wait).await;
                }
                log = fetch(from).await?;
                on_text(&log.text);
                text.push_str(&log.text);
            }
        }
    }
    log.text = text;
    Ok(log)
}

/// Prints log text to stdout as it comes, remembering whether the last line was ended.
#[derive(Debug, Default)]
struct LogPrinter {
    open_line: bool,
}

impl LogPrinter {
    fn print(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.open_line = !text.ends_with('\n');
    }

    fn end_line(&mut self) {
        if self.open_line {
            println!();
            self.open_line = false;
        }
    }
}

/// The last line of a build's log: how it ended (or that it has not).
fn status_line(b: &TemplateBuild) -> String {
    let what = format!("Build #{} of {} v{}", b.attempt, b.template, b.version);
    let took = build_duration(b).map(|d| format!(" in {d}")).unwrap_or_default();
    match b.status.as_str() {
        "succeeded" => {
            let image = match (&b.image_ref, &b.image_digest) {
                (Some(r), Some(d)) => format!(": image {r} ({d})"),
                (Some(r), None) => format!(": image {r}"),
                (None, Some(d)) => format!(": image {d}"),
                (None, None) => String::new(),
            };
            format!("{what} succeeded{took}{image}.")
        }
        "failed" => match b.error.as_deref().filter(|e| !e.is_empty()) {
            Some(e) => format!("{what} failed{took}: {e}"),
            None => format!("{what} failed{took}."),
        },
        "cancelled" => format!("{what} was cancelled."),
        other => format!(
            "{what} is {other}; `flare template logs {} {} -f` follows it.",
            b.template, b.version
        ),
    }
}

/// A build that ended without an image, as the failure `logs -f` and `upload -f` exit with.
fn build_failure(b: &TemplateBuild) -> Option<Failure> {
    let (name, v) = (&b.template, &b.version);
    match b.status.as_str() {
        "failed" => Some(
            Failure::new(
                Exit::Error,
                "build_failed",
                format!(
                    "build #{} of {name} v{v} failed{}",
                    b.attempt,
                    b.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            )
            .hint(format!(
                "fix the bundle and upload it again (`flare template upload {name} DIR`), or run \
                 `flare template retry {name} {v}` if the cause was temporary"
            )),
        ),
        "cancelled" => Some(
            Failure::new(
                Exit::Error,
                "build_cancelled",
                format!("build #{} of {name} v{v} was cancelled", b.attempt),
            )
            .hint(format!("`flare template retry {name} {v}` builds it again")),
        ),
        _ => None,
    }
}

/// The exit code of a followed build; a failed one says so on stderr. With JSON output the
/// result document was printed already, so no error document follows it.
fn exit_for(ctx: &Ctx, b: &TemplateBuild) -> Exit {
    match build_failure(b) {
        None => Exit::Ok,
        Some(f) => {
            if ctx.text() {
                eprintln!("error: {}", f.message);
                if let Some(h) = &f.hint {
                    eprintln!("hint: {h}");
                }
            }
            f.exit
        }
    }
}

/// Reads (and with `follow`, follows) the log of build `id`; prints the text as it comes and a
/// last status line in text mode. Returns everything read.
async fn show_log(
    ctx: &Ctx,
    authed: &mut Authed<'_>,
    ws: &str,
    id: &str,
    follow: bool,
) -> anyhow::Result<BuildLog> {
    let mut printer = LogPrinter::default();
    let text = ctx.text();
    let log = read_log(
        async |from| {
            authed
                .call(async |c| c.build_log(ws, id, from).await)
                .await
                .with_context(|| format!("reading the log of build {id}"))
        },
        async |wait| tokio::time::sleep(wait).await,
        0,
        follow,
        |t| {
            if text {
                printer.print(t);
            }
        },
    )
    .await?;
    if text {
        printer.end_line();
        println!("{}", status_line(&log.build));
    }
    Ok(log)
}

pub async fn logs(
    ctx: &Ctx,
    name: &str,
    version: Option<&str>,
    build: Option<&str>,
    follow: bool,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let id = match build {
        Some(id) => id.to_string(),
        None => latest_build(&resolve_version(&mut authed, &ws, name, version).await?)?.id,
    };
    let log = show_log(ctx, &mut authed, &ws, &id, follow).await.map_err(|e| {
        not_found_as(e, || {
            Failure::not_found(format!("there is no build {id} in {ws}"))
                .hint(format!("`flare template builds {name}` lists the template's builds"))
        })
    })?;
    if !ctx.text() {
        output::json(&log)?;
    }
    Ok(if follow { exit_for(ctx, &log.build) } else { Exit::Ok })
}

// ---------------------------------------------------------------------------------------------
// upload

#[derive(Serialize)]
struct Problem<'a> {
    field: &'a str,
    message: &'a str,
}

/// Every problem with the bundle in `dir`: all of the manifest's when the manifest is what is
/// wrong, else the one `pack` found.
fn bundle_problems(dir: &Path, err: BundleError) -> Vec<BundleError> {
    let manifest = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok();
    match manifest.map(|text| Manifest::parse_all(&text)) {
        Some(Err(errors)) if !errors.is_empty() => errors,
        _ => vec![err],
    }
}

/// Prints the problems (`error: FIELD: MESSAGE` each; with JSON output also one error document
/// listing them as `errors: [{field, message}]`) and returns the exit code.
fn report_invalid_bundle(ctx: &Ctx, errors: &[BundleError]) -> Exit {
    let hint = "fix the problems above and run the upload again; nothing was sent to the server";
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("hint: {hint}");
    if !ctx.text() {
        let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let problems: Vec<Problem<'_>> =
            errors.iter().map(|e| Problem { field: &e.field, message: &e.message }).collect();
        let _ = output::json(&serde_json::json!({ "error": {
            "code": "invalid_bundle", "message": message, "hint": hint, "errors": problems,
        }}));
    }
    Exit::Error
}

/// Prints the confirmed version and its build (with --follow, both as they are once the build
/// has ended; the exit code is then the build's result).
pub async fn upload(
    ctx: &Ctx,
    name: &str,
    dir: &Path,
    description: Option<&str>,
    follow: bool,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;

    // 1. Pack and check locally; an invalid bundle never reaches the server.
    if let Err(e) = sdk::bundle::validate_template_name(name) {
        return Ok(report_invalid_bundle(ctx, &[e]));
    }
    let packing = spinner(ctx, format!("Packing {}", dir.display()));
    let packed = sdk::bundle::pack(dir, &Limits::default());
    packing.finish_and_clear();
    let packed = match packed {
        Ok(p) => p,
        Err(e) => return Ok(report_invalid_bundle(ctx, &bundle_problems(dir, e))),
    };
    if packed.manifest.name != name {
        let e = BundleError::new(
            "name",
            format!(
                "{} names the template {}, but it is being uploaded as {name}",
                dir.join(MANIFEST_FILE).display(),
                packed.manifest.name
            ),
        );
        return Ok(report_invalid_bundle(ctx, &[e]));
    }
    if ctx.text() {
        eprintln!(
            "Packed {}: {} in {} entries, a {} bundle.",
            dir.display(),
            HumanBytes(packed.content_bytes),
            packed.files,
            HumanBytes(packed.size)
        );
    }

    // 2. A new version and where to upload its bundle.
    let mut authed = ctx.signed_in()?;
    let body = sdk::CreateVersion {
        size: packed.size,
        sha256: packed.sha256.clone(),
        create_template: true,
        description: description.unwrap_or_default().to_string(),
    };
    let ticket = authed
        .call(async |c| c.create_version(&ws, name, &body).await)
        .await
        .with_context(|| format!("creating a new version of {name} in {ws}"))?;
    let version = ticket.version.version.clone();

    // 3. The bundle to storage.
    put_bundle(ctx, &ticket, packed.bytes)
        .await
        .with_context(|| format!("uploading the bundle of {name} v{version}"))?;

    // 4. Confirm: the server checks the bundle and queues its build.
    let confirmed = authed
        .call(async |c| c.confirm_version(&ws, name, &version).await)
        .await
        .with_context(|| format!("confirming {name} v{version}"))?;
    if ctx.text() {
        println!(
            "Uploaded {name} v{version} ({}, sha256 {}); build #{} {}.",
            HumanBytes(packed.size),
            short_hash(&packed.sha256),
            confirmed.build.attempt,
            confirmed.build.status
        );
    }
    if !follow {
        if !ctx.text() {
            output::json(&confirmed)?;
        } else {
            println!("Follow the build with `flare template logs {name} {version} -f`.");
        }
        return Ok(Exit::Ok);
    }

    let log = show_log(ctx, &mut authed, &ws, &confirmed.build.id, true).await?;
    if !ctx.text() {
        // The version as it is now (built: with its image), and the build as it ended.
        let now = authed
            .call(async |c| c.template_version(&ws, name, &version).await)
            .await
            .unwrap_or(confirmed.version);
        output::json(&sdk::ConfirmedVersion { version: now, build: log.build.clone() })?;
    }
    Ok(exit_for(ctx, &log.build))
}

/// `PUT`s the bundle to the presigned URL with exactly the headers the server gave (plus
/// `Content-Length` if they lack it), streamed through a progress bar. The URL carries a
/// signature: it is never printed, also not in errors.
async fn put_bundle(ctx: &Ctx, ticket: &sdk::UploadTicket, bytes: Vec<u8>) -> anyhow::Result<()> {
    use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};

    let bad_ticket = |what: &str| {
        Failure::error(format!("the server's upload instructions are not usable: {what}"))
            .hint("check that flare and the server are the same version (`flare version`)")
    };
    let method = reqwest::Method::from_bytes(ticket.method.as_bytes())
        .map_err(|_| bad_ticket(&format!("method {:?}", ticket.method)))?;
    let url = reqwest::Url::parse(&ticket.upload_url).map_err(|_| bad_ticket("the URL"))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "the storage host".into(),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &ticket.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad_ticket(&format!("header {k}")))?;
        let value = HeaderValue::from_str(v).map_err(|_| bad_ticket(&format!("header {k}")))?;
        headers.append(name, value);
    }
    let total = bytes.len();
    if !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
    }

    let bar = if show_progress(ctx) {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "Uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let data = Arc::new(bytes);
    let moved = bar.clone();
    let chunks = futures::stream::iter(0..total.div_ceil(UPLOAD_CHUNK)).map(move |i| {
        let start = i * UPLOAD_CHUNK;
        let chunk = data.get(start..total.min(start + UPLOAD_CHUNK)).unwrap_or_default().to_vec();
        moved.inc(chunk.len() as u64);
        Ok::<_, std::io::Error>(chunk)
    });

    let http = reqwest::Client::builder()
        .user_agent(concat!("flare/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(UPLOAD_CONNECT_TIMEOUT)
        .build()
        .map_err(|e| Failure::error(format!("cannot make an HTTP client: {}", e.without_url())))?;
    let sent = http
        .request(method, url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    bar.finish_and_clear();
    let resp = sent.map_err(|e| {
        Failure::new(
            Exit::Unreachable,
            "storage_unreachable",
            format!("could not upload the bundle to storage at {host}: {}", root_cause(e)),
        )
        .hint(format!(
            "check that {host} (the server's storage endpoint for uploads) can be reached from \
             this computer, then run the upload again"
        ))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    let excerpt: String = body.trim().chars().take(STORAGE_BODY_EXCERPT).collect();
    Err(Failure::new(
        Exit::Error,
        "upload_refused",
        format!(
            "storage refused the upload: {status}{}",
            if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") }
        ),
    )
    .hint(format!(
        "the upload URL was valid until {}; run the upload again for a new one, and if storage \
         keeps refusing, the server's storage settings need checking",
        output::date_time(ticket.expires_at)
    ))
    .into())
}

/// The innermost cause of a request error, without the URL (which carries a signature).
fn root_cause(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut cause: &(dyn std::error::Error + 'static) = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    fn build(status: &str) -> TemplateBuild {
        TemplateBuild {
            id: "b1".into(),
            template: "go".into(),
            version: "3".into(),
            attempt: 2,
            status: status.into(),
            workflow_id: "template-build-b1".into(),
            requested_by: None,
            image_ref: None,
            image_digest: None,
            error: None,
            created_at: 0,
            updated_at: 0,
            started_at: Some(1_000),
            finished_at: Some(73_000),
        }
    }

    fn page(status: &str, text: &str, next: u64, done: bool) -> BuildLog {
        BuildLog { build: build(status), text: text.into(), next, done }
    }

    fn version(v: &str, latest_build: Option<TemplateBuild>) -> TemplateVersion {
        TemplateVersion {
            id: format!("v{v}"),
            template: "go".into(),
            version: v.into(),
            status: "built".into(),
            bundle_size: Some(2048),
            bundle_sha256: Some("ab".repeat(32)),
            manifest: None,
            image_ref: None,
            image_digest: None,
            created_by: None,
            created_at: 0,
            updated_at: 0,
            latest_build,
        }
    }

    fn detail(latest: Option<TemplateVersion>) -> TemplateDetail {
        TemplateDetail {
            id: "t1".into(),
            name: "go".into(),
            description: String::new(),
            active_version: None,
            latest_version: latest,
            latest_built_version: None,
            versions: 0,
            created_at: 0,
            updated_at: 0,
            archived_at: None,
        }
    }

    /// Runs `read_log` over a fixed sequence of pages; returns the result, the `from` of each
    /// request, the waits between them and the text handed out.
    fn run(pages: Vec<BuildLog>, follow: bool) -> (BuildLog, Vec<u64>, Vec<Duration>, String) {
        let pages = RefCell::new(VecDeque::from(pages));
        let froms = RefCell::new(Vec::new());
        let waits = RefCell::new(Vec::new());
        let mut printed = String::new();
        let log = futures::executor::block_on(read_log(
            async |from| {
                froms.borrow_mut().push(from);
                pages
                    .borrow_mut()
                    .pop_front()
                    .ok_or_else(|| anyhow::anyhow!("asked once too often"))
            },
            async |d| waits.borrow_mut().push(d),
            0,
            follow,
            |t| printed.push_str(t),
        ))
        .unwrap();
        (log, froms.into_inner(), waits.into_inner(), printed)
    }

    #[test]
    fn following_polls_every_second_from_next_until_done() {
        let (log, froms, waits, printed) = run(
            vec![
                page("queued", "", 0, false),
                page("building", "step 1\n", 1, false),
                page("building", "", 1, false),
                page("succeeded", "step 2\n", 2, true),
            ],
            true,
        );
        assert_eq!(froms, [0, 0, 1, 1]);
        assert_eq!(waits, [POLL_INTERVAL; 3]);
        assert_eq!(printed, "step 1\nstep 2\n");
        assert_eq!((log.text.as_str(), log.next, log.done), ("step 1\nstep 2\n", 2, true));
        assert_eq!(log.build.status, "succeeded");
    }

    #[test]
    fn a_finished_builds_remaining_pages_are_read_without_waiting() {
        let (log, froms, waits, _) =
            run(vec![page("failed", "a", 10, false), page("failed", "b", 12, true)], true);
        assert_eq!(froms, [0, 10]);
        assert!(waits.is_empty(), "{waits:?}");
        assert_eq!(log.text, "ab");
    }

    #[test]
    fn a_final_build_whose_log_never_says_done_is_given_up_on() {
        // `run` fails when asked for more pages than it has.
        let pages = (0..MAX_IDLE_FINAL_POLLS).map(|_| page("failed", "", 0, false)).collect();
        let (log, froms, _, _) = run(pages, true);
        assert_eq!(froms.len() as u32, MAX_IDLE_FINAL_POLLS);
        assert_eq!(log.build.status, "failed");
    }

    #[test]
    fn without_follow_only_what_is_there_is_read() {
        let (log, froms, waits, _) = run(
            vec![
                page("building", "one\n", 3, false),
                page("building", "two\n", 5, false),
                page("building", "", 5, false),
            ],
            false,
        );
        assert_eq!(froms, [0, 3, 5]);
        assert!(waits.is_empty());
        assert_eq!((log.text.as_str(), log.done), ("one\ntwo\n", false));

        let (_, froms, _, _) = run(vec![page("succeeded", "all", 4, true)], false);
        assert_eq!(froms, [0]);
    }

    #[test]
    fn versions_are_numbers_with_or_without_a_v() {
        assert_eq!(normalize_version("v3"), "3");
        assert_eq!(normalize_version(" 12 "), "12");
        assert_eq!(normalize_version("V2"), "2");
    }

    #[test]
    fn the_default_version_is_the_newest_and_its_newest_build_is_acted_on() {
        let t = detail(Some(version("4", Some(build("failed")))));
        assert_eq!(newest_version(&t).unwrap(), "4");
        let f = newest_version(&detail(None)).unwrap_err();
        assert_eq!(f.exit, Exit::NotFound);
        assert!(f.hint.unwrap().contains("flare template upload go DIR"));

        assert_eq!(latest_build(&version("4", Some(build("failed")))).unwrap().id, "b1");
        let f = latest_build(&version("4", None)).unwrap_err();
        assert!(f.message.contains("go v4 has no build"), "{}", f.message);
    }

    #[test]
    fn only_a_successful_build_exits_0() {
        assert!(build_failure(&build("succeeded")).is_none());
        let mut failed = build("failed");
        failed.error = Some("Dockerfile step 3: exit code 1".into());
        let f = build_failure(&failed).unwrap();
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "build_failed"));
        assert!(f.message.ends_with("failed: Dockerfile step 3: exit code 1"), "{}", f.message);
        assert!(f.hint.unwrap().contains("flare template retry go 3"));
        assert_eq!(build_failure(&build("cancelled")).unwrap().exit, Exit::Error);
    }

    #[test]
    fn the_status_line_says_how_the_build_ended() {
        let mut ok = build("succeeded");
        ok.image_ref = Some("registry.local/acme/go:3".into());
        ok.image_digest = Some("sha256:abc".into());
        assert_eq!(
            status_line(&ok),
            "Build #2 of go v3 succeeded in 1m 12s: image registry.local/acme/go:3 (sha256:abc)."
        );
        assert_eq!(status_line(&build("cancelled")), "Build #2 of go v3 was cancelled.");
        let mut running = build("building");
        running.finished_at = None;
        assert_eq!(
            status_line(&running),
            "Build #2 of go v3 is building; `flare template logs go 3 -f` follows it."
        );
    }

    #[test]
    fn small_formats() {
        assert_eq!(duration(45_900), "45s");
        assert_eq!(duration(187_000), "3m 07s");
        assert_eq!(duration(3_720_000), "1h 02m");
        assert_eq!(cpus(1000), "1 CPU");
        assert_eq!(cpus(500), "0.5 CPU");
        assert_eq!(cpus(1250), "1.25 CPU");
        assert_eq!(short_hash(&"ab".repeat(32)), "abababababab");
        assert_eq!(short_hash("sha256:0123456789abcdef"), "sha256:0123456789ab");
    }

    #[test]
    fn template_list_table() {
        let t = |name: &str, active: Option<&str>, archived: bool| sdk::TemplateSummary {
            id: name.into(),
            name: name.into(),
            description: String::new(),
            active_version: active.map(Into::into),
            versions: 3,
            updated_at: 0,
            archived,
        };
        assert_eq!(
            template_table(&[t("go", Some("2"), false), t("old-python", None, true)]),
            "NAME        ACTIVE  VERSIONS  UPDATED     ARCHIVED\n\
             go          v2      3         1970-01-01\n\
             old-python  -       3         1970-01-01  yes"
        );
    }

    #[test]
    fn version_and_build_tables() {
        let v = version("3", Some(build("succeeded")));
        let table = version_table(&[v]);
        let row = table.lines().nth(1).unwrap();
        assert!(
            row.starts_with("3        built   2.00 KiB  abababababab  #2 succeeded  -"),
            "{row}"
        );

        let mut b = build("failed");
        b.error = Some("base image not found\nmore".into());
        let table = build_table(&[b]);
        assert_eq!(
            table.lines().nth(1).unwrap(),
            "b1  3        #2       failed  1970-01-01 00:00 UTC  1m 12s    base image not found"
        );
    }

    #[test]
    fn fields_align_and_continue_multi_line_values() {
        let out =
            fields("  ", &[("env", "A=1\nB=(secret)".into()), ("idle timeout", "30 min".into())]);
        assert_eq!(out, "  env           A=1\n                B=(secret)\n  idle timeout  30 min");
    }
}
