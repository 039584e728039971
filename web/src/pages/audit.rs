//! `/w/{slug}/audit`: the workspace's audit log, newest first, filtered and paged by links.

use maud::{Markup, html};

use crate::{PageContext, encode_path_segment, encode_query_value, layout_at, time};

/// `/w/{slug}/audit`. The "Older" link asks for `before={page.next}` with the same filters.
pub fn audit(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    page: &sdk::AuditPage,
    filter_action: Option<&str>,
    filter_actor: Option<&str>,
) -> Markup {
    let path = format!("/w/{}/audit", encode_path_segment(&ws.slug));
    let action = filter_action.filter(|s| !s.is_empty());
    let actor = filter_actor.filter(|s| !s.is_empty());
    let filtered = action.is_some() || actor.is_some();
    let older = page.next.as_deref().map(|before| older_href(&path, before, action, actor));
    let body = html! {
        div.page-head {
            h1 { "Audit log" }
            p.lead { (ws.name) " · every change, who made it and from where" }
        }
        section.card aria-labelledby="audit-filter-heading" {
            h2 #audit-filter-heading .visually-hidden { "Filter" }
            form method="get" action=(path) class="filter-form" role="search" {
                div.field-row {
                    div.field.grow {
                        label for="audit-action" { "Action" }
                        input type="text" id="audit-action" name="action" value=[action]
                            placeholder="member.role_changed" spellcheck="false";
                    }
                    div.field.grow {
                        label for="audit-actor" { "Actor" }
                        input type="text" id="audit-actor" name="actor" value=[actor]
                            placeholder="user id or email" spellcheck="false";
                    }
                    div.field.field-buttons {
                        button.button.secondary type="submit" { "Filter" }
                        @if filtered { a.button.linklike href=(path) { "Clear" } }
                    }
                }
            }
        }
        section.card aria-labelledby="audit-events-heading" {
            h2 #audit-events-heading { "Events" }
            @if page.events.is_empty() {
                p.muted {
                    @if filtered { "No events match these filters." } @else { "No events yet." }
                }
            } @else {
                table.table.stack.audit {
                    thead { tr {
                        th scope="col" { "Time" }
                        th scope="col" { "Actor" }
                        th scope="col" { "Action" }
                        th scope="col" { "Target" }
                        th scope="col" { "IP address" }
                        th scope="col" { "User agent" }
                    } }
                    tbody {
                        @for e in &page.events {
                            tr {
                                td data-label="Time" { (time(e.at)) }
                                td data-label="Actor" {
                                    @match &e.actor { Some(a) => (a), None => span.muted { "system" } }
                                }
                                td data-label="Action" {
                                    code { (e.action) }
                                    @if !(e.detail.is_null() || e.detail.as_object().is_some_and(|o| o.is_empty())) {
                                        details.event-detail {
                                            summary { "Details" }
                                            pre { (format!("{:#}", e.detail)) }
                                        }
                                    }
                                }
                                td data-label="Target" {
                                    @match (&e.target_kind, &e.target_id) {
                                        (Some(k), Some(id)) => { (k) " " code { (id) } },
                                        (Some(k), None) => (k),
                                        (None, Some(id)) => code { (id) },
                                        (None, None) => span.muted { "—" },
                                    }
                                }
                                td data-label="IP address" {
                                    @match &e.ip { Some(ip) => code { (ip) }, None => span.muted { "—" } }
                                }
                                td.detail data-label="User agent" {
                                    @match &e.user_agent { Some(ua) => (ua), None => span.muted { "—" } }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = older {
                nav.pager aria-label="Audit log pages" {
                    a.button.secondary href=(href) rel="next" { "Older" }
                }
            }
        }
    };
    layout_at(ctx, &path, &format!("Audit log · {}", ws.name), body)
}

fn older_href(path: &str, before: &str, action: Option<&str>, actor: Option<&str>) -> String {
    let mut href = format!("{path}?before={}", encode_query_value(before));
    if let Some(a) = action {
        href.push_str("&action=");
        href.push_str(&encode_query_value(a));
    }
    if let Some(a) = actor {
        href.push_str("&actor=");
        href.push_str(&encode_query_value(a));
    }
    href
}
