//! `/w/{slug}/templates` (the catalog, and creating a template) and
//! `/w/{slug}/templates/{name}` (one template: its manifest, versions and builds).

use maud::{Markup, html};

use crate::components::{
    build_badge, command_box, format_duration, human_bytes, prefix, shell_word, time_or,
    version_badge, version_label,
};
use crate::{PageContext, csrf_field, encode_path_segment, is_manager, layout_at, time};

/// The "New template" form as last submitted, shown again with the error it got.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewTemplate<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// The error message, which names its field (`name: …`).
    pub error: Option<&'a str>,
    /// The field the error is about (`name`, `description`): marked invalid and focused.
    pub field: Option<&'a str>,
}

/// `/w/{slug}/templates/{name}`, with the name percent-encoded.
pub fn template_path(ws_slug: &str, name: &str) -> String {
    format!("/w/{}/templates/{}", encode_path_segment(ws_slug), encode_path_segment(name))
}

/// `/w/{slug}/builds/{id}`, percent-encoded.
pub fn build_path(ws_slug: &str, id: &str) -> String {
    format!("/w/{}/builds/{}", encode_path_segment(ws_slug), encode_path_segment(id))
}

/// The command that uploads a new version of `name` from the current folder.
fn upload_command(ws_slug: &str, name: &str) -> String {
    format!("flare template upload {} . --workspace {}", shell_word(name), shell_word(ws_slug))
}

/// `/w/{slug}/templates`: one card per template, its name linking to its page, with its
/// promoted version (or "not promoted"), how many versions it has and whether it is archived;
/// archived ones last. `can_manage` (roles allowed to manage templates) adds the "New
/// template" form, posting `name` and `description` to `/w/{slug}/templates`; `form` is the
/// last attempt when it failed.
pub fn templates(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    templates: &[sdk::TemplateSummary],
    can_manage: bool,
    form: Option<&NewTemplate>,
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
                    @if can_manage || is_manager(&ws.role) {
                        p {
                            "As an " (ws.role) ", you can publish the first one: create it below, or "
                            "create it and upload its first version in one go with "
                            code { "flare template upload NAME DIR" } "."
                        }
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
                            h2 { a href=(template_path(&ws.slug, &t.name)) { (t.name) } }
                            @if t.description.is_empty() {
                                p.muted { "No description." }
                            } @else {
                                p.description { (t.description) }
                            }
                            dl.meta {
                                dt { "Active version" }
                                dd {
                                    @match &t.active_version {
                                        Some(v) => span.badge.version { (version_label(v)) },
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
        @if can_manage {
            (new_template_form(ctx, &path, form.copied().unwrap_or_default()))
        }
    };
    layout_at(ctx, &path, &format!("Templates · {}", ws.name), body)
}

fn new_template_form(ctx: &PageContext, action: &str, form: NewTemplate) -> Markup {
    let name_invalid = form.error.is_some() && form.field != Some("description");
    let description_invalid = form.error.is_some() && form.field == Some("description");
    let invalid = |yes: bool| yes.then_some("true");
    let described = |hint: &str, yes: bool| {
        if yes { format!("new-template-error {hint}") } else { hint.to_string() }
    };
    html! {
        section.card aria-labelledby="new-template-heading" {
            h2 #new-template-heading { "New template" }
            @if let Some(e) = form.error {
                div.flash.error role="alert" #new-template-error { (e) }
            }
            form method="post" action=(action) class="stack-form" {
                (csrf_field(ctx))
                div.field {
                    label for="template-name" { "Name" }
                    input type="text" id="template-name" name="name" required maxlength="63"
                        pattern="[a-z][a-z0-9\\-]{0,62}"
                        title="A lowercase letter, then lowercase letters, digits and hyphens: at most 63"
                        value=(form.name) autocapitalize="none" spellcheck="false" class="mono"
                        placeholder="rust-dev" aria-invalid=[invalid(name_invalid)]
                        autofocus[name_invalid]
                        aria-describedby=(described("template-name-hint", name_invalid));
                    p.hint #template-name-hint {
                        "A lowercase letter, then lowercase letters, digits and hyphens; at most 63. It must match the "
                        code { "name" } " in the bundle's " code { "burstflare.toml" } "."
                    }
                }
                div.field {
                    label for="template-description" { "Description" }
                    textarea id="template-description" name="description" rows="2"
                        maxlength="1000" aria-invalid=[invalid(description_invalid)]
                        autofocus[description_invalid]
                        aria-describedby=(described("template-description-hint", description_invalid)) {
                        (form.description)
                    }
                    p.hint #template-description-hint { "Optional: what sessions started from it are for." }
                }
                div.form-actions { button.button.primary type="submit" { "Create template" } }
            }
            p.hint {
                "Then upload its first version from the folder holding " code { "burstflare.toml" } ". "
                "Or do both at once: " code { "flare template upload NAME DIR" } "."
            }
        }
    }
}

/// `/w/{slug}/templates/{name}`: what the template is, how to upload a version, the manifest
/// of its newest built version (secret values never shown), its versions and its builds.
/// `can_manage` adds the Archive button (POST `…/archive`) while the template is not archived.
pub fn template_detail(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    t: &sdk::TemplateDetail,
    versions: &[sdk::TemplateVersion],
    builds: &[sdk::TemplateBuild],
    can_manage: bool,
) -> Markup {
    template_detail_with_promotions(ctx, ws, t, versions, builds, can_manage, None)
}

/// [`template_detail`] with the Promotion card after the Overview (none for `None`): see
/// [`TemplatePromotions`](super::promotions::TemplatePromotions).
pub fn template_detail_with_promotions(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    t: &sdk::TemplateDetail,
    versions: &[sdk::TemplateVersion],
    builds: &[sdk::TemplateBuild],
    can_manage: bool,
    promotions: Option<&super::promotions::TemplatePromotions>,
) -> Markup {
    let path = template_path(&ws.slug, &t.name);
    let list = format!("/w/{}/templates", encode_path_segment(&ws.slug));
    let body = html! {
        div.page-head {
            p.breadcrumb { a href=(list) { "Templates" } " / " }
            h1 {
                (t.name)
                @if t.archived_at.is_some() { " " span.badge.archived { "archived" } }
            }
            @if t.description.is_empty() {
                p.lead.muted { "No description." }
            } @else {
                p.lead { (t.description) }
            }
        }
        section.card aria-labelledby="template-about-heading" {
            div.card-head {
                h2 #template-about-heading { "Overview" }
                @if can_manage && t.archived_at.is_none() {
                    form method="post" action={ (path) "/archive" } class="inline-form"
                        data-confirm={ "Archive " (t.name) "? New sessions will not start from it, and it takes no new versions." } {
                        (csrf_field(ctx))
                        button.button.small.danger type="submit" {
                            "Archive" span.visually-hidden { " " (t.name) }
                        }
                    }
                }
            }
            dl.meta {
                dt { "Active version" }
                dd {
                    @match &t.active_version {
                        Some(v) => span.badge.version { (version_label(v)) },
                        None => span.badge.unpromoted { "not promoted" },
                    }
                }
                dt { "Latest version" }
                dd {
                    @match &t.latest_version {
                        Some(v) => { (version_label(&v.version)) " " (version_badge(&v.status)) },
                        None => span.muted { "none yet" },
                    }
                }
                dt { "Versions" }
                dd { (t.versions) }
                dt { "Created" }
                dd { (time(t.created_at)) }
                dt { "Updated" }
                dd { (time(t.updated_at)) }
                @if let Some(at) = t.archived_at {
                    dt { "Archived" }
                    dd { (time(at)) " · new sessions cannot start from it" }
                }
            }
        }
        @if let Some(p) = promotions {
            (super::promotions::promotion_card(ctx, ws, t, versions, p))
        }
        section.card aria-labelledby="upload-heading" {
            h2 #upload-heading { "Upload a new version" }
            @if t.archived_at.is_some() {
                p.muted { "An archived template takes no new versions: create a new template instead." }
            } @else {
                p {
                    "From the folder holding the template's " code { "burstflare.toml" } ", run:"
                }
                (command_box("upload-command", "Upload command", &upload_command(&ws.slug, &t.name)))
                p.hint {
                    "It packs the folder, uploads it as the next version and starts its build. "
                    "Only owners and admins may upload."
                }
            }
        }
        (manifest_card(t))
        section.card aria-labelledby="versions-heading" {
            h2 #versions-heading { "Versions" }
            @if versions.is_empty() {
                p.muted { "No versions yet." }
            } @else {
                div.table-scroll role="region" aria-labelledby="versions-heading" tabindex="0" {
                    table.table.versions {
                        thead { tr {
                            th scope="col" { "Version" }
                            th scope="col" { "Status" }
                            th scope="col" { "Bundle" }
                            th scope="col" { "SHA-256" }
                            th scope="col" { "Image digest" }
                            th scope="col" { "Created" }
                            th scope="col" { "Latest build" }
                        } }
                        tbody {
                            @for v in versions {
                                tr {
                                    th scope="row" {
                                        (version_label(&v.version))
                                        @if t.active_version.as_deref() == Some(v.version.as_str()) {
                                            " " span.badge.current { "active" }
                                        }
                                    }
                                    td { (version_badge(&v.status)) }
                                    td.nowrap {
                                        @match v.bundle_size {
                                            Some(n) => (human_bytes(i64::try_from(n).unwrap_or(i64::MAX))),
                                            None => span.muted { "—" },
                                        }
                                    }
                                    td {
                                        @match &v.bundle_sha256 {
                                            Some(h) => code title=(h) { (prefix(h, 12)) },
                                            None => span.muted { "—" },
                                        }
                                    }
                                    td {
                                        @match &v.image_digest {
                                            Some(d) => code title=(d) { (prefix(d, 19)) },
                                            None => span.muted { "—" },
                                        }
                                    }
                                    td { (time(v.created_at)) }
                                    td {
                                        @match &v.latest_build {
                                            Some(b) => {
                                                a href=(build_path(&ws.slug, &b.id)) { "Build " (b.attempt) }
                                                " " (build_badge(&b.status))
                                            }
                                            None => span.muted { "none" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="builds-heading" {
            h2 #builds-heading { "Builds" }
            @if builds.is_empty() {
                p.muted { "No builds yet: uploading a version starts one." }
            } @else {
                div.table-scroll role="region" aria-labelledby="builds-heading" tabindex="0" {
                    table.table.builds {
                        thead { tr {
                            th scope="col" { "Build" }
                            th scope="col" { "Version" }
                            th scope="col" { "Status" }
                            th scope="col" { "Requested by" }
                            th scope="col" { "Started" }
                            th scope="col" { "Duration" }
                        } }
                        tbody {
                            @for b in builds {
                                tr data-build-id=(b.id) {
                                    th scope="row" {
                                        a href=(build_path(&ws.slug, &b.id)) {
                                            "Attempt " (b.attempt)
                                            span.visually-hidden { " of " (version_label(&b.version)) }
                                        }
                                    }
                                    td { (version_label(&b.version)) }
                                    td { (build_badge(&b.status)) }
                                    td {
                                        @match &b.requested_by {
                                            Some(u) => (u.display_name),
                                            None => span.muted { "system" },
                                        }
                                    }
                                    td { (time_or(b.started_at, "not yet")) }
                                    td { (build_duration(b)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout_at(ctx, &path, &format!("{} · Templates · {}", t.name, ws.name), body)
}

/// How long a build took, or that it has not started or finished.
pub(crate) fn build_duration(b: &sdk::TemplateBuild) -> Markup {
    html! {
        @match (b.started_at, b.finished_at) {
            (Some(s), Some(f)) => (format_duration(f - s)),
            (Some(_), None) => span.muted { "running" },
            (None, _) => span.muted { "—" },
        }
    }
}

/// The manifest of the newest built version: base image, persisted paths, ports, environment
/// (secret values never shown), resources, idle timeout, labels.
fn manifest_card(t: &sdk::TemplateDetail) -> Markup {
    let built = t.latest_built_version.as_ref();
    let manifest = built.and_then(|v| v.manifest.as_ref());
    html! {
        section.card aria-labelledby="manifest-heading" {
            div.card-head {
                h2 #manifest-heading { "Manifest" }
                @if let Some(v) = built {
                    span.muted { "of " (version_label(&v.version)) ", the newest built version" }
                }
            }
            @match (built, manifest) {
                (None, _) => p.muted { "No version has built yet." },
                (Some(_), None) => p.muted { "This version's manifest is not available." },
                (Some(_), Some(m)) => (manifest_view(m)),
            }
        }
    }
}

fn manifest_view(m: &sdk::bundle::ManifestView) -> Markup {
    let r = &m.resources;
    html! {
        dl.meta {
            dt { "Base image" }
            dd { code { (m.base_image) } }
            dt { "Resources" }
            dd {
                (cpu(r.cpu_millis)) " · "
                (human_bytes(i64::from(r.memory_mb) * 1024 * 1024)) " memory · "
                (r.disk_gb) " GiB disk"
            }
            dt { "Idle timeout" }
            dd { (m.idle_timeout_minutes) " min" }
            dt { "Persisted paths" }
            dd {
                @if m.persisted_paths.is_empty() {
                    span.muted { "none" }
                } @else {
                    ul.plain-list.compact {
                        @for p in &m.persisted_paths { li { code { (p) } } }
                    }
                }
            }
        }
        h3 #manifest-ports-heading { "Ports" }
        @if m.ports.is_empty() {
            p.muted { "No ports exposed." }
        } @else {
            table.table.kv aria-labelledby="manifest-ports-heading" {
                thead { tr {
                    th scope="col" { "Port" }
                    th scope="col" { "Name" }
                    th scope="col" { "Protocol" }
                } }
                tbody {
                    @for p in &m.ports {
                        tr {
                            td { code { (p.port) } }
                            td { (p.name) }
                            td { (p.protocol) }
                        }
                    }
                }
            }
        }
        h3 #manifest-env-heading { "Environment" }
        @if m.env.is_empty() {
            p.muted { "No variables." }
        } @else {
            table.table.kv aria-labelledby="manifest-env-heading" {
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Value" }
                } }
                tbody {
                    @for e in &m.env {
                        tr {
                            td { code { (e.name) } }
                            td {
                                // A secret's value is never shown, even if one came along.
                                @if e.secret {
                                    span.badge.masked title="A secret: its value is never shown" { "secret" }
                                } @else {
                                    @match &e.value {
                                        Some(v) => code { (v) },
                                        None => span.muted { "(empty)" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h3 #manifest-labels-heading { "Labels" }
        @if m.labels.is_empty() {
            p.muted { "No labels." }
        } @else {
            table.table.kv aria-labelledby="manifest-labels-heading" {
                thead { tr {
                    th scope="col" { "Label" }
                    th scope="col" { "Value" }
                } }
                tbody {
                    @for (k, v) in &m.labels {
                        tr { td { code { (k) } } td { (v) } }
                    }
                }
            }
        }
    }
}

/// CPU from millicores: `2 CPU`, `1.5 CPU`, `0.25 CPU`.
fn cpu(millis: u32) -> String {
    let whole = millis / 1000;
    let frac = millis % 1000;
    if frac == 0 {
        format!("{whole} CPU")
    } else {
        let digits = format!("{frac:03}");
        format!("{whole}.{} CPU", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cpu_is_shown_in_cores() {
        assert_eq!(cpu(2000), "2 CPU");
        assert_eq!(cpu(1500), "1.5 CPU");
        assert_eq!(cpu(250), "0.25 CPU");
        assert_eq!(cpu(1), "0.001 CPU");
    }

    #[test]
    fn the_upload_command_is_shell_safe() {
        assert_eq!(
            upload_command("acme", "rust-dev"),
            "flare template upload rust-dev . --workspace acme"
        );
        assert_eq!(
            upload_command("a b", "it's"),
            r"flare template upload 'it'\''s' . --workspace 'a b'"
        );
    }
}
