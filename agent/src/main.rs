//! `burstflare-agent`: the small static binary injected into every session container; see the
//! library docs and docs/agent.md.
//!
//! ```text
//! burstflare-agent --version | version
//! burstflare-agent supervise [--listen ADDR] [--exit-with-command] [-- COMMAND [ARGS...]]
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;

use burstflare_agent::{DEFAULT_LISTEN, VERSION, supervise};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "burstflare-agent", version, about = "BurstFlare's in-container session agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Be the container's init: run COMMAND, reap zombies, forward signals, serve the HTTP API.
    Supervise {
        /// Address of the HTTP API (GET /ready, GET|POST /activity).
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Exit with the command's exit code when it exits (default: keep serving).
        #[arg(long, requires = "command")]
        exit_with_command: bool,
        /// The command to supervise, after `--` (none: just serve).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print the version (same as --version).
    Version,
}

fn main() {
    match Cli::parse().command {
        Command::Version => println!("burstflare-agent {VERSION}"),
        Command::Supervise { listen, exit_with_command, command } => {
            let code = supervise::run(supervise::Options { listen, exit_with_command, command });
            std::process::exit(code);
        }
    }
}
