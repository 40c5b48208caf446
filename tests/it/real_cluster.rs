//! A real control plane on loopback (etcd, kube-apiserver and optionally kube-controller-manager,
//! built from Go modules by `.ci/build-test-tools.sh`), torn down on drop, and smoke tests that use it.
//!
//! The binaries are named by environment variables (`PORTVAKT_ETCD`, `PORTVAKT_KUBE_APISERVER`,
//! `PORTVAKT_KUBE_CONTROLLER_MANAGER`, ...) that `bash .ci/build-test-tools.sh --env` prints. Without
//! them a test that needs one skips with one line on stderr; with `PORTVAKT_REQUIRE_TEST_TOOLS=1`
//! (set by `.ci/run`) it fails instead. That rule lives in [`test_tools`], for every test tool.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

/// Set to `1` (`.ci/run` does) to make a missing test tool a failure instead of a skip.
pub const REQUIRE_TOOLS_VAR: &str = "PORTVAKT_REQUIRE_TEST_TOOLS";

/// The test tools' binaries, named by the environment variables `.ci/build-test-tools.sh --env`
/// prints (e.g. `PORTVAKT_ETCD`). When one is unset or not an executable file: `None`, after one
/// line on stderr saying what is missing and how to get it, so that `cargo test` passes on a
/// machine that never built the tools; with `PORTVAKT_REQUIRE_TEST_TOOLS=1` it panics instead, so
/// that CI cannot pass by skipping.
pub fn test_tools(vars: &[&str]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for var in vars {
        match std::env::var_os(var) {
            None => missing.push(format!("{var} is not set")),
            Some(path) => {
                let path = PathBuf::from(path);
                if is_executable(&path) {
                    found.push(path);
                } else {
                    missing.push(format!(
                        "{var}={} is not an executable file",
                        path.display()
                    ));
                }
            }
        }
    }
    if missing.is_empty() {
        return Some(found);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let what = format!(
        "{test} needs test tools: {}; build them with `bash .ci/build-test-tools.sh` and export what \
         it prints (eval \"$(bash .ci/build-test-tools.sh --env)\")",
        missing.join(", ")
    );
    let required = std::env::var(REQUIRE_TOOLS_VAR).is_ok_and(|v| v == "1" || v == "true");
    if required {
        panic!("{what} ({REQUIRE_TOOLS_VAR} is set, so a missing tool is a failure)");
    }
    // Straight to the stderr handle: libtest captures eprintln! of passing tests, and this line
    // must be seen in a plain `cargo test`.
    let _ = writeln!(std::io::stderr(), "skipped: {what}");
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What to start besides etcd and kube-apiserver.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// kube-controller-manager with the garbage-collector and namespace controllers.
    pub controller_manager: bool,
}

/// One process of the control plane; its stdout and stderr go to `log`.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, with a CA and serving
/// certificate made for this cluster, a service-account signing key, static bearer tokens
/// (`--token-auth-file`) and `--authorization-mode=RBAC`. The admin user is in `system:masters`;
/// the user `portvakt-test-user` is in no group at all, for RBAC tests. Every process is killed on
/// drop (also when a test panics); on a panic the processes' logs are printed first.
pub struct RealCluster {
    procs: Vec<Proc>,
    dir: tempfile::TempDir,
    server_url: String,
    etcd_url: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    admin_token: String,
    kubeconfig: PathBuf,
    user_kubeconfig: PathBuf,
}

/// The user without any role, whose kubeconfig is [`RealCluster::user_kubeconfig_path`].
pub const TEST_USER: &str = "portvakt-test-user";

impl RealCluster {
    /// Starts the control plane, or returns `None` (after one line on stderr) when its binaries
    /// are not there; see [`test_tools`]. Panics, with the processes' logs, if it does not come up.
    pub fn start(options: Options) -> Option<RealCluster> {
        let mut vars = vec!["PORTVAKT_ETCD", "PORTVAKT_KUBE_APISERVER"];
        if options.controller_manager {
            vars.push("PORTVAKT_KUBE_CONTROLLER_MANAGER");
        }
        let tools = test_tools(&vars)?;
        let began = Instant::now();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("portvakt-real-cluster.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();

        // Certificates: a CA, the API server's serving certificate (for 127.0.0.1 and the in-cluster
        // names), and a key that signs service-account tokens.
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portvakt-test-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let serving_key = rcgen::KeyPair::generate().expect("serving key");
        let mut serving_params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .expect("serving params");
        serving_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        serving_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params
            .signed_by(&serving_key, &issuer)
            .expect("serving certificate");
        let sa_key = rcgen::KeyPair::generate().expect("service-account key");
        write(d, "ca.crt", &ca_cert.pem());
        write(d, "serving.crt", &serving_cert.pem());
        write(d, "serving.key", &serving_key.serialize_pem());
        write(d, "sa.key", &sa_key.serialize_pem());
        write(d, "sa.pub", &sa_key.public_key_pem());

        // Static tokens: token,user,uid,"groups".
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        let kcm_token = uuid::Uuid::new_v4().simple().to_string();
        let user_token = uuid::Uuid::new_v4().simple().to_string();
        write(
            d,
            "tokens.csv",
            &format!(
                "{admin_token},portvakt-admin,portvakt-admin,\"system:masters\"\n\
                 {kcm_token},system:kube-controller-manager,system:kube-controller-manager,\"system:masters\"\n\
                 {user_token},{TEST_USER},{TEST_USER}\n"
            ),
        );

        let etcd_client = free_port();
        let etcd_peer = free_port();
        let apiserver_port = free_port();
        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = d.join("admin.kubeconfig");
        let user_kubeconfig = d.join("user.kubeconfig");
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&server_url, &ca_data, "portvakt-admin", &admin_token),
        )
        .expect("writing the admin kubeconfig");
        std::fs::write(
            &user_kubeconfig,
            kubeconfig_yaml(&server_url, &ca_data, TEST_USER, &user_token),
        )
        .expect("writing the user kubeconfig");
        std::fs::write(
            d.join("kcm.kubeconfig"),
            kubeconfig_yaml(
                &server_url,
                &ca_data,
                "system:kube-controller-manager",
                &kcm_token,
            ),
        )
        .expect("writing the controller manager's kubeconfig");

        let mut cluster = RealCluster {
            procs: Vec::new(),
            server_url,
            etcd_url: format!("http://127.0.0.1:{etcd_client}"),
            ca_der: ca_cert.der().clone(),
            admin_token,
            kubeconfig,
            user_kubeconfig,
            dir,
        };
        let d = cluster.dir.path().to_path_buf();
        let p = |p: &str| d.join(p).to_str().expect("utf-8 temp path").to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        cluster.spawn(
            "etcd",
            &tools[0],
            &[
                "--name=portvakt-test".to_string(),
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=portvakt-test={peer_url}"),
                // A test cluster's data need not survive a power cut.
                "--unsafe-no-fsync".to_string(),
                "--log-level=warn".to_string(),
            ],
        );
        cluster.wait_until("etcd is healthy", Duration::from_secs(60), |_| {
            http_get(etcd_client, "/health").is_ok_and(|(s, b)| s == 200 && b.contains("true"))
        });

        cluster.spawn(
            "kube-apiserver",
            &tools[1],
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={apiserver_port}"),
                format!("--cert-dir={}", p("apiserver-certs")),
                format!("--tls-cert-file={}", p("serving.crt")),
                format!("--tls-private-key-file={}", p("serving.key")),
                format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=RBAC".to_string(),
                format!("--service-account-issuer=https://127.0.0.1:{apiserver_port}"),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                // An allocation range for Service IPs; nothing is ever sent to it.
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                // No service-account controller runs, so Pods cannot wait for a default account
                // (as controller-runtime's envtest does).
                "--disable-admission-plugins=ServiceAccount".to_string(),
                "--allow-privileged=true".to_string(),
            ],
        );
        cluster.wait_until(
            "kube-apiserver answers /readyz with 200",
            Duration::from_secs(120),
            |c| c.get("/readyz").is_ok_and(|(status, _)| status == 200),
        );

        if options.controller_manager {
            cluster.spawn(
                "kube-controller-manager",
                &tools[2],
                &[
                    format!("--kubeconfig={}", p("kcm.kubeconfig")),
                    "--controllers=garbagecollector,namespace".to_string(),
                    "--leader-elect=false".to_string(),
                    "--use-service-account-credentials=false".to_string(),
                    // No HTTPS endpoint of its own: nothing here reads it.
                    "--secure-port=0".to_string(),
                ],
            );
        }
        eprintln!(
            "real cluster: etcd + kube-apiserver{} ready at {} in {:.1}s",
            if options.controller_manager {
                " + kube-controller-manager"
            } else {
                ""
            },
            cluster.server_url,
            began.elapsed().as_secs_f64()
        );
        Some(cluster)
    }

    /// The admin kubeconfig (user `portvakt-admin` in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig for [`TEST_USER`], who has no role until a test binds one.
    pub fn user_kubeconfig_path(&self) -> &Path {
        &self.user_kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// etcd's client URL (`http://127.0.0.1:PORT`), e.g. to compact its history.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The cluster CA (DER), for HTTP clients that talk to the API server directly.
    pub fn ca_der(&self) -> &[u8] {
        self.ca_der.as_ref()
    }

    /// The admin's bearer token (user `portvakt-admin`, in `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether kube-controller-manager was started and is still running.
    pub fn controller_manager_running(&mut self) -> bool {
        self.procs
            .iter_mut()
            .any(|p| p.name == "kube-controller-manager" && matches!(p.child.try_wait(), Ok(None)))
    }

    /// A `kube::Client` for the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())
            .expect("reading the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config from the admin kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(self.kubeconfig_path(), args)
    }

    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("running kubectl")
    }

    /// kubectl as admin, which must succeed; its stdout.
    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An admin GET over HTTPS that trusts only this cluster's CA: (status, body).
    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(std::io::Error::other)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(
            std::net::IpAddr::from(Ipv4Addr::LOCALHOST).into(),
        );
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
        let port = self
            .server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port in the server URL");
        let sock = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(2),
        )?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            self.admin_token
        );
        tls.write_all(request.as_bytes())?;
        read_response(&mut tls)
    }

    fn spawn(&mut self, name: &'static str, binary: &Path, args: &[String]) {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = File::create(&log).expect("creating a log file");
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", binary.display()));
        self.procs.push(Proc { name, child, log });
    }

    /// Polls `ready` until it holds, failing (with the logs, through Drop) when a process exits or
    /// the deadline passes.
    #[track_caller]
    fn wait_until(&mut self, what: &str, limit: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if ready(self) {
                return;
            }
            for p in &mut self.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!(
                        "{} exited ({status}) while waiting until {what}; its log: {}",
                        p.name,
                        p.log.display()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "real cluster: not ready within {limit:?}: waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn print_logs(&self) {
        for p in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "----- {} (last {} of {} lines of {}) -----\n{}",
                p.name,
                tail.len(),
                lines.len(),
                p.log.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

/// A port that was free a moment ago (bound on port 0, then released; the small race is accepted).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

fn kubeconfig_yaml(server: &str, ca_data: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca_data}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: real\n  context:\n    cluster: real\n    user: {user}\n    namespace: default\n\
         current-context: real\n"
    )
}

/// A plain-HTTP GET on 127.0.0.1 (etcd's client port): (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut sock = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(2),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    read_response(&mut sock)
}

fn read_response(stream: &mut impl Read) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server that closes without TLS close_notify has still sent its whole HTTP/1.0 reply.
        if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no kubectl binary on PATH: the real-cluster tests drive the real kubectl; install it \
                 (the machine image ships one; .ci/run installs it with apt-get otherwise)"
            )
        })
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The k8s.io/kubernetes version tools/kube pins, e.g. `v1.34.12`.
fn pinned_kube_version() -> String {
    let gomod = std::fs::read_to_string(repo().join("tools/kube/go.mod"))
        .expect("reading tools/kube/go.mod");
    gomod
        .lines()
        .filter(|l| !l.contains("=>"))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let first = words.next()?;
            let module = if first == "require" {
                words.next()?
            } else {
                first
            };
            (module == "k8s.io/kubernetes")
                .then(|| words.next().map(str::to_string))
                .flatten()
        })
        .expect("tools/kube/go.mod requires k8s.io/kubernetes")
}

/// Polls an async condition every 200 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {what} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every field of `expected` is in `actual` with the same value (the server may add fields).
fn contains(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().try_for_each(|(k, v)| match a.get(k) {
            Some(av) => contains(v, av, &format!("{at}.{k}")),
            None => Err(format!("{at}.{k} is missing (pruned?)")),
        }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (ev, av))| contains(ev, av, &format!("{at}[{i}]"))),
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: expected {expected}, got {actual}")),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn apply_namespaces(cluster: &RealCluster, names: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml: String = names
        .iter()
        .map(|n| format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
        .collect();
    let path = dir.path().join("namespaces.yaml");
    std::fs::write(&path, yaml).expect("writing namespaces.yaml");
    let out = cluster.kubectl_ok(&["apply", "-f", path_str(&path)]);
    for n in names {
        assert!(out.contains(&format!("namespace/{n} created")), "{out}");
    }
}

fn apply_crds(cluster: &RealCluster) {
    let out = cluster.kubectl_ok(&["apply", "-f", path_str(&repo().join("crds"))]);
    for crd in [
        "idportenclients.nais.io",
        "maskinportenclients.nais.io",
        "azureadapplications.nais.io",
    ] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd} created"
            )),
            "{out}"
        );
    }
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/idportenclients.nais.io",
        "crd/maskinportenclients.nais.io",
        "crd/azureadapplications.nais.io",
    ]);
}

#[tokio::test]
async fn real_apiserver_reports_the_pinned_version() {
    let Some(cluster) = RealCluster::start(Options::default()) else {
        return;
    };
    let pinned = pinned_kube_version();
    let minor = pinned
        .trim_start_matches("v1.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();

    let info = cluster
        .client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version with the kube crate");
    assert_eq!(info.git_version, pinned, "{info:?}");
    assert_eq!(
        (info.major.as_str(), info.minor.as_str()),
        ("1", minor.as_str())
    );

    let out = cluster.kubectl_ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("kubectl version -o json");
    assert_eq!(v["serverVersion"]["gitVersion"], json!(pinned), "{out}");
    assert!(
        cluster.server_url().starts_with("https://127.0.0.1:"),
        "{}",
        cluster.server_url()
    );
}

#[test]
fn kubectl_applies_the_crds_and_every_example_to_a_real_apiserver() {
    let Some(cluster) = RealCluster::start(Options::default()) else {
        return;
    };
    apply_crds(&cluster);

    let examples = repo().join("tests/data/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("tests/data/examples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", examples.display());
    let manifests: Vec<(PathBuf, Value)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("reading an example");
            let v: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, v)
        })
        .collect();
    let mut namespaces: Vec<&str> = manifests
        .iter()
        .map(|(f, v)| {
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no namespace", f.display()))
        })
        .collect();
    namespaces.sort();
    namespaces.dedup();
    apply_namespaces(&cluster, &namespaces);

    for (file, manifest) in &manifests {
        let kind = manifest["kind"].as_str().expect("kind").to_lowercase();
        let name = manifest["metadata"]["name"].as_str().expect("name");
        let ns = manifest["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        let out = cluster.kubectl_ok(&["apply", "-f", path_str(file)]);
        assert!(
            out.contains(&format!("{kind}.nais.io/{name} created")),
            "{}: {out}",
            file.display()
        );
        let got = cluster.kubectl_ok(&[
            "get",
            &format!("{kind}.nais.io"),
            name,
            "-n",
            ns,
            "-o",
            "json",
        ]);
        let stored: Value = serde_json::from_str(&got).expect("kubectl get -o json");
        assert_eq!(stored["metadata"]["name"], json!(name));
        assert!(
            stored["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
        );
        // The real API server keeps every field the example sets (nothing pruned or rewritten).
        if let Err(e) = contains(&manifest["spec"], &stored["spec"], "spec") {
            panic!("{}: {e}\nstored: {got}", file.display());
        }
    }

    // Printer columns come from the CRD, rendered by the real server's table conversion.
    let out = cluster.kubectl_ok(&["get", "idportenclients", "-n", "tilgangsstyring-main"]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "SECRET REF", "CLIENTID", "AGE"] {
        assert!(
            header.contains(column),
            "column {column} missing in:\n{out}"
        );
    }
    let out = cluster.kubectl_ok(&["get", "maskinportenclients", "-A", "-o", "name"]);
    for name in [
        "maskinportenclient.nais.io/krr-lookup",
        "maskinportenclient.nais.io/delegated-api",
        "maskinportenclient.nais.io/test-client",
    ] {
        assert!(out.lines().any(|l| l == name), "{name} missing in:\n{out}");
    }
}

#[test]
fn rbac_forbids_a_user_without_a_role_until_one_is_bound() {
    let Some(cluster) = RealCluster::start(Options::default()) else {
        return;
    };
    let user = cluster.user_kubeconfig_path().to_path_buf();
    let out = cluster.kubectl_as(&user, &["get", "secrets", "-n", "default"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Forbidden") && stderr.contains(TEST_USER),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: secret-reader\n  namespace: default\n\
             rules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: secret-reader\n  namespace: default\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: secret-reader\n\
             subjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: {TEST_USER}\n"
        ),
    )
    .expect("writing rbac.yaml");
    cluster.kubectl_ok(&["apply", "-f", path_str(&rbac)]);

    // The authorizer reads roles from its informers: poll until the binding is seen.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl_as(&user, &["get", "secrets", "-n", "default"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the RoleBinding did not take effect within 30s:\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bound in default only.
    let out = cluster.kubectl_as(&user, &["get", "secrets", "-n", "kube-system"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        text(&out)
    );
    let out = cluster.kubectl_as(&user, &["delete", "secret", "nothing", "-n", "default"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        text(&out)
    );
}

fn maskinportenclient(name: &str, ns: &str) -> Value {
    json!({
        "apiVersion": "nais.io/v1",
        "kind": "MaskinportenClient",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"secretName": format!("{name}-maskinporten")}
    })
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("creating a namespace");
}

fn secret(name: &str, ns: &str, owner: Option<Value>) -> Secret {
    let mut v = json!({
        "metadata": {"name": name, "namespace": ns},
        "stringData": {"k": "v"}
    });
    if let Some(owner) = owner {
        v["metadata"]["ownerReferences"] = json!([owner]);
    }
    serde_json::from_value(v).expect("secret")
}

fn gone<T>(result: Result<T, kube::Error>, what: &str) -> Result<(), String> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Ok(_) => Err(format!("{what} still exists")),
        Err(e) => Err(format!("reading {what}: {e}")),
    }
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let Some(mut cluster) = RealCluster::start(Options {
        controller_manager: true,
    }) else {
        return;
    };
    apply_crds(&cluster);
    let client = cluster.client().await;
    create_namespace(&client, "doomed").await;
    let mpcs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "doomed",
        &kube::api::ApiResource {
            group: "nais.io".into(),
            version: "v1".into(),
            api_version: "nais.io/v1".into(),
            kind: "MaskinportenClient".into(),
            plural: "maskinportenclients".into(),
        },
    );
    let mpc: kube::api::DynamicObject =
        serde_json::from_value(maskinportenclient("doomed-client", "doomed")).expect("cr");
    mpcs.create(&PostParams::default(), &mpc)
        .await
        .expect("creating a MaskinportenClient");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    secrets
        .create(&PostParams::default(), &secret("plain", "doomed", None))
        .await
        .expect("creating a Secret");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "b"}}))
            .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("creating a ConfigMap");
    assert!(cluster.controller_manager_running());

    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .expect("deleting the namespace");
    // The namespace controller empties the namespace, then removes its finalizer.
    eventually(
        "namespace doomed is deleted",
        Duration::from_secs(120),
        || async { gone(nss.get("doomed").await, "namespace doomed") },
    )
    .await;
    gone(mpcs.get("doomed-client").await, "the MaskinportenClient").expect("CR removed");
    gone(secrets.get("plain").await, "the Secret").expect("Secret removed");
    gone(cms.get("cm").await, "the ConfigMap").expect("ConfigMap removed");
    assert!(
        cluster.controller_manager_running(),
        "kube-controller-manager exited"
    );
}

#[tokio::test]
async fn a_secret_owned_by_a_deleted_custom_resource_is_garbage_collected() {
    let Some(mut cluster) = RealCluster::start(Options {
        controller_manager: true,
    }) else {
        return;
    };
    apply_crds(&cluster);
    let client = cluster.client().await;
    create_namespace(&client, "team-gc").await;
    let mpcs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "team-gc",
        &kube::api::ApiResource {
            group: "nais.io".into(),
            version: "v1".into(),
            api_version: "nais.io/v1".into(),
            kind: "MaskinportenClient".into(),
            plural: "maskinportenclients".into(),
        },
    );
    let mpc: kube::api::DynamicObject =
        serde_json::from_value(maskinportenclient("owner", "team-gc")).expect("cr");
    let created = mpcs
        .create(&PostParams::default(), &mpc)
        .await
        .expect("creating a MaskinportenClient");
    let uid = created.metadata.uid.clone().expect("uid");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-gc");
    let owner = json!({
        "apiVersion": "nais.io/v1",
        "kind": "MaskinportenClient",
        "name": "owner",
        "uid": uid,
        "controller": true,
    });
    secrets
        .create(
            &PostParams::default(),
            &secret("owned", "team-gc", Some(owner)),
        )
        .await
        .expect("creating the owned Secret");
    secrets
        .create(&PostParams::default(), &secret("unowned", "team-gc", None))
        .await
        .expect("creating an unowned Secret");
    assert!(cluster.controller_manager_running());

    mpcs.delete("owner", &DeleteParams::default())
        .await
        .expect("deleting the MaskinportenClient");
    // The garbage collector learns new resource types from discovery (every 30 s) and then
    // deletes dependents whose owner is gone.
    eventually(
        "the Secret owned by the deleted MaskinportenClient is garbage-collected",
        Duration::from_secs(180),
        || async { gone(secrets.get("owned").await, "Secret owned") },
    )
    .await;
    secrets
        .get("unowned")
        .await
        .expect("the Secret without an owner is kept");
    assert!(
        cluster.controller_manager_running(),
        "kube-controller-manager exited"
    );
}
