//! The chart's RBAC against what the operator calls: every call portvakt makes (listed from the code below, or
//! read from an API server's journal with [`permission_of`]) must be granted to the ServiceAccount the
//! Deployment runs as, and no more widely than needed (the leader Lease only in the release namespace).
//! Judged three ways: by the rendered rules, by a real run's journal on the embedded server
//! ([`assert_journal_is_granted`], for the end-to-end suite too), and by a real kube-apiserver's RBAC
//! authorizer (SubjectAccessReview) with the chart installed.

use portvakt_sim::fault::CallRecord;
use serde_json::Value;

use crate::chart::{Helm, ci_values};

/// One request as RBAC sees it: `verb` on `group`/`resource` (`secrets`, `idportenclients/status`), in a
/// namespace or cluster-wide (`None`: a list or watch across namespaces, or a cluster-scoped object).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub namespace: Option<String>,
}

/// Where a call is made.
#[derive(Clone, Copy, Debug)]
enum Scope {
    /// Across namespaces (`Api::all`).
    Cluster,
    /// In the namespace of whatever resource is reconciled: any.
    AnyNamespace,
    /// In the operator's own namespace (`POD_NAMESPACE`).
    OwnNamespace,
}

/// Every call of the operator, from the code: (group, resource, verbs, scope, where).
const OPERATOR_CALLS: &[(&str, &str, &[&str], Scope, &str)] = &[
    (
        "nais.io",
        "azureadapplications",
        &["list"],
        Scope::Cluster,
        "controller/mod.rs count_unhandled: the resources of kinds no enabled controller handles, counted at start (metadata only)",
    ),
    (
        "nais.io",
        "idportenclients",
        &["list", "watch"],
        Scope::Cluster,
        "controller/wiring.rs watcher(Api::all); controller/observe.rs Api::all().list",
    ),
    (
        "nais.io",
        "maskinportenclients",
        &["list", "watch"],
        Scope::Cluster,
        "the same for MaskinportenClient",
    ),
    (
        "nais.io",
        "idportenclients",
        &["get", "patch"],
        Scope::AnyNamespace,
        "controller/pass.rs finalizer add/remove (re-read on 409), consume_annotations; digdir_kinds/periodic.rs",
    ),
    (
        "nais.io",
        "maskinportenclients",
        &["get", "patch"],
        Scope::AnyNamespace,
        "the same for MaskinportenClient",
    ),
    (
        "nais.io",
        "idportenclients/status",
        &["get", "patch"],
        Scope::AnyNamespace,
        "controller/pass.rs failure report (get_status), patch_status",
    ),
    (
        "nais.io",
        "maskinportenclients/status",
        &["get", "patch"],
        Scope::AnyNamespace,
        "the same for MaskinportenClient",
    ),
    (
        "nais.io",
        "idportenclients/finalizers",
        &["update"],
        Scope::AnyNamespace,
        "core/digdir/app_secret.rs: the Secrets' owner reference has blockOwnerDeletion (OwnerReferencesPermissionEnforcement)",
    ),
    (
        "nais.io",
        "maskinportenclients/finalizers",
        &["update"],
        Scope::AnyNamespace,
        "the same for MaskinportenClient",
    ),
    (
        "nais.io",
        "azureadapplications",
        &["list", "watch"],
        Scope::Cluster,
        "the same for AzureAdApplication (also controller/mod.rs count_unhandled, metadata list)",
    ),
    (
        "nais.io",
        "azureadapplications",
        &["get", "patch"],
        Scope::AnyNamespace,
        "the same for AzureAdApplication; entra_kinds/periodic.rs resync requests (read, then patch)",
    ),
    (
        "nais.io",
        "azureadapplications/status",
        &["get", "patch"],
        Scope::AnyNamespace,
        "the same for AzureAdApplication",
    ),
    (
        "nais.io",
        "azureadapplications/finalizers",
        &["update"],
        Scope::AnyNamespace,
        "core/entra/secret.rs: the Secret's owner reference has blockOwnerDeletion",
    ),
    (
        "",
        "secrets",
        &["list", "watch"],
        Scope::Cluster,
        "controller/wiring.rs metadata watcher of owned Secrets (Api::all)",
    ),
    (
        "",
        "secrets",
        &["get", "list", "create", "update", "delete"],
        Scope::AnyNamespace,
        "controller/secret_store.rs get/list/create/replace/delete",
    ),
    (
        "events.k8s.io",
        "events",
        &["create", "patch"],
        Scope::AnyNamespace,
        "controller/events.rs: create, then patch for a series",
    ),
    (
        "",
        "events",
        &["create", "patch"],
        Scope::AnyNamespace,
        "core events, as older recorders write them",
    ),
    (
        "",
        "pods",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "apps",
        "replicasets",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "apps",
        "deployments",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "apps",
        "statefulsets",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "apps",
        "daemonsets",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "batch",
        "jobs",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "batch",
        "cronjobs",
        &["list"],
        Scope::AnyNamespace,
        "controller/workload_scan.rs",
    ),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update", "patch"],
        Scope::OwnNamespace,
        "leader election on the Lease PORTVAKT_LEADER_ELECTION_LEASE_NAME in POD_NAMESPACE",
    ),
];

/// The permission an API request needs (`None` for discovery, OpenAPI, /version and other non-resource paths).
pub fn permission_of(method: &str, path: &str, query: &str) -> Option<Permission> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        ["namespaces", name] => (None, &["namespaces", *name][..]),
        rest => (None, rest),
    };
    let (resource, named) = match rest {
        [] => return None,
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watch = form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let verb = match (method, named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(Permission {
        group: group.to_string(),
        resource,
        verb: verb.to_string(),
        namespace,
    })
}

/// The permissions a journal's requests needed.
pub fn journal_permissions(calls: &[CallRecord]) -> Vec<Permission> {
    let mut all: Vec<Permission> = calls
        .iter()
        .filter_map(|c| permission_of(c.method.as_str(), &c.path, &c.query))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The rules the chart grants the operator's ServiceAccount: cluster-wide (ClusterRoles bound by a
/// ClusterRoleBinding) and per namespace (Roles bound by a RoleBinding).
pub struct Grants {
    cluster: Vec<Value>,
    namespaced: Vec<(String, Value)>,
}

impl Grants {
    /// From rendered objects, for the ServiceAccount `sa` in `namespace`.
    pub fn of(objects: &[Value], sa: &str, namespace: &str) -> Grants {
        let binds_sa = |binding: &Value| {
            binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == namespace
                })
        };
        let rules_of = |kind: &str, name: &Value, ns: Option<&Value>| -> Vec<Value> {
            objects
                .iter()
                .filter(|o| {
                    o["kind"] == kind
                        && &o["metadata"]["name"] == name
                        && ns.is_none_or(|n| &o["metadata"]["namespace"] == n)
                })
                .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
                .collect()
        };
        let mut grants = Grants {
            cluster: vec![],
            namespaced: vec![],
        };
        for b in objects.iter().filter(|o| binds_sa(o)) {
            let role = &b["roleRef"]["name"];
            match (b["kind"].as_str(), b["roleRef"]["kind"].as_str()) {
                (Some("ClusterRoleBinding"), Some("ClusterRole")) => {
                    grants.cluster.extend(rules_of("ClusterRole", role, None))
                }
                (Some("RoleBinding"), role_kind) => {
                    let ns = b["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let rules = match role_kind {
                        Some("ClusterRole") => rules_of("ClusterRole", role, None),
                        _ => rules_of("Role", role, Some(&b["metadata"]["namespace"])),
                    };
                    grants
                        .namespaced
                        .extend(rules.into_iter().map(|r| (ns.clone(), r)));
                }
                _ => {}
            }
        }
        grants
    }

    fn rule_allows(rule: &Value, p: &Permission) -> bool {
        let has = |field: &str, want: &str| {
            rule[field]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v == want || v == "*")
        };
        rule.get("resourceNames").is_none()
            && has("apiGroups", &p.group)
            && has("resources", &p.resource)
            && has("verbs", &p.verb)
    }

    pub fn allows(&self, p: &Permission) -> bool {
        self.cluster.iter().any(|r| Self::rule_allows(r, p))
            || p.namespace.as_ref().is_some_and(|ns| {
                self.namespaced
                    .iter()
                    .any(|(rule_ns, r)| rule_ns == ns && Self::rule_allows(r, p))
            })
    }
}

fn operator_permissions(own_namespace: &str) -> Vec<(Permission, &'static str)> {
    let mut all = Vec::new();
    for (group, resource, verbs, scope, source) in OPERATOR_CALLS {
        let namespace = match scope {
            Scope::Cluster => None,
            Scope::AnyNamespace => Some("team-a".to_string()),
            Scope::OwnNamespace => Some(own_namespace.to_string()),
        };
        for verb in *verbs {
            all.push((
                Permission {
                    group: group.to_string(),
                    resource: resource.to_string(),
                    verb: verb.to_string(),
                    namespace: namespace.clone(),
                },
                *source,
            ));
        }
    }
    all
}

#[test]
fn api_requests_translate_to_the_permissions_rbac_checks() {
    let p = |method, path, query| permission_of(method, path, query);
    let perm = |group: &str, resource: &str, verb: &str, ns: Option<&str>| {
        Some(Permission {
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
            namespace: ns.map(str::to_string),
        })
    };
    assert_eq!(
        p(
            "GET",
            "/apis/nais.io/v1/idportenclients",
            "watch=true&resourceVersion=5"
        ),
        perm("nais.io", "idportenclients", "watch", None)
    );
    assert_eq!(
        p("GET", "/api/v1/secrets", "labelSelector=type%3Ddigdirator"),
        perm("", "secrets", "list", None)
    );
    assert_eq!(
        p(
            "PATCH",
            "/apis/nais.io/v1/namespaces/a/maskinportenclients/x/status",
            ""
        ),
        perm("nais.io", "maskinportenclients/status", "patch", Some("a"))
    );
    assert_eq!(
        p("PUT", "/api/v1/namespaces/a/secrets/s", ""),
        perm("", "secrets", "update", Some("a"))
    );
    assert_eq!(
        p("POST", "/apis/events.k8s.io/v1/namespaces/a/events", ""),
        perm("events.k8s.io", "events", "create", Some("a"))
    );
    assert_eq!(
        p("DELETE", "/api/v1/namespaces/a/secrets", ""),
        perm("", "secrets", "deletecollection", Some("a"))
    );
    assert_eq!(
        p("GET", "/api/v1/namespaces/a", ""),
        perm("", "namespaces", "get", None)
    );
    for discovery in [
        "/api",
        "/apis",
        "/apis/nais.io/v1",
        "/version",
        "/openapi/v3",
    ] {
        assert_eq!(p("GET", discovery, ""), None, "{discovery}");
    }
}

#[tokio::test]
async fn the_chart_grants_every_call_the_operator_makes_and_no_more_widely() {
    let Some(helm) = Helm::find() else { return };
    for values in ["default-values.yaml", "kms-values.yaml"] {
        let objects = helm
            .template("r", &["-f", &ci_values(values)])
            .await
            .expect("render");
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("deployment");
        let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("serviceAccountName");
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == sa),
            "{values}: the chart creates the ServiceAccount {sa}"
        );
        let grants = Grants::of(&objects, sa, "portvakt");
        let missing: Vec<String> = operator_permissions("portvakt")
            .into_iter()
            .filter(|(p, _)| !grants.allows(p))
            .map(|(p, source)| format!("{p:?} ({source})"))
            .collect();
        assert!(
            missing.is_empty(),
            "{values}: the chart does not grant:\n{}",
            missing.join("\n")
        );

        // Least privilege: the Lease only at home; nothing portvakt never touches.
        let denied = |group: &str, resource: &str, verb: &str, ns: Option<&str>| {
            let p = Permission {
                group: group.into(),
                resource: resource.into(),
                verb: verb.into(),
                namespace: ns.map(str::to_string),
            };
            assert!(!grants.allows(&p), "{values}: the chart grants {p:?}");
        };
        denied("coordination.k8s.io", "leases", "update", Some("team-a"));
        denied("", "secrets", "deletecollection", Some("team-a"));
        denied("nais.io", "idportenclients", "delete", Some("team-a"));
        denied("nais.io", "azureadapplications", "delete", Some("team-a"));
        denied("", "pods", "delete", Some("team-a"));
        denied("", "namespaces", "list", None);
    }
}

/// Every request in `calls` (an embedded API server's journal of a run of the
/// operator in namespace `own_namespace`) is granted by the chart's RBAC rendered from `values`.
pub async fn assert_journal_is_granted(
    helm: &Helm,
    values: &str,
    own_namespace: &str,
    calls: &[CallRecord],
) {
    let objects = helm
        .template("r", &["-f", &ci_values(values), "-n", own_namespace])
        .await
        .expect("render");
    let grants = Grants::of(&objects, "r-portvakt", own_namespace);
    let missing: Vec<Permission> = journal_permissions(calls)
        .into_iter()
        .filter(|p| !grants.allows(p))
        .collect();
    assert!(
        missing.is_empty(),
        "the chart does not grant what the operator called:\n{missing:#?}"
    );
}

/// A real run: `portvakt run` makes the examples Ready and finalizes one, against the embedded API server;
/// every request in the server's journal must be granted by the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_of_the_operator_needs_nothing_the_chart_does_not_grant() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DynamicObject, PostParams};
    use std::time::{Duration, Instant};

    let Some(helm) = Helm::find() else { return };
    portvakt::install_crypto_provider();
    let clock = portvakt::clock::Clock::system();
    let cluster = crate::chart::cluster().await;
    let client = cluster.server.client();
    for crd in portvakt::crd::crds().expect("crds") {
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .expect("crd");
    }
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/examples");
    let mut created = Vec::new();
    for file in ["idportenclient.yaml", "maskinportenclient-consumer.yaml"] {
        let obj: DynamicObject =
            serde_saphyr::from_str(&std::fs::read_to_string(examples.join(file)).expect("example"))
                .expect("yaml");
        let ns = obj.metadata.namespace.clone().expect("namespace");
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await;
        let types = obj.types.clone().expect("types");
        let resource = kube::api::ApiResource::from_gvk(
            &kube::api::GroupVersionKind::try_from(&types).expect("gvk"),
        );
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
            .create(&PostParams::default(), &obj)
            .await
            .expect("example");
        created.push((types.kind, ns, obj.metadata.name.clone().expect("name")));
    }

    let digdir =
        portvakt_sim::digdir::DigdirSim::new(clock.clone(), portvakt_sim::digdir::Seed::default());
    let digdir_handle = digdir
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("digdir");
    let urls = digdir.well_known_urls(&digdir_handle.url());
    let creds = digdir.admin_credentials();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, chain) = (dir.path().join("key.pem"), dir.path().join("chain.pem"));
    std::fs::write(&key, &creds.private_key_pem).expect("key");
    std::fs::write(&chain, &creds.certificate_chain_pem).expect("chain");

    // From here on the journal holds the operator's requests only (the test reads through test hooks).
    cluster.server.clear_journal();
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_portvakt"));
    operator.arg("run").kill_on_drop(true);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTVAKT_")) {
        operator.env_remove(k);
    }
    operator
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PORTVAKT_LOG", "warn")
        .env("PORTVAKT_CLUSTER_NAME", "test-cluster")
        .env("PORTVAKT_DIGDIR_ENV", "test")
        .env("PORTVAKT_DIGDIR_BASE_URL", &urls.admin_base_url)
        .env(
            "PORTVAKT_MASKINPORTEN_WELL_KNOWN_URL",
            &urls.maskinporten.well_known_url,
        )
        .env(
            "PORTVAKT_IDPORTEN_WELL_KNOWN_URL",
            &urls.idporten.well_known_url,
        )
        .env("PORTVAKT_DIGDIR_ADMIN_CLIENT_ID", &creds.client_id)
        .env("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", &key)
        .env("PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE", &chain)
        .env("PORTVAKT_CLIENT_NAME", "TEST ORG")
        .env("PORTVAKT_CLIENT_URI", "https://example.org")
        .env("PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE", "test:api")
        .env("PORTVAKT_KEY_PROPAGATION", "0s")
        .env("PORTVAKT_METRICS_ADDRESS", "127.0.0.1:0")
        .env("POD_NAMESPACE", "portvakt");
    let mut operator = operator.spawn().expect("portvakt run");

    let ready = |kind: &str, ns: &str, name: &str| {
        cluster
            .server
            .get_object("nais.io/v1", kind, Some(ns), name)
            .is_some_and(|o| {
                o["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    for (kind, ns, name) in &created {
        while !ready(kind, ns, name) {
            assert!(
                Instant::now() < deadline,
                "{kind} {ns}/{name} did not become Ready"
            );
            assert!(
                operator.try_wait().expect("operator").is_none(),
                "portvakt run exited"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Deleting one runs the finalizer (the registration is deleted at Digdir, the finalizer removed).
    let (kind, ns, name) = &created[0];
    cluster
        .server
        .delete_object("nais.io/v1", kind, Some(ns), name)
        .expect("delete");
    while cluster
        .server
        .get_object("nais.io/v1", kind, Some(ns), name)
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "{kind} {ns}/{name} was not finalized"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    operator.kill().await.expect("stop portvakt run");

    let journal = cluster.server.journal();
    let needed = journal_permissions(&journal);
    for expected in ["idportenclients/status", "secrets", "events"] {
        assert!(
            needed.iter().any(|p| p.resource == expected),
            "the run made no {expected} request: {needed:#?}"
        );
    }
    assert_journal_is_granted(&helm, "default-values.yaml", "portvakt", &journal).await;
}

/// What a real kube-apiserver's RBAC authorizer answers for the ServiceAccount `sa` in `namespace`.
async fn real_apiserver_allows(
    client: &kube::Client,
    sa: &str,
    namespace: &str,
    p: &Permission,
) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let (resource, subresource) = match p.resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (p.resource.as_str(), None),
    };
    let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({
        "spec": {
            "user": format!("system:serviceaccount:{namespace}:{sa}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            "resourceAttributes": {
                "group": p.group, "resource": resource, "subresource": subresource,
                "verb": p.verb, "namespace": p.namespace,
            },
        }
    }))
    .expect("SubjectAccessReview");
    let answer = kube::Api::<SubjectAccessReview>::all(client.clone())
        .create(&kube::api::PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// The chart installed on a real kube-apiserver (RBAC authorization): its authorizer allows the operator's
/// ServiceAccount every call the operator makes, refuses what it never does, and `helm uninstall` takes the
/// grants away again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_apiserver_the_chart_grants_every_operator_call_until_uninstalled() {
    let Some(mut helm) = Helm::find() else { return };
    let Some(cluster) = crate::real_cluster::RealCluster::start(Default::default()) else {
        return;
    };
    helm.use_kubeconfig(cluster.kubeconfig_path());
    let chart = crate::chart::chart_dir().display().to_string();
    helm.ok(&[
        "install",
        "r",
        &chart,
        "-n",
        "portvakt",
        "--create-namespace",
        "-f",
        &ci_values("default-values.yaml"),
    ])
    .await;
    let client = cluster.client().await;
    let mut refused = Vec::new();
    for (p, source) in operator_permissions("portvakt") {
        if !real_apiserver_allows(&client, "r-portvakt", "portvakt", &p).await {
            refused.push(format!("{p:?} ({source})"));
        }
    }
    assert!(
        refused.is_empty(),
        "kube-apiserver refuses:\n{}",
        refused.join("\n")
    );
    let lease_elsewhere = Permission {
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        verb: "update".into(),
        namespace: Some("team-a".into()),
    };
    assert!(!real_apiserver_allows(&client, "r-portvakt", "portvakt", &lease_elsewhere).await);

    helm.ok(&["uninstall", "r", "-n", "portvakt"]).await;
    let (first, _) = &operator_permissions("portvakt")[0];
    let status = real_apiserver_allows(&client, "r-portvakt", "portvakt", first).await;
    assert!(!status, "the grants outlive helm uninstall");
}
