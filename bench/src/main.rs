//! `burstflare-bench [--runs N] [--out BENCHMARKS.md] [BENCHMARK...]`: runs the benchmarks (all
//! by default), prints each one's section and writes BENCHMARKS.md.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use burstflare_bench::report::{self, Header, Section};
use burstflare_bench::{agent, snapshots};

/// BurstFlare's benchmarks (`make bench`); see docs/benchmarks.md.
#[derive(Debug, Parser)]
#[command(name = "burstflare-bench")]
struct Cli {
    /// Runs of each benchmark.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The report to write [default: BENCHMARKS.md at the repository root].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// MB (10^6 bytes) of file content the `snapshots` benchmark packs.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    size_mb: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The session agent binary [default: target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent, built by `make agent`].
    #[arg(long, value_name = "FILE")]
    agent: Option<PathBuf>,
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

fn main() -> anyhow::Result<()> {
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

    let mut sections: Vec<Section> = Vec::new();
    for b in benchmarks {
        let section = match b {
            Benchmark::Snapshots => {
                let opts = snapshots::Options {
                    runs: cli.runs as usize,
                    size: cli.size_mb * 1_000_000,
                    seed: cli.seed,
                    agent: cli.agent.clone().unwrap_or_else(|| agent::default_binary(&repo)),
                    work_dir: cli.work_dir.clone().unwrap_or_else(std::env::temp_dir),
                };
                snapshots::section(&snapshots::run(&opts, &rt).context("benchmark snapshots")?)
            }
        };
        println!("\n## {}\n\n{}", section.title, section.body.trim_end());
        sections.push(section);
    }
    std::fs::write(&out, report::render(&header, &sections))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("burstflare-bench: wrote {}", out.display());
    Ok(())
}
