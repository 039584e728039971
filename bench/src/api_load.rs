//! Benchmark `api`: `wrk` (Debian's package, installed by `make setup`) against the session list
//! endpoint with token auth, against `GET /api/health` (the floor the issue names) and
//! `GET /api/version` (a handler that does no I/O: the HTTP server's own floor), on the same
//! API in the same run. 2 threads, 16 connections, `--latency`.

use std::time::Duration;

use anyhow::Context;

use crate::platform::{self, Platform};
use crate::report::{Section, table};
use crate::stats::Summary;

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub seconds: u32,
    pub connections: u32,
    pub sessions: usize,
}

/// One wrk run's result.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wrk {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers and socket errors.
    pub errors: u64,
}

pub const ENDPOINTS: [&str; 3] =
    ["GET …/sessions (list, bearer token)", "GET /api/health (floor)", "GET /api/version (no I/O)"];

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub runs: usize,
    pub opts_line: String,
    pub sessions: usize,
    pub per: [Vec<Wrk>; 3],
    pub wrk_version: String,
}

impl Results {
    /// Per-run ratio of the list's req/s to `/api/health`'s.
    pub fn ratio(&self) -> Option<Summary> {
        Summary::of(
            &self.per[0].iter().zip(&self.per[1]).map(|(l, h)| l.rps / h.rps).collect::<Vec<_>>(),
        )
    }
}

pub async fn run(p: &Platform, opts: &Options) -> anyhow::Result<Results> {
    let version = tokio::process::Command::new("wrk").arg("-v").output().await.context(
        "wrk is not installed: run `make setup` (scripts/setup.sh installs Debian's wrk)",
    )?;
    let wrk_version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&version.stderr).lines())
        .find(|l| l.starts_with("wrk"))
        .unwrap_or("wrk")
        .split(" Copyright")
        .next()
        .unwrap_or("wrk")
        .trim()
        .to_string();
    // The list has some running sessions in it.
    let names: Vec<String> = (0..opts.sessions).map(|i| format!("api-{i}")).collect();
    let made = futures::future::join_all(names.iter().map(|n| p.create_session(n))).await;
    let mut ids = Vec::new();
    let mut first_err = None;
    for m in made {
        match m {
            Ok(s) => ids.push(s.id),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let result = async {
        if let Some(e) = first_err {
            return Err(e);
        }
        let urls = [
            format!("{}/api/v1/workspaces/{}/sessions", p.base, p.ws),
            format!("{}/api/health", p.base),
            format!("{}/api/version", p.base),
        ];
        for u in &urls {
            anyhow::ensure!(u.starts_with("http://127.0.0.1:"), "not loopback: {u}");
        }
        let mut r = Results {
            runs: opts.runs,
            sessions: ids.len(),
            opts_line: format!(
                "wrk -t2 -c{} -d{}s --latency -H 'Authorization: Bearer …' URL",
                opts.connections, opts.seconds
            ),
            wrk_version,
            ..Default::default()
        };
        // A short untimed round first.
        for u in &urls {
            wrk(&p.token, u, opts.connections, 1).await?;
        }
        for i in 0..opts.runs {
            eprintln!("burstflare-bench: api run {}/{}", i + 1, opts.runs);
            for k in 0..3 {
                let which = (i + k) % 3;
                r.per[which]
                    .push(wrk(&p.token, &urls[which], opts.connections, opts.seconds).await?);
            }
        }
        anyhow::Ok(r)
    }
    .await;
    for id in &ids {
        let _ = p.delete_session(id).await;
    }
    result
}

async fn wrk(token: &str, url: &str, connections: u32, seconds: u32) -> anyhow::Result<Wrk> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url);
    let out = platform::run_output(&mut cmd, Duration::from_secs(u64::from(seconds) + 60)).await?;
    anyhow::ensure!(out.status.success(), "wrk {url}: {}", platform::stderr_of(&out));
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// Reads wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> anyhow::Result<Wrk> {
    let mut w = Wrk::default();
    let mut rps = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("50%") {
            w.p50_ms = duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("99%") {
            w.p99_ms = duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            w.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                w.errors +=
                    part.split_whitespace().last().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
        }
    }
    w.rps = rps.context("no Requests/sec in wrk's output")?;
    Ok(w)
}

pub fn section(r: &Results) -> Section {
    let mut rows = Vec::new();
    for (i, name) in ENDPOINTS.iter().enumerate() {
        let rps: Vec<f64> = r.per[i].iter().map(|w| w.rps).collect();
        let p50: Vec<f64> = r.per[i].iter().map(|w| w.p50_ms).collect();
        let p99: Vec<f64> = r.per[i].iter().map(|w| w.p99_ms).collect();
        let errors: u64 = r.per[i].iter().map(|w| w.errors).sum();
        if let (Some(rps), Some(p50), Some(p99)) =
            (Summary::of(&rps), Summary::of(&p50), Summary::of(&p99))
        {
            rows.push(vec![
                name.to_string(),
                format!("{:.0}", rps.min),
                format!("{:.0}", rps.median),
                format!("{:.2}", p50.median),
                format!("{:.2}", p99.median),
                format!("{:.2}", p99.max),
                errors.to_string(),
            ]);
        }
    }
    let mut b = format!(
        "{} runs of `{}` on each endpoint in turn ({}; the API, its database and the Temporal \
         server share the machine's 2 cores with wrk). The workspace has {} running sessions.\n\n",
        r.runs, r.opts_line, r.wrk_version, r.sessions
    );
    b += &table(
        &[
            "endpoint",
            "req/s min",
            "req/s median",
            "p50 ms",
            "p99 ms (median)",
            "p99 ms (max)",
            "errors",
        ],
        &rows,
    );
    if let Some(ratio) = r.ratio() {
        b += &format!(
            "\n**Ratio:** the session list serves **{:.2}×** the requests per second of \
             `/api/health` (median of the per-run ratios; runs {:.2}–{:.2}). The issue sets no \
             target here; `/api/health` probes the database, S3, Temporal, Docker and the \
             registry on every request, so it is a heavy floor; `/api/version` shows what the \
             HTTP server alone serves.\n",
            ratio.median, ratio.min, ratio.max
        );
    }
    let version: Vec<f64> = r.per[2].iter().map(|w| w.rps).collect();
    let list: Vec<f64> = r.per[0].iter().map(|w| w.rps).collect();
    if let (Some(v), Some(l)) = (Summary::of(&version), Summary::of(&list)) {
        b += &format!(
            "\nThe list serves {:.2}× the requests per second of `/api/version`: bearer \
             authentication, the workspace membership check and the list query cost the rest.\n",
            l.median / v.median
        );
    }
    Section { title: "API".into(), body: b }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 10s test @ http://127.0.0.1:1/api/health
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.20ms    1.10ms  30.00ms   90.00%
    Req/Sec     1.50k   100.00     1.70k    70.00%
  Latency Distribution
     50%    4.90ms
     75%    5.50ms
     90%    6.60ms
     99%   12.34ms
  30000 requests in 10.00s, 5.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2999.50
Transfer/sec:    511.00KB
";
        let w = parse_wrk(text).unwrap();
        assert_eq!(w.rps, 2999.5);
        assert!((w.p50_ms - 4.9).abs() < 1e-9);
        assert!((w.p99_ms - 12.34).abs() < 1e-9);
        assert_eq!(w.errors, 7);
        assert_eq!(duration_ms("850.00us"), Some(0.85));
        assert_eq!(duration_ms("1.20s"), Some(1200.0));
        assert!(parse_wrk("nothing").is_err());
    }
}
