//! `/w/{slug}/sessions`: the workspace's sessions, live-refreshed.

use maud::{Markup, html};

use crate::components::{ENDED_STATES, SessionColumns, has_ended, live_empty_state, session_table};
use crate::{PageContext, encode_path_segment, layout_at};

/// `/w/{slug}/sessions`. Without `show_ended` the stopped, failed and deleted sessions are
/// left out (the page filters `sessions` itself). The filter is a GET form sending
/// `show_ended=true` when ticked. The table is refreshed by `live.js` from
/// `/api/v1/workspaces/{slug}/sessions`.
pub fn sessions(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    sessions: &[sdk::SessionSummary],
    show_ended: bool,
) -> Markup {
    let slug = encode_path_segment(&ws.slug);
    let path = format!("/w/{slug}/sessions");
    let templates = format!("/w/{slug}/templates");
    let live_url = format!("/api/v1/workspaces/{slug}/sessions");
    let hide = if show_ended { String::new() } else { ENDED_STATES.join(" ") };
    let shown: Vec<&sdk::SessionSummary> =
        sessions.iter().filter(|s| show_ended || !has_ended(s)).collect();
    let hidden = sessions.len() - shown.len();
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
                (session_table(ctx, &ws.slug, "Sessions", &live_url, &hide, &shown, SessionColumns::Full))
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
                        "Start one from a template with " code { "flare session create" }
                        " or the " a href=(templates) { "template catalog" } "."
                    }
                }))
            }
        }
    };
    layout_at(ctx, &path, &format!("Sessions · {}", ws.name), body)
}
