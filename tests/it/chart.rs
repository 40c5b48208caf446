//! The Helm chart with the real Helm CLI (`$PORTVAKT_HELM`; skipped without it, see
//! `real_cluster::test_tools`): lint,
//! what it renders from each `ci/*-values.yaml`, what its schema and `required` checks refuse, and install,
//! upgrade, a second release and uninstall in the embedded API server (Helm's default Secret storage).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::real_cluster::test_tools;

pub const CI_VALUES: [&str; 5] = [
    "default-values.yaml",
    "entra-values.yaml",
    "kid-values.yaml",
    "kms-values.yaml",
    "nav-values.yaml",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/portvakt")
}

pub fn ci_values(file: &str) -> String {
    chart_dir().join("ci").join(file).display().to_string()
}

/// The Helm CLI with its own config, cache and data directories (nothing of the user's is read or written).
pub struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// `None` (the test is skipped) without `$PORTVAKT_HELM`.
    pub fn find() -> Option<Helm> {
        let bin = test_tools(&["PORTVAKT_HELM"])?.pop()?;
        Some(Helm {
            bin,
            home: tempfile::tempdir().expect("tempdir"),
            kubeconfig: None,
        })
    }

    /// Talk to the cluster of this kubeconfig (none by default).
    pub fn use_kubeconfig(&mut self, kubeconfig: &std::path::Path) {
        self.kubeconfig = Some(kubeconfig.to_path_buf());
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("HELM_DRIVER")
            .env(
                "KUBECONFIG",
                self.kubeconfig
                    .clone()
                    .unwrap_or_else(|| self.home.path().join("no-cluster")),
            );
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            self.command(args).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("helm {args:?} did not finish within 120s"))
        .expect("running helm")
    }

    /// `helm ARGS`, which must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm template RELEASE` in namespace `portvakt` with `args` (values files, --set): the objects, or
    /// Helm's error output.
    pub async fn template(&self, release: &str, args: &[&str]) -> Result<Vec<Value>, String> {
        let chart = chart_dir().display().to_string();
        let mut all = vec![
            "template",
            release,
            chart.as_str(),
            "--namespace",
            "portvakt",
        ];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        if !out.status.success() {
            return Err(text(&out));
        }
        Ok(parse_documents(&String::from_utf8_lossy(&out.stdout)))
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn parse_documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("helm printed YAML");
    docs.into_iter().filter(|d| d.is_object()).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

/// The portvakt container's environment as name → value (`valueFrom` entries as their JSON).
fn env_of(deployment: &Value) -> std::collections::BTreeMap<String, Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let value = e
                .get("value")
                .cloned()
                .or_else(|| e.get("valueFrom").cloned())
                .unwrap_or(Value::Null);
            (e["name"].as_str().expect("name").to_string(), value)
        })
        .collect()
}

/// Every `PORTVAKT_*` variable `portvakt run` reads, from its `--help`.
fn env_vars_the_binary_reads() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["run", "--help"])
        .output()
        .expect("portvakt run --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut vars: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .map(str::to_string)
        .collect();
    assert!(vars.len() > 10, "no env names in:\n{help}");
    // Read by main (tracing) and by the leader election, not flags of `run`.
    for v in [
        "PORTVAKT_LOG",
        "PORTVAKT_LOG_FORMAT",
        "PORTVAKT_LEADER_ELECTION_LEASE_NAME",
    ] {
        vars.insert(v.to_string());
    }
    vars
}

#[tokio::test]
async fn helm_lint_passes_with_every_ci_values_file() {
    let Some(helm) = Helm::find() else { return };
    let chart = chart_dir().display().to_string();
    // Without values, lint reports the required values without failing (chart-testing's plain lint).
    let out = helm.ok(&["lint", &chart]).await;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    for file in CI_VALUES {
        let out = helm
            .ok(&["lint", &chart, "--strict", "-f", &ci_values(file)])
            .await;
        assert!(out.contains("0 chart(s) failed"), "{file}: {out}");
    }
}

#[tokio::test]
async fn the_defaults_fail_naming_every_value_a_platform_team_must_give() {
    let Some(helm) = Helm::find() else { return };
    let err = helm.template("r", &[]).await.expect_err("defaults render");
    for value in [
        "clusterName",
        "digdir.environment",
        "digdir.adminClientId",
        "clientDefaults.name",
        "clientDefaults.uri",
        "clientDefaults.maskinportenScope",
    ] {
        assert!(
            err.contains(&format!("- {value}:")),
            "{value} not named:\n{err}"
        );
    }
    // The default scope is required only with the Maskinporten controller; KMS and kid need their settings.
    let err = helm
        .template(
            "r",
            &[
                "--set",
                "controllers.maskinporten=false",
                "--set",
                "digdir.adminKey.source=kms",
                "--set",
                "digdir.adminKey.naming=kid",
            ],
        )
        .await
        .expect_err("still incomplete");
    assert!(!err.contains("maskinportenScope"), "{err}");
    assert!(
        err.contains("- digdir.adminKey.kmsKeyPath:") && err.contains("- digdir.adminKey.kid:"),
        "{err}"
    );
    // Combinations that cannot work are named too.
    let err = helm
        .template(
            "r",
            &[
                "-f",
                &ci_values("default-values.yaml"),
                "--set",
                "digdir.adminKey.naming=kid",
                "--set",
                "digdir.adminKey.kid=k",
                "--set",
                "digdir.adminKey.certificateChain.existingSecret=chain",
            ],
        )
        .await
        .expect_err("chain with kid");
    assert!(
        err.contains("digdir.adminKey.certificateChain is set but naming is kid"),
        "{err}"
    );
}

#[tokio::test]
async fn the_schema_refuses_wrong_types_and_unknown_values() {
    let Some(helm) = Helm::find() else { return };
    let base = ci_values("default-values.yaml");
    for (set, named) in [
        ("controllers.concurrency=abc", "concurrency"),
        ("replicaCount=3", "replicaCount"),
        ("digdir.adminKey.source=vault", "source"),
        ("logFormat=xml", "logFormat"),
        ("controllers.resyncPeriod=soon", "resyncPeriod"),
        (
            "digdir.adminKey.kmsKeyPath=projects/p/cryptoKeys/k",
            "kmsKeyPath",
        ),
        ("image.tagg=1", "tagg"),
    ] {
        let err = helm
            .template("r", &["-f", &base, "--set", set])
            .await
            .expect_err(set);
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(named),
            "{set}: {err}"
        );
    }
    // What the schema knows renders, including what a parent chart passes as `global`.
    let objects = helm
        .template(
            "r",
            &[
                "-f",
                &base,
                "--set",
                "nodeSelector.pool=system",
                "--set-json",
                r#"global={"imageRegistry":"registry.example"}"#,
                "--set-json",
                r#"tolerations=[{"key":"dedicated","operator":"Exists"}]"#,
            ],
        )
        .await
        .expect("known values render");
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "system"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
}

#[tokio::test]
async fn every_ci_values_file_renders_a_deployment_that_can_run() {
    let Some(helm) = Helm::find() else { return };
    let known = env_vars_the_binary_reads();
    for file in CI_VALUES {
        let objects = helm
            .template("ci", &["-f", &ci_values(file)])
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let deployment = one(&objects, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let env = env_of(deployment);

        // The non-root user can read the mounted key: fsGroup and a group-readable mode.
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{file}");
        assert_eq!(pod["securityContext"]["fsGroup"], 65532, "{file}");
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            assert_eq!(
                volume["projected"]["defaultMode"], 0o440,
                "{file}: {volume}"
            );
        }
        // Two replicas rolling, one leading through the Lease named after the release.
        assert_eq!(deployment["spec"]["replicas"], 2, "{file}");
        assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(env["PORTVAKT_LEADER_ELECTION_LEASE_NAME"], "ci-portvakt");
        assert_eq!(
            env["POD_NAMESPACE"],
            json!({"fieldRef": {"fieldPath": "metadata.namespace"}})
        );
        // Only variables the binary reads.
        for name in env.keys().filter(|n| n.starts_with("PORTVAKT_")) {
            assert!(
                known.contains(name),
                "{file}: the chart sets {name}, which portvakt does not read"
            );
        }
        // Exactly one key source and one way to name it (none without a Digdir controller).
        let has = |name: &str| env.contains_key(name);
        let digdir = env["PORTVAKT_IDPORTEN"] == "true" || env["PORTVAKT_MASKINPORTEN"] == "true";
        if digdir {
            assert!(
                has("PORTVAKT_DIGDIR_ADMIN_KEY_FILE") != has("PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH"),
                "{file}: {env:?}"
            );
            assert!(
                has("PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE") != has("PORTVAKT_DIGDIR_ADMIN_KID"),
                "{file}: {env:?}"
            );
        } else {
            assert!(
                !env.keys().any(|k| k.starts_with("PORTVAKT_DIGDIR_")),
                "{file}: {env:?}"
            );
        }
        // Every object is named from the release; nothing is just `portvakt`.
        for o in &objects {
            let name = o["metadata"]["name"].as_str().expect("name");
            let expected = match o["kind"].as_str() {
                Some("ClusterRole" | "ClusterRoleBinding") => "portvakt-ci-portvakt",
                Some("CustomResourceDefinition") => continue,
                _ => "ci-portvakt",
            };
            assert!(name.starts_with(expected), "{file}: {} {name}", o["kind"]);
        }
        // No organisation's values except in the NAV example.
        let rendered = serde_json::to_string(&objects).expect("json");
        if file != "nav-values.yaml" {
            for nav in ["nav.no", "ARBEIDS- OG VELFERDSETATEN", "nav:"] {
                assert!(!rendered.contains(nav), "{file} renders {nav:?}");
            }
        }
    }

    // kid mode: the key from the named Secret under its key, no chain.
    let objects = helm
        .template("ci", &["-f", &ci_values("kid-values.yaml")])
        .await
        .expect("kid");
    let deployment = one(&objects, "Deployment");
    let env = env_of(deployment);
    assert_eq!(
        env["PORTVAKT_DIGDIR_ADMIN_KID"],
        "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    );
    let sources = &deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"];
    assert_eq!(
        sources,
        &json!([{"secret": {"name": "digdir-admin-jwk", "items": [{"key": "jwk.json", "path": "key.pem"}]}}])
    );
    assert_eq!(env["PORTVAKT_LOG_FORMAT"], "text");
    assert_eq!(env["PORTVAKT_LOG"], "warn,portvakt=debug");

    // KMS mode: no key is mounted, the chain comes from the ConfigMap, the monitoring objects are there.
    let objects = helm
        .template("ci", &["-f", &ci_values("kms-values.yaml")])
        .await
        .expect("kms");
    let deployment = one(&objects, "Deployment");
    let env = env_of(deployment);
    assert!(
        env["PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH"]
            .as_str()
            .is_some_and(|p| p.ends_with("/cryptoKeyVersions/1"))
    );
    let sources = &deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"];
    assert_eq!(
        sources,
        &json!([{"configMap": {"name": "digdir-admin-certificate-chain", "items": [{"key": "chain.pem", "path": "chain.pem"}]}}])
    );
    let sa = one(&objects, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "portvakt@example-project.iam.gserviceaccount.com"
    );
    let rules = &one(&objects, "PrometheusRule")["spec"]["groups"][0]["rules"];
    let exprs: Vec<&str> = rules
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["expr"].as_str().expect("expr"))
        .collect();
    for metric in [
        "portvakt_credential_expiry_timestamp_seconds{job=\"ci-portvakt\"} - time()) < 14 * 86400",
        "portvakt_admin_certificate_expiry_timestamp_seconds{job=\"ci-portvakt\"} - time()) < 30 * 86400",
        "portvakt_resources{job=\"ci-portvakt\",ready=\"false\"}",
        "controller_runtime_reconcile_errors_total{job=\"ci-portvakt\"}",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "{metric} in {exprs:?}"
        );
    }
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let service = one(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    let policy = one(&objects, "NetworkPolicy");
    let egress_ports: Vec<i64> = policy["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    for port in [443, 6443, 80, 988, 53] {
        assert!(egress_ports.contains(&port), "egress to {port}: {policy}");
    }

    // NAV: digdirator's defaults, the inline chain in a ConfigMap, and the CRDs as templates that stay.
    let objects = helm
        .template("ci", &["-f", &ci_values("nav-values.yaml")])
        .await
        .expect("nav");
    let env = env_of(one(&objects, "Deployment"));
    assert_eq!(env["PORTVAKT_CLIENT_NAME"], "ARBEIDS- OG VELFERDSETATEN");
    assert_eq!(env["PORTVAKT_MASKINPORTEN_DEFAULT_SCOPE"], "nav:test/api");
    assert_eq!(env["PORTVAKT_CLUSTER_NAME"], "dev-gcp");
    let chain = one(&objects, "ConfigMap");
    assert!(
        chain["data"]["chain.pem"]
            .as_str()
            .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----"))
    );
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), portvakt::crd::crd_files().len());
    for (crd, (file, yaml)) in crds.iter().zip(portvakt::crd::crd_files()) {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{file}"
        );
        // The same CRD as crds/, apart from Helm's metadata.
        let mut ours: Value = serde_saphyr::from_str(yaml).expect("crd yaml");
        let mut rendered = (*crd).clone();
        for o in [&mut ours, &mut rendered] {
            let meta = o["metadata"].as_object_mut().expect("metadata");
            meta.remove("labels");
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove("helm.sh/resource-policy");
            }
        }
        assert_eq!(rendered, ours, "{file} renders differently from crds/");
    }

    // fullnameOverride names everything.
    let objects = helm
        .template(
            "ci",
            &[
                "-f",
                &ci_values("default-values.yaml"),
                "--set",
                "fullnameOverride=gatekeeper",
            ],
        )
        .await
        .expect("fullnameOverride");
    for o in &objects {
        let name = o["metadata"]["name"].as_str().expect("name");
        assert!(
            name.starts_with("gatekeeper") || name.starts_with("portvakt-gatekeeper"),
            "{name}"
        );
    }
}

/// The embedded API server on loopback with a kubeconfig for Helm.
pub struct Cluster {
    pub server: portvakt_sim::kube::ApiServer,
    _handle: portvakt_sim::ServeHandle,
    _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub async fn cluster() -> Cluster {
    let server = portvakt_sim::kube::ApiServer::new(portvakt::clock::Clock::system());
    let handle = server
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        portvakt_sim::kube::ApiServer::kubeconfig_yaml(&handle.url(), "default"),
    )
    .expect("kubeconfig");
    Cluster {
        server,
        _handle: handle,
        _dir: dir,
        kubeconfig,
    }
}

impl Cluster {
    fn get(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.server.get_object(api_version, kind, ns, name)
    }

    fn crd(&self, name: &str) -> Option<Value> {
        self.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            name,
        )
    }
}

fn in_cluster(helm: &mut Helm, cluster: &Cluster) {
    helm.use_kubeconfig(&cluster.kubeconfig);
}

/// The objects of a release, as (apiVersion, kind, namespace, name).
/// `helm install r1` of the chart with `values` into namespace `portvakt` (created): the objects
/// the release renders, as (apiVersion, kind, namespace, name).
async fn install_r1(
    helm: &Helm,
    chart: &str,
    values: &str,
) -> Vec<(String, String, Option<String>, String)> {
    let out = helm
        .ok(&[
            "install",
            "r1",
            chart,
            "-n",
            "portvakt",
            "--create-namespace",
            "-f",
            values,
        ])
        .await;
    assert!(out.contains("STATUS: deployed"), "{out}");
    release_objects(
        &helm
            .template("r1", &["-f", values])
            .await
            .expect("render r1"),
    )
}

/// `helm upgrade r1` of the chart with `values` and each of `sets` as `--set`.
async fn upgrade_r1(helm: &Helm, chart: &str, values: &str, sets: &[&str]) -> String {
    let mut args = vec!["upgrade", "r1", chart, "-n", "portvakt", "-f", values];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm.ok(&args).await
}

fn release_objects(objects: &[Value]) -> Vec<(String, String, Option<String>, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["namespace"].as_str().map(str::to_string),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_a_second_release_and_uninstall_in_the_embedded_server() {
    let Some(mut helm) = Helm::find() else { return };
    let cluster = cluster().await;
    in_cluster(&mut helm, &cluster);
    let chart = chart_dir().display().to_string();
    let default_values = ci_values("default-values.yaml");
    let kid_values = ci_values("kid-values.yaml");

    let r1 = install_r1(&helm, &chart, &default_values).await;
    for (api_version, kind, ns, name) in &r1 {
        let stored = cluster
            .get(api_version, kind, ns.as_deref(), name)
            .unwrap_or_else(|| panic!("{kind} {name} was not created"));
        assert_eq!(
            stored["metadata"]["annotations"]["meta.helm.sh/release-name"], "r1",
            "{kind} {name}"
        );
    }
    let deployment = cluster
        .get("apps/v1", "Deployment", Some("portvakt"), "r1-portvakt")
        .expect("deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"],
        65532
    );
    // The chart's crds/ were created (absent before), and the release is stored where Helm keeps it.
    assert!(cluster.crd("idportenclients.nais.io").is_some());
    assert!(
        cluster
            .get("v1", "Secret", Some("portvakt"), "sh.helm.release.v1.r1.v1")
            .is_some()
    );

    // Upgrade: the new values reach the objects.
    upgrade_r1(
        &helm,
        &chart,
        &default_values,
        &["replicas=3", "logLevel=debug"],
    )
    .await;
    let deployment = cluster
        .get("apps/v1", "Deployment", Some("portvakt"), "r1-portvakt")
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(env_of(&deployment)["PORTVAKT_LOG"], "debug");

    // A second release in the same namespace collides with nothing (Helm refuses to take over objects of
    // another release).
    helm.ok(&["install", "r2", &chart, "-n", "portvakt", "-f", &kid_values])
        .await;
    let list = helm.ok(&["list", "-n", "portvakt", "-q"]).await;
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), ["r1", "r2"]);

    // Uninstalling r1 removes its objects only; the CRDs (from crds/) and r2 stay.
    helm.ok(&["uninstall", "r1", "-n", "portvakt"]).await;
    for (api_version, kind, ns, name) in &r1 {
        assert!(
            cluster
                .get(api_version, kind, ns.as_deref(), name)
                .is_none(),
            "{kind} {name} survived helm uninstall"
        );
    }
    assert!(
        cluster
            .get("apps/v1", "Deployment", Some("portvakt"), "r2-portvakt")
            .is_some()
    );
    assert!(cluster.crd("maskinportenclients.nais.io").is_some());
}

/// The documented switch from liberator's CRDs: annotate them for Helm, install with `crds.install=true` and
/// `--skip-crds`; Helm adopts and upgrades them to portvakt's, and `helm uninstall` leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_from_liberators_crds_upgrades_them_and_uninstall_keeps_them() {
    let Some(mut helm) = Helm::find() else { return };
    let cluster = cluster().await;
    in_cluster(&mut helm, &cluster);
    // liberator's CRDs as digdirator installed them, then the README's adoption step.
    let liberator = repo().join("tests/data/liberator-crds");
    for file in [
        "nais.io_idportenclients.yaml",
        "nais.io_maskinportenclients.yaml",
    ] {
        let mut crd: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(liberator.join(file)).expect("liberator crd"),
        )
        .expect("yaml");
        let meta = crd["metadata"].as_object_mut().expect("metadata");
        meta.insert(
            "annotations".into(),
            json!({"meta.helm.sh/release-name": "portvakt", "meta.helm.sh/release-namespace": "nais-system"}),
        );
        meta.insert(
            "labels".into(),
            json!({"app.kubernetes.io/managed-by": "Helm"}),
        );
        let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("a CRD");
        Api::<CustomResourceDefinition>::all(cluster.server.client())
            .create(&PostParams::default(), &crd)
            .await
            .expect("create liberator's CRD");
    }
    let printer_columns = |name: &str| -> Vec<String> {
        let crd = cluster.crd(name).expect("crd");
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(!printer_columns("idportenclients.nais.io").contains(&"Ready".to_string()));

    let chart = chart_dir().display().to_string();
    helm.ok(&[
        "install",
        "portvakt",
        &chart,
        "-n",
        "nais-system",
        "--create-namespace",
        "--skip-crds",
        "-f",
        &ci_values("nav-values.yaml"),
    ])
    .await;
    for name in ["idportenclients.nais.io", "maskinportenclients.nais.io"] {
        assert!(
            printer_columns(name).contains(&"Ready".to_string()),
            "{name} was not upgraded to portvakt's CRD"
        );
    }
    helm.ok(&["uninstall", "portvakt", "-n", "nais-system"])
        .await;
    assert!(
        cluster
            .get("apps/v1", "Deployment", Some("nais-system"), "portvakt")
            .is_none()
    );
    for name in [
        "idportenclients.nais.io",
        "maskinportenclients.nais.io",
        "azureadapplications.nais.io",
    ] {
        assert!(cluster.crd(name).is_some(), "helm uninstall deleted {name}");
    }
}

/// `kubectl --kubeconfig K ARGS` against the real control plane: its stdout, or a panic with both
/// streams.
fn kubectl_real(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field of the r1 Deployment in the real control plane, by kubectl's jsonpath.
fn deployment_field(kubeconfig: &std::path::Path, jsonpath: &str) -> String {
    kubectl_real(
        kubeconfig,
        &[
            "get",
            "deployment",
            "r1-portvakt",
            "-n",
            "portvakt",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ],
    )
}

/// The same install, upgrade and uninstall against a real kube-apiserver (real validation of every
/// rendered object, Helm's release Secrets in protobuf), with resources of the CRDs present: after
/// `helm uninstall` the CRDs and the resources are still there, so nothing is deleted at Digdir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_uninstall_in_a_real_api_server_keep_the_resources() {
    let Some(mut helm) = Helm::find() else { return };
    let Some(cluster) = crate::real_cluster::RealCluster::start(Default::default()) else {
        return;
    };
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    helm.use_kubeconfig(&kubeconfig);
    let chart = chart_dir().display().to_string();
    let default_values = ci_values("default-values.yaml");
    let r1 = install_r1(&helm, &chart, &default_values).await;
    for (_, kind, ns, name) in &r1 {
        let mut args = vec!["get", kind.as_str(), name.as_str(), "-o", "name"];
        if let Some(ns) = ns {
            args.extend(["-n", ns.as_str()]);
        }
        assert!(
            !kubectl_real(&kubeconfig, &args).trim().is_empty(),
            "{kind} {name}"
        );
    }
    let fs_group = deployment_field(&kubeconfig, "{.spec.template.spec.securityContext.fsGroup}");
    assert_eq!(fs_group, "65532");

    // A resource of each kind, as a team would have them when the operator is uninstalled.
    let examples = repo().join("examples");
    for ns in ["team-a", "tilgangsstyring-main"] {
        kubectl_real(&kubeconfig, &["create", "namespace", ns]);
    }
    kubectl_real(
        &kubeconfig,
        &["apply", "-f", &examples.display().to_string()],
    );

    upgrade_r1(&helm, &chart, &default_values, &["replicas=3"]).await;
    let replicas = deployment_field(&kubeconfig, "{.spec.replicas}");
    assert_eq!(replicas, "3");

    helm.ok(&["uninstall", "r1", "-n", "portvakt"]).await;
    let left = kubectl_real(
        &kubeconfig,
        &["get", "deployments", "-n", "portvakt", "-o", "name"],
    );
    assert!(left.trim().is_empty(), "{left}");
    // The CRDs stay, and so does every resource: the registrations behind them are not touched.
    let resources = kubectl_real(
        &kubeconfig,
        &[
            "get",
            "idportenclients,maskinportenclients,azureadapplications",
            "-A",
            "-o",
            "name",
        ],
    );
    for expected in [
        "idportenclient.nais.io/test-client",
        "maskinportenclient.nais.io/krr-lookup",
        "azureadapplication.nais.io/test-app",
    ] {
        assert!(resources.contains(expected), "{expected}: {resources}");
    }
}
