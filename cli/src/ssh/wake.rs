//! Before connecting: a sleeping or stopped session is started, one on its way (provisioning,
//! starting, stopping) waited for, with its state changes on stderr, until it is running.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use sdk::{ClientError, SessionDetail};

use crate::fail::{Exit, Failure};
use crate::session::Authed;

/// How long flare waits for a session to be running.
pub const WAKE_LIMIT: Duration = Duration::from_secs(300);
/// How often the session's state is read while waiting.
const POLL: Duration = Duration::from_millis(150);
/// A start that was accepted but left the session sleeping or stopped is asked again after this.
const START_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// What to do about a session in its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Ready,
    /// Ask for `start`.
    Start,
    /// It is on its way somewhere; look again.
    Wait,
    /// It will not get to running by itself.
    Fail {
        code: &'static str,
        message: String,
        hint: String,
    },
}

pub fn step(s: &SessionDetail) -> Step {
    let name = &s.name;
    match s.state.as_str() {
        "running" => Step::Ready,
        "sleeping" | "stopped" => Step::Start,
        "failed" => Step::Fail {
            code: "session_failed",
            message: match s.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => format!("session {name} failed: {e}"),
                None => format!("session {name} failed"),
            },
            hint: format!(
                "`flare session why {name}` shows what went wrong; `flare session restart {name}` \
                 tries again"
            ),
        },
        "deleting" | "deleted" => Step::Fail {
            code: "session_deleted",
            message: format!("session {name} is {}", s.state),
            hint: "`flare session create --template NAME` starts a new one".into(),
        },
        // provisioning, starting, stopping, and states this flare does not know yet.
        _ => Step::Wait,
    }
}

/// Progress on stderr: a spinner on a terminal, else one line per state.
struct Progress {
    name: String,
    bar: Option<ProgressBar>,
    last: Option<String>,
}

impl Progress {
    fn new(name: &str) -> Self {
        Self { name: name.to_string(), bar: None, last: None }
    }

    fn show(&mut self, state: &str) {
        if self.last.as_deref() == Some(state) {
            return;
        }
        self.last = Some(state.to_string());
        let message = format!("Waking session {} ({state})", self.name);
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(100));
                b
            });
            bar.set_message(message);
        } else {
            eprintln!("flare: session {} is {state}", self.name);
        }
    }

    fn done(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if self.last.is_some() && !std::io::stderr().is_terminal() {
            eprintln!("flare: session {} is running", self.name);
        }
    }
}

/// `s` once it is running, starting it when it sleeps or is stopped. `id` is what the user
/// named it by (its name or ID).
pub async fn until_running(
    authed: &mut Authed<'_>,
    ws: &str,
    id: &str,
    mut s: SessionDetail,
) -> anyhow::Result<SessionDetail> {
    let deadline = Instant::now() + WAKE_LIMIT;
    let mut progress = Progress::new(&s.name);
    let mut asked: Option<Instant> = None;
    loop {
        match step(&s) {
            Step::Ready => {
                progress.done();
                return Ok(s);
            }
            Step::Fail { code, message, hint } => {
                progress.done_quietly();
                return Err(Failure::new(Exit::Error, code, message).hint(hint).into());
            }
            Step::Start if asked.is_none_or(|at| at.elapsed() >= START_AGAIN_AFTER) => {
                progress.show(&s.state);
                asked = Some(Instant::now());
                match authed.call(async |c| c.session_op(ws, id, "start", false).await).await {
                    Ok(next) => s = next,
                    // Refused because its state changed meanwhile: read it again below.
                    Err(e) if status(&e) == Some(409) => {}
                    Err(e) => {
                        progress.done_quietly();
                        return Err(e.context(format!("starting session {}", s.name)));
                    }
                }
                continue;
            }
            Step::Start | Step::Wait => progress.show(&s.state),
        }
        if Instant::now() >= deadline {
            progress.done_quietly();
            return Err(Failure::new(
                Exit::Error,
                "wait_timeout",
                format!(
                    "session {} is still {} after {} minutes",
                    s.name,
                    s.state,
                    WAKE_LIMIT.as_secs() / 60
                ),
            )
            .hint(format!(
                "`flare session events {} -f` follows it; connect again once it is running",
                s.name
            ))
            .into());
        }
        tokio::time::sleep(POLL).await;
        match authed.call(async |c| c.session(ws, id).await).await {
            Ok(next) => s = next,
            // A broken connection while waiting: ask again on the next round.
            Err(e) if is_transport(&e) => {}
            Err(e) => {
                progress.done_quietly();
                return Err(e);
            }
        }
    }
}

impl Progress {
    /// Ends the spinner without claiming the session is running.
    fn done_quietly(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.last = None;
    }
}

fn status(e: &anyhow::Error) -> Option<u16> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>()).and_then(ClientError::status)
}

fn is_transport(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<ClientError>(), Some(ClientError::Transport { .. })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn session(state: &str) -> SessionDetail {
        SessionDetail {
            id: "0190c3a2-0000-7000-8000-000000000001".into(),
            name: "dev".into(),
            state: state.into(),
            template: "go".into(),
            version: "3".into(),
            owner: sdk::UserRef { id: "u1".into(), display_name: "Alice".into() },
            node: None,
            workflow_id: "session-x".into(),
            created_at: 0,
            updated_at: 0,
            started_at: None,
            stopped_at: None,
            last_active_at: None,
            error: None,
        }
    }

    #[test]
    fn sleeping_and_stopped_sessions_are_started_and_the_rest_waited_for() {
        assert_eq!(step(&session("running")), Step::Ready);
        assert_eq!(step(&session("sleeping")), Step::Start);
        assert_eq!(step(&session("stopped")), Step::Start);
        for s in ["provisioning", "starting", "stopping", "hibernating"] {
            assert_eq!(step(&session(s)), Step::Wait, "{s}");
        }
    }

    #[test]
    fn failed_and_deleted_sessions_say_why_and_what_to_do() {
        let mut s = session("failed");
        s.error = Some("the image could not be pulled".into());
        let Step::Fail { code, message, hint } = step(&s) else { panic!("not a failure") };
        assert_eq!(code, "session_failed");
        assert_eq!(message, "session dev failed: the image could not be pulled");
        assert!(hint.contains("flare session why dev"), "{hint}");
        assert!(matches!(step(&session("deleting")), Step::Fail { code: "session_deleted", .. }));
    }
}
