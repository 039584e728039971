//! Where the time of a session start goes, from what the platform records anyway: the
//! `Session` workflow's history (when it started, when each activity was scheduled, picked up
//! and completed, each local activity's marker with its own schedule and completion times, the
//! workflow tasks in between), the session's events (`session.record`), and
//! the audit log (runtime tokens issued, the SSH connection opened at the API), next to the
//! bench's own clock (commands spawned, output read). All are unix milliseconds of this
//! machine's clock.

use std::collections::BTreeMap;

use anyhow::Context;
use temporalio_client::WorkflowFetchHistoryOptions;

use crate::platform::Platform;
use crate::report::table;
use crate::stats::Summary;

/// One activity of a workflow run.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub name: String,
    /// A local activity: run by the workflow's own worker inside a workflow task, never queued.
    pub local: bool,
    pub scheduled: f64,
    pub started: Option<f64>,
    pub completed: Option<f64>,
}

/// What a workflow history says about timing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub started: f64,
    pub activities: Vec<Activity>,
    /// (scheduled, started, completed) of each workflow task.
    pub workflow_tasks: Vec<(f64, Option<f64>, Option<f64>)>,
}

fn event_ms(e: &serde_json::Value) -> anyhow::Result<f64> {
    let t = e["event_time"].as_str().context("an event without event_time")?;
    let dt = chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("event time {t}"))?;
    Ok(dt.timestamp_micros() as f64 / 1000.0)
}

/// Reads a history as `WorkflowHistory::to_json` writes it (snake_case events with one
/// `attributes` entry each).
pub fn parse_history(json: &serde_json::Value) -> anyhow::Result<History> {
    let events = json["events"].as_array().context("a history without events")?;
    let mut h = History::default();
    let mut by_id: BTreeMap<u64, usize> = BTreeMap::new();
    let mut wft: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        let id = e["event_id"].as_u64().unwrap_or(0);
        let at = event_ms(e)?;
        let Some((kind, attrs)) = e["attributes"].as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let sched = attrs["scheduled_event_id"].as_u64().unwrap_or(0);
        match kind.trim_end_matches("EventAttributes") {
            "WorkflowExecutionStarted" => h.started = at,
            "ActivityTaskScheduled" => {
                let name = attrs["activity_type"]["name"].as_str().unwrap_or("?").to_string();
                by_id.insert(id, h.activities.len());
                h.activities.push(Activity {
                    name,
                    local: false,
                    scheduled: at,
                    started: None,
                    completed: None,
                });
            }
            "ActivityTaskStarted" => {
                if let Some(&i) = by_id.get(&sched) {
                    h.activities[i].started = Some(at);
                }
            }
            "ActivityTaskCompleted" | "ActivityTaskFailed" | "ActivityTaskTimedOut" => {
                if let Some(&i) = by_id.get(&sched) {
                    h.activities[i].completed = Some(at);
                }
            }
            "MarkerRecorded" if attrs["marker_name"] == "core_local_activity" => {
                h.activities.push(local_activity(attrs)?);
            }
            "WorkflowTaskScheduled" => {
                wft.insert(id, h.workflow_tasks.len());
                h.workflow_tasks.push((at, None, None));
            }
            "WorkflowTaskStarted" => {
                if let Some(&i) = wft.get(&sched) {
                    h.workflow_tasks[i].1 = Some(at);
                }
            }
            "WorkflowTaskCompleted" => {
                if let Some(&i) = wft.get(&sched) {
                    h.workflow_tasks[i].2 = Some(at);
                }
            }
            _ => {}
        }
    }
    // A local activity's marker is written when its workflow task completes, after the
    // activity ran: order by when each was scheduled.
    h.activities.sort_by(|a, b| a.scheduled.total_cmp(&b.scheduled));
    Ok(h)
}

/// A local activity from its marker, whose data (JSON, base64 in the payload) carries its type
/// and when it completed. Its `original_schedule_time` is not when it was scheduled (it is
/// often after `complete_time`), so a local activity counts as an instant at its completion:
/// never queued, and its run time falls to the workflow task that ran it.
fn local_activity(attrs: &serde_json::Value) -> anyhow::Result<Activity> {
    use base64::Engine as _;
    let data = attrs["details"]["data"]["payloads"][0]["data"]
        .as_str()
        .context("a local activity marker without data")?;
    let data: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(data)?)?;
    let t = &data["complete_time"];
    let done = t["seconds"].as_i64().context("a local activity marker without complete_time")?
        as f64
        * 1000.0
        + t["nanos"].as_i64().unwrap_or(0) as f64 / 1e6;
    Ok(Activity {
        name: data["activity_type"].as_str().unwrap_or("?").to_string(),
        local: true,
        scheduled: done,
        started: Some(done),
        completed: Some(done),
    })
}

/// The history of a session's workflow (its latest run).
pub async fn session_history(p: &Platform, workflow_id: &str) -> anyhow::Result<History> {
    let handle = p.temporal.get_workflow_handle::<workflows::Session>(workflow_id.to_string());
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .map_err(|e| anyhow::anyhow!("fetching the history of {workflow_id}: {e}"))?;
    parse_history(&serde_json::from_slice(&json)?)
}

/// (action, at) of a session's audit rows about runtime tokens and connections, oldest first.
pub async fn connect_audit(p: &Platform, session_id: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, at FROM audit_log WHERE target_id = $1 AND action IN \
         ('session.runtime_token.issue', 'session.connect.open') ORDER BY at",
    )
    .bind(session_id)
    .fetch_all(p.store.pool())
    .await?;
    Ok(rows.into_iter().map(|(a, t)| (a, t as f64)).collect())
}

/// A session's events: (kind, at), oldest first.
pub async fn session_events(p: &Platform, session_id: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let events = p.client.session_events(&p.ws, session_id, 0).await?;
    Ok(events.into_iter().map(|e| (e.kind, e.at as f64)).collect())
}

/// One run's timeline: labelled moments, in milliseconds since the run's start, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub steps: Vec<(String, f64)>,
}

impl Timeline {
    pub fn push(&mut self, label: impl Into<String>, at_ms: f64) {
        self.steps.push((label.into(), at_ms));
    }
}

/// The steps of a session start inside the workflow, after `t0` (unix ms): each activity's
/// completion, labelled by its name (and, for `session.record`, the event it wrote), from the
/// run's activities scheduled at or after `from` (unix ms).
pub fn workflow_steps(
    tl: &mut Timeline,
    h: &History,
    events: &[(String, f64)],
    t0: f64,
    from: f64,
) {
    // session.record writes the events in order: pair each record with its event's kind.
    let mut kinds = events.iter().filter(|(_, at)| *at >= from - 1.0).map(|(k, _)| k.as_str());
    for a in h.activities.iter().filter(|a| a.scheduled >= from - 1.0) {
        let label = if a.name == "session.record" {
            format!("session.record ({})", kinds.next().unwrap_or("?"))
        } else {
            a.name.clone()
        };
        if let Some(done) = a.completed {
            tl.push(format!("{label} done"), done - t0);
        }
    }
}

/// Label of the runtime token `flare ssh` takes (and hands down to its ProxyCommand).
pub const TOKEN: &str = "runtime token issued (flare ssh)";
/// Label of a runtime token the ProxyCommand takes itself (no token handed down).
pub const PROXY_TOKEN: &str = "runtime token issued (ProxyCommand flare ssh --stdio)";
/// Label of the connection opening at the API.
pub const OPEN: &str = "API: WebSocket through to the agent (connect.open)";

/// The connection's steps from the audit log (rows at or after `from`, unix ms), in
/// milliseconds since `t0`: the runtime tokens issued and the WebSocket opened at the API.
pub fn connect_steps(tl: &mut Timeline, audit: &[(String, f64)], t0: f64, from: f64) {
    let mut tokens = 0;
    for (action, at) in audit.iter().filter(|(_, at)| *at >= from) {
        let label = match action.as_str() {
            "session.runtime_token.issue" => {
                tokens += 1;
                if tokens == 1 { TOKEN } else { PROXY_TOKEN }
            }
            _ => OPEN,
        };
        tl.push(label, at - t0);
    }
}

/// Time the workflow spent between its start and `until` (unix ms): in activities (started →
/// completed), waiting for a worker to pick an activity up (scheduled → started), and the
/// rest (workflow tasks and the server between them).
pub fn split_workflow_time(h: &History, from: f64, until: f64) -> (f64, f64, f64) {
    let mut run = 0.0;
    let mut queued = 0.0;
    for a in h.activities.iter().filter(|a| a.scheduled >= from - 1.0 && a.scheduled <= until) {
        let started = a.started.unwrap_or(a.scheduled);
        let done = a.completed.unwrap_or(started).min(until);
        queued += (started - a.scheduled).max(0.0);
        run += (done - started).max(0.0);
    }
    let total = (until - from).max(0.0);
    (run, queued, (total - run - queued).max(0.0))
}

/// The median of each step over the runs (in the first run's order; steps some runs lack
/// are left out), with the median time since the step before it.
pub fn render(timelines: &[Timeline]) -> String {
    let Some(first) = timelines.first() else { return String::new() };
    let mut rows = Vec::new();
    let mut prev: Option<&str> = None;
    for (label, _) in &first.steps {
        let ats: Vec<f64> = timelines.iter().filter_map(|t| find(t, label)).collect();
        if ats.len() != timelines.len() {
            continue;
        }
        let Some(at) = Summary::of(&ats) else { continue };
        let delta = prev.map(|p| {
            let d: Vec<f64> =
                timelines.iter().filter_map(|t| Some(find(t, label)? - find(t, p)?)).collect();
            Summary::of(&d).map_or(0.0, |s| s.median)
        });
        rows.push(vec![
            label.replace('|', "\\|"),
            format!("{:.0}", at.median),
            delta.map_or("".into(), |d| format!("{d:.0}")),
            format!("{:.0}–{:.0}", at.min, at.max),
        ]);
        prev = Some(label);
    }
    table(&["step", "at ms (median)", "+ms since the step before", "at ms (range)"], &rows)
}

fn find(t: &Timeline, label: &str) -> Option<f64> {
    t.steps.iter().find(|(l, _)| l == label).map(|(_, at)| *at)
}

/// The median over the runs of one step's time, by label.
pub fn median_at(timelines: &[Timeline], label: &str) -> Option<f64> {
    let v: Vec<f64> = timelines.iter().filter_map(|t| find(t, label)).collect();
    Summary::of(&v).map(|s| s.median)
}

/// The median over the runs of the time from step `a` to step `b`.
pub fn median_between(timelines: &[Timeline], a: &str, b: &str) -> Option<f64> {
    let v: Vec<f64> = timelines.iter().filter_map(|t| Some(find(t, b)? - find(t, a)?)).collect();
    Summary::of(&v).map(|s| s.median)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: u64, t: &str, kind: &str, attrs: serde_json::Value) -> serde_json::Value {
        json!({"event_id": id, "event_time": format!("2026-01-01T00:00:{t}Z"), "attributes": {format!("{kind}EventAttributes"): attrs}})
    }

    #[test]
    fn histories_give_activity_and_workflow_task_times() {
        let h = json!({"events": [
            ev(1, "00.000", "WorkflowExecutionStarted", json!({})),
            ev(2, "00.001", "WorkflowTaskScheduled", json!({})),
            ev(3, "00.011", "WorkflowTaskStarted", json!({"scheduled_event_id": 2})),
            ev(4, "00.021", "WorkflowTaskCompleted", json!({"scheduled_event_id": 2})),
            ev(5, "00.022", "ActivityTaskScheduled", json!({"activity_type": {"name": "session.record"}})),
            ev(6, "00.030", "ActivityTaskStarted", json!({"scheduled_event_id": 5})),
            ev(7, "00.050", "ActivityTaskCompleted", json!({"scheduled_event_id": 5})),
            ev(8, "00.060", "ActivityTaskScheduled", json!({"activity_type": {"name": "session.start_container"}})),
            ev(9, "00.061", "ActivityTaskStarted", json!({"scheduled_event_id": 8})),
            ev(10, "00.461", "ActivityTaskCompleted", json!({"scheduled_event_id": 8})),
        ]});
        let p = parse_history(&h).unwrap();
        let t0 = p.started;
        assert_eq!(p.workflow_tasks.len(), 1);
        assert_eq!(p.activities.len(), 2);
        assert!((p.activities[1].completed.unwrap() - t0 - 461.0).abs() < 0.01);
        let (run, queued, rest) = split_workflow_time(&p, t0, t0 + 461.0);
        assert!((run - 420.0).abs() < 0.01, "{run}");
        assert!((queued - 9.0).abs() < 0.01, "{queued}");
        assert!((rest - 32.0).abs() < 0.01, "{rest}");

        let mut tl = Timeline::default();
        workflow_steps(&mut tl, &p, &[("op.start".into(), t0 + 25.0)], t0, t0);
        assert_eq!(tl.steps[0].0, "session.record (op.start) done");
        assert_eq!(tl.steps[1].0, "session.start_container done");
    }

    #[test]
    fn local_activities_come_from_their_markers_in_the_order_they_ran() {
        use base64::Engine as _;
        let marker = |name: &str, sched_ms: i64, done_ms: i64| {
            let t = |ms: i64| json!({"seconds": 1_767_225_600 + ms / 1000, "nanos": (ms % 1000) * 1_000_000});
            let data = json!({"seq": 1, "activity_type": name, "original_schedule_time": t(sched_ms + 50), "complete_time": t(done_ms)});
            let b64 = base64::engine::general_purpose::STANDARD.encode(data.to_string());
            json!({"marker_name": "core_local_activity", "details": {"data": {"payloads": [{"data": b64}]}}})
        };
        let h = json!({"events": [
            ev(1, "00.000", "WorkflowExecutionStarted", json!({})),
            ev(2, "00.020", "MarkerRecorded", json!({"marker_name": "core_patch", "details": {}})),
            ev(3, "00.030", "MarkerRecorded", marker("session.pick_node", 12, 15)),
            ev(4, "00.030", "MarkerRecorded", marker("session.record", 5, 10)),
            ev(5, "00.031", "ActivityTaskScheduled", json!({"activity_type": {"name": "session.ensure_container"}})),
        ]});
        let p = parse_history(&h).unwrap();
        let names: Vec<(&str, bool)> =
            p.activities.iter().map(|a| (a.name.as_str(), a.local)).collect();
        assert_eq!(
            names,
            [
                ("session.record", true),
                ("session.pick_node", true),
                ("session.ensure_container", false)
            ]
        );
        assert!((p.activities[0].completed.unwrap() - p.started - 10.0).abs() < 0.01);
        assert_eq!(p.activities[0].started, p.activities[0].completed);

        // The recorded histories of today's Session carry them too.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/tests/histories");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("session_lifecycle.json")).unwrap())
                .unwrap();
        let p = parse_history(&json).unwrap();
        let local: Vec<&str> =
            p.activities.iter().filter(|a| a.local).map(|a| a.name.as_str()).collect();
        assert_eq!(local[..2], ["session.record", "session.pick_node"], "{local:?}");
        assert!(
            p.activities
                .iter()
                .filter(|a| a.local)
                .all(|a| a.completed.is_some_and(|c| c >= a.scheduled))
        );
    }

    #[test]
    fn the_breakdown_table_has_medians_and_deltas() {
        let a = Timeline { steps: vec![("x".into(), 10.0), ("y".into(), 30.0)] };
        let b = Timeline { steps: vec![("x".into(), 20.0), ("y".into(), 60.0)] };
        let out = render(&[a.clone(), b.clone()]);
        assert!(out.contains("| x "), "{out}");
        assert!(out.contains("|             15 |"), "{out}");
        assert_eq!(median_between(&[a, b], "x", "y"), Some(30.0));
    }
}
