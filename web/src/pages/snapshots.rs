//! The "Snapshots" card of a session's page (docs/snapshots.md): the snapshots of its persisted
//! paths, "Save now", and per snapshot Restore and Delete. The forms post to
//! `/w/{slug}/sessions/{id}/snapshots` (save), `…/snapshots/{snapshot}/restore` and
//! `…/snapshots/{snapshot}/delete`, with the CSRF token; the handlers come back to the card
//! (`#snapshots`) with a flash message.

use maud::{Markup, html};

use super::sessions::time_seconds;
use crate::components::{SessionRights, human_bytes, session_path};
use crate::{PageContext, csrf_field, encode_path_segment, iso_utc};

/// What the session page shows about its snapshots.
#[derive(Debug, Clone, Copy)]
pub struct SessionSnapshots<'a> {
    /// Newest first, deleted ones left out (as `GET …/snapshots` answers).
    pub list: &'a [sdk::Snapshot],
}

/// What the viewer may do with a session's snapshots: save and restore on their own session
/// (with `UseSessions`); delete on their own, or on anyone's with `ManageAnySession` too (as for
/// the session itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotActions {
    pub save_restore: bool,
    pub delete: bool,
}

pub fn snapshot_actions(rights: SessionRights, mine: bool) -> SnapshotActions {
    SnapshotActions {
        save_restore: rights.use_sessions && mine,
        delete: rights.use_sessions && (mine || rights.manage_any),
    }
}

/// A snapshot status as a badge: `badge snap snap-{status}` (`snap-unknown` for a word that is
/// not one of [`sdk::SNAPSHOT_STATUSES`]).
pub fn snapshot_badge(status: &str) -> Markup {
    let known = sdk::SNAPSHOT_STATUSES.contains(&status);
    let class = format!("badge snap snap-{}", if known { status } else { "unknown" });
    html! { span class=(class) { (status) } }
}

/// What a snapshot's trigger means, for its tooltip.
fn trigger_title(trigger: &str) -> &'static str {
    match trigger {
        "manual" => "Saved with Save now or flare snapshot save",
        "sleep" => "Taken when the session went to sleep",
        "stop" => "Taken when the session stopped",
        "restart" => "Taken when the session restarted",
        "pre-restore" => "The files as they were just before a restore: restore it to undo that",
        _ => "",
    }
}

/// The card. `session` is (id, name, state, owner id).
pub(crate) fn snapshots_card(
    ctx: &PageContext,
    ws_slug: &str,
    session: (&str, &str, &str, &str),
    snapshots: &SessionSnapshots,
    rights: SessionRights,
) -> Markup {
    let (id, name, state, owner_id) = session;
    let mine = ctx.user.is_some_and(|u| u.id == owner_id);
    let can = snapshot_actions(rights, mine);
    let base = format!("{}/snapshots", session_path(ws_slug, id));
    let running = state == "running";
    let any_actions = can.save_restore || can.delete;
    html! {
        section #snapshots .card.session-snapshots aria-labelledby="session-snapshots-heading" {
            div.card-head {
                h2 #session-snapshots-heading { "Snapshots" }
                @if can.save_restore {
                    form method="post" action=(base) class="inline-form" #session-snapshot-save {
                        (csrf_field(ctx))
                        button.button.small.secondary type="submit"
                            aria-describedby="session-snapshots-hint" {
                            "Save now" span.visually-hidden { ": a snapshot of " (name) }
                        }
                    }
                }
            }
            p.hint #session-snapshots-hint {
                "Copies of the files in the template's persisted paths. The latest one is restored "
                "whenever the session gets a fresh container; one is taken when the session sleeps, "
                "stops or restarts."
                @if can.save_restore {
                    " Save now takes one of a running session"
                    @if !running { " (this one is " (state) ")" }
                    "."
                }
            }
            @if snapshots.list.is_empty() {
                p.muted #session-snapshots-empty { "No snapshots yet." }
            } @else {
                table.table.stack.snapshots #session-snapshots {
                    thead { tr {
                        th scope="col" { "Taken" }
                        th scope="col" { "Trigger" }
                        th scope="col" { "Status" }
                        th scope="col" { "Size" }
                        th scope="col" { "Error" }
                        @if any_actions {
                            th scope="col" { span.visually-hidden { "Actions" } }
                        }
                    } }
                    tbody {
                        @for snap in snapshots.list {
                            (snapshot_row(ctx, &base, (name, state), snap, can))
                        }
                    }
                }
                @if can.save_restore {
                    p.hint {
                        "Restore puts a verified snapshot's files back. A running session gets them "
                        "now: a safety snapshot of its current files is taken first (listed as "
                        code { "pre-restore" } ", so a restore can be undone), then its persisted "
                        "paths are replaced. Any other session gets them when it next starts."
                    }
                }
            }
        }
    }
}

fn snapshot_row(
    ctx: &PageContext,
    base: &str,
    session: (&str, &str),
    snap: &sdk::Snapshot,
    can: SnapshotActions,
) -> Markup {
    let (name, state) = session;
    let action = format!("{base}/{}", encode_path_segment(&snap.id));
    // To the second, like the table: two snapshots may be a few seconds apart.
    let iso = iso_utc(snap.created_at);
    let taken =
        format!("{} {}", iso.get(..10).unwrap_or_default(), iso.get(11..19).unwrap_or_default());
    let restorable = can.save_restore && snap.status == "verified";
    // The store refuses to delete the latest one and those still being taken.
    let deletable =
        can.delete && !snap.latest && matches!(snap.status.as_str(), "verified" | "failed");
    let restore_confirm = if state == "running" {
        format!(
            "Restore the snapshot of {taken} UTC into {name} now? A safety snapshot of its current \
             files is taken first, then its persisted paths are replaced. This can take a few \
             minutes."
        )
    } else {
        format!(
            "Restore the snapshot of {taken} UTC into {name}? It is {state}: the snapshot's files \
             are restored when it next starts."
        )
    };
    html! {
        tr data-snapshot-id=(snap.id) data-snapshot-status=(snap.status) {
            td data-label="Taken" {
                (time_seconds(snap.created_at))
                @if snap.latest {
                    " " span.badge.current title="A fresh container of the session is restored from it" { "latest" }
                }
            }
            td data-label="Trigger" {
                span title=(trigger_title(&snap.trigger)) { (snap.trigger) }
            }
            td data-label="Status" { (snapshot_badge(&snap.status)) }
            td data-label="Size" {
                @match snap.size_bytes {
                    Some(b) => (human_bytes(i64::try_from(b).unwrap_or(i64::MAX))),
                    None => span.muted { "—" },
                }
            }
            td data-label="Error" {
                @match snap.error.as_deref().filter(|e| !e.is_empty()) {
                    Some(e) => span.snapshot-error { (e) },
                    None => span.muted { "—" },
                }
            }
            @if can.save_restore || can.delete {
                td data-label="Actions" {
                    div.row-actions {
                        @if restorable {
                            form method="post" action={ (action) "/restore" } class="inline-form"
                                data-confirm=(restore_confirm) {
                                (csrf_field(ctx))
                                button.button.small.secondary type="submit" {
                                    "Restore" span.visually-hidden { " the snapshot of " (taken) " UTC" }
                                }
                            }
                        }
                        @if deletable {
                            form method="post" action={ (action) "/delete" } class="inline-form"
                                data-confirm={ "Delete the snapshot of " (taken) " UTC? It cannot be restored afterwards." } {
                                (csrf_field(ctx))
                                button.button.small.danger type="submit" {
                                    "Delete" span.visually-hidden { " the snapshot of " (taken) " UTC" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn save_and_restore_are_the_owners_and_delete_also_a_managers() {
        let member = SessionRights { use_sessions: true, manage_any: false };
        let admin = SessionRights { use_sessions: true, manage_any: true };
        let viewer = SessionRights { use_sessions: false, manage_any: false };
        assert_eq!(
            snapshot_actions(member, true),
            SnapshotActions { save_restore: true, delete: true }
        );
        assert_eq!(
            snapshot_actions(member, false),
            SnapshotActions { save_restore: false, delete: false }
        );
        assert_eq!(
            snapshot_actions(admin, false),
            SnapshotActions { save_restore: false, delete: true }
        );
        assert_eq!(
            snapshot_actions(viewer, true),
            SnapshotActions { save_restore: false, delete: false }
        );
    }

    #[test]
    fn status_badges_know_the_statuses() {
        assert_eq!(
            snapshot_badge("verified").into_string(),
            r#"<span class="badge snap snap-verified">verified</span>"#
        );
        assert_eq!(
            snapshot_badge("<odd>").into_string(),
            r#"<span class="badge snap snap-unknown">&lt;odd&gt;</span>"#
        );
    }
}
