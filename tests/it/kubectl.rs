//! The real kubectl against `portvakt sim`: an independent client judging the embedded API server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `portvakt sim` as a child process, killed when dropped.
pub(crate) struct Sim {
    child: Child,
    pub(crate) kubeconfig: PathBuf,
    /// Its `--state-dir`: `run.env` (the settings for `portvakt run`) and the admin credentials.
    pub(crate) state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example manifests (tests/data/examples: copies, see tests/data/README.md).
fn shared_examples() -> PathBuf {
    repo().join("tests/data/examples")
}

pub(crate) fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no kubectl binary on PATH: these tests drive the real kubectl against `portvakt sim`; \
         install it (the machine image ships one; .ci/run installs it with apt-get otherwise)"
    );
}

pub(crate) fn start_sim() -> Sim {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let state = dir.path().join("state");
    let child = Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting portvakt sim");
    let sim = Sim {
        child,
        kubeconfig,
        state,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "portvakt sim wrote no kubeconfig within 60s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sim
}

fn kubectl(sim: &Sim, args: &[&str]) -> Output {
    Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kubectl")
}

pub(crate) fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[track_caller]
fn ok(sim: &Sim, args: &[&str]) -> String {
    let output = kubectl(sim, args);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn rejected(sim: &Sim, args: &[&str]) -> String {
    let output = kubectl(sim, args);
    assert!(
        !output.status.success(),
        "kubectl {args:?} should have failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn write_manifest(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("writing manifest");
    path
}

/// Namespaces from one applied manifest (JSON); `kubectl create namespace` (protobuf) has its own
/// test below.
fn create_namespaces(sim: &Sim, names: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml: String = names
        .iter()
        .map(|n| format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
        .collect();
    let path = write_manifest(dir.path(), "namespaces.yaml", &yaml);
    let out = ok(sim, &["apply", "-f", path_str(&path)]);
    for n in names {
        assert!(out.contains(&format!("namespace/{n} created")), "{out}");
    }
}

#[test]
fn kubectl_applies_gets_describes_and_deletes_the_shared_examples() {
    let sim = start_sim();
    let crds = repo().join("crds");
    let out = ok(&sim, &["apply", "-f", path_str(&crds)]);
    assert!(out.contains("idportenclients.nais.io created"), "{out}");
    assert!(out.contains("maskinportenclients.nais.io created"), "{out}");
    assert!(out.contains("azureadapplications.nais.io created"), "{out}");

    create_namespaces(&sim, &["tilgangsstyring-main", "team-a"]);
    let examples = shared_examples();
    let out = ok(&sim, &["apply", "-f", path_str(&examples)]);
    for line in [
        "azureadapplication.nais.io/test-app created",
        "idportenclient.nais.io/test-client created",
        "maskinportenclient.nais.io/krr-lookup created",
        "maskinportenclient.nais.io/delegated-api created",
        "maskinportenclient.nais.io/test-client created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // Printer columns come from the CRD.
    let out = ok(
        &sim,
        &["get", "idportenclients", "-n", "tilgangsstyring-main"],
    );
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "SECRET REF", "CLIENTID", "AGE"] {
        assert!(
            header.contains(column),
            "column {column} missing in:\n{out}"
        );
    }
    assert!(
        out.contains("test-client") && out.contains("idporten-secret"),
        "{out}"
    );
    let out = ok(&sim, &["get", "maskinportenclients", "-A"]);
    assert!(
        out.contains("krr-lookup") && out.contains("delegated-api"),
        "{out}"
    );

    // A second client-side apply of an unchanged file is a no-op patch.
    let out = ok(
        &sim,
        &[
            "apply",
            "-f",
            path_str(&examples.join("idportenclient.yaml")),
        ],
    );
    assert!(out.contains("unchanged"), "{out}");

    // Server-side apply.
    let out = ok(
        &sim,
        &[
            "apply",
            "--server-side",
            "-f",
            path_str(&examples.join("maskinportenclient-consumer.yaml")),
        ],
    );
    assert!(out.contains("serverside-applied"), "{out}");

    let out = ok(
        &sim,
        &[
            "describe",
            "idportenclient",
            "test-client",
            "-n",
            "tilgangsstyring-main",
        ],
    );
    assert!(
        out.contains("Name:") && out.contains("test-client"),
        "{out}"
    );
    assert!(out.contains("idporten-secret"), "{out}");

    let out = ok(
        &sim,
        &[
            "annotate",
            "idportenclient",
            "test-client",
            "-n",
            "tilgangsstyring-main",
            "digdir.nais.io/resync=true",
        ],
    );
    assert!(out.contains("annotated"), "{out}");
    let out = ok(
        &sim,
        &[
            "patch",
            "idportenclient",
            "test-client",
            "-n",
            "tilgangsstyring-main",
            "--type=merge",
            "-p",
            r#"{"spec":{"clientName":"Patched Name"}}"#,
        ],
    );
    assert!(out.contains("patched"), "{out}");
    let out = ok(
        &sim,
        &[
            "get",
            "idportenclient",
            "test-client",
            "-n",
            "tilgangsstyring-main",
            "-o",
            "jsonpath={.spec.clientName}",
        ],
    );
    assert_eq!(out, "Patched Name");

    let out = ok(&sim, &["delete", "-f", path_str(&examples)]);
    assert!(
        out.contains("idportenclient.nais.io \"test-client\" deleted"),
        "{out}"
    );
    let out = ok(
        &sim,
        &[
            "get",
            "idportenclients,maskinportenclients,azureadapplications",
            "-A",
        ],
    );
    assert!(!out.contains("test-client"), "{out}");
}

#[test]
fn kubectl_prints_the_servers_validation_error_naming_the_field() {
    let sim = start_sim();
    ok(&sim, &["apply", "-f", path_str(&repo().join("crds"))]);
    create_namespaces(&sim, &["team-a"]);
    let dir = tempfile::tempdir().expect("temp dir");

    let cases = [
        (
            "at-max-age.yaml",
            "atMaxAge: 1000",
            "spec.scopes.exposes[0].atMaxAge",
        ),
        (
            "orgno.yaml",
            "orgno: \"12345678\"",
            "spec.scopes.exposes[0].consumers[0].orgno",
        ),
        ("separator.yaml", "separator: \":\"", "separator"),
    ];
    for (file, line, field) in cases {
        let mut manifest = String::from(
            "apiVersion: nais.io/v1\nkind: MaskinportenClient\nmetadata:\n  name: bad\n  namespace: team-a\n\
             spec:\n  secretName: bad-secret\n  scopes:\n    exposes:\n      - name: test2\n        product: difitest\n\
             \x20       enabled: true\n        delegationSource: altinn\n",
        );
        let mut consumer = "        consumers:\n          - orgno: \"910753614\"\n".to_string();
        if line.starts_with("orgno") {
            consumer = format!("        consumers:\n          - {line}\n");
        } else {
            manifest.push_str(&format!("        {line}\n"));
        }
        if !line.starts_with("separator") {
            manifest.push_str("        separator: \"/\"\n");
        }
        manifest.push_str(&consumer);
        let path = write_manifest(dir.path(), file, &manifest);
        let err = rejected(&sim, &["apply", "-f", path_str(&path)]);
        assert!(
            err.contains(field),
            "{file}: the error does not name {field}:\n{err}"
        );
        assert!(
            err.contains("is invalid"),
            "{file}: not a validation error:\n{err}"
        );
    }
    let out = ok(&sim, &["get", "maskinportenclients", "-A", "-o", "name"]);
    assert!(
        out.trim().is_empty(),
        "a rejected manifest was stored: {out}"
    );

    // Strict field validation: an unknown field is refused by the server.
    let path = write_manifest(
        dir.path(),
        "unknown.yaml",
        "apiVersion: nais.io/v1\nkind: IDPortenClient\nmetadata:\n  name: x\n  namespace: team-a\n\
         spec:\n  secretName: s\n  redirectURIs: [\"https://x.example/cb\"]\n  notAField: 1\n",
    );
    let err = rejected(&sim, &["apply", "-f", path_str(&path)]);
    assert!(err.contains("notAField"), "{err}");
}

/// A Secret's data, decoded (values are UTF-8 here).
fn secret_data(
    sim: &Sim,
    namespace: &str,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    use base64::Engine as _;
    let out = ok(sim, &["get", "secret", name, "-n", namespace, "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_str(&out).expect("kubectl printed JSON");
    let mut data = std::collections::BTreeMap::new();
    for (k, v) in secret["data"].as_object().expect("the Secret has data") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 data");
        data.insert(k.clone(), String::from_utf8(bytes).expect("utf-8 value"));
    }
    data
}

/// The header and rows kubectl printed, split into columns of at least two spaces.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// `kubectl create namespace|secret|configmap` send protobuf (as Helm's release storage does).
#[test]
fn kubectl_create_sends_protobuf_and_the_embedded_server_understands_it() {
    let sim = start_sim();
    let out = ok(&sim, &["create", "namespace", "team-pb"]);
    assert_eq!(out.trim(), "namespace/team-pb created");
    let out = ok(
        &sim,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "team-pb",
            "--from-literal=user=ada",
            "--from-literal=password=s3cret",
        ],
    );
    assert_eq!(out.trim(), "secret/creds created");
    let out = ok(
        &sim,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team-pb",
            "--from-literal=mode=fast",
        ],
    );
    assert_eq!(out.trim(), "configmap/settings created");

    let data = secret_data(&sim, "team-pb", "creds");
    assert_eq!(data.get("user").map(String::as_str), Some("ada"));
    assert_eq!(data.get("password").map(String::as_str), Some("s3cret"));
    let mode = ok(
        &sim,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "team-pb",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert_eq!(mode, "fast");
    let phase = ok(
        &sim,
        &[
            "get",
            "namespace",
            "team-pb",
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(phase, "Active");
    // The protobuf answer decodes too: a second create is refused with the server's reason.
    let err = rejected(&sim, &["create", "namespace", "team-pb"]);
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );
}

#[test]
fn kubectl_get_prints_kube_apiservers_columns_for_built_in_types() {
    let sim = start_sim();
    ok(&sim, &["create", "namespace", "team-t"]);
    ok(
        &sim,
        &[
            "create",
            "secret",
            "generic",
            "two-keys",
            "-n",
            "team-t",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    );
    ok(&sim, &["run", "web", "-n", "team-t", "--image=nginx:1"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let event = write_manifest(
        dir.path(),
        "event.yaml",
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\n  namespace: team-t\n\
         involvedObject:\n  kind: Pod\n  name: web\n  namespace: team-t\nreason: Synchronized\n\
         message: all good\ntype: Normal\nsource:\n  component: portvakt\n\
         firstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\ncount: 1\n",
    );
    ok(&sim, &["apply", "-f", path_str(&event)]);

    let secrets = table(&ok(&sim, &["get", "secrets", "-n", "team-t"]));
    assert_eq!(secrets[0], ["NAME", "TYPE", "DATA", "AGE"], "{secrets:?}");
    assert_eq!(secrets[1][..3], ["two-keys", "Opaque", "2"], "{secrets:?}");

    let pods = table(&ok(&sim, &["get", "pods", "-n", "team-t"]));
    assert_eq!(
        pods[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods:?}"
    );
    // No kubelet runs it: Pending, like a real cluster without nodes.
    assert_eq!(pods[1][..4], ["web", "0/1", "Pending", "0"], "{pods:?}");

    let events = table(&ok(&sim, &["get", "events", "-n", "team-t"]));
    assert_eq!(
        events[0],
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events:?}"
    );
    assert_eq!(
        events[1][1..],
        ["Normal", "Synchronized", "pod/web", "all good"],
        "{events:?}"
    );

    let nss = table(&ok(&sim, &["get", "namespaces"]));
    assert_eq!(nss[0], ["NAME", "STATUS", "AGE"], "{nss:?}");
    assert!(
        nss.iter().any(|r| r[..2] == ["team-t", "Active"]),
        "{nss:?}"
    );
}

#[test]
fn kubectl_apply_of_a_list_applies_every_item() {
    let sim = start_sim();
    ok(&sim, &["create", "namespace", "team-l"]);
    ok(&sim, &["apply", "-f", path_str(&repo().join("crds"))]);
    let dir = tempfile::tempdir().expect("temp dir");
    let list = write_manifest(
        dir.path(),
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: settings, namespace: team-l}\n  data: {mode: fast}\n\
         - apiVersion: nais.io/v1\n  kind: MaskinportenClient\n  metadata: {name: lookup, namespace: team-l}\n  spec: {secretName: lookup-secret}\n",
    );
    let out = ok(&sim, &["apply", "-f", path_str(&list)]);
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(
        out.contains("maskinportenclient.nais.io/lookup created"),
        "{out}"
    );
    let out = ok(&sim, &["apply", "-f", path_str(&list)]);
    assert!(out.contains("configmap/settings unchanged"), "{out}");
    assert!(
        out.contains("maskinportenclient.nais.io/lookup unchanged"),
        "{out}"
    );

    // Each item is still validated, by the server, against its own kind's schema.
    let bad = write_manifest(
        dir.path(),
        "bad-list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: nais.io/v1\n  kind: MaskinportenClient\n  metadata: {name: broken, namespace: team-l}\n  spec: {secretName: s, notAField: 1}\n",
    );
    let err = rejected(&sim, &["apply", "-f", path_str(&bad)]);
    assert!(err.contains("notAField"), "{err}");
    let out = ok(
        &sim,
        &["get", "maskinportenclients", "-n", "team-l", "-o", "name"],
    );
    assert_eq!(out.trim(), "maskinportenclient.nais.io/lookup");
}

#[test]
fn kubectl_get_watch_prints_new_rows_under_the_one_header() {
    use std::io::BufRead;
    let sim = start_sim();
    ok(&sim, &["create", "namespace", "team-w"]);
    ok(
        &sim,
        &[
            "create",
            "secret",
            "generic",
            "first",
            "-n",
            "team-w",
            "--from-literal=a=1",
        ],
    );
    let mut watch = Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .args(["get", "secrets", "-n", "team-w", "--watch"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting kubectl get --watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let wait_for = |pred: &dyn Fn(&str) -> bool, lines: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = pred(&l);
                    lines.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "kubectl get --watch printed no such line; it printed:\n{}",
                    lines.join("\n")
                ),
            }
        }
    };
    wait_for(&|l| l.starts_with("first"), &mut lines);
    ok(
        &sim,
        &[
            "create",
            "secret",
            "generic",
            "second",
            "-n",
            "team-w",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    );
    wait_for(&|l| l.starts_with("second"), &mut lines);
    let _ = watch.kill();
    let _ = watch.wait();
    let headers = lines.iter().filter(|l| l.starts_with("NAME")).count();
    assert_eq!(headers, 1, "one header expected:\n{}", lines.join("\n"));
    assert_eq!(
        table(&lines[0])[0],
        ["NAME", "TYPE", "DATA", "AGE"],
        "{lines:?}"
    );
    let second = &table(lines.last().expect("a row"))[0];
    assert_eq!(second[..3], ["second", "Opaque", "2"], "{lines:?}");
}

/// Helm's default release storage writes Secrets in protobuf; `--wait` waits on the objects.
#[test]
fn helm_installs_and_uninstalls_a_chart_with_its_default_release_storage() {
    let Some(tools) = super::real_cluster::test_tools(&["PORTVAKT_HELM"]) else {
        return;
    };
    let sim = start_sim();
    let dir = tempfile::tempdir().expect("temp dir");
    let chart = dir.path().join("probe");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        chart.join("templates/objects.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe-settings\ndata:\n  mode: fast\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: probe-secret\nstringData:\n  token: abc\n",
    )
    .expect("template");
    let helm = |args: &[&str]| {
        Command::new(&tools[0])
            .args(args)
            .env("KUBECONFIG", &sim.kubeconfig)
            .env("HELM_CACHE_HOME", dir.path().join("cache"))
            .env("HELM_CONFIG_HOME", dir.path().join("config"))
            .env("HELM_DATA_HOME", dir.path().join("data"))
            .output()
            .expect("running helm")
    };
    let out = helm(&[
        "install",
        "probe",
        path_str(&chart),
        "-n",
        "default",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(out.status.success(), "helm install failed:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STATUS: deployed"),
        "{}",
        text(&out)
    );
    // The release record: a Secret helm wrote (in protobuf) and reads back.
    let release = ok(
        &sim,
        &[
            "get",
            "secret",
            "sh.helm.release.v1.probe.v1",
            "-n",
            "default",
            "-o",
            "jsonpath={.type}",
        ],
    );
    assert_eq!(release, "helm.sh/release.v1");
    let out = helm(&["list", "-n", "default", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("helm list JSON");
    assert_eq!(list[0]["name"], "probe", "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");
    let out = helm(&[
        "uninstall",
        "probe",
        "-n",
        "default",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(
        out.status.success(),
        "helm uninstall failed:\n{}",
        text(&out)
    );
    let left = ok(
        &sim,
        &["get", "configmaps,secrets", "-n", "default", "-o", "name"],
    );
    assert!(!left.contains("probe"), "{left}");
}
