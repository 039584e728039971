//! Server-rendered pages (maud): the layout, components and pages. Every page is a
//! function of `sdk` types, the same ones the JSON API returns.

use maud::{DOCTYPE, Markup, PreEscaped, html};

pub mod pages;

/// The stylesheet, embedded in the binary and served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../assets/app.css");
/// Path of the stylesheet; the version makes browsers refetch it after an upgrade.
pub const STYLESHEET_PATH: &str = concat!("/assets/app-", env!("CARGO_PKG_VERSION"), ".css");

/// The page frame shared by every page.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · BurstFlare" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                header.topbar {
                    a.brand href="/" { (PreEscaped(LOGO)) span { "BurstFlare" } }
                }
                main.container { (body) }
                footer.footer { "BurstFlare " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

const LOGO: &str = r#"<svg aria-hidden="true" width="22" height="22" viewBox="0 0 24 24"><path fill="currentColor" d="M13 2 4 14h6l-1 8 9-12h-6z"/></svg>"#;

/// A status badge: `ok` is green, anything else is shown as an error.
pub fn status_badge(value: &str) -> Markup {
    let class = if value == "ok" { "badge ok" } else { "badge error" };
    let text = if value == "ok" { "ok" } else { "failing" };
    html! { span class=(class) { (text) } }
}
