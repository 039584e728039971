//! Small pieces shared by the pages: the CSRF field, times, URL encoding, badges and the
//! copy box for secrets shown once.

use maud::{Markup, html};

use crate::PageContext;

/// The hidden `csrf` input every POST form carries (nothing when the context has no token).
pub fn csrf_field(ctx: &PageContext) -> Markup {
    html! {
        @if let Some(token) = ctx.csrf {
            input type="hidden" name="csrf" value=(token);
        }
    }
}

/// A unix-milliseconds time as UTC `YYYY-MM-DD HH:MM`.
pub fn format_utc(ms: i64) -> String {
    let t = Civil::from_unix_ms(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute)
}

/// A unix-milliseconds time as an RFC 3339 UTC string (`YYYY-MM-DDTHH:MM:SSZ`), for
/// `<time datetime>`.
pub fn iso_utc(ms: i64) -> String {
    let t = Civil::from_unix_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `<time datetime="…Z">YYYY-MM-DD HH:MM UTC</time>`
pub fn time(ms: i64) -> Markup {
    html! { time datetime=(iso_utc(ms)) title="UTC" { (format_utc(ms)) } }
}

/// An optional time, or a muted word such as "never".
pub(crate) fn time_or(ms: Option<i64>, otherwise: &str) -> Markup {
    html! {
        @match ms {
            Some(ms) => (time(ms)),
            None => span.muted { (otherwise) },
        }
    }
}

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`: exact for the proleptic Gregorian calendar, no
    /// tables, no dependency.
    fn from_unix_ms(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self { year, month, day, hour: sod / 3600, minute: sod % 3600 / 60, second: sod % 60 }
    }
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters.
pub fn encode_path_segment(s: &str) -> String {
    percent_encode(s, |_| false)
}

/// Percent-encodes a query parameter value. `/` stays readable (RFC 3986 allows it in a
/// query), so `return_to=/invite/abc` reads as it is; `&`, `=`, `+`, `#`, `%` and spaces do not.
pub fn encode_query_value(s: &str) -> String {
    percent_encode(s, |b| b == b'/')
}

/// A `return_to` the pages may send the browser to: a path on this site. Rejects absolute
/// and protocol-relative URLs (`//evil`, `/\evil`, which browsers treat alike) and control
/// characters.
pub fn safe_return_to(s: &str) -> Option<&str> {
    let ok = s.starts_with('/')
        && !s.starts_with("//")
        && !s.contains('\\')
        && !s.chars().any(char::is_control);
    ok.then_some(s)
}

/// A workspace role as a colored badge. Unknown roles get the neutral style.
pub(crate) fn role_badge(role: &str) -> Markup {
    let class = match role {
        "owner" => "badge role-owner",
        "admin" => "badge role-admin",
        "member" => "badge role-member",
        "viewer" => "badge role-viewer",
        _ => "badge",
    };
    html! { span class=(class) { (role) } }
}

/// The session states a list hides unless asked to show ended sessions (and the dashboard
/// always hides): the same words `live.js` reads from `data-live-hide`.
pub(crate) const ENDED_STATES: [&str; 3] = ["stopped", "deleted", "failed"];

/// Whether a session has ended (stopped, deleted or failed).
pub(crate) fn has_ended(s: &sdk::SessionSummary) -> bool {
    ENDED_STATES.contains(&s.state.as_str())
}

/// A session state as a badge: `badge state state-{state}` (`state-unknown` for a word that
/// is not one of [`sdk::SESSION_STATES`]) with `data-state`, which `live.js` rewrites in place.
pub fn state_badge(state: &str) -> Markup {
    let known = sdk::SESSION_STATES.contains(&state);
    let class = format!("badge state state-{}", if known { state } else { "unknown" });
    html! { span class=(class) data-state=(state) { (state) } }
}

/// A build state as a badge: `badge build build-{state}` (`build-unknown` for a word that is
/// not one of [`sdk::BUILD_STATES`]) with `data-build-state`, which `build-log.js` rewrites in
/// place while a build runs.
pub fn build_badge(state: &str) -> Markup {
    let known = sdk::BUILD_STATES.contains(&state);
    let class = format!("badge build build-{}", if known { state } else { "unknown" });
    html! { span class=(class) data-build-state=(state) { (state) } }
}

/// A template version state as a badge: `badge vstate vstate-{state}` (`vstate-unknown` for a
/// word that is not one of [`sdk::VERSION_STATES`]).
pub fn version_badge(state: &str) -> Markup {
    let known = sdk::VERSION_STATES.contains(&state);
    let class = format!("badge vstate vstate-{}", if known { state } else { "unknown" });
    html! { span class=(class) { (state) } }
}

/// A version number as people read it: `3` → `v3`; anything else (an older `v1`) as it is.
pub fn version_label(version: &str) -> String {
    if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
        format!("v{version}")
    } else {
        version.to_string()
    }
}

/// The first `n` characters of `s` (a digest or a hash), whole if it is shorter.
pub(crate) fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// A duration in milliseconds, coarse: `0s`, `42s`, `3m 05s`, `2h 07m`. Negative ones are `0s`.
pub fn format_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// `s` as one word for a POSIX shell: as it is when it is plainly safe, else single-quoted.
pub(crate) fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !s.starts_with('-');
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// A command to copy, in a monospace box with a copy button (turned on by the script).
pub(crate) fn command_box(id: &str, label: &str, command: &str) -> Markup {
    html! {
        div.command-box {
            pre.command id=(id) aria-label=(label) { code { (command) } }
            button.button.small.secondary type="button" data-copy=(id) hidden { "Copy" }
            span.copy-status role="status" aria-live="polite" {}
        }
    }
}

/// A byte count in binary units, one decimal from KiB on: `0 B`, `999 B`, `1.5 KiB`, `2.0 GiB`.
/// Negative counts show as `0 B`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let bytes = u64::try_from(bytes).unwrap_or(0);
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, in integers: no float rounding surprises at the boundaries.
    let mut unit = 0;
    let mut div: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) * 10 / div >= 1024 * 10 - 5 {
        unit += 1;
        div *= 1024;
    }
    let tenths = (u128::from(bytes) * 10 + div / 2) / div;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// An integer with thousands separators: `1,234,567`.
pub fn format_count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The "Updating…" / "not refreshed" indicator of a `data-live` region; `live.js` toggles
/// the region's `is-updating` and `is-stale` classes and the stylesheet shows the matching
/// text. Without the script neither shows.
pub(crate) fn live_status() -> Markup {
    html! {
        span.live-status {
            span.live-updating { "Updating…" }
            span.live-stale { "Could not refresh: showing the last known state." }
        }
    }
}

/// What the viewer may do to sessions, from the workspace policy: the api crate fills it in
/// (`UseSessions`, `ManageAnySession`); the pages decide per session which buttons to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionRights {
    /// Create sessions and control one's own (members and up).
    pub use_sessions: bool,
    /// Stop and delete other people's sessions too (owners and admins).
    pub manage_any: bool,
}

/// The session controls, in the order the pages show them: the [`sdk::SESSION_OPS`] and
/// `delete`.
pub const SESSION_CONTROLS: [&str; 5] = ["start", "stop", "sleep", "restart", "delete"];

/// The states in which control `op` is offered: Start for a sleeping or stopped session; Stop,
/// Sleep and Restart for a running one; Delete unless it is being deleted or gone.
pub fn control_states(op: &str) -> &'static [&'static str] {
    match op {
        "start" => &["sleeping", "stopped"],
        "stop" | "sleep" | "restart" => &["running"],
        "delete" => {
            &["provisioning", "starting", "running", "sleeping", "stopping", "stopped", "failed"]
        }
        _ => &[],
    }
}

/// The controls the viewer may ever use on a session, whatever its state: all of them on
/// their own sessions (with `UseSessions`), Stop and Delete on other people's (with
/// `ManageAnySession` too), none otherwise.
pub fn controls_for_owner(rights: SessionRights, mine: bool) -> &'static [&'static str] {
    match (rights.use_sessions, mine, rights.manage_any) {
        (false, _, _) => &[],
        (true, true, _) => &SESSION_CONTROLS,
        (true, false, true) => &["stop", "delete"],
        (true, false, false) => &[],
    }
}

/// The controls shown for a session in `state` owned by someone (`mine`: the viewer).
pub fn session_controls(state: &str, rights: SessionRights, mine: bool) -> Vec<&'static str> {
    controls_for_owner(rights, mine)
        .iter()
        .copied()
        .filter(|op| control_states(op).contains(&state))
        .collect()
}

/// `/w/{slug}/sessions/{id}`, percent-encoded.
pub fn session_path(ws_slug: &str, id: &str) -> String {
    format!("/w/{}/sessions/{}", encode_path_segment(ws_slug), encode_path_segment(id))
}

fn control_label(op: &str) -> &'static str {
    match op {
        "start" => "Start",
        "stop" => "Stop",
        "sleep" => "Sleep",
        "restart" => "Restart",
        _ => "Delete",
    }
}

/// The control forms of one session: a small POST form per control the viewer may ever use
/// (`…/sessions/{id}/{op}`, with the CSRF token and `next`, the page to come back to). Those
/// that do not apply to its current `state` are rendered `hidden`; each form's `data-states`
/// lists the states it applies to, so the scripts show and hide them as the state changes.
/// `large` makes page-sized buttons (the session page) instead of small ones (a table row).
pub(crate) fn session_control_forms(
    ctx: &PageContext,
    ws_slug: &str,
    s: (&str, &str, &str),
    owner_id: &str,
    rights: SessionRights,
    next: &str,
    large: bool,
) -> Markup {
    let (id, name, state) = s;
    let mine = ctx.user.is_some_and(|u| u.id == owner_id);
    let base = session_path(ws_slug, id);
    html! {
        @for op in controls_for_owner(rights, mine) {
            @let states = control_states(op);
            @let class = match (*op, large) {
                ("delete", true) => "button danger",
                ("delete", false) => "button small danger",
                ("start", true) => "button primary",
                (_, true) => "button secondary",
                (_, false) => "button small secondary",
            };
            form method="post" action={ (base) "/" (op) } class="inline-form"
                data-session-op=(op) data-states=(states.join(" ")) hidden[!states.contains(&state)]
                data-confirm=[(*op == "delete").then(|| format!(
                    "Delete the session {name}? Its container and everything not in a persisted path are removed."
                ))] {
                (csrf_field(ctx))
                input type="hidden" name="next" value=(next);
                button class=(class) type="submit" {
                    (control_label(op)) span.visually-hidden { " " (name) }
                }
            }
        }
    }
}

/// Where a session table's rows send their control forms back to, and what the viewer may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowControls<'a> {
    pub rights: SessionRights,
    /// The page the forms come back to (`next`).
    pub next: &'a str,
}

/// The columns a session table shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionColumns<'a> {
    /// Name, template, owner, state, last active (the dashboard).
    Compact,
    /// Also when it was created (the sessions page), and the controls of each row for a
    /// viewer who may use sessions (an "Actions" column).
    Full(RowControls<'a>),
}

/// A table of sessions of workspace `ws_slug` (each name links to the session's page, each
/// template name to its page), refreshed by `live.js` from `live_url`: every row has
/// `data-session-id`, every state badge `data-state`; `hide` lists the states the page left
/// out, so the script can tell a session that ended from one that appeared. The table scrolls
/// horizontally inside its wrapper on narrow screens.
pub(crate) fn session_table(
    ctx: &PageContext,
    ws_slug: &str,
    caption: &str,
    live_url: &str,
    hide: &str,
    sessions: &[&sdk::SessionSummary],
    columns: SessionColumns,
) -> Markup {
    let me = ctx.user.map(|u| u.id.as_str());
    let full = matches!(columns, SessionColumns::Full(_));
    // A column for the buttons only when the viewer may have some.
    let controls = match columns {
        SessionColumns::Full(c) if c.rights.use_sessions => Some(c),
        _ => None,
    };
    html! {
        div.table-scroll role="region" aria-label=(caption) tabindex="0" {
            table.table.sessions data-live=(live_url) data-live-hide=(hide) {
                caption {
                    span.visually-hidden { (caption) }
                    (live_status())
                }
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Template" }
                    th scope="col" { "Owner" }
                    th scope="col" { "State" }
                    @if full { th scope="col" { "Created" } }
                    th scope="col" { "Last active" }
                    @if controls.is_some() { th scope="col" { "Actions" } }
                } }
                tbody {
                    @for s in sessions {
                        tr data-session-id=(s.id) {
                            th scope="row" { a href=(session_path(ws_slug, &s.id)) { (s.name) } }
                            td {
                                a href={ "/w/" (encode_path_segment(ws_slug)) "/templates/" (encode_path_segment(&s.template)) } {
                                    (s.template)
                                }
                            }
                            td {
                                (s.owner.display_name)
                                @if Some(s.owner.id.as_str()) == me { " " span.muted { "(you)" } }
                            }
                            td { (state_badge(&s.state)) }
                            @if full { td { (time(s.created_at)) } }
                            td { (time_or(s.last_active_at, "never")) }
                            @if let Some(c) = controls {
                                td {
                                    div.row-actions.session-actions {
                                        (session_control_forms(
                                            ctx,
                                            ws_slug,
                                            (&s.id, &s.name, &s.state),
                                            &s.owner.id,
                                            c.rights,
                                            c.next,
                                            false,
                                        ))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An empty list that `live.js` still watches: when a session appears, the page reloads.
pub(crate) fn live_empty_state(live_url: &str, hide: &str, body: Markup) -> Markup {
    html! {
        div.empty-state data-live=(live_url) data-live-hide=(hide) {
            (body)
            (live_status())
        }
    }
}

/// A secret shown once, in a monospace box with a copy button. The button is `hidden`
/// until the script turns it on, so nothing dead shows without JavaScript.
pub(crate) fn copy_box(id: &str, label: &str, content: &str) -> Markup {
    html! {
        div.secret-box {
            pre.secret id=(id) aria-label=(label) { (content) }
            div.secret-actions {
                button.button.small.secondary type="button" data-copy=(id) hidden { "Copy" }
                span.copy-status role="status" aria-live="polite" {}
            }
        }
    }
}

/// A short name for a browser from its user agent, e.g. "Firefox on Linux".
pub(crate) fn describe_user_agent(ua: &str) -> String {
    // Order matters: Edge and Opera say "Chrome", Chrome says "Safari".
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("flare/", "flare CLI"),
    ]
    .into_iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => "Unknown device".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(iso_utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(format_utc(951_868_799_999), "2000-02-29 23:59");
        assert_eq!(format_utc(1_709_251_199_000), "2024-02-29 23:59");
        assert_eq!(format_utc(-1), "1969-12-31 23:59");
        assert_eq!(format_utc(253_402_300_799_000), "9999-12-31 23:59");
        // Extreme values do not overflow.
        let _ = format_utc(i64::MIN);
        let _ = format_utc(i64::MAX);
    }

    #[test]
    fn the_time_element_carries_a_machine_readable_datetime() {
        assert_eq!(
            time(0).into_string(),
            r#"<time datetime="1970-01-01T00:00:00Z" title="UTC">1970-01-01 00:00</time>"#
        );
    }

    #[test]
    fn query_values_and_path_segments_are_percent_encoded() {
        assert_eq!(encode_query_value("a b&c=d+e#f%/g"), "a%20b%26c%3Dd%2Be%23f%25/g");
        assert_eq!(encode_path_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode_query_value("é"), "%C3%A9");
        assert_eq!(encode_path_segment("abc-DEF_1.2~"), "abc-DEF_1.2~");
    }

    #[test]
    fn only_local_paths_are_safe_return_targets() {
        assert_eq!(safe_return_to("/invite/abc"), Some("/invite/abc"));
        assert_eq!(safe_return_to("/"), Some("/"));
        for bad in
            ["//evil.example", "/\\evil.example", "https://evil.example", "", "evil", "/a\nb"]
        {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bytes_and_counts_are_human_readable() {
        assert_eq!(human_bytes(-5), "0 B");
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(i64::MAX), "8.0 EiB");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(-1_234_567), "-1,234,567");
        assert_eq!(format_count(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn state_badges_carry_a_class_per_state() {
        for state in sdk::SESSION_STATES {
            assert_eq!(
                state_badge(state).into_string(),
                format!(
                    r#"<span class="badge state state-{state}" data-state="{state}">{state}</span>"#
                )
            );
        }
        let odd = state_badge("x\" y").into_string();
        assert!(odd.contains(r#"class="badge state state-unknown""#), "{odd}");
        assert!(odd.contains("data-state=\"x&quot; y\""), "{odd}");
    }

    #[test]
    fn user_agents_are_summarised() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_user_agent(firefox), "Firefox on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(describe_user_agent(edge), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_user_agent(iphone), "Safari on iOS");
        assert_eq!(describe_user_agent("something"), "Unknown device");
    }
}
