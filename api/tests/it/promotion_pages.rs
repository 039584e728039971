//! The Promotion card of a template's page and its forms (Promote, Approve), with promotion
//! rows written through the store as the TemplatePromotion workflow writes them. No Temporal
//! here: a promote that cannot start its workflow says so and leaves a failed run, not a stuck
//! one. The real runs are in promotions.rs.

use domain::ids::Slug;
use domain::store::{NewPromotion, PromotionUpdate};
use serde_json::json;

use crate::browserish::Browser;
use crate::shell::{api_with_storage, join_as, seed_template, submit};

fn html_of(r: &crate::browserish::Reply) -> String {
    r.body.as_str().unwrap_or_else(|| panic!("not a page: {:?}", r.body)).to_string()
}

/// The form targets inside the Promotion card.
fn card_forms(html: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let forms = scraper::Selector::parse("#promotion form").unwrap();
    doc.select(&forms).map(|f| f.value().attr("action").unwrap().to_string()).collect()
}

async fn page(b: &mut Browser) -> String {
    let r = b.get("/w/team/templates/web-app").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    html_of(&r)
}

#[tokio::test]
async fn the_promotion_card_offers_its_forms_to_promoters_only_and_approve_to_another_one() {
    let (api, _s3) = api_with_storage().await;
    let mut owner = api.browser();
    owner.sign_up("promo-owner@example.com", "Owner").await;
    owner.load_csrf(&api).await;
    owner.post("/api/v1/workspaces", json!({"name": "Team", "slug": "team"})).await;
    seed_template(&api, "team", "promo-owner@example.com", "web-app").await;
    let mut admin = join_as(&api, &mut owner, "team", "promo-admin@example.com", "admin").await;
    let mut member = join_as(&api, &mut owner, "team", "promo-member@example.com", "member").await;
    let base = "/w/team/templates/web-app";

    // Not promoted yet: the owner may promote or roll back to v1 (its only built version).
    let html = page(&mut owner).await;
    assert!(html.contains(r#"<h2 id="promotion-heading">Promotion</h2>"#), "{html}");
    assert!(html.contains("not promoted"));
    assert_eq!(card_forms(&html), [format!("{base}/promote"), format!("{base}/rollback")]);
    assert!(html.contains(r#"<option value="1">v1</option>"#));
    // A member sees the card, no forms, and is refused the post.
    let html = page(&mut member).await;
    assert!(html.contains("promotion-heading") && card_forms(&html).is_empty());
    let (status, ..) = submit(&member, &format!("{base}/promote"), &[("version", "1")], true).await;
    assert_eq!(status, 403);
    // Without the CSRF field nothing happens either.
    let (status, ..) = submit(&owner, &format!("{base}/promote"), &[("version", "1")], false).await;
    assert_eq!(status, 403);
    let store = &api.state.store;
    let ws = store.workspace_by_slug(&Slug::parse("team").unwrap()).await.unwrap().unwrap();
    let t = store.template_by_name(&ws.id, "web-app").await.unwrap().unwrap();
    assert!(store.promotions_of_template(&t.id, 10).await.unwrap().is_empty());

    // The owner's promote reaches the API, which cannot reach Temporal here: back to the card
    // with the reason, and nothing recorded.
    let (status, location, flash, _) =
        submit(&owner, &format!("{base}/promote"), &[("version", "1")], true).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/w/team/templates/web-app#promotion"));
    assert!(
        flash.as_deref().unwrap_or_default().contains("Temporal is not reachable"),
        "{flash:?}"
    );
    assert!(store.promotions_of_template(&t.id, 10).await.unwrap().is_empty());

    // A run awaiting approval, asked for by the owner: the owner is told another promoter must
    // approve; the admin gets the Approve button and the live progress; nobody can promote.
    let versions = store.versions_of(&t.id).await.unwrap();
    let v1 = versions.iter().find(|v| v.status == "built").unwrap().id.clone();
    let owner_id = store
        .user_by_email(&domain::ids::Email::parse("promo-owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let wf = format!("promote-{}", t.id);
    let waiting = "p-waiting";
    store
        .create_promotion(&NewPromotion {
            id: waiting,
            workspace: &ws.id,
            template: &t.id,
            version: &v1,
            workflow_id: &wf,
            kind: "promote",
            requested_by: &owner_id,
            at: domain::store::now_ms(),
        })
        .await
        .unwrap();
    let update = PromotionUpdate {
        status: Some("awaiting_approval"),
        step: Some("awaiting approval"),
        error: None,
        progress: None,
        at: domain::store::now_ms(),
    };
    store.update_promotion(waiting, &update).await.unwrap();
    let html = page(&mut owner).await;
    assert!(card_forms(&html).is_empty(), "{:?}", card_forms(&html));
    assert!(html.contains("another owner or admin must approve it"));
    let html = page(&mut admin).await;
    assert_eq!(card_forms(&html), [format!("/w/team/promotions/{waiting}/approve")]);
    assert!(html.contains(r#"data-promotion="/api/v1/workspaces/team/promotions/p-waiting""#));
    assert!(html.contains(web::PROMOTION_JS_PATH));
    // The owner's own approval is refused by the four-eyes rule, and changes nothing.
    let (status, location, flash, _) =
        submit(&owner, &format!("/w/team/promotions/{waiting}/approve"), &[], true).await;
    assert_eq!((status, location.as_deref()), (303, Some("/w/team/templates/web-app#promotion")));
    assert!(flash.as_deref().unwrap_or_default().contains("four-eyes"), "{flash:?}");
    let row = store.promotion(waiting).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.approved_by.as_ref()), ("awaiting_approval", None));
    // A member's is refused by the route; another workspace's promotion is not found.
    let (status, ..) =
        submit(&member, &format!("/w/team/promotions/{waiting}/approve"), &[], true).await;
    assert_eq!(status, 403);
    let (status, ..) = submit(&admin, "/w/team/promotions/p-nope/approve", &[], true).await;
    assert_eq!(status, 404);
}
