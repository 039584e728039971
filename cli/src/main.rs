//! `flare`: the BurstFlare command-line client. It depends on the `sdk` crate only.

mod commands;
mod fail;
mod output;
mod session;
mod ssh;
mod store;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::commands::session::Op;
use crate::commands::{auth, config, ssh as ssh_cmd, template, workspace};
use crate::fail::{Exit, Failure};
use crate::output::Output;
use crate::session::Ctx;

pub const DEFAULT_PROFILE: &str = "default";

const LONG_ABOUT: &str = "\
The BurstFlare CLI: start, reach and manage cloud development sessions.

Sign in with `flare auth login`, pick a default workspace with `flare workspace switch SLUG`.
Each profile (--profile) has its own server, default workspace and credentials; see `flare config`.";

const AFTER_LONG_HELP: &str = "\
Exit codes:
  0  success
  1  error
  2  usage: unknown command, flag or value, or a missing one
  3  not signed in, or the sign-in expired or was revoked: run `flare auth login`
  4  not found (or not yours)
  5  server unreachable
`flare ssh` and `flare port-forward` exit with ssh's status once ssh runs (255: no connection).

Files: $FLARE_CONFIG_DIR, else $XDG_CONFIG_HOME/burstflare, else ~/.config/burstflare
(config.toml, credentials.toml, ssh/ with flare's SSH key and the sessions' host keys).
FLARE_TOKEN, when set, is used instead of stored credentials.";

#[derive(Parser)]
#[command(
    name = "flare",
    version,
    about = "The BurstFlare CLI: start, reach and manage cloud development sessions",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100,
    // The global options come after each command's own in its help.
    next_display_order = 100
)]
struct Cli {
    /// BurstFlare server URL [default: the profile's `server`, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "FLARE_SERVER", value_name = "URL", hide_env_values = true)]
    server: Option<String>,
    /// Workspace to act on [default: the profile's `workspace`]
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "FLARE_WORKSPACE",
        value_name = "SLUG",
        hide_env_values = true
    )]
    workspace: Option<String>,
    /// Configuration profile: its own server, default workspace and credentials
    #[arg(
        long,
        global = true,
        env = "FLARE_PROFILE",
        value_name = "NAME",
        default_value = DEFAULT_PROFILE,
        value_parser = parse_profile,
        hide_env_values = true
    )]
    profile: String,
    /// Output format
    #[arg(long, global = true, value_enum, env = "FLARE_OUTPUT", default_value_t = Output::Text, hide_env_values = true)]
    output: Output,
    /// flare's configuration directory, instead of $FLARE_CONFIG_DIR and the default (written
    /// into ProxyCommands so they use the same files)
    #[arg(long, global = true, value_name = "DIR", hide = true)]
    config_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the version of this CLI and of the server it talks to
    Version,
    /// Show the health of the server and each of its dependencies
    Health,
    /// Sign in and out, and show who you are signed in as
    #[command(subcommand)]
    Auth(AuthCommand),
    /// List your workspaces, pick the default one, see members and invite people
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Create templates, upload and build versions, promote them to new sessions
    #[command(subcommand, long_about = TEMPLATE_LONG_ABOUT)]
    Template(TemplateCommand),
    /// Create dev sessions from templates; start, stop, sleep, restart and delete them
    #[command(subcommand, long_about = SESSION_LONG_ABOUT)]
    Session(SessionCommand),
    /// Save, list, restore and delete snapshots of a session's persisted paths
    #[command(subcommand, long_about = commands::snapshot::LONG_ABOUT)]
    Snapshot(commands::snapshot::SnapshotCommand),
    /// Open a shell in a session, or run a command there, with the system's ssh
    #[command(long_about = SSH_LONG_ABOUT)]
    Ssh(SshArgs),
    /// Forward a local port to a port inside a session (over SSH)
    #[command(long_about = PORT_FORWARD_LONG_ABOUT)]
    PortForward {
        /// The session: its name, its ID, or SESSION.WORKSPACE.burstflare
        session: String,
        /// LOCAL:REMOTE, e.g. 8080:3000; REMOTE may be HOST:PORT inside the session
        #[arg(value_name = "LOCAL:REMOTE")]
        ports: String,
        /// Private key to log in with (its .pub next to it) [default: flare's own key]
        #[arg(short, long, value_name = "PATH")]
        identity: Option<std::path::PathBuf>,
        /// One more argument for ssh, e.g. --ssh-arg=-v (repeatable)
        #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
        ssh_arg: Vec<String>,
    },
    /// Let ssh, scp, sftp and editors reach sessions as SESSION.WORKSPACE.burstflare
    #[command(long_about = SSH_CONFIG_LONG_ABOUT)]
    SshConfig {
        /// Remove the Include line and ~/.ssh/burstflare_config again
        #[arg(long, conflicts_with = "print")]
        remove: bool,
        /// Print the Host block instead of writing anything
        #[arg(long)]
        print: bool,
    },
    /// List, add and remove the SSH public keys you log in to sessions with
    #[command(subcommand, long_about = SSH_KEY_LONG_ABOUT)]
    SshKey(SshKeyCommand),
    /// Read and change the settings of a profile
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script for bash, zsh or fish
    #[command(long_about = "\
Print a shell completion script for bash, zsh or fish to stdout.

  flare completion bash > ~/.local/share/bash-completion/completions/flare
  flare completion zsh > \"${fpath[1]}/_flare\"
  flare completion fish > ~/.config/fish/completions/flare.fish")]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Sign in: approve this device in a browser, or store an API token with --token
    #[command(long_about = "\
Sign in.

Without --token: asks the server for a one-time code, shows it with the page to approve it on
(and opens that page in a browser when there is a display), then waits for the approval. The CLI
gets a short-lived access token and a refresh token, renewed silently as needed.

With --token: reads an API token made in the web UI from stdin (or FLARE_TOKEN), checks it with
the server and stores it.")]
    Login {
        /// Do not open a browser; only print the page and the code
        #[arg(long)]
        no_browser: bool,
        /// Read an API token from stdin (or FLARE_TOKEN) instead of approving in a browser
        #[arg(long, conflicts_with = "no_browser")]
        token: bool,
    },
    /// Sign out: end this CLI login on the server and delete the local credentials
    Logout,
    /// Show the signed-in account and its workspaces with your role in each
    Whoami,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// List the workspaces you belong to (* marks the default one)
    List,
    /// Make SLUG the default workspace of the profile
    Switch {
        /// The workspace's slug, as `flare workspace list` shows it
        slug: String,
    },
    /// List the members of a workspace and their roles
    Members {
        /// The workspace [default: --workspace, else the profile's default]
        slug: Option<String>,
    },
    /// Invite someone by email and print the invite link
    Invite {
        /// Who to invite
        email: String,
        /// The role they get when they accept
        #[arg(long, value_enum)]
        role: workspace::InviteRole,
        /// Days until the link expires, 1 to 30 [default: 7]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=30))]
        days: Option<u32>,
    },
}

const TEMPLATE_LONG_ABOUT: &str = "\
Create templates, upload and build versions, promote them to new sessions.

A template is a named image recipe in a workspace: a directory with a burstflare.toml manifest and
a Dockerfile (the bundle). Each upload makes a new version (1, 2, …) and queues its build. New
sessions get the template's active version: the one last promoted (after a canary, an approval
when the workspace requires one, and a rollout to the runtime hosts), demoted or rolled back to.

  flare template upload go ./go-template -f
  flare template show go
  flare template promote go
  flare template catalog";

#[derive(Subcommand)]
enum TemplateCommand {
    /// Create an empty template (`upload` creates it too when needed)
    #[command(long_about = "\
Create an empty template in the workspace. `flare template upload` creates the template too when
it does not exist, so this is only needed to reserve a name or set a description first.

  flare template create go --description \"Go 1.23 with gopls\"")]
    Create {
        /// The template's name; must match `name` in the bundle's burstflare.toml
        name: String,
        /// What the template is for, shown in lists
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List the workspace's templates
    List,
    /// Show a template, its newest version and the manifest of its newest built version
    Show {
        /// The template's name, as `flare template list` shows it
        name: String,
    },
    /// Pack a directory into a bundle, upload it as a new version and queue its build
    #[command(long_about = "\
Pack DIR (burstflare.toml, Dockerfile and the files they use) into a bundle, check it, upload it
as the next version of template NAME (creating the template when it does not exist) and queue its
build. Nothing is sent to the server when the bundle or its manifest is invalid: every problem
found is printed as `error: FIELD: MESSAGE`.

With --follow, prints the build's log as it runs and exits 0 when the build succeeds, 1 when it
fails or is cancelled.

  flare template upload go ./go-template
  flare template upload go ./go-template --follow")]
    Upload {
        /// The template's name; must match `name` in DIR/burstflare.toml
        name: String,
        /// The bundle directory: burstflare.toml, Dockerfile and the build context
        dir: std::path::PathBuf,
        /// Description of the template, when this upload creates it
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Follow the build's log until it ends; exit with its result
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the log of a version's newest build; with -f follow it until the build ends
    #[command(long_about = "\
Print the log of the newest build of VERSION (default: the newest version), or of build ID with
--build. With --follow, keeps printing new lines (polling every second) until the build ends,
then prints its result and exits 0 when it succeeded, 1 when it failed or was cancelled.

  flare template logs go
  flare template logs go 3 -f
  flare template logs go --build 0190c3a2-… --output json")]
    Logs {
        /// The template's name
        name: String,
        /// The version, e.g. 3 [default: the newest version]
        version: Option<String>,
        /// Follow the log until the build ends; exit with its result
        #[arg(short, long)]
        follow: bool,
        /// A build attempt's ID (from `flare template builds`) instead of a version's newest build
        #[arg(long, value_name = "ID", conflicts_with = "version")]
        build: Option<String>,
    },
    /// List a template's versions, newest first
    Versions {
        /// The template's name
        name: String,
    },
    /// List a template's builds (every attempt), newest first
    Builds {
        /// The template's name
        name: String,
    },
    /// Build a version again after its build failed or was cancelled
    Retry {
        /// The template's name
        name: String,
        /// The version, e.g. 3 [default: the newest version]
        version: Option<String>,
    },
    /// Cancel the running build of a version
    Cancel {
        /// The template's name
        name: String,
        /// The version, e.g. 3 [default: the newest version]
        version: Option<String>,
    },
    /// Archive a template: new sessions can no longer use it (running ones are not touched)
    Archive {
        /// The template's name
        name: String,
    },
    #[command(flatten)]
    Promotion(commands::promotion::PromotionCommand),
}

const SESSION_LONG_ABOUT: &str = "\
Create dev sessions from templates; start, stop, sleep, restart and delete them.

A session is one container started from a template version. Commands that change a session wait
until it gets where they take it (--no-wait returns at once) and exit 1 when it fails instead.
Every command takes the session's name or its ID.

  flare session create --template go --name my-go
  flare session list
  flare session stop my-go
  flare session why my-go";

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session from a template and wait until it is running
    #[command(long_about = "\
Create a session from a template version and wait until it is running (the server waits up to
about 2 minutes), then print it. Exits 1 when the session failed (its error is printed; `flare
session why NAME` says more) or is not running yet when the wait ends (it keeps starting on the
server). With --no-wait, prints the new session at once (state provisioning).

Each invocation sends a new idempotency key, so a request that is retried (after a broken
connection, say) never makes two sessions.

  flare session create --template go
  flare session create --template go --version 3 --name my-go
  flare session create -t go --no-wait --output json")]
    Create {
        /// The template, as `flare template list` shows it
        #[arg(short, long, value_name = "NAME")]
        template: String,
        /// The template's version, e.g. 3 [default: its active version, else its newest built one]
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// The session's name, unique in the workspace [default: TEMPLATE-xxxx]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Do not wait until it is running; print it as soon as the server has accepted it
        #[arg(long)]
        no_wait: bool,
    },
    /// List the workspace's sessions (with --all also stopped and failed ones)
    #[command(long_about = "\
List the workspace's active sessions: name, state, template, owner, age and last update.
With --all, also the stopped and failed ones.

  flare session list
  flare session list --all --output json")]
    List {
        /// Also list stopped and failed sessions
        #[arg(long)]
        all: bool,
    },
    /// Show a session: state, template version, owner, node and times
    Show {
        /// The session's name or ID
        id: String,
    },
    /// Start a stopped or sleeping session and wait until it is running
    Start(SessionOpArgs),
    /// Stop a session and wait until it is stopped
    Stop(SessionOpArgs),
    /// Put a running session to sleep and wait until it sleeps
    Sleep(SessionOpArgs),
    /// Restart a session and wait until it is running again
    Restart(SessionOpArgs),
    /// Delete a session: stop it, remove its container and free its name (asks first)
    #[command(long_about = "\
Delete a session: it is stopped, its container removed and its name freed. Waits until it is
deleted unless --no-wait is given.

Asks for confirmation when stdin is a terminal; otherwise (scripts, CI) --yes is required and
without it nothing is deleted (exit 2).

  flare session delete my-go
  flare session delete my-go --yes --no-wait")]
    Delete {
        /// The session's name or ID
        id: String,
        /// Return as soon as the server has accepted the deletion
        #[arg(long)]
        no_wait: bool,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
    },
    /// Print a session's history; with -f follow it until the session is deleted
    #[command(long_about = "\
Print a session's history, oldest first, one event a line: `SEQ  TIME  KIND  DETAIL` (times in
UTC). With --follow, keeps printing new events (polling every 2 seconds) until the session is
deleted or Ctrl-C. With --output json, prints one array of every event read, at the end.

  flare session events my-go
  flare session events my-go -f")]
    Events {
        /// The session's name or ID
        id: String,
        /// Follow new events until the session is deleted (or Ctrl-C)
        #[arg(short, long)]
        follow: bool,
    },
    /// Explain what a session is doing: its step, deadlines, pending operations and last error
    #[command(long_about = "\
Explain what a session's workflow is doing: its state, the step in progress and its attempts,
when it goes to sleep if idle and when it is stopped whatever happens (relative and in UTC), the
operations accepted and not yet applied, its node, its container generation and its last error.

  flare session why my-go")]
    Why {
        /// The session's name or ID
        id: String,
    },
}

#[derive(clap::Args)]
struct SessionOpArgs {
    /// The session's name or ID
    id: String,
    /// Return as soon as the server has accepted the operation
    #[arg(long)]
    no_wait: bool,
}

const SSH_LONG_ABOUT: &str = "\
Open a shell in a session, or run COMMAND there, with the system's OpenSSH client.

flare makes sure its key is registered (it makes one, ~/.config/burstflare/ssh/id_ed25519, on
first use), wakes the session when it sleeps or is stopped, pins the session's host key and then
runs `ssh` in its place, with `flare ssh --stdio` as the ProxyCommand: the connection goes over a
WebSocket to the server, nothing but HTTPS is needed. The exit status is ssh's (255 when the
connection fails).

  flare ssh my-go
  flare ssh my-go -- make test
  flare ssh my-go.acme.burstflare --ssh-arg=-A

With --stdio, flare is that ProxyCommand: it carries SSH between stdin/stdout and the session
(waking it first) until ssh closes it. `flare ssh-config` sets ssh up to use it directly.";

#[derive(clap::Args)]
struct SshArgs {
    /// The session: its name, its ID, or SESSION.WORKSPACE.burstflare
    session: String,
    /// A command to run instead of a login shell (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// Private key to log in with (its .pub next to it) [default: flare's own key]
    #[arg(short, long, value_name = "PATH")]
    identity: Option<std::path::PathBuf>,
    /// One more argument for ssh, e.g. --ssh-arg=-v or --ssh-arg=-L8080:127.0.0.1:8080
    /// (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    ssh_arg: Vec<String>,
    /// Be ssh's ProxyCommand: carry SSH between stdin/stdout and the session
    #[arg(long, conflicts_with_all = ["identity", "ssh_arg", "command"])]
    stdio: bool,
}

const PORT_FORWARD_LONG_ABOUT: &str = "\
Forward 127.0.0.1:LOCAL on this machine to REMOTE inside a session, over SSH (`ssh -N -L`), until
Ctrl-C. REMOTE is a port on the session's 127.0.0.1, or HOST:PORT as the session sees it (an IPv6
address in brackets). A single PORT forwards the same port.

  flare port-forward my-go 8080:3000
  flare port-forward my-go 5432:db.internal:5432";

const SSH_CONFIG_LONG_ABOUT: &str = "\
Write ~/.ssh/burstflare_config, a `Host *.burstflare` block whose ProxyCommand is `flare ssh
--stdio`, and include it from the first line of ~/.ssh/config (both made when missing, 0600 in a
0700 ~/.ssh). Then any SSH tool reaches a session as SESSION.WORKSPACE.burstflare, waking it when
needed: `ssh dev.acme.burstflare`, `scp f dev.acme.burstflare:`, editors' remote SSH.

Running it again changes nothing (or updates the block); --remove takes out exactly the line and
the file it added. flare's key is made and registered when needed. The block uses this profile,
configuration directory and, when given with --server or FLARE_SERVER, this server.

  flare ssh-config
  flare ssh-config --print
  flare ssh-config --remove";

const SSH_KEY_LONG_ABOUT: &str = "\
List, add and remove the SSH public keys you log in to sessions with. A session accepts only its
owner's registered keys. `flare ssh` registers flare's own key by itself; add others to use
plain ssh with your own key, or to use it from another machine.

  flare ssh-key list
  flare ssh-key add ~/.ssh/id_ed25519.pub --name laptop
  flare ssh-key remove laptop";

#[derive(Subcommand)]
enum SshKeyCommand {
    /// List your SSH keys: ID, name, type, fingerprint and when it was added
    List,
    /// Register a public key [default: flare's own, made when missing]
    Add {
        /// An OpenSSH public key file (`.pub`) [default: flare's own key]
        path: Option<std::path::PathBuf>,
        /// A name for it, 1 to 64 characters [default: flare@HOSTNAME]
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a key: sessions stop accepting it
    Remove {
        /// The key's ID, fingerprint or name, as `flare ssh-key list` shows them
        id: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a setting of the profile (nothing when it is not set)
    Get { key: config::Key },
    /// Change a setting of the profile
    Set { key: config::Key, value: String },
    /// Print every setting of the profile
    List,
    /// Remove a setting from the profile
    Unset { key: config::Key },
    /// List the profiles (* marks the one in use)
    Profiles,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn parse_profile(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("a profile name is 1 to 64 letters, digits, '-' or '_'".into())
    }
}

#[derive(serde::Serialize)]
struct VersionOutput {
    client: String,
    server: Option<sdk::VersionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Ssh(SshArgs { stdio: true, .. }) = &cli.command {
        return ExitCode::from(stdio(cli).await);
    }
    let (output, profile) = (cli.output, cli.profile.clone());
    match run(cli).await {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            let failure = fail::classify(&e, &profile);
            failure.print(output);
            ExitCode::from(failure.exit as u8)
        }
    }
}

/// `flare ssh --stdio`: stdout carries SSH, so errors are text on stderr only, and they exit
/// 255 as ssh's own connection errors do.
async fn stdio(cli: Cli) -> u8 {
    let profile = cli.profile.clone();
    let Command::Ssh(args) = cli.command else { return 255 };
    let result = async {
        let ctx = Ctx::new(Output::Text, cli.profile, cli.server, cli.workspace, cli.config_dir)?;
        ssh_cmd::stdio(&ctx, &args.session).await
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            fail::classify(&e, &profile).print(Output::Text);
            255
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Command::Completion { shell } = cli.command {
        let shell = match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "flare", &mut script);
        match std::io::Write::write_all(&mut std::io::stdout(), &script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => return Ok(Exit::Ok),
        }
    }
    let ctx = Ctx::new(cli.output, cli.profile, cli.server, cli.workspace, cli.config_dir)?;
    match cli.command {
        Command::Ssh(a) => {
            return ssh_cmd::ssh(&ctx, &a.session, a.identity.as_deref(), &a.ssh_arg, &a.command)
                .await;
        }
        Command::PortForward { session, ports, identity, ssh_arg } => {
            return ssh_cmd::port_forward(&ctx, &session, &ports, identity.as_deref(), &ssh_arg)
                .await;
        }
        Command::SshConfig { remove, print } => ssh_cmd::ssh_config(&ctx, remove, print).await?,
        Command::SshKey(SshKeyCommand::List) => ssh_cmd::key_list(&ctx).await?,
        Command::SshKey(SshKeyCommand::Add { path, name }) => {
            ssh_cmd::key_add(&ctx, path.as_deref(), name.as_deref()).await?
        }
        Command::SshKey(SshKeyCommand::Remove { id }) => ssh_cmd::key_remove(&ctx, &id).await?,
        Command::Template(cmd) => return run_template(&ctx, cmd).await,
        Command::Session(cmd) => return run_session(&ctx, cmd).await,
        Command::Snapshot(cmd) => return commands::snapshot::run(&ctx, cmd).await,
        Command::Version => version(&ctx).await?,
        Command::Health => return health(&ctx).await,
        Command::Auth(AuthCommand::Login { no_browser, token }) => {
            auth::login(&ctx, no_browser, token).await?
        }
        Command::Auth(AuthCommand::Logout) => auth::logout(&ctx).await?,
        Command::Auth(AuthCommand::Whoami) => auth::whoami(&ctx).await?,
        Command::Workspace(WorkspaceCommand::List) => workspace::list(&ctx).await?,
        Command::Workspace(WorkspaceCommand::Switch { slug }) => {
            workspace::switch(&ctx, &slug).await?
        }
        Command::Workspace(WorkspaceCommand::Members { slug }) => {
            workspace::members(&ctx, slug.as_deref()).await?
        }
        Command::Workspace(WorkspaceCommand::Invite { email, role, days }) => {
            workspace::invite(&ctx, &email, role, days).await?
        }
        Command::Config(ConfigCommand::Get { key }) => config::get(&ctx, key)?,
        Command::Config(ConfigCommand::Set { key, value }) => config::set(&ctx, key, &value)?,
        Command::Config(ConfigCommand::List) => config::list(&ctx)?,
        Command::Config(ConfigCommand::Unset { key }) => config::unset(&ctx, key)?,
        Command::Config(ConfigCommand::Profiles) => config::profiles(&ctx)?,
        Command::Completion { .. } => {}
    }
    Ok(Exit::Ok)
}

async fn run_template(ctx: &Ctx, cmd: TemplateCommand) -> anyhow::Result<Exit> {
    match cmd {
        TemplateCommand::Create { name, description } => {
            template::create(ctx, &name, description.as_deref()).await?
        }
        TemplateCommand::List => template::list(ctx).await?,
        TemplateCommand::Show { name } => template::show(ctx, &name).await?,
        TemplateCommand::Upload { name, dir, description, follow } => {
            return template::upload(ctx, &name, &dir, description.as_deref(), follow).await;
        }
        TemplateCommand::Logs { name, version, follow, build } => {
            return template::logs(ctx, &name, version.as_deref(), build.as_deref(), follow).await;
        }
        TemplateCommand::Versions { name } => template::versions(ctx, &name).await?,
        TemplateCommand::Builds { name } => template::builds(ctx, &name).await?,
        TemplateCommand::Retry { name, version } => {
            template::retry(ctx, &name, version.as_deref()).await?
        }
        TemplateCommand::Cancel { name, version } => {
            template::cancel(ctx, &name, version.as_deref()).await?
        }
        TemplateCommand::Archive { name } => template::archive(ctx, &name).await?,
        TemplateCommand::Promotion(cmd) => return commands::promotion::run(ctx, cmd).await,
    }
    Ok(Exit::Ok)
}

async fn run_session(ctx: &Ctx, cmd: SessionCommand) -> anyhow::Result<Exit> {
    use commands::session;
    match cmd {
        SessionCommand::Create { template, version, name, no_wait } => {
            session::create(ctx, &template, version.as_deref(), name.as_deref(), !no_wait).await
        }
        SessionCommand::List { all } => session::list(ctx, all).await.map(|()| Exit::Ok),
        SessionCommand::Show { id } => session::show(ctx, &id).await.map(|()| Exit::Ok),
        SessionCommand::Start(a) => session::op(ctx, Op::Start, &a.id, !a.no_wait).await,
        SessionCommand::Stop(a) => session::op(ctx, Op::Stop, &a.id, !a.no_wait).await,
        SessionCommand::Sleep(a) => session::op(ctx, Op::Sleep, &a.id, !a.no_wait).await,
        SessionCommand::Restart(a) => session::op(ctx, Op::Restart, &a.id, !a.no_wait).await,
        SessionCommand::Delete { id, no_wait, yes } => {
            session::delete(ctx, &id, !no_wait, yes).await
        }
        SessionCommand::Events { id, follow } => {
            session::events(ctx, &id, follow).await.map(|()| Exit::Ok)
        }
        SessionCommand::Why { id } => session::why(ctx, &id).await.map(|()| Exit::Ok),
    }
}

async fn version(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let (server, server_error) = match client.version().await {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let out = VersionOutput { client: env!("CARGO_PKG_VERSION").into(), server, server_error };
    if !ctx.text() {
        return output::json(&out);
    }
    println!("flare {}", out.client);
    match (&out.server, &out.server_error) {
        (Some(v), _) => println!("server {} (API {}) at {}", v.version, v.api, ctx.server()),
        (None, Some(e)) => println!("server: unavailable ({e})"),
        (None, None) => {}
    }
    Ok(())
}

/// A degraded server exits 1 after printing which checks failed.
async fn health(ctx: &Ctx) -> anyhow::Result<Exit> {
    let health = ctx.client()?.health().await?;
    if !ctx.text() {
        output::json(&health)?;
    } else {
        for (name, value) in &health.checks {
            println!("{name:<10} {value}");
        }
    }
    if health.is_ok() {
        return Ok(Exit::Ok);
    }
    if ctx.text() {
        let failing: Vec<&str> =
            health.checks.iter().filter(|(_, v)| *v != "ok").map(|(k, _)| k.as_str()).collect();
        let f = Failure::new(
            Exit::Error,
            "degraded",
            format!("the server is degraded: {} failing", failing.join(", ")),
        )
        .hint("the server's log says more about each failing check");
        eprintln!("error: {}", f.message);
        if let Some(h) = &f.hint {
            eprintln!("hint: {h}");
        }
    }
    Ok(Exit::Error)
}
