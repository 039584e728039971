//! Sign up, sign in and account recovery. Sign-up and sign-in are passkey ceremonies run by
//! `passkeys.js`; recovery is a plain form.

use maud::{Markup, html};

use crate::components::{copy_box, encode_query_value, safe_return_to};
use crate::{PageContext, csrf_field, layout};

/// The status line the passkey script writes to (`data-state`: idle, busy, error, …).
pub(crate) fn passkey_status() -> Markup {
    html! {
        p #passkey-status .status role="status" aria-live="polite" data-state="idle" {}
    }
}

fn noscript_note(what: &str) -> Markup {
    html! {
        noscript {
            p.notice { "Passkeys need JavaScript. Turn it on for this site to " (what) "." }
        }
    }
}

fn bot_check(ctx: &PageContext) -> Markup {
    html! {
        @if let Some(key) = ctx.bot_check_site_key {
            div.cf-turnstile data-sitekey=(key) {}
        }
    }
}

/// `/signup`: create an account with a passkey; the script then shows the recovery codes.
pub fn signup(ctx: &PageContext) -> Markup {
    layout(
        ctx,
        "Sign up",
        html! {
            section.card.narrow aria-labelledby="signup-heading" {
                h1 #signup-heading { "Create your account" }
                p.lead {
                    "BurstFlare signs you in with a passkey instead of a password: your device's "
                    "fingerprint, face or screen lock, or a security key."
                }
                (noscript_note("create an account"))
                form method="post" action="/signup" id="signup-form" data-passkey="signup" class="stack-form" {
                    (csrf_field(ctx))
                    div.field {
                        label for="signup-email" { "Email" }
                        input type="email" id="signup-email" name="email" required maxlength="254"
                            autocomplete="email" spellcheck="false";
                    }
                    div.field {
                        label for="signup-display-name" { "Display name" }
                        input type="text" id="signup-display-name" name="display_name" required
                            maxlength="100" autocomplete="name" aria-describedby="signup-display-name-hint";
                        p.hint #signup-display-name-hint { "How other people in your workspaces see you." }
                    }
                    (bot_check(ctx))
                    div.form-actions {
                        button.button.primary type="submit" { "Create account with a passkey" }
                    }
                }
                // Outside the form: the script hides the form once the account exists.
                (passkey_status())
                p.muted { "Already have an account? " a href="/signin" { "Sign in" } }
            }
            section #recovery-codes .card.narrow.highlight hidden aria-labelledby="recovery-codes-heading" {
                h2 #recovery-codes-heading tabindex="-1" { "Save your recovery codes" }
                p {
                    "Each code signs you in once if you lose your passkeys. Keep them somewhere safe, "
                    "such as a password manager. "
                    strong { "Copy them now: they will not be shown again." }
                }
                (copy_box("recovery-codes-list", "Recovery codes", ""))
                p.form-actions { a.button.primary #recovery-codes-done href="/" { "I saved these codes" } }
            }
        },
    )
}

/// `/signin`: sign in with a passkey, then go to `return_to` (a local path) or `/`.
pub fn signin(ctx: &PageContext, return_to: Option<&str>) -> Markup {
    let return_to = return_to.and_then(safe_return_to);
    let signup_href = match return_to {
        Some(to) => format!("/signup?return_to={}", encode_query_value(to)),
        None => "/signup".to_string(),
    };
    layout(
        ctx,
        "Sign in",
        html! {
            section.card.narrow aria-labelledby="signin-heading" {
                h1 #signin-heading { "Sign in" }
                p.lead { "Use the passkey you created for BurstFlare." }
                (noscript_note("sign in"))
                form method="post" action="/signin" id="signin-form" data-passkey="signin"
                    data-return-to=[return_to] class="stack-form" {
                    (csrf_field(ctx))
                    div.field {
                        label for="signin-email" { "Email" }
                        input type="email" id="signin-email" name="email" required maxlength="254"
                            autocomplete="email" spellcheck="false";
                    }
                    (bot_check(ctx))
                    div.form-actions {
                        button.button.primary type="submit" { "Sign in with a passkey" }
                    }
                    (passkey_status())
                }
                ul.plain-list.muted {
                    li { "Lost your passkeys? " a href="/recover" { "Use a recovery code" } }
                    li { "New here? " a href=(signup_href) { "Create an account" } }
                }
            }
        },
    )
}

/// `/recover`: sign in with a recovery code; works without JavaScript.
pub fn recover(ctx: &PageContext, error: Option<&str>) -> Markup {
    layout(
        ctx,
        "Use a recovery code",
        html! {
            section.card.narrow aria-labelledby="recover-heading" {
                h1 #recover-heading { "Sign in with a recovery code" }
                p.lead {
                    "Each recovery code works once. After signing in you will be asked to add a new passkey."
                }
                @if let Some(e) = error {
                    div.flash.error role="alert" { (e) }
                }
                form method="post" action="/recover" class="stack-form" {
                    (csrf_field(ctx))
                    div.field {
                        label for="recover-email" { "Email" }
                        input type="email" id="recover-email" name="email" required maxlength="254"
                            autocomplete="email" spellcheck="false";
                    }
                    div.field {
                        label for="recover-code" { "Recovery code" }
                        input type="text" id="recover-code" name="code" required maxlength="64"
                            autocomplete="one-time-code" autocapitalize="none" spellcheck="false"
                            class="mono";
                    }
                    div.form-actions {
                        button.button.primary type="submit" { "Sign in" }
                    }
                }
                p.muted { a href="/signin" { "Back to sign in with a passkey" } }
            }
        },
    )
}
