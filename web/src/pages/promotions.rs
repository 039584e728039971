//! The Promotion card of a template's page (docs/catalog.md): the active version as the runtime
//! catalog has it, the workspace's promotion policy, the promotion in flight (its step, its
//! rollout per runtime host, and an Approve button for an owner or admin other than the one who
//! asked), the Promote / Demote / Roll back forms, and the template's recent runs.
//!
//! While a run is in flight the card carries `data-promotion` (the run's JSON URL) and the page
//! loads `promotion.js`, which keeps the status, the step, the error and the hosts current and
//! reloads the page once the run ends. Without the script the Reload link does the same.

use maud::{Markup, html};

use crate::components::time_or;
use crate::pages::templates::template_path;
use crate::{PROMOTION_JS_PATH, PageContext, csrf_field, encode_path_segment, time};

/// What the template page shows about promotions.
#[derive(Debug, Clone, Copy)]
pub struct TemplatePromotions<'a> {
    /// The template's runs, newest first.
    pub runs: &'a [sdk::Promotion],
    /// The template's entry in the runtime catalog, and the catalog's revision.
    pub entry: Option<&'a sdk::CatalogEntryView>,
    pub revision: u64,
    pub policy: &'a sdk::PromotionPolicy,
    /// The viewer may promote, demote, roll back and approve (owners and admins).
    pub can_promote: bool,
}

/// Runs shown in the history table.
const RUNS_SHOWN: usize = 10;

/// `/w/{slug}/promotions/{id}`: where the Approve form posts (`…/approve`).
pub fn promotion_path(ws_slug: &str, id: &str) -> String {
    format!("/w/{}/promotions/{}", encode_path_segment(ws_slug), encode_path_segment(id))
}

fn status_badge(status: &str) -> Markup {
    let known = sdk::PROMOTION_STATES.contains(&status);
    let class = if known { status } else { "unknown" };
    html! {
        span class={ "badge promotion promotion-" (class) } data-promotion-status=(status) {
            (status.replace('_', " "))
        }
    }
}

fn user(u: Option<&sdk::UserRef>) -> Markup {
    html! {
        @match u {
            Some(u) => (u.display_name),
            None => span.muted { "—" },
        }
    }
}

fn hours(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The card. `t` is the template, `versions` its versions (newest first).
pub fn promotion_card(
    ctx: &PageContext,
    ws: &sdk::WorkspaceSummary,
    t: &sdk::TemplateDetail,
    versions: &[sdk::TemplateVersion],
    p: &TemplatePromotions,
) -> Markup {
    let path = template_path(&ws.slug, &t.name);
    let in_flight = p.runs.iter().find(|r| !sdk::promotion_is_final(&r.status));
    let active = p.entry.map(|e| e.version.as_str());
    let built: Vec<&sdk::TemplateVersion> = versions
        .iter()
        .filter(|v| v.status == "built" && Some(v.version.as_str()) != active)
        .collect();
    let archived = t.archived_at.is_some();
    let me = ctx.user.map(|u| u.id.as_str());
    html! {
        section.card #promotion aria-labelledby="promotion-heading" {
            h2 #promotion-heading { "Promotion" }
            dl.meta {
                dt { "Active version" }
                dd #promotion-active {
                    @match p.entry {
                        Some(e) => {
                            span.badge.version { "v" (e.version) }
                            " " code title=(e.image_ref) { (e.image_ref) }
                        }
                        None => span.badge.unpromoted { "not promoted: new sessions get the newest built version" },
                    }
                }
                @if let Some(prev) = p.entry.and_then(|e| e.previous_version.as_deref()) {
                    dt { "Previous version" }
                    dd { "v" (prev) " · what Demote goes back to" }
                }
                dt { "Catalog revision" }
                dd { (p.revision) }
                dt { "Policy" }
                dd #promotion-policy {
                    @if p.policy.requires_approval {
                        "A promotion waits after its canary for an owner's or admin's approval "
                        "(not the requester's own), for up to " (hours(p.policy.approval_timeout_secs)) "."
                    } @else {
                        "A promotion goes live once its canary passes: no approval needed."
                    }
                }
            }
            @if let Some(run) = in_flight {
                div.promotion-live #promotion-live
                    data-promotion={ "/api/v1/workspaces/" (encode_path_segment(&ws.slug)) "/promotions/" (encode_path_segment(&run.id)) } {
                    p {
                        strong { (run.kind) " v" (run.version) } " · " (status_badge(&run.status))
                        " · " span data-promotion-step { (run.step.as_deref().unwrap_or("starting")) }
                    }
                    ul.promotion-nodes data-promotion-nodes {
                        @for n in &run.nodes {
                            li { code { (n.node) } " " span class={ "badge node-" (n.state) } { (n.state) } }
                        }
                    }
                    @if run.status == "awaiting_approval" {
                        @if p.can_promote && me != run.requested_by.as_ref().map(|u| u.id.as_str()) {
                            form method="post" action={ (promotion_path(&ws.slug, &run.id)) "/approve" } class="inline-form"
                                data-confirm={ "Approve version " (run.version) " of " (t.name) "? New sessions will get it." } {
                                (csrf_field(ctx))
                                button.button.primary type="submit" { "Approve v" (run.version) }
                            }
                        } @else if p.can_promote {
                            p.hint { "You asked for this promotion: another owner or admin must approve it." }
                        } @else {
                            p.hint { "Waiting for an owner or admin to approve it." }
                        }
                    }
                    p.hint { a href={ (path) "#promotion" } { "Reload" } " to see where it is." }
                }
                script src=(PROMOTION_JS_PATH) defer {}
            } @else if p.can_promote && !archived {
                div.promotion-actions {
                    @if built.is_empty() {
                        p.muted { "No other built version to promote or roll back to." }
                    } @else {
                        form method="post" action={ (path) "/promote" } class="inline-form" {
                            (csrf_field(ctx))
                            label for="promote-version" { "Version" }
                            " "
                            select #promote-version name="version" {
                                @for v in &built {
                                    option value=(v.version) { "v" (v.version) }
                                }
                            }
                            " "
                            button.button.primary type="submit" { "Promote" }
                        }
                        p.hint {
                            "Promote starts a canary from the version (its agent must come up and the "
                            "manifest's " code { "hooks.smoke" } " must pass), then updates the catalog "
                            "and pre-pulls the image on every runtime host. Sessions already running keep their version."
                        }
                        form method="post" action={ (path) "/rollback" } class="inline-form"
                            data-confirm={ "Roll " (t.name) " back? New sessions get the chosen version at once, without a canary." } {
                            (csrf_field(ctx))
                            label for="rollback-version" { "Roll back to" }
                            " "
                            select #rollback-version name="version" {
                                @for v in &built {
                                    option value=(v.version) { "v" (v.version) }
                                }
                            }
                            " "
                            button.button.small type="submit" { "Roll back" }
                        }
                    }
                    @if let Some(prev) = p.entry.and_then(|e| e.previous_version.as_deref()) {
                        form method="post" action={ (path) "/demote" } class="inline-form"
                            data-confirm={ "Demote " (t.name) " to v" (prev) "?" } {
                            (csrf_field(ctx))
                            button.button.small.danger type="submit" { "Demote to v" (prev) }
                        }
                    }
                }
            }
            @if !p.runs.is_empty() {
                h3 #promotion-runs-heading { "Recent runs" }
                div.table-scroll role="region" aria-labelledby="promotion-runs-heading" tabindex="0" {
                    table.table.promotions {
                        thead { tr {
                            th scope="col" { "Run" }
                            th scope="col" { "Version" }
                            th scope="col" { "Status" }
                            th scope="col" { "Step or cause" }
                            th scope="col" { "Requested by" }
                            th scope="col" { "Approved by" }
                            th scope="col" { "Started" }
                            th scope="col" { "Ended" }
                        } }
                        tbody {
                            @for r in p.runs.iter().take(RUNS_SHOWN) {
                                tr data-promotion-id=(r.id) {
                                    th scope="row" { (r.kind) }
                                    td { "v" (r.version) }
                                    td { (status_badge(&r.status)) }
                                    td {
                                        @match (&r.error, &r.step) {
                                            (Some(e), _) => span.promotion-error { (e) },
                                            (None, Some(s)) => (s),
                                            (None, None) => span.muted { "—" },
                                        }
                                    }
                                    td { (user(r.requested_by.as_ref())) }
                                    td { (user(r.approved_by.as_ref())) }
                                    td { (time(r.created_at)) }
                                    td { (time_or(r.finished_at, "not yet")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
