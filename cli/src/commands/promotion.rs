//! `flare template promote|demote|rollback|approve|promotions|catalog|policy`: which built version
//! of a template new sessions get (the runtime catalog, docs/catalog.md) and the runs of the
//! server's `TemplatePromotion` workflow that change it.
//!
//! `promote`, `demote` and `rollback` start a run (the server answers 202 with it) and then follow
//! it, reading it every second, until it ends: `succeeded` exits 0; `failed`, `rolled_back` and
//! `cancelled` exit 1 with the reason and what stays active. A promotion that reaches
//! `awaiting_approval` is someone else's to approve: flare says who and stops waiting (exit 0),
//! unless `--wait-approval` asks it to wait on. Progress goes to stderr, for people only: a
//! spinner on a terminal, else one line per change; with `--output json` stdout holds one
//! `Promotion`, as it was when flare stopped following it.

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Subcommand;
use indicatif::ProgressBar;
use sdk::{
    CatalogEntryView, CatalogView, ClientError, PromoteRequest, Promotion, PromotionNode,
    PromotionPolicy, RollbackRequest, promotion_is_final,
};

use crate::commands::template::{
    dash, fields, no_template, normalize_version, not_found_as, spinner,
};
use crate::fail::{Exit, Failure};
use crate::output;
use crate::session::{Authed, Ctx};

/// How often a running promotion is read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Reads of a running promotion that may fail in a row (the server restarting, a proxy giving
/// up) before flare stops following it.
const MAX_POLL_ERRORS: u32 = 10;
/// Longest step or error shown in a `promotions` row, in characters.
const DETAIL_COLUMN: usize = 50;
/// Up to this many runtime hosts are named one by one in the progress; more are counted.
const NAMED_NODES: usize = 6;
const AWAITING: &str = "awaiting_approval";

const PROMOTE_LONG_ABOUT: &str = "\
Make a built version of template NAME (default: its newest built version) the one new sessions
get. The server runs a promotion: a canary container of the version must start and pass the
template's smoke command; when the workspace's policy requires it (`flare template policy`), an
owner or admin other than you must approve it (`flare template approve NAME`); then the catalog
changes and every runtime host pulls the image. When a host cannot, the version active before is
put back (rolled_back). Running sessions keep the version they were created with.

flare follows the promotion, reading it every second, and shows its step and each host's rollout
on stderr. It exits 0 when the promotion succeeded, 1 when it failed, was rolled back or was
cancelled (the version active before stays active; the error says why). When it awaits approval,
flare says who must approve it and exits 0; with --wait-approval it waits until the end. With
--no-wait it returns as soon as the promotion started. One promotion, demotion or rollback of a
template runs at a time: another one is refused (409) with the server's message.

  flare template promote go
  flare template promote go --version 3 --wait-approval
  flare template promote go --no-wait --output json";

const DEMOTE_LONG_ABOUT: &str = "\
Make the version that was active before the current one (PREVIOUS in `flare template catalog`)
the one new sessions of template NAME get again. No canary and no approval: the catalog changes
and the runtime hosts pull the image. flare follows it like `flare template promote`: exit 0 when
it succeeded, 1 when it failed or was rolled back (the current version then stays active).

  flare template demote go
  flare template demote go --no-wait";

const ROLLBACK_LONG_ABOUT: &str = "\
Make VERSION, any earlier built version of template NAME, the one new sessions get again: one
command to go back when a promotion turned out bad. No canary and no approval: the catalog changes
and the runtime hosts pull the image. flare follows it like `flare template promote`: exit 0 when
it succeeded, 1 when it failed or was rolled back (the current version then stays active).

  flare template rollback go 2
  flare template rollback go v2 --no-wait --output json";

const APPROVE_LONG_ABOUT: &str = "\
Approve the promotion of template NAME that awaits approval (with --promotion, that one), so that
it goes on: the catalog changes and the rollout starts. Only owners and admins of the workspace
may approve, and not a promotion they requested themselves. Exits 4 when no promotion of NAME
awaits approval; `flare template promotions NAME` shows where they are.

  flare template approve go
  flare template approve go --promotion 0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";

const PROMOTIONS_LONG_ABOUT: &str = "\
List the promotion, demotion and rollback runs of template NAME, newest first: ID, kind, the
version the run makes active, its status (running, awaiting_approval, succeeded, rolled_back,
failed, cancelled), its step or, for a run that did not succeed, why, who requested and who
approved it, and when it started (UTC).

  flare template promotions go
  flare template promotions go --output json";

const CATALOG_LONG_ABOUT: &str = "\
Show the workspace's runtime catalog: for each template, its active version (the one new sessions
get), the version active before it (what `flare template demote` goes back to), its image and when
the entry last changed (UTC), with the catalog's revision (revisions count the changes of the
whole installation). A template that is not listed offers no new sessions until a version of it
is promoted.

  flare template catalog
  flare template catalog --output json";

const POLICY_LONG_ABOUT: &str = "\
Show whether promotions in the workspace need approval, or change that with --require-approval or
--no-require-approval (owners and admins only). When they do, a promotion waits after its canary
until an owner or admin other than its requester runs `flare template approve NAME`, and is
cancelled when nobody does within the server's approval timeout. Demotions and rollbacks never
wait for approval.

  flare template policy
  flare template policy --require-approval";

/// The `flare template` commands about promotions, flattened into `TemplateCommand`.
#[derive(Subcommand)]
pub enum PromotionCommand {
    /// Make a built version the one new sessions get: canary, approval if required, rollout
    #[command(long_about = PROMOTE_LONG_ABOUT)]
    Promote {
        /// The template's name
        name: String,
        /// The version to promote, e.g. 3 [default: the newest built version]
        #[arg(long, value_name = "N")]
        version: Option<String>,
        /// Return as soon as the server has started the promotion
        #[arg(long)]
        no_wait: bool,
        /// Keep waiting while the promotion awaits approval, until it ends
        #[arg(long, conflicts_with = "no_wait")]
        wait_approval: bool,
    },
    /// Go back to the version that was active before the current one
    #[command(long_about = DEMOTE_LONG_ABOUT)]
    Demote {
        /// The template's name
        name: String,
        /// Return as soon as the server has started the demotion
        #[arg(long)]
        no_wait: bool,
    },
    /// Go back to any earlier built version (no canary, no approval)
    #[command(long_about = ROLLBACK_LONG_ABOUT)]
    Rollback {
        /// The template's name
        name: String,
        /// The built version to make active again, e.g. 2
        version: String,
        /// Return as soon as the server has started the rollback
        #[arg(long)]
        no_wait: bool,
    },
    /// Approve a promotion that awaits approval (owners and admins; not your own)
    #[command(long_about = APPROVE_LONG_ABOUT)]
    Approve {
        /// The template's name
        name: String,
        /// The promotion's ID, as `flare template promotions` shows it [default: the one that
        /// awaits approval]
        #[arg(long, value_name = "ID")]
        promotion: Option<String>,
    },
    /// List a template's promotions, demotions and rollbacks, newest first
    #[command(long_about = PROMOTIONS_LONG_ABOUT)]
    Promotions {
        /// The template's name
        name: String,
    },
    /// Show the workspace's runtime catalog: each template's active version and image
    #[command(long_about = CATALOG_LONG_ABOUT)]
    Catalog,
    /// Show or set whether promotions in the workspace need approval
    #[command(long_about = POLICY_LONG_ABOUT)]
    Policy {
        /// Promotions wait for an owner's or admin's approval after their canary
        #[arg(long, conflicts_with = "no_require_approval")]
        require_approval: bool,
        /// Promotions go on without approval
        #[arg(long)]
        no_require_approval: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: PromotionCommand) -> anyhow::Result<Exit> {
    match cmd {
        PromotionCommand::Promote { name, version, no_wait, wait_approval } => {
            let start = Start::Promote(version.as_deref().map(normalize_version));
            begin(ctx, &name, start, !no_wait, wait_approval).await
        }
        PromotionCommand::Demote { name, no_wait } => {
            begin(ctx, &name, Start::Demote, !no_wait, false).await
        }
        PromotionCommand::Rollback { name, version, no_wait } => {
            let start = Start::Rollback(normalize_version(&version));
            begin(ctx, &name, start, !no_wait, false).await
        }
        PromotionCommand::Approve { name, promotion } => {
            approve(ctx, &name, promotion.as_deref()).await.map(|()| Exit::Ok)
        }
        PromotionCommand::Promotions { name } => promotions(ctx, &name).await.map(|()| Exit::Ok),
        PromotionCommand::Catalog => catalog(ctx).await.map(|()| Exit::Ok),
        PromotionCommand::Policy { require_approval, no_require_approval } => {
            let set = match (require_approval, no_require_approval) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            policy(ctx, set).await.map(|()| Exit::Ok)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// words

/// `go v3` for a promotion, `go to v2` for a demotion or rollback.
fn target(p: &Promotion) -> String {
    match p.kind.as_str() {
        "promote" => format!("{} v{}", p.template, p.version),
        "archive" => p.template.clone(),
        _ => format!("{} to v{}", p.template, p.version),
    }
}

/// `promotion of go v3`, `rollback of go to v2`.
fn run_name(p: &Promotion) -> String {
    let noun = match p.kind.as_str() {
        "promote" => "promotion",
        "demote" => "demotion",
        "rollback" => "rollback",
        "archive" => "archive run",
        _ => "run",
    };
    format!("{noun} of {}", target(p))
}

/// The spinner's text, without the step: `Promoting go v3`.
fn doing(p: &Promotion) -> String {
    match p.kind.as_str() {
        "promote" => format!("Promoting {}", target(p)),
        "demote" => format!("Demoting {}", target(p)),
        "rollback" => format!("Rolling {} back to v{}", p.template, p.version),
        "archive" => format!("Archiving {}", target(p)),
        _ => format!("Changing the active version of {}", target(p)),
    }
}

/// How a run that succeeded is announced: `Promoted go v3`.
fn done(p: &Promotion) -> String {
    match p.kind.as_str() {
        "promote" => format!("Promoted {}", target(p)),
        "demote" => format!("Demoted {}", target(p)),
        "rollback" => format!("Rolled {} back to v{}", p.template, p.version),
        "archive" => format!("Archived {}", target(p)),
        _ => format!("Made v{} of {} active", p.version, p.template),
    }
}

/// The command that approves a promotion of `name`, as someone else would type it.
fn approve_command(name: &str, ws: &str) -> String {
    format!("flare template approve {name} -w {ws}")
}

/// `node-a ready, node-b pending`; past [`NAMED_NODES`] hosts, `5 of 8 hosts ready, failed: x`.
fn nodes_text(nodes: &[PromotionNode]) -> String {
    if nodes.len() <= NAMED_NODES {
        return nodes
            .iter()
            .map(|n| format!("{} {}", n.node, n.state))
            .collect::<Vec<_>>()
            .join(", ");
    }
    let ready = nodes.iter().filter(|n| n.state == "ready").count();
    let mut out = format!("{ready} of {} hosts ready", nodes.len());
    let failed: Vec<&str> =
        nodes.iter().filter(|n| n.state == "failed").map(|n| n.node.as_str()).collect();
    if !failed.is_empty() {
        out.push_str(&format!(", failed: {}", failed.join(", ")));
    }
    out
}

/// Where a run that has not ended is: `Promoting go v3: canary`, `Promoting go v3: rolling out:
/// node-a ready, node-b pending`, or who must approve it.
fn progress_text(p: &Promotion, approve: &str) -> String {
    let doing = doing(p);
    if p.status == AWAITING {
        return format!(
            "{doing}: awaiting approval: an owner or admin other than you must run `{approve}`"
        );
    }
    let step = p
        .step
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| p.status.replace('_', " "));
    if p.nodes.is_empty() {
        return format!("{doing}: {step}");
    }
    let nodes = nodes_text(&p.nodes);
    if step.starts_with("rolling out") {
        format!("{doing}: rolling out: {nodes}")
    } else {
        format!("{doing}: {step} (rollout: {nodes})")
    }
}

fn user(u: &Option<sdk::UserRef>) -> Option<String> {
    u.as_ref().map(|u| u.display_name.clone())
}

/// The first `n` characters of one line of `s`, with `…` when cut.
fn truncate(s: &str, n: usize) -> String {
    let line = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    if line.chars().count() <= n {
        return line;
    }
    let mut out: String = line.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------------
// errors

fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

/// A read that may work when tried again: no connection, or a proxy or server that is restarting.
fn transient(e: &anyhow::Error) -> bool {
    match client_error(e) {
        Some(ClientError::Transport { .. }) => true,
        Some(other) => matches!(other.status(), Some(502..=504)),
        None => false,
    }
}

/// `e` as flare reports it, with `hint` instead of the usual one.
fn with_hint(ctx: &Ctx, e: &anyhow::Error, hint: String) -> anyhow::Error {
    crate::fail::classify(e, &ctx.profile).hint(hint).into()
}

/// Starting a run, refused. 409: not now, the server's message says why (a run of the template
/// goes on, the version is already active, not built, newer than the active one, no previous
/// version); 404: no such template; 400: not a version of it. Other errors stay as they are.
fn start_refusal(
    ctx: &Ctx,
    e: anyhow::Error,
    start: &Start,
    name: &str,
    ws: &str,
) -> anyhow::Error {
    let Some(ClientError::Api { status, error }) = client_error(&e) else { return e };
    let message = error.message.to_ascii_lowercase();
    let versions =
        format!("`flare template versions {name}` lists its versions and which are built");
    let catalog = format!(
        "`flare template catalog` shows the active and the previous version; `flare template \
         rollback {name} VERSION` goes back to any earlier built version"
    );
    let hint = match (status, start) {
        (404, _) => return not_found_as(e, || no_template(name, ws)),
        (409, _) if message.contains("awaiting approval") => format!(
            "one promotion, demotion or rollback of {name} runs at a time; an owner or admin \
             other than its requester lets the one awaiting approval go on with `flare template \
             approve {name}`, and `flare template promotions {name}` shows it"
        ),
        (409, _) if message.contains("run per template") || message.contains("running") => {
            format!(
                "one promotion, demotion or rollback of {name} runs at a time: `flare template \
                 promotions {name}` shows it; try again once it has ended"
            )
        }
        (409, _) if message.contains("already active") => catalog,
        (409 | 400 | 422, Start::Demote) => catalog,
        (409 | 400 | 422, _) => versions,
        _ => return e,
    };
    with_hint(ctx, &e, hint)
}

/// Following a run stopped before it ended: the server could not be read (`cause`) or Ctrl-C.
fn stopped_following(p: &Promotion, cause: Option<&ClientError>) -> Failure {
    let (exit, why) = match cause {
        Some(e @ ClientError::Transport { .. }) => (Exit::Unreachable, format!(" ({e})")),
        Some(e) => (Exit::Error, format!(" ({e})")),
        None => (Exit::Error, String::new()),
    };
    let step = p.step.as_deref().filter(|s| !s.is_empty()).unwrap_or(&p.status);
    Failure::new(
        exit,
        "wait_interrupted",
        format!(
            "stopped following {} {}{why}; it was at \"{step}\" and keeps going on the server",
            run_name(p),
            p.id
        ),
    )
    .hint(format!("`flare template promotions {}` shows how it ends", p.template))
}

// ---------------------------------------------------------------------------------------------
// following a run

/// Reads the run every [`POLL_INTERVAL`] until it has ended or, unless `wait_approval`, awaits
/// approval; hands each state on the way to `on_progress`. Up to [`MAX_POLL_ERRORS`] failed
/// reads in a row are tried again when they may work the next time.
async fn follow(
    mut fetch: impl AsyncFnMut() -> anyhow::Result<Promotion>,
    mut sleep: impl AsyncFnMut(Duration),
    first: Promotion,
    wait_approval: bool,
    mut on_progress: impl FnMut(&Promotion),
) -> anyhow::Result<Promotion> {
    let mut p = first;
    let mut errors = 0;
    loop {
        if promotion_is_final(&p.status) || (p.status == AWAITING && !wait_approval) {
            return Ok(p);
        }
        on_progress(&p);
        sleep(POLL_INTERVAL).await;
        match fetch().await {
            Ok(next) => {
                p = next;
                errors = 0;
            }
            Err(e) if transient(&e) && errors + 1 < MAX_POLL_ERRORS => errors += 1,
            Err(e) if transient(&e) => return Err(stopped_following(&p, client_error(&e)).into()),
            Err(e) => return Err(e.context(format!("reading {} {}", run_name(&p), p.id))),
        }
    }
}

/// Progress on stderr, for people: a spinner on a terminal, else one line per change; nothing
/// with `--output json`.
struct Progress {
    bar: ProgressBar,
    lines: bool,
    last: Option<String>,
}

impl Progress {
    fn new(ctx: &Ctx) -> Self {
        let lines = ctx.text() && !std::io::stderr().is_terminal();
        Self { bar: spinner(ctx, String::new()), lines, last: None }
    }

    fn show(&mut self, text: String) {
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        if self.lines {
            eprintln!("{text}");
        }
        self.bar.set_message(text.clone());
        self.last = Some(text);
    }

    fn done(self) {
        self.bar.finish_and_clear();
    }
}

/// What the catalog says about a template after a run: `None` when it could not be read,
/// `Some(None)` when the template has no entry.
type Entry = Option<Option<CatalogEntryView>>;

async fn catalog_entry(authed: &mut Authed<'_>, ws: &str, p: &Promotion) -> Entry {
    let view = authed.call(async |c| c.catalog(ws).await).await.ok()?;
    Some(view.entries.into_iter().find(|e| e.template_id == p.template_id))
}

// ---------------------------------------------------------------------------------------------
// promote, demote, rollback

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// The version, or the newest built one.
    Promote(Option<String>),
    Demote,
    Rollback(String),
}

async fn begin(
    ctx: &Ctx,
    name: &str,
    start: Start,
    wait: bool,
    wait_approval: bool,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let started = match &start {
        Start::Promote(version) => {
            let body = PromoteRequest { version: version.clone() };
            authed.call(async |c| c.promote_template(&ws, name, &body).await).await
        }
        Start::Demote => authed.call(async |c| c.demote_template(&ws, name).await).await,
        Start::Rollback(version) => {
            let body = RollbackRequest { version: version.clone() };
            authed.call(async |c| c.rollback_template(&ws, name, &body).await).await
        }
    };
    let first = started.map_err(|e| start_refusal(ctx, e, &start, name, &ws))?;
    if !wait {
        if !ctx.text() {
            output::json(&first)?;
        } else {
            println!("{}", started_text(&first));
        }
        return Ok(Exit::Ok);
    }

    let approve = approve_command(name, &ws);
    let mut progress = Progress::new(ctx);
    let id = first.id.clone();
    let mut seen = first.clone();
    let followed = {
        let following = follow(
            async || authed.call(async |c| c.promotion(&ws, &id).await).await,
            async |wait| tokio::time::sleep(wait).await,
            first,
            wait_approval,
            |p| {
                progress.show(progress_text(p, &approve));
                seen = p.clone();
            },
        );
        // Ctrl-C stops following; the run goes on on the server.
        tokio::select! {
            r = following => Some(r),
            Ok(()) = tokio::signal::ctrl_c() => None,
        }
    };
    progress.done();
    let p = match followed {
        Some(r) => r?,
        None => return Err(stopped_following(&seen, None).into()),
    };

    if p.status == "succeeded" {
        if !ctx.text() {
            output::json(&p)?;
        } else {
            let entry = catalog_entry(&mut authed, &ws, &p).await.flatten();
            println!("{}", succeeded_text(&p, entry.as_ref()));
        }
        return Ok(Exit::Ok);
    }
    if p.status == AWAITING {
        if !ctx.text() {
            output::json(&p)?;
        } else {
            println!("{}", awaiting_text(&p, &approve));
        }
        return Ok(Exit::Ok);
    }
    let entry = if promotion_is_final(&p.status) {
        catalog_entry(&mut authed, &ws, &p).await
    } else {
        None
    };
    if !ctx.text() {
        output::json(&p)?;
    } else {
        println!("{}", ended_text(&p));
    }
    Ok(match ended_failure(&p, &entry) {
        None => Exit::Ok,
        Some(f) => {
            eprintln!("error: {}", f.message);
            if let Some(h) = &f.hint {
                eprintln!("hint: {h}");
            }
            f.exit
        }
    })
}

/// `--no-wait`: the run the server started.
fn started_text(p: &Promotion) -> String {
    let step = p.step.as_deref().filter(|s| !s.is_empty()).unwrap_or(&p.status);
    let mut out = format!("Started the {} (promotion {}, {step}).", run_name(p), p.id);
    out.push_str(&format!("\n`flare template promotions {}` shows how it goes.", p.template));
    out
}

fn succeeded_text(p: &Promotion, entry: Option<&CatalogEntryView>) -> String {
    // The catalog as it is now: about this run only while it still has this version active.
    let entry = entry.filter(|e| e.version_id == p.version_id);
    let head = format!(
        "{}: new sessions of {} get v{}; running sessions keep theirs.",
        done(p),
        p.template,
        p.version
    );
    let mut version = format!("v{}", p.version);
    if let Some(prev) = entry.and_then(|e| e.previous_version.as_ref()) {
        version.push_str(&format!(" (previous: v{prev})"));
    }
    let mut rows = vec![("promotion", p.id.clone()), ("version", version)];
    if let Some(image) = p.image_ref.clone().or_else(|| entry.map(|e| e.image_ref.clone())) {
        rows.push(("image", image));
    }
    if let Some(e) = entry {
        rows.push(("catalog", format!("revision {}", e.revision)));
    }
    let nodes = if p.nodes.is_empty() { "none live".to_string() } else { nodes_text(&p.nodes) };
    rows.push(("nodes", nodes));
    format!("{head}\n{}", fields("  ", &rows))
}

fn awaiting_text(p: &Promotion, approve: &str) -> String {
    format!(
        "The {} (promotion {}) awaits approval: an owner or admin of the workspace other than \
         you must run\n  {approve}\nThe catalog does not change until then; `flare template \
         promotions {}` shows whether it went on.",
        run_name(p),
        p.id,
        p.template
    )
}

/// A run that ended without succeeding (or, in theory, has not ended), on stdout.
fn ended_text(p: &Promotion) -> String {
    let run = run_name(p);
    let head = match p.status.as_str() {
        "failed" => format!("The {run} failed."),
        "rolled_back" => format!("The {run} was rolled back."),
        "cancelled" => format!("The {run} was cancelled."),
        other => format!("The {run} is {}.", other.replace('_', " ")),
    };
    let mut rows = vec![("promotion", p.id.clone()), ("status", p.status.clone())];
    if let Some(step) = p.step.clone().filter(|s| !s.is_empty()) {
        rows.push(("step", step));
    }
    if let Some(e) = p.error.clone().filter(|e| !e.is_empty()) {
        rows.push(("error", e));
    }
    if !p.nodes.is_empty() {
        rows.push(("nodes", nodes_text(&p.nodes)));
    }
    format!("{head}\n{}", fields("  ", &rows))
}

/// The failure a run that ended badly exits with: the reason, and which version new sessions
/// get now (read from the catalog when it could be).
fn ended_failure(p: &Promotion, entry: &Entry) -> Option<Failure> {
    let name = &p.template;
    let (code, what, active) = match p.status.as_str() {
        "succeeded" | "running" | AWAITING => return None,
        "rolled_back" => ("promotion_rolled_back", "was rolled back", "is active again"),
        "cancelled" => ("promotion_cancelled", "was cancelled", "stays active"),
        "failed" => ("promotion_failed", "failed", "stays active"),
        _ => ("promotion_failed", "ended", "stays active"),
    };
    let reason = p.error.as_deref().filter(|e| !e.is_empty()).map(|e| format!(": {e}"));
    let message = format!("the {} {what}{}", run_name(p), reason.unwrap_or_default());
    let now = match entry {
        Some(Some(e)) if e.version_id != p.version_id => {
            format!("the previous version v{} {active}", e.version)
        }
        Some(Some(e)) => format!("v{} is active", e.version),
        Some(None) => format!("no version of {name} is active, as before"),
        None => format!("the previous version {active}"),
    };
    let mut hint = format!("{now}; see `flare template promotions {name}`");
    if p.status == "cancelled" && p.kind == "promote" {
        hint.push_str(&format!(
            "; nobody approved it in time: `flare template promote {name} --version {}` asks again",
            p.version
        ));
    }
    Some(Failure::new(Exit::Error, code, message).hint(hint))
}

// ---------------------------------------------------------------------------------------------
// approve

/// The newest promotion in `list` that awaits approval.
fn awaiting(list: &[Promotion], name: &str, ws: &str) -> Result<Promotion, Failure> {
    list.iter().find(|p| p.status == AWAITING).cloned().ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            "nothing_to_approve",
            format!("no promotion of template {name} in workspace {ws} awaits approval"),
        )
        .hint(format!("`flare template promotions {name}` shows its promotions and where they are"))
    })
}

pub async fn approve(ctx: &Ctx, name: &str, id: Option<&str>) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let promotions_hint = format!("`flare template promotions {name}` lists its promotions");
    let target = match id {
        Some(id) => {
            let p = authed.call(async |c| c.promotion(&ws, id).await).await.map_err(|e| {
                not_found_as(e, || {
                    Failure::not_found(format!("there is no promotion {id} in workspace {ws}"))
                        .hint(promotions_hint.clone())
                })
            })?;
            if p.template != name {
                return Err(Failure::usage(format!(
                    "promotion {id} is a {} of template {}, not of {name}",
                    p.kind, p.template
                ))
                .hint(promotions_hint)
                .into());
            }
            if p.status != AWAITING {
                return Err(Failure::new(
                    Exit::Error,
                    "not_awaiting_approval",
                    format!(
                        "the {} (promotion {id}) is {}, not awaiting approval",
                        run_name(&p),
                        p.status
                    ),
                )
                .hint(promotions_hint)
                .into());
            }
            p
        }
        None => {
            let list = authed
                .call(async |c| c.promotions(&ws, name).await)
                .await
                .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
            awaiting(&list, name, &ws)?
        }
    };
    let p =
        authed.call(async |c| c.approve_promotion(&ws, &target.id).await).await.map_err(|e| {
            match client_error(&e).and_then(ClientError::status) {
                Some(403) => with_hint(
                    ctx,
                    &e,
                    format!(
                        "only an owner or admin of {ws} other than the one who requested it can \
                         approve a promotion; ask another one to run `{}`",
                        approve_command(name, &ws)
                    ),
                ),
                Some(400 | 409 | 422) => with_hint(ctx, &e, promotions_hint.clone()),
                _ => e,
            }
        })?;
    if !ctx.text() {
        return output::json(&p);
    }
    println!("{}", approved_text(&p));
    Ok(())
}

fn approved_text(p: &Promotion) -> String {
    let by = user(&p.requested_by).map(|u| format!(", requested by {u}")).unwrap_or_default();
    let next = match p.status.as_str() {
        AWAITING | "running" => "it goes on: the catalog changes, then the rollout".to_string(),
        other => format!("it is {}", other.replace('_', " ")),
    };
    format!(
        "Approved the {} (promotion {}{by}): {next}.\n`flare template promotions {}` shows how it \
         ends.",
        run_name(p),
        p.id,
        p.template
    )
}

// ---------------------------------------------------------------------------------------------
// promotions, catalog, policy

pub async fn promotions(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.promotions(&ws, name).await)
        .await
        .map_err(|e| not_found_as(e, || no_template(name, &ws)))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!(
            "Template {name} has no promotions yet; `flare template promote {name}` promotes its \
             newest built version."
        );
        return Ok(());
    }
    println!("{}", promotion_table(&list));
    Ok(())
}

/// The step of a run that goes on or succeeded; the error of one that did not.
fn detail(p: &Promotion) -> Option<String> {
    let error = p.error.clone().filter(|e| !e.is_empty());
    let step = p.step.clone().filter(|s| !s.is_empty());
    let d = if p.status == "succeeded" { step.or(error) } else { error.or(step) };
    d.map(|d| truncate(&d, DETAIL_COLUMN))
}

fn promotion_table(list: &[Promotion]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.kind.clone(),
                format!("v{}", p.version),
                p.status.clone(),
                dash(detail(p)),
                dash(user(&p.requested_by)),
                dash(user(&p.approved_by)),
                output::date_time(p.created_at),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "KIND",
            "VERSION",
            "STATUS",
            "STEP/ERROR",
            "REQUESTED BY",
            "APPROVED BY",
            "STARTED",
        ],
        &rows,
    )
}

pub async fn catalog(ctx: &Ctx) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let view = authed.call(async |c| c.catalog(&ws).await).await?;
    if !ctx.text() {
        return output::json(&view);
    }
    println!("{}", catalog_text(&view, &ws));
    Ok(())
}

fn catalog_text(view: &CatalogView, ws: &str) -> String {
    if view.revision == 0 {
        return "The catalog has no revision yet: no template has been promoted. `flare template \
                promote NAME` promotes one."
            .into();
    }
    let head =
        format!("Catalog revision {} ({}).", view.revision, output::date_time(view.generated_at));
    if view.entries.is_empty() {
        return format!(
            "{head}\nNo template of {ws} is in it: none offers new sessions. `flare template \
             promote NAME` promotes one."
        );
    }
    let rows: Vec<Vec<String>> = view
        .entries
        .iter()
        .map(|e| {
            let name =
                if e.archived { format!("{} (archived)", e.template) } else { e.template.clone() };
            vec![
                name,
                format!("v{}", e.version),
                dash(e.previous_version.as_ref().map(|v| format!("v{v}"))),
                e.image_ref.clone(),
                output::date_time(e.updated_at),
            ]
        })
        .collect();
    let table = output::table(&["TEMPLATE", "ACTIVE", "PREVIOUS", "IMAGE", "UPDATED"], &rows);
    format!("{head}\n{table}")
}

pub async fn policy(ctx: &Ctx, set: Option<bool>) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let policy = match set {
        None => authed.call(async |c| c.promotion_policy(&ws).await).await?,
        Some(requires_approval) => {
            let body = PromotionPolicy { requires_approval, approval_timeout_secs: 0 };
            authed.call(async |c| c.set_promotion_policy(&ws, &body).await).await.map_err(|e| {
                match client_error(&e).and_then(ClientError::status) {
                    Some(403) => with_hint(
                        ctx,
                        &e,
                        format!(
                            "only owners and admins of {ws} can change its promotion policy; \
                             `flare workspace members` shows who they are"
                        ),
                    ),
                    _ => e,
                }
            })?
        }
    };
    if !ctx.text() {
        return output::json(&policy);
    }
    println!("{}", policy_text(&policy, &ws, set.is_some()));
    Ok(())
}

fn policy_text(p: &PromotionPolicy, ws: &str, changed: bool) -> String {
    let now = if changed { " now" } else { "" };
    if !p.requires_approval {
        return format!(
            "Promotions in {ws}{now} need no approval: a promotion changes the catalog as soon as \
             its canary passed."
        );
    }
    let timeout = match p.approval_timeout_secs {
        0 => String::new(),
        secs => format!(
            "; without approval within {} it is cancelled",
            output::span(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
        ),
    };
    format!(
        "Promotions in {ws}{now} need approval: after its canary, a promotion waits until an \
         owner or admin other than its requester runs `flare template approve NAME`{timeout}."
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    const ID: &str = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";

    fn node(name: &str, state: &str) -> PromotionNode {
        PromotionNode { node: name.into(), state: state.into() }
    }

    fn promotion(status: &str, step: Option<&str>, nodes: Vec<PromotionNode>) -> Promotion {
        Promotion {
            id: ID.into(),
            template: "go".into(),
            template_id: "t1".into(),
            kind: "promote".into(),
            version: "3".into(),
            version_id: "v3".into(),
            image_ref: Some("registry.local/acme/go:3".into()),
            status: status.into(),
            step: step.map(Into::into),
            error: None,
            nodes,
            workflow_id: "promote-t1".into(),
            requested_by: Some(sdk::UserRef { id: "u1".into(), display_name: "Alice".into() }),
            approved_by: None,
            approved_at: None,
            created_at: 90_000,
            updated_at: 90_000,
            finished_at: None,
        }
    }

    fn entry(version: &str, previous: Option<&str>) -> CatalogEntryView {
        CatalogEntryView {
            template: "go".into(),
            template_id: "t1".into(),
            version: version.into(),
            version_id: format!("v{version}"),
            image_ref: format!("registry.local/acme/go:{version}"),
            previous_version: previous.map(Into::into),
            revision: 7,
            updated_at: 90_000,
            cpu_millis: 1000,
            memory_mb: 1024,
            archived: false,
        }
    }

    fn transport() -> anyhow::Error {
        ClientError::Transport { url: "u".into(), cause: "connection reset".into() }.into()
    }

    /// Runs `follow` over a fixed sequence of answers; returns the result, the progress handed
    /// out and the waits.
    fn run(
        first: Promotion,
        answers: Vec<anyhow::Result<Promotion>>,
        wait_approval: bool,
    ) -> (anyhow::Result<Promotion>, Vec<String>, Vec<Duration>) {
        let answers = RefCell::new(VecDeque::from(answers));
        let waits = RefCell::new(Vec::new());
        let mut shown = Vec::new();
        let r = futures::executor::block_on(follow(
            async || {
                answers.borrow_mut().pop_front().unwrap_or_else(|| panic!("asked once too often"))
            },
            async |d| waits.borrow_mut().push(d),
            first,
            wait_approval,
            |p| shown.push(progress_text(p, "flare template approve go -w acme")),
        ));
        (r, shown, waits.into_inner())
    }

    #[test]
    fn following_reads_every_second_until_the_run_ends() {
        let (r, shown, waits) = run(
            promotion("running", Some("canary"), vec![]),
            vec![
                Ok(promotion(
                    "running",
                    Some("rolling out"),
                    vec![node("node-a", "ready"), node("node-b", "pending")],
                )),
                Ok(promotion("succeeded", Some("done"), vec![node("node-a", "ready")])),
            ],
            false,
        );
        assert_eq!(r.unwrap().status, "succeeded");
        assert_eq!(waits, [POLL_INTERVAL; 2]);
        assert_eq!(
            shown,
            [
                "Promoting go v3: canary",
                "Promoting go v3: rolling out: node-a ready, node-b pending"
            ]
        );
    }

    #[test]
    fn awaiting_approval_ends_the_wait_unless_asked_to_wait_on() {
        let (r, shown, waits) = run(
            promotion("running", Some("canary"), vec![]),
            vec![Ok(promotion(AWAITING, Some("awaiting approval"), vec![]))],
            false,
        );
        assert_eq!(r.unwrap().status, AWAITING);
        assert_eq!((shown.len(), waits.len()), (1, 1));

        let (r, shown, _) = run(
            promotion("running", Some("canary"), vec![]),
            vec![
                Ok(promotion(AWAITING, Some("awaiting approval"), vec![])),
                Ok(promotion("cancelled", None, vec![])),
            ],
            true,
        );
        assert_eq!(r.unwrap().status, "cancelled");
        assert_eq!(
            shown[1],
            "Promoting go v3: awaiting approval: an owner or admin other than you must run \
             `flare template approve go -w acme`"
        );
    }

    #[test]
    fn reads_that_may_work_again_are_retried_a_few_times() {
        let (r, _, waits) = run(
            promotion("running", None, vec![]),
            vec![Err(transport()), Err(transport()), Ok(promotion("succeeded", None, vec![]))],
            false,
        );
        assert_eq!(r.unwrap().status, "succeeded");
        assert_eq!(waits.len(), 3);

        let answers = (0..MAX_POLL_ERRORS).map(|_| Err(transport())).collect();
        let (r, _, _) = run(promotion("running", Some("canary"), vec![]), answers, false);
        let f = crate::fail::classify(&r.unwrap_err(), "default");
        assert_eq!((f.exit, f.code.as_str()), (Exit::Unreachable, "wait_interrupted"));
        assert!(
            f.message.starts_with(&format!("stopped following promotion of go v3 {ID} (")),
            "{}",
            f.message
        );
        assert!(f.message.ends_with("it was at \"canary\" and keeps going on the server"));
        assert_eq!(f.hint.as_deref(), Some("`flare template promotions go` shows how it ends"));

        // Anything else ends it at once.
        let forbidden = ClientError::Api {
            status: 403,
            error: sdk::ApiError::new(sdk::ErrorCode::Forbidden, "no"),
        };
        let (r, _, _) = run(promotion("running", None, vec![]), vec![Err(forbidden.into())], false);
        assert!(r.is_err());
    }

    #[test]
    fn progress_names_the_step_and_each_hosts_rollout() {
        let p = promotion("running", None, vec![]);
        assert_eq!(progress_text(&p, ""), "Promoting go v3: running");
        let p = promotion("running", Some("rolling back"), vec![node("a", "failed")]);
        assert_eq!(progress_text(&p, ""), "Promoting go v3: rolling back (rollout: a failed)");
        let many: Vec<_> = (0..8)
            .map(|i| {
                node(
                    &format!("n{i}"),
                    if i < 5 {
                        "ready"
                    } else if i == 7 {
                        "failed"
                    } else {
                        "pending"
                    },
                )
            })
            .collect();
        assert_eq!(nodes_text(&many), "5 of 8 hosts ready, failed: n7");
        let mut r = promotion("running", Some("catalog"), vec![]);
        r.kind = "rollback".into();
        r.version = "2".into();
        assert_eq!(progress_text(&r, ""), "Rolling go back to v2: catalog");
        r.kind = "demote".into();
        assert_eq!(progress_text(&r, ""), "Demoting go to v2: catalog");
    }

    #[test]
    fn a_success_names_the_version_the_revision_and_the_hosts() {
        let p = promotion("succeeded", Some("done"), vec![node("node-a", "ready")]);
        assert_eq!(
            succeeded_text(&p, Some(&entry("3", Some("2")))),
            format!(
                "Promoted go v3: new sessions of go get v3; running sessions keep theirs.\n\
                 \x20 promotion  {ID}\n\
                 \x20 version    v3 (previous: v2)\n\
                 \x20 image      registry.local/acme/go:3\n\
                 \x20 catalog    revision 7\n\
                 \x20 nodes      node-a ready"
            )
        );
        // A catalog that moved on since says nothing about this run.
        let text = succeeded_text(&promotion("succeeded", None, vec![]), Some(&entry("4", None)));
        assert!(!text.contains("catalog") && text.ends_with("nodes      none live"), "{text}");
    }

    #[test]
    fn a_run_that_ended_badly_says_why_and_what_stays_active() {
        let mut p = promotion("rolled_back", Some("rolled back"), vec![node("node-b", "failed")]);
        p.error = Some("node-b could not pull the image".into());
        let f = ended_failure(&p, &Some(Some(entry("2", Some("1"))))).unwrap();
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "promotion_rolled_back"));
        assert_eq!(
            f.message,
            "the promotion of go v3 was rolled back: node-b could not pull the image"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some("the previous version v2 is active again; see `flare template promotions go`")
        );
        assert!(ended_text(&p).starts_with("The promotion of go v3 was rolled back.\n"));

        let mut failed = promotion("failed", Some("canary"), vec![]);
        failed.error = Some("smoke command exited 1".into());
        let f = ended_failure(&failed, &None).unwrap();
        assert_eq!(f.message, "the promotion of go v3 failed: smoke command exited 1");
        assert!(f.hint.unwrap().starts_with("the previous version stays active; see"));
        let f = ended_failure(&failed, &Some(None)).unwrap();
        assert!(f.hint.unwrap().starts_with("no version of go is active, as before"));

        let f = ended_failure(&promotion("cancelled", None, vec![]), &Some(Some(entry("2", None))))
            .unwrap();
        assert_eq!(f.code, "promotion_cancelled");
        assert!(f.hint.unwrap().ends_with("`flare template promote go --version 3` asks again"));

        assert!(ended_failure(&promotion("succeeded", None, vec![]), &None).is_none());
        assert!(ended_failure(&promotion(AWAITING, None, vec![]), &None).is_none());
    }

    #[test]
    fn approve_finds_the_newest_promotion_awaiting_approval() {
        let mut older = promotion(AWAITING, None, vec![]);
        older.id = "older".into();
        let list = [promotion("succeeded", None, vec![]), promotion(AWAITING, None, vec![]), older];
        assert_eq!(awaiting(&list, "go", "acme").unwrap().id, ID);
        let f = awaiting(&list[..1], "go", "acme").unwrap_err();
        assert_eq!((f.exit, f.code.as_str()), (Exit::NotFound, "nothing_to_approve"));
        assert_eq!(f.message, "no promotion of template go in workspace acme awaits approval");
    }

    #[test]
    fn the_promotion_table_shows_the_error_of_a_run_that_did_not_succeed() {
        let mut bad = promotion("failed", Some("canary"), vec![]);
        bad.kind = "rollback".into();
        bad.version = "2".into();
        bad.error = Some(format!("smoke command exited 1:\n{}", "x".repeat(60)));
        bad.approved_by = Some(sdk::UserRef { id: "u2".into(), display_name: "Bob".into() });
        let table = promotion_table(&[promotion("succeeded", Some("done"), vec![]), bad]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "ID                                    KIND      VERSION  STATUS     STEP/ERROR                                          REQUESTED BY  APPROVED BY  STARTED"
        );
        assert_eq!(
            lines[1],
            format!(
                "{ID}  promote   v3       succeeded  done                                                Alice         -            1970-01-01 00:01 UTC"
            )
        );
        assert!(
            lines[2].contains("  rollback  v2       failed     smoke command exited 1: xxx"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("…  Alice         Bob"), "{}", lines[2]);
    }

    #[test]
    fn the_catalog_shows_its_revision_and_each_active_version() {
        let mut old = entry("1", None);
        old.template = "old-python".into();
        old.archived = true;
        let view = CatalogView {
            revision: 7,
            generated_at: 90_000,
            entries: vec![entry("3", Some("2")), old],
        };
        assert_eq!(
            catalog_text(&view, "acme"),
            "Catalog revision 7 (1970-01-01 00:01 UTC).\n\
             TEMPLATE               ACTIVE  PREVIOUS  IMAGE                     UPDATED\n\
             go                     v3      v2        registry.local/acme/go:3  1970-01-01 00:01 UTC\n\
             old-python (archived)  v1      -         registry.local/acme/go:1  1970-01-01 00:01 UTC"
        );
        let empty = CatalogView { revision: 0, generated_at: 0, entries: vec![] };
        assert!(catalog_text(&empty, "acme").starts_with("The catalog has no revision yet"));
        let other = CatalogView { revision: 4, generated_at: 0, entries: vec![] };
        assert!(catalog_text(&other, "acme").contains("No template of acme is in it"));
    }

    #[test]
    fn the_policy_says_who_approves_and_for_how_long() {
        let on = PromotionPolicy { requires_approval: true, approval_timeout_secs: 86_400 };
        assert_eq!(
            policy_text(&on, "acme", false),
            "Promotions in acme need approval: after its canary, a promotion waits until an owner \
             or admin other than its requester runs `flare template approve NAME`; without \
             approval within 1d 0h it is cancelled."
        );
        let off = PromotionPolicy { requires_approval: false, approval_timeout_secs: 0 };
        assert!(
            policy_text(&off, "acme", true).starts_with("Promotions in acme now need no approval")
        );
    }
}
