//! `/w/{slug}/templates`: the template catalog sessions start from.

use maud::{Markup, html};

use crate::{PageContext, encode_path_segment, is_manager, layout_at, time};

/// `/w/{slug}/templates`: one card per template with its promoted version (or "not
/// promoted"), how many versions it has and whether it is archived; archived ones last.
pub fn templates(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    templates: &[sdk::TemplateSummary],
) -> Markup {
    let path = format!("/w/{}/templates", encode_path_segment(&ws.slug));
    let mut ordered: Vec<&sdk::TemplateSummary> = templates.iter().collect();
    // Stable: keeps the caller's order within the active and the archived ones.
    ordered.sort_by_key(|t| t.archived);
    let body = html! {
        div.page-head {
            h1 { "Templates" }
            p.lead { (ws.name) " · the environments sessions start from" }
        }
        @if ordered.is_empty() {
            section.card aria-labelledby="no-templates-heading" {
                h2 #no-templates-heading { "No templates yet" }
                div.empty-state {
                    p {
                        "Owners and admins of this workspace publish templates: a build turns each "
                        "version into an image, and promoting a version makes it the one new sessions use."
                    }
                    @if is_manager(&ws.role) {
                        p { "As an " (ws.role) ", you can publish the first one with the " code { "flare" } " CLI." }
                    } @else {
                        p { "Ask an owner or admin of this workspace to publish one." }
                    }
                }
            }
        } @else {
            ul.catalog {
                @for t in &ordered {
                    li {
                        article.card.template-card.archived[t.archived] {
                            h2 { (t.name) }
                            @if t.description.is_empty() {
                                p.muted { "No description." }
                            } @else {
                                p.description { (t.description) }
                            }
                            dl.meta {
                                dt { "Active version" }
                                dd {
                                    @match &t.active_version {
                                        Some(v) => span.badge.version { (v) },
                                        None => span.badge.unpromoted { "not promoted" },
                                    }
                                }
                                dt { "Versions" }
                                dd { (t.versions) }
                                dt { "Updated" }
                                dd { (time(t.updated_at)) }
                            }
                            @if t.archived {
                                p.archived-note { span.badge.archived { "archived" } " New sessions cannot start from it." }
                            }
                        }
                    }
                }
            }
        }
    };
    layout_at(ctx, &path, &format!("Templates · {}", ws.name), body)
}
