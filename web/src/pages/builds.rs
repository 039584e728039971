//! `/w/{slug}/builds/{id}`: one build attempt of a template version, with its log.

use maud::{Markup, html};

use super::templates::{build_duration, build_path, template_path};
use crate::components::{build_badge, live_status, time_or, version_label};
use crate::{BUILD_LOG_JS_PATH, PageContext, csrf_field, encode_path_segment, layout_at, time};

/// `/w/{slug}/builds/{id}`. `log` is the log from its start (`None` when it could not be read:
/// the page says so and the script keeps trying). While the log is incomplete the page loads
/// `build-log.js`, which polls `data-build-log` (the JSON log endpoint) from `data-next` and
/// keeps the badge, the error and the buttons current; without it, a Reload link shows more.
/// `can_manage` shows Retry (failed or cancelled builds) and Cancel (active builds): the one
/// that does not apply yet is rendered `hidden` for the script to reveal.
pub fn build_page(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    b: &sdk::TemplateBuild,
    log: Option<&sdk::BuildLog>,
    can_manage: bool,
) -> Markup {
    let path = build_path(&ws.slug, &b.id);
    let log_url = format!(
        "/api/v1/workspaces/{}/builds/{}/log",
        encode_path_segment(&ws.slug),
        encode_path_segment(&b.id)
    );
    let is_final = sdk::build_is_final(&b.status);
    let retryable = matches!(b.status.as_str(), "failed" | "cancelled");
    let complete = log.is_some_and(|l| l.done);
    let text = log.map(|l| l.text.as_str()).unwrap_or_default();
    let next = log.map_or(0, |l| l.next);
    let version = version_label(&b.version);
    let body = html! {
        div.page-head {
            p.breadcrumb {
                a href={ "/w/" (encode_path_segment(&ws.slug)) "/templates" } { "Templates" }
                " / "
                a href=(template_path(&ws.slug, &b.template)) { (b.template) }
                " / "
            }
            h1 { "Build " (b.attempt) " of " (b.template) " " (version) }
            p.lead.build-status {
                "Status: " (build_badge(&b.status))
            }
        }
        div.notice.error.build-error #build-error role="alert" hidden[b.error.is_none()] {
            strong { "Error: " }
            span #build-error-text { (b.error.as_deref().unwrap_or_default()) }
        }
        @if can_manage && (retryable || !is_final) {
            div.actions.build-actions {
                form method="post" action={ (path) "/retry" } class="inline-form"
                    data-build-action="retry" hidden[!retryable] {
                    (csrf_field(ctx))
                    button.button.primary type="submit" { "Retry build" }
                }
                @if !is_final {
                    form method="post" action={ (path) "/cancel" } class="inline-form"
                        data-build-action="cancel" data-confirm="Cancel this build?" {
                        (csrf_field(ctx))
                        button.button.danger type="submit" { "Cancel build" }
                    }
                }
            }
        }
        section.card aria-labelledby="build-about-heading" {
            h2 #build-about-heading { "Details" }
            dl.meta {
                dt { "Template" }
                dd { a href=(template_path(&ws.slug, &b.template)) { (b.template) } }
                dt { "Version" }
                dd { (version) }
                dt { "Attempt" }
                dd { (b.attempt) }
                dt { "Requested by" }
                dd {
                    @match &b.requested_by {
                        Some(u) => (u.display_name),
                        None => span.muted { "system" },
                    }
                }
                dt { "Image" }
                dd #build-image {
                    @match &b.image_ref {
                        Some(r) => code { (r) },
                        None => span.muted { "not pushed yet" },
                    }
                }
                dt { "Digest" }
                dd #build-digest {
                    @match &b.image_digest {
                        Some(d) => code { (d) },
                        None => span.muted { "—" },
                    }
                }
                dt { "Workflow" }
                dd {
                    code { (b.workflow_id) }
                    p.hint {
                        "Operators: " code { "temporal workflow show -w " (b.workflow_id) }
                    }
                }
                dt { "Created" }
                dd { (time(b.created_at)) }
                dt { "Started" }
                dd #build-started { (time_or(b.started_at, "not yet")) }
                dt { "Finished" }
                dd #build-finished { (time_or(b.finished_at, "not yet")) }
                dt { "Duration" }
                dd #build-duration { (build_duration(b)) }
            }
        }
        section.card.build-log-card aria-labelledby="build-log-heading" {
            div.card-head {
                h2 #build-log-heading { "Log" }
                a href=(path) { "Reload" }
            }
            @if log.is_none() {
                p.notice { "The log could not be read just now. Reload in a moment." }
            }
            pre.build-log #build-log tabindex="0" role="log" aria-labelledby="build-log-heading"
                data-build-log=(log_url) data-next=(next) data-done=(complete) { (text) }
            p.muted #build-log-empty hidden[!text.is_empty()] {
                @if is_final { "This build wrote no log." } @else { "No output yet." }
            }
            (live_status())
        }
        @if !complete {
            script src=(BUILD_LOG_JS_PATH) defer {}
        }
    };
    layout_at(
        ctx,
        &path,
        &format!("Build {} · {} {} · {}", b.attempt, b.template, version, ws.name),
        body,
    )
}
