//! `/w/{slug}/sessions` (the workspace's sessions, live-refreshed, and starting one) and
//! `/w/{slug}/sessions/{id}` (one session: its state, details, controls, why and events).

use maud::{Markup, html};

use super::snapshots::{SessionSnapshots, snapshots_card};
use super::templates::template_path;
use super::terminal::terminal_path;
use crate::components::{
    ENDED_STATES, RowControls, SessionColumns, SessionRights, command_box, controls_for_owner,
    has_ended, iso_utc, live_empty_state, live_status, session_control_forms, session_path,
    session_table, shell_word, state_badge, time_or, version_label,
};
use crate::{PageContext, SESSION_JS_PATH, csrf_field, encode_path_segment, layout_at, time};

/// A template new sessions can start from (it has a built version) and the version they get:
/// the promoted one, else the newest built one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartableTemplate {
    pub name: String,
    pub version: String,
}

/// The "New session" form of the sessions page.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// The templates to pick from; none says that a template needs a built version first.
    pub templates: &'a [StartableTemplate],
    /// Sent as the request's idempotency key, so a form submitted twice starts one session.
    pub idempotency_key: &'a str,
}

/// Most events the session page renders; the script appends newer ones.
pub const MAX_EVENTS_SHOWN: usize = 500;

/// `/w/{slug}/sessions`. Without `show_ended` the stopped, failed and deleted sessions are
/// left out (the page filters `sessions` itself). The filter is a GET form sending
/// `show_ended=true` when ticked. The table is refreshed by `live.js` from
/// `/api/v1/workspaces/{slug}/sessions`. Each row links to the session's page and, for viewers
/// whose `rights` allow it, holds the controls for its state (forms coming back here).
/// `new` adds the "New session" form (POST `/w/{slug}/sessions`).
pub fn sessions(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    sessions: &[sdk::SessionSummary],
    show_ended: bool,
    rights: SessionRights,
    new: Option<&NewSession>,
) -> Markup {
    let slug = encode_path_segment(&ws.slug);
    let path = format!("/w/{slug}/sessions");
    let here = if show_ended { format!("{path}?show_ended=true") } else { path.clone() };
    let templates = format!("/w/{slug}/templates");
    let live_url = format!("/api/v1/workspaces/{slug}/sessions");
    let hide = if show_ended { String::new() } else { ENDED_STATES.join(" ") };
    let shown: Vec<&sdk::SessionSummary> =
        sessions.iter().filter(|s| show_ended || !has_ended(s)).collect();
    let hidden = sessions.len() - shown.len();
    let controls = RowControls { rights, next: &here };
    let body = html! {
        div.page-head {
            h1 { "Sessions" }
            p.lead { (ws.name) " · development sessions and their state" }
        }
        section.card aria-labelledby="sessions-list-heading" {
            div.card-head {
                h2 #sessions-list-heading {
                    @if show_ended { "All sessions" } @else { "Current sessions" }
                }
                form.filter-form.inline-filter method="get" action=(path) {
                    div.check {
                        input type="checkbox" id="show-ended" name="show_ended" value="true"
                            checked[show_ended];
                        label for="show-ended" { "Show stopped and failed" }
                    }
                    button.button.small.secondary type="submit" { "Apply" }
                }
            }
            @if !shown.is_empty() {
                (session_table(ctx, &ws.slug, "Sessions", &live_url, &hide, &shown, SessionColumns::Full(controls)))
            } @else if hidden > 0 {
                (live_empty_state(&live_url, &hide, html! {
                    p { strong { "No running sessions." } }
                    p {
                        @if hidden == 1 { "1 stopped or failed session is hidden: " }
                        @else { (hidden) " stopped or failed sessions are hidden: " }
                        a href={ (path) "?show_ended=true" } { "show them" } "."
                    }
                }))
            } @else {
                (live_empty_state(&live_url, &hide, html! {
                    p { strong { "No sessions yet." } }
                    p {
                        @if new.is_some_and(|n| !n.templates.is_empty()) {
                            "Start one from a template with the form below or "
                            code { "flare session create" } "."
                        } @else {
                            "Start one from a template with " code { "flare session create" }
                            " or the " a href=(templates) { "template catalog" } "."
                        }
                    }
                }))
            }
        }
        @if let Some(new) = new {
            (new_session_form(ctx, &path, &templates, new))
        }
    };
    layout_at(ctx, &path, &format!("Sessions · {}", ws.name), body)
}

fn new_session_form(ctx: &PageContext, action: &str, templates: &str, new: &NewSession) -> Markup {
    html! {
        section.card aria-labelledby="new-session-heading" {
            h2 #new-session-heading { "New session" }
            @if new.templates.is_empty() {
                p.muted #new-session-none {
                    "No template has a built version yet: sessions start from one. See the "
                    a href=(templates) { "template catalog" } "."
                }
            } @else {
                form method="post" action=(action) class="stack-form" {
                    (csrf_field(ctx))
                    input type="hidden" name="idempotency_key" value=(new.idempotency_key);
                    div.field {
                        label for="new-session-template" { "Template" }
                        select id="new-session-template" name="template" required
                            aria-describedby="new-session-template-hint" {
                            @for t in new.templates {
                                option value=(t.name) { (t.name) " (" (version_label(&t.version)) ")" }
                            }
                        }
                        p.hint #new-session-template-hint {
                            "Templates with a built version. A session gets the promoted version, else the newest built one."
                        }
                    }
                    div.field {
                        label for="new-session-name" { "Name" }
                        input type="text" id="new-session-name" name="name" maxlength="63"
                            pattern="[a-z]([a-z0-9\\-]{0,61}[a-z0-9])?"
                            title="A lowercase letter, then lowercase letters, digits and hyphens, not ending with a hyphen: at most 63"
                            autocapitalize="none" spellcheck="false" class="mono"
                            placeholder="optional" aria-describedby="new-session-name-hint";
                        p.hint #new-session-name-hint {
                            "Optional: a lowercase letter, then lowercase letters, digits and hyphens; at most 63. "
                            "Without one it is the template's name and four random letters."
                        }
                    }
                    div.form-actions { button.button.primary type="submit" { "Start session" } }
                }
            }
        }
    }
}

/// A time to the second, as `<time datetime="…Z">YYYY-MM-DD HH:MM:SS</time>` (UTC).
pub(super) fn time_seconds(ms: i64) -> Markup {
    let iso = iso_utc(ms);
    let shown =
        format!("{} {}", iso.get(..10).unwrap_or_default(), iso.get(11..19).unwrap_or_default());
    html! { time datetime=(iso) title="UTC" { (shown) } }
}

/// An event's detail in one line: an object as `key=value` pairs (strings as they are, other
/// values as JSON), a string as it is, nothing for `null` or `{}`. `session.js` words it alike.
pub(crate) fn event_detail_text(detail: &sdk::SessionEvent) -> Option<String> {
    let d = &detail.detail;
    if d.is_null() {
        return None;
    }
    if let Some(map) = d.as_object() {
        if map.is_empty() {
            return None;
        }
        let pairs: Vec<String> = map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect();
        return Some(pairs.join(" "));
    }
    Some(d.as_str().map_or_else(|| d.to_string(), str::to_string))
}

fn event_item(e: &sdk::SessionEvent) -> Markup {
    html! {
        li data-seq=(e.seq) {
            (time_seconds(e.at)) " "
            code.event-kind { (e.kind) }
            @if let Some(text) = event_detail_text(e) {
                " " span.session-event-detail { (text) }
            }
        }
    }
}

/// `/w/{slug}/sessions/{id}`: the session's state (badge), details, error, controls (those
/// `rights` allow on this session, shown for its state), what its workflow is doing (`why`;
/// `None` when it could not be asked: the page says so) and its events, oldest first, newest
/// at the bottom of a box that starts scrolled to the end. Until the session is deleted the
/// page loads `session.js`, which polls `data-session-events` from `data-after` and
/// `data-session` (the session JSON) every 2 s, appending events and keeping the badge, the
/// error, the times and the controls current. Without it, a Reload link shows more. Its owner
/// also gets, until it is deleted, a Connect card: "Open in browser" (the terminal page) and
/// the `flare ssh` / plain `ssh` commands.
pub fn session_detail(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    s: &sdk::SessionDetail,
    why: Option<&sdk::SessionWhy>,
    events: &[sdk::SessionEvent],
    rights: SessionRights,
) -> Markup {
    session_detail_with_snapshots(ctx, ws, s, why, events, rights, None)
}

/// [`session_detail`] with the Snapshots card after the Details (none for `None`): see
/// [`SessionSnapshots`](super::snapshots::SessionSnapshots).
pub fn session_detail_with_snapshots(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    s: &sdk::SessionDetail,
    why: Option<&sdk::SessionWhy>,
    events: &[sdk::SessionEvent],
    rights: SessionRights,
    snapshots: Option<&SessionSnapshots>,
) -> Markup {
    let path = session_path(&ws.slug, &s.id);
    let slug = encode_path_segment(&ws.slug);
    let list = format!("/w/{slug}/sessions");
    let api = format!("/api/v1/workspaces/{slug}/sessions/{}", encode_path_segment(&s.id));
    let events_url = format!("{api}/events");
    let deleted = s.state == "deleted";
    let failed = s.state == "failed";
    let mine = ctx.user.is_some_and(|u| u.id == s.owner.id);
    let has_controls = !controls_for_owner(rights, mine).is_empty();
    let skipped = events.len().saturating_sub(MAX_EVENTS_SHOWN);
    let after = events.last().map_or(0, |e| e.seq);
    let body = html! {
        div.page-head {
            p.breadcrumb { a href=(list) { "Sessions" } " / " }
            h1 { (s.name) }
            p.lead.session-status { "State: " (state_badge(&s.state)) }
        }
        div.notice.error.session-error #session-error role="alert" hidden[s.error.is_none()] {
            strong #session-error-title {
                @if failed { "This session failed: " } @else { "Error: " }
            }
            span #session-error-text { (s.error.as_deref().unwrap_or_default()) }
        }
        p.notice #session-deleted role="status" hidden[!deleted] {
            "This session is deleted: its container is gone and its name is free again."
        }
        @if has_controls {
            div.actions.session-actions #session-controls {
                (session_control_forms(ctx, &ws.slug, (&s.id, &s.name, &s.state), &s.owner.id, rights, &path, true))
            }
        }
        @if mine && !deleted {
            (connect_card(&ws.slug, s))
        }
        section.card aria-labelledby="session-about-heading" {
            h2 #session-about-heading { "Details" }
            dl.meta {
                dt { "Template" }
                dd {
                    a href=(template_path(&ws.slug, &s.template)) {
                        (s.template) " " (version_label(&s.version))
                    }
                }
                dt { "Owner" }
                dd {
                    (s.owner.display_name)
                    @if mine { " " span.muted { "(you)" } }
                }
                dt { "Node" }
                dd #session-node {
                    @match &s.node {
                        Some(n) => code { (n) },
                        None => span.muted { "not placed yet" },
                    }
                }
                dt { "Created" }
                dd { (time(s.created_at)) }
                dt { "Started" }
                dd #session-started { (time_or(s.started_at, "not yet")) }
                dt { "Stopped" }
                dd #session-stopped { (time_or(s.stopped_at, "—")) }
                dt { "Last active" }
                dd #session-last-active { (time_or(s.last_active_at, "never")) }
                dt { "Updated" }
                dd #session-updated { (time(s.updated_at)) }
                dt { "ID" }
                dd { code { (s.id) } }
                dt { "Workflow" }
                dd {
                    code { (s.workflow_id) }
                    p.hint { "Operators: " code { "temporal workflow show -w " (s.workflow_id) } }
                }
            }
        }
        @if let Some(snapshots) = snapshots.filter(|_| !deleted) {
            (snapshots_card(ctx, &ws.slug, (&s.id, &s.name, &s.state, &s.owner.id), snapshots, rights))
        }
        (why_card(&path, why))
        section.card.session-events-card aria-labelledby="session-events-heading" {
            div.card-head {
                h2 #session-events-heading { "Events" }
                a href=(path) { "Reload" }
            }
            @if skipped > 0 {
                p.muted { "The " (skipped) " oldest events are not shown." }
            }
            div.session-events-scroll {
                ol.session-events #session-events role="log" tabindex="0"
                    aria-labelledby="session-events-heading"
                    data-session-events=(events_url) data-session=(api)
                    data-after=(after) data-done=(deleted) {
                    @for e in &events[skipped..] { (event_item(e)) }
                }
            }
            p.muted #session-events-empty hidden[!events.is_empty()] { "No events yet." }
            (live_status())
        }
        @if !deleted {
            script src=(SESSION_JS_PATH) defer {}
        }
    };
    layout_at(ctx, &path, &format!("{} · Sessions · {}", s.name, ws.name), body)
}

/// How the owner gets a shell: the browser terminal, or SSH through `flare`.
fn connect_card(ws_slug: &str, s: &sdk::SessionDetail) -> Markup {
    let name = shell_word(&s.name);
    let alias = sdk::ssh_host_alias(&s.name, ws_slug);
    html! {
        section.card.session-connect aria-labelledby="session-connect-heading" {
            div.card-head {
                h2 #session-connect-heading { "Connect" }
                a.button.primary #session-open-terminal href=(terminal_path(ws_slug, &s.id)) {
                    "Open in browser"
                    span.visually-hidden { ": a terminal in " (s.name) }
                }
            }
            p.hint {
                "The terminal works while the session is running; a sleeping or stopped session can be "
                "started from it."
            }
            h3 { "Connect with SSH" }
            (command_box("session-ssh-command", "SSH command", &format!("flare ssh {name}")))
            p.hint {
                "Uses the workspace you picked with " code { "flare workspace switch" } "; add "
                code { "-w " (shell_word(ws_slug)) } " otherwise. Or run " code { "flare ssh-config" }
                " once, then use plain " code { "ssh" } ", " code { "scp" } " and " code { "sftp" } ":"
            }
            (command_box("session-ssh-alias", "Plain SSH command", &format!("ssh {}", shell_word(&alias))))
        }
    }
}

fn why_card(path: &str, why: Option<&sdk::SessionWhy>) -> Markup {
    html! {
        section.card aria-labelledby="session-why-heading" {
            div.card-head {
                h2 #session-why-heading { "Why" }
                a href=(path) { "Reload" }
            }
            @match why {
                None => p.notice { "The session's workflow could not be asked just now. Reload in a moment." },
                Some(w) => {
                    p.hint { "What the session's workflow is doing, as of when this page loaded." }
                    dl.meta {
                        dt { "State" }
                        dd { (state_badge(&w.state)) }
                        dt { "Step" }
                        dd { @if w.step.is_empty() { span.muted { "none" } } @else { (w.step) } }
                        dt { "Attempts" }
                        dd { (w.attempts) }
                        dt { "Idle deadline" }
                        dd { (time_or(w.idle_deadline, "none")) }
                        dt { "Lifetime deadline" }
                        dd { (time_or(w.lifetime_deadline, "none")) }
                        dt { "Pending operations" }
                        dd {
                            @if w.pending.is_empty() {
                                span.muted { "none" }
                            } @else {
                                ol.plain-list.compact {
                                    @for op in &w.pending { li { code { (op) } } }
                                }
                            }
                        }
                        dt { "Node" }
                        dd {
                            @match &w.node {
                                Some(n) => code { (n) },
                                None => span.muted { "none" },
                            }
                        }
                        dt { "Container generation" }
                        dd { (w.generation) }
                        dt { "Last error" }
                        dd {
                            @match &w.last_error {
                                Some(e) => span.why-error { (e) },
                                None => span.muted { "none" },
                            }
                        }
                    }
                }
            }
        }
    }
}
