//! Benchmark `latency`: interactive latency, 1-byte round trips through a PTY in a running
//! session, over ours (`flare ssh --stdio`, the API, the node tunnel) and straight to the
//! agent's port. `ssh -tt` runs `stty raw -echo; exec cat` in the session; the bench writes one
//! byte to ssh's stdin and waits for it on ssh's stdout, one at a time. Ours' added latency is
//! its percentile minus direct's, per run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::platform::{self, Platform};
use crate::report::{Section, summary_row, table};
use crate::stats::Summary;

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Round trips per path and run.
    pub round_trips: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub runs: usize,
    pub round_trips: usize,
    /// Per run, milliseconds: (ours p50, ours p99, direct p50, direct p99).
    pub per_run: Vec<(f64, f64, f64, f64)>,
}

impl Results {
    pub fn added_p50(&self) -> Option<Summary> {
        Summary::of(&self.per_run.iter().map(|r| r.0 - r.2).collect::<Vec<_>>())
    }

    pub fn added_p99(&self) -> Option<Summary> {
        Summary::of(&self.per_run.iter().map(|r| r.1 - r.3).collect::<Vec<_>>())
    }
}

const NAME: &str = "lat";
const WARMUP: usize = 50;

pub async fn run(p: &Platform, opts: &Options) -> anyhow::Result<Results> {
    let s = p.create_session(NAME).await?;
    let result = async {
        let mut r =
            Results { runs: opts.runs, round_trips: opts.round_trips, ..Default::default() };
        let mut pin = p.flare_cmd(&["ssh", NAME, "--", "true"]);
        let out = platform::run_output(&mut pin, Duration::from_secs(120)).await?;
        anyhow::ensure!(out.status.success(), "flare ssh {NAME}: {}", platform::stderr_of(&out));
        let direct = p.direct_to_session(&s.id).await?;
        let alias = sdk::ssh_host_alias(NAME, &p.ws);
        for i in 0..opts.runs {
            eprintln!("burstflare-bench: latency run {}/{}", i + 1, opts.runs);
            let ours_cmd = || {
                let mut c = p.ssh_ours("ssh", NAME);
                c.args(["-tt", "-e", "none", "--", &alias]);
                c
            };
            let direct_cmd = || -> anyhow::Result<tokio::process::Command> {
                let mut c = p.ssh_direct("ssh", &direct)?;
                c.args(["-tt", "-e", "none", "--", &direct.alias]);
                Ok(c)
            };
            let (ours, direct_ms) = if i % 2 == 0 {
                let o = round_trips(ours_cmd(), opts.round_trips).await?;
                (o, round_trips(direct_cmd()?, opts.round_trips).await?)
            } else {
                let d = round_trips(direct_cmd()?, opts.round_trips).await?;
                (round_trips(ours_cmd(), opts.round_trips).await?, d)
            };
            r.per_run.push((
                percentile(&ours, 50.0),
                percentile(&ours, 99.0),
                percentile(&direct_ms, 50.0),
                percentile(&direct_ms, 99.0),
            ));
        }
        anyhow::Ok(r)
    }
    .await;
    let _ = p.delete_session(&s.id).await;
    result
}

/// Nearest-rank percentile of milliseconds.
pub fn percentile(samples: &[f64], pct: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((pct / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Runs `ssh -tt … 'stty raw -echo; printf R; exec cat'` and times `n` one-byte round trips
/// after [`WARMUP`] untimed ones; milliseconds each.
async fn round_trips(mut cmd: tokio::process::Command, n: usize) -> anyhow::Result<Vec<f64>> {
    cmd.arg("stty raw -echo; printf R; exec cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("spawning ssh -tt")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut buf = [0u8; 256];
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let k = stdout.read(&mut buf).await?;
            anyhow::ensure!(k > 0, "ssh ended before the remote side was ready");
            if buf[..k].contains(&b'R') {
                return Ok(());
            }
        }
    })
    .await;
    if !matches!(ready, Ok(Ok(()))) {
        let _ = child.start_kill();
        let out = child.wait_with_output().await?;
        anyhow::bail!("ssh -tt did not get ready: {:?} {}", ready, platform::stderr_of(&out));
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..(WARMUP + n) {
        let byte = b'a' + (i % 26) as u8;
        let started = Instant::now();
        stdin.write_all(&[byte]).await?;
        stdin.flush().await?;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let k = stdout.read(&mut buf[..1]).await?;
                anyhow::ensure!(k > 0, "ssh ended");
                if buf[0] == byte {
                    return Ok(());
                }
            }
        })
        .await;
        anyhow::ensure!(matches!(got, Ok(Ok(()))), "round trip {i}: no echo: {got:?}");
        if i >= WARMUP {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    drop(stdin);
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(times)
}

pub fn section(r: &Results) -> Section {
    let col =
        |f: fn(&(f64, f64, f64, f64)) -> f64| -> Vec<f64> { r.per_run.iter().map(f).collect() };
    let row = |what: &str, v: Vec<f64>| summary_row(what, &v);
    let mut b = format!(
        "{} runs of {} round trips on each path (after {WARMUP} untimed ones), alternating; the \
         columns summarize the per-run percentiles.\n\n",
        r.runs, r.round_trips
    );
    b += &table(
        &["ms", "min", "median", "p95"],
        &[
            row("ours p50", col(|x| x.0)),
            row("ours p99", col(|x| x.1)),
            row("direct p50", col(|x| x.2)),
            row("direct p99", col(|x| x.3)),
            row("added p50 (ours − direct)", col(|x| x.0 - x.2)),
            row("added p99 (ours − direct)", col(|x| x.1 - x.3)),
        ],
    );
    if let (Some(a50), Some(a99)) = (r.added_p50(), r.added_p99()) {
        b += &format!(
            "\n**Added latency:** p50 **{:.3} ms**, p99 {:.3} ms (medians over the runs). Target \
             < 1 ms added at p50: **{}**.\n\n",
            a50.median,
            a99.median,
            if a50.median < 1.0 { "met" } else { "missed" }
        );
    }
    b += "**What is measured.** `ssh -tt` (with flare's options and key) runs `stty raw -echo; \
          printf R; exec cat` in a PTY of the session; after the `R`, the bench writes one byte \
          to ssh's stdin and waits for that byte on ssh's stdout, then the next. A round trip \
          crosses ssh, the ProxyCommand, the hops to the agent, the agent's PTY, `cat` and back. \
          Ours' ProxyCommand is `flare ssh --stdio` (the API's WebSocket, the node tunnel); \
          direct's is the bench's bridge to the agent's published port.\n";
    Section { title: "Interactive latency".into(), body: b }
}
