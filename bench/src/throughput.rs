//! Benchmark `ssh-throughput`: `scp` of 256 MiB into and out of a running session, three ways
//! to the same SSH server (the session's agent):
//!
//! - **ours**: OpenSSH's `scp` with flare's options and ProxyCommand `flare ssh --stdio`: the
//!   API's WebSocket, the node tunnel, the agent;
//! - **direct**: the same `scp`, its ProxyCommand a WebSocket straight to the agent's port
//!   published on 127.0.0.1 (`burstflare-bench __ws-stdio`);
//! - **loopback**: `scp` run inside the container (`docker exec`) against the agent on the
//!   container's own 127.0.0.1, through the same bridge: no hop outside the container.
//!
//! The headline is ours' MB/s over direct's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::platform::{self, Platform};
use crate::report::{Section, table};
use crate::stats::Summary;
use crate::wsio;

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Bytes to copy each way.
    pub size: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub runs: usize,
    pub size: u64,
    /// Seconds per copy: (ours, direct, loopback), up (into the session) and down.
    pub up: [Vec<f64>; 3],
    pub down: [Vec<f64>; 3],
    /// The profile pass: one upload on ours and on direct, taken apart.
    pub profiles: Vec<Profile>,
}

/// One extra upload on a path, three times: plain with CPU accounting, under `perf record` of
/// the bench process (the API and the node tunnel live in it), under `strace -c` of it.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub path: usize,
    pub secs: f64,
    /// CPU seconds: the bench process (API, node tunnel, the rest of the stack), its waited-for
    /// children (scp, ssh, the ProxyCommand), the agent.
    pub cpu_bench: f64,
    pub cpu_children: f64,
    pub cpu_agent: f64,
    /// perf: share of the bench process's samples per thread name and per symbol.
    pub threads: Vec<(String, f64)>,
    pub symbols: Vec<(String, f64)>,
    /// strace -c of the bench process: (syscall, calls).
    pub syscalls: Vec<(String, u64)>,
    pub strace_secs: f64,
}

pub const PATHS: [&str; 3] = [
    "ours: through `flare ssh --stdio`, the API and the node tunnel",
    "direct: to the agent's published port",
    "loopback: inside the container, to 127.0.0.1",
];

impl Results {
    /// Per-run ratios of ours' MB/s to direct's (direct's time over ours').
    pub fn ratio(&self, up: bool) -> Option<Summary> {
        let v = if up { &self.up } else { &self.down };
        Summary::of(&v[1].iter().zip(&v[0]).map(|(d, o)| d / o).collect::<Vec<_>>())
    }
}

const NAME: &str = "tp";
/// Where the bench binary and flare's key go inside the container.
const IN_BENCH: &str = "/tmp/bfbench";
const IN_KEY: &str = "/tmp/bfbench-key";
const IN_KNOWN: &str = "/tmp/bfbench-known-hosts";

pub async fn run(p: &Platform, opts: &Options) -> anyhow::Result<Results> {
    let s = p.create_session(NAME).await?;
    let result = async {
        let mut r = Results { runs: opts.runs, size: opts.size, ..Default::default() };
        let c = p.container_of(&s.id).await?;
        let mut pin = p.flare_cmd(&["ssh", NAME, "--", "true"]);
        let out = platform::run_output(&mut pin, Duration::from_secs(120)).await?;
        anyhow::ensure!(out.status.success(), "flare ssh {NAME}: {}", platform::stderr_of(&out));
        let direct = p.direct_to_session(&s.id).await?;
        let alias = sdk::ssh_host_alias(NAME, &p.ws);
        // The data: random (scp does not compress), on the host and inside the container.
        let src = p.scratch.join("tp-src.bin");
        write_random(&src, opts.size)?;
        let down = p.scratch.join("tp-down.bin");
        setup_loopback(p, &c.name, &s.id, &src).await?;
        let remote = "/home/dev/tp.bin";
        let loopback = Loopback { container: &c.name, token: direct.token.clone() };
        // One untimed copy each way first (page caches, the remote file).
        copy(p, 1, &alias, &direct, &loopback, &src, &down, remote, true).await?;
        copy(p, 1, &alias, &direct, &loopback, &src, &down, remote, false).await?;
        for i in 0..opts.runs {
            eprintln!("burstflare-bench: ssh-throughput run {}/{}", i + 1, opts.runs);
            // Rotate which path goes first.
            for k in 0..3 {
                let which = (i + k) % 3;
                let t =
                    copy(p, which, &alias, &direct, &loopback, &src, &down, remote, true).await?;
                r.up[which].push(t);
                let t =
                    copy(p, which, &alias, &direct, &loopback, &src, &down, remote, false).await?;
                r.down[which].push(t);
            }
        }
        eprintln!("burstflare-bench: ssh-throughput profile pass");
        for which in [0, 1] {
            let mut prof = Profile { path: which, ..Default::default() };
            let before = cpu_now(c.pid);
            prof.secs =
                copy(p, which, &alias, &direct, &loopback, &src, &down, remote, true).await?;
            let after = cpu_now(c.pid);
            prof.cpu_bench = after.0 - before.0;
            prof.cpu_children = after.1 - before.1;
            prof.cpu_agent = after.2 - before.2;
            let data = p.scratch.join(format!("perf-{which}.data"));
            let perf = Tool::start(
                "perf",
                &[
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "999",
                    "-o",
                    &data.display().to_string(),
                    "-p",
                    &std::process::id().to_string(),
                ],
            )
            .await;
            copy(p, which, &alias, &direct, &loopback, &src, &down, remote, true).await?;
            if let Some(t) = perf {
                t.stop().await;
                prof.threads = perf_report(&data, "comm").await;
                prof.symbols = perf_report(&data, "symbol").await;
            }
            let strace = Tool::start(
                "strace",
                &[
                    "-f",
                    "-c",
                    "-e",
                    "trace=read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg,epoll_wait",
                    "-p",
                    &std::process::id().to_string(),
                ],
            )
            .await;
            let t = Instant::now();
            copy(p, which, &alias, &direct, &loopback, &src, &down, remote, true).await?;
            prof.strace_secs = t.elapsed().as_secs_f64();
            if let Some(t) = strace {
                prof.syscalls = parse_strace(&t.stop().await);
            }
            r.profiles.push(prof);
        }
        let _ = std::fs::remove_file(&src);
        let _ = std::fs::remove_file(&down);
        anyhow::Ok(r)
    }
    .await;
    let _ = p.delete_session(&s.id).await;
    result
}

struct Loopback<'a> {
    container: &'a str,
    token: String,
}

fn write_random(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut rng = crate::mix::Prng::new(0x5eed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Puts the bench binary (the bridge), flare's key, a known_hosts and the data into the
/// container, for the loopback path.
async fn setup_loopback(
    p: &Platform,
    container: &str,
    session_id: &str,
    src: &Path,
) -> anyhow::Result<()> {
    // A copy without debug info is much smaller to put into the container.
    let stripped = p.scratch.join("bfbench");
    let exe: PathBuf = match tokio::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&p.bench_exe)
        .arg(&stripped)
        .status()
        .await
    {
        Ok(s) if s.success() => stripped,
        _ => p.bench_exe.clone(),
    };
    let known = p.pin_host_key(session_id, "loopback")?;
    for (from, to) in [
        (exe.as_path(), IN_BENCH),
        (p.key().as_path(), IN_KEY),
        (known.as_path(), IN_KNOWN),
        (src, "/tmp/tp-src.bin"),
    ] {
        platform::docker(&["cp", &from.display().to_string(), &format!("{container}:{to}")])
            .await?;
    }
    platform::docker(&[
        "exec",
        container,
        "sh",
        "-c",
        &format!(
            "chown dev:dev {IN_KEY} {IN_KNOWN} /tmp/tp-src.bin && chmod 600 {IN_KEY} && chmod 755 {IN_BENCH}"
        ),
    ])
    .await?;
    Ok(())
}

/// One scp on path `which` (0 ours, 1 direct, 2 loopback), `up` into the session or down out
/// of it; seconds.
#[allow(clippy::too_many_arguments)]
async fn copy(
    p: &Platform,
    which: usize,
    alias: &str,
    direct: &platform::Direct,
    lo: &Loopback<'_>,
    src: &Path,
    down: &Path,
    remote: &str,
    up: bool,
) -> anyhow::Result<f64> {
    let mut cmd = match which {
        0 => {
            let mut c = p.ssh_ours("scp", NAME);
            add_endpoints(&mut c, alias, src, down, remote, up);
            c
        }
        1 => {
            let mut c = p.ssh_direct("scp", direct)?;
            add_endpoints(&mut c, &direct.alias, src, down, remote, up);
            c
        }
        _ => {
            let mut c = tokio::process::Command::new("docker");
            c.args(["exec", "-u", "dev", "-e"])
                .arg(format!("{}={}", wsio::TOKEN_ENV, lo.token))
                .arg("-e")
                .arg(format!("{}={}", wsio::KEYS_ENV, p.authorized_keys()?))
                .arg(lo.container)
                .arg("scp");
            for o in [
                format!("ProxyCommand={IN_BENCH} {} ws://127.0.0.1:7070/ssh", wsio::ARG),
                format!("IdentityFile={IN_KEY}"),
                "IdentitiesOnly=yes".into(),
                "StrictHostKeyChecking=yes".into(),
                format!("UserKnownHostsFile={IN_KNOWN}"),
                "HostKeyAlias=loopback".into(),
                "BatchMode=yes".into(),
                "User=dev".into(),
            ] {
                c.arg("-o").arg(o);
            }
            if up {
                c.args(["/tmp/tp-src.bin", &format!("loopback:{remote}")]);
            } else {
                c.args([&format!("loopback:{remote}"), "/tmp/tp-down.bin"]);
            }
            c
        }
    };
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let out = platform::run_output(&mut cmd, Duration::from_secs(600)).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "scp ({}, {}): {}",
        PATHS[which],
        if up { "up" } else { "down" },
        platform::stderr_of(&out)
    );
    if !up && which != 2 {
        let got = std::fs::metadata(down).context("the downloaded file")?.len();
        let want = std::fs::metadata(src)?.len();
        anyhow::ensure!(got == want, "downloaded {got} bytes, expected {want}");
    }
    Ok(secs)
}

fn add_endpoints(
    c: &mut tokio::process::Command,
    alias: &str,
    src: &Path,
    down: &Path,
    remote: &str,
    up: bool,
) {
    if up {
        c.arg(src).arg(format!("{alias}:{remote}"));
    } else {
        c.arg(format!("{alias}:{remote}")).arg(down);
    }
}

/// CPU seconds so far: this process, its waited-for children, and process `agent`.
fn cpu_now(agent: u32) -> (f64, f64, f64) {
    let read = |pid: &str| -> Vec<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
        // utime, stime, cutime, cstime are fields 14-17: 11-14 after the command's `)`.
        (11..15).map(|i| f.get(i).copied().unwrap_or(0.0) / 100.0).collect()
    };
    let me = read("self");
    let agent = read(&agent.to_string());
    (me[0] + me[1], me[2] + me[3], agent[0] + agent[1])
}

/// A profiler attached to this process; `None` when it cannot run.
struct Tool {
    child: tokio::process::Child,
}

impl Tool {
    async fn start(program: &str, args: &[&str]) -> Option<Tool> {
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        // Attaching to every thread takes a moment.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Some(Tool { child })
    }

    /// SIGINT (both write their results then), and its stderr.
    async fn stop(self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait_with_output()).await {
            Ok(Ok(out)) => String::from_utf8_lossy(&out.stderr).into_owned(),
            _ => String::new(),
        }
    }
}

/// `perf report --sort KEY`: (name, percent) of the lines above 1%.
async fn perf_report(data: &Path, key: &str) -> Vec<(String, f64)> {
    let Ok(out) = tokio::process::Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", key, "-i"])
        .arg(data)
        .output()
        .await
    else {
        return Vec::new();
    };
    parse_perf(&String::from_utf8_lossy(&out.stdout))
}

/// The `  12.34%  name` lines of a perf report, above 1%, at most 12.
pub fn parse_perf(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (pct, rest) = l.trim().split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            let name = rest.trim().trim_start_matches("[.]").trim_start_matches("[k]").trim();
            // perf pads the column with spaces and dashes for the fields it was not asked for.
            let name = name.split("  ").next().unwrap_or(name).trim();
            (pct >= 1.0).then(|| (name.to_string(), pct))
        })
        .take(12)
        .collect()
}

/// `strace -c`'s table: (syscall, calls).
pub fn parse_strace(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            if w.len() < 5 || w[0].parse::<f64>().is_err() {
                return None;
            }
            let name = w.last()?.to_string();
            let calls = w[3].parse().ok()?;
            Some((name, calls))
        })
        .collect()
}

pub fn section(r: &Results) -> Section {
    let mb = r.size as f64 / 1e6;
    let mut rows = Vec::new();
    for (dir, v) in [("up", &r.up), ("down", &r.down)] {
        for (i, path) in PATHS.iter().enumerate() {
            if let Some(s) = Summary::of(&v[i]) {
                rows.push(vec![
                    format!("{dir}: {path}"),
                    format!("{:.2}", s.min),
                    format!("{:.2}", s.median),
                    format!("{:.2}", s.p95),
                    format!("{:.0}", mb / s.median),
                ]);
            }
        }
    }
    let mut b = format!(
        "{} runs; each copies {:.0} MiB ({:.1} MB) of random bytes with OpenSSH's `scp` (SFTP \
         mode) into the session (up) and back out (down), on each path in turn.\n\n",
        r.runs,
        r.size as f64 / 1048576.0,
        mb
    );
    b += &table(&["copy", "min s", "median s", "p95 s", "MB/s"], &rows);
    b += "\n";
    for (dir, up) in [("up", true), ("down", false)] {
        if let Some(ratio) = r.ratio(up) {
            b += &format!(
                "- **{dir}: ours / direct = {:.2}×** of direct's MB/s (runs {:.2}–{:.2}); target ≥ \
                 0.8×: **{}**\n",
                ratio.median,
                ratio.min,
                ratio.max,
                if ratio.median >= 0.8 { "met" } else { "missed" }
            );
        }
    }
    let lo = |v: &[Vec<f64>; 3]| {
        let ratios: Vec<f64> = v[2].iter().zip(&v[1]).map(|(l, d)| l / d).collect();
        Summary::of(&ratios).map_or(f64::NAN, |s| s.median)
    };
    b += &format!(
        "- direct / loopback: up {:.2}×, down {:.2}× of loopback's MB/s (what the hop from the \
         host into the container costs)\n\n",
        lo(&r.up),
        lo(&r.down)
    );
    b += &profile_section(r);
    b += "**What is measured.** The same SSH server (the session's agent) and the same OpenSSH \
          client, options and key on every path; only what carries the bytes differs. Ours: \
          ProxyCommand `flare ssh --stdio`, a WebSocket to the API, which forwards the upgrade to \
          the node tunnel, which splices to the agent's port. Direct: ProxyCommand \
          `burstflare-bench __ws-stdio`, a WebSocket straight to the agent's port published on \
          127.0.0.1, built like flare's bridge. Loopback: `scp` inside the container (as the \
          session user, through the same bridge binary copied in) to the agent on the \
          container's 127.0.0.1. Files are in the page cache on both ends; 2 cores are shared by \
          scp, ssh, the bridges, the API, the tunnel and the agent.\n";
    Section { title: "SSH throughput".into(), body: b }
}

fn profile_section(r: &Results) -> String {
    if r.profiles.is_empty() {
        return String::new();
    }
    let mib = r.size as f64 / 1048576.0;
    let mut b = format!(
        "### Where the time goes (upload)\n\nOne more {mib:.0} MiB upload on ours and on direct, \
         three times each: plain, with CPU seconds read from `/proc` (the bench process holds the \
         API and the node tunnel; its waited-for children are scp, ssh and the ProxyCommand; the \
         agent is the container's PID 1); under `perf record -e cpu-clock -F 999 -p <bench>`; and \
         under `strace -f -c -p <bench>` (which slows it: only its call counts matter).\n\n"
    );
    let rows: Vec<Vec<String>> = r
        .profiles
        .iter()
        .map(|p| {
            let reads = calls(p, &["read", "readv", "recvfrom", "recvmsg"]);
            let writes = calls(p, &["write", "writev", "sendto", "sendmsg"]);
            vec![
                PATHS[p.path].split(':').next().unwrap_or("").to_string(),
                format!("{:.2}", p.secs),
                format!("{:.2}", p.cpu_bench),
                format!("{:.2}", p.cpu_children),
                format!("{:.2}", p.cpu_agent),
                reads.to_string(),
                writes.to_string(),
                calls(p, &["epoll_wait"]).to_string(),
            ]
        })
        .collect();
    b += &table(
        &[
            "upload",
            "s",
            "CPU s: bench (API + tunnel)",
            "CPU s: scp + ssh + proxy",
            "CPU s: agent",
            "bench reads",
            "bench writes",
            "bench epoll_waits",
        ],
        &rows,
    );
    if let Some(ours) = r.profiles.iter().find(|p| p.path == 0) {
        if !ours.threads.is_empty() {
            b += "\nperf, ours' upload: the bench process and the processes it started during \
                  the copy (perf follows children: scp, ssh, flare), by thread name (share of the \
                  samples; `tokio-rt-worker` is the API and the node tunnel):\n\n";
            let rows: Vec<Vec<String>> =
                ours.threads.iter().map(|(n, pct)| vec![n.clone(), format!("{pct:.1}%")]).collect();
            b += &table(&["thread", "samples"], &rows);
        }
        if !ours.symbols.is_empty() {
            b += "\nand by symbol:\n\n";
            let rows: Vec<Vec<String>> = ours
                .symbols
                .iter()
                .map(|(n, pct)| vec![format!("`{}`", n.replace('|', "\\|")), format!("{pct:.1}%")])
                .collect();
            b += &table(&["symbol", "samples"], &rows);
        }
        b += &format!("\n{}\n\n", findings(r, ours));
    }
    b
}

fn calls(p: &Profile, names: &[&str]) -> u64 {
    p.syscalls.iter().filter(|(n, _)| names.contains(&n.as_str())).map(|(_, c)| c).sum()
}

fn findings(r: &Results, ours: &Profile) -> String {
    let direct = r.profiles.iter().find(|p| p.path == 1);
    const READS: [&str; 4] = ["read", "readv", "recvfrom", "recvmsg"];
    const WRITES: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];
    // strace -f follows the children too (scp, ssh, the ProxyCommand): what ours makes beyond
    // direct is the API's and the node tunnel's forwarding (and flare's bridge against ours).
    let reads = calls(ours, &READS).saturating_sub(direct.map_or(0, |d| calls(d, &READS)));
    let writes = calls(ours, &WRITES).saturating_sub(direct.map_or(0, |d| calls(d, &WRITES)));
    // Through the bench process the upload is read twice (from flare at the API, from the API
    // at the node tunnel) and written twice.
    let through = 2.0 * r.size as f64;
    let per_read = if reads > 0 { through / reads as f64 / 1024.0 } else { f64::NAN };
    let per_write = if writes > 0 { through / writes as f64 / 1024.0 } else { f64::NAN };
    let (d_secs, d_cpu) = direct
        .map_or((f64::NAN, f64::NAN), |d| (d.secs, d.cpu_bench + d.cpu_children + d.cpu_agent));
    let cpu = ours.cpu_bench + ours.cpu_children + ours.cpu_agent;
    let ratio = |up| r.ratio(up).map_or(f64::NAN, |s| s.median);
    format!(
        "**Findings.** Ours' upload took {:.2} s against direct's {d_secs:.2} s. The bench \
         process (the API's WebSocket proxy and the node tunnel; nothing else of it is busy \
         during a copy) used {:.2} CPU s on it (none on direct's); scp, ssh and the ProxyCommand \
         {:.2} s, the agent {:.2} s. All together ours used {cpu:.2} CPU s in {:.2} s of 2 cores \
         ({:.0}% busy), direct {d_cpu:.2} CPU s in {d_secs:.2} s ({:.0}% busy): ours is not held \
         back by CPU but by waiting between hops. Under strace (of the bench process and its \
         children) ours made {reads} more read and {writes} more write calls than direct, for \
         the {:.0} MiB the API and the node tunnel each forward: {per_read:.1} KiB per read and \
         {per_write:.1} KiB per write on average: each hop forwards both directions through a \
         64 KiB buffer (`api/src/tunnel.rs`, `splice`; uploads went through \
         `tokio::io::copy`'s 8 KiB until issue 11, which held them at 0.70× of direct), so a read \
         takes whatever SSH has written since the last one, and each is a wake-up of a splice \
         task and a system call per hop (`finish_task_switch`, the scheduler switching tasks, \
         shows among perf's symbols). The download reaches {:.2}× of direct, the upload {:.2}×: \
         what is left of the gap in both directions is the two extra hops (their copies, wake-ups \
         and latency against SFTP's window) on 2 cores that scp, ssh and the agent already keep \
         busy.",
        ours.secs,
        ours.cpu_bench,
        ours.cpu_children,
        ours.cpu_agent,
        ours.secs,
        100.0 * cpu / (2.0 * ours.secs),
        100.0 * d_cpu / (2.0 * d_secs),
        r.size as f64 / 1048576.0,
        ratio(false),
        ratio(true),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn perf_and_strace_summaries_are_read() {
        let perf = "# Samples: 1K of event 'cpu-clock'\n#\n    45.10%  tokio-runtime-w\n     0.50%  other\n    12.00%  [k] _raw_spin_unlock_irqrestore\n";
        assert_eq!(
            parse_perf(perf),
            vec![
                ("tokio-runtime-w".to_string(), 45.1),
                ("_raw_spin_unlock_irqrestore".to_string(), 12.0)
            ]
        );
        let strace = "% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n 60.00    0.600000          10     60000           write\n 30.00    0.300000           5     60000      1200 recvfrom\n------ ----------- ----------- --------- --------- ----------------\n100.00    0.900000               120000      1200 total\n";
        let got = parse_strace(strace);
        assert_eq!(got[0], ("write".to_string(), 60000));
        assert_eq!(got[1], ("recvfrom".to_string(), 60000));
    }
}
