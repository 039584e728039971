//! `/w/{slug}/members`: members, their roles, invites and leaving the workspace.

use maud::{Markup, html};

use crate::components::{copy_box, role_badge};
use crate::{PageContext, csrf_field, encode_path_segment, layout_at, time};

/// Roles an invite or a role change can give. Owner is only offered by an owner.
const ASSIGNABLE_ROLES: [&str; 3] = ["admin", "member", "viewer"];

/// `/w/{slug}/members`. `can_manage` shows role changes, removals and invites; the created
/// invite link (shown once) appears in a copy box at the top.
pub fn members(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    members: &[sdk::MemberInfo],
    invites: &[sdk::InviteInfo],
    can_manage: bool,
    created_invite_link: Option<&str>,
) -> Markup {
    let slug = encode_path_segment(&ws.slug);
    let base = format!("/w/{slug}");
    let me = ctx.user.map(|u| u.id.as_str());
    let caller_is_owner = ws.role == "owner";
    let offered_roles: Vec<&str> = if caller_is_owner {
        std::iter::once("owner").chain(ASSIGNABLE_ROLES).collect()
    } else {
        ASSIGNABLE_ROLES.to_vec()
    };
    // Someone who manages may change everyone but themselves (they leave instead), and only
    // an owner may touch an owner.
    let controls_for = |m: &sdk::MemberInfo| {
        can_manage && Some(m.user.id.as_str()) != me && (m.role != "owner" || caller_is_owner)
    };
    let body = html! {
        div.page-head {
            h1 { "Members" }
            p.lead { (ws.name) " · your role: " (role_badge(&ws.role)) }
        }
        @if let Some(link) = created_invite_link.filter(|_| can_manage) {
            section.card.highlight aria-labelledby="invite-link-heading" {
                h2 #invite-link-heading { "Invite link" }
                p { strong { "Copy it now: it will not be shown again." }
                    " Send it to the person you invited; it works once, for their email address." }
                (copy_box("invite-link", "Invite link", link))
            }
        }
        section.card aria-labelledby="members-heading" {
            h2 #members-heading { "People in " (ws.name) }
            table.table.stack {
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Email" }
                    th scope="col" { "Role" }
                    th scope="col" { "Joined" }
                    @if can_manage { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for m in members {
                        @let uid = encode_path_segment(&m.user.id);
                        tr {
                            td data-label="Name" {
                                (m.user.display_name)
                                @if Some(m.user.id.as_str()) == me { " " span.muted { "(you)" } }
                            }
                            td data-label="Email" { (m.user.email) }
                            td data-label="Role" { (role_badge(&m.role)) }
                            td data-label="Joined" { (time(m.joined_at)) }
                            @if can_manage {
                                td data-label="Actions" {
                                    @if controls_for(m) {
                                        @let select_id = format!("role-{uid}");
                                        div.row-actions {
                                            form method="post" action={ (base) "/members/" (uid) "/role" } class="inline-form" {
                                                (csrf_field(ctx))
                                                label.visually-hidden for=(select_id) { "Role of " (m.user.display_name) }
                                                select id=(select_id) name="role" {
                                                    @for r in &offered_roles {
                                                        option value=(r) selected[*r == m.role] { (r) }
                                                    }
                                                }
                                                button.button.small.secondary type="submit" { "Change role" }
                                            }
                                            form method="post" action={ (base) "/members/" (uid) "/remove" } class="inline-form"
                                                data-confirm={ "Remove " (m.user.display_name) " from " (ws.name) "?" } {
                                                (csrf_field(ctx))
                                                button.button.small.danger type="submit" {
                                                    "Remove" span.visually-hidden { " " (m.user.display_name) }
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
        }
        @if can_manage {
            section.card aria-labelledby="invite-heading" {
                h2 #invite-heading { "Invite someone" }
                form method="post" action={ (base) "/invites" } class="stack-form" {
                    (csrf_field(ctx))
                    div.field-row {
                        div.field.grow {
                            label for="invite-email" { "Email" }
                            input type="email" id="invite-email" name="email" required maxlength="254"
                                autocomplete="off" spellcheck="false";
                        }
                        div.field {
                            label for="invite-role" { "Role" }
                            select id="invite-role" name="role" {
                                @for r in ASSIGNABLE_ROLES {
                                    option value=(r) selected[r == "member"] { (r) }
                                }
                            }
                        }
                        div.field {
                            label for="invite-expires" { "Expires in (days)" }
                            input type="number" id="invite-expires" name="expires_in_days" required
                                min="1" max="30" step="1" value="7" inputmode="numeric";
                        }
                    }
                    p.hint { "Admins manage members; members start sessions; viewers can only look." }
                    div.form-actions { button.button.primary type="submit" { "Create invite link" } }
                }
            }
            section.card aria-labelledby="invites-heading" {
                h2 #invites-heading { "Pending invites" }
                @if invites.is_empty() {
                    p.muted { "No pending invites." }
                } @else {
                    table.table.stack {
                        thead { tr {
                            th scope="col" { "Email" }
                            th scope="col" { "Role" }
                            th scope="col" { "Sent" }
                            th scope="col" { "Expires" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for i in invites {
                                tr {
                                    td data-label="Email" { (i.email) }
                                    td data-label="Role" { (role_badge(&i.role)) }
                                    td data-label="Sent" { (time(i.created_at)) }
                                    td data-label="Expires" { (time(i.expires_at)) }
                                    td data-label="Actions" {
                                        form method="post" action={ (base) "/invites/" (encode_path_segment(&i.id)) "/revoke" }
                                            class="inline-form" data-confirm={ "Revoke the invite for " (i.email) "?" } {
                                            (csrf_field(ctx))
                                            button.button.small.danger type="submit" {
                                                "Revoke" span.visually-hidden { " invite for " (i.email) }
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
        section.card aria-labelledby="leave-heading" {
            h2 #leave-heading { "Leave this workspace" }
            @if ws.personal {
                p.muted { "This is your personal workspace: it is yours for as long as your account exists." }
            } @else {
                p.muted { "You lose access to its sessions and templates until someone invites you again." }
                form method="post" action={ (base) "/leave" } class="inline-form"
                    data-confirm={ "Leave " (ws.name) "?" } {
                    (csrf_field(ctx))
                    button.button.danger type="submit" { "Leave workspace" }
                }
            }
        }
    };
    layout_at(ctx, &format!("{base}/members"), &format!("Members · {}", ws.name), body)
}
