//! The real kubectl against `portvakt sim`: an independent client judging the embedded API server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `portvakt sim` as a child process, killed when dropped.
struct Sim {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_examples() -> PathBuf {
    let dir = repo().join("../shared/examples");
    assert!(dir.is_dir(), "the shared examples are missing at {}", dir.display());
    dir
}

fn kubectl_binary() -> PathBuf {
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

fn start_sim() -> Sim {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting portvakt sim");
    let sim = Sim { child, kubeconfig, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.kubeconfig.exists() {
        assert!(Instant::now() < deadline, "portvakt sim wrote no kubeconfig within 60s");
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

fn text(output: &Output) -> String {
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
    assert!(output.status.success(), "kubectl {args:?} failed:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn rejected(sim: &Sim, args: &[&str]) -> String {
    let output = kubectl(sim, args);
    assert!(!output.status.success(), "kubectl {args:?} should have failed:\n{}", text(&output));
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

/// `kubectl create namespace` sends protobuf, which the embedded server does not speak;
/// `kubectl apply` of a manifest sends JSON.
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
    let out = ok(&sim, &["get", "idportenclients", "-n", "tilgangsstyring-main"]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "SECRET REF", "CLIENTID", "AGE"] {
        assert!(header.contains(column), "column {column} missing in:\n{out}");
    }
    assert!(out.contains("test-client") && out.contains("idporten-secret"), "{out}");
    let out = ok(&sim, &["get", "maskinportenclients", "-A"]);
    assert!(out.contains("krr-lookup") && out.contains("delegated-api"), "{out}");

    // A second client-side apply of an unchanged file is a no-op patch.
    let out = ok(&sim, &["apply", "-f", path_str(&examples.join("idportenclient.yaml"))]);
    assert!(out.contains("unchanged"), "{out}");

    // Server-side apply.
    let out = ok(
        &sim,
        &["apply", "--server-side", "-f", path_str(&examples.join("maskinportenclient-consumer.yaml"))],
    );
    assert!(out.contains("serverside-applied"), "{out}");

    let out = ok(&sim, &["describe", "idportenclient", "test-client", "-n", "tilgangsstyring-main"]);
    assert!(out.contains("Name:") && out.contains("test-client"), "{out}");
    assert!(out.contains("idporten-secret"), "{out}");

    let out = ok(
        &sim,
        &["annotate", "idportenclient", "test-client", "-n", "tilgangsstyring-main", "digdir.nais.io/resync=true"],
    );
    assert!(out.contains("annotated"), "{out}");
    let out = ok(
        &sim,
        &[
            "patch", "idportenclient", "test-client", "-n", "tilgangsstyring-main", "--type=merge",
            "-p", r#"{"spec":{"clientName":"Patched Name"}}"#,
        ],
    );
    assert!(out.contains("patched"), "{out}");
    let out = ok(
        &sim,
        &["get", "idportenclient", "test-client", "-n", "tilgangsstyring-main", "-o", "jsonpath={.spec.clientName}"],
    );
    assert_eq!(out, "Patched Name");

    let out = ok(&sim, &["delete", "-f", path_str(&examples)]);
    assert!(out.contains("idportenclient.nais.io \"test-client\" deleted"), "{out}");
    let out = ok(&sim, &["get", "idportenclients,maskinportenclients,azureadapplications", "-A"]);
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
        ("orgno.yaml", "orgno: \"12345678\"", "spec.scopes.exposes[0].consumers[0].orgno"),
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
        assert!(err.contains(field), "{file}: the error does not name {field}:\n{err}");
        assert!(err.contains("is invalid"), "{file}: not a validation error:\n{err}");
    }
    let out = ok(&sim, &["get", "maskinportenclients", "-A", "-o", "name"]);
    assert!(out.trim().is_empty(), "a rejected manifest was stored: {out}");

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
