//! The Snapshots card of a session's page and its forms (Save now, Restore, Delete), with
//! snapshot rows written through the store as the Snapshot workflow writes them: no Temporal or
//! Docker needed.

use domain::ids::{SessionId, SnapshotId, UserId};
use domain::store::{NewSnapshot, UploadedSnapshot};
use serde_json::json;

use crate::browserish::{Api, Browser};
use crate::shell::{api_with_storage, join_as, seed_store_session, seed_template, submit};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A snapshot of session `session` taken at `at` by `trigger`, moved through the store to
/// `status` (`pending`, `verified` or `failed`). Returns its id.
async fn seed_snapshot(
    api: &Api,
    session: &str,
    trigger: &str,
    status: &str,
    at: i64,
    size: u64,
) -> String {
    let store = &api.state.store;
    let sid = SessionId::parse(session).unwrap();
    let s = store.session_by_id(&sid).await.unwrap().unwrap();
    let id = SnapshotId::new();
    let by: Option<UserId> = (trigger == "manual").then(|| s.owner.clone());
    store
        .begin_snapshot(&NewSnapshot {
            id: &id,
            session: &sid,
            workspace: &s.workspace_id,
            trigger,
            created_by: by.as_ref(),
            at,
        })
        .await
        .unwrap();
    match status {
        "pending" => {}
        "failed" => {
            store
                .fail_snapshot(&id, "the agent answered 507: no space left <on device>")
                .await
                .unwrap();
        }
        _ => {
            let key = format!("workspaces/{}/snapshots/{id}.json", s.workspace_id);
            let up = UploadedSnapshot {
                manifest_key: &key,
                size_bytes: size,
                sha256: SHA,
                chunks: 3,
                new_chunks: 1,
                stored_bytes: size / 3,
            };
            store.snapshot_uploaded(&id, &up).await.unwrap();
            store.commit_snapshot(&id, at + 500).await.unwrap();
        }
    }
    id.to_string()
}

fn html_of(r: &crate::browserish::Reply) -> String {
    r.body.as_str().unwrap_or_else(|| panic!("not a page: {:?}", r.body)).to_string()
}

/// The rows of the Snapshots card: (snapshot id, the row's text, the actions' form targets).
fn card_rows(html: &str) -> Vec<(String, String, Vec<String>)> {
    let doc = scraper::Html::parse_document(html);
    let rows = scraper::Selector::parse("#snapshots tbody tr").unwrap();
    let forms = scraper::Selector::parse("form").unwrap();
    doc.select(&rows)
        .map(|tr| {
            let id = tr.value().attr("data-snapshot-id").unwrap().to_string();
            let text = tr.text().collect::<Vec<_>>().join(" ");
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let actions = tr
                .select(&forms)
                .map(|f| f.value().attr("action").unwrap().rsplit('/').next().unwrap().to_string())
                .collect();
            (id, text, actions)
        })
        .collect()
}

fn has_save_button(html: &str) -> bool {
    let doc = scraper::Html::parse_document(html);
    let save = scraper::Selector::parse("#snapshots form#session-snapshot-save").unwrap();
    doc.select(&save).next().is_some()
}

/// Adds a member with `role` to `slug`, invited by `owner` and accepted through the API.
async fn audit_of(b: &mut Browser, slug: &str) -> Vec<(String, String)> {
    let page = b.get(&format!("/api/v1/workspaces/{slug}/audit?limit=200")).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let target = e["target_id"].as_str().unwrap_or_default().to_string();
            (e["action"].as_str().unwrap().to_string(), target)
        })
        .collect()
}

async fn snapshot_count(api: &Api, session: &str) -> usize {
    let sid = SessionId::parse(session).unwrap();
    api.state.store.snapshots_of_session(&sid).await.unwrap().len()
}

#[tokio::test]
async fn the_snapshots_card_lists_them_and_its_forms_save_restore_and_delete() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("snap-owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    seed_template(&api, "team", "snap-owner@example.com", "web-app").await;
    let mut member = join_as(&api, &mut owner, "team", "snap-member@example.com", "member").await;
    let mut viewer = join_as(&api, &mut owner, "team", "snap-viewer@example.com", "viewer").await;
    let own = "snap-owner@example.com";
    let napping = seed_store_session(&api, "team", own, "web-app", "napping", "sleeping").await;
    let empty = seed_store_session(&api, "team", own, "web-app", "fresh", "running").await;

    // Four snapshots, oldest first: a manual one, the sleep one that is the latest, a failed
    // one and one still being taken.
    let t = domain::store::now_ms() - 3_600_000;
    let manual = seed_snapshot(&api, &napping, "manual", "verified", t, 3 * 1024 * 1024).await;
    let latest = seed_snapshot(&api, &napping, "sleep", "verified", t + 60_000, 1536).await;
    let failed = seed_snapshot(&api, &napping, "stop", "failed", t + 120_000, 0).await;
    let pending = seed_snapshot(&api, &napping, "manual", "pending", t + 180_000, 0).await;
    let page = format!("/w/team/sessions/{napping}");

    // The owner's card: newest first, each with its trigger, status and size; the latest
    // marked; Restore on the verified ones, Delete on the finished ones but the latest.
    let r = owner.get(&page).await;
    assert_eq!(r.status, 200);
    let html = html_of(&r);
    let doc = scraper::Html::parse_document(&html);
    assert!(doc.errors.is_empty(), "the session page is not well-formed: {:?}", doc.errors);
    assert!(html.contains(r#"<h2 id="session-snapshots-heading">Snapshots</h2>"#));
    assert!(has_save_button(&html));
    let rows = card_rows(&html);
    let ids: Vec<&str> = rows.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(ids, [&pending, &failed, &latest, &manual]);
    let (_, text, actions) = &rows[0];
    assert!(text.contains("manual pending"), "{text}");
    assert!(actions.is_empty(), "nothing to do with a snapshot being taken: {actions:?}");
    let (_, text, actions) = &rows[1];
    assert!(text.contains("stop failed"), "{text}");
    assert!(text.contains("the agent answered 507: no space left <on device>"), "{text}");
    assert_eq!(actions, &["delete"]);
    let (_, text, actions) = &rows[2];
    assert!(text.contains("latest sleep verified 1.5 KiB"), "{text}");
    assert_eq!(actions, &["restore"], "the latest cannot be deleted");
    let (_, text, actions) = &rows[3];
    assert!(text.contains("manual verified 3.0 MiB") && !text.contains("latest"), "{text}");
    assert_eq!(actions, &["restore", "delete"]);
    assert!(html.contains("the agent answered 507: no space left &lt;on device&gt;"));
    // The restore asks first and says what happens to a session that is not running.
    assert!(
        html.contains("It is sleeping: the snapshot&#39;s files are restored when it next starts")
            || html
                .contains("It is sleeping: the snapshot's files are restored when it next starts")
    );
    assert!(html.contains(&format!(
        r#"action="/w/team/sessions/{napping}/snapshots/{manual}/restore" class="inline-form" data-confirm="#
    )));

    // A session without snapshots says so.
    let html = html_of(&owner.get(&format!("/w/team/sessions/{empty}")).await);
    assert!(html.contains(r#"id="session-snapshots-empty""#));

    // Another member sees the card without any action; so does a viewer.
    for b in [&mut member, &mut viewer] {
        let html = html_of(&b.get(&page).await);
        assert_eq!(card_rows(&html).len(), 4);
        assert!(!has_save_button(&html));
        assert!(card_rows(&html).iter().all(|(_, _, actions)| actions.is_empty()));
    }
    let (status, ..) =
        submit(&viewer, &format!("{page}/snapshots/{manual}/delete"), &[], true).await;
    assert_eq!(status, 403, "a viewer may not use sessions");

    // Save now on a session that is not running: the reason, and nothing made.
    let save = format!("{page}/snapshots");
    let (status, ..) = submit(&owner, &save, &[], false).await;
    assert_eq!(status, 403, "the CSRF token is needed");
    let (status, location, flash, _) = submit(&owner, &save, &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some(format!("{page}#snapshots").as_str())));
    let flash = flash.unwrap();
    assert!(flash.starts_with("err:the session is sleeping: only a running session"), "{flash}");
    assert_eq!(snapshot_count(&api, &napping).await, 4);
    // …and someone else's session is not theirs to snapshot.
    let (status, _, flash, _) = submit(&member, &save, &[], true).await;
    assert_eq!(status, 303);
    assert_eq!(flash.as_deref(), Some("err:this session belongs to someone else"));
    assert_eq!(snapshot_count(&api, &napping).await, 4);

    // Deleting the latest is refused with the reason; an older one goes, audited.
    let (status, _, flash, _) = submit(&owner, &format!("{save}/{latest}/delete"), &[], true).await;
    assert_eq!(status, 303);
    let flash = flash.unwrap();
    assert!(flash.starts_with("err:the session's latest snapshot cannot be deleted"), "{flash}");
    let (status, _, flash, _) =
        submit(&member, &format!("{save}/{failed}/delete"), &[], true).await;
    assert_eq!((status, flash.as_deref()), (303, Some("err:this session belongs to someone else")));
    let (status, location, flash, _) =
        submit(&owner, &format!("{save}/{failed}/delete"), &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some(format!("{page}#snapshots").as_str())));
    assert_eq!(flash.as_deref(), Some("ok:Snapshot deleted."));
    assert_eq!(snapshot_count(&api, &napping).await, 3);
    let audit = audit_of(&mut owner, "team").await;
    assert!(
        audit.iter().any(|(action, target)| action == "snapshot.deleted" && *target == failed),
        "{audit:?}"
    );
    let html = html_of(&owner.get(&page).await);
    assert!(!card_rows(&html).iter().any(|(id, ..)| *id == failed));

    // Restoring a verified snapshot of a sleeping session: it becomes the latest, for the next
    // start (no workflow needed), audited.
    let (status, _, flash, _) =
        submit(&owner, &format!("{save}/{manual}/restore"), &[], true).await;
    assert_eq!(status, 303);
    assert_eq!(
        flash.as_deref(),
        Some("ok:Snapshot selected: its files are restored when the session next starts.")
    );
    let rows = card_rows(&html_of(&owner.get(&page).await));
    let row = rows.iter().find(|(id, ..)| *id == manual).unwrap();
    assert!(row.1.contains("latest manual verified"), "{}", row.1);
    // The old latest can go now.
    assert_eq!(row.2, ["restore"]);
    let audit = audit_of(&mut owner, "team").await;
    assert!(audit.iter().any(|(a, t)| a == "snapshot.restored" && *t == manual), "{audit:?}");
    // A snapshot that is not verified is not restored.
    let (_, _, flash, _) = submit(&owner, &format!("{save}/{pending}/restore"), &[], true).await;
    let flash = flash.unwrap();
    assert!(flash.contains("only verified snapshots can be restored"), "{flash}");

    // Someone from another workspace: none of it exists for them, nor their session here.
    let mut other = api.browser();
    other.sign_up("snap-other@example.com", "Other").await;
    other.load_csrf(&api).await;
    other.post("/api/v1/workspaces", json!({"name": "Other", "slug": "other"})).await;
    seed_template(&api, "other", "snap-other@example.com", "web-app").await;
    let foreign =
        seed_store_session(&api, "other", "snap-other@example.com", "web-app", "theirs", "running")
            .await;
    assert_eq!(other.get(&page).await.status, 404);
    for path in [
        save.clone(),
        format!("{save}/{manual}/restore"),
        format!("{save}/{latest}/delete"),
        format!("/w/other/sessions/{napping}/snapshots"),
        format!("/w/other/sessions/{napping}/snapshots/{latest}/delete"),
    ] {
        let (status, ..) = submit(&other, &path, &[], true).await;
        assert_eq!(status, 404, "{path}");
    }
    // Nor theirs for the owner here, nor an unknown snapshot.
    let (status, ..) =
        submit(&owner, &format!("/w/team/sessions/{foreign}/snapshots"), &[], true).await;
    assert_eq!(status, 404);
    let (status, ..) = submit(&owner, &format!("{save}/not-a-snapshot/delete"), &[], true).await;
    assert_eq!(status, 404);
    assert_eq!(snapshot_count(&api, &napping).await, 3);
}
