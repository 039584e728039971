//! `/workspaces/new`: creating a workspace.

use maud::{Markup, html};

use crate::{PageContext, csrf_field, layout_at};

/// The form to create a workspace (POST `/workspaces`), with the previous attempt's error.
pub fn new_workspace(ctx: &PageContext, error: Option<&str>) -> Markup {
    let body = html! {
        section.card.narrow aria-labelledby="new-ws-heading" {
            h1 #new-ws-heading { "New workspace" }
            p.lead { "A workspace holds templates and sessions, and the people who share them." }
            @if let Some(e) = error {
                div.flash.error role="alert" { (e) }
            }
            form method="post" action="/workspaces" class="stack-form" {
                (csrf_field(ctx))
                div.field {
                    label for="ws-name" { "Name" }
                    input type="text" id="ws-name" name="name" required maxlength="100"
                        placeholder="Acme platform team";
                }
                div.field {
                    label for="ws-slug" { "Slug" }
                    input type="text" id="ws-slug" name="slug" required maxlength="48"
                        pattern="[a-z0-9-]{1,48}" placeholder="acme-platform"
                        title="Lowercase letters, digits and hyphens, at most 48"
                        autocapitalize="none" spellcheck="false" class="mono"
                        aria-describedby="ws-slug-hint";
                    p.hint #ws-slug-hint {
                        "Lowercase letters, digits and hyphens, at most 48. It appears in addresses: "
                        code { "/w/acme-platform" } "."
                    }
                }
                div.form-actions { button.button.primary type="submit" { "Create workspace" } }
            }
        }
    };
    layout_at(ctx, "/workspaces/new", "New workspace", body)
}
