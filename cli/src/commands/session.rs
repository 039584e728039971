//! `flare session`: create dev sessions from templates; list and show them; start, stop, sleep,
//! restart and delete them; read their history (`events`) and what their workflow is doing
//! (`why`).
//!
//! Changes are waited for by default: the server holds the request until the session reaches
//! the operation's end state (or fails), for up to about two minutes. When no answer comes (flare
//! gives up a little later, the connection breaks, or a proxy gives up), flare asks once more
//! for the session as it is now; `create` does that by sending the same request again without
//! waiting, which its idempotency key makes safe: a retried create never makes a second session.

use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sdk::{ClientError, CreateSession, SessionDetail, SessionEvent, SessionSummary, SessionWhy};

use crate::commands::template::{dash, fields, normalize_version, spinner};
use crate::fail::{Exit, Failure};
use crate::output;
use crate::session::Ctx;

/// The server waits up to about 2 minutes for a session to get where an operation takes it;
/// flare stops waiting for its answer a little later.
const WAIT_LIMIT: Duration = Duration::from_secs(150);
/// After a wait got no answer: how long the question "where is the session now?" may take.
const REASK_LIMIT: Duration = Duration::from_secs(20);
/// How often the spinner's state is read while waiting.
const SPINNER_POLL: Duration = Duration::from_secs(2);
/// How often `events -f` asks for new events once it has read everything.
const EVENTS_POLL: Duration = Duration::from_secs(2);
/// Without -f, at most this many pages of events are read.
const MAX_EVENT_PAGES: u32 = 1000;
/// The event after which a session has no more history: `events -f` stops there.
const DELETED_EVENT: &str = "state.deleted";

// ---------------------------------------------------------------------------------------------
// operations and what waiting for them means

/// Something that changes a session and can be waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Start,
    Stop,
    Sleep,
    Restart,
    Delete,
}

impl Op {
    /// The path segment of `POST …/sessions/{id}/{op}` (one of [`sdk::SESSION_OPS`]); `create`
    /// and `delete` have their own requests.
    fn path(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Sleep => "sleep",
            Self::Restart => "restart",
            Self::Delete => "delete",
        }
    }

    /// The state a waited-for operation ends in.
    fn target(self) -> &'static str {
        match self {
            Self::Create | Self::Start | Self::Restart => "running",
            Self::Stop => "stopped",
            Self::Sleep => "sleeping",
            Self::Delete => "deleted",
        }
    }

    /// What the session keeps doing on the server when flare stops waiting: "keeps starting".
    fn going(self) -> &'static str {
        match self {
            Self::Create | Self::Start => "starting",
            Self::Stop => "stopping",
            Self::Sleep => "going to sleep",
            Self::Restart => "restarting",
            Self::Delete => "being deleted",
        }
    }

    /// The spinner's text, without the state.
    fn doing(self, name: &str) -> String {
        match self {
            Self::Create | Self::Start => format!("Starting session {name}"),
            Self::Stop => format!("Stopping session {name}"),
            Self::Sleep => format!("Putting session {name} to sleep"),
            Self::Restart => format!("Restarting session {name}"),
            Self::Delete => format!("Deleting session {name}"),
        }
    }
}

/// How an answer about a changed session ends the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Exit 0: where the operation takes it (or, without waiting, accepted).
    Done,
    /// Exit 1: the session failed.
    Failed,
    /// Exit 1: waited for, and not there yet; it keeps going on the server.
    StillGoing,
}

fn outcome(op: Op, state: &str, waited: bool) -> Outcome {
    if !waited {
        // An operation that was not waited for is answered with the state it was accepted in,
        // which may still be `failed` for an operation that repairs a failed session; a new
        // session that is already `failed` did fail.
        return if op == Op::Create && state == "failed" { Outcome::Failed } else { Outcome::Done };
    }
    if state == op.target() {
        Outcome::Done
    } else if state == "failed" {
        Outcome::Failed
    } else {
        Outcome::StillGoing
    }
}

/// The failure an answer that did not end well exits with.
fn outcome_failure(op: Op, s: &SessionDetail, waited: bool) -> Option<Failure> {
    let name = &s.name;
    match outcome(op, &s.state, waited) {
        Outcome::Done => None,
        Outcome::Failed => {
            let message = match s.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => format!("session {name} failed: {e}"),
                None => format!("session {name} failed"),
            };
            Some(
                Failure::new(Exit::Error, "session_failed", message)
                    .hint(format!("`flare session why {name}` shows what went wrong")),
            )
        }
        Outcome::StillGoing => Some(still_going(op, s)),
    }
}

fn still_going(op: Op, s: &SessionDetail) -> Failure {
    let name = &s.name;
    Failure::new(
        Exit::Error,
        "wait_timeout",
        format!(
            "stopped waiting: session {name} is {} and keeps {} on the server",
            s.state,
            op.going()
        ),
    )
    .hint(format!(
        "`flare session show {name}` shows its state; `flare session events {name} -f` follows it"
    ))
}

/// The exit code of a command that changed a session. One that failed, or is not yet where
/// the command waited for it to be, says so on stderr; stdout has the session either way (with
/// JSON output, the one document; its `state` says how it ended).
fn finish(op: Op, s: &SessionDetail, waited: bool) -> Exit {
    match outcome_failure(op, s, waited) {
        None => Exit::Ok,
        Some(f) => {
            eprintln!("error: {}", f.message);
            if let Some(h) = &f.hint {
                eprintln!("hint: {h}");
            }
            f.exit
        }
    }
}

/// A waited-for request that ended without the server's answer: the connection broke while
/// it waited (or never came up), or a proxy in between gave up (502, 504).
fn lost_wait(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<ClientError>() {
        Some(ClientError::Transport { .. }) => true,
        Some(other) => matches!(other.status(), Some(502 | 504)),
        None => false,
    })
}

/// `fut`, or an error once `limit` has passed.
async fn limited<T>(
    limit: Duration,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", limit.as_secs()))?
}

/// Runs a waited-for `request` behind a spinner "LABEL (STATE)" (on stderr, for people only),
/// whose state is read again every 2 s when the session's name or ID is known. `Ok(None)`: no
/// answer within [`WAIT_LIMIT`].
async fn waiting<T>(
    ctx: &Ctx,
    ws: &str,
    label: &str,
    id: Option<&str>,
    state: Option<&str>,
    request: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    let message = |state: Option<&str>| match state {
        Some(s) => format!("{label} ({s})"),
        None => label.to_string(),
    };
    let bar = spinner(ctx, message(state));
    // The spinner's reads use their own client; they are only made when the spinner shows.
    let mut poller = match id {
        Some(_) if !bar.is_hidden() => ctx.signed_in().ok(),
        _ => None,
    };
    let request = tokio::time::timeout(WAIT_LIMIT, request);
    tokio::pin!(request);
    let answer = loop {
        let tick = async {
            tokio::time::sleep(SPINNER_POLL).await;
            match (poller.as_mut(), id) {
                (Some(p), Some(id)) => p.call(async |c| c.session(ws, id).await).await.ok(),
                _ => None,
            }
        };
        tokio::select! {
            answer = &mut request => break answer,
            now = tick => if let Some(s) = now {
                bar.set_message(message(Some(&s.state)));
            },
        }
    };
    bar.finish_and_clear();
    match answer {
        Ok(r) => r.map(Some),
        Err(_elapsed) => Ok(None),
    }
}

/// The answer to a waited-for request; when none came, the session as the server has it now,
/// read with `reask`. When that fails too: the request's own error, or `no_answer`.
async fn settle(
    first: anyhow::Result<Option<SessionDetail>>,
    reask: impl Future<Output = anyhow::Result<SessionDetail>>,
    no_answer: impl FnOnce() -> Failure,
) -> anyhow::Result<SessionDetail> {
    match first {
        Ok(Some(s)) => Ok(s),
        Ok(None) => limited(REASK_LIMIT, reask).await.map_err(|_| no_answer().into()),
        Err(e) if lost_wait(&e) => limited(REASK_LIMIT, reask).await.map_err(|_| e),
        Err(e) => Err(e),
    }
}

fn no_answer(op: Op, what: &str) -> Failure {
    Failure::new(
        Exit::Error,
        "wait_timeout",
        format!(
            "no answer from the server within {} s while waiting for {what}, nor when asked again",
            WAIT_LIMIT.as_secs()
        ),
    )
    .hint(format!(
        "it may keep {} on the server: `flare session list --all` shows the sessions, \
         `flare session show NAME` one of them",
        op.going()
    ))
}

// ---------------------------------------------------------------------------------------------
// errors

fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

fn no_session(id: &str, ws: &str) -> Failure {
    Failure::not_found(format!("there is no session {id} in workspace {ws}"))
        .hint("`flare session list --all` lists the workspace's sessions")
}

/// The server's answers about one session in words that name it: 404 (no such session), and 409
/// (the operation is not allowed in the session's current state; the server's message says
/// which state that is).
pub(crate) fn session_error(e: anyhow::Error, id: &str, ws: &str) -> anyhow::Error {
    match client_error(&e) {
        Some(c) if c.is_not_found() => no_session(id, ws).into(),
        Some(ClientError::Api { status: 409, error }) => {
            Failure::new(Exit::Error, "conflict", error.message.clone())
                .hint(format!("`flare session why {id}` shows what the session is doing"))
                .into()
        }
        _ => e,
    }
}

/// [`session_error`] for an operation; other errors say what was being done.
fn op_error(e: anyhow::Error, op: Op, id: &str, ws: &str) -> anyhow::Error {
    let e = session_error(e, id, ws);
    if e.is::<Failure>() {
        return e;
    }
    let doing = op.doing(id);
    let mut chars = doing.chars();
    let doing: String =
        chars.next().map(|c| c.to_ascii_lowercase()).into_iter().chain(chars).collect();
    e.context(format!("{doing} in {ws}"))
}

// ---------------------------------------------------------------------------------------------
// idempotency keys

/// A random UUID (version 4 layout, lowercase hex): the idempotency key of one `create`. Made
/// from the standard library's randomly keyed hasher (seeded by the OS) over a per-process
/// counter, the time and the process id, so two calls never give the same key.
pub fn idempotency_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.finish()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(1).to_be_bytes());
    bytes[8..].copy_from_slice(&half(2).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

// ---------------------------------------------------------------------------------------------
// create

pub async fn create(
    ctx: &Ctx,
    template: &str,
    version: Option<&str>,
    name: Option<&str>,
    wait: bool,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let version = version.map(normalize_version);
    let body = CreateSession {
        template: template.to_string(),
        version: version.clone(),
        name: name.map(str::to_string),
        // One key for every request of this invocation: a retry answers with the same session.
        idempotency_key: Some(idempotency_key()),
    };
    let of = match &version {
        Some(v) => format!("{template} v{v}"),
        None => template.to_string(),
    };
    let what = match name {
        Some(n) => format!("session {n}"),
        None => format!("a session of {of}"),
    };
    let mut authed = ctx.signed_in()?;
    let answer = if wait {
        let label = match name {
            Some(n) => Op::Create.doing(n),
            None => format!("Starting a session of {of}"),
        };
        let first = waiting(
            ctx,
            &ws,
            &label,
            name,
            Some("provisioning"),
            authed.call(async |c| c.create_session(&ws, &body, true).await),
        )
        .await;
        // The same body (and key) again, without waiting: the session the first request made.
        let reask = authed.call(async |c| c.create_session(&ws, &body, false).await);
        settle(first, reask, || no_answer(Op::Create, &what)).await
    } else {
        authed.call(async |c| c.create_session(&ws, &body, false).await).await
    };
    let s = answer.map_err(|e| match client_error(&e) {
        Some(c @ ClientError::Api { error, .. }) if c.is_not_found() => {
            Failure::not_found(format!("cannot create {what} in {ws}: {}", error.message))
                .hint(format!(
                    "`flare template list` shows the workspace's templates, `flare template \
                     versions {template}` the versions of {template}"
                ))
                .into()
        }
        _ => e.context(format!("creating {what} in {ws}")),
    })?;
    if !ctx.text() {
        output::json(&s)?;
    } else {
        println!("{}", created_text(&s, wait));
    }
    Ok(finish(Op::Create, &s, wait))
}

fn is_not_found(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<ClientError>().is_some_and(ClientError::is_not_found)
}

/// id, name, state, template and node.
fn summary_rows(s: &SessionDetail) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("id", s.id.clone()),
        ("name", s.name.clone()),
        ("state", s.state.clone()),
        ("template", format!("{} v{}", s.template, s.version)),
        ("node", dash(s.node.clone())),
    ];
    if let Some(e) = s.error.as_deref().filter(|e| !e.is_empty()) {
        rows.push(("error", e.to_string()));
    }
    rows
}

fn created_text(s: &SessionDetail, waited: bool) -> String {
    let name = &s.name;
    let outcome = outcome(Op::Create, &s.state, waited);
    let head = match outcome {
        Outcome::Done if waited => format!("Session {name} is running."),
        Outcome::Done => format!("Created session {name}; it is {} and starting.", s.state),
        Outcome::Failed => format!("Session {name} failed."),
        Outcome::StillGoing => format!("Session {name} is {}.", s.state),
    };
    let mut out = format!("{head}\n{}", fields("  ", &summary_rows(s)));
    match outcome {
        Outcome::Done if waited => out.push_str(&format!(
            "\nNext: `flare session show {name}` shows it, `flare session stop {name}` stops it."
        )),
        Outcome::Done => out.push_str(&format!(
            "\n`flare session show {name}` shows its state, `flare session events {name} -f` \
             follows its start."
        )),
        Outcome::Failed | Outcome::StillGoing => {}
    }
    out
}

// ---------------------------------------------------------------------------------------------
// list, show

pub async fn list(ctx: &Ctx, all: bool) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.sessions(&ws, all).await)
        .await
        .with_context(|| format!("listing the sessions of {ws}"))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        if all {
            println!("No sessions in {ws}; `flare session create --template NAME` starts one.");
        } else {
            println!(
                "No active sessions in {ws} (`--all` also lists stopped and failed ones); \
                 `flare session create --template NAME` starts one."
            );
        }
        return Ok(());
    }
    println!("{}", session_table(&list, output::now_ms()));
    Ok(())
}

fn session_table(list: &[SessionSummary], now: i64) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.clone(),
                s.template.clone(),
                s.owner.display_name.clone(),
                output::span(now - s.created_at),
                output::relative(s.updated_at, now),
            ]
        })
        .collect();
    output::table(&["NAME", "STATE", "TEMPLATE", "OWNER", "AGE", "UPDATED"], &rows)
}

pub async fn show(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let s = authed
        .call(async |c| c.session(&ws, id).await)
        .await
        .map_err(|e| session_error(e, id, &ws))?;
    if !ctx.text() {
        return output::json(&s);
    }
    println!("{}", detail_text(&s, &ws, output::now_ms()));
    Ok(())
}

/// `2025-03-01 14:05 UTC (2h 03m ago)`
fn when(ms: i64, now: i64) -> String {
    format!("{} ({})", output::date_time(ms), output::relative(ms, now))
}

fn detail_text(s: &SessionDetail, ws: &str, now: i64) -> String {
    let mut rows = vec![
        ("session", s.name.clone()),
        ("id", s.id.clone()),
        ("workspace", ws.to_string()),
        ("state", s.state.clone()),
        ("template", format!("{} v{}", s.template, s.version)),
        ("owner", s.owner.display_name.clone()),
        ("node", dash(s.node.clone())),
        ("created", when(s.created_at, now)),
    ];
    let optional =
        [("started", s.started_at), ("last active", s.last_active_at), ("stopped", s.stopped_at)];
    for (label, at) in optional {
        if let Some(at) = at {
            rows.push((label, when(at, now)));
        }
    }
    rows.push(("updated", when(s.updated_at, now)));
    if let Some(e) = s.error.as_deref().filter(|e| !e.is_empty()) {
        rows.push(("error", e.to_string()));
    }
    let mut out = fields("", &rows);
    if s.state == "failed" {
        out.push_str(&format!("\n\n`flare session why {}` shows what went wrong.", s.name));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// start, stop, sleep, restart, delete

/// `start`, `stop`, `sleep` or `restart` session `id`; with `wait`, until it gets where that
/// takes it.
pub async fn op(ctx: &Ctx, op: Op, id: &str, wait: bool) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let path = op.path();
    let mut authed = ctx.signed_in()?;
    let answer = if wait {
        let first = waiting(
            ctx,
            &ws,
            &op.doing(id),
            Some(id),
            None,
            authed.call(async |c| c.session_op(&ws, id, path, true).await),
        )
        .await;
        let reask = authed.call(async |c| c.session(&ws, id).await);
        settle(first, reask, || no_answer(op, &format!("session {id}"))).await
    } else {
        authed.call(async |c| c.session_op(&ws, id, path, false).await).await
    };
    let s = answer.map_err(|e| op_error(e, op, id, &ws))?;
    changed(ctx, op, &s, wait)
}

/// Prints a changed session and returns the exit code.
fn changed(ctx: &Ctx, op: Op, s: &SessionDetail, waited: bool) -> anyhow::Result<Exit> {
    if !ctx.text() {
        output::json(s)?;
    } else {
        println!("{}", changed_text(op, s, waited));
    }
    Ok(finish(op, s, waited))
}

fn changed_text(op: Op, s: &SessionDetail, waited: bool) -> String {
    let (name, state) = (&s.name, &s.state);
    match outcome(op, state, waited) {
        Outcome::Done if !waited => format!(
            "Asked session {name} to {}; it is {state}. `flare session show {name}` shows when it \
             is {}.",
            op.path(),
            op.target()
        ),
        Outcome::Done => match op {
            Op::Delete => format!("Deleted session {name}."),
            Op::Stop => {
                format!("Session {name} is stopped; `flare session start {name}` starts it again.")
            }
            Op::Sleep => {
                format!("Session {name} is sleeping; `flare session start {name}` wakes it.")
            }
            Op::Create | Op::Start | Op::Restart => match &s.node {
                Some(node) => format!("Session {name} is running on {node}."),
                None => format!("Session {name} is running."),
            },
        },
        Outcome::Failed | Outcome::StillGoing => format!("Session {name} is {state}."),
    }
}

/// Whether `delete` asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// --yes.
    No,
    /// On a terminal.
    Ask,
    /// Nobody to ask: refuse.
    Refuse,
}

fn confirm_mode(yes: bool, stdin_is_terminal: bool) -> Confirm {
    match (yes, stdin_is_terminal) {
        (true, _) => Confirm::No,
        (false, true) => Confirm::Ask,
        (false, false) => Confirm::Refuse,
    }
}

/// `y` or `yes`, in any case.
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub async fn delete(ctx: &Ctx, id: &str, wait: bool, yes: bool) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let mode = confirm_mode(yes, std::io::stdin().is_terminal());
    if mode == Confirm::Refuse {
        return Err(Failure::usage(format!(
            "not deleting session {id} without confirmation: stdin is not a terminal"
        ))
        .hint(format!("run `flare session delete {id} --yes` to delete it without asking"))
        .into());
    }
    let mut authed = ctx.signed_in()?;
    let mut state = None;
    if mode == Confirm::Ask {
        let s = authed
            .call(async |c| c.session(&ws, id).await)
            .await
            .map_err(|e| session_error(e, id, &ws))?;
        eprint!(
            "Delete session {} ({}, template {} v{}) in {ws}? It is stopped, its container \
             removed and its name freed. [y/N] ",
            s.name, s.state, s.template, s.version
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !confirmed(&answer) {
            return Err(Failure::new(
                Exit::Error,
                "not_confirmed",
                format!("session {} was not deleted", s.name),
            )
            .into());
        }
        state = Some(s.state);
    }
    let answer = if wait {
        let first = waiting(
            ctx,
            &ws,
            &Op::Delete.doing(id),
            Some(id),
            state.as_deref(),
            authed.call(async |c| c.delete_session(&ws, id, true).await),
        )
        .await;
        let reask = authed.call(async |c| c.session(&ws, id).await);
        settle(first, reask, || no_answer(Op::Delete, &format!("session {id}"))).await
    } else {
        authed.call(async |c| c.delete_session(&ws, id, false).await).await
    };
    let s = answer.map_err(|e| op_error(e, Op::Delete, id, &ws))?;
    changed(ctx, Op::Delete, &s, wait)
}

// ---------------------------------------------------------------------------------------------
// events

/// Why reading events stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventsEnd {
    /// Everything there was has been read (without -f).
    CaughtUp,
    /// The session's `state.deleted` event was read.
    Deleted,
    /// The session disappeared while being followed (404).
    Gone,
}

/// When to ask for events again after a page of them: without -f, at once while pages come
/// (up to [`MAX_EVENT_PAGES`]); with -f at once after a page with events, else in 2 s.
fn next_events_wait(follow: bool, empty: bool, pages: u32) -> Option<Duration> {
    if !follow {
        return (!empty && pages < MAX_EVENT_PAGES).then_some(Duration::ZERO);
    }
    Some(if empty { EVENTS_POLL } else { Duration::ZERO })
}

/// Reads a session's events from the start, handing each new page to `on_events`; with
/// `follow`, goes on until the session is deleted (its `state.deleted` event, or a 404 once
/// something was read).
async fn read_events(
    mut fetch: impl AsyncFnMut(u64) -> anyhow::Result<Vec<SessionEvent>>,
    mut sleep: impl AsyncFnMut(Duration),
    follow: bool,
    mut on_events: impl FnMut(&[SessionEvent]),
) -> anyhow::Result<EventsEnd> {
    let mut after = 0;
    let mut pages = 0u32;
    loop {
        let page = match fetch(after).await {
            Ok(page) => page,
            Err(e) if follow && pages > 0 && e.chain().any(is_not_found) => {
                return Ok(EventsEnd::Gone);
            }
            Err(e) => return Err(e),
        };
        pages += 1;
        // Only events after `after`, in order: nothing is printed twice.
        let mut fresh: Vec<SessionEvent> = page.into_iter().filter(|e| e.seq > after).collect();
        fresh.sort_by_key(|e| e.seq);
        on_events(&fresh);
        if let Some(last) = fresh.last() {
            after = last.seq;
        }
        if fresh.iter().any(|e| e.kind == DELETED_EVENT) {
            return Ok(EventsEnd::Deleted);
        }
        match next_events_wait(follow, fresh.is_empty(), pages) {
            None => return Ok(EventsEnd::CaughtUp),
            Some(wait) if !wait.is_zero() => sleep(wait).await,
            Some(_) => {}
        }
    }
}

/// `   7  2025-03-01T14:05:07Z  state.running         node=host-a`
fn event_line(e: &SessionEvent) -> String {
    format!(
        "{:>4}  {}  {:<20}  {}",
        e.seq,
        output::timestamp(e.at),
        e.kind,
        event_detail(&e.detail)
    )
    .trim_end()
    .to_string()
}

/// An event's detail on one line: an object as `key=value` pairs (strings quoted only when they
/// need it), anything else as compact JSON; nothing for `null`.
fn event_detail(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s)
            if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '=') =>
        {
            s.clone()
        }
        other => other.to_string(),
    };
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            map.iter().map(|(k, v)| format!("{k}={}", scalar(v))).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    }
}

pub async fn events(ctx: &Ctx, id: &str, follow: bool) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let text = ctx.text();
    let mut read: Vec<SessionEvent> = Vec::new();
    let reading = read_events(
        async |after| authed.call(async |c| c.session_events(&ws, id, after).await).await,
        async |wait| tokio::time::sleep(wait).await,
        follow,
        |page| {
            if text {
                let mut out = std::io::stdout().lock();
                for e in page {
                    let _ = writeln!(out, "{}", event_line(e));
                }
                let _ = out.flush();
            }
            read.extend_from_slice(page);
        },
    );
    // Ctrl-C ends -f like the deletion does: what was read is printed (as JSON: all of it).
    let end = tokio::select! {
        end = reading => Some(end.map_err(|e| session_error(e, id, &ws))?),
        Ok(()) = tokio::signal::ctrl_c(), if follow => None,
    };
    if !text {
        return output::json(&read);
    }
    match end {
        Some(EventsEnd::CaughtUp) if read.is_empty() => {
            println!("Session {id} has no events yet.");
        }
        Some(EventsEnd::Gone) => eprintln!("Session {id} is gone: it was deleted."),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// why

pub async fn why(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let w = authed
        .call(async |c| c.session_why(&ws, id).await)
        .await
        .map_err(|e| session_error(e, id, &ws))?;
    if !ctx.text() {
        return output::json(&w);
    }
    println!("{}", why_text(&w, output::now_ms()));
    Ok(())
}

/// `sleeps in 12m (2025-03-01 14:17 UTC)`, or once past, `sleep was due 2m ago (…)`.
fn deadline(at: Option<i64>, now: i64, verb: &str, noun: &str) -> String {
    let Some(at) = at else { return "-".into() };
    let abs = output::date_time(at);
    if at - now >= 1000 {
        format!("{verb} in {} ({abs})", output::span(at - now))
    } else if now - at < 1000 {
        format!("{verb} now ({abs})")
    } else {
        format!("{noun} was due {} ago ({abs})", output::span(now - at))
    }
}

fn why_text(w: &SessionWhy, now: i64) -> String {
    let pending = if w.pending.is_empty() { "-".to_string() } else { w.pending.join(", ") };
    let mut rows = vec![
        ("state", w.state.clone()),
        ("step", dash(Some(w.step.clone()))),
        ("attempts", w.attempts.to_string()),
        ("idle deadline", deadline(w.idle_deadline, now, "sleeps", "sleep")),
        ("lifetime deadline", deadline(w.lifetime_deadline, now, "stops", "stop")),
        ("pending", pending),
        ("node", dash(w.node.clone())),
        ("generation", w.generation.to_string()),
        ("last error", dash(w.last_error.clone())),
    ];
    // A sleep, stop or restart whose snapshot failed waits for its retry.
    if let (Some(at), Some(op)) = (w.retry_at, w.retry_op.as_deref()) {
        rows.push(("retry", format!("{op}: {}", deadline(Some(at), now, "retries", "retry"))));
    }
    fields("", &rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{HashSet, VecDeque};

    use super::*;

    const NOW: i64 = 1_740_000_000_000;

    fn owner() -> sdk::UserRef {
        sdk::UserRef { id: "u1".into(), display_name: "Alice".into() }
    }

    fn session(state: &str) -> SessionDetail {
        SessionDetail {
            id: "0190c3a2-0000-7000-8000-000000000001".into(),
            name: "go-abcd".into(),
            state: state.into(),
            template: "go".into(),
            version: "3".into(),
            owner: owner(),
            node: Some("host-a".into()),
            workflow_id: "session-0190c3a2".into(),
            created_at: NOW - 3_900_000,
            updated_at: NOW - 60_000,
            started_at: Some(NOW - 3_800_000),
            stopped_at: None,
            last_active_at: None,
            error: None,
        }
    }

    fn event(seq: u64, kind: &str) -> SessionEvent {
        SessionEvent { seq, kind: kind.into(), detail: serde_json::Value::Null, at: 90_000 }
    }

    #[test]
    fn idempotency_keys_are_distinct_uuids() {
        let keys: Vec<String> = (0..1000).map(|_| idempotency_key()).collect();
        let distinct: HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        for k in &keys {
            assert_eq!(k.len(), 36, "{k}");
            for (i, c) in k.chars().enumerate() {
                if [8, 13, 18, 23].contains(&i) {
                    assert_eq!(c, '-', "{k}");
                } else {
                    assert!(c.is_ascii_digit() || ('a'..='f').contains(&c), "{k}");
                }
            }
            assert_eq!(&k[14..15], "4", "version 4: {k}");
            assert!("89ab".contains(&k[19..20]), "variant: {k}");
        }
    }

    #[test]
    fn the_operations_are_the_ones_the_server_knows() {
        for op in [Op::Start, Op::Stop, Op::Sleep, Op::Restart] {
            assert!(sdk::SESSION_OPS.contains(&op.path()), "{op:?}");
        }
        for op in [Op::Create, Op::Start, Op::Stop, Op::Sleep, Op::Restart, Op::Delete] {
            assert!(sdk::SESSION_STATES.contains(&op.target()), "{op:?}");
        }
    }

    #[test]
    fn a_waited_for_operation_succeeds_only_in_its_end_state() {
        assert_eq!(outcome(Op::Create, "running", true), Outcome::Done);
        assert_eq!(outcome(Op::Create, "failed", true), Outcome::Failed);
        assert_eq!(outcome(Op::Create, "starting", true), Outcome::StillGoing);
        assert_eq!(outcome(Op::Stop, "stopped", true), Outcome::Done);
        assert_eq!(outcome(Op::Stop, "stopping", true), Outcome::StillGoing);
        assert_eq!(outcome(Op::Sleep, "sleeping", true), Outcome::Done);
        assert_eq!(outcome(Op::Restart, "running", true), Outcome::Done);
        assert_eq!(outcome(Op::Delete, "deleted", true), Outcome::Done);
        assert_eq!(outcome(Op::Delete, "deleting", true), Outcome::StillGoing);
    }

    #[test]
    fn without_waiting_only_a_failed_new_session_fails() {
        assert_eq!(outcome(Op::Create, "provisioning", false), Outcome::Done);
        assert_eq!(outcome(Op::Create, "failed", false), Outcome::Failed);
        assert_eq!(outcome(Op::Restart, "failed", false), Outcome::Done);
        assert_eq!(outcome(Op::Stop, "running", false), Outcome::Done);
    }

    #[test]
    fn a_failed_session_exits_1_with_its_error_and_the_why_hint() {
        let mut s = session("failed");
        s.error = Some("the image could not be pulled".into());
        let f = outcome_failure(Op::Create, &s, true).unwrap();
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "session_failed"));
        assert_eq!(f.message, "session go-abcd failed: the image could not be pulled");
        assert_eq!(f.hint.as_deref(), Some("`flare session why go-abcd` shows what went wrong"));
        assert!(outcome_failure(Op::Create, &session("running"), true).is_none());
        assert!(outcome_failure(Op::Create, &session("provisioning"), false).is_none());
    }

    #[test]
    fn a_wait_that_ends_early_says_the_session_keeps_going_and_how_to_check() {
        let f = outcome_failure(Op::Create, &session("starting"), true).unwrap();
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "wait_timeout"));
        assert_eq!(
            f.message,
            "stopped waiting: session go-abcd is starting and keeps starting on the server"
        );
        assert!(f.hint.unwrap().contains("`flare session show go-abcd`"));
        let f = outcome_failure(Op::Sleep, &session("running"), true).unwrap();
        assert!(f.message.ends_with("keeps going to sleep on the server"), "{}", f.message);
    }

    fn api(status: u16, code: sdk::ErrorCode, message: &str) -> anyhow::Error {
        ClientError::Api { status, error: sdk::ApiError::new(code, message) }.into()
    }

    #[test]
    fn a_broken_connection_or_a_gateway_timeout_is_a_lost_wait_not_an_error() {
        let transport: anyhow::Error = ClientError::Transport {
            url: "http://127.0.0.1:8080".into(),
            cause: "operation timed out".into(),
        }
        .into();
        assert!(lost_wait(&transport.context("creating session x")));
        assert!(lost_wait(&api(504, sdk::ErrorCode::Unavailable, "gateway timeout")));
        let unexpected: anyhow::Error =
            ClientError::UnexpectedBody { status: 502, body: "<html>".into() }.into();
        assert!(lost_wait(&unexpected));
        assert!(!lost_wait(&api(409, sdk::ErrorCode::Conflict, "session is stopped")));
        assert!(!lost_wait(&anyhow::anyhow!("other")));
    }

    fn settled(
        first: anyhow::Result<Option<SessionDetail>>,
        reask: anyhow::Result<SessionDetail>,
    ) -> anyhow::Result<SessionDetail> {
        // `settle` bounds the second question with a tokio timer.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(settle(first, async { reask }, || no_answer(Op::Create, "session go-abcd")))
    }

    #[test]
    fn without_an_answer_the_session_is_asked_for_again() {
        let lost: anyhow::Error =
            ClientError::Transport { url: "u".into(), cause: "connection reset".into() }.into();
        let s = settled(Err(lost), Ok(session("starting"))).unwrap();
        assert_eq!(s.state, "starting");
        assert_eq!(settled(Ok(None), Ok(session("running"))).unwrap().state, "running");

        // Asking again fails too: no answer says how to check; an error stays that error.
        let f = settled(Ok(None), Err(anyhow::anyhow!("down"))).unwrap_err();
        let f = crate::fail::classify(&f, "default");
        assert_eq!(f.code, "wait_timeout");
        assert!(f.hint.unwrap().contains("keep starting"));
        let lost: anyhow::Error =
            ClientError::Transport { url: "u".into(), cause: "Connection refused".into() }.into();
        let f = crate::fail::classify(
            &settled(Err(lost), Err(anyhow::anyhow!("down"))).unwrap_err(),
            "default",
        );
        assert_eq!(f.exit, Exit::Unreachable);

        // A refusal is not asked again.
        let e = settled(
            Err(api(409, sdk::ErrorCode::Conflict, "no")),
            Err(anyhow::anyhow!("asked again")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no"), "{e}");
    }

    #[test]
    fn a_409_is_the_servers_message_and_a_404_names_the_session() {
        let e = session_error(
            api(409, sdk::ErrorCode::Conflict, "cannot sleep session go-abcd: it is stopped"),
            "go-abcd",
            "acme",
        );
        let f = crate::fail::classify(&e, "default");
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "conflict"));
        assert_eq!(f.message, "cannot sleep session go-abcd: it is stopped");
        assert!(f.hint.unwrap().contains("flare session why go-abcd"));

        // The server's message as it is, without what flare was doing in front.
        let e = op_error(
            api(409, sdk::ErrorCode::Conflict, "cannot sleep session go-abcd: it is stopped"),
            Op::Sleep,
            "go-abcd",
            "acme",
        );
        let f = crate::fail::classify(&e, "default");
        assert_eq!(f.message, "cannot sleep session go-abcd: it is stopped");
        let e = op_error(api(500, sdk::ErrorCode::Internal, "boom"), Op::Sleep, "go-abcd", "acme");
        let f = crate::fail::classify(&e, "default");
        assert_eq!(f.message, "putting session go-abcd to sleep in acme: boom");

        let e = session_error(api(404, sdk::ErrorCode::NotFound, "not found"), "nope", "acme");
        let f = crate::fail::classify(&e, "default");
        assert_eq!(f.exit, Exit::NotFound);
        assert_eq!(f.message, "there is no session nope in workspace acme");
    }

    #[test]
    fn delete_asks_on_a_terminal_and_refuses_without_one() {
        assert_eq!(confirm_mode(true, false), Confirm::No);
        assert_eq!(confirm_mode(true, true), Confirm::No);
        assert_eq!(confirm_mode(false, true), Confirm::Ask);
        assert_eq!(confirm_mode(false, false), Confirm::Refuse);
        assert!(confirmed("y\n") && confirmed(" YES ") && confirmed("Yes"));
        assert!(!confirmed("\n") && !confirmed("no") && !confirmed("yep"));
    }

    #[test]
    fn session_list_table() {
        let s = |name: &str, state: &str, age_ms: i64, updated_ms: i64| SessionSummary {
            id: name.into(),
            name: name.into(),
            state: state.into(),
            template: "go".into(),
            owner: owner(),
            created_at: NOW - age_ms,
            updated_at: NOW - updated_ms,
            last_active_at: None,
        };
        assert_eq!(
            session_table(
                &[s("go-abcd", "running", 3_900_000, 720_000), s("py", "stopped", 90_000_000, 0)],
                NOW
            ),
            "NAME     STATE    TEMPLATE  OWNER  AGE     UPDATED\n\
             go-abcd  running  go        Alice  1h 05m  12m ago\n\
             py       stopped  go        Alice  1d 1h   just now"
        );
    }

    #[test]
    fn a_created_session_shows_its_id_name_state_template_and_node() {
        let text = created_text(&session("running"), true);
        assert_eq!(
            text,
            "Session go-abcd is running.\n\
             \x20 id        0190c3a2-0000-7000-8000-000000000001\n\
             \x20 name      go-abcd\n\
             \x20 state     running\n\
             \x20 template  go v3\n\
             \x20 node      host-a\n\
             Next: `flare session show go-abcd` shows it, `flare session stop go-abcd` stops it."
        );
        assert!(!text.contains("ssh"));
        let mut failed = session("failed");
        failed.error = Some("no node has room".into());
        let text = created_text(&failed, true);
        assert!(text.starts_with("Session go-abcd failed.\n"), "{text}");
        assert!(text.contains("  error     no node has room"), "{text}");
        let text = created_text(&session("provisioning"), false);
        assert!(text.starts_with("Created session go-abcd; it is provisioning"), "{text}");
    }

    #[test]
    fn show_lists_what_is_known_with_relative_times() {
        let text = detail_text(&session("running"), "acme", NOW);
        assert!(text.contains("\ncreated    2025-02-19 20:15 UTC (1h 05m ago)"), "{text}");
        assert!(text.contains("\nstarted    2025-02-19 20:16 UTC (1h 03m ago)"), "{text}");
        assert!(!text.contains("stopped"), "{text}");
        assert!(!text.contains("flare session why"), "{text}");
        let mut failed = session("failed");
        failed.error = Some("boom".into());
        let text = detail_text(&failed, "acme", NOW);
        assert!(text.contains("\nerror      boom"), "{text}");
        assert!(text.ends_with("`flare session why go-abcd` shows what went wrong."), "{text}");
    }

    #[test]
    fn changed_sessions_say_where_they_are() {
        assert_eq!(
            changed_text(Op::Stop, &session("stopped"), true),
            "Session go-abcd is stopped; `flare session start go-abcd` starts it again."
        );
        assert_eq!(
            changed_text(Op::Restart, &session("running"), true),
            "Session go-abcd is running on host-a."
        );
        assert_eq!(changed_text(Op::Delete, &session("deleted"), true), "Deleted session go-abcd.");
        assert_eq!(
            changed_text(Op::Sleep, &session("running"), false),
            "Asked session go-abcd to sleep; it is running. `flare session show go-abcd` shows \
             when it is sleeping."
        );
        assert_eq!(
            changed_text(Op::Stop, &session("stopping"), true),
            "Session go-abcd is stopping."
        );
    }

    #[test]
    fn why_shows_deadlines_relative_and_absolute() {
        let w = SessionWhy {
            state: "running".into(),
            step: "waiting for activity".into(),
            attempts: 1,
            idle_deadline: Some(NOW + 12 * 60_000 + 30_000),
            lifetime_deadline: Some(NOW + 7 * 3_600_000 + 48 * 60_000),
            pending: vec!["sleep".into(), "stop".into()],
            node: Some("host-a".into()),
            generation: 3,
            last_error: None,
            retry_at: None,
            retry_op: None,
        };
        assert_eq!(
            why_text(&w, NOW),
            "state              running\n\
             step               waiting for activity\n\
             attempts           1\n\
             idle deadline      sleeps in 12m (2025-02-19 21:32 UTC)\n\
             lifetime deadline  stops in 7h 48m (2025-02-20 05:08 UTC)\n\
             pending            sleep, stop\n\
             node               host-a\n\
             generation         3\n\
             last error         -"
        );
        assert_eq!(deadline(None, NOW, "sleeps", "sleep"), "-");
        assert!(
            deadline(Some(NOW - 120_000), NOW, "sleeps", "sleep")
                .starts_with("sleep was due 2m ago")
        );
        assert!(deadline(Some(NOW + 500), NOW, "sleeps", "sleep").starts_with("sleeps now"));
    }

    #[test]
    fn event_lines_are_seq_time_kind_detail() {
        let mut e = event(7, "state.running");
        e.detail = serde_json::json!({"node": "host-a", "generation": 2, "reason": "idle timeout"});
        assert_eq!(
            event_line(&e),
            "   7  1970-01-01T00:01:30Z  state.running         generation=2 node=host-a reason=\"idle timeout\""
        );
        assert_eq!(
            event_line(&event(12, "op.sleep.accepted")),
            "  12  1970-01-01T00:01:30Z  op.sleep.accepted"
        );
        assert_eq!(event_detail(&serde_json::json!("plain")), "plain");
        assert_eq!(event_detail(&serde_json::json!([1, 2])), "[1,2]");
        assert_eq!(event_detail(&serde_json::json!({"e": ""})), "e=\"\"");
    }

    /// Runs `read_events` over fixed answers; returns how it ended, the `after` of each
    /// request, the waits and the seqs handed out.
    fn run_events(
        answers: Vec<anyhow::Result<Vec<SessionEvent>>>,
        follow: bool,
    ) -> (anyhow::Result<EventsEnd>, Vec<u64>, Vec<Duration>, Vec<u64>) {
        let answers = RefCell::new(VecDeque::from(answers));
        let afters = RefCell::new(Vec::new());
        let waits = RefCell::new(Vec::new());
        let mut seen = Vec::new();
        let end = futures::executor::block_on(read_events(
            async |after| {
                afters.borrow_mut().push(after);
                answers
                    .borrow_mut()
                    .pop_front()
                    .unwrap_or_else(|| Err(anyhow::anyhow!("asked once too often")))
            },
            async |d| waits.borrow_mut().push(d),
            follow,
            |page| seen.extend(page.iter().map(|e| e.seq)),
        ));
        (end, afters.into_inner(), waits.into_inner(), seen)
    }

    #[test]
    fn events_without_follow_page_until_nothing_new() {
        let (end, afters, waits, seen) = run_events(
            vec![Ok(vec![event(1, "state.provisioning"), event(2, "state.starting")]), Ok(vec![])],
            false,
        );
        assert_eq!(end.unwrap(), EventsEnd::CaughtUp);
        assert_eq!(afters, [0, 2]);
        assert!(waits.is_empty());
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn following_events_polls_every_2s_after_the_last_seq_until_deleted() {
        let (end, afters, waits, seen) = run_events(
            vec![
                Ok(vec![event(1, "state.running")]),
                Ok(vec![]),
                // A repeated event is not handed out twice.
                Ok(vec![event(1, "state.running"), event(2, "op.delete.accepted")]),
                Ok(vec![event(3, "state.deleting"), event(4, DELETED_EVENT)]),
            ],
            true,
        );
        assert_eq!(end.unwrap(), EventsEnd::Deleted);
        assert_eq!(afters, [0, 1, 1, 2]);
        assert_eq!(waits, [EVENTS_POLL]);
        assert_eq!(seen, [1, 2, 3, 4]);
    }

    #[test]
    fn a_followed_session_that_disappears_ends_the_follow_but_an_unknown_one_is_an_error() {
        let (end, _, _, _) = run_events(
            vec![Ok(vec![]), Err(api(404, sdk::ErrorCode::NotFound, "session not found"))],
            true,
        );
        assert_eq!(end.unwrap(), EventsEnd::Gone);
        let (end, afters, _, _) =
            run_events(vec![Err(api(404, sdk::ErrorCode::NotFound, "not found"))], true);
        assert!(end.is_err());
        assert_eq!(afters, [0]);
    }
}
