//! `portvakt bench`: the performance benchmark of issue 3.
//!
//! Starts `portvakt sim` (with a fixed Digdir latency) and, after seeding N MaskinportenClients plus
//! unrelated Secrets and Pods, `portvakt run`, each as its own child process; then measures the time
//! until every MaskinportenClient is Ready, the Digdir calls that took, one steady-state window of at
//! least one resync period (its calls, writes, reconciles and the operator's CPU), the CPU time spent
//! on keys (per key with the native generator and the pure-Rust one it replaced, measured in this
//! run; in the operator, first keys apart) and the operator's peak RSS, and prints the figures with
//! the targets of issues 3 and 13.
//!
//! Both children are killed on every path (a guard kills them when dropped) and everything is
//! written to a private temporary directory that is removed at the end.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use portvakt::crd::{ConsumedScope, MaskinportenClient, MaskinportenClientSpec, MaskinportenScope};
use serde_json::{Value, json};

use super::run::parse_duration;
use portvakt::controller::digdir_kinds::exposed::ACL_CONCURRENCY;

/// The scope every benchmark MaskinportenClient consumes (seeded in the Digdir simulator).
const CONSUMED_SCOPE: &str = "krr:global/kontaktinformasjon.read";
/// Label selector of the Secrets the MaskinportenClient controller manages.
const MANAGED_SECRETS: &str = "type=maskinporten.digdirator.nais.io";
/// Metric the operator may expose for the CPU time spent generating keys.
const KEYGEN_CPU_METRIC: &str = "portvakt_key_generation_cpu_seconds_total";
/// The CPU time of the keys someone waited for (first keys): what time to Ready is bound by.
const FIRST_KEY_CPU_METRIC: &str = "portvakt_urgent_key_generation_cpu_seconds_total";
const FIRST_KEYS_METRIC: &str = "portvakt_urgent_keys_generated_total";
/// Periodic steady-state passes (one list for all resources) the operator completed.
const PERIODIC_PASSES_METRIC: &str = "portvakt_periodic_passes_total";

/// Peak RSS target: under 64 MiB up to 1,000 resources (issue 3), under 256 MiB beyond, up to
/// 10,000 (issue 13).
fn rss_target_bytes(n: usize) -> u64 {
    if n <= 1000 { 64 << 20 } else { 256 << 20 }
}

/// The steady state's CPU target: under 1% of one core.
const STEADY_CPU_SHARE: f64 = 0.01;
/// Concurrent requests while seeding.
const SEED_CONCURRENCY: usize = 32;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of MaskinportenClients.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Number of unrelated objects (half Secrets, half Pods) in the same namespaces.
    #[arg(long, default_value_t = 10_000)]
    pub unrelated: usize,
    /// Fixed latency of every Digdir self-service API call (e.g. 20ms).
    #[arg(long, default_value = "20ms")]
    pub latency: String,
    /// The operator's `--concurrency` (concurrent reconciles per controller).
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Number of namespaces the objects are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// The steady-state window after everything is Ready; also the operator's `--resync-period`.
    #[arg(long, default_value = "60s")]
    pub steady_window: String,
    /// The operator's `--next-key-delay`: each resource's next key is made no sooner than this after
    /// its first key was registered (then on idle CPU, after every first key). The steady-state window starts once every next key is made (the
    /// operator's `portvakt_next_keys_deferred` is 0) and Secret writes have stopped.
    #[arg(long, default_value = "5m")]
    pub next_key_delay: String,
    /// The whole benchmark stops (and fails) after this long.
    #[arg(long, default_value = "30m")]
    pub timeout: String,
    /// Exit 1 when a target is missed (otherwise only a broken run exits non-zero).
    #[arg(long)]
    pub check: bool,
    /// An API provider besides the N clients: one MaskinportenClient exposing this many scopes
    /// (0: none), each to `--provider-consumers` organisations (the simulator is seeded with them).
    #[arg(long, default_value_t = 0)]
    pub provider_scopes: usize,
    /// Consumers of each of the provider's scopes.
    #[arg(long, default_value_t = 200)]
    pub provider_consumers: usize,
    /// Benchmark the AzureAdApplication controller instead: `--n` apps pre-authorizing each other in a
    /// chain against the Entra simulator (Graph latency `--latency`), after single apps timed from
    /// apply to Ready (see bench_entra.rs).
    #[arg(long)]
    pub entra: bool,
    /// With --entra: Graph's documented write limit on (3,000 writes per 2 min 30 s, then 429).
    #[arg(long)]
    pub graph_throttling: bool,
}

pub async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.entra {
        return super::bench_entra::run(&args).await;
    }
    let latency = parse_duration("--latency", &args.latency)?;
    let steady = parse_duration("--steady-window", &args.steady_window)?;
    let timeout = parse_duration("--timeout", &args.timeout)?;
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    if args.namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if steady < Duration::from_secs(1) || steady.subsec_millis() != 0 {
        bail!(
            "--steady-window: {:?} must be whole seconds, at least 1s",
            args.steady_window
        );
    }
    let next_key_delay = parse_duration("--next-key-delay", &args.next_key_delay)?;
    if next_key_delay.subsec_millis() != 0 {
        bail!(
            "--next-key-delay: {:?} must be whole seconds",
            args.next_key_delay
        );
    }
    let settings = Settings {
        latency,
        steady,
        next_key_delay,
        deadline: Instant::now() + timeout,
    };
    // The bench's own deadline checks give the clearer message; this is the backstop.
    let outcome = tokio::select! {
        r = tokio::time::timeout(timeout + Duration::from_secs(10), bench(&args, &settings)) => match r {
            Ok(r) => r?,
            Err(_) => bail!("--timeout {} reached before the benchmark finished", args.timeout),
        },
        _ = stop_asked()? => bail!("interrupted"),
    };
    print!("{}", outcome.render(&args, &settings));
    if args.check && !outcome.all_pass(&settings) {
        bail!("--check: at least one target was missed (see FAIL above)");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. Returning through the error path drops the child guards, so
/// `kill` of the bench stops its simulator and operator too instead of orphaning them.
pub(super) fn stop_asked() -> anyhow::Result<tokio_util::sync::WaitForCancellationFutureOwned> {
    let stop = tokio_util::sync::CancellationToken::new();
    super::run::install_signal_handlers(stop.clone())?;
    Ok(stop.cancelled_owned())
}

struct Settings {
    latency: Duration,
    steady: Duration,
    next_key_delay: Duration,
    deadline: Instant,
}

impl Settings {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A private temporary directory, removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("portvakt-bench-{}", uuid::Uuid::new_v4()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&path)
            .with_context(|| format!("creating the temporary directory {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process in a process group of its own, stopped (and reaped) when dropped: SIGTERM to the
/// group, SIGKILL after 5 s. The group takes along whatever the child started (a profiler given in
/// PORTVAKT_BENCH_WRAP runs the operator as its own child).
pub(super) struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    pub(super) fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = file
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `portvakt {name}`"))?;
        Ok(Self { name, child, log })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails (with the end of its log) when the child has exited.
    pub(super) fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "`portvakt {}` exited ({status}); the end of its log:\n{}",
                self.name,
                self.log_tail(30)
            ),
            Err(e) => bail!("`portvakt {}`: cannot check the process: {e}", self.name),
        }
    }

    pub(super) fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        all[start..].iter().map(|l| format!("  | {l}\n")).collect()
    }
}

impl ChildGuard {
    #[cfg(unix)]
    fn signal_group(&self, signal: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) takes plain integers; a negative pid names the child's process group.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.signal_group(libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("finding a free loopback port")?
        .port())
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped).
pub(super) fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Prometheus text → metric (with labels, as written) → value.
pub(super) fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| {
            v.trim()
                .parse::<f64>()
                .ok()
                .map(|v| (k.trim().to_string(), v))
        })
        .collect()
}

/// The Digdir simulator's call counts (since it started).
#[derive(Clone, Debug, Default)]
struct Calls {
    admin: u64,
    writes: u64,
    token: u64,
    by_route: BTreeMap<String, u64>,
    /// Reads of each exposed scope's ACL.
    acl_reads: BTreeMap<String, u64>,
}

/// Whether `route` ("METHOD /path") is an API provider's call (its exposed scopes and their
/// ACLs), not a client's (the consumed-scope reads `/scopes/all` and `/scopes/access/all` are).
fn provider_route(route: &str) -> bool {
    let path = route.split_once(' ').map_or(route, |(_, p)| p);
    path.starts_with("/api/v1/scopes")
        && !path.starts_with("/api/v1/scopes/all")
        && path != "/api/v1/scopes/access/all"
}

/// Whether a provider's call is an ACL call (made in parallel within a pass).
fn acl_route(route: &str) -> bool {
    provider_route(route) && route.contains("/scopes/access")
}

impl CallCounts for Calls {
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let num = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("/_sim/digdir/calls: no number `{k}`"))
        };
        let by_route = v
            .get("by_route")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let acl_reads = v
            .get("acl_reads")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            admin: num("admin_api")?,
            writes: num("admin_api_writes")?,
            token: num("token")?,
            by_route,
            acl_reads,
        })
    }
}

impl Calls {
    /// `(self without the provider's calls, the provider's calls)`.
    fn split_provider(&self) -> (Calls, Calls) {
        let mut clients = self.clone();
        let mut provider = Calls::default();
        for (route, n) in &self.by_route {
            if provider_route(route) {
                clients.by_route.remove(route);
                clients.admin = clients.admin.saturating_sub(*n);
                provider.admin += n;
                if !route.starts_with("GET ") {
                    clients.writes = clients.writes.saturating_sub(*n);
                    provider.writes += n;
                }
                provider.by_route.insert(route.clone(), *n);
            }
        }
        provider.acl_reads = std::mem::take(&mut clients.acl_reads);
        (clients, provider)
    }

    /// The provider's calls made one after the other, and those made in parallel (ACL calls).
    fn sequential_and_parallel(&self) -> (u64, u64) {
        self.by_route
            .iter()
            .fold((0, 0), |(seq, par), (route, n)| match acl_route(route) {
                true => (seq, par + n),
                false => (seq + n, par),
            })
    }

    /// `GET …/clients` (the list of registrations).
    fn lists(&self) -> u64 {
        self.by_route
            .iter()
            .filter(|(route, _)| {
                route.starts_with("GET /api/") && route.trim_end_matches('/').ends_with("/clients")
            })
            .map(|(_, n)| n)
            .sum()
    }

    fn minus(&self, earlier: &Calls) -> Calls {
        let by_route = self
            .by_route
            .iter()
            .map(|(k, n)| {
                (
                    k.clone(),
                    n.saturating_sub(earlier.by_route.get(k).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let acl_reads = self
            .acl_reads
            .iter()
            .map(|(k, n)| {
                (
                    k.clone(),
                    n.saturating_sub(earlier.acl_reads.get(k).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Calls {
            admin: self.admin.saturating_sub(earlier.admin),
            writes: self.writes.saturating_sub(earlier.writes),
            token: self.token.saturating_sub(earlier.token),
            by_route,
            acl_reads,
        }
    }
}

/// A simulator's call counts, read from its `/_sim/<provider>/calls` route.
pub(super) trait CallCounts: Sized {
    fn from_json(v: &Value) -> anyhow::Result<Self>;
}

/// Reads the simulator's call counts and the operator's metrics.
pub(super) struct Probe<C> {
    http: reqwest::Client,
    calls_url: String,
    metrics_url: String,
    counts: std::marker::PhantomData<C>,
}

impl<C: CallCounts> Probe<C> {
    pub(super) fn new(calls_url: String, metrics_port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
            calls_url,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            counts: std::marker::PhantomData,
        })
    }

    pub(super) async fn calls(&self) -> anyhow::Result<C> {
        let v: Value = self
            .http
            .get(&self.calls_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("reading {}", self.calls_url))?
            .json()
            .await
            .with_context(|| format!("reading {}", self.calls_url))?;
        C::from_json(&v)
    }

    pub(super) async fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("reading {}", self.metrics_url))?
            .text()
            .await
            .with_context(|| format!("reading {}", self.metrics_url))?;
        Ok(parse_metrics(&text))
    }
}

pub(super) fn metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

/// CPU time of the calling thread (schedstat in ns; falls back to None).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Mean CPU time of a key generator, measured in-process; `(mean, how)`.
fn measure_keygen(
    samples: u32,
    generate: fn() -> portvakt::keys::Result<portvakt::keys::PrivateJwk>,
) -> anyhow::Result<(Duration, &'static str)> {
    let wall = Instant::now();
    let cpu = thread_cpu_time();
    for _ in 0..samples {
        generate().context("measuring key generation")?;
    }
    let (total, how) = match (cpu, thread_cpu_time()) {
        (Some(a), Some(b)) if b > a => (b - a, "thread CPU time"),
        _ => (wall.elapsed(), "wall time"),
    };
    Ok((total / samples.max(1), how))
}

/// Process (utime + stime, peak RSS) from /proc.
pub(super) fn proc_usage(pid: u32) -> anyhow::Result<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    // utime is field 14, stime field 15 (1-based); `rest` starts at field 3. USER_HZ is 100 on Linux.
    let ticks = tick(11)? + tick(12)?;
    let cpu = Duration::from_millis(ticks * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("/proc/{pid}/status: no VmHWM"))?;
    Ok((cpu, hwm_kb * 1024))
}

fn ns_name(i: usize) -> String {
    format!("bench-{i:02}")
}

/// Ready for its current generation, by the condition policy every kind shares.
fn ready_at_generation(mc: &MaskinportenClient) -> bool {
    let conditions = mc.status.as_ref().and_then(|s| s.conditions.as_deref());
    portvakt::conditions::is_ready(conditions.unwrap_or_default(), mc.metadata.generation)
}

fn random_b64(len: usize) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An unrelated Secret of a realistic size (~2 KB: credentials and a certificate-sized blob).
fn unrelated_secret(ns: &str, i: usize) -> anyhow::Result<Secret> {
    let v = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("app-{i}-credentials"),
            "namespace": ns,
            "labels": {"app": format!("app-{i}"), "team": ns},
            "annotations": {"reloader.stakater.com/match": "true"},
        },
        "type": "Opaque",
        "data": {
            "DATABASE_USERNAME": random_b64(12),
            "DATABASE_PASSWORD": random_b64(32),
            "DATABASE_URL": random_b64(96),
            "ca.crt": random_b64(1200),
        },
    });
    serde_json::from_value(v).context("building an unrelated Secret")
}

/// An unrelated Pod (~3 KB); every third one references an unrelated Secret (volume and envFrom).
fn unrelated_pod(ns: &str, i: usize, secrets: usize) -> anyhow::Result<Pod> {
    let env: Vec<Value> = (0..12)
        .map(|k| json!({"name": format!("SETTING_{k}"), "value": format!("value-{k}-{}", "x".repeat(24))}))
        .collect();
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut env_from = vec![];
    if i.is_multiple_of(3) && secrets > 0 {
        let secret = format!("app-{}-credentials", i % secrets);
        volumes.push(json!({"name": "creds", "secret": {"secretName": secret}}));
        mounts
            .push(json!({"name": "creds", "mountPath": "/var/run/secrets/app", "readOnly": true}));
        env_from.push(json!({"secretRef": {"name": secret}}));
    }
    let v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("app-{i}-7d9f8c6b5-{:05}", i % 100_000),
            "namespace": ns,
            "labels": {"app": format!("app-{i}"), "team": ns, "pod-template-hash": "7d9f8c6b5"},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/path": "/internal/metrics",
                "kubectl.kubernetes.io/default-container": format!("app-{i}"),
            },
        },
        "spec": {
            "serviceAccountName": format!("app-{i}"),
            "containers": [{
                "name": format!("app-{i}"),
                "image": format!("europe-north1-docker.pkg.dev/example/team/app-{i}:2024.06.01-abcdef0"),
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "envFrom": env_from,
                "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "livenessProbe": {"httpGet": {"path": "/internal/isalive", "port": 8080}, "periodSeconds": 10},
                "readinessProbe": {"httpGet": {"path": "/internal/isready", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": mounts,
            }, {
                "name": "sidecar",
                "image": "europe-north1-docker.pkg.dev/example/platform/sidecar:1.2.3",
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            }],
            "volumes": volumes,
        },
    });
    serde_json::from_value(v).context("building an unrelated Pod")
}

fn maskinporten_client(ns: &str, i: usize) -> MaskinportenClient {
    let mut mc = MaskinportenClient::new(
        &format!("bench-client-{i}"),
        MaskinportenClientSpec {
            client_name: None,
            scopes: Some(MaskinportenScope {
                consumes: Some(vec![ConsumedScope {
                    name: CONSUMED_SCOPE.to_string(),
                }]),
                exposes: None,
            }),
            secret_name: format!("bench-client-{i}-maskinporten"),
        },
    );
    mc.metadata.namespace = Some(ns.to_string());
    mc
}

/// The provider's name and namespace.
const PROVIDER: &str = "bench-provider";

/// The `i`th consumer organisation of the provider's scopes (nine digits, known to the simulator
/// through the seed [`provider_seed`] writes).
fn consumer_orgno(i: usize) -> String {
    format!("8{:08}", i + 1)
}

/// The provider: `scopes` exposed scopes (`<prefix>:bench:api<i>`), each to `consumers`
/// organisations.
fn provider_client(scopes: usize, consumers: usize) -> anyhow::Result<MaskinportenClient> {
    let orgs: Vec<Value> = (0..consumers)
        .map(|i| json!({"orgno": consumer_orgno(i)}))
        .collect();
    let exposes: Vec<Value> = (0..scopes)
        .map(|i| json!({"enabled": true, "product": "bench", "name": format!("api{i}"), "consumers": orgs}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
        "metadata": {"name": PROVIDER, "namespace": ns_name(0)},
        "spec": {"secretName": format!("{PROVIDER}-maskinporten"), "scopes": {"exposes": exposes}},
    }))
    .context("building the provider MaskinportenClient")
}

/// The simulator's default seed with the provider's consumer organisations added; returns the
/// seed file.
fn provider_seed(dir: &Path, consumers: usize) -> anyhow::Result<PathBuf> {
    let mut seed = portvakt_sim::digdir::Seed::default();
    for i in 0..consumers {
        seed.organisations.push(portvakt_sim::digdir::Organisation {
            orgno: consumer_orgno(i),
            name: format!("BENCH CONSUMER {i} AS"),
        });
    }
    let path = dir.join("digdir-seed.json");
    let text = serde_json::to_string(&seed).context("writing the Digdir seed")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

enum Seed {
    Client(String, usize),
    Secret(String, usize),
    Pod(String, usize, usize),
}

async fn seed(client: &kube::Client, args: &BenchArgs) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..args.namespaces {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(ns_name(i)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {}", ns_name(i)))?;
    }
    let secrets = args.unrelated / 2;
    let pods = args.unrelated - secrets;
    let ns_of = |i: usize| ns_name(i % args.namespaces);
    let items = (0..secrets)
        .map(|i| Seed::Secret(ns_of(i), i))
        .chain((0..pods).map(|i| Seed::Pod(ns_of(i), i, secrets)))
        .chain((0..args.n).map(|i| Seed::Client(ns_of(i), i)));
    let pp = PostParams::default();
    let mut results = futures::stream::iter(items)
        .map(|item| {
            let client = client.clone();
            let pp = pp.clone();
            async move {
                match item {
                    Seed::Client(ns, i) => {
                        let api: Api<MaskinportenClient> = Api::namespaced(client, &ns);
                        api.create(&pp, &maskinporten_client(&ns, i))
                            .await
                            .with_context(|| {
                                format!("creating MaskinportenClient {ns}/bench-client-{i}")
                            })?;
                    }
                    Seed::Secret(ns, i) => {
                        let api: Api<Secret> = Api::namespaced(client, &ns);
                        api.create(&pp, &unrelated_secret(&ns, i)?)
                            .await
                            .with_context(|| format!("creating Secret {ns}/app-{i}-credentials"))?;
                    }
                    Seed::Pod(ns, i, secrets) => {
                        let api: Api<Pod> = Api::namespaced(client, &ns);
                        api.create(&pp, &unrelated_pod(&ns, i, secrets)?)
                            .await
                            .with_context(|| format!("creating Pod {ns} #{i}"))?;
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    if args.provider_scopes > 0 {
        let api: Api<MaskinportenClient> = Api::namespaced(client.clone(), &ns_name(0));
        api.create(
            &pp,
            &provider_client(args.provider_scopes, args.provider_consumers)?,
        )
        .await
        .context("creating the provider MaskinportenClient")?;
    }
    Ok(())
}

/// resourceVersion per object (to count objects written during the steady-state window).
pub(super) async fn versions<K>(
    api: &Api<K>,
    lp: &ListParams,
) -> anyhow::Result<HashMap<String, String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list(lp)
        .await
        .context("listing for the steady-state comparison")?;
    Ok(resource_versions(&list.items))
}

/// `namespace/name` of an object.
pub(super) fn object_key(m: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// Each object's resourceVersion by `namespace/name`.
pub(super) fn resource_versions<K: kube::Resource>(items: &[K]) -> HashMap<String, String> {
    items
        .iter()
        .map(|o| {
            let m = o.meta();
            (
                object_key(m),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

pub(super) fn changed(before: &HashMap<String, String>, after: &HashMap<String, String>) -> usize {
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .count();
    let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
    changed + removed
}

/// What was measured.
struct Outcome {
    cores: usize,
    seed_time: Duration,
    time_to_ready: Duration,
    ready: usize,
    calls_at_ready: Calls,
    /// From all Ready until the next keys were made and Secret writes stopped.
    settle_time: Duration,
    steady_window: Duration,
    steady_calls: Calls,
    steady_reconciles: f64,
    /// The operator's CPU time during the steady-state window.
    steady_cpu: Duration,
    /// Periodic passes completed during the window (`None`: the operator does not report them).
    steady_periodic_passes: Option<f64>,
    steady_secret_writes: f64,
    steady_objects_written: usize,
    steady_secrets_written: usize,
    keys_generated: f64,
    /// Reconciles and Secret writes until all Ready.
    reconciles_at_ready: f64,
    secret_writes_at_ready: f64,
    /// Keys generated by the end of the steady-state window (next keys included).
    keys_total: f64,
    keygen_cpu: Duration,
    keygen_how: String,
    /// Keys someone waited for until Ready (first keys), and their CPU time, if reported.
    first_keys: Option<(f64, Duration)>,
    /// Mean CPU per key in this process: the operator's generator, and the pure-Rust one it replaced.
    per_key: Duration,
    per_key_pure_rust: Duration,
    per_key_how: &'static str,
    operator_cpu: Duration,
    peak_rss: u64,
    n: usize,
    concurrency: u16,
    provider: Option<ProviderOutcome>,
}

/// The API provider's figures (`--provider-scopes`).
struct ProviderOutcome {
    scopes: usize,
    consumers: usize,
    time_to_ready: Duration,
    /// Its calls (scopes and ACLs) until it was Ready.
    calls: Calls,
    /// ACL reads per scope in the steady-state window.
    steady_acl_reads: BTreeMap<String, u64>,
}

struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

impl ProviderOutcome {
    /// Calls made one after the other (the scope list and creates) plus the ACL calls spread over
    /// [`ACL_CONCURRENCY`], times the latency.
    fn bound(&self, latency: Duration) -> Duration {
        let (seq, par) = self.calls.sequential_and_parallel();
        latency.mul_f64(seq as f64 + par as f64 / ACL_CONCURRENCY as f64)
    }

    fn checks(&self, latency: Duration) -> Vec<Check> {
        let limit = self.bound(latency).mul_f64(1.25);
        let t = self.time_to_ready.as_secs_f64();
        let max_reads = self.steady_acl_reads.values().max().copied().unwrap_or(0);
        let grants = self
            .calls
            .by_route
            .iter()
            .filter(|(r, _)| r.starts_with("PUT /api/v1/scopes/access/"))
            .map(|(_, n)| n)
            .sum::<u64>();
        vec![
            Check {
                name: "provider Ready",
                pass: t <= limit.as_secs_f64() && grants >= (self.scopes * self.consumers) as u64,
                detail: format!(
                    "{t:.2} s <= 1.25 x {:.2} s = {:.2} s; {grants} grants for {} consumers",
                    self.bound(latency).as_secs_f64(),
                    limit.as_secs_f64(),
                    self.scopes * self.consumers
                ),
            },
            Check {
                name: "provider steady: ACL reads",
                pass: max_reads <= 1,
                detail: format!("at most {max_reads} read per scope's ACL in the window (limit 1)"),
            },
        ]
    }
}

impl Outcome {
    /// Client calls (registrations, keys; the provider's scope calls apart) per MaskinportenClient,
    /// the provider's own client included.
    fn calls_per_resource(&self) -> f64 {
        let clients = self.n + usize::from(self.provider.is_some());
        self.calls_at_ready.admin as f64 / clients as f64
    }

    fn steady_writes(&self) -> u64 {
        self.steady_calls.writes
            + self.steady_secret_writes as u64
            + self.steady_objects_written as u64
            + self.steady_secrets_written as u64
    }

    /// The key CPU time to Ready is bound by: the first keys' when reported, else every key's.
    fn bound_key_cpu(&self) -> Duration {
        self.first_keys.map_or(self.keygen_cpu, |(_, cpu)| cpu)
    }

    fn steady_cpu_share(&self) -> f64 {
        self.steady_cpu.as_secs_f64() / self.steady_window.as_secs_f64().max(1e-9)
    }

    fn checks(&self, latency: Duration, resync: Duration) -> Vec<Check> {
        let io_bound = latency.as_secs_f64() * self.calls_per_resource() * self.n as f64
            / f64::from(self.concurrency);
        let key_cpu = self.bound_key_cpu().as_secs_f64();
        let cpu_bound = key_cpu / self.cores as f64;
        let bound = io_bound.max(cpu_bound);
        let limit = 1.25 * bound;
        let ttr = self.time_to_ready.as_secs_f64();
        let periods = (self.steady_window.as_secs_f64() / resync.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        let lists = self.steady_calls.lists();
        // The window must hold a periodic pass (the one list for all resources), or "no writes"
        // and "no lists" prove nothing.
        let full_pass = self.steady_periodic_passes.is_some_and(|p| p >= 1.0);
        let list_limit = 2 * periods;
        let rss_target = rss_target_bytes(self.n);
        vec![
            Check {
                name: "time to Ready",
                pass: ttr <= limit,
                detail: format!(
                    "{ttr:.2} s <= 1.25 x max({:.2} calls x {} ms x {} / {} = {io_bound:.2} s, {key_cpu:.2} s {} CPU / {} cores = {cpu_bound:.2} s) = {limit:.2} s",
                    self.calls_per_resource(),
                    latency.as_millis(),
                    self.n,
                    self.concurrency,
                    if self.first_keys.is_some() {
                        "first-key"
                    } else {
                        "key"
                    },
                    self.cores,
                ),
            },
            Check {
                name: "steady state: 0 writes",
                pass: self.steady_writes() == 0 && full_pass,
                detail: format!(
                    "{} writes{}",
                    self.steady_writes(),
                    if full_pass {
                        ""
                    } else {
                        " (but no periodic pass was seen in the window)"
                    }
                ),
            },
            Check {
                name: "steady state: O(1) list calls",
                pass: lists <= list_limit && full_pass,
                detail: format!(
                    "{lists} list calls for {} resources (limit {list_limit}: 2 per resync period, independent of N)",
                    self.n
                ),
            },
            Check {
                name: "steady state: 0 reconciles",
                pass: self.steady_reconciles == 0.0 && full_pass,
                detail: format!(
                    "{} reconciles of {} unchanged resources",
                    self.steady_reconciles, self.n
                ),
            },
            Check {
                name: "steady state: CPU < 1% of a core",
                pass: self.steady_cpu_share() < STEADY_CPU_SHARE && full_pass,
                detail: format!(
                    "{:.2} s CPU in {:.1} s = {:.2}% of one core",
                    self.steady_cpu.as_secs_f64(),
                    self.steady_window.as_secs_f64(),
                    100.0 * self.steady_cpu_share()
                ),
            },
        ]
        .into_iter()
        .chain(self.provider.iter().flat_map(|p| p.checks(latency)))
        .chain([Check {
                name: if rss_target <= 64 << 20 {
                    "peak RSS < 64 MiB"
                } else {
                    "peak RSS < 256 MiB"
                },
                pass: self.peak_rss < rss_target,
                detail: format!("{:.1} MiB", self.peak_rss as f64 / 1048576.0),
            }])
        .collect()
    }

    fn render_provider(&self, o: &mut String, latency: Duration) {
        let Some(p) = &self.provider else {
            return;
        };
        let (seq, par) = p.calls.sequential_and_parallel();
        let _ = writeln!(o, "  API provider");
        let _ = writeln!(
            o,
            "    exposed scopes x consumers    {} x {} = {} grants",
            p.scopes,
            p.consumers,
            p.scopes * p.consumers
        );
        let _ = writeln!(
            o,
            "    time to Ready                 {:.2} s (bound {:.2} s: ({seq} sequential + {par} ACL calls / {}) x {} ms)",
            p.time_to_ready.as_secs_f64(),
            p.bound(latency).as_secs_f64(),
            ACL_CONCURRENCY,
            latency.as_millis()
        );
        let _ = writeln!(
            o,
            "    scope and ACL calls           {} ({} writes)",
            p.calls.admin, p.calls.writes
        );
        for (route, n) in &p.calls.by_route {
            let _ = writeln!(o, "      {route:<40} {n}");
        }
        let reads: u64 = p.steady_acl_reads.values().sum();
        let _ = writeln!(
            o,
            "    steady state                  {reads} ACL reads of {} scopes (at most {} per scope)",
            p.scopes,
            p.steady_acl_reads.values().max().copied().unwrap_or(0)
        );
    }

    fn all_pass(&self, s: &Settings) -> bool {
        self.checks(s.latency, s.steady).iter().all(|c| c.pass)
    }

    fn render(&self, args: &BenchArgs, s: &Settings) -> String {
        let mut o = String::new();
        let c = &self.calls_at_ready;
        let _ = writeln!(o, "portvakt bench");
        let _ = writeln!(o, "  inputs");
        let _ = writeln!(o, "    MaskinportenClients (N)       {}", self.n);
        let _ = writeln!(
            o,
            "    unrelated objects             {} ({} Secrets, {} Pods) in {} namespaces",
            args.unrelated,
            args.unrelated / 2,
            args.unrelated - args.unrelated / 2,
            args.namespaces
        );
        let _ = writeln!(
            o,
            "    Digdir latency per API call   {} ms",
            s.latency.as_millis()
        );
        let _ = writeln!(o, "    operator --concurrency        {}", self.concurrency);
        let _ = writeln!(o, "    cores                         {}", self.cores);
        let _ = writeln!(
            o,
            "    resync period = steady window {} s",
            s.steady.as_secs()
        );
        let _ = writeln!(o, "  until Ready");
        let _ = writeln!(
            o,
            "    seeding took                  {:.2} s",
            self.seed_time.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "    time to all Ready             {:.2} s ({}/{} Ready at their generation)",
            self.time_to_ready.as_secs_f64(),
            self.ready,
            self.n
        );
        let _ = writeln!(
            o,
            "    Digdir admin API calls        {} ({:.2} per resource; {} writes)",
            c.admin,
            self.calls_per_resource(),
            c.writes
        );
        let _ = writeln!(
            o,
            "    operator reconciles           {} ({:.2} per resource); {} Secret writes",
            self.reconciles_at_ready,
            self.reconciles_at_ready / self.n.max(1) as f64,
            self.secret_writes_at_ready
        );
        let _ = writeln!(o, "    Maskinporten token calls      {}", c.token);
        for (route, n) in &c.by_route {
            let _ = writeln!(o, "      {route:<40} {n}");
        }
        let sc = &self.steady_calls;
        let _ = writeln!(
            o,
            "  steady state ({:.1} s window, from {:.1} s after Ready: next keys made (--next-key-delay {} s), Secret writes stopped)",
            self.steady_window.as_secs_f64(),
            self.settle_time.as_secs_f64(),
            s.next_key_delay.as_secs()
        );
        let _ = writeln!(
            o,
            "    reconciles                    {}",
            self.steady_reconciles
        );
        let _ = writeln!(
            o,
            "    operator CPU                  {:.2} s ({:.2}% of one core); periodic passes {}",
            self.steady_cpu.as_secs_f64(),
            100.0 * self.steady_cpu_share(),
            self.steady_periodic_passes
                .map_or("not reported".to_string(), |p| p.to_string())
        );
        let _ = writeln!(
            o,
            "    Digdir admin API calls        {} ({} writes, {} list calls); token calls {}",
            sc.admin,
            sc.writes,
            sc.lists(),
            sc.token
        );
        for (route, n) in &sc.by_route {
            let _ = writeln!(o, "      {route:<40} {n}");
        }
        let _ = writeln!(
            o,
            "    Kubernetes writes             {} MaskinportenClients and {} managed Secrets changed; {} Secret writes counted",
            self.steady_objects_written, self.steady_secrets_written, self.steady_secret_writes
        );
        let _ = writeln!(
            o,
            "    steady-state writes           {}",
            self.steady_writes()
        );
        self.render_provider(&mut o, s.latency);
        let _ = writeln!(o, "  resources");
        let _ = writeln!(
            o,
            "    keys generated until Ready    {} ({:.2} s CPU: {}); {} in all with the next keys",
            self.keys_generated,
            self.keygen_cpu.as_secs_f64(),
            self.keygen_how,
            self.keys_total
        );
        let _ = writeln!(
            o,
            "    operator CPU time             {:.2} s (utime + stime)",
            self.operator_cpu.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "    operator peak RSS             {:.1} MiB (VmHWM)",
            self.peak_rss as f64 / 1048576.0
        );
        let _ = writeln!(
            o,
            "    CPU per key (in-process)      {:.1} ms native (AWS-LC), {:.1} ms pure Rust (rsa crate, before): {:.2}x ({})",
            self.per_key.as_secs_f64() * 1000.0,
            self.per_key_pure_rust.as_secs_f64() * 1000.0,
            self.per_key_pure_rust.as_secs_f64() / self.per_key.as_secs_f64().max(1e-9),
            self.per_key_how
        );
        if let Some((keys, cpu)) = self.first_keys {
            let _ = writeln!(
                o,
                "    first keys until Ready        {keys} ({:.2} s CPU, {:.1} ms per key)",
                cpu.as_secs_f64(),
                1000.0 * cpu.as_secs_f64() / keys.max(1.0)
            );
        }
        let _ = writeln!(o, "  targets (issues 3 and 13)");
        let checks = self.checks(s.latency, s.steady);
        for ch in &checks {
            let verdict = if ch.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(o, "    {verdict}  {:<30} {}", ch.name, ch.detail);
        }
        let pass = checks.iter().all(|c| c.pass);
        let _ = writeln!(
            o,
            "RESULT ready={}/{} time_to_ready_s={:.3} calls_per_resource={:.3} steady_writes={} steady_list_calls={} steady_reconciles={} steady_cpu_s={:.3} keygen_cpu_s={:.3} first_key_cpu_s={:.3} key_ms={:.2} key_ms_pure_rust={:.2} peak_rss_bytes={} pass={}",
            self.ready,
            self.n,
            self.time_to_ready.as_secs_f64(),
            self.calls_per_resource(),
            self.steady_writes(),
            sc.lists(),
            self.steady_reconciles,
            self.steady_cpu.as_secs_f64(),
            self.keygen_cpu.as_secs_f64(),
            self.bound_key_cpu().as_secs_f64(),
            self.per_key.as_secs_f64() * 1000.0,
            self.per_key_pure_rust.as_secs_f64() * 1000.0,
            self.peak_rss,
            pass
        );
        if let Some(p) = &self.provider {
            let _ = writeln!(
                o,
                "RESULT provider scopes={} consumers={} time_to_ready_s={:.3} calls={} bound_s={:.3} steady_acl_reads_max={}",
                p.scopes,
                p.consumers,
                p.time_to_ready.as_secs_f64(),
                p.calls.admin,
                p.bound(s.latency).as_secs_f64(),
                p.steady_acl_reads.values().max().copied().unwrap_or(0)
            );
        }
        o
    }
}

pub(super) fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

async fn bench(args: &BenchArgs, s: &Settings) -> anyhow::Result<Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let exe = std::env::current_exe().context("finding the portvakt binary")?;
    // Dropped last: the children (declared later) are killed before the directory goes.
    let dir = TempDir::new()?;

    // Per-key CPU time, measured while nothing else runs: the operator's generator, and the
    // pure-Rust one it replaced, in turn.
    let samples = if args.n >= 100 { 16 } else { 3 };
    let (per_key, per_key_how, per_key_pure_rust) = tokio::task::spawn_blocking(move || {
        let (native, how) = measure_keygen(samples, portvakt::keys::generate_key)?;
        let (pure, _) = measure_keygen(samples, portvakt::keys::generate_key_pure_rust)?;
        anyhow::Ok((native, how, pure))
    })
    .await
    .context("measuring key generation")??;
    progress(format_args!(
        "generate_key: {:.1} ms per key; the pure-Rust one it replaced {:.1} ms ({per_key_how}, mean of {samples})",
        per_key.as_secs_f64() * 1000.0,
        per_key_pure_rust.as_secs_f64() * 1000.0
    ));

    // The simulator.
    let kubeconfig = dir.0.join("kubeconfig");
    let state_dir = dir.0.join("state");
    let mut cmd = Command::new(&exe);
    cmd.arg("sim")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--digdir-listen")
        .arg("127.0.0.1:0")
        .arg("--digdir-latency")
        .arg(format!("{}ms", s.latency.as_millis()))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--install-crds")
        .env("PORTVAKT_LOG", "warn");
    if args.provider_scopes > 0 {
        cmd.arg("--digdir-seed")
            .arg(provider_seed(&dir.0, args.provider_consumers)?);
    }
    let mut sim = ChildGuard::spawn("sim", cmd, &dir.0)?;
    let started = Instant::now();
    while !kubeconfig.exists() {
        sim.ensure_running()?;
        if started.elapsed() > Duration::from_secs(60) || s.remaining().is_zero() {
            bail!(
                "`portvakt sim` wrote no kubeconfig within 60 s; its log:\n{}",
                sim.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run_env_path = state_dir.join("run.env");
    let run_env = std::fs::read_to_string(&run_env_path)
        .with_context(|| format!("reading {}", run_env_path.display()))?;
    let run_env = parse_env_file(&run_env);
    let base = run_env
        .iter()
        .find(|(k, _)| k == "PORTVAKT_DIGDIR_BASE_URL")
        .map(|(_, v)| v.clone())
        .context("run.env has no PORTVAKT_DIGDIR_BASE_URL")?;
    let calls_url = url::Url::parse(&base)
        .and_then(|u| u.join("/_sim/digdir/calls"))
        .with_context(|| format!("run.env: PORTVAKT_DIGDIR_BASE_URL {base:?} is not a URL"))?;
    let metrics_port = free_port()?;
    let probe = Probe::<Calls>::new(calls_url.to_string(), metrics_port)?;

    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("the simulator's kubeconfig")?;
    let client = kube::Client::try_from(config).context("Kubernetes client")?;

    // Seed.
    progress(format_args!(
        "seeding {} MaskinportenClients and {} unrelated objects in {} namespaces",
        args.n, args.unrelated, args.namespaces
    ));
    let t = Instant::now();
    tokio::select! {
        r = seed(&client, args) => r?,
        _ = tokio::time::sleep(s.remaining()) => bail!("--timeout reached while seeding"),
    }
    let seed_time = t.elapsed();
    sim.ensure_running()?;
    progress(format_args!("seeded in {:.1} s", seed_time.as_secs_f64()));
    let calls_before = probe.calls().await?;

    // The operator, run under PORTVAKT_BENCH_WRAP if set (a profiler's command line, say
    // `heaptrack -o /tmp/operator`; its CPU and RSS figures are then the wrapper's, not the operator's).
    let mut cmd = match std::env::var("PORTVAKT_BENCH_WRAP") {
        Ok(wrap) if !wrap.trim().is_empty() => {
            let mut words = wrap.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or_default());
            cmd.args(words).arg(&exe);
            progress(format_args!(
                "the operator runs under PORTVAKT_BENCH_WRAP={wrap}"
            ));
            cmd
        }
        _ => Command::new(&exe),
    };
    cmd.arg("run")
        .arg("--concurrency")
        .arg(args.concurrency.to_string())
        .arg("--resync-period")
        .arg(format!("{}s", s.steady.as_secs()))
        .arg("--next-key-delay")
        .arg(format!("{}s", s.next_key_delay.as_secs()));
    for (k, v) in &run_env {
        cmd.env(k, v);
    }
    cmd.env("KUBECONFIG", &kubeconfig)
        .env(
            "PORTVAKT_METRICS_ADDRESS",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env_remove("PORTVAKT_OBSERVE");
    if std::env::var_os("PORTVAKT_LOG").is_none() {
        cmd.env("PORTVAKT_LOG", "warn,portvakt=info");
    }
    let api: Api<MaskinportenClient> = Api::all(client.clone());
    // Start watching before the operator so no transition is missed.
    let mut ready: HashMap<String, bool> = HashMap::new();
    let mut stream = Box::pin(watcher(api.clone(), watcher::Config::default()).default_backoff());
    let mut op = ChildGuard::spawn("run", cmd, &dir.0)?;
    let op_start = Instant::now();
    progress("operator started; waiting until every MaskinportenClient is Ready");
    let mut last_report = Instant::now();
    let provider_key = (args.provider_scopes > 0).then(|| format!("{}/{PROVIDER}", ns_name(0)));
    let mut clients_ready_at = None;
    let mut provider_ready_at = None;
    // Ready clients (the provider apart), kept as events arrive rather than counted over all N each time.
    let mut count = 0usize;
    let time_to_ready = loop {
        if count >= args.n && clients_ready_at.is_none() {
            clients_ready_at = Some(op_start.elapsed());
        }
        if let Some(k) = &provider_key
            && provider_ready_at.is_none()
            && ready.get(k) == Some(&true)
        {
            provider_ready_at = Some(op_start.elapsed());
        }
        if let Some(t) = clients_ready_at
            && (provider_key.is_none() || provider_ready_at.is_some())
        {
            break t;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            progress(format_args!(
                "{count}/{} Ready after {:.0} s{}",
                args.n,
                op_start.elapsed().as_secs_f64(),
                match (&provider_key, provider_ready_at) {
                    (None, _) => "",
                    (Some(_), None) => "; the provider not yet",
                    (Some(_), Some(_)) => "; the provider Ready",
                }
            ));
            last_report = Instant::now();
        }
        op.ensure_running()?;
        sim.ensure_running()?;
        if s.remaining().is_zero() {
            bail!(
                "--timeout {}: only {count} of {} MaskinportenClients became Ready; the end of the operator's log:\n{}",
                args.timeout,
                args.n,
                op.log_tail(30)
            );
        }
        let next = tokio::time::timeout(Duration::from_millis(500), stream.try_next()).await;
        match next {
            Err(_) => {}
            Ok(Ok(None)) => bail!("the watch of MaskinportenClients ended"),
            Ok(Err(e)) => progress(format_args!("watching MaskinportenClients: {e}")),
            Ok(Ok(Some(event))) => match event {
                watcher::Event::Apply(mc) | watcher::Event::InitApply(mc) => {
                    let key = object_key(&mc.metadata);
                    let counted = Some(&key) != provider_key.as_ref();
                    let now = ready_at_generation(&mc);
                    if ready.insert(key, now) == Some(true) {
                        count -= usize::from(counted);
                    }
                    count += usize::from(counted && now);
                }
                watcher::Event::Delete(mc) => {
                    let key = object_key(&mc.metadata);
                    let counted = Some(&key) != provider_key.as_ref();
                    if ready.remove(&key) == Some(true) {
                        count -= usize::from(counted);
                    }
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
        }
    };
    drop(stream);
    let ready_count = ready
        .iter()
        .filter(|(k, r)| **r && Some(*k) != provider_key.as_ref())
        .count();
    progress(format_args!(
        "all {} Ready after {:.2} s",
        args.n,
        time_to_ready.as_secs_f64()
    ));
    let (calls_ready, provider_calls) = probe.calls().await?.minus(&calls_before).split_provider();
    let m_ready = probe.metrics().await?;

    // Settled: every deferred next key made, and no Secret written for a while.
    progress(format_args!(
        "waiting for the deferred next keys (--next-key-delay {} s) and for Secret writes to stop",
        s.next_key_delay.as_secs()
    ));
    let settle_start = Instant::now();
    let quiet = Duration::from_secs(3);
    let mut last_writes = -1.0;
    let mut quiet_since = Instant::now();
    let mut last_report = Instant::now();
    loop {
        op.ensure_running()?;
        sim.ensure_running()?;
        let m = probe.metrics().await?;
        let deferred = metric(&m, "portvakt_next_keys_deferred");
        let writes = metric(&m, "portvakt_secret_writes_total");
        if writes != last_writes {
            last_writes = writes;
            quiet_since = Instant::now();
        }
        if deferred == 0.0 && quiet_since.elapsed() >= quiet {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            progress(format_args!(
                "{deferred} next keys still deferred after {:.0} s",
                settle_start.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        if s.remaining().is_zero() {
            bail!(
                "--timeout {}: {deferred} next keys still deferred (or Secrets still written); the end of the operator's log:\n{}",
                args.timeout,
                op.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_time = settle_start.elapsed();
    progress(format_args!(
        "settled {:.1} s after Ready; steady-state window of {} s",
        settle_time.as_secs_f64(),
        s.steady.as_secs()
    ));

    // Steady state: at least one resync period (the periodic pass runs once in it, listing every
    // registration once), plus a margin. Nothing is due for an unchanged resource: no reconcile.
    let window = s.steady + (s.steady / 10).max(Duration::from_secs(2));
    if window > s.remaining() {
        bail!(
            "--timeout {}: no time left for the steady-state window",
            args.timeout
        );
    }
    let secrets: Api<Secret> = Api::all(client.clone());
    let managed = ListParams::default().labels(MANAGED_SECRETS);
    let m0 = probe.metrics().await?;
    let c0 = probe.calls().await?;
    let (cpu0, _) = proc_usage(op.pid())?;
    let v0 = versions(&api, &ListParams::default()).await?;
    let s0 = versions(&secrets, &managed).await?;
    let w0 = Instant::now();
    let until = w0 + window;
    while Instant::now() < until {
        op.ensure_running()?;
        sim.ensure_running()?;
        tokio::time::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500)),
        )
        .await;
    }
    let c1 = probe.calls().await?;
    let m1 = probe.metrics().await?;
    let (cpu1, _) = proc_usage(op.pid())?;
    let steady_window = w0.elapsed();
    let v1 = versions(&api, &ListParams::default()).await?;
    let s1 = versions(&secrets, &managed).await?;

    // Resource use, read just before the operator is stopped.
    op.ensure_running()?;
    let (operator_cpu, peak_rss) = proc_usage(op.pid())?;
    drop(op);

    // The time-to-Ready target counts the keys made until Ready (the deferred next keys come later).
    let keys_generated = metric(&m_ready, "portvakt_keys_generated_total");
    let keys_total = metric(&m1, "portvakt_keys_generated_total");
    let (keygen_cpu, keygen_how) = match m_ready.get(KEYGEN_CPU_METRIC) {
        Some(secs) => (
            Duration::from_secs_f64(secs.max(0.0)),
            format!("from /metrics {KEYGEN_CPU_METRIC}"),
        ),
        None => (
            per_key.mul_f64(keys_generated),
            format!(
                "estimated: keys generated x {:.1} ms per key, {per_key_how} of generate_key in-process",
                per_key.as_secs_f64() * 1000.0
            ),
        ),
    };
    drop(sim);
    let steady_calls = c1.minus(&c0);
    let provider = provider_ready_at.map(|t| ProviderOutcome {
        scopes: args.provider_scopes,
        consumers: args.provider_consumers,
        time_to_ready: t,
        calls: provider_calls,
        steady_acl_reads: steady_calls.acl_reads.clone(),
    });
    Ok(Outcome {
        cores,
        seed_time,
        time_to_ready,
        settle_time,
        ready: ready_count,
        calls_at_ready: calls_ready,
        steady_window,
        steady_calls,
        steady_reconciles: metric(&m1, "portvakt_reconciles_total")
            - metric(&m0, "portvakt_reconciles_total"),
        steady_cpu: cpu1.saturating_sub(cpu0),
        steady_periodic_passes: m1
            .get(PERIODIC_PASSES_METRIC)
            .map(|p| p - metric(&m0, PERIODIC_PASSES_METRIC)),
        steady_secret_writes: metric(&m1, "portvakt_secret_writes_total")
            - metric(&m0, "portvakt_secret_writes_total"),
        steady_objects_written: changed(&v0, &v1),
        steady_secrets_written: changed(&s0, &s1),
        keys_generated,
        keys_total,
        reconciles_at_ready: metric(&m_ready, "portvakt_reconciles_total"),
        secret_writes_at_ready: metric(&m_ready, "portvakt_secret_writes_total"),
        keygen_cpu,
        keygen_how,
        first_keys: m_ready.get(FIRST_KEY_CPU_METRIC).map(|cpu| {
            (
                metric(&m_ready, FIRST_KEYS_METRIC),
                Duration::from_secs_f64(cpu.max(0.0)),
            )
        }),
        per_key,
        per_key_pure_rust,
        per_key_how,
        operator_cpu,
        peak_rss,
        n: args.n,
        concurrency: args.concurrency,
        provider,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "20ms").unwrap(),
            Duration::from_millis(20)
        );
        assert_eq!(parse_duration("x", "60s").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_duration("x", "30m").unwrap(),
            Duration::from_secs(1800)
        );
        assert!(
            parse_duration("--latency", "fast")
                .unwrap_err()
                .to_string()
                .contains("--latency")
        );
    }

    #[test]
    fn metrics_and_env() {
        let m = parse_metrics(
            "# TYPE a counter\na 3\nportvakt_digdir_requests_total{method=\"GET\"} 7\n",
        );
        assert_eq!(m.get("a"), Some(&3.0));
        assert_eq!(
            m.get("portvakt_digdir_requests_total{method=\"GET\"}"),
            Some(&7.0)
        );
        let e = parse_env_file("A=1\n\n# c\nB=x=y\n");
        assert_eq!(
            e,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
    }

    #[test]
    fn list_calls_count_only_the_collection() {
        let v = json!({"admin_api": 3, "admin_api_writes": 0, "token": 1, "by_route": {
            "GET /api/v1/clients": 2, "GET /api/v1/clients/{id}": 5, "GET /api/v1/clients/{id}/jwks": 1}});
        let c = Calls::from_json(&v).unwrap();
        assert_eq!(c.lists(), 2);
    }

    #[test]
    fn own_process_usage() {
        let (_, rss) = proc_usage(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
