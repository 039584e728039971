//! `burstflare-bench [--runs N] [--out BENCHMARKS.md] [BENCHMARK...]`: runs the benchmarks (all
//! by default), prints each one's section and writes BENCHMARKS.md.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use burstflare_bench::platform::{Platform, PlatformOptions};
use burstflare_bench::report::{self, Header, Section, table};
use burstflare_bench::{
    agent, api_load, cold_start, latency, resume, scale, snapshots, throughput, wsio,
};

/// BurstFlare's benchmarks (`make bench`); see docs/benchmarks.md.
#[derive(Debug, Parser)]
#[command(name = "burstflare-bench")]
struct Cli {
    /// Runs of each benchmark [default: each benchmark's own: snapshots 5, cold-start 20,
    /// resume 5, ssh-throughput 5, latency 3, api 3, scale 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// The report to write [default: BENCHMARKS.md at the repository root].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// MB (10^6 bytes) of file content the `snapshots` benchmark packs.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    size_mb: u64,
    /// MB of file content in the persisted path of the `resume` benchmark.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    resume_mb: u64,
    /// MiB that `ssh-throughput` copies each way.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    scp_mib: u64,
    /// Round trips per path and run of `latency`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    round_trips: u64,
    /// Seconds of each wrk run of `api`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    wrk_seconds: u32,
    /// Sessions `scale` creates at once (fewer when they do not fit in memory).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    sessions: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The session agent binary [default: target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent, built by `make agent`].
    #[arg(long, value_name = "FILE")]
    agent: Option<PathBuf>,
    /// The flare binary the platform benchmarks run [default: `flare` next to this binary, built by `cargo build --release -p burstflare-cli` (make bench does)].
    #[arg(long, value_name = "FILE")]
    flare: Option<PathBuf>,
    /// Where the temporary data goes (about 4 times the data size) [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The benchmarks to run [default: all].
    #[arg(value_enum)]
    benchmarks: Vec<Benchmark>,
}

/// One per benchmark; each adds its section to BENCHMARKS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Benchmark {
    /// Snapshot and restore throughput of a 200 MB persisted path against tar | zstd and raw S3.
    Snapshots,
    /// New session → first output over `flare ssh`, against `docker run` + ssh to the agent.
    ColdStart,
    /// Sleeping session with 100 MB persisted → first output, against tar/zstd + docker start.
    Resume,
    /// scp of 256 MiB through `flare ssh --stdio`, against direct to the agent and loopback.
    SshThroughput,
    /// 1-byte PTY echo round trips through the tunnel, against direct to the agent.
    Latency,
    /// wrk against the session list, against /api/health (and /api/version).
    Api,
    /// 100 sessions at once → all running, against one-activity workflows on the same Temporal.
    Scale,
}

impl Benchmark {
    fn default_runs(self) -> usize {
        match self {
            // ssh-throughput: one run's ratio ranged 0.62–1.10× over a day of runs on 2 shared
            // cores (direct varies as much as ours), so its median needs 5.
            Benchmark::Snapshots | Benchmark::Resume | Benchmark::SshThroughput => 5,
            Benchmark::ColdStart => 20,
            Benchmark::Latency | Benchmark::Api => 3,
            Benchmark::Scale => 1,
        }
    }

    fn needs_platform(self) -> bool {
        self != Benchmark::Snapshots
    }
}

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The command that reproduces this run, as `make bench` spells it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if !a.is_empty()
                && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    let mut cmd = String::from("cargo run --release -p burstflare-bench");
    if !args.is_empty() {
        cmd += " -- ";
        cmd += &args.join(" ");
    }
    if cfg!(debug_assertions) {
        cmd += " (a debug build: not representative)";
    }
    cmd
}

/// A benchmark's headline for the summary: its ratio, what it is against, the target and
/// how far from the target it is (> 1: missed by that factor).
struct Headline {
    benchmark: &'static str,
    what: String,
    ratio: String,
    target: String,
    /// ≥ 1 when the target is missed; `None` when there is no target.
    miss: Option<f64>,
    /// The target is a floor to stay above (≥), not a ceiling.
    at_least: bool,
}

fn main() -> anyhow::Result<()> {
    // The direct paths' ProxyCommand: `burstflare-bench __ws-stdio URL`.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(wsio::ARG) {
        let code = wsio::main(raw.get(2).map_or("", String::as_str));
        std::process::exit(code);
    }
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        eprintln!("burstflare-bench: warning: a debug build; run with --release (make bench)");
    }
    let repo = repo_root();
    let mut benchmarks = cli.benchmarks.clone();
    if benchmarks.is_empty() {
        benchmarks = Benchmark::value_variants().to_vec();
    }
    benchmarks.dedup();
    let out = cli.out.clone().unwrap_or_else(|| repo.join("BENCHMARKS.md"));
    let header = Header::collect(&repo, command_line());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runs = |b: Benchmark| cli.runs.map_or(b.default_runs(), |r| r as usize);
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);

    let mut sections: Vec<Section> = Vec::new();
    let mut headlines: Vec<Headline> = Vec::new();
    let mut failures = 0;
    let emit = |sections: &mut Vec<Section>, section: Section| {
        println!("\n## {}\n\n{}", section.title, section.body.trim_end());
        sections.push(section);
    };
    if benchmarks.contains(&Benchmark::Snapshots) {
        let opts = snapshots::Options {
            runs: runs(Benchmark::Snapshots),
            size: cli.size_mb * 1_000_000,
            seed: cli.seed,
            agent: cli.agent.clone().unwrap_or_else(|| agent::default_binary(&repo)),
            work_dir: work_dir.clone(),
        };
        match snapshots::run(&opts, &rt) {
            Ok(r) => {
                let cold =
                    r.runs.iter().map(|x| x.snapshot / x.floor_snapshot()).collect::<Vec<_>>();
                let restore =
                    r.runs.iter().map(|x| x.restore / x.floor_restore()).collect::<Vec<_>>();
                for (what, v) in [("snapshot, cold", cold), ("restore", restore)] {
                    if let Some(s) = burstflare_bench::stats::Summary::of(&v) {
                        headlines.push(Headline {
                            benchmark: "Snapshots",
                            what: format!("{what}: ours / tar|zstd + S3 (time)"),
                            ratio: format!("{:.2}×", s.median),
                            target: "none set".into(),
                            miss: None,
                            at_least: false,
                        });
                    }
                }
                emit(&mut sections, snapshots::section(&r));
            }
            Err(e) => {
                failures += 1;
                emit(&mut sections, failed("Snapshots", &e));
            }
        }
    }
    let platform_benchmarks: Vec<Benchmark> =
        benchmarks.iter().copied().filter(|b| b.needs_platform()).collect();
    if !platform_benchmarks.is_empty() {
        let popts = PlatformOptions {
            repo: repo.clone(),
            work_dir: work_dir.clone(),
            flare: cli.flare.clone().unwrap_or_else(default_flare),
        };
        rt.block_on(async {
            let p = match Platform::start(&popts).await {
                Ok(p) => p,
                Err(e) => {
                    failures += platform_benchmarks.len();
                    let e = e.context("starting the platform");
                    for b in &platform_benchmarks {
                        emit(&mut sections, failed(title(*b), &e));
                    }
                    return;
                }
            };
            for b in platform_benchmarks {
                let got = run_platform(&p, b, &cli, runs(b)).await;
                match got {
                    Ok((section, mut h)) => {
                        headlines.append(&mut h);
                        emit(&mut sections, section);
                    }
                    Err(e) => {
                        failures += 1;
                        emit(&mut sections, failed(title(b), &e));
                    }
                }
            }
            p.stop().await;
        });
    }
    if headlines.len() > 1 {
        emit(&mut sections, summary(&headlines));
    }
    std::fs::write(&out, report::render(&header, &sections))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("burstflare-bench: wrote {}", out.display());
    anyhow::ensure!(failures == 0, "{failures} benchmark(s) failed (see their sections)");
    Ok(())
}

fn default_flare() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("flare"))
        .unwrap_or_else(|| repo_root().join("target/release/flare"))
}

fn title(b: Benchmark) -> &'static str {
    match b {
        Benchmark::Snapshots => "Snapshots",
        Benchmark::ColdStart => "Cold start",
        Benchmark::Resume => "Resume",
        Benchmark::SshThroughput => "SSH throughput",
        Benchmark::Latency => "Interactive latency",
        Benchmark::Api => "API",
        Benchmark::Scale => "Scale",
    }
}

fn failed(title: &str, e: &anyhow::Error) -> Section {
    eprintln!("burstflare-bench: {title} failed: {e:#}");
    Section { title: title.into(), body: format!("**Failed:** {e:#}\n") }
}

async fn run_platform(
    p: &Platform,
    b: Benchmark,
    cli: &Cli,
    runs: usize,
) -> anyhow::Result<(Section, Vec<Headline>)> {
    let mut h = Vec::new();
    let section = match b {
        Benchmark::Snapshots => anyhow::bail!("not a platform benchmark"),
        Benchmark::ColdStart => {
            let r = cold_start::run(p, &cold_start::Options { runs }).await?;
            if let Some(s) = r.ratio() {
                h.push(Headline {
                    benchmark: "Cold start",
                    what: "create → `ok` over flare ssh / docker run → `ok` (time)".into(),
                    ratio: format!("{:.2}×", s.median),
                    target: "≤ 1.5×".into(),
                    miss: Some(s.median / 1.5),
                    at_least: false,
                });
            }
            if let Some(s) = burstflare_bench::stats::Summary::of(&r.ours) {
                h.push(Headline {
                    benchmark: "Cold start",
                    what: "ours' median, absolute".into(),
                    ratio: format!("{:.2} s", s.median),
                    target: "< 1 s".into(),
                    miss: Some(s.median / 1.0),
                    at_least: false,
                });
            }
            cold_start::section(&r)
        }
        Benchmark::Resume => {
            let opts = resume::Options { runs, size: cli.resume_mb * 1_000_000, seed: cli.seed };
            let r = resume::run(p, &opts).await?;
            if let Some(s) = r.ratio() {
                h.push(Headline {
                    benchmark: "Resume",
                    what: "sleeping → `ok` / restore + docker start → `ok` (time)".into(),
                    ratio: format!("{:.2}×", s.median),
                    target: "≤ 1.5×".into(),
                    miss: Some(s.median / 1.5),
                    at_least: false,
                });
            }
            resume::section(&r)
        }
        Benchmark::SshThroughput => {
            let opts = throughput::Options { runs, size: cli.scp_mib * 1024 * 1024 };
            let r = throughput::run(p, &opts).await?;
            for (dir, up) in [("up", true), ("down", false)] {
                if let Some(s) = r.ratio(up) {
                    h.push(Headline {
                        benchmark: "SSH throughput",
                        what: format!("scp {dir}: ours / direct (MB/s)"),
                        ratio: format!("{:.2}×", s.median),
                        target: "≥ 0.8×".into(),
                        miss: Some(0.8 / s.median),
                        at_least: true,
                    });
                }
            }
            throughput::section(&r)
        }
        Benchmark::Latency => {
            let opts = latency::Options { runs, round_trips: cli.round_trips as usize };
            let r = latency::run(p, &opts).await?;
            if let Some(s) = r.added_p50() {
                h.push(Headline {
                    benchmark: "Interactive latency",
                    what: "added p50 (ours − direct)".into(),
                    ratio: format!("{:.3} ms", s.median),
                    target: "< 1 ms".into(),
                    miss: Some(s.median / 1.0),
                    at_least: false,
                });
            }
            latency::section(&r)
        }
        Benchmark::Api => {
            let opts =
                api_load::Options { runs, seconds: cli.wrk_seconds, connections: 16, sessions: 3 };
            let r = api_load::run(p, &opts).await?;
            if let Some(s) = r.ratio() {
                h.push(Headline {
                    benchmark: "API",
                    what: "session list / /api/health (req/s)".into(),
                    ratio: format!("{:.2}×", s.median),
                    target: "none set".into(),
                    miss: None,
                    at_least: false,
                });
            }
            api_load::section(&r)
        }
        Benchmark::Scale => {
            let opts = scale::Options { runs, sessions: cli.sessions as usize };
            let r = scale::run(p, &opts).await?;
            if let Some(s) = r.ratio() {
                h.push(Headline {
                    benchmark: "Scale",
                    what: format!("{} sessions/s / one-activity workflows/s", r.n),
                    ratio: format!("{:.3}×", s.median),
                    target: "none set (≈ 0.5× = Temporal's pace per scheduled activity)".into(),
                    miss: None,
                    at_least: false,
                });
            }
            scale::section(&r)
        }
    };
    Ok((section, h))
}

fn summary(h: &[Headline]) -> Section {
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|x| {
            vec![
                x.benchmark.to_string(),
                x.what.replace('|', "\\|"),
                x.ratio.clone(),
                x.target.clone(),
                match x.miss {
                    Some(m) if m <= 1.0 => "met".into(),
                    // How far over a ceiling, or how far under a floor, in the target's terms.
                    Some(m) if x.at_least => format!("missed by {:.1}%", (1.0 - 1.0 / m) * 100.0),
                    Some(m) => format!("missed by {:.1}%", (m - 1.0) * 100.0),
                    None => "–".into(),
                },
            ]
        })
        .collect();
    let mut b = String::from(
        "Every headline of this run, each against its floor measured in the same run.\n\n",
    );
    b += &table(&["benchmark", "figure", "value", "target", "met?"], &rows);
    if let Some(worst) = h
        .iter()
        .filter(|x| x.miss.is_some())
        .max_by(|a, b| a.miss.unwrap_or(0.0).total_cmp(&b.miss.unwrap_or(0.0)))
    {
        b += &format!(
            "\n**Worst against its target:** {}, {} = {} (target {}); its section's \"Where the \
             time goes\" names the bottleneck.\n",
            worst.benchmark,
            worst.what.replace('|', "\\|"),
            worst.ratio,
            worst.target
        );
    }
    Section { title: "Summary".into(), body: b }
}
