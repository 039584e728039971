//! `TemplatePromotion` on a real Temporal dev server with real activities: canaries are real
//! containers from the base image with the static agent, the catalog is a real database. Each
//! history it produces is replayed (and saved with BURSTFLARE_RECORD_HISTORIES=1).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use activities::{ControlActivities, NodeActivities};
use domain::ids::{DisplayName, Email};
use domain::store::{NewPromotion, Store, TemplateRecord, User, VersionRecord, now_ms};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowHistory, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_sdk::{Runtime, Worker};
use testkit::temporal::TestTemporal;
use workflows::{Canary, PromotionInput, PromotionOutcome, TemplatePromotion};

const QUEUE: &str = "test-promotion";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn agent_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent")
}

/// A built version of `template` whose image is `image`.
async fn built(store: &Store, t: &TemplateRecord, by: &User, image: &str) -> VersionRecord {
    let v = store
        .create_draft_version(&t.id, 1234, SHA, now_ms() + 600_000, &by.id, |id| {
            format!("bundles/{id}.tar.zst")
        })
        .await
        .unwrap();
    let manifest = serde_json::json!({ "schema": 1, "name": t.name }).to_string();
    let v = store.accept_upload(&v.id, &manifest).await.unwrap();
    store.set_version_status(&v.id, "built", Some((image, "sha256:abc"))).await.unwrap()
}

struct Env {
    client: Client,
    store: Store,
    user: User,
    template: TemplateRecord,
}

impl Env {
    fn input(&self, v: &VersionRecord, kind: &str, canary: Option<Canary>) -> PromotionInput {
        PromotionInput {
            promotion_id: uuid::Uuid::now_v7().to_string(),
            workspace_id: self.template.workspace_id.to_string(),
            template_id: self.template.id.to_string(),
            version_id: v.id.to_string(),
            image: v.image_ref.clone().unwrap(),
            kind: kind.into(),
            canary,
            requires_approval: false,
            approval_timeout_secs: 300,
            requested_by: Some(self.user.id.to_string()),
        }
    }

    async fn start(&self, input: &PromotionInput) -> String {
        let workflow_id = format!("promote-{}", self.template.id);
        let new = NewPromotion {
            id: &input.promotion_id,
            workspace: &self.template.workspace_id,
            template: &self.template.id,
            version: &domain::ids::TemplateVersionId::parse(&input.version_id).unwrap(),
            workflow_id: &workflow_id,
            kind: &input.kind,
            requested_by: &self.user.id,
            at: now_ms(),
        };
        self.store.create_promotion(&new).await.unwrap();
        self.client
            .start_workflow(
                TemplatePromotion::run,
                input.clone(),
                WorkflowStartOptions::new(QUEUE, workflow_id.clone()).build(),
            )
            .await
            .unwrap();
        workflow_id
    }

    async fn finish(&self, workflow_id: &str, save_as: Option<&str>) -> PromotionOutcome {
        let handle = self.client.get_workflow_handle::<TemplatePromotion>(workflow_id.to_string());
        let out = tokio::time::timeout(
            Duration::from_secs(300),
            handle.get_result(WorkflowGetResultOptions::default()),
        )
        .await
        .expect("the promotion finishes")
        .unwrap();
        let json =
            handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
        workflows::replayer()
            .unwrap()
            .replay_workflow(WorkflowHistory::from_json(&json).unwrap())
            .await
            .unwrap();
        if let (Some(name), Some(_)) = (save_as, std::env::var_os("BURSTFLARE_RECORD_HISTORIES")) {
            std::fs::write(crate::replay::histories_dir().join(format!("{name}.json")), &json)
                .unwrap();
        }
        out
    }

    async fn active(&self) -> Option<String> {
        let doc = self.store.catalog().await.unwrap();
        doc.entries.iter().find(|e| e.template_id == self.template.id.as_str()).map(|e| {
            assert_eq!(doc.revision, e.revision.max(doc.revision));
            e.version.clone()
        })
    }
}

fn canary(smoke: &str) -> Option<Canary> {
    Some(Canary {
        env: vec![],
        cpu_millis: 500,
        memory_mb: 256,
        smoke: Some(smoke.into()),
        smoke_timeout_secs: 30,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_canary_wait_for_approval_update_the_catalog_and_roll_back() {
    let temporal = TestTemporal::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await.unwrap();
    store.migrate().await.unwrap();
    let (user, ws) = store
        .create_user_with_personal_workspace(
            &Email::parse("admin@example.com").unwrap(),
            &DisplayName::parse("Admin").unwrap(),
        )
        .await
        .unwrap();
    let template = store.create_template(&ws.id, "web", "", &user.id).await.unwrap();
    let docker = bollard::Docker::connect_with_unix_defaults().unwrap();
    let node_id = "p1";
    store.heartbeat_node(node_id, "test", None, None).await.unwrap();
    // Keep this host online (and the ghost, once it appears) for as long as the test runs.
    let beats = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = store.heartbeat_node("p1", "test", None, None).await;
            }
        }
    });

    let conn = loop {
        match Connection::connect(
            ConnectionOptions::new(Url::from_str(&temporal.address).unwrap()).build(),
        )
        .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let client = Client::new(conn, ClientOptions::new("default").build()).unwrap();
    let runtime = Runtime::from_current_tokio(Default::default()).unwrap();
    // The Cloudflare target: each catalog change is rendered and checked with the pinned
    // wrangler's dry run (no credentials: never deployed).
    let cf_dir = dir.path().join("cloudflare");
    let cloudflare = activities::promotion::CloudflarePublisher {
        bundle_dir: cf_dir.clone(),
        wrangler_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/cloudflare"),
        target: deploy::cloudflare::CloudflareTarget {
            worker_name: "burstflare-test".into(),
            account_id: None,
            max_instances: 2,
        },
        credentials: None,
    };
    let published = || deploy::publish::published_revision(&cf_dir);
    let mut control = Worker::new(
        &runtime,
        client.clone(),
        workflows::control_worker_options(
            QUEUE,
            ControlActivities::new(store.clone()).with_cloudflare(cloudflare.clone()),
        )
        .unwrap(),
    )
    .unwrap();
    let settings = activities::runtime::DockerRuntimeSettings {
        agent_path: agent_path(),
        data_dir: dir.path().join("sessions"),
        runtime_secret: Vec::new(),
    };
    let provider =
        std::sync::Arc::new(activities::runtime::DockerRuntime::new(docker.clone(), settings));
    let mut node = Worker::new(
        &runtime,
        client.clone(),
        workflows::node_worker_options(
            node_id,
            NodeActivities::new(node_id.into(), docker.clone(), provider),
        ),
    )
    .unwrap();
    let stops = [control.shutdown_handle(), node.shutdown_handle()];
    let env = Env { client: client.clone(), store: store.clone(), user, template };
    let base = "burstflare/base:latest";

    let scenario = async {
        // A good version: canary up, smoke passes, catalog revision, rolled out.
        let v1 = built(&env.store, &env.template, &env.user, base).await;
        let id = env.start(&env.input(&v1, "promote", canary("test -x /bin/sh"))).await;
        let out = env.finish(&id, Some("promotion_succeeded")).await;
        assert_eq!(out.status, "succeeded", "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("1"));
        assert_eq!(env.store.catalog().await.unwrap().revision, out.revision.unwrap());
        assert_eq!(published(), out.revision, "the Cloudflare bundle has the new revision");

        // A broken version: its smoke command fails; nothing changes and the cause is kept.
        let v2 = built(&env.store, &env.template, &env.user, base).await;
        let input = env.input(&v2, "promote", canary("echo broken; exit 3"));
        let id = env.start(&input).await;
        let out = env.finish(&id, None).await;
        assert_eq!(out.status, "failed");
        assert!(out.error.as_deref().unwrap().contains("exited with code 3"), "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("1"), "the previous version stays");
        let row = env.store.promotion(&input.promotion_id).await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.error.is_some()), ("failed", true));

        // An image that cannot be had fails at the canary too.
        let v3 = built(&env.store, &env.template, &env.user, "127.0.0.1:9/missing:v1").await;
        let out =
            env.finish(&env.start(&env.input(&v3, "promote", canary("true"))).await, None).await;
        assert_eq!(out.status, "failed", "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("1"));

        // Approval: the promotion waits; a second one of the same template is refused while
        // it runs; the approval lets it finish.
        let v4 = built(&env.store, &env.template, &env.user, base).await;
        let mut input = env.input(&v4, "promote", None);
        input.requires_approval = true;
        let id = env.start(&input).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let row = env.store.promotion(&input.promotion_id).await.unwrap().unwrap();
            if row.status == "awaiting_approval" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{row:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let again = env
            .client
            .start_workflow(
                TemplatePromotion::run,
                env.input(&v4, "promote", None),
                WorkflowStartOptions::new(QUEUE, id.clone()).build(),
            )
            .await;
        assert!(again.is_err(), "one promotion per template at a time");
        assert_eq!(env.active().await.as_deref(), Some("1"), "nothing changes before approval");
        env.client
            .get_workflow_handle::<TemplatePromotion>(id.clone())
            .signal(
                TemplatePromotion::approve,
                env.user.id.to_string(),
                WorkflowSignalOptions::default(),
            )
            .await
            .unwrap();
        let out = env.finish(&id, Some("promotion_approved")).await;
        assert_eq!(out.status, "succeeded", "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("4"));

        // Nobody approves in time: cancelled, catalog untouched.
        let mut input = env.input(&v1, "promote", None);
        input.requires_approval = true;
        input.approval_timeout_secs = 1;
        let out = env.finish(&env.start(&input).await, None).await;
        assert_eq!(out.status, "cancelled", "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("4"));

        // A runtime host that never answers fails the rollout: the previous version comes back.
        env.store.heartbeat_node("ghost", "test", None, None).await.unwrap();
        let out = env
            .finish(
                &env.start(&env.input(&v1, "rollback", None)).await,
                Some("promotion_rolled_back"),
            )
            .await;
        assert_eq!(out.status, "rolled_back", "{out:?}");
        assert!(out.error.as_deref().unwrap().contains("ghost"), "{out:?}");
        assert_eq!(env.active().await.as_deref(), Some("4"), "the previous version is back");
        assert_eq!(published(), out.revision, "and published again");

        // Archive: the template offers no new sessions and leaves the catalog and the target.
        let input = env.input(&v4, "archive", None);
        let out = env.finish(&env.start(&input).await, Some("promotion_archived")).await;
        assert_eq!((out.status.as_str(), out.error.as_deref()), ("succeeded", None), "{out:?}");
        assert_eq!(env.active().await, None);
        let t = env.store.template_by_id(&env.template.workspace_id, &env.template.id).await;
        assert!(t.unwrap().unwrap().archived_at.is_some());
        assert_eq!(published(), out.revision);
        let config = std::fs::read_to_string(cf_dir.join(deploy::cloudflare::CONFIG_FILE)).unwrap();
        assert!(config.contains("deleted_classes"), "{config}");
        let audit = env.store.list_audit(&env.template.workspace_id, 100, None).await;
        let actions: Vec<String> = audit.unwrap().into_iter().map(|a| a.action).collect();
        assert!(actions.iter().any(|a| a == "template.archived"), "{actions:?}");
        assert!(actions.iter().any(|a| a == "template.archive.succeeded"), "{actions:?}");

        for stop in &stops {
            stop();
        }
    };
    let ((), a, b) = tokio::join!(scenario, control.run(), node.run());
    beats.abort();
    a.unwrap();
    b.unwrap();
}
