//! Benchmark `snapshots`: snapshot and restore throughput of a persisted path, on the node's
//! path (activities/src/snapshot.rs), against a floor of plain tools.
//!
//! - **ours, snapshot**: the real agent's `POST /snapshot/pack` streamed over HTTP into
//!   `ChunkStore::upload` against the embedded S3 server, then `put_manifest`; cold (an empty
//!   workspace prefix) and incremental (after one percent of the files changed);
//! - **ours, restore**: `get_manifest` and `ChunkStore::read` streamed through a pipe as the
//!   body of the agent's `POST /snapshot/restore`, into a path that does not exist (as in a
//!   fresh container);
//! - **floor**: `tar -cf - | zstd -3 -T1` into a file and one `BlobStore::put` of it, and one
//!   `BlobStore::get` and `zstd -d | tar -x` back.
//!
//! After the runs, one pass takes the cold snapshot and the restore apart (the agent alone, the
//! chunk store from memory, its chunker, hashes, compression and S3 requests each alone), so a
//! bad ratio comes with where the time goes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::runtime::Runtime;

use burstflare_api::s3::EmbeddedS3;
use domain::blob::BlobStore;
use domain::snapshots::{
    CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ChunkRef, ChunkStore, SnapshotManifest, UploadStats,
    pack_chunk, sha256_hex, unpack_chunk,
};

use crate::agent::AgentProcess;
use crate::mix::{self, MixSummary};
use crate::report::{Section, table};
use crate::stats::Summary;
use crate::tree;

const TOKEN: &str = "burstflare-bench-agent-token";
const S3_ACCESS: &str = "bench-access";
const S3_SECRET: &str = "bench-secret-key";
/// Share of the files the incremental snapshot finds changed.
const EDIT_PERCENT: u64 = 1;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Bytes of file content to generate.
    pub size: u64,
    pub seed: u64,
    pub agent: PathBuf,
    /// Parent of the temporary directory (the data, the S3 server's files, restores).
    pub work_dir: PathBuf,
}

/// One run's measurements (seconds) and sizes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub snapshot: f64,
    pub incremental: f64,
    pub restore: f64,
    pub tar_zstd: f64,
    pub put: f64,
    pub get: f64,
    pub unzstd_untar: f64,
    /// CPU seconds of this process (chunk store client and S3 server) and of the agent during
    /// the cold snapshot and the restore.
    pub snapshot_cpu: (f64, f64),
    pub restore_cpu: (f64, f64),
    /// The tar stream.
    pub stream_bytes: u64,
    pub chunks: u64,
    pub stored_bytes: u64,
    pub edited_files: usize,
    pub inc_chunks: u64,
    pub inc_new_chunks: u64,
    pub inc_stored_bytes: u64,
    /// The floor's .tar.zst.
    pub archive_bytes: u64,
}

impl Run {
    pub fn floor_snapshot(&self) -> f64 {
        self.tar_zstd + self.put
    }

    pub fn floor_restore(&self) -> f64 {
        self.get + self.unzstd_untar
    }
}

/// One pass that takes a cold snapshot and a restore apart: each part alone, over the same
/// tar stream. Seconds unless named `_ms` (milliseconds per request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    /// The agent's pack drained into memory (no chunk store).
    pub pack: f64,
    pub stream_bytes: u64,
    /// `ChunkStore::upload` from memory into an empty prefix, and `put_manifest`.
    pub upload: f64,
    pub chunks: u64,
    pub stored_bytes: u64,
    pub fastcdc: f64,
    pub sha256: f64,
    pub zstd: f64,
    /// zstd -d and sha256 of every chunk (the read-back check).
    pub readback: f64,
    /// HEAD, PUT and GET of every chunk, one after the other, and each kind's mean.
    pub s3: f64,
    pub head_ms: f64,
    pub put_ms: f64,
    pub get_ms: f64,
    /// `ChunkStore::read` into a sink.
    pub read: f64,
    /// The agent restoring the stream from memory into a fresh directory.
    pub agent_restore: f64,
}

/// Everything the section is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub mix: MixSummary,
    pub seed: u64,
    pub runs: Vec<Run>,
    /// What was checked about the restored trees.
    pub checked: String,
    pub breakdown: Breakdown,
}

struct Ctx<'a> {
    rt: &'a Runtime,
    blob: BlobStore,
    agent: AgentProcess,
    http: reqwest::Client,
    work: PathBuf,
    /// The persisted path: `<work>/home/dev`.
    src: PathBuf,
    seed: u64,
}

pub fn run(opts: &Options, rt: &Runtime) -> anyhow::Result<Results> {
    let work = tempfile::Builder::new()
        .prefix("burstflare-bench-")
        .tempdir_in(&opts.work_dir)
        .with_context(|| format!("creating a directory in {}", opts.work_dir.display()))?;
    let src = work.path().join("home/dev");
    eprintln!("snapshots: generating {} MB of files in {}", opts.size / 1_000_000, src.display());
    let mix = mix::generate(&src, opts.size, opts.seed)?;
    eprintln!("snapshots: {}", mix.describe());
    let original = tree::listing(&src)?;

    let s3 = rt.block_on(EmbeddedS3::start(&work.path().join("s3"), S3_ACCESS, S3_SECRET))?;
    let mut cfg = domain::Config::default().storage;
    cfg.endpoint = url::Url::parse(&s3.endpoint())?;
    cfg.access_key_id = S3_ACCESS.into();
    cfg.secret_access_key = secrecy::SecretString::from(S3_SECRET.to_string());
    cfg.force_path_style = true;
    let blob = BlobStore::new(&cfg);
    rt.block_on(blob.ensure_bucket())?;
    // As the node's client (NodeSnapshots::new): no overall timeout, a read timeout.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(120))
        .build()?;
    let mut agent = AgentProcess::start(&opts.agent, TOKEN, &work.path().join("agent.log"))?;
    rt.block_on(agent.wait_ready(&http))?;
    let ctx = Ctx { rt, blob, agent, http, work: work.path().to_path_buf(), src, seed: opts.seed };

    let mut runs = Vec::new();
    for i in 0..opts.runs {
        let r = one_run(&ctx, i, (i == 0).then_some(original.as_slice()))
            .with_context(|| format!("run {}", i + 1))
            .map_err(|e| e.context(format!("agent log: {}", ctx.agent.log_tail())))?;
        eprintln!(
            "snapshots: run {}/{}: snapshot {:.2} s (incremental {:.2} s), restore {:.2} s; \
             floor: tar|zstd {:.2} s + put {:.2} s, get {:.2} s + unzstd|untar {:.2} s",
            i + 1,
            opts.runs,
            r.snapshot,
            r.incremental,
            r.restore,
            r.tar_zstd,
            r.put,
            r.get,
            r.unzstd_untar
        );
        runs.push(r);
    }
    eprintln!("snapshots: breakdown pass");
    let breakdown = breakdown(&ctx).context("the breakdown pass")?;
    drop(ctx);
    drop(s3);
    Ok(Results {
        mix,
        seed: opts.seed,
        runs,
        checked: "the restored tree of the first run, ours and the floor's, equals the source: \
                  every entry's name, type, mode, owner, mtime, size, sha256, symlink target \
                  and hard-link sharing"
            .into(),
        breakdown,
    })
}

/// Writeback of earlier steps must not land in the next timed one.
fn sync() {
    let _ = Command::new("sync").status();
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)": state is field 3, utime and stime are fields 14 and 15.
    let ticks: f64 =
        fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Cpu<'a> {
    agent: &'a str,
    at: (f64, f64),
}

impl<'a> Cpu<'a> {
    fn start(agent: &'a str) -> Self {
        Cpu { agent, at: (cpu_secs("self"), cpu_secs(agent)) }
    }

    fn used(&self) -> (f64, f64) {
        (cpu_secs("self") - self.at.0, cpu_secs(self.agent) - self.at.1)
    }
}

fn one_run(ctx: &Ctx, i: usize, check: Option<&[tree::EntryFacts]>) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let chunks = ChunkStore::for_workspace(ctx.blob.clone(), &format!("bench-run-{i}"));
    let agent_pid = ctx.agent.pid().to_string();

    // Ours, cold: every chunk is new.
    sync();
    let cpu = Cpu::start(&agent_pid);
    let t = Instant::now();
    let (key, manifest, stats) = ctx.rt.block_on(snapshot(ctx, &chunks, "cold"))?;
    run.snapshot = secs(t);
    run.snapshot_cpu = cpu.used();
    run.stream_bytes = manifest.size;
    run.chunks = stats.chunks;
    run.stored_bytes = stats.stored_bytes;
    anyhow::ensure!(stats.new_chunks == stats.chunks, "the store was not empty: {stats:?}");

    // Ours, restore into a path that does not exist: the source moves aside meanwhile.
    let aside = ctx.src.with_file_name("dev.source");
    fs::rename(&ctx.src, &aside)?;
    sync();
    let cpu = Cpu::start(&agent_pid);
    let t = Instant::now();
    let restored = ctx.rt.block_on(restore(ctx, &chunks, &key));
    run.restore = secs(t);
    run.restore_cpu = cpu.used();
    let checked = match (&restored, check) {
        (Ok(_), Some(expected)) => tree::same(expected, &tree::listing(&ctx.src)?, "our restore"),
        _ => Ok(()),
    };
    if ctx.src.exists() {
        fs::remove_dir_all(&ctx.src)?;
    }
    fs::rename(&aside, &ctx.src)?;
    restored?;
    checked?;

    // Ours, incremental: the same files with one percent of them changed.
    let edit = mix::edit(&ctx.src, EDIT_PERCENT, ctx.seed.wrapping_add(1000))?;
    run.edited_files = edit.files();
    sync();
    let t = Instant::now();
    let inc = ctx.rt.block_on(snapshot(ctx, &chunks, "incremental"));
    run.incremental = secs(t);
    edit.undo()?;
    let (_, _, stats) = inc?;
    run.inc_chunks = stats.chunks;
    run.inc_new_chunks = stats.new_chunks;
    run.inc_stored_bytes = stats.stored_bytes;

    // The floor.
    let archive = ctx.work.join("floor.tar.zst");
    let home = ctx.src.parent().context("the source has a parent")?;
    sync();
    let t = Instant::now();
    tar_zstd(home, "dev", &archive)?;
    run.tar_zstd = secs(t);
    let bytes = fs::read(&archive)?;
    run.archive_bytes = bytes.len() as u64;
    let floor_key = format!("floor/run-{i}.tar.zst");
    let t = Instant::now();
    ctx.rt.block_on(ctx.blob.put(&floor_key, bytes, "application/zstd"))?;
    run.put = secs(t);
    let t = Instant::now();
    let got = ctx.rt.block_on(ctx.blob.get(&floor_key))?;
    run.get = secs(t);
    anyhow::ensure!(
        got.len() as u64 == run.archive_bytes,
        "the floor's GET returned {} bytes",
        got.len()
    );
    fs::write(&archive, &got)?;
    drop(got);
    let dest = ctx.work.join("floor-restore");
    fs::create_dir(&dest)?;
    sync();
    let t = Instant::now();
    unzstd_untar(&archive, &dest)?;
    run.unzstd_untar = secs(t);
    if let Some(expected) = check {
        tree::same(expected, &tree::listing(&dest.join("dev"))?, "the floor's restore")?;
    }
    fs::remove_dir_all(&dest)?;
    fs::remove_file(&archive)?;

    // Free the run's storage (not timed): garbage collection with nothing live.
    ctx.rt.block_on(async {
        chunks.collect_garbage(&[], Duration::ZERO).await?;
        ctx.blob.delete(&floor_key).await?;
        anyhow::Ok(())
    })?;
    Ok(run)
}

/// The node's `snapshot.upload`: the agent's pack streamed into the chunk store, the manifest
/// written last.
async fn snapshot(
    ctx: &Ctx<'_>,
    chunks: &ChunkStore,
    id: &str,
) -> anyhow::Result<(String, SnapshotManifest, UploadStats)> {
    let resp = pack_request(ctx).await?;
    let stream = resp.bytes_stream().map(|r| r.map_err(std::io::Error::other));
    let reader = tokio_util::io::StreamReader::new(stream);
    let (manifest, stats) = chunks.upload(reader).await?;
    anyhow::ensure!(manifest.size > 0, "the agent sent an empty stream");
    let key = chunks.put_manifest(id, &manifest).await?;
    Ok((key, manifest, stats))
}

async fn pack_request(ctx: &Ctx<'_>) -> anyhow::Result<reqwest::Response> {
    let resp = ctx
        .http
        .post(ctx.agent.url("/snapshot/pack"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "paths": [ctx.src], "max_bytes": 1u64 << 40 }))
        .send()
        .await
        .context("POST /snapshot/pack")?;
    let status = resp.status();
    anyhow::ensure!(
        status.is_success(),
        "pack answered {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(resp)
}

/// The node's `snapshot.restore`: the manifest read chunk by chunk into a pipe whose other end
/// is the body of the agent's restore; a failed read cuts the body.
async fn restore(ctx: &Ctx<'_>, chunks: &ChunkStore, key: &str) -> anyhow::Result<u64> {
    let manifest = chunks.get_manifest(key).await?;
    let (mut writer, pipe) = tokio::io::duplex(1 << 20);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let reader = {
        let chunks = chunks.clone();
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let result = chunks.read(&manifest, &mut writer).await;
            if let Err(e) = &result {
                let _ = failed_tx.send(e.to_string());
            }
            drop(writer);
            result
        })
    };
    let failure = futures::stream::once(failed_rx).filter_map(|r| async move {
        r.ok().map(|why| Err::<bytes::Bytes, _>(std::io::Error::other(why)))
    });
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(pipe).chain(failure));
    let resp = agent_restore(ctx, body).await;
    reader.await.context("the reader task")??;
    resp?;
    Ok(manifest.size)
}

async fn agent_restore(ctx: &Ctx<'_>, body: reqwest::Body) -> anyhow::Result<serde_json::Value> {
    let paths = serde_json::to_string(&[&ctx.src])?;
    let resp = ctx
        .http
        .post(ctx.agent.url("/snapshot/restore"))
        .bearer_auth(TOKEN)
        .header("X-BurstFlare-Paths", paths)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .send()
        .await
        .context("POST /snapshot/restore")?;
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "restore answered {status}: {answer}");
    Ok(answer)
}

/// `tar -C <dir> -cf - <name> | zstd -3 -T1 -o <out>`
fn tar_zstd(dir: &Path, name: &str, out: &Path) -> anyhow::Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", name])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting tar")?;
    let pipe = tar.stdout.take().context("tar's stdout")?;
    let zstd = Command::new("zstd")
        .args(["-3", "-T1", "-q", "-f", "-o"])
        .arg(out)
        .stdin(pipe)
        .status()
        .context("running zstd (the Debian package zstd; `make setup` installs it)")?;
    let tar = tar.wait()?;
    anyhow::ensure!(tar.success() && zstd.success(), "tar | zstd failed: tar {tar}, zstd {zstd}");
    Ok(())
}

/// `zstd -d -c <archive> | tar -C <dest> -xpf -`
fn unzstd_untar(archive: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut zstd = Command::new("zstd")
        .args(["-d", "-q", "-c"])
        .arg(archive)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting zstd (the Debian package zstd; `make setup` installs it)")?;
    let pipe = zstd.stdout.take().context("zstd's stdout")?;
    let tar = Command::new("tar").arg("-C").arg(dest).args(["-xpf", "-"]).stdin(pipe).status()?;
    let zstd = zstd.wait()?;
    anyhow::ensure!(
        tar.success() && zstd.success(),
        "zstd -d | tar -x failed: zstd {zstd}, tar {tar}"
    );
    Ok(())
}

/// One pass that takes the cold snapshot and the restore apart.
fn breakdown(ctx: &Ctx) -> anyhow::Result<Breakdown> {
    let mut b = Breakdown::default();

    // The agent and HTTP alone: the pack drained into memory.
    sync();
    let t = Instant::now();
    let stream: Vec<u8> = ctx.rt.block_on(async {
        let resp = pack_request(ctx).await?;
        let mut out = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(bytes) = body.next().await {
            out.extend_from_slice(&bytes?);
        }
        anyhow::Ok(out)
    })?;
    b.pack = secs(t);
    b.stream_bytes = stream.len() as u64;

    // The chunk store alone, from memory.
    let chunks = ChunkStore::for_workspace(ctx.blob.clone(), "bench-breakdown");
    let t = Instant::now();
    let (manifest, stats) = ctx.rt.block_on(async {
        let (m, s) = chunks.upload(stream.as_slice()).await?;
        chunks.put_manifest("breakdown", &m).await?;
        anyhow::Ok((m, s))
    })?;
    b.upload = secs(t);
    b.chunks = stats.chunks;
    b.stored_bytes = stats.stored_bytes;

    // Its parts, each alone over the same stream.
    let t = Instant::now();
    let cuts: Vec<(usize, usize)> =
        fastcdc::v2020::FastCDC::new(&stream, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
            .map(|c| (c.offset, c.length))
            .collect();
    b.fastcdc = secs(t);
    let pieces: Vec<&[u8]> = cuts.iter().map(|&(o, l)| &stream[o..o + l]).collect();
    let t = Instant::now();
    let refs: Vec<ChunkRef> =
        pieces.iter().map(|p| ChunkRef { sha256: sha256_hex(p), size: p.len() as u64 }).collect();
    anyhow::ensure!(sha256_hex(&stream) == manifest.sha256, "the stream changed between passes");
    b.sha256 = secs(t);
    let t = Instant::now();
    let packed: Vec<Vec<u8>> = pieces.iter().map(|p| pack_chunk(p)).collect::<Result<_, _>>()?;
    b.zstd = secs(t);
    let t = Instant::now();
    for (p, r) in packed.iter().zip(&refs) {
        unpack_chunk(p, r)?;
    }
    b.readback = secs(t);
    let requests = ChunkStore::for_workspace(ctx.blob.clone(), "bench-requests");
    // Time spent in each kind of request: [HEAD, PUT, GET].
    let mut spent = [Duration::ZERO; 3];
    let t = Instant::now();
    ctx.rt.block_on(async {
        for (p, r) in packed.iter().zip(&refs) {
            let key = requests.chunk_key(&r.sha256);
            let t = Instant::now();
            ctx.blob.head(&key).await?;
            spent[0] += t.elapsed();
            let t = Instant::now();
            ctx.blob.put(&key, p.clone(), "application/zstd").await?;
            spent[1] += t.elapsed();
            let t = Instant::now();
            ctx.blob.get(&key).await?;
            spent[2] += t.elapsed();
        }
        anyhow::Ok(())
    })?;
    b.s3 = secs(t);
    let per = |d: Duration, n: usize| 1000.0 * d.as_secs_f64() / n.max(1) as f64;
    b.head_ms = per(spent[0], packed.len());
    b.put_ms = per(spent[1], packed.len());
    b.get_ms = per(spent[2], packed.len());

    // The restore's halves: reading the chunks, and the agent unpacking a stream from memory.
    let t = Instant::now();
    ctx.rt.block_on(chunks.read(&manifest, tokio::io::sink()))?;
    b.read = secs(t);
    let aside = ctx.src.with_file_name("dev.source");
    fs::rename(&ctx.src, &aside)?;
    sync();
    let t = Instant::now();
    let restored = ctx.rt.block_on(agent_restore(ctx, reqwest::Body::from(stream)));
    b.agent_restore = secs(t);
    if ctx.src.exists() {
        fs::remove_dir_all(&ctx.src)?;
    }
    fs::rename(&aside, &ctx.src)?;
    restored?;

    ctx.rt.block_on(async {
        chunks.collect_garbage(&[], Duration::ZERO).await?;
        requests.collect_garbage(&[], Duration::ZERO).await?;
        anyhow::Ok(())
    })?;
    Ok(b)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// "Where the time goes": the breakdown's table and what it says.
fn breakdown_text(b: &Breakdown, content: u64, runs: &[Run]) -> String {
    let row = |what: &str, secs: f64, note: String| {
        let rate = if secs > 0.0 { mb(content) / secs } else { 0.0 };
        vec![what.to_string(), format!("{secs:.2}"), format!("{rate:.0}"), note]
    };
    let rows = vec![
        row(
            "agent pack → HTTP → memory",
            b.pack,
            format!("{:.1} MB tar stream", mb(b.stream_bytes)),
        ),
        row(
            "ChunkStore::upload from memory + put_manifest",
            b.upload,
            format!("{} chunks, {:.1} MB stored", b.chunks, mb(b.stored_bytes)),
        ),
        row("  FastCDC cut points", b.fastcdc, String::new()),
        row("  sha256 of each chunk and of the stream", b.sha256, String::new()),
        row("  zstd -3 of each chunk", b.zstd, String::new()),
        row("  read-back check: zstd -d + sha256 of each chunk", b.readback, String::new()),
        row(
            "  S3 HEAD + PUT + GET per chunk, one after the other",
            b.s3,
            format!(
                "per chunk: HEAD {:.1} ms, PUT {:.1} ms, GET {:.1} ms",
                b.head_ms, b.put_ms, b.get_ms
            ),
        ),
        row("ChunkStore::read to a sink (GET + zstd -d + sha256)", b.read, String::new()),
        row("agent restore of the stream from memory", b.agent_restore, "fresh directory".into()),
    ];
    let mut out = String::from(
        "\n### Where the time goes\n\nOne pass after the runs, each step alone over the same tar \
         stream (the indented steps are the parts of `ChunkStore::upload`, timed here one after \
         the other; the upload itself keeps up to `domain::snapshots::IN_FLIGHT` chunks' \
         requests in flight while the next chunks are cut, hashed and compressed):\n\n",
    );
    out += &table(&["step", "s", "MB/s", "note"], &rows);
    let cpu = b.fastcdc + b.sha256 + b.zstd + b.readback;
    let median = |f: fn(&Run) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
    let overlap = if b.s3 + cpu > 1.2 * b.upload {
        format!(
            "more than the whole, so they overlap: with up to {} chunks' requests in flight, the \
             upload takes {:.0}% of its parts' sum",
            domain::snapshots::IN_FLIGHT,
            100.0 * b.upload / (b.s3 + cpu).max(f64::EPSILON),
        )
    } else if b.s3 + cpu > 0.8 * b.upload {
        "about the whole, so little overlaps: the requests in flight wait for the CPU work, or the \
         CPU work for them"
            .to_owned()
    } else {
        "less than the whole: the rest is spent outside these steps (manifest, scheduling)"
            .to_owned()
    };
    out += &format!(
        "\n**Findings.** Snapshot: `ChunkStore::upload` from memory takes {:.2} s. Timed alone over \
         the same chunks, its S3 requests take {:.2} s and its CPU work (FastCDC, sha256, zstd, the \
         read-back check) {cpu:.2} s: together {:.2} s, {overlap}. The agent's pack alone takes \
         {:.2} s, so the agent is not the bottleneck",
        b.upload,
        b.s3,
        b.s3 + cpu,
        b.pack,
    );
    if let (Some(floor), Some(tar)) = (median(Run::floor_snapshot), median(|r| r.tar_zstd)) {
        out += &format!(
            "; the floor's whole snapshot takes {:.2} s (tar | zstd {:.2} s)",
            floor.median, tar.median
        );
    }
    out += ".";
    // A GET moves the same bytes as a PUT the other way and writes nothing: much slower means
    // it waits for something other than work.
    if b.get_ms > 3.0 * b.put_ms && b.get_ms - b.put_ms > 10.0 {
        out += &format!(
            " A GET of a chunk takes {:.1} ms, {:.0}× a PUT of it ({:.1} ms), though it moves the \
             same bytes the other way and writes nothing: a stall on responses with a body, the \
             signature of Nagle's algorithm meeting delayed ACKs (the embedded S3 server, \
             `api/src/s3.rs`, does not set `TCP_NODELAY` on the connections it accepts). With {} \
             chunks that is about {:.1} s of waiting per cold snapshot (its read-back GETs) and \
             as much per restore; the floor pays it once.",
            b.get_ms,
            b.get_ms / b.put_ms.max(0.001),
            b.put_ms,
            b.chunks,
            (b.get_ms - b.put_ms) * b.chunks as f64 / 1000.0,
        );
    }
    if let Some(restore) = median(|r| r.restore) {
        out += &format!(
            " Restore: reading the chunks into a sink takes {:.2} s of ours' {:.2} s; the agent \
             unpacks the same stream from memory in {:.2} s.",
            b.read, restore.median, b.agent_restore
        );
    }
    out.push('\n');
    out
}

/// The "Snapshots" section of BENCHMARKS.md (and of stdout).
pub fn section(r: &Results) -> Section {
    let content = r.mix.content_bytes;
    let row = |what: &str, samples: Vec<f64>| -> Vec<String> {
        let Some(s) = Summary::of(&samples) else { return vec![what.into()] };
        let rate = if s.median > 0.0 { mb(content) / s.median } else { 0.0 };
        vec![
            what.into(),
            format!("{:.2}", s.min),
            format!("{:.2}", s.median),
            format!("{:.2}", s.p95),
            format!("{rate:.0}"),
        ]
    };
    let col = |f: fn(&Run) -> f64| r.runs.iter().map(f).collect::<Vec<f64>>();
    let rows = vec![
        row("ours: snapshot, cold (pack → chunk store → manifest)", col(|x| x.snapshot)),
        row("ours: snapshot, incremental (1% of files changed)", col(|x| x.incremental)),
        row("ours: restore (manifest → chunks → agent restore)", col(|x| x.restore)),
        row("floor: tar \\| zstd -3 -T1 (local file)", col(|x| x.tar_zstd)),
        row("floor: one PUT of the .tar.zst", col(|x| x.put)),
        row("floor: snapshot (tar \\| zstd + PUT)", col(Run::floor_snapshot)),
        row("floor: one GET of the .tar.zst", col(|x| x.get)),
        row("floor: zstd -d \\| tar -x (local file)", col(|x| x.unzstd_untar)),
        row("floor: restore (GET + zstd -d \\| tar -x)", col(Run::floor_restore)),
    ];
    let mut body = String::new();
    let first = r.runs.first().cloned().unwrap_or_default();
    body += &format!(
        "{} runs. Data (seed {}): {}. The agent's tar stream is {:.1} MB; ours stores {:.1} MB in \
         {} chunks, the floor's .tar.zst is {:.1} MB.\n\n",
        r.runs.len(),
        r.seed,
        r.mix.describe(),
        mb(first.stream_bytes),
        mb(first.stored_bytes),
        first.chunks,
        mb(first.archive_bytes),
    );
    body += &table(&["measurement", "min s", "median s", "p95 s", "MB/s"], &rows);
    body += "\nMB/s: file content (10^6 bytes) over the median time. p95 is the nearest rank (the \
             slowest run when there are fewer than 20).\n\n";

    let ratio = |f: fn(&Run) -> f64| -> String {
        let ratios: Vec<f64> = r.runs.iter().map(f).collect();
        match Summary::of(&ratios) {
            Some(s) => format!("**{:.2}×** (runs: {:.2}–{:.2})", s.median, s.min, s.max),
            None => "n/a".into(),
        }
    };
    body += "**Ratios** (median of the per-run ratios; 1.00× = as fast as the floor, lower is better):\n\n";
    body += &format!(
        "- snapshot, cold: ours / (tar | zstd + PUT) = {}\n",
        ratio(|x| x.snapshot / x.floor_snapshot())
    );
    body += &format!(
        "- snapshot, incremental: ours / (tar | zstd + PUT) = {}\n",
        ratio(|x| x.incremental / x.floor_snapshot())
    );
    body += &format!(
        "- restore: ours / (GET + zstd -d | tar -x) = {}\n\n",
        ratio(|x| x.restore / x.floor_restore())
    );
    let share = if first.inc_chunks > 0 {
        100.0 * first.inc_new_chunks as f64 / first.inc_chunks as f64
    } else {
        0.0
    };
    body += &format!(
        "**Dedupe:** the incremental snapshot after changing {} files ({}% of them, a line in \
         the middle replaced and a line appended, picked at random across the tree) stored {} new \
         chunks of {} ({share:.0}%, {:.1} MB): a chunk of about 1 MiB holds about {} of the \
         small files, so edits scattered across the tree touch many chunks.\n\n",
        first.edited_files,
        EDIT_PERCENT,
        first.inc_new_chunks,
        first.inc_chunks,
        mb(first.inc_stored_bytes),
        r.mix.small_files / first.chunks.max(1),
    );
    let cpu = |f: fn(&Run) -> (f64, f64)| {
        let this = Summary::of(&r.runs.iter().map(|x| f(x).0).collect::<Vec<_>>());
        let agent = Summary::of(&r.runs.iter().map(|x| f(x).1).collect::<Vec<_>>());
        match (this, agent) {
            (Some(t), Some(a)) => format!(
                "{:.2} s in the client and S3 server, {:.2} s in the agent",
                t.median, a.median
            ),
            _ => "n/a".into(),
        }
    };
    body += &format!(
        "**CPU** (medians): cold snapshot {}; restore {}.\n\n",
        cpu(|x| x.snapshot_cpu),
        cpu(|x| x.restore_cpu)
    );
    body += &format!("**Checked:** {}.\n\n", r.checked);
    body += "**What is measured.** Ours is the node's path (`activities/src/snapshot.rs`): the real \
             agent binary, a child process on loopback with a token, packs the persisted path \
             (`POST /snapshot/pack`), and its HTTP body streams into `ChunkStore::upload` (FastCDC \
             256 KiB / 1 MiB / 4 MiB, sha256, zstd -3 per chunk, and for each new chunk a HEAD, a \
             PUT and a read-back GET) against the embedded S3 server started in this process on \
             127.0.0.1, then `put_manifest`. Each run starts from an empty workspace prefix, so \
             the cold snapshot stores every chunk. The restore is `get_manifest` and \
             `ChunkStore::read` streamed through a 1 MiB pipe as the body of `POST \
             /snapshot/restore` into a path that does not exist (as in a fresh container: the \
             agent unpacks into a staging directory next to it and renames it into place). The \
             floor is what the same files cost with plain tools and the same S3 server: `tar -cf - \
             | zstd -3 -T1` into a local file plus one `BlobStore::put` of it, and one \
             `BlobStore::get` plus `zstd -d | tar -x` into an empty directory; its steps run one \
             after the other, ours is one stream. Neither side fsyncs, `sync` runs before each \
             timed step and the files are in the page cache, so this measures CPU and loopback \
             work, not the disk.\n";

    body += &breakdown_text(&r.breakdown, content, &r.runs);
    Section { title: "Snapshots".into(), body }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn results() -> Results {
        let run = |k: f64| Run {
            snapshot: 4.0 * k,
            incremental: 1.0 * k,
            restore: 3.0 * k,
            tar_zstd: 1.5 * k,
            put: 0.5 * k,
            get: 0.4 * k,
            unzstd_untar: 1.1 * k,
            snapshot_cpu: (3.0, 1.0),
            restore_cpu: (2.0, 1.5),
            stream_bytes: 207_000_000,
            chunks: 190,
            stored_bytes: 120_000_000,
            edited_files: 80,
            inc_chunks: 190,
            inc_new_chunks: 38,
            inc_stored_bytes: 20_000_000,
            archive_bytes: 118_000_000,
        };
        Results {
            mix: MixSummary { content_bytes: 200_000_000, small_files: 8000, ..Default::default() },
            seed: 1,
            runs: vec![run(1.0), run(1.2), run(0.9)],
            checked: "the trees".into(),
            breakdown: Breakdown {
                pack: 0.8,
                stream_bytes: 207_000_000,
                upload: 10.0,
                chunks: 190,
                stored_bytes: 120_000_000,
                fastcdc: 0.5,
                sha256: 0.5,
                zstd: 1.5,
                readback: 0.5,
                s3: 7.0,
                head_ms: 1.0,
                put_ms: 6.0,
                get_ms: 30.0,
                read: 5.0,
                agent_restore: 1.0,
            },
        }
    }

    #[test]
    fn the_section_has_the_table_the_ratios_and_the_explanation() {
        let s = section(&results());
        assert_eq!(s.title, "Snapshots");
        for want in [
            "| measurement ",
            "| ours: snapshot, cold (pack → chunk store → manifest) |",
            "| floor: snapshot (tar \\| zstd + PUT) ",
            "| floor: restore (GET + zstd -d \\| tar -x) ",
            // Median of 4.0·{0.9, 1, 1.2}: 4.00 s, 50 MB/s of 200 MB.
            "|     4.00 |",
            "|   50 |",
            // Ours / floor is the same in every run: 4 / 2 and 3 / 1.5.
            "- snapshot, cold: ours / (tar | zstd + PUT) = **2.00×** (runs: 2.00–2.00)",
            "- snapshot, incremental: ours / (tar | zstd + PUT) = **0.50×**",
            "- restore: ours / (GET + zstd -d | tar -x) = **2.00×**",
            "stored 38 new chunks of 190 (20%, 20.0 MB): a chunk of about 1 MiB holds about 42 of \
             the small files",
            "**What is measured.**",
            "### Where the time goes",
            "|   FastCDC cut points ",
            "|  0.50 |  400 |",
            "per chunk: HEAD 1.0 ms, PUT 6.0 ms, GET 30.0 ms",
            "its S3 requests take 7.00 s and its CPU work (FastCDC, sha256, zstd, the read-back \
             check) 3.00 s: together 10.00 s, about the whole, so little overlaps",
            "the floor's whole snapshot takes 2.00 s (tar | zstd 1.50 s).",
            "A GET of a chunk takes 30.0 ms, 5× a PUT of it (6.0 ms)",
            "about 4.6 s of waiting per cold snapshot",
            "reading the chunks into a sink takes 5.00 s of ours' 3.00 s",
        ] {
            assert!(s.body.contains(want), "missing {want:?} in:\n{}", s.body);
        }
    }

    #[test]
    fn the_findings_say_when_requests_overlap_the_cpu_work() {
        let mut r = results();
        r.breakdown.upload = 5.0;
        let s = section(&r);
        assert!(
            s.body.contains("together 10.00 s, more than the whole, so they overlap"),
            "{}",
            s.body
        );
        assert!(s.body.contains("the upload takes 50% of its parts' sum"), "{}", s.body);
        assert!(!s.body.contains("little overlaps"), "{}", s.body);
    }

    #[test]
    fn the_findings_name_a_request_stall_only_when_there_is_one() {
        let mut r = results();
        r.breakdown.get_ms = 4.0;
        let s = section(&r);
        assert!(s.body.contains("**Findings.**"), "{}", s.body);
        assert!(!s.body.contains("Nagle"), "{}", s.body);
    }
}
