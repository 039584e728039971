//! `burstflare`: the server binary. One binary, split by subcommand: `dev` runs everything on
//! one machine; production runs `serve`, `worker` and `node` against PostgreSQL, S3 and a
//! Temporal cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use burstflare_api::dev::{self, DevOptions};
use burstflare_api::workers::Workers;
use burstflare_api::{AppState, http, temporal};
use domain::{Config, Store};

#[derive(Parser)]
#[command(
    name = "burstflare",
    version,
    about = "BurstFlare: self-hosted cloud development sessions"
)]
struct Cli {
    /// Configuration file (TOML). `BURSTFLARE_*` variables override it; see docs/configuration.md.
    #[arg(long, global = true, env = "BURSTFLARE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform on this machine on embedded defaults: SQLite, an embedded S3
    /// server, a Temporal dev server, a local OCI registry, the workers and the API.
    Dev {
        /// Where every piece keeps its data; a second start on the same directory keeps it.
        #[arg(long, default_value = ".burstflare", value_name = "DIR")]
        data_dir: PathBuf,
        /// Port of the API and web UI on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run the API and web UI (stateless; run as many as you like).
    Serve,
    /// Run the control-plane Temporal worker (workflows and control activities).
    Worker,
    /// Run a runtime host's worker: polls the task queue `node-<id>` and drives this host's Docker.
    Node {
        /// This host's id (overrides `node.id`).
        #[arg(long)]
        id: Option<String>,
    },
    /// Run a template builder: polls the build task queue (`build.task_queue`), builds images
    /// with this host's Docker and pushes them to the registry. Needs Docker, object storage and
    /// the registry, not the database.
    Builder,
    /// Apply pending database migrations to the configured database.
    Migrate,
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create the first user (owner of a personal workspace) and print an API token and
    /// recovery codes for it: for headless installs and tests. Refuses to run twice unless
    /// --force.
    Bootstrap {
        #[arg(long)]
        email: String,
        /// Display name (default: the part of the email before the @).
        #[arg(long)]
        name: Option<String>,
        /// Use the database of a `burstflare dev` install in DIR (also while it runs)
        /// instead of the configured one.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Run even though users exist.
        #[arg(long)]
        force: bool,
        /// Lifetime of the printed API token, 1 to 366 days.
        #[arg(long, default_value_t = 30)]
        token_days: u32,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the effective configuration with secrets redacted.
    Config,
    /// The runtime catalog exactly as the database records it (docs/catalog.md): print the
    /// catalog file (`catalog.toml`) of the latest revision, write it, list the revisions, or
    /// publish the latest one to the Cloudflare target now.
    Catalog {
        /// Show this revision instead of the latest.
        #[arg(long, value_name = "N")]
        revision: Option<u64>,
        /// Write the catalog file here instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// List the latest revisions (revision, reason, template, time) instead.
        #[arg(long)]
        history: bool,
        /// Render, check and (with credentials) deploy the latest revision to the Cloudflare
        /// target configured in `[cloudflare]`, as every promotion does; for after a failed
        /// publish.
        #[arg(long, conflicts_with_all = ["revision", "out", "history"])]
        publish: bool,
        /// Use the database of a `burstflare dev` install in DIR instead of the configured one.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the SelfCheck workflow through the configured Temporal and workers, and print it.
    SelfCheck {
        /// Also ask this runtime host's worker for its Docker version.
        #[arg(long)]
        node: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("BURSTFLARE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,burstflare=info,burstflare_api=info,domain=info,\
             activities=info,workflows=info",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref(), std::env::vars())?)
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    use secrecy::ExposeSecret;
    let url = config.database.url.expose_secret();
    Store::connect(url).await.with_context(|| {
        format!("connecting to the database {}", domain::config::redact_url_password(url))
    })
}

/// The store, refusing a database whose schema is older than this binary.
async fn open_migrated_store(config: &Config) -> anyhow::Result<Store> {
    let store = open_store(config).await?;
    let pending = store.pending_migrations().await?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database is missing migrations {pending:?}; run `burstflare migrate` first"
        );
    }
    Ok(store)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Dev { data_dir, port } => {
            dev::run(DevOptions { data_dir: data_dir.clone(), port: *port }).await
        }
        Command::Serve => {
            let config = load_config(&cli)?;
            let store = open_migrated_store(&config).await?;
            let listen = config.server.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen} (server.listen)"))?;
            let state = AppState::new(config, store)?;
            tracing::info!("serving on http://{listen}");
            http::serve(listener, http::router(state), async {
                let sig = dev::shutdown_signal().await;
                tracing::info!("{sig}: stopping");
            })
            .await?;
            Ok(())
        }
        Command::Worker => {
            let config = load_config(&cli)?;
            let store = open_migrated_store(&config).await?;
            let client = temporal::connect(&config.temporal).await?;
            let mut workers = Workers::new()?;
            workers.start_control(client, &config, store).await?;
            run_until_signal(workers).await
        }
        Command::Node { id } => {
            let mut config = load_config(&cli)?;
            if let Some(id) = id {
                config.node.id = id.clone();
                config.validate()?;
            }
            let docker = bollard::Docker::connect_with_unix(
                &config.docker.socket.to_string_lossy(),
                30,
                bollard::API_DEFAULT_VERSION,
            )?;
            docker.ping().await.with_context(|| {
                format!("Docker is not reachable at {}", config.docker.socket.display())
            })?;
            let store = open_migrated_store(&config).await?;
            let client = temporal::connect(&config.temporal).await?;
            let mut workers = Workers::new()?;
            workers.start_node(client, &config, docker, store).await?;
            run_until_signal(workers).await
        }
        Command::Builder => {
            let config = load_config(&cli)?;
            let docker = bollard::Docker::connect_with_unix(
                &config.docker.socket.to_string_lossy(),
                600,
                bollard::API_DEFAULT_VERSION,
            )?;
            docker.ping().await.with_context(|| {
                format!("Docker is not reachable at {}", config.docker.socket.display())
            })?;
            let client = temporal::connect(&config.temporal).await?;
            let mut workers = Workers::new()?;
            workers.start_builder(client, &config, docker).await?;
            run_until_signal(workers).await
        }
        Command::Migrate => {
            let config = load_config(&cli)?;
            let store = open_store(&config).await?;
            store.migrate().await.context("applying migrations")?;
            println!("database is up to date");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Bootstrap { email, name, data_dir, force, token_days, output },
        } => {
            let store = match data_dir {
                Some(dir) => dev_store(dir).await?,
                None => open_store(&load_config(&cli)?).await?,
            };
            store.migrate().await.context("applying migrations")?;
            let out =
                burstflare_api::bootstrap::run(&store, email, name.as_deref(), *force, *token_days)
                    .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&out)?),
                Output::Text => {
                    println!("created {} (workspace {})", out.email, out.workspace);
                    println!("API token (shown once; use as `Authorization: Bearer`):");
                    println!("{}", out.token);
                    println!("recovery codes (shown once; sign in at /recover to add a passkey):");
                    for code in &out.recovery_codes {
                        println!("{code}");
                    }
                }
            }
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Catalog { revision, out, history, publish, data_dir, output },
        } => {
            let config = load_config(&cli)?;
            let store = match data_dir {
                Some(dir) => dev_store(dir).await?,
                None => open_migrated_store(&config).await?,
            };
            let json = *output == Output::Json;
            if *history {
                let revisions = store.catalog_revisions(50).await?;
                if json {
                    let list: Vec<_> = revisions
                        .iter()
                        .map(|(r, reason, t, at)| {
                            serde_json::json!({ "revision": r, "reason": reason, "template_id": t, "created_at": at })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!("{:>8}  {:<24}  {:<36}  CREATED", "REVISION", "REASON", "TEMPLATE");
                    for (r, reason, t, at) in &revisions {
                        let when = chrono::DateTime::from_timestamp_millis(*at)
                            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_default();
                        println!(
                            "{r:>8}  {reason:<24}  {:<36}  {when}",
                            t.as_deref().unwrap_or("-")
                        );
                    }
                }
                return Ok(());
            }
            if *publish {
                let Some(cf) =
                    activities::promotion::CloudflarePublisher::from_config(&config.cloudflare)
                else {
                    anyhow::bail!(
                        "no Cloudflare target: set cloudflare.bundle_dir (and account_id and \
                         api_token to deploy), see docs/catalog.md"
                    );
                };
                let doc = store.catalog().await?;
                let revision = doc.revision;
                let creds = cf.credentials.as_ref().map(|(a, t)| deploy::publish::Credentials {
                    account_id: a.clone(),
                    api_token: t.clone(),
                });
                let done = tokio::task::spawn_blocking(move || {
                    deploy::publish::publish(
                        &cf.bundle_dir,
                        &doc,
                        &cf.target,
                        &cf.wrangler_dir,
                        creds.as_ref(),
                    )
                })
                .await??;
                let (outcome, at) = match done {
                    deploy::publish::Published::Done { revision, deployed: true } => {
                        ("deployed", revision)
                    }
                    deploy::publish::Published::Done { revision, deployed: false } => {
                        ("checked", revision)
                    }
                    deploy::publish::Published::Skipped { published } => ("skipped", published),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "outcome": outcome, "revision": at, "latest": revision })
                    );
                } else {
                    match outcome {
                        "deployed" => println!("revision {at} checked and deployed to Cloudflare"),
                        "checked" => println!(
                            "revision {at} rendered and checked with wrangler's dry run; not deployed \
                             (set cloudflare.account_id and cloudflare.api_token to deploy)"
                        ),
                        _ => println!(
                            "revision {at} is published already (the latest is {revision})"
                        ),
                    }
                }
                return Ok(());
            }
            let doc = match revision {
                Some(n) => store
                    .catalog_revision(*n)
                    .await?
                    .map(|(doc, ..)| doc)
                    .with_context(|| format!("there is no catalog revision {n}"))?,
                None => store.catalog().await?,
            };
            let text = if json {
                serde_json::to_string_pretty(&doc)? + "\n"
            } else {
                deploy::catalog::render(&doc)
            };
            match out {
                Some(path) => {
                    std::fs::write(path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote catalog revision {} to {}", doc.revision, path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Admin { command: AdminCommand::Config } => {
            let config = load_config(&cli)?;
            print!("{}", config.redacted());
            Ok(())
        }
        Command::Admin { command: AdminCommand::SelfCheck { node, timeout } } => {
            let config = load_config(&cli)?;
            let client = temporal::connect(&config.temporal).await?;
            let out = temporal::run_self_check(
                &client,
                &config.temporal.task_queue,
                node.clone(),
                Duration::from_secs(*timeout),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

/// The database of a `burstflare dev` install in `dir`.
async fn dev_store(dir: &std::path::Path) -> anyhow::Result<Store> {
    let db = dir.join("burstflare.db");
    if !db.exists() {
        anyhow::bail!(
            "{} has no burstflare.db: is it the --data-dir of `burstflare dev`?",
            dir.display()
        );
    }
    Ok(Store::connect(&format!("sqlite://{}?mode=rwc", db.display())).await?)
}

async fn run_until_signal(mut workers: Workers) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        sig = dev::shutdown_signal() => { tracing::info!("{sig}: stopping"); Ok(()) }
        e = workers.any_stopped() => e,
    };
    workers.shutdown().await;
    outcome
}
