//! `/w/{slug}/settings`: what the workspace is, and renaming it.

use maud::{Markup, html};

use crate::components::role_badge;
use crate::{PageContext, csrf_field, encode_path_segment, layout_at};

/// `/w/{slug}/settings`. `can_manage` (owners and admins) shows the rename form, which posts
/// `name` to `/w/{slug}/settings`.
pub fn settings(ctx: &PageContext, ws: &sdk::WorkspaceSummary, can_manage: bool) -> Markup {
    let path = format!("/w/{}/settings", encode_path_segment(&ws.slug));
    let body = html! {
        div.page-head {
            h1 { "Settings" }
            p.lead { (ws.name) }
        }
        section.card aria-labelledby="ws-about-heading" {
            h2 #ws-about-heading { "Workspace" }
            dl.meta {
                dt { "Name" }
                dd { (ws.name) }
                dt { "Slug" }
                dd { code { (ws.slug) } " " span.muted { "(in addresses; it does not change)" } }
                dt { "Kind" }
                dd {
                    @if ws.personal { "Personal: yours alone, for as long as your account exists" }
                    @else { "Shared" }
                }
                dt { "Your role" }
                dd { (role_badge(&ws.role)) }
            }
        }
        @if can_manage {
            section.card aria-labelledby="ws-rename-heading" {
                h2 #ws-rename-heading { "Rename" }
                form method="post" action=(path) class="stack-form" {
                    (csrf_field(ctx))
                    div.field {
                        label for="ws-settings-name" { "Name" }
                        input type="text" id="ws-settings-name" name="name" required maxlength="100"
                            value=(ws.name) aria-describedby="ws-settings-name-hint";
                        p.hint #ws-settings-name-hint {
                            "Shown in the workspace switcher and on every page. The slug stays the same, so links keep working."
                        }
                    }
                    div.form-actions { button.button.primary type="submit" { "Save" } }
                }
            }
        } @else {
            p.muted { "Only owners and admins can change these settings." }
        }
    };
    layout_at(ctx, &path, &format!("Settings · {}", ws.name), body)
}
