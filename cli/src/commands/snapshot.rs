//! `flare snapshot`: save, list, restore and delete the snapshots of a session's persisted paths
//! (docs/snapshots.md).
//!
//! `save` and `restore` are waited for: the server holds the request until the snapshot is
//! verified or has failed, or until the restore is done, for up to 10 minutes; flare gives up a
//! little later. A snapshot that failed, or a request the server refused, exits 1 with the
//! server's message.

use std::future::Future;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use clap::Subcommand;
use indicatif::HumanBytes;
use sdk::{ClientError, RestoreOutcome, Snapshot};

use crate::commands::session::session_error;
use crate::commands::template::{dash, fields, spinner};
use crate::fail::{Exit, Failure};
use crate::output;
use crate::session::{Authed, Ctx};

/// The server waits up to 10 minutes for a snapshot or a restore; flare a little longer.
const WAIT_LIMIT: Duration = Duration::from_secs(630);
/// Longest error shown in a `list` row, in characters.
const ERROR_COLUMN: usize = 60;

pub const LONG_ABOUT: &str = "\
Save, list, restore and delete snapshots of a session's persisted paths.

A template names the paths that outlive a container (`persisted_paths`, e.g. /home/dev); a
snapshot is a copy of them. The session's latest verified snapshot is restored whenever it gets
a fresh container. BurstFlare takes one when a session sleeps, stops or restarts; `save` takes
one now. Every command takes the session's name or its ID, and a snapshot's full ID as `flare
snapshot list` shows it.

  flare snapshot save my-go
  flare snapshot list my-go
  flare snapshot restore my-go 0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a running session's persisted paths now and wait until it is verified
    #[command(long_about = "\
Snapshot a running session's persisted paths now, and wait until the snapshot is verified
(readable back from storage) or has failed: up to 10 minutes. Prints its ID, status, size and
how much new data it stored (unchanged files are not stored twice). With --no-wait, prints the
snapshot at once (status pending).

Exits 1 with the server's message when the snapshot failed, when the session is not running
(409), when the persisted paths hold more than the allowed size (413, naming max_bytes), or when
the last manual snapshot is more recent than the server's snapshots.min_interval_secs (429).

  flare snapshot save my-go
  flare snapshot save my-go --no-wait --output json")]
    Save {
        /// The session's name or ID
        session: String,
        /// Return as soon as the server has started the snapshot
        #[arg(long)]
        no_wait: bool,
    },
    /// List a session's snapshots, newest first (* marks the latest)
    #[command(long_about = "\
List a session's snapshots, newest first: ID, when it was taken (local time), what took it
(manual, sleep, stop, restart, pre-restore), its status (pending, uploaded, verified, failed),
its size and, for a failed one, why. * marks the latest: the snapshot a fresh container of the
session is restored from. Deleted snapshots are not listed.

  flare snapshot list my-go
  flare snapshot list my-go --output json")]
    List {
        /// The session's name or ID
        session: String,
    },
    /// Restore a verified snapshot: now into a running session, else at its next start
    #[command(long_about = "\
Restore a verified snapshot of a session. Into a running session it is restored now: a safety
snapshot of its current files is taken first (its ID is printed, so the restore can be undone),
then the persisted paths are replaced. A sleeping, stopped or failed session restores it when it
next starts: it becomes the session's latest snapshot.

Asks for confirmation when stdin is a terminal; otherwise (scripts, CI) --yes is required and
without it nothing is restored (exit 2).

  flare snapshot restore my-go 0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37
  flare snapshot restore my-go 0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37 --yes")]
    Restore {
        /// The session's name or ID
        session: String,
        /// The snapshot's ID, as `flare snapshot list` shows it
        snapshot: String,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
    },
    /// Delete a snapshot (not the session's latest one)
    #[command(long_about = "\
Delete a snapshot of a session. Its data is removed from storage once no other snapshot uses it.
The session's latest snapshot (* in `flare snapshot list`) cannot be deleted: save or restore
another one first.

  flare snapshot delete my-go 0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37")]
    Delete {
        /// The session's name or ID
        session: String,
        /// The snapshot's ID, as `flare snapshot list` shows it
        snapshot: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: SnapshotCommand) -> anyhow::Result<Exit> {
    match cmd {
        SnapshotCommand::Save { session, no_wait } => save(ctx, &session, !no_wait).await,
        SnapshotCommand::List { session } => list(ctx, &session).await.map(|()| Exit::Ok),
        SnapshotCommand::Restore { session, snapshot, yes } => {
            restore(ctx, &session, &snapshot, yes).await.map(|()| Exit::Ok)
        }
        SnapshotCommand::Delete { session, snapshot } => {
            delete(ctx, &session, &snapshot).await.map(|()| Exit::Ok)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// errors

fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

/// A waited-for request that ended without the server's answer: the connection broke while it
/// waited, or a proxy in between gave up (502, 504).
fn lost_wait(e: &anyhow::Error) -> bool {
    match client_error(e) {
        Some(ClientError::Transport { .. }) => true,
        Some(other) => matches!(other.status(), Some(502 | 504)),
        None => false,
    }
}

/// What a command was doing, for the errors that say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doing {
    Save,
    Restore,
    Delete,
}

/// The server's refusals in words that say what to do: 403 (someone else's session), 409 (not
/// now: the message says why), 413 (too large, naming `max_bytes`), 429 (too soon, naming
/// `snapshots.min_interval_secs`), 503 (still running, or Temporal down). 404 is handled by the
/// caller, which knows whether a snapshot was named.
fn refusal(e: anyhow::Error, doing: Doing, session: &str) -> anyhow::Error {
    let list = format!("`flare snapshot list {session}` shows the session's snapshots");
    let Some(ClientError::Api { status, error }) = client_error(&e) else { return e };
    let message = error.message.clone();
    let failure = match status {
        403 => Failure::new(Exit::Error, "forbidden", message).hint(match doing {
            Doing::Delete => {
                "only the session's owner, or a workspace owner or admin, can delete its snapshots"
            }
            _ => "only the session's owner can save or restore its snapshots",
        }),
        409 => {
            let hint = if message.contains("only a running session") {
                format!("`flare session start {session}` starts it")
            } else if message.contains("latest snapshot") || message.contains("only verified") {
                list
            } else {
                format!("`flare session why {session}` shows what the session is doing")
            };
            Failure::new(Exit::Error, "conflict", message).hint(hint)
        }
        413 => {
            let field = error.details.get("field").and_then(|f| f.as_str()).map(str::to_string);
            let mut f = Failure::new(
                Exit::Error,
                "too_large",
                crate::fail::with_field(field.as_deref().or(Some("max_bytes")), &message),
            );
            f.field = field.or_else(|| Some("max_bytes".into()));
            f.hint(
                "delete files from the session's persisted paths, or raise the template's \
                 max_snapshot_bytes",
            )
        }
        429 => Failure::new(Exit::Error, "rate_limited", message).hint(format!(
            "the server's snapshots.min_interval_secs spaces manual snapshots; {list}"
        )),
        503 if doing == Doing::Restore => Failure::new(Exit::Error, "unavailable", message)
            .hint(format!("{list}; the latest one is marked with *")),
        _ => return e,
    };
    failure.into()
}

/// 404 for a request that named a snapshot: the session, or else the snapshot, does not exist.
async fn not_found(
    authed: &mut Authed<'_>,
    ws: &str,
    session: &str,
    snapshot: &str,
    e: anyhow::Error,
) -> anyhow::Error {
    if !client_error(&e).is_some_and(ClientError::is_not_found) {
        return e;
    }
    match authed.call(async |c| c.session(ws, session).await).await {
        Ok(_) => no_snapshot(session, snapshot, ws).into(),
        Err(other) => session_error(other, session, ws),
    }
}

fn no_snapshot(session: &str, snapshot: &str, ws: &str) -> Failure {
    Failure::not_found(format!("session {session} in workspace {ws} has no snapshot {snapshot}"))
        .hint(format!("`flare snapshot list {session}` shows its snapshots and their IDs"))
}

fn no_answer(doing: Doing, session: &str) -> Failure {
    let (what, keeps) = match doing {
        Doing::Save => ("saving a snapshot of", "the snapshot may still be taken"),
        Doing::Restore => ("restoring a snapshot into", "the restore may still run"),
        Doing::Delete => ("deleting a snapshot of", "it may still be deleted"),
    };
    Failure::new(
        Exit::Error,
        "wait_timeout",
        format!(
            "no answer from the server within {} s while {what} session {session}; {keeps} on \
             the server",
            WAIT_LIMIT.as_secs()
        ),
    )
    .hint(format!("`flare snapshot list {session}` shows the session's snapshots"))
}

/// `request` behind a spinner on stderr (for people only); a lost or late answer is `no_answer`.
async fn waiting<T>(
    ctx: &Ctx,
    label: String,
    doing: Doing,
    session: &str,
    request: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let bar = spinner(ctx, label);
    let answer = tokio::time::timeout(WAIT_LIMIT, request).await;
    bar.finish_and_clear();
    match answer {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) if lost_wait(&e) => {
            // An unreachable server is reported as such; a wait cut short, as a wait.
            match client_error(&e) {
                Some(ClientError::Transport { cause, .. }) if refused(cause) => Err(e),
                _ => Err(no_answer(doing, session).into()),
            }
        }
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => Err(no_answer(doing, session).into()),
    }
}

/// A connection that was never made (the server is down), as opposed to one that broke.
fn refused(cause: &str) -> bool {
    let cause = cause.to_ascii_lowercase();
    cause.contains("refused") || cause.contains("dns") || cause.contains("resolve")
}

// ---------------------------------------------------------------------------------------------
// save

/// How a `save` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    /// Verified (or, without waiting, accepted).
    Done,
    Failed,
    /// Waited for, and not final yet: it keeps going on the server.
    StillGoing,
}

fn saved(status: &str, waited: bool) -> Saved {
    match status {
        "failed" => Saved::Failed,
        "verified" => Saved::Done,
        _ if !waited => Saved::Done,
        _ => Saved::StillGoing,
    }
}

fn save_failure(s: &Snapshot, session: &str, waited: bool) -> Option<Failure> {
    let list = format!("`flare snapshot list {session}` shows the session's snapshots");
    match saved(&s.status, waited) {
        Saved::Done => None,
        Saved::Failed => {
            let message = match s.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => format!("snapshot {} of session {session} failed: {e}", s.id),
                None => format!("snapshot {} of session {session} failed", s.id),
            };
            Some(
                Failure::new(Exit::Error, "snapshot_failed", message)
                    .hint(format!("the session keeps its files and its latest snapshot; {list}")),
            )
        }
        Saved::StillGoing => Some(
            Failure::new(
                Exit::Error,
                "wait_timeout",
                format!(
                    "stopped waiting: snapshot {} of session {session} is {} and keeps going on \
                     the server",
                    s.id, s.status
                ),
            )
            .hint(list),
        ),
    }
}

/// `1.50 MiB`, or `-` while unknown.
fn bytes(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| HumanBytes(n).to_string())
}

/// `312.00 KiB (3 of 7 chunks new)`
fn stored(s: &Snapshot) -> String {
    let mut out = bytes(s.stored_bytes);
    if let (Some(new), Some(all)) = (s.new_chunks, s.chunks) {
        out.push_str(&format!(" ({new} of {all} chunks new)"));
    }
    out
}

fn saved_text(s: &Snapshot, session: &str, waited: bool) -> String {
    let outcome = saved(&s.status, waited);
    let head = match outcome {
        Saved::Done if waited => format!("Saved snapshot {} of session {session}.", s.id),
        Saved::Done => {
            format!("Saving snapshot {} of session {session}: it is {}.", s.id, s.status)
        }
        Saved::Failed => format!("Snapshot {} of session {session} failed.", s.id),
        Saved::StillGoing => format!("Snapshot {} of session {session} is {}.", s.id, s.status),
    };
    let mut rows = vec![("id", s.id.clone()), ("status", s.status.clone())];
    if s.size_bytes.is_some() {
        rows.push(("size", bytes(s.size_bytes)));
        rows.push(("stored", stored(s)));
    }
    if let Some(e) = s.error.as_deref().filter(|e| !e.is_empty()) {
        rows.push(("error", e.to_string()));
    }
    let mut out = format!("{head}\n{}", fields("  ", &rows));
    match outcome {
        Saved::Done if waited => {
            if s.latest {
                out.push_str(
                    "\nIt is the session's latest snapshot: a fresh container starts from it.",
                );
            }
        }
        Saved::Done => {
            out.push_str(&format!("\n`flare snapshot list {session}` shows when it is verified."))
        }
        Saved::Failed | Saved::StillGoing => {}
    }
    out
}

pub async fn save(ctx: &Ctx, session: &str, wait: bool) -> anyhow::Result<Exit> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let request = authed.call(async |c| c.save_snapshot(&ws, session, wait).await);
    let answer = if wait {
        let label = format!("Saving snapshot of {session}…");
        waiting(ctx, label, Doing::Save, session, request).await
    } else {
        request.await
    };
    let s = answer
        .map_err(|e| refusal(e, Doing::Save, session))
        .map_err(|e| session_error(e, session, &ws))?;
    if !ctx.text() {
        output::json(&s)?;
    } else {
        println!("{}", saved_text(&s, session, wait));
    }
    Ok(match save_failure(&s, session, wait) {
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

// ---------------------------------------------------------------------------------------------
// list

pub async fn list(ctx: &Ctx, session: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let list = authed
        .call(async |c| c.snapshots(&ws, session).await)
        .await
        .map_err(|e| session_error(e, session, &ws))?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!(
            "Session {session} has no snapshots yet; `flare snapshot save {session}` takes one \
             while it runs."
        );
        return Ok(());
    }
    println!("{}", snapshot_table(&list, local_time));
    if list.iter().any(|s| s.latest) {
        println!("* the latest snapshot: a fresh container of {session} is restored from it");
    }
    Ok(())
}

/// A unix-milliseconds time in the local time zone, `2025-03-01 15:05:07`.
fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
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

fn snapshot_table(list: &[Snapshot], time: impl Fn(i64) -> String) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let mark = if s.latest { "*" } else { " " };
            vec![
                format!("{mark} {}", s.id),
                time(s.created_at),
                s.trigger.clone(),
                s.status.clone(),
                bytes(s.size_bytes),
                dash(s.error.as_deref().map(|e| truncate(e, ERROR_COLUMN))),
            ]
        })
        .collect();
    output::table(&["  ID", "CREATED", "TRIGGER", "STATUS", "SIZE", "ERROR"], &rows)
}

// ---------------------------------------------------------------------------------------------
// restore

/// Whether `restore` asks first.
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

/// The question `restore` asks on a terminal.
fn restore_question(s: &Snapshot, session: &str, state: &str) -> String {
    let what = format!(
        "snapshot {} ({}, {}, {})",
        s.id,
        output::date_time(s.created_at),
        s.trigger,
        bytes(s.size_bytes)
    );
    if state == "running" {
        format!(
            "Restore {what} into session {session} now? Its persisted paths are replaced by the \
             snapshot's files; a safety snapshot of the current ones is taken first. [y/N] "
        )
    } else {
        format!(
            "Restore {what} into session {session}? It is {state}: the snapshot's files are \
             restored when it next starts. [y/N] "
        )
    }
}

fn restored_text(r: &RestoreOutcome, session: &str) -> String {
    let id = &r.snapshot.id;
    if r.applied == "now" {
        match &r.safety_snapshot {
            Some(safety) => format!(
                "Restored snapshot {id} into session {session} now (your previous files were \
                 saved as snapshot {safety}; `flare snapshot restore {session} {safety}` brings \
                 them back)."
            ),
            None => format!("Restored snapshot {id} into session {session} now."),
        }
    } else {
        format!("Snapshot {id} will be restored when session {session} next starts.")
    }
}

pub async fn restore(ctx: &Ctx, session: &str, snapshot: &str, yes: bool) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mode = confirm_mode(yes, std::io::stdin().is_terminal());
    if mode == Confirm::Refuse {
        return Err(Failure::usage(format!(
            "not restoring snapshot {snapshot} into session {session} without confirmation: \
             stdin is not a terminal"
        ))
        .hint(format!(
            "run `flare snapshot restore {session} {snapshot} --yes` to restore it without asking"
        ))
        .into());
    }
    let mut authed = ctx.signed_in()?;
    if mode == Confirm::Ask {
        let s = authed
            .call(async |c| c.session(&ws, session).await)
            .await
            .map_err(|e| session_error(e, session, &ws))?;
        let snap = match authed.call(async |c| c.snapshot(&ws, session, snapshot).await).await {
            Ok(snap) => snap,
            Err(e) if client_error(&e).is_some_and(ClientError::is_not_found) => {
                return Err(no_snapshot(session, snapshot, &ws).into());
            }
            Err(e) => return Err(e),
        };
        eprint!("{}", restore_question(&snap, session, &s.state));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !confirmed(&answer) {
            return Err(Failure::new(
                Exit::Error,
                "not_confirmed",
                format!("snapshot {snapshot} was not restored"),
            )
            .into());
        }
    }
    let label = format!("Restoring snapshot {snapshot} into {session}…");
    let request = authed.call(async |c| c.restore_snapshot(&ws, session, snapshot).await);
    let answer = waiting(ctx, label, Doing::Restore, session, request).await;
    let r = match answer {
        Ok(r) => r,
        Err(e) => {
            let e = refusal(e, Doing::Restore, session);
            return Err(not_found(&mut authed, &ws, session, snapshot, e).await);
        }
    };
    if !ctx.text() {
        return output::json(&r);
    }
    println!("{}", restored_text(&r, session));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// delete

pub async fn delete(ctx: &Ctx, session: &str, snapshot: &str) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let mut authed = ctx.signed_in()?;
    let answer = authed.call(async |c| c.delete_snapshot(&ws, session, snapshot).await).await;
    let s = match answer {
        Ok(s) => s,
        Err(e) => {
            let e = refusal(e, Doing::Delete, session);
            return Err(not_found(&mut authed, &ws, session, snapshot, e).await);
        }
    };
    if !ctx.text() {
        return output::json(&s);
    }
    println!("Deleted snapshot {} of session {session}.", s.id);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const ID: &str = "0190c3a2-5b1e-7c4d-9f00-2a6b8e1d4c37";

    fn snap(status: &str) -> Snapshot {
        Snapshot {
            id: ID.into(),
            session_id: "0190c3a2-0000-7000-8000-000000000001".into(),
            trigger: "manual".into(),
            status: status.into(),
            size_bytes: None,
            stored_bytes: None,
            chunks: None,
            new_chunks: None,
            error: None,
            created_by: Some("u1".into()),
            created_at: 90_000,
            verified_at: None,
            latest: false,
        }
    }

    fn verified() -> Snapshot {
        Snapshot {
            size_bytes: Some(1_572_864),
            stored_bytes: Some(319_488),
            chunks: Some(7),
            new_chunks: Some(3),
            verified_at: Some(95_000),
            latest: true,
            ..snap("verified")
        }
    }

    fn api(status: u16, code: sdk::ErrorCode, message: &str) -> anyhow::Error {
        ClientError::Api { status, error: sdk::ApiError::new(code, message) }.into()
    }

    #[test]
    fn a_verified_snapshot_shows_its_size_and_what_it_stored() {
        assert_eq!(
            saved_text(&verified(), "my-go", true),
            format!(
                "Saved snapshot {ID} of session my-go.\n\
                 \x20 id      {ID}\n\
                 \x20 status  verified\n\
                 \x20 size    1.50 MiB\n\
                 \x20 stored  312.00 KiB (3 of 7 chunks new)\n\
                 It is the session's latest snapshot: a fresh container starts from it."
            )
        );
        assert!(save_failure(&verified(), "my-go", true).is_none());
        let text = saved_text(&snap("pending"), "my-go", false);
        assert!(
            text.starts_with(&format!("Saving snapshot {ID} of session my-go: it is pending."))
        );
        assert!(text.ends_with("`flare snapshot list my-go` shows when it is verified."), "{text}");
        assert!(save_failure(&snap("pending"), "my-go", false).is_none());
    }

    #[test]
    fn a_failed_snapshot_exits_1_with_the_servers_reason() {
        let mut s = snap("failed");
        s.error = Some("the agent answered 507: no space left on device".into());
        let f = save_failure(&s, "my-go", true).unwrap();
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "snapshot_failed"));
        assert_eq!(
            f.message,
            format!(
                "snapshot {ID} of session my-go failed: the agent answered 507: no space left on \
                 device"
            )
        );
        assert!(f.hint.unwrap().contains("flare snapshot list my-go"));
        let text = saved_text(&s, "my-go", true);
        assert!(text.starts_with(&format!("Snapshot {ID} of session my-go failed.\n")), "{text}");
        assert!(text.contains("\n  error   the agent answered 507"), "{text}");
        // Failed is failed, waited for or not.
        assert!(save_failure(&s, "my-go", false).is_some());
        let f = save_failure(&snap("uploaded"), "my-go", true).unwrap();
        assert_eq!(f.code, "wait_timeout");
        assert!(f.message.contains("is uploaded and keeps going on the server"), "{}", f.message);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let classify = |e| crate::fail::classify(&e, "default");
        let f = classify(refusal(
            api(
                409,
                sdk::ErrorCode::Conflict,
                "the session is sleeping: only a running session can be snapshotted",
            ),
            Doing::Save,
            "my-go",
        ));
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "conflict"));
        assert!(f.message.starts_with("the session is sleeping"), "{}", f.message);
        assert_eq!(f.hint.as_deref(), Some("`flare session start my-go` starts it"));

        let too_large = ClientError::Api {
            status: 413,
            error: sdk::ApiError::new(
                sdk::ErrorCode::InvalidRequest,
                "the persisted paths hold 2000 bytes of file content, more than max_bytes (1999)",
            )
            .with_details(serde_json::json!({"field": "max_bytes"})),
        };
        let f = classify(refusal(too_large.into(), Doing::Save, "my-go"));
        assert_eq!(f.code, "too_large");
        assert_eq!(f.field.as_deref(), Some("max_bytes"));
        assert!(f.message.starts_with("max_bytes: the persisted paths hold"), "{}", f.message);

        let f = classify(refusal(
            api(
                429,
                sdk::ErrorCode::RateLimited,
                "snapshots.min_interval_secs: the last manual snapshot of this session is 5 s old",
            ),
            Doing::Save,
            "my-go",
        ));
        assert_eq!(f.code, "rate_limited");
        assert!(f.message.starts_with("snapshots.min_interval_secs: "), "{}", f.message);
        assert!(f.hint.unwrap().contains("min_interval_secs"));

        let f = classify(refusal(
            api(
                409,
                sdk::ErrorCode::Conflict,
                "the session's latest snapshot cannot be deleted; save or restore another first",
            ),
            Doing::Delete,
            "my-go",
        ));
        assert_eq!(
            f.hint.as_deref(),
            Some("`flare snapshot list my-go` shows the session's snapshots")
        );

        let f = classify(refusal(
            api(403, sdk::ErrorCode::Forbidden, "this session belongs to someone else"),
            Doing::Restore,
            "my-go",
        ));
        assert_eq!(f.message, "this session belongs to someone else");
        assert!(f.hint.unwrap().contains("only the session's owner"));

        // Anything else is left to the usual classification.
        let e = refusal(api(500, sdk::ErrorCode::Internal, "boom"), Doing::Save, "my-go");
        assert_eq!(classify(e).message, "boom");
    }

    #[test]
    fn a_lost_wait_is_a_broken_connection_or_a_gateway_giving_up() {
        let broken: anyhow::Error =
            ClientError::Transport { url: "u".into(), cause: "connection reset".into() }.into();
        assert!(lost_wait(&broken));
        assert!(lost_wait(&api(504, sdk::ErrorCode::Unavailable, "gateway timeout")));
        assert!(!lost_wait(&api(409, sdk::ErrorCode::Conflict, "no")));
        assert!(refused("tcp connect error: Connection refused (os error 111)"));
        assert!(!refused("connection reset by peer"));
    }

    #[test]
    fn the_list_marks_the_latest_and_cuts_long_errors() {
        let mut failed = snap("failed");
        failed.id = "0190c3a1-0000-7000-8000-00000000000f".into();
        failed.trigger = "sleep".into();
        failed.created_at = 30_000;
        failed.error = Some(format!("too large:\n{}", "x".repeat(80)));
        let table = snapshot_table(&[verified(), failed], output::timestamp);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "  ID                                    CREATED               TRIGGER  STATUS    SIZE      ERROR"
        );
        assert_eq!(
            lines[1],
            format!("* {ID}  1970-01-01T00:01:30Z  manual   verified  1.50 MiB  -")
        );
        assert!(
            lines[2].starts_with(
                "  0190c3a1-0000-7000-8000-00000000000f  1970-01-01T00:00:30Z  sleep    failed    -         too large: xxx"
            ),
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with('…'), "{}", lines[2]);
        assert_eq!(truncate("short", 60), "short");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn restore_asks_on_a_terminal_and_says_when_the_files_come_back() {
        assert_eq!(confirm_mode(true, false), Confirm::No);
        assert_eq!(confirm_mode(false, true), Confirm::Ask);
        assert_eq!(confirm_mode(false, false), Confirm::Refuse);
        assert!(confirmed("y\n") && confirmed(" YES ") && !confirmed("") && !confirmed("nope"));

        let q = restore_question(&verified(), "my-go", "running");
        assert!(q.contains("now?") && q.contains("safety snapshot"), "{q}");
        assert!(q.contains("1970-01-01 00:01 UTC, manual, 1.50 MiB"), "{q}");
        let q = restore_question(&verified(), "my-go", "stopped");
        assert!(q.contains("It is stopped: the snapshot's files are restored when it next starts"));

        let now = RestoreOutcome {
            snapshot: verified(),
            applied: "now".into(),
            safety_snapshot: Some("0190c3a9-0000-7000-8000-000000000009".into()),
        };
        let text = restored_text(&now, "my-go");
        assert!(
            text.starts_with(&format!(
                "Restored snapshot {ID} into session my-go now (your previous files were saved \
                 as snapshot 0190c3a9-0000-7000-8000-000000000009;"
            )),
            "{text}"
        );
        let later =
            RestoreOutcome { applied: "next_start".into(), safety_snapshot: None, ..now.clone() };
        assert_eq!(
            restored_text(&later, "my-go"),
            format!("Snapshot {ID} will be restored when session my-go next starts.")
        );
    }
}
