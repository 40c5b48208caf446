//! `/metrics` as Prometheus reads it: every line is a Prometheus text-format line (a real parser,
//! `prometheus-parse`, plus the format's rules it does not check itself), under controller-runtime's,
//! digdirator's and portvakt's names, with values that follow what the passes did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use portvakt::controller::leader::WriteGate;
use portvakt::crd::{IDPortenClient, MaskinportenClient};
use portvakt::metrics::ProviderHooks;
use prometheus_parse::{LineInfo, Scrape, Value as Sample};
use serde_json::{Value, json};

use crate::support::{Env, NS, SIM_SCOPE, env, is_ready, spec, wait_until};

/// The parsed exposition: (metric name, sorted labels) → value, and each family's type.
pub struct Exposition {
    pub samples: BTreeMap<(String, String), f64>,
    pub types: BTreeMap<String, String>,
}

fn labels_key(labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    l.join(",")
}

impl Exposition {
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(&(name.to_string(), labels_key(labels)))
            .copied()
    }

    /// The value, or a panic listing the family's series.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let series: Vec<_> = self.samples.keys().filter(|(n, _)| n == name).collect();
            panic!(
                "no {name}{{{}}}; the family has {series:?}",
                labels_key(labels)
            )
        })
    }

    pub fn series(&self, name: &str) -> Vec<String> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// Parses `text` as Prometheus does (text format 0.0.4), failing on anything it would reject:
/// a line that is no comment, HELP, TYPE or sample; a family typed twice; a sample whose name
/// does not belong to the family typed last (a counter's samples carry the family's exact name,
/// a histogram's `_bucket`, `_sum`, `_count`).
pub fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                sample_type,
            } => {
                let family = metric_alias.unwrap_or(metric_name);
                let ty = format!("{sample_type:?}").to_lowercase();
                assert!(
                    types.insert(family.clone(), ty.clone()).is_none(),
                    "{family} is typed twice"
                );
                current = Some((family, ty));
            }
            LineInfo::Sample { metric_name, .. } => {
                let (family, ty) = current
                    .clone()
                    .unwrap_or_else(|| panic!("{metric_name}: a sample before any TYPE line"));
                let ok = match ty.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| metric_name == format!("{family}{s}")),
                    _ => metric_name == family,
                };
                assert!(ok, "{metric_name} is not a sample of the {ty} {family}");
            }
            LineInfo::Doc { .. } | LineInfo::Empty => {}
            LineInfo::Ignored => assert!(
                line.starts_with('#') && !line.starts_with("# TYPE") && !line.starts_with("# HELP"),
                "not a Prometheus text-format line: {line:?}"
            ),
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("prometheus-parse");
    let mut samples = BTreeMap::new();
    for s in scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let v = match s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
            Sample::Histogram(buckets) => {
                // The +Inf bucket: every observation.
                buckets.last().map_or(0.0, |b| b.count)
            }
            Sample::Summary(_) => continue,
        };
        samples.insert((s.metric, key), v);
    }
    Exposition { samples, types }
}

async fn create_namespace(env: &Env, name: &str) {
    let api: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// The earliest `exp` of the keys Digdir holds for the resource's client.
fn digdir_expiry(env: &Env, client_id: &str) -> f64 {
    env.sim
        .jwks(client_id)
        .and_then(|j| j["keys"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k["exp"].as_i64())
        .min()
        .expect("registered keys with exp") as f64
}

#[tokio::test]
async fn metrics_follow_the_passes_under_the_names_dashboards_use() {
    let mut env = env().await;
    create_namespace(&env, "team-b").await;
    let op = env.run();
    env.digdir.set_hooks(Arc::new(ProviderHooks {
        provider: "digdir",
        metrics: op.metrics.clone(),
        gate: WriteGate::open(env.clock.clone()),
    }));
    env.create_idp("app", spec("app-1")).await;
    env.create_mp(
        "mp",
        json!({"secretName": "mp-1", "scopes": {"consumes": [{"name": SIM_SCOPE}]}}),
    )
    .await;
    // In team-b: an IDPortenClient whose Secret someone else owns (it fails, stalled).
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken", "namespace": "team-b"}, "stringData": {"A": "b"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(env.client.clone(), "team-b")
        .create(&PostParams::default(), &theirs)
        .await
        .expect("foreign Secret");
    let idp_b: Api<IDPortenClient> = Api::namespaced(env.client.clone(), "team-b");
    let obj: IDPortenClient = serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "IDPortenClient",
        "metadata": {"name": "stuck", "namespace": "team-b"}, "spec": spec("taken"),
    }))
    .expect("obj");
    idp_b
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let app = env.wait_ready("app").await;
    let mp: Api<MaskinportenClient> = env.mp();
    wait_until("the MaskinportenClient Ready", async || {
        let o = mp.get("mp").await.expect("get");
        is_ready(o.metadata.generation, o.status.as_ref())
    })
    .await;
    wait_until("the stuck one reported", async || {
        op.metrics
            .render()
            .contains("controller_runtime_reconcile_errors_total{controller=\"idportenclient\"}")
    })
    .await;
    // A rotation (an event-counted action).
    env.annotate("app", "digdir.nais.io/rotate", "true").await;
    wait_until("the rotation", async || {
        env.idp()
            .get("app")
            .await
            .expect("get")
            .metadata
            .annotations
            .is_none_or(|a| !a.contains_key("digdir.nais.io/rotate"))
    })
    .await;

    let text = op.metrics.render();
    let m = parse(&text);
    // controller-runtime's names and labels.
    for controller in ["idportenclient", "maskinportenclient"] {
        assert!(
            m.value(
                "controller_runtime_reconcile_total",
                &[("controller", controller), ("result", "success")]
            ) >= 1.0
        );
        assert_eq!(
            m.value(
                "controller_runtime_max_concurrent_reconciles",
                &[("controller", controller)]
            ),
            4.0
        );
        assert!(
            m.get(
                "controller_runtime_active_workers",
                &[("controller", controller)]
            )
            .is_some()
        );
        assert!(
            m.value(
                "controller_runtime_reconcile_time_seconds",
                &[("controller", controller)]
            ) >= 1.0
        );
    }
    assert_eq!(m.types["controller_runtime_reconcile_total"], "counter");
    assert_eq!(
        m.types["controller_runtime_reconcile_time_seconds"],
        "histogram"
    );
    assert!(
        m.value(
            "controller_runtime_reconcile_errors_total",
            &[("controller", "idportenclient")]
        ) >= 1.0
    );
    assert_eq!(
        m.get(
            "controller_runtime_reconcile_errors_total",
            &[("controller", "maskinportenclient")]
        ),
        None
    );
    assert!(
        m.value(
            "portvakt_reconcile_failures_total",
            &[("kind", "IDPortenClient"), ("error", "secret_not_owned")]
        ) >= 1.0
    );

    // Resources by kind and Ready.
    assert_eq!(
        m.value(
            "portvakt_resources",
            &[("kind", "IDPortenClient"), ("ready", "true")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "portvakt_resources",
            &[("kind", "IDPortenClient"), ("ready", "false")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "portvakt_resources",
            &[("kind", "MaskinportenClient"), ("ready", "true")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "portvakt_resources",
            &[("kind", "MaskinportenClient"), ("ready", "unknown")]
        ),
        0.0
    );

    // Expiry: what Digdir says about the keys the app's Secret holds.
    let app_id = app
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .expect("client id");
    assert_eq!(
        m.value(
            "portvakt_credential_expiry_timestamp_seconds",
            &[
                ("kind", "IDPortenClient"),
                ("namespace", NS),
                ("name", "app")
            ]
        ),
        digdir_expiry(&env, &app_id)
    );
    assert_eq!(
        m.series("portvakt_credential_expiry_timestamp_seconds")
            .len(),
        2,
        "app and mp, not the stuck one: {:?}",
        m.series("portvakt_credential_expiry_timestamp_seconds")
    );

    // digdirator's counters, exactly its names, every namespace with resources at 0 at least.
    for family in [
        "idporten_client_created_count",
        "idporten_client_failed_processing_count",
        "idporten_client_failed_invalid_config_count",
        "maskinporten_client_created_count",
        "maskinporten_client_deleted_count",
        "maskinporten_scope_created_count",
        "maskinporten_scope_consumer_created_count",
    ] {
        assert_eq!(m.types[family], "counter", "{family}");
        let series: BTreeSet<String> = m.series(family).into_iter().collect();
        assert_eq!(
            series,
            BTreeSet::from([
                "namespace=default".to_string(),
                "namespace=team-b".to_string()
            ]),
            "{family}"
        );
    }
    assert!(
        !text.contains("maskinporten_client_failed_invalid_config_count"),
        "digdirator never registered it"
    );
    assert_eq!(
        m.value("idporten_client_created_count", &[("namespace", NS)]),
        1.0
    );
    assert_eq!(
        m.value("idporten_client_created_count", &[("namespace", "team-b")]),
        0.0
    );
    assert_eq!(
        m.value("idporten_client_rotated_count", &[("namespace", NS)]),
        1.0
    );
    assert!(m.value("idporten_client_processed_count", &[("namespace", NS)]) >= 2.0);
    assert!(
        m.value(
            "idporten_client_failed_processing_count",
            &[("namespace", "team-b")]
        ) >= 1.0
    );
    assert_eq!(
        m.value(
            "idporten_client_failed_processing_count",
            &[("namespace", NS)]
        ),
        0.0
    );
    assert_eq!(
        m.value("maskinporten_client_created_count", &[("namespace", NS)]),
        1.0
    );
    assert_eq!(m.value("idporten_client_total", &[]), 2.0);
    assert_eq!(m.value("maskinporten_client_total", &[]), 1.0);

    // Outbound calls by route and status class, with latency.
    assert_eq!(
        m.value(
            "portvakt_provider_requests_total",
            &[
                ("provider", "digdir"),
                ("method", "POST"),
                ("route", "/clients"),
                ("status", "2xx")
            ]
        ),
        2.0,
        "one create per client"
    );
    assert_eq!(
        m.value(
            "portvakt_provider_request_duration_seconds",
            &[
                ("provider", "digdir"),
                ("method", "POST"),
                ("route", "/clients")
            ]
        ),
        2.0
    );
    assert!(
        m.get(
            "portvakt_provider_requests_total",
            &[
                ("provider", "digdir"),
                ("method", "POST"),
                ("route", "/clients/:id/jwks"),
                ("status", "2xx")
            ]
        )
        .is_some()
    );
    assert_eq!(
        m.value("portvakt_provider_up", &[("provider", "digdir")]),
        1.0
    );
    // The benchmark's counters keep their names.
    assert!(m.value("portvakt_reconciles_total", &[]) >= 3.0);
    assert!(m.value("portvakt_keys_generated_total", &[]) >= 2.0);

    // A deletion: counted, and its series go.
    mp.delete("mp", &DeleteParams::default())
        .await
        .expect("delete");
    wait_until("the MaskinportenClient gone", async || {
        mp.get_opt("mp").await.expect("get").is_none()
    })
    .await;
    let m = parse(&op.metrics.render());
    assert_eq!(
        m.value("maskinporten_client_deleted_count", &[("namespace", NS)]),
        1.0
    );
    assert_eq!(
        m.get(
            "portvakt_credential_expiry_timestamp_seconds",
            &[
                ("kind", "MaskinportenClient"),
                ("namespace", NS),
                ("name", "mp")
            ]
        ),
        None
    );
}

/// A Digdir outage shows per route and status class, and in `portvakt_provider_up`.
#[tokio::test]
async fn provider_failures_show_by_status_class() {
    let mut env = env().await;
    env.sim.inject_fault(
        portvakt_sim::kube::FaultRule::status(500)
            .method("GET")
            .path("/api/v1/clients"),
    );
    let op = env.run();
    env.digdir.set_hooks(Arc::new(ProviderHooks {
        provider: "digdir",
        metrics: op.metrics.clone(),
        gate: WriteGate::open(env.clock.clone()),
    }));
    env.create_idp("app", spec("app-1")).await;
    wait_until("a failed pass", async || {
        parse(&op.metrics.render())
            .get(
                "portvakt_reconcile_failures_total",
                &[("kind", "IDPortenClient"), ("error", "digdir_server_error")],
            )
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    let m = parse(&op.metrics.render());
    assert!(
        m.value(
            "portvakt_provider_requests_total",
            &[
                ("provider", "digdir"),
                ("method", "GET"),
                ("route", "/clients"),
                ("status", "5xx")
            ]
        ) >= 1.0
    );
    assert_eq!(
        m.value("portvakt_provider_up", &[("provider", "digdir")]),
        0.0
    );
    env.sim.clear_faults();
    env.wait_ready("app").await;
    let m = parse(&op.metrics.render());
    assert_eq!(
        m.value("portvakt_provider_up", &[("provider", "digdir")]),
        1.0
    );
}

/// A refused write is never sent: with the gate closed (a replica that does not lead), Digdir sees
/// no write at all.
#[tokio::test]
async fn a_closed_gate_sends_no_provider_write() {
    let mut env = env().await;
    let op = env.run();
    env.digdir.set_hooks(Arc::new(ProviderHooks {
        provider: "digdir",
        metrics: op.metrics.clone(),
        gate: WriteGate::closed(env.clock.clone()),
    }));
    env.create_idp("app", spec("app-1")).await;
    let failed = env
        .wait_idp("app", "the create refused", |o| {
            crate::support::ready_condition(o)
                .is_some_and(|(s, _, m)| s == "False" && m.contains("leader Lease"))
        })
        .await;
    let writes: Vec<Value> = env
        .sim
        .journal()
        .iter()
        .filter(|c| c.method != "GET" && c.path.starts_with("/api/"))
        .map(|c| json!(format!("{} {}", c.method, c.path)))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(failed.status.is_some());
}

/// The Graph client has the Digdir client's hooks: its calls measured under `provider="entra"`
/// (ids out of the route), and no Graph write while this replica does not hold the leader Lease.
#[tokio::test]
async fn graph_calls_are_measured_and_a_closed_gate_sends_no_graph_write() {
    let mut env = env().await;
    env.start_entra(portvakt_sim::graph::GraphSeed::default())
        .await;
    let op = env.run();
    op.entra().graph.set_hooks(Arc::new(ProviderHooks {
        provider: "entra",
        metrics: op.metrics.clone(),
        gate: WriteGate::closed(env.clock.clone()),
    }));
    let mark = crate::support::graph_mark(env.graph_sim());
    env.create_aad(NS, "app", json!({"secretName": "app-azure"}))
        .await;
    let failed = env
        .wait_aad(NS, "app", "the create refused", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "False" && c.message.contains("leader Lease"))
        })
        .await;
    assert!(failed.status.is_some());
    let writes = crate::support::graph_writes_since(env.graph_sim(), mark);
    assert!(writes.is_empty(), "{writes:?}");

    let m = parse(&op.metrics.render());
    assert!(
        m.value(
            "portvakt_provider_requests_total",
            &[
                ("provider", "entra"),
                ("method", "GET"),
                ("route", "/applications"),
                ("status", "2xx")
            ]
        ) >= 1.0,
        "{:?}",
        m.series("portvakt_provider_requests_total")
    );
    assert!(
        m.series("portvakt_provider_requests_total")
            .iter()
            .filter(|l| l.contains("provider=entra"))
            .all(|l| !l.contains("method=PATCH") && !l.contains("method=POST")),
        "a refused write is not sent, so not counted as a call"
    );
}
