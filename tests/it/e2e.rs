//! portvakt end to end, the same test code against two servers: the embedded API server
//! (`portvakt sim`) and a real control plane ([`RealCluster`] with kube-controller-manager, for
//! garbage collection and namespace deletion). Both tiers take the Digdir simulator and the
//! settings for `portvakt run` from a `portvakt sim` child process (`run.env`); on the real tier its
//! Kubernetes part is unused.
//!
//! The suite: kubectl applies the CRDs and the examples (namespaces first), `portvakt run --observe`
//! reports what it would do and writes nothing, `portvakt run` (the binary, as a child process) makes
//! the examples Ready, a Maskinporten token and an ID-porten login work with nothing but the
//! Secrets' values, `--observe` then reports them unchanged, a rotation (`digdir.nais.io/rotate`)
//! hands out a new key, a new `secretName` keeps the old Secret and its key registered while a Pod
//! (no kubelet runs it) still refers to it, deleting a resource goes through the finalizer (the
//! client is gone at Digdir) and its Secrets are garbage-collected through their owner references,
//! and deleting a namespace with resources in it completes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kubectl::{Sim, kubectl_binary, repo, start_sim, text};
use super::real_cluster::{Options, RealCluster};

/// A server to run the suite against, with the Digdir simulator beside it.
struct World {
    name: &'static str,
    kubeconfig: PathBuf,
    sim: Sim,
    real: Option<RealCluster>,
}

impl World {
    fn embedded() -> World {
        let sim = start_sim();
        World {
            name: "embedded",
            kubeconfig: sim.kubeconfig.clone(),
            sim,
            real: None,
        }
    }

    fn real() -> Option<World> {
        let cluster = RealCluster::start(Options {
            controller_manager: true,
        })?;
        Some(World {
            name: "real",
            kubeconfig: cluster.kubeconfig_path().to_path_buf(),
            sim: start_sim(),
            real: Some(cluster),
        })
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("running kubectl")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "{}: kubectl {args:?} failed:\n{}",
            self.name,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `portvakt run ARGS` with the settings `portvakt sim` wrote, against this world's cluster.
    fn operator_command(&self, args: &[&str]) -> Command {
        let settings = std::fs::read_to_string(self.sim.state.join("run.env"))
            .expect("portvakt sim wrote no run.env");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portvakt"));
        cmd.arg("run")
            .args(args)
            .env_remove("KUBECONFIG")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PORTVAKT_LOG", "warn");
        for line in settings.lines() {
            if let Some((k, v)) = line.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd
    }

    fn observe(&self) -> String {
        let out = self
            .operator_command(&["--observe"])
            .output()
            .expect("running portvakt run --observe");
        assert!(
            out.status.success(),
            "{}: --observe failed:\n{}",
            self.name,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn secret_data(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        use base64::Engine as _;
        let out = self.ok(&["get", "secret", name, "-n", namespace, "-o", "json"]);
        let secret: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
        let mut data = BTreeMap::new();
        for (k, v) in secret["data"].as_object().expect("the Secret has data") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .expect("base64 data");
            data.insert(k.clone(), String::from_utf8(bytes).expect("utf-8 value"));
        }
        data
    }

    fn exists(&self, args: &[&str]) -> bool {
        let out = self.kubectl(args);
        if out.status.success() {
            return true;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{}",
            text(&out)
        );
        false
    }

    /// Polls until `what` holds (kubectl each time), failing with the last answer after `limit`.
    #[track_caller]
    fn eventually(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let last = match check() {
                Ok(()) => return,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "{}: not within {limit:?}: {what} (last: {last})",
                self.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether garbage collection and namespace deletion run (on the real tier: the controller
    /// manager).
    fn controllers_run(&mut self) -> bool {
        match &mut self.real {
            None => true,
            Some(c) => c.controller_manager_running(),
        }
    }
}

/// `portvakt run` as a child process, killed when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn maskinporten_urls(s: &BTreeMap<String, String>) -> portvakt_sim::digdir::ProviderUrls {
    portvakt_sim::digdir::ProviderUrls {
        issuer: s["MASKINPORTEN_ISSUER"].clone(),
        well_known_url: s["MASKINPORTEN_WELL_KNOWN_URL"].clone(),
        token_endpoint: s["MASKINPORTEN_TOKEN_ENDPOINT"].clone(),
        jwks_uri: s["MASKINPORTEN_JWKS_URI"].clone(),
        authorization_endpoint: None,
    }
}

/// A Maskinporten token with nothing but a Secret's values: Ok(token) or the refusal.
async fn maskinporten_token(s: &BTreeMap<String, String>) -> Result<Value, String> {
    let jwk: Value = serde_json::from_str(&s["MASKINPORTEN_CLIENT_JWK"]).expect("JWK JSON");
    portvakt_sim::digdir::app::maskinporten_token(
        &maskinporten_urls(s),
        &s["MASKINPORTEN_CLIENT_ID"],
        &jwk,
        &s["MASKINPORTEN_SCOPES"],
        &portvakt::clock::Clock::system(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn kid(s: &BTreeMap<String, String>) -> String {
    let jwk: Value = serde_json::from_str(&s["MASKINPORTEN_CLIENT_JWK"]).expect("JWK JSON");
    jwk["kid"].as_str().expect("kid").to_string()
}

async fn suite(mut w: World) {
    let began = Instant::now();
    let crds = w.ok(&["apply", "-f", path_str(&repo().join("crds"))]);
    assert!(
        crds.contains("maskinportenclients.nais.io created"),
        "{crds}"
    );
    w.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/idportenclients.nais.io",
        "crd/maskinportenclients.nais.io",
        "crd/azureadapplications.nais.io",
    ]);
    for ns in ["tilgangsstyring-main", "team-a"] {
        let out = w.ok(&["create", "namespace", ns]);
        assert_eq!(out.trim(), format!("namespace/{ns} created"));
    }
    let examples = repo().join("examples");
    // Right after the CRDs are established a real server may still be setting up their storage.
    w.eventually("the examples are applied", Duration::from_secs(30), || {
        let out = w.kubectl(&["apply", "-f", path_str(&examples)]);
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out))
        }
    });

    // Before switching on: --observe says what it would do and writes nothing.
    let snapshot = || {
        w.ok(&[
            "get",
            "idportenclients,maskinportenclients,secrets",
            "-A",
            "-o",
            "yaml",
        ])
    };
    let before = snapshot();
    let report = w.observe();
    assert!(
        report.contains("IDPortenClient tilgangsstyring-main/test-client: create"),
        "{report}"
    );
    assert!(
        report.contains("MaskinportenClient team-a/krr-lookup: create"),
        "{report}"
    );
    // The API providers of examples/: their scopes and consumers, before anything exists.
    for expected in [
        "MaskinportenClient tilgangsstyring-main/test-client: create scope kartverket:produktomraade:innsyn; grant 123456789 access to kartverket:produktomraade:innsyn; grant 987654321 access to kartverket:produktomraade:innsyn; create",
        "MaskinportenClient team-a/delegated-api: create scope kartverket:difitest/test2; grant 910753614 access to kartverket:difitest/test2; create",
    ] {
        assert!(report.contains(expected), "{expected}: {report}");
    }
    assert!(report.contains("create-scope=2"), "{report}");
    assert!(report.contains("grant=3"), "{report}");
    assert_eq!(
        before,
        snapshot(),
        "{}: --observe changed something",
        w.name
    );

    let _operator = Operator(
        w.operator_command(&["--metrics-address", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting portvakt run"),
    );
    for (ns, what) in [
        ("tilgangsstyring-main", "idportenclient/test-client"),
        ("team-a", "maskinportenclient/krr-lookup"),
    ] {
        let out = w.ok(&[
            "wait",
            "--for=condition=Ready",
            "--timeout=120s",
            "-n",
            ns,
            what,
        ]);
        assert!(out.contains("condition met"), "{out}");
    }

    let first = w.secret_data("team-a", "krr-lookup-maskinporten");
    let token = maskinporten_token(&first)
        .await
        .expect("Maskinporten accepts a grant signed with the Secret's key");
    assert_eq!(token["scope"], "krr:global/kontaktinformasjon.read");
    let idp = w.secret_data("tilgangsstyring-main", "idporten-secret");
    let jwk: Value = serde_json::from_str(&idp["IDPORTEN_CLIENT_JWK"]).expect("JWK JSON");
    let metadata: Value = reqwest::get(&idp["IDPORTEN_WELL_KNOWN_URL"])
        .await
        .expect("well-known document")
        .json()
        .await
        .expect("well-known JSON");
    let urls = portvakt_sim::digdir::ProviderUrls {
        issuer: idp["IDPORTEN_ISSUER"].clone(),
        well_known_url: idp["IDPORTEN_WELL_KNOWN_URL"].clone(),
        token_endpoint: idp["IDPORTEN_TOKEN_ENDPOINT"].clone(),
        jwks_uri: idp["IDPORTEN_JWKS_URI"].clone(),
        authorization_endpoint: metadata["authorization_endpoint"]
            .as_str()
            .map(str::to_string),
    };
    let tokens = portvakt_sim::digdir::app::idporten_login(
        &urls,
        &idp["IDPORTEN_CLIENT_ID"],
        &jwk,
        &idp["IDPORTEN_REDIRECT_URI"],
        "openid profile",
        &portvakt::clock::Clock::system(),
    )
    .await
    .expect("an ID-porten login with the Secret's key completes");
    assert!(tokens["id_token"].is_string(), "{tokens}");

    let report = w.observe();
    for line in [
        "IDPortenClient tilgangsstyring-main/test-client: unchanged",
        "MaskinportenClient team-a/krr-lookup: unchanged",
    ] {
        assert!(
            report.contains(line),
            "{}: {line} missing in:\n{report}",
            w.name
        );
    }

    // A rotation hands out a new key in the same Secret.
    w.ok(&[
        "annotate",
        "-n",
        "team-a",
        "maskinportenclient/krr-lookup",
        "digdir.nais.io/rotate=true",
    ]);
    let old_kid = kid(&first);
    w.eventually(
        "the rotated key is in the Secret",
        Duration::from_secs(60),
        || {
            let now = kid(&w.secret_data("team-a", "krr-lookup-maskinporten"));
            if now != old_kid {
                Ok(())
            } else {
                Err(format!("still {now}"))
            }
        },
    );
    let rotated = w.secret_data("team-a", "krr-lookup-maskinporten");
    maskinporten_token(&rotated)
        .await
        .expect("the rotated key works");

    // A Pod (no kubelet) still uses that Secret while the resource moves to a new one: the old
    // Secret stays and its key stays registered.
    let dir = tempfile::tempdir().expect("temp dir");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: krr-app\n  namespace: team-a\nspec:\n  containers:\n  - name: app\n    image: app:1\n    envFrom:\n    - secretRef:\n        name: krr-lookup-maskinporten\n",
    )
    .expect("writing pod.yaml");
    w.ok(&["apply", "-f", path_str(&pod)]);
    w.ok(&[
        "patch",
        "-n",
        "team-a",
        "maskinportenclient/krr-lookup",
        "--type=merge",
        "-p",
        r#"{"spec":{"secretName":"krr-lookup-maskinporten-2"}}"#,
    ]);
    w.ok(&[
        "wait",
        "-n",
        "team-a",
        "maskinportenclient/krr-lookup",
        "--timeout=120s",
        "--for=jsonpath={.status.synchronizationSecretName}=krr-lookup-maskinporten-2",
    ]);
    let second = w.secret_data("team-a", "krr-lookup-maskinporten-2");
    assert_ne!(kid(&second), kid(&rotated));
    maskinporten_token(&second)
        .await
        .expect("the new Secret's key works");
    assert!(w.exists(&["get", "secret", "-n", "team-a", "krr-lookup-maskinporten"]));
    maskinporten_token(&rotated)
        .await
        .expect("the key of the Secret the Pod uses stays registered");

    // Deleting goes through the finalizer: the client is removed at Digdir first.
    let out = w.ok(&[
        "delete",
        "-n",
        "team-a",
        "maskinportenclient/krr-lookup",
        "--timeout=60s",
    ]);
    assert!(out.contains("deleted"), "{out}");
    assert!(!w.exists(&["get", "-n", "team-a", "maskinportenclient/krr-lookup"]));
    let refused = maskinporten_token(&second).await;
    assert!(
        refused.is_err(),
        "a deleted client still gets tokens: {refused:?}"
    );

    if w.controllers_run() {
        // The Secrets were owned by the resource: garbage-collected through the owner references.
        w.eventually(
            "the owned Secrets are garbage-collected",
            Duration::from_secs(120),
            || {
                let left: Vec<&str> = ["krr-lookup-maskinporten", "krr-lookup-maskinporten-2"]
                    .into_iter()
                    .filter(|s| w.exists(&["get", "secret", "-n", "team-a", s]))
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("left: {left:?}"))
                }
            },
        );
        // A namespace with a resource (and its finalizer) in it goes, resource first.
        w.ok(&[
            "delete",
            "namespace",
            "tilgangsstyring-main",
            "--wait=false",
        ]);
        w.eventually(
            "namespace tilgangsstyring-main is deleted",
            Duration::from_secs(120),
            || {
                if w.exists(&["get", "namespace", "tilgangsstyring-main"]) {
                    Err("still there".into())
                } else {
                    Ok(())
                }
            },
        );
    } else {
        let _ = writeln_skip(&format!(
            "{}: kube-controller-manager is not running: garbage collection and namespace deletion not checked",
            w.name
        ));
    }
    eprintln!("e2e ({}): {:.1}s", w.name, began.elapsed().as_secs_f64());
}

fn writeln_skip(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr(), "skipped: {line}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_the_embedded_api_server() {
    portvakt::install_crypto_provider();
    suite(World::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_a_real_control_plane() {
    portvakt::install_crypto_provider();
    let Some(world) = World::real() else {
        return;
    };
    suite(world).await;
}
