//! `/account`: passkeys, browser sessions, API tokens, SSH keys, CLI sessions and recovery codes
//! of the signed-in user.

use maud::{Markup, html};

use super::auth::passkey_status;
use crate::components::{copy_box, describe_user_agent, time_or};
use crate::{PageContext, csrf_field, encode_path_segment, layout_at, time};

/// A secret the server shows once, right after creating it.
#[derive(Debug, Clone, Copy)]
pub enum ShownOnce<'a> {
    /// A new API token and its secret.
    Token { name: &'a str, secret: &'a str },
    /// A new set of recovery codes.
    RecoveryCodes(&'a [String]),
}

/// `/account`. Times are unix milliseconds.
#[allow(clippy::too_many_arguments)] // One list per section; a struct would only rename them.
pub fn account(
    ctx: &PageContext,
    passkeys: &[sdk::PasskeyInfo],
    sessions: &[sdk::BrowserSessionInfo],
    tokens: &[sdk::TokenInfo],
    ssh_keys: &[sdk::SshKey],
    cli_sessions: &[sdk::CliSessionInfo],
    unused_recovery_codes: u64,
    shown_once: Option<ShownOnce>,
) -> Markup {
    layout_at(
        ctx,
        "/account",
        "Account",
        html! {
            div.page-head {
                h1 { "Account" }
                @if let Some(user) = ctx.user {
                    p.lead { (user.display_name) " · " (user.email) }
                }
                nav.toc aria-label="On this page" {
                    a href="#passkeys" { "Passkeys" }
                    a href="#sessions" { "Sessions" }
                    a href="#tokens" { "API tokens" }
                    a href="#ssh-keys" { "SSH keys" }
                    a href="#cli" { "CLI sessions" }
                    a href="#recovery" { "Recovery codes" }
                }
            }
            @if let Some(shown) = shown_once { (shown_once_box(shown)) }
            (passkeys_section(ctx, passkeys))
            (sessions_section(ctx, sessions))
            (tokens_section(ctx, tokens))
            (ssh_keys_section(ctx, ssh_keys))
            (cli_section(ctx, cli_sessions))
            (recovery_section(ctx, unused_recovery_codes))
        },
    )
}

fn shown_once_box(shown: ShownOnce) -> Markup {
    html! {
        section.card.highlight aria-labelledby="shown-once-heading" {
            @match shown {
                ShownOnce::Token { name, secret } => {
                    h2 #shown-once-heading { "Your new API token “" (name) "”" }
                    p { strong { "Copy it now: it will not be shown again." } " Use it with the "
                        code { "flare" } " CLI, or as a bearer token in the " code { "Authorization" } " header." }
                    (copy_box("shown-once-secret", "New API token", secret))
                }
                ShownOnce::RecoveryCodes(codes) => {
                    h2 #shown-once-heading { "Your new recovery codes" }
                    p { strong { "Copy it now: it will not be shown again." }
                        " Each code signs you in once. Your previous codes no longer work." }
                    (copy_box("shown-once-secret", "New recovery codes", &codes.join("\n")))
                }
            }
        }
    }
}

fn passkeys_section(ctx: &PageContext, passkeys: &[sdk::PasskeyInfo]) -> Markup {
    html! {
        section #passkeys .card aria-labelledby="passkeys-heading" {
            h2 #passkeys-heading { "Passkeys" }
            @if passkeys.is_empty() {
                p.notice { "You have no passkey. Add one below so you can sign in next time." }
            } @else {
                table.table.stack {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Added" }
                        th scope="col" { "Last used" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for p in passkeys {
                            @let id = encode_path_segment(&p.id);
                            @let input_id = format!("passkey-name-{id}");
                            tr {
                                td data-label="Name" { (p.name) }
                                td data-label="Added" { (time(p.created_at)) }
                                td data-label="Last used" { (time_or(p.last_used_at, "never")) }
                                td data-label="Actions" {
                                    div.row-actions {
                                        form method="post" action={ "/account/passkeys/" (id) "/rename" } class="inline-form" {
                                            (csrf_field(ctx))
                                            label.visually-hidden for=(input_id) { "New name for passkey " (p.name) }
                                            input type="text" id=(input_id) name="name" value=(p.name) required maxlength="100";
                                            button.button.small.secondary type="submit" { "Rename" }
                                        }
                                        form method="post" action={ "/account/passkeys/" (id) "/delete" } class="inline-form"
                                            data-confirm={ "Remove the passkey “" (p.name) "”? You will no longer be able to sign in with it." } {
                                            (csrf_field(ctx))
                                            button.button.small.danger type="submit" {
                                                "Remove" span.visually-hidden { " passkey " (p.name) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Add a passkey" }
            p.muted { "Add one on each device you use, or a security key as a spare." }
            noscript { p.notice { "Passkeys need JavaScript. Turn it on for this site to add one." } }
            form method="post" action="/account/passkeys" id="add-passkey-form" data-passkey="add" class="stack-form" {
                (csrf_field(ctx))
                div.field {
                    label for="add-passkey-name" { "Name" }
                    input type="text" id="add-passkey-name" name="name" required maxlength="100"
                        placeholder="Work laptop" aria-describedby="add-passkey-name-hint";
                    p.hint #add-passkey-name-hint { "So you can tell your passkeys apart, e.g. “Phone” or “YubiKey”." }
                }
                div.form-actions { button.button.primary type="submit" { "Add a passkey" } }
                (passkey_status())
            }
        }
    }
}

fn sessions_section(ctx: &PageContext, sessions: &[sdk::BrowserSessionInfo]) -> Markup {
    html! {
        section #sessions .card aria-labelledby="sessions-heading" {
            h2 #sessions-heading { "Signed-in browsers" }
            @if sessions.is_empty() {
                p.muted { "No browser is signed in." }
            } @else {
                table.table.stack {
                    thead { tr {
                        th scope="col" { "Device" }
                        th scope="col" { "IP address" }
                        th scope="col" { "Last seen" }
                        th scope="col" { "Signed in" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for s in sessions {
                            @let device = s.user_agent.as_deref().map(describe_user_agent)
                                .unwrap_or_else(|| "Unknown device".to_string());
                            tr {
                                td data-label="Device" {
                                    span title=[s.user_agent.as_deref()] { (device) }
                                    @if s.current { " " span.badge.current { "This session" } }
                                }
                                td data-label="IP address" {
                                    @match &s.ip { Some(ip) => code { (ip) }, None => span.muted { "unknown" } }
                                }
                                td data-label="Last seen" { (time(s.last_seen_at)) }
                                td data-label="Signed in" { (time(s.created_at)) }
                                td data-label="Actions" {
                                    @if s.current {
                                        span.muted { "Use “Sign out”" }
                                    } @else {
                                        form method="post" action={ "/account/sessions/" (encode_path_segment(&s.id)) "/revoke" }
                                            class="inline-form" data-confirm={ "Sign out " (device) "?" } {
                                            (csrf_field(ctx))
                                            button.button.small.danger type="submit" {
                                                "Revoke" span.visually-hidden { " session on " (device) }
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
}

fn cli_section(ctx: &PageContext, cli: &[sdk::CliSessionInfo]) -> Markup {
    html! {
        section #cli .card aria-labelledby="cli-heading" {
            h2 #cli-heading { "CLI sessions" }
            p.muted { "Each " code { "flare auth login" } " you approved. Revoking one signs that CLI out at once." }
            @if cli.is_empty() {
                p.muted { "No CLI is signed in. Run " code { "flare auth login" } " to sign one in." }
            } @else {
                table.table.stack {
                    thead { tr {
                        th scope="col" { "Client" }
                        th scope="col" { "Signed in" }
                        th scope="col" { "Last used" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for c in cli {
                            tr {
                                td data-label="Client" { (c.client_name) }
                                td data-label="Signed in" { (time(c.created_at)) }
                                td data-label="Last used" { (time_or(c.last_used_at, "never")) }
                                td data-label="Actions" {
                                    form method="post" action={ "/account/cli-sessions/" (encode_path_segment(&c.id)) "/revoke" }
                                        class="inline-form" data-confirm={ "Sign out “" (c.client_name) "”?" } {
                                        (csrf_field(ctx))
                                        button.button.small.danger type="submit" {
                                            "Revoke" span.visually-hidden { " CLI session " (c.client_name) }
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

fn tokens_section(ctx: &PageContext, tokens: &[sdk::TokenInfo]) -> Markup {
    html! {
        section #tokens .card aria-labelledby="tokens-heading" {
            h2 #tokens-heading { "API tokens" }
            p.muted { "Tokens let the " code { "flare" } " CLI and your scripts act as you." }
            @if tokens.is_empty() {
                p.muted { "You have no API token." }
            } @else {
                table.table.stack {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Created" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Last used" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for t in tokens {
                            tr {
                                td data-label="Name" { (t.name) }
                                td data-label="Created" { (time(t.created_at)) }
                                td data-label="Expires" { (time_or(t.expires_at, "never")) }
                                td data-label="Last used" { (time_or(t.last_used_at, "never")) }
                                td data-label="Actions" {
                                    form method="post" action={ "/account/tokens/" (encode_path_segment(&t.id)) "/revoke" }
                                        class="inline-form" data-confirm={ "Revoke the token “" (t.name) "”? Anything using it stops working." } {
                                        (csrf_field(ctx))
                                        button.button.small.danger type="submit" {
                                            "Revoke" span.visually-hidden { " token " (t.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Create a token" }
            form method="post" action="/account/tokens" class="stack-form" {
                (csrf_field(ctx))
                div.field-row {
                    div.field {
                        label for="token-name" { "Name" }
                        input type="text" id="token-name" name="name" required maxlength="100" placeholder="CI";
                    }
                    div.field {
                        label for="token-expires" { "Expires in (days)" }
                        input type="number" id="token-expires" name="expires_in_days" required
                            min="1" max="366" step="1" value="30" inputmode="numeric";
                    }
                }
                div.form-actions { button.button.primary type="submit" { "Create token" } }
            }
        }
    }
}

fn ssh_keys_section(ctx: &PageContext, keys: &[sdk::SshKey]) -> Markup {
    html! {
        section #ssh-keys .card aria-labelledby="ssh-keys-heading" {
            h2 #ssh-keys-heading { "SSH keys" }
            p.muted {
                "Sessions accept SSH connections with these keys. " code { "flare ssh" }
                " registers its own key automatically; see " code { "docs/ssh.md" } "."
            }
            @if keys.is_empty() {
                p.muted { "You have no SSH key." }
            } @else {
                table.table.stack {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Algorithm" }
                        th scope="col" { "Fingerprint" }
                        th scope="col" { "Added" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for k in keys {
                            tr {
                                td data-label="Name" { (k.name) }
                                td data-label="Algorithm" { code { (k.algorithm) } }
                                td data-label="Fingerprint" { code { (k.fingerprint) } }
                                td data-label="Added" { (time(k.created_at)) }
                                td data-label="Actions" {
                                    form method="post" action={ "/account/ssh-keys/" (encode_path_segment(&k.id)) "/delete" }
                                        class="inline-form" data-confirm={ "Remove the SSH key “" (k.name) "”? It can no longer connect to your sessions." } {
                                        (csrf_field(ctx))
                                        button.button.small.danger type="submit" {
                                            "Remove" span.visually-hidden { " SSH key " (k.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Add an SSH key" }
            form method="post" action="/account/ssh-keys" class="stack-form" {
                (csrf_field(ctx))
                div.field {
                    label for="ssh-key-name" { "Name" }
                    input type="text" id="ssh-key-name" name="name" required maxlength="64"
                        placeholder="Work laptop";
                }
                div.field {
                    label for="ssh-key-public-key" { "Public key" }
                    textarea id="ssh-key-public-key" name="public_key" required rows="4"
                        spellcheck="false" autocomplete="off" autocapitalize="off"
                        placeholder="ssh-ed25519 AAAA… you@laptop"
                        aria-describedby="ssh-key-public-key-hint" {}
                    p.hint #ssh-key-public-key-hint {
                        "One line of a " code { ".pub" } " file, e.g. " code { "~/.ssh/id_ed25519.pub" }
                        ": Ed25519, ECDSA, or RSA of 2048 bits or more."
                    }
                }
                div.form-actions { button.button.primary type="submit" { "Add SSH key" } }
            }
        }
    }
}

fn recovery_section(ctx: &PageContext, unused: u64) -> Markup {
    let class = match unused {
        0 => Some("notice error"),
        1 | 2 => Some("notice"),
        _ => None,
    };
    html! {
        section #recovery .card aria-labelledby="recovery-heading" {
            h2 #recovery-heading { "Recovery codes" }
            p class=[class] {
                @if unused == 1 { "You have 1 unused recovery code." }
                @else { "You have " (unused) " unused recovery codes." }
                @if unused < 3 { " Generate a new set so you cannot be locked out." }
            }
            p.muted { "A recovery code signs you in once if you lose all your passkeys." }
            form method="post" action="/account/recovery-codes" class="inline-form"
                data-confirm="Generate new recovery codes? The current ones stop working." {
                (csrf_field(ctx))
                button.button.secondary type="submit" { "Generate new recovery codes" }
            }
        }
    }
}
