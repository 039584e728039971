//! The home page and the error page.

use maud::{Markup, html};

use crate::{PageContext, layout, status_badge};

/// The home page for someone not signed in; see [`home_with`].
pub fn home(version: &sdk::VersionResponse, health: &sdk::HealthResponse) -> Markup {
    home_with(&PageContext::default(), version, health)
}

/// The home page: what this installation is and whether its dependencies are healthy.
pub fn home_with(
    ctx: &PageContext,
    version: &sdk::VersionResponse,
    health: &sdk::HealthResponse,
) -> Markup {
    layout(
        ctx,
        "Home",
        html! {
            section.hero {
                h1 { "Cloud development sessions you host yourself" }
                p.lead {
                    "Start a session from a template, work inside it with " code { "flare ssh" }
                    " or the browser terminal, and keep your files across sleep and restart."
                }
                @if ctx.user.is_none() {
                    p.actions {
                        a.button.primary href="/signup" { "Create an account" }
                        a.button.secondary href="/signin" { "Sign in" }
                    }
                }
            }
            section.card aria-labelledby="health-heading" {
                h2 #health-heading { "Platform health" }
                table.table.health {
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Status" } th scope="col" { "Detail" } } }
                    tbody {
                        @for name in sdk::HEALTH_CHECKS {
                            @let value = health.checks.get(name).map(String::as_str).unwrap_or("not checked");
                            tr {
                                td { (name) }
                                td { (status_badge(value)) }
                                td.detail { @if value != "ok" { (value) } }
                            }
                        }
                    }
                }
                p.muted { "Version " (version.version) " · API " (version.api) }
            }
        },
    )
}

/// The error page for someone not signed in; see [`error_page_with`].
pub fn error_page(status: u16, message: &str) -> Markup {
    error_page_with(&PageContext::default(), status, message)
}

/// A plain page for errors such as 404, in the product's frame.
pub fn error_page_with(ctx: &PageContext, status: u16, message: &str) -> Markup {
    layout(
        ctx,
        &status.to_string(),
        html! {
            section.card {
                h1 { (status) }
                p { (message) }
                p { a href="/" { "Back to the home page" } }
            }
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_home_page_shows_every_check_and_escapes_error_text() {
        let mut checks = BTreeMap::new();
        checks.insert("database".to_string(), "ok".to_string());
        checks.insert("docker".to_string(), "<script>alert(1)</script>".to_string());
        let health = sdk::HealthResponse::from_checks(checks);
        let version = sdk::VersionResponse {
            name: "burstflare".into(),
            version: "0.1.0".into(),
            api: "v1".into(),
            commit: None,
        };
        for html in [
            home(&version, &health).into_string(),
            home_with(&PageContext::default(), &version, &health).into_string(),
        ] {
            for name in sdk::HEALTH_CHECKS {
                assert!(html.contains(&format!("<td>{name}</td>")), "missing {name}");
            }
            assert!(html.contains("&lt;script&gt;"));
            assert!(!html.contains("<script>alert"));
            assert!(html.contains("not checked"));
        }
    }

    #[test]
    fn the_error_page_shows_the_status_and_escapes_the_message() {
        let html = error_page(404, "no <b>such</b> page").into_string();
        assert!(html.contains("<h1>404</h1>"));
        assert!(html.contains("no &lt;b&gt;such&lt;/b&gt; page"));
    }
}
