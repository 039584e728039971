//! `/w/{slug}`: the workspace dashboard: active sessions, usage and recent activity.

use maud::{Markup, html};

use crate::components::{
    ENDED_STATES, SessionColumns, format_count, has_ended, human_bytes, live_empty_state,
    role_badge, session_table,
};
use crate::{PageContext, encode_path_segment, layout_at, time};

/// `/w/{slug}`. The active-sessions table is refreshed by `live.js` from
/// `/api/v1/workspaces/{slug}/sessions`; recent activity shows only when `d.recent_activity`
/// is `Some` (roles that may read the audit log).
pub fn dashboard(ctx: &PageContext, d: &sdk::Dashboard) -> Markup {
    let ws = &d.workspace;
    let slug = encode_path_segment(&ws.slug);
    let base = format!("/w/{slug}");
    let live_url = format!("/api/v1/workspaces/{slug}/sessions");
    let hide = ENDED_STATES.join(" ");
    // The API promises active sessions only; an ended one would make the script reload.
    let active: Vec<&sdk::SessionSummary> =
        d.active_sessions.iter().filter(|s| !has_ended(s)).collect();
    let u = &d.usage;
    let body = html! {
        div.page-head {
            h1 { "Dashboard" }
            p.lead { (ws.name) " · your role: " (role_badge(&ws.role)) }
        }
        div.cards {
            section.card.wide aria-labelledby="active-sessions-heading" {
                div.card-head {
                    h2 #active-sessions-heading { "Active sessions" }
                    a href={ (base) "/sessions" } { "All sessions" }
                }
                @if active.is_empty() {
                    (live_empty_state(&live_url, &hide, html! {
                        p { strong { "No sessions running" } }
                        p { "Start one from the " a href={ (base) "/templates" } { "template catalog" } "." }
                    }))
                } @else {
                    (session_table(ctx, &ws.slug, "Active sessions", &live_url, &hide, &active, SessionColumns::Compact))
                }
            }
            section.card aria-labelledby="usage-heading" {
                h2 #usage-heading { "Usage" }
                dl.stats {
                    div { dt { "Runtime" } dd { (format_count(u.runtime_minutes)) " min" } }
                    div { dt { "Build time" } dd { (format_count(u.build_minutes)) " min" } }
                    div { dt { "Storage" } dd { (human_bytes(u.storage_bytes)) } }
                    div { dt { "Active sessions" } dd { (u.active_sessions) } }
                }
                p.muted { "Since " (time(u.since)) " UTC" }
            }
            @if let Some(events) = &d.recent_activity {
                section.card aria-labelledby="activity-heading" {
                    div.card-head {
                        h2 #activity-heading { "Recent activity" }
                        a href={ (base) "/audit" } { "Audit log" }
                    }
                    @if events.is_empty() {
                        p.muted { "No activity yet." }
                    } @else {
                        ol.activity {
                            @for e in events {
                                li {
                                    code { (e.action) }
                                    span.activity-meta {
                                        @match &e.actor { Some(a) => (a), None => "system" }
                                        " · " (time(e.at))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout_at(ctx, &base, &format!("Dashboard · {}", ws.name), body)
}
