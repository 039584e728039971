//! `/invite/{token}`: what an invitation is for, and accepting it.

use maud::{Markup, html};

use crate::components::role_badge;
use crate::{PageContext, csrf_field, encode_path_segment, encode_query_value, layout};

fn role_meaning(role: &str) -> &'static str {
    match role {
        "owner" => "Owners manage everything, including the workspace itself.",
        "admin" => "Admins manage members, invites and templates, and start sessions.",
        "member" => "Members start and use sessions from the workspace's templates.",
        "viewer" => "Viewers can look at the workspace but not change it.",
        _ => "",
    }
}

/// `/invite/{token}`: signed in, an accept button; signed out, links to sign in or sign up
/// that come back here.
pub fn invite(
    ctx: &PageContext,
    ws_name: &str,
    role: &str,
    token: &str,
    signed_in: bool,
) -> Markup {
    let here = format!("/invite/{}", encode_path_segment(token));
    let back = encode_query_value(&here);
    let body = html! {
        section.card.narrow aria-labelledby="invite-heading" {
            h1 #invite-heading { "Join " (ws_name) }
            p.lead {
                "You have been invited to the workspace “" (ws_name) "” as " (role_badge(role)) "."
            }
            @let meaning = role_meaning(role);
            @if !meaning.is_empty() { p { (meaning) } }
            @if signed_in {
                @if let Some(user) = ctx.user {
                    p.muted { "You will join as " strong { (user.display_name) } " (" (user.email) ")." }
                }
                form method="post" action={ (here) "/accept" } class="inline-form" {
                    (csrf_field(ctx))
                    button.button.primary type="submit" { "Accept invitation" }
                }
                " "
                a.button.linklike href="/" { "Not now" }
            } @else {
                p { "Sign in, or create an account with the invited email address, to accept." }
                p.actions {
                    a.button.primary href={ "/signin?return_to=" (back) } { "Sign in to accept" }
                    a.button.secondary href={ "/signup?return_to=" (back) } { "Create an account" }
                }
            }
        }
    };
    layout(ctx, &format!("Join {ws_name}"), body)
}
