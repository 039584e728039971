//! `/device`: approving (or denying) a `flare auth login` from the browser (RFC 8628).

use maud::{Markup, html};

use crate::{PageContext, csrf_field, layout, time};

/// What the device page shows.
#[derive(Debug, Clone, Copy)]
pub enum DeviceView<'a> {
    /// Type the code the CLI printed.
    Enter { error: Option<&'a str> },
    /// A pending login found: which client, from where, asking for what.
    Confirm { code: &'a str, client_name: &'a str, ip: Option<&'a str>, created_at: i64 },
    /// Decided.
    Done { approved: bool },
}

pub fn device(ctx: &PageContext, view: DeviceView) -> Markup {
    let body = html! {
        section.card.narrow aria-labelledby="device-heading" {
            h1 #device-heading { "Sign in the CLI" }
            @match view {
                DeviceView::Enter { error } => {
                    p.lead { "Enter the code that " code { "flare auth login" } " printed." }
                    @if let Some(e) = error { p.flash.error role="alert" { (e) } }
                    form method="get" action="/device" {
                        label for="device-code" { "Code" }
                        input #device-code type="text" name="code" required autocomplete="off"
                            autocapitalize="characters" spellcheck="false" placeholder="XXXX-XXXX" maxlength="9";
                        button.button.primary type="submit" { "Continue" }
                    }
                }
                DeviceView::Confirm { code, client_name, ip, created_at } => {
                    p.lead { "A command-line client asks to act as you, with your roles in all your workspaces." }
                    dl.facts {
                        dt { "Code" } dd { code { (code) } }
                        dt { "Client" } dd { (client_name) }
                        dt { "From IP address" } dd { (ip.unwrap_or("unknown")) }
                        dt { "Asked at" } dd { (time(created_at)) }
                    }
                    p { "Approve only if you started " code { "flare auth login" } " yourself and the code matches." }
                    div.actions {
                        form method="post" action="/device/approve" class="inline-form" {
                            (csrf_field(ctx))
                            input type="hidden" name="code" value=(code);
                            button.button.primary type="submit" { "Approve" }
                        }
                        " "
                        form method="post" action="/device/deny" class="inline-form" {
                            (csrf_field(ctx))
                            input type="hidden" name="code" value=(code);
                            button.button.danger type="submit" { "Deny" }
                        }
                    }
                }
                DeviceView::Done { approved } => {
                    @if approved {
                        p.lead { "Approved. Go back to your terminal: " code { "flare" } " is signed in." }
                    } @else {
                        p.lead { "Denied. The CLI was not signed in." }
                    }
                    p { a href="/account#cli" { "Manage CLI sessions" } }
                }
            }
        }
    };
    layout(ctx, "Sign in the CLI", body)
}
