//! Benchmark `resume`: a sleeping session with 100 MB in its persisted paths to the first
//! output of a command over SSH, against restoring the same snapshot objects with plain tools
//! and `docker start`.
//!
//! - **ours**: `flare ssh NAME -- echo ok` on the sleeping session until `ok` is on its stdout:
//!   flare asks the workflow to start it and waits, the workflow makes a fresh container,
//!   restores the latest snapshot into it through the agent, and flare connects;
//! - **floor**: the same snapshot's objects (its manifest and chunks in the embedded S3 server,
//!   8 GETs in flight) piped through `zstd -d | tar -x` into a directory that a stopped container
//!   (made beforehand, outside the timing, like ours' image) mounts at `/home/dev`, then
//!   `docker start`, `GET /ready` every 5 ms and the same `ssh -- echo ok` straight to the agent.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use domain::snapshots::{ChunkStore, SnapshotManifest};

use crate::mix;
use crate::platform::{self, FloorContainer, Platform, docker_owned, now_ms, time_to_output};
use crate::report::{Section, summary_row, table};
use crate::stats::{Summary, median_ms};
use crate::timeline::{self, Timeline};

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Bytes of file content in the persisted path.
    pub size: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub runs: usize,
    pub data: String,
    pub snapshot_bytes: u64,
    pub chunks: u64,
    pub ours: Vec<f64>,
    pub floor: Vec<f64>,
    pub floor_restore: Vec<f64>,
    pub floor_start: Vec<f64>,
    pub floor_ready: Vec<f64>,
    pub floor_ssh: Vec<f64>,
    /// Untimed, for reference: `docker create` of the floor's container.
    pub floor_create: Vec<f64>,
    pub ours_timelines: Vec<Timeline>,
    pub floor_timelines: Vec<Timeline>,
}

impl Results {
    pub fn ratio(&self) -> Option<Summary> {
        Summary::of(&self.ours.iter().zip(&self.floor).map(|(o, f)| o / f).collect::<Vec<_>>())
    }
}

const NAME: &str = "rs";

pub async fn run(p: &Platform, opts: &Options) -> anyhow::Result<Results> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let src = p.scratch.join("resume-data");
    let summary = mix::generate(&src, opts.size, opts.seed)?;
    let mut r = Results { runs: opts.runs, data: summary.describe(), ..Default::default() };
    let s = p.create_session(NAME).await?;
    let result = async {
        let c = p.container_of(&s.id).await?;
        let env = p.session_env(&c.name).await?;
        platform::docker(&[
            "cp",
            &format!("{}/.", src.display()),
            &format!("{}:/home/dev/data", c.name),
        ])
        .await?;
        platform::docker(&["exec", &c.name, "chown", "-R", "dev:dev", "/home/dev/data"]).await?;
        let _ = std::fs::remove_dir_all(&src);
        // Pins the host key (and proves the path) before the first sleep.
        let mut pin = p.flare_cmd(&["ssh", NAME, "--", "true"]);
        let out = platform::run_output(&mut pin, Duration::from_secs(120)).await?;
        anyhow::ensure!(out.status.success(), "flare ssh {NAME}: {}", platform::stderr_of(&out));
        sleep(p, &s.id).await?;
        let (manifest_key, manifest) = latest_manifest(p, &s.id).await?;
        r.snapshot_bytes = manifest.size;
        r.chunks = manifest.chunks.len() as u64;
        // One untimed round of each first.
        ours_once(p, &s).await?;
        sleep(p, &s.id).await?;
        floor_once(p, &http, &env, &manifest_key, "warmup").await?;
        for i in 0..opts.runs {
            eprintln!("burstflare-bench: resume run {}/{}", i + 1, opts.runs);
            let floor_first = i % 2 == 1;
            if floor_first {
                push_floor(
                    &mut r,
                    floor_once(p, &http, &env, &manifest_key, &i.to_string()).await?,
                );
            }
            let (secs, tl) = ours_once(p, &s).await?;
            r.ours.push(secs);
            r.ours_timelines.push(tl);
            sleep(p, &s.id).await?;
            if !floor_first {
                push_floor(
                    &mut r,
                    floor_once(p, &http, &env, &manifest_key, &i.to_string()).await?,
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = p.delete_session(&s.id).await;
    result?;
    Ok(r)
}

fn push_floor(r: &mut Results, f: FloorRun) {
    r.floor.push(f.total);
    r.floor_restore.push(f.restore);
    r.floor_start.push(f.start);
    r.floor_ready.push(f.ready);
    r.floor_ssh.push(f.total - f.restore - f.start - f.ready);
    r.floor_create.push(f.create);
    r.floor_timelines.push(f.timeline);
}

async fn sleep(p: &Platform, id: &str) -> anyhow::Result<()> {
    let s = p.client.session_op(&p.ws, id, "sleep", true).await?;
    anyhow::ensure!(s.state == "sleeping", "the session is {} after sleep: {:?}", s.state, s.error);
    Ok(())
}

/// The key and content of the session's latest snapshot manifest.
async fn latest_manifest(p: &Platform, id: &str) -> anyhow::Result<(String, SnapshotManifest)> {
    let snaps = p.client.snapshots(&p.ws, id).await?;
    let latest = snaps.iter().find(|s| s.latest).context("the session has no latest snapshot")?;
    let store = ChunkStore::for_workspace(p.blob.clone(), &p.ws_id);
    let key = store.manifest_key(&latest.id);
    let manifest = store.get_manifest(&key).await?;
    Ok((key, manifest))
}

async fn ours_once(p: &Platform, s: &sdk::SessionDetail) -> anyhow::Result<(f64, Timeline)> {
    let t0 = now_ms();
    let mut ssh = p.flare_cmd(&["ssh", NAME, "--", "echo", "ok"]);
    let secs = time_to_output(&mut ssh, b"ok\n", Duration::from_secs(300))
        .await
        .with_context(|| format!("flare ssh {NAME} -- echo ok"))?;
    let h = timeline::session_history(p, &s.workflow_id).await?;
    let events = timeline::session_events(p, &s.id).await?;
    let audit = timeline::connect_audit(p, &s.id).await?;
    let mut tl = Timeline::default();
    tl.push("flare ssh spawned (session sleeping)", 0.0);
    timeline::workflow_steps(&mut tl, &h, &events, t0, t0);
    timeline::connect_steps(&mut tl, &audit, t0, t0);
    tl.push("`ok` read from ssh's stdout", secs * 1000.0);
    Ok((secs, tl))
}

struct FloorRun {
    total: f64,
    restore: f64,
    start: f64,
    ready: f64,
    create: f64,
    timeline: Timeline,
}

async fn floor_once(
    p: &Platform,
    http: &reqwest::Client,
    env: &[String],
    manifest_key: &str,
    tag: &str,
) -> anyhow::Result<FloorRun> {
    let name = format!("bfbench-resume-{tag}-{}", std::process::id());
    let dir = p.scratch.join(format!("floor-resume-{tag}"));
    let root = dir.join("root");
    let home = root.join("home/dev");
    std::fs::create_dir_all(&home)?;
    let data = dir.join("session");
    std::fs::create_dir_all(&data)?;
    let seed = format!("floor-resume-{tag}");
    let mounts = [(home.clone(), "/home/dev".to_string())];
    let f = FloorContainer {
        name: &name,
        seed: &seed,
        port: platform::free_port()?,
        data: &data,
        mounts: &mounts,
        env,
    };
    let mut args = vec!["create".to_string()];
    args.extend(p.floor_container_args(&f)?);
    let direct = p.direct_to_floor(&f)?;
    let result = async {
        let created = Instant::now();
        docker_owned(&args).await?;
        let create = created.elapsed().as_secs_f64();
        let started = Instant::now();
        restore_with_plain_tools(p, manifest_key, &root).await?;
        let restore = started.elapsed().as_secs_f64();
        platform::docker(&["start", &name]).await?;
        let start = started.elapsed().as_secs_f64() - restore;
        platform::wait_agent_ready(http, f.port).await?;
        let ready = started.elapsed().as_secs_f64() - restore - start;
        let ssh_spawn = started.elapsed().as_secs_f64();
        let mut ssh = p.ssh_direct("ssh", &direct)?;
        ssh.args(["--", &direct.alias, "echo", "ok"]).stdin(Stdio::null());
        let total = ssh_spawn + time_to_output(&mut ssh, b"ok\n", Duration::from_secs(120)).await?;
        let mut tl = Timeline::default();
        tl.push("GET manifest and chunks spawned", 0.0);
        tl.push("zstd -d | tar -x done", restore * 1000.0);
        tl.push("docker start returned", (restore + start) * 1000.0);
        tl.push("agent answered /ready", (restore + start + ready) * 1000.0);
        tl.push("`ok` read from ssh's stdout", total * 1000.0);
        anyhow::Ok(FloorRun { total, restore, start, ready, create, timeline: tl })
    }
    .await;
    let _ = platform::docker(&["rm", "-f", &name]).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// GET of the manifest and of every chunk in order (8 in flight), the stored bytes (zstd
/// frames) written into `zstd -d | tar -x` in `root`.
async fn restore_with_plain_tools(
    p: &Platform,
    manifest_key: &str,
    root: &Path,
) -> anyhow::Result<()> {
    let store = ChunkStore::for_workspace(p.blob.clone(), &p.ws_id);
    let manifest: SnapshotManifest = serde_json::from_slice(&p.blob.get(manifest_key).await?)?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -q -d -c | tar -x -p --numeric-owner -f - -C \"$0\"")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let keys: Vec<String> = manifest.chunks.iter().map(|c| store.chunk_key(&c.sha256)).collect();
    let mut gets = futures::stream::iter(keys.into_iter().map(|k| {
        let blob = p.blob.clone();
        async move { blob.get(&k).await }
    }))
    .buffered(8);
    while let Some(bytes) = gets.next().await {
        stdin.write_all(&bytes?).await?;
    }
    drop(stdin);
    let out = child.wait_with_output().await?;
    anyhow::ensure!(out.status.success(), "zstd -d | tar -x: {}", platform::stderr_of(&out));
    Ok(())
}

pub fn section(r: &Results) -> Section {
    let mut b = format!(
        "{} runs of each, alternating. Persisted path `/home/dev` holds {} (under \
         `/home/dev/data`); its snapshot is a {:.1} MB tar stream in {} chunks.\n\n",
        r.runs,
        r.data,
        r.snapshot_bytes as f64 / 1e6,
        r.chunks
    );
    b += &table(
        &["measurement", "min s", "median s", "p95 s"],
        &[
            summary_row("ours: sleeping → `ok` over `flare ssh`", &r.ours),
            summary_row("floor: restore + `docker start` → `ok` over ssh to the agent", &r.floor),
            summary_row("  GET manifest + chunks \\| zstd -d \\| tar -x", &r.floor_restore),
            summary_row("  `docker start`", &r.floor_start),
            summary_row("  until the agent answers `/ready`", &r.floor_ready),
            summary_row("  `ssh -- echo ok` straight to the agent", &r.floor_ssh),
            summary_row("(untimed) `docker create` of the floor's container", &r.floor_create),
        ],
    );
    if let Some(ratio) = r.ratio() {
        b += &format!(
            "\n**Ratio:** ours / floor = **{:.2}×** (median of the per-run ratios; runs \
             {:.2}–{:.2}). Target ≤ 1.5×: **{}**.\n\n",
            ratio.median,
            ratio.min,
            ratio.max,
            if ratio.median <= 1.5 { "met" } else { "missed" }
        );
    }
    b += "**What is measured.** Before the runs, the files are copied into the running session \
          (`docker cp`), the session is put to sleep (a snapshot of `/home/dev`, the container \
          removed), and after each of ours' runs it is put to sleep again (outside the timing; \
          nothing changed, so every chunk is found again). Ours is `flare ssh rs -- echo ok` on \
          the sleeping session: flare asks the session's workflow to start, polls the session, and \
          connects once it runs; the workflow makes a fresh container, waits for its agent, \
          restores the latest snapshot through the agent (`snapshot.restore`: manifest, chunks \
          read 8 ahead, the agent unpacking into a staging directory and swapping it in) and \
          records `state.running`. The floor reads the same snapshot's objects (its manifest and \
          chunks, the chunks being zstd frames, 8 GETs in flight) into `zstd -d | tar -x` in a \
          directory a stopped container mounts at `/home/dev`, then `docker start`, `GET /ready` \
          every 5 ms and the same ssh command straight to the agent's port. As the issue defines \
          the floor, `docker create` of its container is outside its timing (shown for \
          reference); ours creates its container inside the timing.\n\n";
    b += "### Where the time goes (ours)\n\nMilliseconds since `flare ssh` was spawned, medians \
          over the runs (the `Session` workflow's history, the session's events, the audit log \
          and the bench's clock):\n\n";
    b += &timeline::render(&r.ours_timelines);
    b += "\nThe floor, the same way:\n\n";
    b += &timeline::render(&r.floor_timelines);
    b += &format!("\n{}\n", findings(r));
    Section { title: "Resume".into(), body: b }
}

pub fn findings(r: &Results) -> String {
    let t = &r.ours_timelines;
    let m = |a: &str, b: &str| timeline::median_between(t, a, b).unwrap_or(f64::NAN);
    let at = |a: &str| timeline::median_at(t, a).unwrap_or(f64::NAN);
    let total = median_ms(&r.ours);
    let floor = median_ms(&r.floor);
    let floor_restore = median_ms(&r.floor_restore);
    let floor_ssh = median_ms(&r.floor_ssh);
    let running = at("session.record (state.running) done");
    let restore = m("snapshot.latest done", "snapshot.restore done");
    let poll = m("session.record (state.running) done", timeline::TOKEN);
    let connect = m(timeline::TOKEN, "`ok` read from ssh's stdout");
    format!(
        "**Findings.** Ours takes {total:.0} ms at the median, the floor {floor:.0} ms (its \
         restore {floor_restore:.0} ms). The workflow has recorded `state.running` \
         {running:.0} ms after flare was spawned; the restore through the agent \
         (`snapshot.restore`) takes {restore:.0} ms of it. Then {poll:.0} ms pass \
         before flare takes its first runtime token: `flare ssh` asks for `start` without \
         waiting and then polls the session's state (`cli/src/ssh/wake.rs`, `POLL`), so it \
         notices `running` up to one poll interval late: {:.0} ms at the median here. \
         From that token to `ok`: {connect:.0} ms (pinning, exec of ssh, the ProxyCommand \
         connecting with the token handed down to it, the WebSocket through the API and the \
         node tunnel, the SSH handshake and the command); the floor's ssh takes \
         {floor_ssh:.0} ms.",
        poll
    )
}
