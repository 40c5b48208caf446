//! The kind seam proven by a kind that exists only here: `Widget` (group `test.portvakt.io`), whose
//! provider is an in-memory double. It runs through the shared wiring, finalizer, status, the one
//! Secret writer with its ownership rule, and the `--observe` report — without any Digdir code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{CustomResource, CustomResourceExt, Resource};
use portvakt::clock::Clock;
use portvakt::conditions;
use portvakt::controller::secret_store::AnnotationMode;
use portvakt::controller::{
    self, Applied, Context, Counters, Error, Kind, KindNames, KindStatus, Pass, Provider,
    RunOptions, Shared,
};
use portvakt::core::observe::Action;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::wait_until;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "test.portvakt.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    #[serde(rename = "secretName")]
    pub secret_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(
        rename = "observedGeneration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// The widget's ID at the (pretend) provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl KindStatus for WidgetStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

/// The test double: registrations in memory, every call recorded.
#[derive(Default)]
pub struct WidgetWorld {
    registered: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<String>>,
}

impl WidgetWorld {
    fn call(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Provider for WidgetWorld {
    fn name(&self) -> &'static str {
        "the widget world"
    }
}

const LABEL: &str = "widget.test.portvakt.io";

impl Kind for Widget {
    type Status = WidgetStatus;
    type Provider = WidgetWorld;
    const NAMES: KindNames = KindNames {
        finalizer: "test.portvakt.io/finalizer",
        legacy_finalizers: &[],
        consumed_annotations: &["test.portvakt.io/resync"],
        resync_annotation: "test.portvakt.io/resync",
        secret_type_label: LABEL,
    };

    fn status(&self) -> Option<&WidgetStatus> {
        self.status.as_ref()
    }

    fn validate(&self, _: &WidgetWorld) -> Result<(), Error> {
        portvakt::core::validation::dns1123_subdomain("spec.secretName", &self.spec.secret_name)
            .map_err(|(field, message)| Error::InvalidSpec { field, message })
    }

    async fn apply<'a>(pass: &'a Pass<'a, Self>) -> Result<Applied<WidgetStatus>, Error> {
        {
            let world = pass.provider;
            let id = {
                let mut reg = world.registered.lock().unwrap();
                match reg.get(&pass.name) {
                    Some(id) => id.clone(),
                    None => {
                        let id = format!("widget-{}", reg.len() + 1);
                        reg.insert(pass.name.clone(), id.clone());
                        world.call(format!("register {}", pass.name));
                        id
                    }
                }
            };
            let existing = pass.get_owned_secret(&pass.obj.spec.secret_name).await?;
            let desired = Secret {
                metadata: ObjectMeta {
                    name: Some(pass.obj.spec.secret_name.clone()),
                    namespace: Some(pass.namespace.clone()),
                    labels: Some(BTreeMap::from([("type".into(), LABEL.into())])),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "test.portvakt.io/v1".into(),
                        kind: "Widget".into(),
                        name: pass.name.clone(),
                        uid: pass.obj.meta().uid.clone().unwrap_or_default(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    "WIDGET_ID".into(),
                    ByteString(id.clone().into_bytes()),
                )])),
                ..Default::default()
            };
            if existing
                .as_ref()
                .is_none_or(|s| portvakt::core::secret_content::needs_write(s, &desired))
            {
                pass.write_secret(existing.as_ref(), &desired, AnnotationMode::Merge)
                    .await?;
            }
            let mut st = pass.obj.status.clone().unwrap_or_default();
            st.id = Some(id);
            conditions::ready(
                &mut st.conditions,
                "the widget is registered",
                pass.generation(),
                pass.shared.clock.now(),
            );
            st.observed_generation = pass.generation();
            let changed = pass.obj.status.as_ref() != Some(&st);
            Ok(Applied {
                status: changed.then_some(st),
                requeue: None,
                changes: Vec::new(),
                complete: true,
            })
        }
    }

    async fn cleanup<'a>(pass: &'a Pass<'a, Self>) -> Result<(), Error> {
        {
            let removed = pass.provider.registered.lock().unwrap().remove(&pass.name);
            if removed.is_some() {
                pass.provider.call(format!("unregister {}", pass.name));
            }
            Ok(())
        }
    }

    async fn observe<'a>(pass: &'a Pass<'a, Self>) -> Result<Vec<Action>, Error> {
        {
            let known = pass
                .provider
                .registered
                .lock()
                .unwrap()
                .contains_key(&pass.name);
            Ok(if known { vec![] } else { vec![Action::Create] })
        }
    }

    fn failure_status(
        prev: Option<&WidgetStatus>,
        generation: Option<i64>,
        now: Timestamp,
        reason: &str,
        message: &str,
    ) -> WidgetStatus {
        let mut st = prev.cloned().unwrap_or_default();
        conditions::not_ready(&mut st.conditions, reason, message, generation, now);
        st
    }
}

struct World {
    client: kube::Client,
    ctx: Arc<Context>,
    widgets: Arc<WidgetWorld>,
    shutdown: CancellationToken,
    _server: portvakt_sim::kube::ApiServer,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn world() -> World {
    let clock = Clock::system();
    let server = portvakt_sim::kube::ApiServer::new(clock.clone());
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("install the Widget CRD");
    let widgets = Arc::new(WidgetWorld::default());
    let ctx = Arc::new(
        Context::new(Shared::new(client.clone(), clock, "test-cluster"))
            .with_provider(widgets.clone()),
    );
    World {
        client,
        ctx,
        widgets,
        shutdown: CancellationToken::new(),
        _server: server,
    }
}

impl World {
    fn run(&self) {
        let opts = RunOptions {
            concurrency: 2,
            resync_period: Duration::from_secs(3600),
            shutdown: self.shutdown.clone(),
            ..RunOptions::default()
        };
        tokio::spawn(controller::run_kinds(
            self.ctx.clone(),
            vec![controller::entry::<Widget>()],
            opts,
        ));
    }
    fn api(&self) -> Api<Widget> {
        Api::namespaced(self.client.clone(), "default")
    }
    async fn create(&self, name: &str, secret: &str) {
        let w = Widget::new(
            name,
            WidgetSpec {
                secret_name: secret.into(),
            },
        );
        self.api()
            .create(&PostParams::default(), &w)
            .await
            .expect("create Widget");
    }
    async fn ready(&self, name: &str) -> Option<Widget> {
        let w = self.api().get_opt(name).await.expect("get")?;
        let st = w.status.as_ref()?;
        (conditions::is_ready(&st.conditions, w.metadata.generation)
            && st.observed_generation == w.metadata.generation)
            .then_some(w)
    }
}

#[tokio::test]
async fn a_kind_without_any_digdir_code_runs_through_the_shared_seam() {
    let w = world().await;
    w.run();
    w.create("one", "one-secret").await;
    wait_until("Ready", async || w.ready("one").await.is_some()).await;
    let obj = w.ready("one").await.expect("ready");
    assert_eq!(
        obj.metadata.finalizers.as_deref(),
        Some(&["test.portvakt.io/finalizer".to_string()][..]),
        "the shared finalizer step"
    );
    assert_eq!(
        obj.status.as_ref().and_then(|s| s.id.as_deref()),
        Some("widget-1")
    );
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), "default");
    let s = secrets
        .get("one-secret")
        .await
        .expect("the Secret the shared writer wrote");
    assert_eq!(s.data.as_ref().unwrap()["WIDGET_ID"].0, b"widget-1");
    assert_eq!(Counters::get(&w.ctx.counters.secret_writes), 1);
    assert_eq!(w.widgets.calls(), ["register one"]);

    // The shared observe report, reading only.
    w.create("two", "two-secret").await;
    wait_until("two Ready", async || w.ready("two").await.is_some()).await;
    let report = controller::observe_kinds(
        &w.ctx,
        &[controller::entry::<Widget>()],
        &RunOptions::default(),
    )
    .await
    .expect("observe");
    let text = report.to_string();
    assert!(text.contains("Widget default/one: unchanged"), "{text}");
    assert_eq!(report.resources.len(), 2);

    // The shared deletion: the kind's cleanup once, then the finalizer removed.
    w.api()
        .delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("deleted", async || {
        w.api().get_opt("one").await.expect("get").is_none()
    })
    .await;
    assert_eq!(
        w.widgets.calls(),
        ["register one", "register two", "unregister one"]
    );
}

#[tokio::test]
async fn the_shared_rules_hold_for_any_kind_a_bad_spec_and_a_foreign_secret() {
    let w = world().await;
    // A Secret of that name that someone else owns.
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), "default");
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken", "namespace": "default"},
        "data": {"x": "eQ=="}
    }))
    .expect("Secret");
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .expect("foreign Secret");
    w.run();
    w.create("bad", "Bad_Name").await;
    w.create("blocked", "taken").await;
    let reason = async |name: &str| {
        let o = w.api().get_opt(name).await.ok()??;
        let st = o.status?;
        let c = conditions::find(&st.conditions, "Ready")?;
        (st.observed_generation == o.metadata.generation && c.status == "False")
            .then(|| (c.reason.clone(), c.message.clone()))
    };
    wait_until("InvalidSpec", async || {
        reason("bad")
            .await
            .is_some_and(|(r, m)| r == "InvalidSpec" && m.contains("spec.secretName"))
    })
    .await;
    wait_until("SecretNotOwned", async || {
        reason("blocked")
            .await
            .is_some_and(|(r, _)| r == "SecretNotOwned")
    })
    .await;
    // Validation comes before the provider: the bad one never reached it. The blocked one did
    // register (its Secret is checked in its own step), but its foreign Secret is untouched.
    assert!(!w.widgets.calls().contains(&"register bad".to_string()));
    let still = secrets.get("taken").await.expect("foreign Secret");
    assert_eq!(still.data, foreign.data);
}
