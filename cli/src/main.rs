//! `flare`: the BurstFlare command-line client. It depends on the `sdk` crate only.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "flare",
    version,
    about = "The BurstFlare CLI: start, reach and manage cloud development sessions"
)]
struct Cli {
    /// BurstFlare server URL.
    #[arg(long, global = true, env = "FLARE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Output format.
    #[arg(long, global = true, value_enum, env = "FLARE_OUTPUT", default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show the version of this CLI and of the server it talks to.
    Version,
    /// Show the health of the server and each of its dependencies.
    Health,
}

#[derive(serde::Serialize)]
struct VersionOutput {
    client: String,
    server: Option<sdk::VersionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = sdk::Client::new(&cli.server)?;
    match cli.command {
        Command::Version => {
            let (server, server_error) = match client.version().await {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let out =
                VersionOutput { client: env!("CARGO_PKG_VERSION").into(), server, server_error };
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&out)?),
                Output::Text => {
                    println!("flare {}", out.client);
                    match (&out.server, &out.server_error) {
                        (Some(v), _) => {
                            println!("server {} (API {}) at {}", v.version, v.api, cli.server)
                        }
                        (None, Some(e)) => println!("server: unavailable ({e})"),
                        (None, None) => {}
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Health => {
            let health = client.health().await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&health)?),
                Output::Text => {
                    for (name, value) in &health.checks {
                        println!("{name:<10} {value}");
                    }
                }
            }
            Ok(if health.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
    }
}
