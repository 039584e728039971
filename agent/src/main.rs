//! `burstflare-agent`: the small static binary injected into every session container; see the
//! library docs and docs/agent.md.
//!
//! ```text
//! burstflare-agent --version | version
//! burstflare-agent supervise [--listen ADDR] [--exit-with-command] [-- COMMAND [ARGS...]]
//! burstflare-agent sftp-server        (hidden: started by the SSH server for the sftp subsystem)
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;

use burstflare_agent::connect::Secrets;
use burstflare_agent::spawn::SECRET_VARS;
use burstflare_agent::{DEFAULT_LISTEN, VERSION, sftp, supervise};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "burstflare-agent", version, about = "BurstFlare's in-container session agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Be the container's init: run COMMAND, reap zombies, forward signals, serve the HTTP API,
    /// SSH, browser terminals and snapshots.
    Supervise {
        /// Address of the HTTP API (GET /ready, GET|POST /activity, GET /ssh, GET /pty,
        /// POST /snapshot/pack, POST /snapshot/restore).
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Exit with the command's exit code when it exits (default: keep serving).
        #[arg(long, requires = "command")]
        exit_with_command: bool,
        /// The command to supervise, after `--` (none: just serve).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Serve SFTP on stdin/stdout (started by the SSH server for the sftp subsystem).
    #[command(hide = true)]
    SftpServer,
    /// Print the version (same as --version).
    Version,
}

/// Reads the agent's secrets and removes them from the environment, so that nothing started
/// later (the command, shells) inherits them.
fn take_secrets() -> Secrets {
    let take = |name: &str| {
        let value = std::env::var(name).ok().filter(|value| !value.is_empty());
        // SAFETY: this runs first thing in `main`, before any thread exists, so nothing reads the
        // environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var(name);
        }
        value
    };
    let [token, host_key, session_user] = SECRET_VARS;
    Secrets { token: take(token), host_key: take(host_key), session_user: take(session_user) }
}

fn main() {
    let secrets = take_secrets();
    match Cli::parse().command {
        Command::Version => println!("burstflare-agent {VERSION}"),
        Command::SftpServer => std::process::exit(sftp::run()),
        Command::Supervise { listen, exit_with_command, command } => {
            let options = supervise::Options { listen, exit_with_command, command, secrets };
            std::process::exit(supervise::run(options));
        }
    }
}
