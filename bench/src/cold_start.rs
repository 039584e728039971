//! Benchmark `cold-start`: a new session to the first output of a command over SSH, as a user
//! gets it, against `docker run` of the same container and SSH straight to its agent.
//!
//! - **ours**: `flare session create --template bench --name N` (the server answers once the
//!   session runs), then `flare ssh N -- echo ok` (ssh through `flare ssh --stdio`, the API and
//!   the node tunnel) until `ok` is on its stdout;
//! - **floor**: `docker run -d` of the sessions' image with the same agent bind-mounted as its
//!   entrypoint, the same env, limits and security options, its port published on 127.0.0.1;
//!   `GET /ready` every 5 ms until it answers; then the same `ssh -- echo ok` with a ProxyCommand
//!   that goes straight to the agent's published port (`burstflare-bench __ws-stdio`).
//!
//! Ours and the floor alternate (which goes first flips every run). Each of ours' runs is taken
//! apart from the workflow history, session events and audit rows ([`crate::timeline`]).

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::platform::{self, FloorContainer, Platform, docker_owned, now_ms, time_to_output};
use crate::report::{Section, summary_row, table};
use crate::stats::{Summary, median_ms};
use crate::timeline::{self, Timeline};

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub runs: usize,
    /// Seconds: ours whole, its create part and its ssh part.
    pub ours: Vec<f64>,
    pub ours_create: Vec<f64>,
    pub ours_ssh: Vec<f64>,
    /// Seconds: the floor whole, docker run, waiting for /ready, ssh.
    pub floor: Vec<f64>,
    pub floor_run: Vec<f64>,
    pub floor_ready: Vec<f64>,
    pub floor_ssh: Vec<f64>,
    pub ours_timelines: Vec<Timeline>,
    pub floor_timelines: Vec<Timeline>,
    /// Milliseconds of each run's workflow (start → state.running recorded): in activities,
    /// waiting for a worker, and the rest (workflow tasks, the server).
    pub workflow_split: Vec<(f64, f64, f64)>,
    pub image: String,
    pub cores: usize,
}

impl Results {
    pub fn ratios(&self) -> Vec<f64> {
        self.ours.iter().zip(&self.floor).map(|(o, f)| o / f).collect()
    }

    pub fn ratio(&self) -> Option<Summary> {
        Summary::of(&self.ratios())
    }
}

pub async fn run(p: &Platform, opts: &Options) -> anyhow::Result<Results> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let mut r = Results {
        runs: opts.runs,
        image: p.image.clone(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        ..Default::default()
    };
    // The floor runs with the env the sessions' containers get.
    let warm = p.create_session("cs-warm").await?;
    let env = p.session_env(&p.container_of(&warm.id).await?.name).await?;
    p.delete_session(&warm.id).await?;
    // One untimed round of each first.
    ours_once(p, "cs-warmup").await?;
    floor_once(p, &http, &env, "warmup").await?;
    for i in 0..opts.runs {
        eprintln!("burstflare-bench: cold-start run {}/{}", i + 1, opts.runs);
        let floor_first = i % 2 == 1;
        if floor_first {
            push_floor(&mut r, floor_once(p, &http, &env, &i.to_string()).await?);
        }
        let o = ours_once(p, &format!("cs-{i}")).await?;
        r.ours.push(o.total);
        r.ours_create.push(o.create);
        r.ours_ssh.push(o.total - o.create);
        r.ours_timelines.push(o.timeline);
        r.workflow_split.push(o.split);
        if !floor_first {
            push_floor(&mut r, floor_once(p, &http, &env, &i.to_string()).await?);
        }
    }
    Ok(r)
}

fn push_floor(r: &mut Results, f: FloorRun) {
    r.floor.push(f.total);
    r.floor_run.push(f.run);
    r.floor_ready.push(f.ready);
    r.floor_ssh.push(f.total - f.run - f.ready);
    r.floor_timelines.push(f.timeline);
}

struct OursRun {
    total: f64,
    create: f64,
    timeline: Timeline,
    split: (f64, f64, f64),
}

async fn ours_once(p: &Platform, name: &str) -> anyhow::Result<OursRun> {
    let t0 = now_ms();
    let started = Instant::now();
    let mut create = p.flare_cmd(&[
        "session",
        "create",
        "--template",
        platform::TEMPLATE,
        "--name",
        name,
        "--output",
        "json",
    ]);
    let out = platform::run_output(&mut create, Duration::from_secs(180)).await?;
    let create_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "flare session create: {}", platform::stderr_of(&out));
    let s: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("flare session create's JSON")?;
    let id = s["id"].as_str().context("the session's id")?.to_string();
    let workflow_id = s["workflow_id"].as_str().context("the workflow id")?.to_string();
    let created_at = s["created_at"].as_f64().unwrap_or(t0);
    let ssh_spawn = started.elapsed().as_secs_f64();
    let mut ssh = p.flare_cmd(&["ssh", name, "--", "echo", "ok"]);
    let to_output = time_to_output(&mut ssh, b"ok\n", Duration::from_secs(180)).await;
    let total = ssh_spawn + to_output.as_ref().copied().unwrap_or(0.0);
    // Where the time went, before the session goes.
    let tl = async {
        let h = timeline::session_history(p, &workflow_id).await?;
        let events = timeline::session_events(p, &id).await?;
        let audit = timeline::connect_audit(p, &id).await?;
        let mut tl = Timeline::default();
        tl.push("flare session create spawned", 0.0);
        tl.push("API: session row written (accepted)", created_at - t0);
        tl.push("workflow started", h.started - t0);
        timeline::workflow_steps(&mut tl, &h, &events, t0, h.started);
        tl.push("flare session create returned", create_secs * 1000.0);
        tl.push("flare ssh spawned", ssh_spawn * 1000.0);
        timeline::connect_steps(&mut tl, &audit, t0, t0);
        tl.push("`ok` read from ssh's stdout", total * 1000.0);
        let running = events
            .iter()
            .find(|(k, _)| k == "state.running")
            .map_or(h.started, |(_, at)| *at)
            .max(h.started);
        let done = h
            .activities
            .iter()
            .filter_map(|a| a.completed)
            .filter(|c| *c >= running)
            .fold(running, f64::min);
        anyhow::Ok((tl, timeline::split_workflow_time(&h, h.started, done)))
    }
    .await;
    p.delete_session(&id).await?;
    to_output.with_context(|| format!("flare ssh {name} -- echo ok"))?;
    let (timeline, split) = tl?;
    Ok(OursRun { total, create: create_secs, timeline, split })
}

struct FloorRun {
    total: f64,
    run: f64,
    ready: f64,
    timeline: Timeline,
}

async fn floor_once(
    p: &Platform,
    http: &reqwest::Client,
    env: &[String],
    tag: &str,
) -> anyhow::Result<FloorRun> {
    let name = format!("bfbench-cold-{tag}-{}", std::process::id());
    let data = p.scratch.join(format!("floor-cold-{tag}"));
    std::fs::create_dir_all(&data)?;
    let seed = format!("floor-cold-{tag}");
    let f = FloorContainer {
        name: &name,
        seed: &seed,
        port: platform::free_port()?,
        data: &data,
        mounts: &[],
        env,
    };
    let mut args = vec!["run".to_string(), "-d".to_string()];
    args.extend(p.floor_container_args(&f)?);
    let direct = p.direct_to_floor(&f)?;
    let started = Instant::now();
    let result = async {
        docker_owned(&args).await?;
        let run = started.elapsed().as_secs_f64();
        platform::wait_agent_ready(http, f.port).await?;
        let ready = started.elapsed().as_secs_f64() - run;
        let ssh_spawn = started.elapsed().as_secs_f64();
        let mut ssh = p.ssh_direct("ssh", &direct)?;
        ssh.args(["--", &direct.alias, "echo", "ok"]).stdin(std::process::Stdio::null());
        let out = time_to_output(&mut ssh, b"ok\n", Duration::from_secs(120)).await?;
        let total = ssh_spawn + out;
        let mut tl = Timeline::default();
        tl.push("docker run spawned", 0.0);
        tl.push("docker run returned (container started)", run * 1000.0);
        tl.push("agent answered /ready", (run + ready) * 1000.0);
        tl.push("`ok` read from ssh's stdout", total * 1000.0);
        anyhow::Ok(FloorRun { total, run, ready, timeline: tl })
    }
    .await;
    let _ = platform::docker(&["rm", "-f", &name]).await;
    let _ = std::fs::remove_dir_all(&data);
    result
}

pub fn section(r: &Results) -> Section {
    let mut b = String::new();
    b += &format!(
        "{} runs of each, alternating. Image: `{}` (the sample template `devbox`, built FROM \
         `burstflare/base`).\n\n",
        r.runs, r.image
    );
    b += &table(
        &["measurement", "min s", "median s", "p95 s"],
        &[
            summary_row("ours: create → `ok` over `flare ssh`", &r.ours),
            summary_row("  `flare session create` (answers once running)", &r.ours_create),
            summary_row("  `flare ssh NAME -- echo ok`", &r.ours_ssh),
            summary_row("floor: `docker run` → `ok` over ssh to the agent's port", &r.floor),
            summary_row("  `docker run -d` (returns once started)", &r.floor_run),
            summary_row("  until the agent answers `/ready`", &r.floor_ready),
            summary_row("  `ssh -- echo ok` straight to the agent", &r.floor_ssh),
        ],
    );
    b += "\np95 is the nearest rank (the slowest run below 20 runs).\n\n";
    if let Some(ratio) = r.ratio() {
        let median = Summary::of(&r.ours).map_or(0.0, |s| s.median);
        let met_ratio = ratio.median <= 1.5;
        let met_abs = median < 1.0;
        b += &format!(
            "**Ratio:** ours / floor = **{:.2}×** (median of the per-run ratios; runs {:.2}–{:.2}). \
             Target ≤ 1.5×: **{}**. Target under 1 s on a {}-core machine: ours' median is {:.2} s: \
             **{}**.\n\n",
            ratio.median,
            ratio.min,
            ratio.max,
            if met_ratio { "met" } else { "missed" },
            r.cores,
            median,
            if met_abs { "met" } else { "missed" },
        );
    }
    b += "**What is measured.** Ours: `flare session create --template bench --name N --output \
          json` (the server holds the request until the session runs), then `flare ssh N -- echo \
          ok` until `ok` is on its stdout: flare resolves the session, checks its key is \
          registered, takes a runtime token to pin the host key, and runs OpenSSH, whose \
          ProxyCommand `flare ssh --stdio` opens the WebSocket with that token (handed down in \
          its environment) through the API and the node tunnel to the agent. The floor is the same \
          container without the control plane: `docker run -d` of the same image with the same \
          agent bind-mounted as its entrypoint and the same env, limits and security options, its \
          port published on 127.0.0.1, `GET /ready` every 5 ms, then the same OpenSSH command \
          with the same options and key, its ProxyCommand a WebSocket straight to the agent's \
          published port. Each session is deleted (and each floor container removed) after its \
          run, outside the timing.\n\n";
    b += "### Where the time goes (ours)\n\nMilliseconds since `flare session create` was \
          spawned, medians over the runs: the bench's clock for the commands, the `Session` \
          workflow's history for its start and each activity's completion (a local activity's \
          from its marker), the session's events \
          for what each `session.record` wrote, and the audit log for the runtime tokens and the \
          connection opening at the API.\n\n";
    b += &timeline::render(&r.ours_timelines);
    b += "\nThe floor, the same way:\n\n";
    b += &timeline::render(&r.floor_timelines);
    b += &format!("\n{}\n", findings(r));
    Section { title: "Cold start".into(), body: b }
}

/// The findings paragraph, written from the numbers.
pub fn findings(r: &Results) -> String {
    let t = &r.ours_timelines;
    let m = |a: &str, b: &str| timeline::median_between(t, a, b).unwrap_or(f64::NAN);
    let total = median_ms(&r.ours);
    let floor = median_ms(&r.floor);
    let floor_run = median_ms(&r.floor_run);
    let floor_ssh = median_ms(&r.floor_ssh);
    let accept = m("flare session create spawned", "workflow started");
    let workflow = m("workflow started", "session.record (state.running) done");
    let answer = m("session.record (state.running) done", "flare session create returned");
    let start_container = m("session.ensure_container done", "session.start_container done");
    let ssh_total = m("flare ssh spawned", "`ok` read from ssh's stdout");
    let to_token = m("flare ssh spawned", timeline::TOKEN);
    let token_to_open = m(timeline::TOKEN, timeline::OPEN);
    let open_to_ok = m(timeline::OPEN, "`ok` read from ssh's stdout");
    let split = |i: usize| {
        let v: Vec<f64> = r
            .workflow_split
            .iter()
            .map(|s| match i {
                0 => s.0,
                1 => s.1,
                _ => s.2,
            })
            .collect();
        Summary::of(&v).map_or(f64::NAN, |s| s.median)
    };
    format!(
        "**Findings.** Ours takes {total:.0} ms at the median, the floor {floor:.0} ms \
         (`docker run` {floor_run:.0} ms, its ssh {floor_ssh:.0} ms). Of ours: \
         {accept:.0} ms until the workflow starts (flare's start-up, the API writing the row and \
         starting the workflow); {workflow:.0} ms of workflow until `state.running` is recorded, \
         of which {:.0} ms run in the node's activities, {:.0} ms wait for the node's worker to \
         pick one up and {:.0} ms are workflow tasks, the server between them and the local \
         activities they run (the control steps `session.record` ×3, `session.pick_node` and \
         `snapshot.latest` are local activities; `session.ensure_container` and \
         `session.start_container` are each a round trip through the Temporal dev server to \
         the node's task queue); `session.start_container` alone ({start_container:.0} ms after \
         the container was created) is `docker start`, then `GET /ready` every 10 ms \
         (`activities/src/node.rs`, `start_container`), where the floor's `docker run` creates \
         and starts the container in one call and polls `/ready` every 5 ms; then {answer:.0} ms \
         until `flare session create` returns (the API re-reads the row when the worker writes \
         it, `api/src/sessions.rs`, `wait_for`, and answers over HTTP). `flare ssh` takes \
         {ssh_total:.0} ms to `ok` (the floor's ssh {floor_ssh:.0} ms): {to_token:.0} ms until \
         its runtime token is issued (flare's start-up, resolving the session, listing keys), \
         {token_to_open:.0} ms until the WebSocket is through to the agent (pinning the host \
         key, exec of ssh, the ProxyCommand's start with the token handed down to it, the \
         WebSocket through the API and the node tunnel), and {open_to_ok:.0} ms of SSH \
         handshake, authentication and the command, where the floor's whole ssh, its own \
         process start included, takes {floor_ssh:.0} ms: the handshake's round trips cross \
         flare's bridge, the API's WebSocket proxy and the node tunnel (`api/src/connect.rs`, \
         `api/src/tunnel.rs`) instead of one bridge.",
        split(0),
        split(1),
        split(2),
    )
}
