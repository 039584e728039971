//! Server-rendered pages (maud): the layout, components and pages. Every page is a
//! function of `sdk` types, the same ones the JSON API returns, plus a [`PageContext`] that
//! says who is looking. Nothing here does I/O; the api crate wires pages to routes.

use maud::{DOCTYPE, Markup, PreEscaped, html};

pub mod components;
pub mod pages;

pub use components::{
    csrf_field, encode_path_segment, encode_query_value, format_utc, iso_utc, safe_return_to, time,
};

/// The stylesheet, embedded in the binary and served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../assets/app.css");
/// Path of the stylesheet; the version makes browsers refetch it after an upgrade.
pub const STYLESHEET_PATH: &str = concat!("/assets/app-", env!("CARGO_PKG_VERSION"), ".css");

/// The passkey ceremony script (plain ES2020), embedded and served at [`PASSKEYS_JS_PATH`].
/// It also turns on the copy buttons and the confirmations of destructive forms; every page
/// works without it except the passkey ceremonies themselves.
pub const PASSKEYS_JS: &str = include_str!("../assets/passkeys.js");
/// Path of the script; versioned like the stylesheet.
pub const PASSKEYS_JS_PATH: &str = concat!("/assets/passkeys-", env!("CARGO_PKG_VERSION"), ".js");

/// The live-update script (plain ES2020), embedded and served at [`LIVE_JS_PATH`]. It
/// refreshes the state badges of every `[data-live]` session table every 5 s while the tab is
/// visible (reloading when sessions come or go) and closes the account menu on Escape or an
/// outside click. Every page works without it.
pub const LIVE_JS: &str = include_str!("../assets/live.js");
/// Path of the live-update script; versioned like the stylesheet.
pub const LIVE_JS_PATH: &str = concat!("/assets/live-", env!("CARGO_PKG_VERSION"), ".js");

/// The build log script (plain ES2020), embedded and served at [`BUILD_LOG_JS_PATH`]. Loaded
/// only by the build page while its log is incomplete: it polls the build's JSON log every
/// second, appends the new text and keeps the status badge, the error and the retry/cancel
/// buttons current. The page works without it (a Reload link shows the log so far).
pub const BUILD_LOG_JS: &str = include_str!("../assets/build-log.js");
/// Path of the build log script; versioned like the stylesheet.
pub const BUILD_LOG_JS_PATH: &str = concat!("/assets/build-log-", env!("CARGO_PKG_VERSION"), ".js");

/// The session page script (plain ES2020), embedded and served at [`SESSION_JS_PATH`].
/// Loaded only by a session's page until the session is deleted: every 2 s it appends the
/// session's new events and keeps the state badge, the error, the times and the controls in
/// step with the session's JSON. The page works without it (a Reload link shows more).
pub const SESSION_JS: &str = include_str!("../assets/session.js");
/// Path of the session page script; versioned like the stylesheet.
pub const SESSION_JS_PATH: &str = concat!("/assets/session-", env!("CARGO_PKG_VERSION"), ".js");

/// The promotion script (plain ES2020), embedded and served at [`PROMOTION_JS_PATH`]. Loaded
/// only by a template's page while a promotion of it runs: every 1.5 s it keeps the run's
/// status, step, error and rollout per host current, and reloads the page once the run ends.
pub const PROMOTION_JS: &str = include_str!("../assets/promotion.js");
/// Path of the promotion script; versioned like the stylesheet.
pub const PROMOTION_JS_PATH: &str = concat!("/assets/promotion-", env!("CARGO_PKG_VERSION"), ".js");

/// The browser terminal's script (plain ES2020), embedded and served at [`TERMINAL_JS_PATH`].
/// Loaded only by the terminal page, after xterm.js: it opens the session's terminal
/// WebSocket, carries keystrokes and output, resizes the shell with the page, and reconnects
/// after a drop (to the same shell, named by a per-tab id in `sessionStorage`) until the shell
/// exits or the session stops running.
pub const TERMINAL_JS: &str = include_str!("../assets/terminal.js");
/// Path of the terminal script; versioned like the stylesheet.
pub const TERMINAL_JS_PATH: &str = concat!("/assets/terminal-", env!("CARGO_PKG_VERSION"), ".js");

/// xterm.js (npm `@xterm/xterm`, a UMD build defining `window.Terminal`), installed into
/// `web/vendor/node_modules` by `make setup` and embedded by `build.rs`. Built without it, this
/// is a placeholder that says so on the terminal page (see [`XTERM_INSTALLED`]).
pub const XTERM_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.js"));
/// Path of xterm.js: versioned by the library's own version.
pub const XTERM_JS_PATH: &str =
    concat!("/assets/vendor/xterm-", env!("BURSTFLARE_XTERM_VERSION"), ".js");
/// xterm.js's stylesheet (`@xterm/xterm/css/xterm.css`).
pub const XTERM_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/xterm.css"));
/// Path of xterm.js's stylesheet; versioned like the library.
pub const XTERM_CSS_PATH: &str =
    concat!("/assets/vendor/xterm-", env!("BURSTFLARE_XTERM_VERSION"), ".css");
/// xterm.js's fit addon (npm `@xterm/addon-fit`, UMD: `window.FitAddon.FitAddon`): sizes the
/// terminal to its element.
pub const XTERM_FIT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/addon-fit.js"));
/// Path of the fit addon; versioned by its own version.
pub const XTERM_FIT_JS_PATH: &str =
    concat!("/assets/vendor/addon-fit-", env!("BURSTFLARE_XTERM_FIT_VERSION"), ".js");
/// The version of xterm.js embedded, or `missing`.
pub const XTERM_VERSION: &str = env!("BURSTFLARE_XTERM_VERSION");
/// Whether xterm.js was installed when this crate was built (else [`XTERM_JS`] is the
/// placeholder).
pub const XTERM_INSTALLED: bool = matches!(env!("BURSTFLARE_XTERM_INSTALLED").as_bytes(), b"1");

/// The site icon (the logo's bolt), so browsers do not ask for a missing `/favicon.ico`.
pub const FAVICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path fill="#f06a1d" d="M13 2 4 14h6l-1 8 9-12h-6z"/></svg>"##;
pub const FAVICON_PATH: &str = "/assets/favicon.svg";

/// The bot-check (Cloudflare Turnstile) script, loaded only when a site key is configured.
pub const TURNSTILE_JS_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/api.js";

/// Who is looking at a page, and what the frame around it shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageContext<'a> {
    /// The signed-in user; `None` shows the signed-out navigation.
    pub user: Option<&'a sdk::UserInfo>,
    /// The user's workspaces, for the switcher.
    pub workspaces: &'a [sdk::WorkspaceSummary],
    /// The workspace the navigation links point into.
    pub current_workspace: Option<&'a sdk::WorkspaceSummary>,
    /// The CSRF token: rendered as `<meta name="csrf-token">` (for the script's `X-CSRF-Token`)
    /// and as a hidden `csrf` input in every POST form.
    pub csrf: Option<&'a str>,
    /// A one-time message from the previous request (post/redirect/get).
    pub flash: Option<Flash<'a>>,
    /// When set, sign-up and sign-in forms carry the Turnstile widget and its script is loaded.
    pub bot_check_site_key: Option<&'a str>,
    /// Signed in with a recovery code: a banner asks for a new passkey on every page.
    pub must_add_passkey: bool,
}

impl<'a> PageContext<'a> {
    /// The workspace navigation points into: the current one, else the first one.
    pub fn nav_workspace(&self) -> Option<&'a sdk::WorkspaceSummary> {
        self.current_workspace.or_else(|| self.workspaces.first())
    }
}

/// A one-time message shown at the top of the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flash<'a> {
    pub kind: FlashKind,
    pub message: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Error,
}

/// The page frame shared by every page: head, navigation, banners, flash message, footer.
/// No navigation link is marked as the current page; see [`layout_at`].
pub fn layout(ctx: &PageContext, title: &str, body: Markup) -> Markup {
    frame(ctx, None, title, body)
}

/// [`layout`] for a page at `current_path` (e.g. `/w/acme/sessions`, slug percent-encoded as
/// the navigation writes it): the navigation link to exactly that path gets
/// `aria-current="page"`.
pub fn layout_at(ctx: &PageContext, current_path: &str, title: &str, body: Markup) -> Markup {
    frame(ctx, Some(current_path), title, body)
}

fn frame(ctx: &PageContext, current: Option<&str>, title: &str, body: Markup) -> Markup {
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
                title { (title) " · BurstFlare" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                link rel="icon" type="image/svg+xml" href=(FAVICON_PATH);
                script src=(PASSKEYS_JS_PATH) defer {}
                script src=(LIVE_JS_PATH) defer {}
                @if ctx.bot_check_site_key.is_some() {
                    script src=(TURNSTILE_JS_URL) async defer {}
                }
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                (navigation(ctx, current))
                @if ctx.must_add_passkey {
                    div.banner.warning role="region" aria-label="Account security" {
                        div.banner-inner {
                            strong { "Add a passkey." }
                            " You signed in with a recovery code. Add a passkey now so you can sign in next time. "
                            a href="/account#passkeys" { "Add a passkey" }
                        }
                    }
                }
                main.container #main tabindex="-1" {
                    (flash(ctx.flash))
                    (body)
                }
                footer.footer { "BurstFlare " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

fn flash(flash: Option<Flash>) -> Markup {
    html! {
        @if let Some(f) = flash {
            @match f.kind {
                FlashKind::Success => {
                    div.flash.success role="status" aria-live="polite" { (f.message) }
                }
                FlashKind::Error => {
                    div.flash.error role="alert" { (f.message) }
                }
            }
        }
    }
}

/// Owners and admins manage a workspace: they see its audit log and settings.
pub(crate) fn is_manager(role: &str) -> bool {
    matches!(role, "owner" | "admin")
}

fn nav_link(href: &str, label: &str, current: Option<&str>) -> Markup {
    let here = (current == Some(href)).then_some("page");
    html! { li { a href=(href) aria-current=[here] { (label) } } }
}

fn navigation(ctx: &PageContext, current: Option<&str>) -> Markup {
    let ws = ctx.nav_workspace();
    html! {
        header.topbar {
            a.brand href="/" { (PreEscaped(LOGO)) span { "BurstFlare" } }
            nav.nav aria-label="Main" {
                @if let Some(user) = ctx.user {
                    @if !ctx.workspaces.is_empty() {
                        form.switcher method="get" action="/switch" {
                            label.visually-hidden for="ws-switch" { "Workspace" }
                            select #ws-switch name="ws" {
                                @for w in ctx.workspaces {
                                    option value=(w.slug) selected[ws.is_some_and(|c| c.id == w.id)] {
                                        (w.name) " (" (w.slug) ")"
                                    }
                                }
                            }
                            button.button.small.secondary type="submit" { "Switch" }
                        }
                    }
                    @if let Some(w) = ws {
                        @let base = format!("/w/{}", encode_path_segment(&w.slug));
                        ul.nav-links.ws-links {
                            (nav_link(&base, "Dashboard", current))
                            (nav_link(&format!("{base}/sessions"), "Sessions", current))
                            (nav_link(&format!("{base}/templates"), "Templates", current))
                            (nav_link(&format!("{base}/members"), "Members", current))
                            @if is_manager(&w.role) {
                                (nav_link(&format!("{base}/audit"), "Audit log", current))
                                (nav_link(&format!("{base}/settings"), "Settings", current))
                            }
                        }
                    }
                    details.menu {
                        summary {
                            span.avatar aria-hidden="true" { (initial(&user.display_name)) }
                            span.visually-hidden { "Account menu: " }
                            span.menu-name { (user.display_name) }
                        }
                        div.menu-panel {
                            p.menu-who {
                                strong { (user.display_name) }
                                span.muted { (user.email) }
                            }
                            ul.menu-links {
                                (nav_link("/account", "Account", current))
                                (nav_link("/workspaces/new", "New workspace", current))
                            }
                            form method="post" action="/signout" class="inline-form" {
                                (csrf_field(ctx))
                                button.linklike type="submit" { "Sign out" }
                            }
                        }
                    }
                } @else {
                    ul.nav-links {
                        li { a href="/signin" { "Sign in" } }
                        li { a.button.small.primary href="/signup" { "Sign up" } }
                    }
                }
            }
        }
    }
}

/// The first letter of a name, upper-cased, for the account menu's avatar.
fn initial(name: &str) -> String {
    name.trim().chars().next().map_or_else(|| "?".to_string(), |c| c.to_uppercase().collect())
}

const LOGO: &str = r#"<svg aria-hidden="true" width="22" height="22" viewBox="0 0 24 24"><path fill="currentColor" d="M13 2 4 14h6l-1 8 9-12h-6z"/></svg>"#;

/// A status badge: `ok` is green, anything else is shown as an error.
pub fn status_badge(value: &str) -> Markup {
    let class = if value == "ok" { "badge ok" } else { "badge error" };
    let text = if value == "ok" { "ok" } else { "failing" };
    html! { span class=(class) { (text) } }
}
