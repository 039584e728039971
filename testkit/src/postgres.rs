//! A throwaway PostgreSQL server for tests: one cluster per test process, one database per test.
//!
//! The first [`TestPostgres::start`] in a process runs `initdb` into a temp dir and starts the
//! server on a free loopback port with `pg_ctl`; later calls reuse it. With
//! `BURSTFLARE_TEST_POSTGRES_URL` set (e.g. a CI service container) that server is used instead and
//! nothing is started.
//!
//! Teardown cannot rely on destructors (statics are never dropped) or on the test process exiting
//! cleanly (a test can be killed). So a small watcher shell is started next to the cluster with its
//! stdin connected to a pipe whose other end only this process holds: when this process ends, for
//! whatever reason, the kernel closes that end, the watcher reads end-of-file, stops the server and
//! removes the temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::OnceCell;

/// Set to a server URL (`postgres://user:pass@host:port/db`) to test against it instead of a
/// throwaway cluster. The role needs CREATEDB; databases created by tests are left behind.
pub const URL_ENV: &str = "BURSTFLARE_TEST_POSTGRES_URL";

/// How long a server (started here or given by URL) may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Tries with a fresh port after a failed start: the port from `free_port` can be taken meanwhile.
const START_ATTEMPTS: usize = 3;

static SERVER: OnceCell<Server> = OnceCell::const_new();

struct Server {
    /// URL of the maintenance database, used to create the per-test databases.
    admin_url: String,
    /// `None` for a server given by URL. Held (never dropped) for the life of the process.
    _cluster: Option<Watcher>,
}

/// The watcher process and the write end of its stdin; see the module docs.
struct Watcher {
    _child: Child,
    _stdin: ChildStdin,
}

/// A handle on this process's PostgreSQL server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TestPostgres {
    admin_url: String,
}

impl TestPostgres {
    /// Starts the process-wide server on first use (or connects to `BURSTFLARE_TEST_POSTGRES_URL`)
    /// and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<TestPostgres> {
        let server = SERVER.get_or_try_init(init).await?;
        Ok(TestPostgres { admin_url: server.admin_url.clone() })
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        // The pid and clock keep names unique across processes sharing an external server.
        let name =
            format!("test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .with_context(|| format!("connecting to {}", self.admin_url))?;
        // Simple query protocol: CREATE DATABASE may not run inside a transaction block.
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await.ok();
        Ok(with_database(&self.admin_url, &name))
    }

    /// URL of the server's maintenance database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

async fn init() -> anyhow::Result<Server> {
    let server = match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Server { admin_url: url, _cluster: None },
        _ => start_cluster().await?,
    };
    let url = server.admin_url.clone();
    crate::wait_until(Instant::now() + READY_TIMEOUT, || async {
        PgConnection::connect(&url).await.is_ok()
    })
    .await
    .with_context(|| format!("waiting for PostgreSQL at {url} to accept connections"))?;
    Ok(server)
}

async fn start_cluster() -> anyhow::Result<Server> {
    let bin = find_bin_dir()?;
    let root = tempfile::Builder::new()
        .prefix("burstflare-pg-")
        .tempdir()
        .context("creating a temp dir for PostgreSQL")?
        .keep();
    // PostgreSQL refuses to run as root; as root, everything below runs as `nobody`.
    let run_as = if effective_uid_is_root() { Some(nobody()) } else { None };
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&root, Some(uid), Some(gid))
            .with_context(|| format!("chown {} to nobody", root.display()))?;
    }
    let data = root.join("data");
    let log = root.join("postgres.log");
    let pg_ctl = bin.join("pg_ctl");

    // Started first so that every way out of this function, error or not, ends in cleanup.
    let watcher = spawn_watcher(&pg_ctl, &data, &root, run_as)?;

    let mut initdb = tokio::process::Command::new(bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(&mut initdb, &root, run_as).await.context("initdb")?;

    for attempt in 1..=START_ATTEMPTS {
        let port = crate::free_port().context("finding a free port")?;
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            root.display()
        );
        let mut pg_ctl_start = tokio::process::Command::new(&pg_ctl);
        // -w: pg_ctl waits until the server is ready, and fails at once if it exits instead.
        pg_ctl_start.arg("start").arg("-w").args(["-t", "60"]).arg("-D").arg(&data);
        pg_ctl_start.arg("-l").arg(&log).arg("-o").arg(&options);
        match run(&mut pg_ctl_start, &root, run_as).await {
            Ok(()) => {
                return Ok(Server {
                    admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    _cluster: Some(watcher),
                });
            }
            Err(e) if attempt == START_ATTEMPTS => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(e.context(format!("pg_ctl start failed; server log:\n{log}")));
            }
            Err(_) => continue,
        }
    }
    bail!("pg_ctl start failed {START_ATTEMPTS} times")
}

/// Runs a PostgreSQL tool to completion, as `run_as` if given; its output goes into the error.
async fn run(
    command: &mut tokio::process::Command,
    cwd: &Path,
    run_as: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    // A cwd the tool can read: ours may be closed to `nobody`.
    command.current_dir(cwd).stdin(Stdio::null()).kill_on_drop(true);
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    let output = command.output().await.context("spawning")?;
    if !output.status.success() {
        bail!(
            "exited with {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn spawn_watcher(
    pg_ctl: &Path,
    data: &Path,
    root: &Path,
    run_as: Option<(u32, u32)>,
) -> anyhow::Result<Watcher> {
    use std::os::unix::process::CommandExt;

    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        // `read` returns at end-of-file: when every holder of the pipe's write end, i.e. this
        // process, has gone. `stop` fails harmlessly if the server never started.
        .arg(r#"read -r _; "$0" stop -D "$1" -m immediate -w >/dev/null 2>&1; rm -rf "$2""#)
        .arg(pg_ctl)
        .arg(data)
        .arg(root)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so Ctrl-C on the test run does not kill it before it cleans up
        // (pg_ctl detaches the server itself from the terminal).
        .process_group(0);
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    let mut child = command.spawn().context("spawning the PostgreSQL watcher")?;
    let stdin = child.stdin.take().context("watcher stdin")?;
    Ok(Watcher { _child: child, _stdin: stdin })
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` of one installation: the one `initdb` on
/// PATH comes from (resolving symlinks), else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let complete =
        |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file());
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| complete(dir));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).with_context(|| {
        format!(
            "no PostgreSQL found (initdb on PATH or /usr/lib/postgresql/*/bin): \
             install it (apt-get install postgresql) or set {URL_ENV}"
        )
    })
}

#[allow(unsafe_code)]
fn effective_uid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of `nobody` from /etc/passwd, 65534 (its usual ids) if it is not listed.
fn nobody() -> (u32, u32) {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                    _ => None,
                }
            })
        })
        .unwrap_or((65534, 65534))
}

/// `url` with its database (the path) replaced by `name`, keeping credentials and parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end =
        base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_url_gets_its_database_replaced_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432?sslmode=disable", "t2"),
            "postgresql://u:p@db:5432/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h/db?a=1&b=2", "t3"), "postgres://u@h/t3?a=1&b=2");
    }
}
