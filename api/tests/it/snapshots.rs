//! Snapshots end to end: real sessions in Docker, the agent packing and restoring, the
//! embedded S3 server (made to fail or stall on purpose), Temporal running the Snapshot,
//! Restore and Session workflows. docs/snapshots.md.

use std::time::{Duration, Instant};

use burstflare_api::s3::{FaultAction, FaultRule};

use crate::sessions::{Stack, spawn_node, stack_with};

/// The running container of a session.
async fn container(id: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=burstflare.session={id}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .await
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!names.is_empty() && !names.contains('\n'), "one running container: {names:?}");
    names
}

/// Runs `script` as the session user inside the session's container; returns stdout.
async fn sh(id: &str, script: &str) -> String {
    let name = container(id).await;
    let out = tokio::process::Command::new("docker")
        .args(["exec", "-u", "dev", &name, "sh", "-c", script])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn op(s: &Stack, id: &str, op: &str, to: &str) {
    let d = s.client.session_op(&s.ws, id, op, true).await.unwrap();
    assert_eq!(d.state, to, "{op}: {:?}", d.error);
}

async fn snapshots(s: &Stack, id: &str) -> Vec<sdk::Snapshot> {
    s.client.snapshots(&s.ws, id).await.unwrap()
}

fn latest(list: &[sdk::Snapshot]) -> &sdk::Snapshot {
    let l: Vec<_> = list.iter().filter(|x| x.latest).collect();
    assert_eq!(l.len(), 1, "exactly one latest: {list:#?}");
    l[0]
}

/// The files the tests write: content, a symlink, a hard link, modes, a bigger random file.
const WRITE: &str = "set -e; mkdir -p ~/work/sub; echo \"$1\" > ~/work/a.txt; \
    ln -sf a.txt ~/work/link; ln -f ~/work/a.txt ~/work/sub/hard; chmod 600 ~/work/a.txt; \
    head -c 6000000 /dev/urandom > ~/work/big.bin; echo outside > /tmp/outside.txt";

async fn write(id: &str, version: &str) -> String {
    sh(id, &format!("set -- {version}; {WRITE}; sha256sum ~/work/big.bin | cut -c1-64")).await
}

/// What a later start must find: the same content and metadata; nothing outside.
async fn check(id: &str, version: &str, big: &str) {
    let got = sh(
        id,
        "cat ~/work/a.txt; readlink ~/work/link; stat -c '%a %U' ~/work/a.txt; \
         [ ~/work/a.txt -ef ~/work/sub/hard ] && echo hardlinked; \
         sha256sum ~/work/big.bin | cut -c1-64; [ -e /tmp/outside.txt ] && echo outside || echo clean",
    )
    .await;
    assert_eq!(got, format!("{version}\na.txt\n600 dev\nhardlinked\n{big}clean\n"), "{id}");
}

#[tokio::test]
async fn work_in_persisted_paths_survives_sleep_stop_and_restart_and_can_be_restored() {
    let s = stack_with(|_| {}).await;
    s.template("keep").await;
    let created = s.create("keep", "box").await.unwrap();
    assert_eq!(created.state, "running", "{:?}", created.error);
    let id = created.id.clone();
    assert!(snapshots(&s, &id).await.is_empty());

    // Sleep snapshots; the next start is a fresh container with the files back.
    let big = write(&id, "v1").await;
    op(&s, &id, "sleep", "sleeping").await;
    let list = snapshots(&s, &id).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let first = latest(&list).clone();
    assert_eq!((first.trigger.as_str(), first.status.as_str()), ("sleep", "verified"));
    assert!(first.size_bytes.unwrap() > 6_000_000 && first.chunks.unwrap() >= 3, "{first:?}");
    op(&s, &id, "start", "running").await;
    assert_eq!(s.client.session_why(&s.ws, &id).await.unwrap().generation, 2, "fresh container");
    check(&id, "v1", &big).await;

    // Stop and start; then restart. Each snapshot stores only what changed.
    sh(&id, "echo v2 > ~/work/a.txt; echo outside > /tmp/outside.txt").await;
    op(&s, &id, "stop", "stopped").await;
    op(&s, &id, "start", "running").await;
    check(&id, "v2", &big).await;
    sh(&id, "echo v3 > ~/work/a.txt; echo outside > /tmp/outside.txt").await;
    let restarted = s.client.session_op(&s.ws, &id, "restart", true).await.unwrap();
    assert_eq!(restarted.state, "running", "{:?}", restarted.error);
    check(&id, "v3", &big).await;
    let list = snapshots(&s, &id).await;
    let triggers: Vec<&str> = list.iter().map(|x| x.trigger.as_str()).collect();
    assert_eq!(triggers, ["restart", "stop", "sleep"], "newest first");
    assert!(list.iter().all(|x| x.status == "verified"));
    let restart_snap = latest(&list).clone();
    assert_eq!(restart_snap.trigger, "restart");
    assert!(
        restart_snap.new_chunks.unwrap() < restart_snap.chunks.unwrap(),
        "unchanged chunks are not stored again: {restart_snap:?}"
    );

    // Save now, with the minimum interval between manual snapshots.
    sh(&id, "echo v4 > ~/work/a.txt").await;
    let manual = s.client.save_snapshot(&s.ws, &id, true).await.unwrap();
    assert_eq!((manual.status.as_str(), manual.trigger.as_str()), ("verified", "manual"));
    assert!(manual.latest);
    let err = s.client.save_snapshot(&s.ws, &id, true).await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    assert!(err.to_string().contains("snapshots.min_interval_secs"), "{err}");

    // Restore the first snapshot into the running session: a safety snapshot first, then
    // the files of then, and the pointer moves to it.
    let restored = s.client.restore_snapshot(&s.ws, &id, &first.id).await.unwrap();
    assert_eq!(restored.applied, "now");
    let safety = restored.safety_snapshot.clone().unwrap();
    check(&id, "v1", &big).await;
    s.snapshot_history(&format!("restore-{id}-{safety}"), "restore_running").await;
    let list = snapshots(&s, &id).await;
    assert_eq!(latest(&list).id, first.id);
    let pre = list.iter().find(|x| x.id == safety).unwrap();
    assert_eq!((pre.trigger.as_str(), pre.status.as_str()), ("pre-restore", "verified"));
    // … and the restore can itself be undone.
    s.client.restore_snapshot(&s.ws, &id, &safety).await.unwrap();
    assert_eq!(sh(&id, "cat ~/work/a.txt").await, "v4\n");

    // The latest cannot be deleted; an older one can. A stopped session restores at start.
    let latest_id = latest(&snapshots(&s, &id).await).id.clone();
    let err = s.client.delete_snapshot(&s.ws, &id, &latest_id).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let gone = s.client.delete_snapshot(&s.ws, &id, &manual.id).await.unwrap();
    assert_eq!(gone.status, "deleted");
    assert!(snapshots(&s, &id).await.iter().all(|x| x.id != manual.id));
    op(&s, &id, "stop", "stopped").await;
    let later = s.client.restore_snapshot(&s.ws, &id, &restart_snap.id).await.unwrap();
    assert_eq!(later.applied, "next_start");
    op(&s, &id, "start", "running").await;
    check(&id, "v3", &big).await;

    // Events, audit.
    let events = s.client.session_events(&s.ws, &id, 0).await.unwrap();
    assert!(events.iter().filter(|e| e.kind == "hydrate.restored").count() >= 4, "{events:?}");
    let actions = s.audit_actions().await;
    for a in [
        "snapshot.requested",
        "snapshot.verified",
        "snapshot.restore.requested",
        "snapshot.restored",
        "snapshot.deleted",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }

    // Another workspace sees none of it.
    let other = s.other_member_client().await;
    let err = other.snapshots(&s.ws, &id).await.unwrap_err();
    assert!(matches!(err.status(), Some(403 | 404)), "{err}");

    s.history(&created.workflow_id, "session_snapshots").await;
    s.snapshot_history(&format!("snapshot-{}", manual.id), "snapshot_manual").await;
    s.client.delete_session(&s.ws, &id, true).await.unwrap();
    s.app.stop().await;
}

#[tokio::test]
async fn faults_never_lose_the_previous_snapshot() {
    let s = stack_with(|c| c.snapshots.min_interval_secs = 0).await;
    s.template("faulty").await;
    let id = s.create("faulty", "faulty").await.unwrap().id;
    let faults = s.app.stack.as_ref().unwrap().s3_faults();
    let big = write(&id, "good").await;
    let good = s.client.save_snapshot(&s.ws, &id, true).await.unwrap();
    assert_eq!(good.status, "verified", "{good:?}");

    // S3 refuses a few chunk writes: retried, and the snapshot is whole.
    sh(&id, "head -c 2000000 /dev/urandom > ~/work/more.bin").await;
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: "/chunks/".into(),
        times: 3,
        action: FaultAction::Status(503),
    });
    let retried = s.client.save_snapshot(&s.ws, &id, true).await.unwrap();
    assert_eq!(retried.status, "verified", "{retried:?}");
    assert_eq!(faults.hits(), 3);
    faults.clear();

    // The manifest cannot be written: the snapshot fails, nothing refers to it, latest stays.
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: "/snapshots/".into(),
        times: 0,
        action: FaultAction::Status(500),
    });
    let failed = s.client.save_snapshot(&s.ws, &id, true).await.unwrap();
    faults.clear();
    assert_eq!(failed.status, "failed", "{failed:?}");
    assert!(failed.error.as_deref().unwrap_or_default().contains("PutObject failed"), "{failed:?}");
    assert_eq!(latest(&snapshots(&s, &id).await).id, retried.id);

    // Concurrent snapshots: latest ends on the newest verified one.
    let saves = (0..3).map(|_| s.client.save_snapshot(&s.ws, &id, true));
    let done: Vec<sdk::Snapshot> =
        futures::future::join_all(saves).await.into_iter().map(Result::unwrap).collect();
    assert!(done.iter().all(|x| x.status == "verified"), "{done:#?}");
    let newest = done.iter().max_by_key(|x| (x.created_at, x.id.clone())).unwrap();
    assert_eq!(latest(&snapshots(&s, &id).await).id, newest.id);

    // The agent dies mid-upload (S3 made slow so there is a middle): the snapshot fails, the
    // latest stays, and stopping the dead session restores the latest at the next start.
    sh(&id, "echo lost > ~/work/a.txt; head -c 40000000 /dev/urandom > ~/work/more.bin").await;
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: "/chunks/".into(),
        times: 0,
        action: FaultAction::Delay(Duration::from_millis(400)),
    });
    let before = latest(&snapshots(&s, &id).await).id.clone();
    let pending = s.client.save_snapshot(&s.ws, &id, false).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while faults.hits() == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = container(&id).await;
    let killed = tokio::process::Command::new("docker").args(["kill", &name]).output().await;
    assert!(killed.unwrap().status.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let interrupted = loop {
        let x = s.client.snapshot(&s.ws, &id, &pending.id).await.unwrap();
        if sdk::snapshot_is_final(&x.status) {
            break x;
        }
        assert!(Instant::now() < deadline, "still {}", x.status);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    faults.clear();
    assert_eq!(interrupted.status, "failed", "{interrupted:?}");
    assert_eq!(latest(&snapshots(&s, &id).await).id, before);
    op(&s, &id, "stop", "stopped").await;
    op(&s, &id, "start", "running").await;
    assert_eq!(sh(&id, "cat ~/work/a.txt").await, "good\n");

    // A flipped byte in a stored chunk: the start fails loudly naming the chunk and offering
    // an earlier snapshot; restoring one without that chunk works.
    sh(&id, "head -c 1500000 /dev/urandom > ~/work/fresh.bin").await;
    op(&s, &id, "stop", "stopped").await;
    let damaged = latest(&snapshots(&s, &id).await).clone();
    assert_eq!(damaged.trigger, "stop");
    let stack = s.app.stack.as_ref().unwrap();
    let bucket = stack.dir.join("s3").join(&stack.config.storage.bucket);
    let ws_id = s.ws_id().await;
    let flipped = flip_a_byte_only_in(&bucket, &ws_id, &damaged.id, &before);
    let failed = s.client.session_op(&s.ws, &id, "start", true).await.unwrap();
    assert_eq!(failed.state, "failed");
    let why = failed.error.unwrap_or_default();
    assert!(why.contains(&flipped) && why.contains("corrupt"), "{why}");
    assert!(why.contains(&format!("flare snapshot restore {id} ")), "{why}");
    assert_eq!(latest(&snapshots(&s, &id).await).id, damaged.id, "nothing moved");
    s.client.restore_snapshot(&s.ws, &id, &before).await.unwrap();
    op(&s, &id, "start", "running").await;
    check(&id, "good", &big).await;

    // A damaged chunk that a new snapshot would reuse is found by verification, removed, and
    // stored again from the live files: the snapshot succeeds and the old one is healed too.
    let healed_chunk = flip_a_byte_only_in(&bucket, &ws_id, &before, "");
    let healed = s.client.save_snapshot(&s.ws, &id, true).await.unwrap();
    assert_eq!(healed.status, "verified", "{healed:?}");
    let again = s.client.restore_snapshot(&s.ws, &id, &before).await.unwrap();
    assert_eq!(again.applied, "now");
    check(&id, "good", &big).await;
    let actions = s.audit_actions().await;
    assert!(actions.iter().any(|a| a == "snapshot.chunk.damaged"), "{healed_chunk}: {actions:?}");
    s.app.stop().await;
}

/// Flips one byte of a chunk that snapshot `damaged` uses and `keep` does not (any of its
/// chunks when `keep` is empty); returns the chunk's sha256.
fn flip_a_byte_only_in(bucket: &std::path::Path, ws: &str, damaged: &str, keep: &str) -> String {
    let prefix = bucket.join("workspaces").join(ws);
    let manifest = |id: &str| -> Vec<String> {
        if id.is_empty() {
            return Vec::new();
        }
        let text = std::fs::read(prefix.join("snapshots").join(format!("{id}.json"))).unwrap();
        let m: domain::snapshots::SnapshotManifest = serde_json::from_slice(&text).unwrap();
        m.chunks.into_iter().map(|c| c.sha256).collect()
    };
    let kept = manifest(keep);
    let sha =
        manifest(damaged).into_iter().find(|c| !kept.contains(c)).expect("a chunk of its own");
    let path = prefix.join("chunks").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    sha
}

#[tokio::test]
async fn an_oversize_snapshot_is_refused_and_the_session_keeps_running() {
    let s = stack_with(|_| {}).await;
    s.template_with("small", "max_snapshot_bytes = 1048576\n").await;
    let id = s.create("small", "small").await.unwrap().id;
    sh(&id, "mkdir -p ~/work && head -c 2000000 /dev/urandom > ~/work/big.bin").await;

    let err = s.client.save_snapshot(&s.ws, &id, true).await.unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    assert!(err.to_string().contains("max_bytes (1048576)"), "{err}");

    // Sleep cannot snapshot: the session keeps running and says why, and retries later.
    let d = s.client.session_op(&s.ws, &id, "sleep", true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let why = loop {
        let why = s.client.session_why(&s.ws, &id).await.unwrap();
        if why.last_error.is_some() {
            break why;
        }
        assert!(Instant::now() < deadline, "{d:?} {why:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(why.state, "running", "{why:?}");
    let message = why.last_error.unwrap();
    assert!(message.contains("sleep is waiting") && message.contains("max_bytes"), "{message}");
    assert_eq!(why.retry_op.as_deref(), Some("sleep"));
    assert!(why.retry_at.is_some());
    assert_eq!(sh(&id, "ls ~/work").await, "big.bin\n", "nothing was thrown away");
    let actions = s.audit_actions().await;
    assert!(actions.iter().any(|a| a == "snapshot.failed"), "{actions:?}");

    // With the files trimmed, sleep works.
    sh(&id, "rm ~/work/big.bin; echo small > ~/work/a.txt").await;
    op(&s, &id, "sleep", "sleeping").await;
    op(&s, &id, "start", "running").await;
    assert_eq!(sh(&id, "cat ~/work/a.txt").await, "small\n");
    s.app.stop().await;
}

#[tokio::test]
async fn a_node_killed_mid_upload_resumes_on_its_successor_and_latest_moves_only_then() {
    let s = stack_with(|c| c.node.in_process = false).await;
    let mut first = spawn_node(&s);
    s.template("nodekill").await;
    let id = s.create("nodekill", "nodekill").await.unwrap().id;
    write(&id, "kept").await;
    op(&s, &id, "sleep", "sleeping").await;
    op(&s, &id, "start", "running").await;
    let before = latest(&snapshots(&s, &id).await).id.clone();

    // A bigger change, uploaded slowly, and the node dies in the middle of it.
    sh(&id, "echo newer > ~/work/a.txt; head -c 30000000 /dev/urandom > ~/work/more.bin").await;
    let faults = s.app.stack.as_ref().unwrap().s3_faults();
    faults.add(FaultRule {
        method: Some(http::Method::PUT),
        path_contains: "/chunks/".into(),
        times: 0,
        action: FaultAction::Delay(Duration::from_millis(300)),
    });
    let pending = s.client.save_snapshot(&s.ws, &id, false).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while faults.hits() < 2 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    faults.clear();
    let meanwhile = s.client.snapshot(&s.ws, &id, &pending.id).await.unwrap();
    assert_eq!(meanwhile.status, "pending");
    assert_eq!(latest(&snapshots(&s, &id).await).id, before, "latest waits");

    // Its successor picks the activity up after the heartbeat timeout and finishes.
    let _second = spawn_node(&s);
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let x = s.client.snapshot(&s.ws, &id, &pending.id).await.unwrap();
        if sdk::snapshot_is_final(&x.status) {
            break x;
        }
        assert!(Instant::now() < deadline, "still {}", x.status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done.status, "verified", "{done:?}");
    assert!(done.latest);
    op(&s, &id, "stop", "stopped").await;
    op(&s, &id, "start", "running").await;
    assert_eq!(sh(&id, "cat ~/work/a.txt; wc -c < ~/work/more.bin").await, "newer\n30000000\n");
    s.client.delete_session(&s.ws, &id, true).await.unwrap();
    s.app.stop().await;
}
