//! The browser terminal: `GET /pty` with a WebSocket client.

use std::path::Path;
use std::time::Duration;

use burstflare_agent::terminal::TerminalControl;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::Agent;
use crate::support::{BridgeHeaders, TOKEN, Ws, connect};

/// A browser terminal connection and everything it has shown so far.
struct Term {
    ws: Ws,
    shown: String,
    controls: Vec<TerminalControl>,
    closed: bool,
}

fn headers() -> BridgeHeaders {
    BridgeHeaders { token: Some(TOKEN.to_string()), authorized_keys: String::new() }
}

impl Term {
    async fn open(port: u16, query: &str) -> Term {
        let ws = connect(port, &format!("/pty?{query}"), &headers()).await.unwrap();
        Term { ws, shown: String::new(), controls: Vec::new(), closed: false }
    }

    async fn type_in(&mut self, text: &str) {
        self.ws.send(Message::binary(text.as_bytes().to_vec())).await.unwrap();
    }

    async fn resize(&mut self, cols: u16, rows: u16) {
        let json = serde_json::to_string(&TerminalControl::Resize { cols, rows }).unwrap();
        self.ws.send(Message::text(json)).await.unwrap();
    }

    /// Reads one message (10 s deadline); false once the socket is closed.
    async fn read_one(&mut self) -> bool {
        let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await;
        let message =
            next.unwrap_or_else(|_| panic!("nothing for 10 s; shown so far:\n{}", self.shown));
        match message {
            Some(Ok(Message::Binary(data))) => self.shown.push_str(&String::from_utf8_lossy(&data)),
            Some(Ok(Message::Text(text))) => {
                self.controls.push(serde_json::from_str(&text).unwrap())
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => self.closed = true,
            Some(Ok(_)) => {}
        }
        !self.closed
    }

    /// Reads until `needle` has been shown; returns the output after the needle's start.
    async fn until(&mut self, needle: &str) -> String {
        while !self.shown.contains(needle) {
            assert!(
                self.read_one().await,
                "closed before {needle:?} showed; shown:\n{}",
                self.shown
            );
        }
        let start = self.shown.find(needle).unwrap_or(0);
        self.shown[start..].to_string()
    }

    /// Reads until the socket closes; returns the control messages received.
    async fn until_closed(&mut self) -> Vec<TerminalControl> {
        while self.read_one().await {}
        self.controls.clone()
    }

    /// Runs `echo pid=$$` and returns the shell's pid.
    async fn shell_pid(&mut self, tag: &str) -> u32 {
        self.type_in(&format!("echo {tag}=$$\r")).await;
        // The echoed command line shows `tag=$$`; the output shows digits.
        loop {
            if let Some(rest) = self
                .shown
                .split(&format!("{tag}="))
                .skip(1)
                .find(|s| s.starts_with(|c: char| c.is_ascii_digit()))
            {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if rest.len() > digits.len() {
                    return digits.parse().unwrap();
                }
            }
            assert!(self.read_one().await, "closed; shown:\n{}", self.shown);
        }
    }
}

fn agent() -> Agent {
    Agent::start_with_env(&[], &[("BURSTFLARE_AGENT_TOKEN", TOKEN)])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_browser_terminal_runs_a_shell_resizes_and_reports_its_exit() {
    let agent = agent();
    runtime().block_on(async {
        let mut term = Term::open(agent.port, "cols=100&rows=30").await;
        term.type_in("echo hi-$((6*7))\r").await;
        term.until("hi-42").await;
        term.type_in("stty size; echo term=$TERM\r").await;
        term.until("30 100").await;
        term.until("term=xterm-256color").await;

        term.resize(120, 40).await;
        term.type_in("stty size\r").await;
        term.until("40 120").await;

        term.type_in("exit 7\r").await;
        let controls = term.until_closed().await;
        assert_eq!(controls, vec![TerminalControl::Exit { code: 7 }]);
    });
}

#[test]
fn a_terminal_with_a_tid_survives_a_drop_and_can_be_taken_over() {
    let agent = agent();
    runtime().block_on(async {
        let mut first = Term::open(agent.port, "tid=tab-1&cols=80&rows=24").await;
        let pid = first.shell_pid("pid").await;
        first.type_in("echo marker-$((1+1))\r").await;
        first.until("marker-2").await;
        drop(first);

        // Reattach: the scrollback comes first, then the same shell answers.
        let mut second = Term::open(agent.port, "tid=tab-1&cols=90&rows=20").await;
        second.until("marker-2").await;
        assert_eq!(second.shell_pid("again").await, pid);
        second.type_in("stty size\r").await;
        second.until("20 90").await;

        // A third connection takes over: the second is told why and closed.
        let mut third = Term::open(agent.port, "tid=tab-1").await;
        let controls = second.until_closed().await;
        assert!(
            matches!(controls.as_slice(), [TerminalControl::Closing { reason }] if reason.contains("another window")),
            "{controls:?}"
        );
        assert_eq!(third.shell_pid("third").await, pid);
        third.type_in("exit\r").await;
        assert_eq!(third.until_closed().await, vec![TerminalControl::Exit { code: 0 }]);

        // After the exit the tid names nothing: a new connection gets a new shell.
        let mut fourth = Term::open(agent.port, "tid=tab-1").await;
        assert_ne!(fourth.shell_pid("fourth").await, pid);
    });
}

#[test]
fn a_terminal_without_a_tid_ends_when_its_socket_drops() {
    let agent = agent();
    runtime().block_on(async {
        let mut term = Term::open(agent.port, "").await;
        let pid = term.shell_pid("pid").await;
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(term);
        crate::common::wait_for("the shell to end", Duration::from_secs(10), || {
            // Gone, or a zombie not reaped yet.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        });
    });
    crate::common::wait_for("no children left", Duration::from_secs(10), || {
        crate::common::children(agent.pid()).is_empty()
    });
}

#[test]
fn bad_terminal_parameters_are_400s_that_name_the_parameter() {
    let agent = agent();
    runtime().block_on(async {
        for (query, name) in [
            ("cols=0", "cols"),
            ("rows=1001", "rows"),
            ("cols=abc", "cols"),
            ("tid=a%20b", "tid"),
            (&format!("tid={}", "x".repeat(65)), "tid"),
        ] {
            match connect(agent.port, &format!("/pty?{query}"), &headers()).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status().as_u16(), 400, "{query}");
                    let body =
                        String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                            .into_owned();
                    assert!(body.contains(&format!("invalid {name}")), "{query}: {body}");
                }
                other => panic!("{query}: {:?}", other.map(|_| ())),
            }
        }
        let unauthorized =
            BridgeHeaders { token: Some("nope".to_string()), authorized_keys: String::new() };
        match connect(agent.port, "/pty", &unauthorized).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn an_unknown_session_user_gets_a_closing_message() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let agent = Agent::start_with_env(
        &[],
        &[("BURSTFLARE_AGENT_TOKEN", TOKEN), ("BURSTFLARE_SESSION_USER", "no-such-user-here")],
    );
    runtime().block_on(async {
        let mut term = Term::open(agent.port, "").await;
        let controls = term.until_closed().await;
        assert!(
            matches!(controls.as_slice(), [TerminalControl::Closing { reason }] if reason.contains("no-such-user-here")),
            "{controls:?}"
        );
    });
}
