//! `/w/{slug}/sessions/{id}/terminal`: a session's shell in the browser. A full-page xterm.js
//! under a slim bar (the session's name, state, template, owner, idle and lifetime deadlines,
//! its Sleep / Stop / Restart controls and a way back), driven by `terminal.js` over the
//! session's terminal WebSocket. Only the session's owner gets this page.

use maud::{DOCTYPE, Markup, html};

use crate::components::{
    SessionRights, control_states, controls_for_owner, session_path, state_badge, time_or,
    version_label,
};
use crate::{
    FAVICON_PATH, PageContext, STYLESHEET_PATH, TERMINAL_JS_PATH, XTERM_CSS_PATH,
    XTERM_FIT_JS_PATH, XTERM_JS_PATH, csrf_field, encode_path_segment, flash, time,
};

/// The controls the terminal's bar offers, in order: Start (for a sleeping or stopped session:
/// it comes back here, to a new shell), then Sleep, Stop and Restart (back to the session's
/// page: the shell goes away with them).
const TERMINAL_CONTROLS: [&str; 4] = ["start", "sleep", "stop", "restart"];

/// `/w/{slug}/sessions/{id}/terminal`, percent-encoded.
pub fn terminal_path(ws_slug: &str, id: &str) -> String {
    format!("{}/terminal", session_path(ws_slug, id))
}

/// The terminal page of session `s` (the viewer's own: the api crate answers 404 to anyone
/// else). `why` gives the idle and lifetime deadlines (`None` when the workflow could not be
/// asked, or the session is not running); `rights` decide the controls, as on the session's
/// page.
///
/// For `terminal.js`: `#terminal` carries `data-terminal` (the WebSocket path),
/// `data-session` (the session's JSON), `data-why`, `data-session-id` and `data-session-page`;
/// `#terminal-status` says where the connection is (`data-state`: `connecting`, `connected`,
/// `reconnecting`, `closed`, `exited`); `#terminal-new-shell` and `#terminal-reconnect` are
/// buttons it shows when they apply. Without JavaScript the page says the terminal needs it.
pub fn terminal(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    s: &sdk::SessionDetail,
    why: Option<&sdk::SessionWhy>,
    rights: SessionRights,
) -> Markup {
    let slug = encode_path_segment(&ws.slug);
    let page = session_path(&ws.slug, &s.id);
    let here = terminal_path(&ws.slug, &s.id);
    let api = format!("/api/v1/workspaces/{slug}/sessions/{}", encode_path_segment(&s.id));
    let mine = ctx.user.is_some_and(|u| u.id == s.owner.id);
    let allowed = controls_for_owner(rights, mine);
    let controls: Vec<&str> =
        TERMINAL_CONTROLS.into_iter().filter(|op| allowed.contains(op)).collect();
    let idle = why.and_then(|w| w.idle_deadline);
    let lifetime = why.and_then(|w| w.lifetime_deadline);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(token) = ctx.csrf {
                    meta name="csrf-token" content=(token);
                }
                title { "Terminal · " (s.name) " · " (ws.name) " · BurstFlare" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                link rel="stylesheet" href=(XTERM_CSS_PATH);
                link rel="icon" type="image/svg+xml" href=(FAVICON_PATH);
                script src=(XTERM_JS_PATH) defer {}
                script src=(XTERM_FIT_JS_PATH) defer {}
                script src=(TERMINAL_JS_PATH) defer {}
            }
            body.terminal-page {
                a.skip-link href="#terminal" { "Skip to the terminal" }
                header.terminal-bar {
                    a.terminal-back href=(page) {
                        span aria-hidden="true" { "← " }
                        "Session"
                        span.visually-hidden { " page of " (s.name) }
                    }
                    h1.terminal-title { (s.name) }
                    span.session-status { (state_badge(&s.state)) }
                    span.terminal-meta {
                        (s.template) " " (version_label(&s.version))
                        " · " (s.owner.display_name)
                        @if mine { " " span.muted { "(you)" } }
                    }
                    @if !controls.is_empty() {
                        div.terminal-controls #terminal-controls {
                            @for op in &controls {
                                (control_form(ctx, &ws.slug, s, op, if *op == "start" { &here } else { &page }))
                            }
                        }
                    }
                    details.terminal-help {
                        summary { "Help" }
                        div.terminal-help-panel {
                            p {
                                "Copy: select text, then " kbd { "Ctrl+Shift+C" } " (" kbd { "⌘C" }
                                " on a Mac). Paste: " kbd { "Ctrl+Shift+V" } " (" kbd { "⌘V" }
                                ") or your browser's Paste. " kbd { "Ctrl+C" } " goes to the shell."
                            }
                            p {
                                "After a dropped connection the page reconnects to the same shell "
                                "for 5 minutes. Sleep, Stop and Restart end the shell."
                            }
                        }
                    }
                }
                div.terminal-notes {
                    span.terminal-status #terminal-status role="status" aria-live="polite"
                        data-state="connecting" { "Connecting…" }
                    button.button.small.primary #terminal-new-shell type="button" hidden {
                        "Start a new shell"
                    }
                    button.button.small.secondary #terminal-reconnect type="button" hidden {
                        "Reconnect"
                    }
                    span.terminal-idle #terminal-idle data-idle-deadline=[idle] {
                        span #terminal-idle-part hidden[idle.is_none()] {
                            "Sleeps if idle at "
                            span #terminal-idle-deadline {
                                @if let Some(ms) = idle { (time(ms)) }
                            }
                            span #terminal-idle-in {}
                            " · "
                        }
                        @if let Some(ms) = lifetime {
                            "Stops at " (time(ms)) " (maximum lifetime) · "
                        }
                        "Last active " span #terminal-last-active { (time_or(s.last_active_at, "never")) }
                    }
                }
                (flash(ctx.flash))
                main.terminal-main #main {
                    div.terminal-screen #terminal
                        data-terminal={ (api) "/terminal" } data-session=(api)
                        data-why={ (api) "/why" } data-session-id=(s.id) data-session-page=(page) {
                        noscript {
                            p.terminal-missing {
                                "The terminal needs JavaScript. Without it, use "
                                code { "flare ssh " (s.name) } "."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One control of the bar: a POST form like the session page's (CSRF token, `next`), hidden
/// while the session's state does not allow it; `terminal.js` shows and hides it as the state
/// changes (`data-states`).
fn control_form(
    ctx: &PageContext,
    ws_slug: &str,
    s: &sdk::SessionDetail,
    op: &str,
    next: &str,
) -> Markup {
    let states = control_states(op);
    let (class, label) = match op {
        "start" => ("button small primary", "Start"),
        "sleep" => ("button small secondary", "Sleep"),
        "stop" => ("button small secondary", "Stop"),
        _ => ("button small secondary", "Restart"),
    };
    html! {
        form method="post" action={ (session_path(ws_slug, &s.id)) "/" (op) } class="inline-form"
            data-session-op=(op) data-states=(states.join(" ")) hidden[!states.contains(&s.state.as_str())] {
            (csrf_field(ctx))
            input type="hidden" name="next" value=(next);
            button class=(class) type="submit" {
                (label) span.visually-hidden { " " (s.name) }
            }
        }
    }
}
