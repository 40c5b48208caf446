//! `portvakt bench --entra`: the AzureAdApplication controller's benchmark (issue 12, "Performance").
//!
//! `portvakt sim` (Graph latency `--latency`, eventual consistency off, `--graph-throttling` for
//! Graph's documented write limit) and `portvakt run` (the Entra controller only) run as child
//! processes, as in the Digdir benchmark. Three phases:
//! 1. **one app**: with the operator running and idle, single AzureAdApplications are applied one after
//!    another and each is timed from apply to Ready (target: under 2 s);
//! 2. **the chain, cold**: the operator is stopped, `--n` apps are seeded, app *i* pre-authorizing app
//!    *i+1* (across `--namespaces` namespaces), and a new operator is started: time until every app is
//!    Ready and until every pre-authorization is assigned, Graph calls per app (by route), 429s;
//! 3. **steady state**: once Graph calls and Secret writes have stopped, a window of `--steady-window`
//!    (the operator's resync period, so the periodic comparison runs; an unchanged resource is not
//!    reconciled at all): reconciles, Graph calls and writes (target: 0 writes), Kubernetes writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use portvakt::crd::AzureAdApplication;
use serde_json::{Value, json};

use super::bench::{
    BenchArgs, CallCounts, ChildGuard, Probe, TempDir, changed, free_port, metric, object_key,
    parse_env_file, proc_usage, progress, resource_versions, versions,
};
use super::run::parse_duration;

const SEED_CONCURRENCY: usize = 32;
/// Single apps timed in phase 1.
const SINGLES: usize = 5;
const SINGLE_TARGET: Duration = Duration::from_secs(2);

/// The Entra simulator's call counts (`/_sim/graph/calls`).
#[derive(Clone, Debug, Default)]
struct GraphCalls {
    graph: u64,
    writes: u64,
    token: u64,
    throttled: u64,
    conflicts: u64,
    by_route: BTreeMap<String, u64>,
}

impl CallCounts for GraphCalls {
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let by_route = v
            .get("by_route")
            .and_then(Value::as_object)
            .context("/_sim/graph/calls: no by_route")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        Ok(Self {
            graph: n("graph"),
            writes: n("graph_writes"),
            token: n("token"),
            throttled: n("throttled"),
            conflicts: n("conflicts"),
            by_route,
        })
    }
}

impl GraphCalls {
    fn minus(&self, e: &GraphCalls) -> GraphCalls {
        GraphCalls {
            graph: self.graph - e.graph.min(self.graph),
            writes: self.writes - e.writes.min(self.writes),
            token: self.token - e.token.min(self.token),
            throttled: self.throttled - e.throttled.min(self.throttled),
            conflicts: self.conflicts - e.conflicts.min(self.conflicts),
            by_route: self
                .by_route
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - e.by_route.get(k).copied().unwrap_or(0).min(*v),
                    )
                })
                .filter(|(_, v)| *v > 0)
                .collect(),
        }
    }
}

fn ns_name(i: usize) -> String {
    format!("entra-{i:02}")
}

fn app_name(i: usize) -> String {
    format!("app-{i:04}")
}

fn ready(o: &AzureAdApplication) -> bool {
    let c = o.status.as_ref().and_then(|s| s.conditions.as_deref());
    portvakt::conditions::is_ready(c.unwrap_or_default(), o.metadata.generation)
}

fn all_assigned(o: &AzureAdApplication) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.pre_authorized_apps.as_ref())
        .is_some_and(|p| p.unassigned_count == Some(0))
}

/// App `i` of the chain: pre-authorizes app `i+1` (the last one none).
fn chain_app(i: usize, n: usize, namespaces: usize) -> anyhow::Result<AzureAdApplication> {
    let mut spec = json!({"secretName": format!("{}-azure", app_name(i)),
                          "replyUrls": [{"url": format!("https://{}.example/oauth2/callback", app_name(i))}]});
    if i + 1 < n {
        spec["preAuthorizedApplications"] = json!([{
            "application": app_name(i + 1), "namespace": ns_name((i + 1) % namespaces),
            "permissions": {"roles": ["read"]},
        }]);
    }
    serde_json::from_value(json!({
        "apiVersion": "nais.io/v1", "kind": "AzureAdApplication",
        "metadata": {"name": app_name(i), "namespace": ns_name(i % namespaces)},
        "spec": spec,
    }))
    .context("a benchmark AzureAdApplication")
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
    }
    Ok(())
}

/// Polls until `f` holds for the app (every 10 ms), returning how long it took.
async fn until(
    api: &Api<AzureAdApplication>,
    name: &str,
    limit: Duration,
    f: impl Fn(&AzureAdApplication) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if let Some(o) = api.get_opt(name).await?
            && f(&o)
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{name} did not become Ready within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Outcome {
    n: usize,
    concurrency: u16,
    latency: Duration,
    throttling: bool,
    singles: Vec<Duration>,
    single_calls: GraphCalls,
    time_to_ready: Duration,
    time_to_assigned: Duration,
    chain_calls: GraphCalls,
    steady_window: Duration,
    steady_calls: GraphCalls,
    steady_reconciles: f64,
    steady_objects_written: usize,
    steady_secrets_written: usize,
    operator_cpu: Duration,
    peak_rss: u64,
}

impl Outcome {
    fn render(&self) -> (String, bool) {
        let mut out = String::new();
        let per = |c: &GraphCalls, n: usize| c.graph as f64 / n.max(1) as f64;
        let _ = writeln!(
            out,
            "\n== portvakt bench --entra: {} apps in a chain, Graph latency {} ms, eventual consistency off, throttling {}, concurrency {}",
            self.n,
            self.latency.as_millis(),
            if self.throttling {
                "on (3000 writes / 150 s)"
            } else {
                "off"
            },
            self.concurrency
        );
        let mut singles = self.singles.clone();
        singles.sort();
        let secs: Vec<String> = self
            .singles
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        let _ = writeln!(
            out,
            "one new app, apply to Ready: {} s (median {:.2} s, max {:.2} s); Graph calls per app {:.1} ({:.1} writes)",
            secs.join(", "),
            singles[singles.len() / 2].as_secs_f64(),
            singles.last().map_or(0.0, |d| d.as_secs_f64()),
            per(&self.single_calls, self.singles.len() + 1),
            self.single_calls.writes as f64 / (self.singles.len() + 1) as f64,
        );
        let _ = writeln!(
            out,
            "chain from a cold start: all {} Ready after {:.1} s, every pre-authorization assigned after {:.1} s",
            self.n,
            self.time_to_ready.as_secs_f64(),
            self.time_to_assigned.as_secs_f64()
        );
        let c = &self.chain_calls;
        let _ = writeln!(
            out,
            "  Graph calls: {} ({:.1} per app), writes {} ({:.1} per app), token grants {}, 429 answers {}, 409 answers {}",
            c.graph,
            per(c, self.n),
            c.writes,
            c.writes as f64 / self.n as f64,
            c.token,
            c.throttled,
            c.conflicts
        );
        for (route, n) in &c.by_route {
            if route.contains("/v1.0/") {
                let _ = writeln!(
                    out,
                    "    {:>6.2} per app  {route}",
                    *n as f64 / self.n as f64
                );
            }
        }
        let s = &self.steady_calls;
        let _ = writeln!(
            out,
            "steady state ({:.0} s window, one resync period: {:.0} reconciles): Graph calls {} (writes {}), {}; AzureAdApplications written {}, Secrets written {}",
            self.steady_window.as_secs_f64(),
            self.steady_reconciles,
            s.graph,
            s.writes,
            if s.by_route.is_empty() {
                "none".to_string()
            } else {
                s.by_route
                    .iter()
                    .filter(|(r, _)| r.contains("/v1.0/"))
                    .map(|(r, n)| format!("{n}× {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.steady_objects_written,
            self.steady_secrets_written
        );
        let _ = writeln!(
            out,
            "operator: CPU {:.1} s, peak RSS {:.1} MiB",
            self.operator_cpu.as_secs_f64(),
            self.peak_rss as f64 / (1024.0 * 1024.0)
        );
        let max_single = singles.last().copied().unwrap_or_default();
        let checks = [
            (
                "one app from apply to Ready under 2 s",
                max_single < SINGLE_TARGET,
                format!("max {:.2} s", max_single.as_secs_f64()),
            ),
            (
                "the chain Ready and assigned from a cold start",
                true,
                format!("{:.1} s", self.time_to_assigned.as_secs_f64()),
            ),
            (
                "steady state: no Graph write, no Kubernetes write",
                s.writes == 0
                    && self.steady_objects_written == 0
                    && self.steady_secrets_written == 0,
                format!(
                    "{} Graph writes, {} objects, {} Secrets",
                    s.writes, self.steady_objects_written, self.steady_secrets_written
                ),
            ),
        ];
        let mut all = true;
        for (name, pass, detail) in &checks {
            all &= *pass;
            let _ = writeln!(
                out,
                "{} {name}: {detail}",
                if *pass { "PASS" } else { "FAIL" }
            );
        }
        let _ = writeln!(
            out,
            "RESULT entra n={} single_max={:.2}s ready={:.1}s assigned={:.1}s calls_per_app={:.1} writes_per_app={:.1} throttled={} steady_writes={} {}",
            self.n,
            max_single.as_secs_f64(),
            self.time_to_ready.as_secs_f64(),
            self.time_to_assigned.as_secs_f64(),
            per(c, self.n),
            c.writes as f64 / self.n as f64,
            c.throttled,
            s.writes,
            if all { "PASS" } else { "FAIL" }
        );
        (out, all)
    }
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let latency = parse_duration("--latency", &args.latency)?;
    let steady = parse_duration("--steady-window", &args.steady_window)?;
    let timeout = parse_duration("--timeout", &args.timeout)?;
    if args.n == 0 || args.namespaces == 0 || args.concurrency == 0 {
        bail!("--n, --namespaces and --concurrency must be at least 1");
    }
    if steady < Duration::from_secs(1) || steady.subsec_millis() != 0 {
        bail!(
            "--steady-window: {:?} must be whole seconds, at least 1s",
            args.steady_window
        );
    }
    let outcome = tokio::select! {
        r = tokio::time::timeout(timeout, bench(args, latency, steady, Instant::now() + timeout)) => match r {
            Ok(r) => r?,
            Err(_) => bail!("--timeout {} reached before the benchmark finished", args.timeout),
        },
        _ = super::bench::stop_asked()? => bail!("interrupted"),
    };
    let (text, pass) = outcome.render();
    print!("{text}");
    if args.check && !pass {
        bail!("--check: at least one target was missed (see FAIL above)");
    }
    Ok(())
}

fn operator_command(
    exe: &std::path::Path,
    run_env: &[(String, String)],
    kubeconfig: &std::path::Path,
    metrics_port: u16,
    args: &BenchArgs,
    steady: Duration,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--concurrency")
        .arg(args.concurrency.to_string())
        .arg("--resync-period")
        .arg(format!("{}s", steady.as_secs()));
    for (k, v) in run_env {
        cmd.env(k, v);
    }
    cmd.env("KUBECONFIG", kubeconfig)
        .env("PORTVAKT_IDPORTEN", "false")
        .env("PORTVAKT_MASKINPORTEN", "false")
        .env("PORTVAKT_AZURE", "true")
        .env(
            "PORTVAKT_METRICS_ADDRESS",
            format!("127.0.0.1:{metrics_port}"),
        );
    if std::env::var_os("PORTVAKT_LOG").is_none() {
        cmd.env("PORTVAKT_LOG", "warn,portvakt=warn");
    }
    cmd
}

async fn bench(
    args: &BenchArgs,
    latency: Duration,
    steady: Duration,
    deadline: Instant,
) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe().context("finding the portvakt binary")?;
    let dir = TempDir::new()?;
    let kubeconfig = dir.0.join("kubeconfig");
    let state_dir = dir.0.join("state");
    let mut cmd = Command::new(&exe);
    cmd.args([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--digdir-listen",
        "127.0.0.1:0",
        "--graph-listen",
        "127.0.0.1:0",
    ])
    .arg("--graph-latency")
    .arg(format!("{}ms", latency.as_millis()))
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .arg("--state-dir")
    .arg(&state_dir)
    .arg("--install-crds")
    .env("PORTVAKT_LOG", "warn");
    if args.graph_throttling {
        cmd.arg("--graph-throttling");
    }
    let mut sim = ChildGuard::spawn("sim", cmd, &dir.0)?;
    let started = Instant::now();
    while !kubeconfig.exists() || !state_dir.join("run.env").exists() {
        sim.ensure_running()?;
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "`portvakt sim` wrote no kubeconfig within 60 s:\n{}",
                sim.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run_env = parse_env_file(
        &std::fs::read_to_string(state_dir.join("run.env")).context("reading run.env")?,
    );
    let graph_url = run_env
        .iter()
        .find(|(k, _)| k == "PORTVAKT_ENTRA_GRAPH_URL")
        .map(|(_, v)| v.clone())
        .context("run.env has no PORTVAKT_ENTRA_GRAPH_URL")?;
    let calls_url = url::Url::parse(&graph_url)
        .and_then(|u| u.join("/_sim/graph/calls"))
        .with_context(|| format!("run.env: {graph_url:?} is not a URL"))?;
    let metrics_port = free_port()?;
    let probe = Probe::<GraphCalls>::new(calls_url.to_string(), metrics_port)?;
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;

    // Phase 1: single apps into a running, idle operator.
    let mut op = ChildGuard::spawn(
        "run",
        operator_command(&exe, &run_env, &kubeconfig, metrics_port, args, steady),
        &dir.0,
    )?;
    ensure_namespace(&client, "entra-single").await?;
    let singles_api: Api<AzureAdApplication> = Api::namespaced(client.clone(), "entra-single");
    let single = |i: usize| -> anyhow::Result<AzureAdApplication> {
        serde_json::from_value(json!({
            "apiVersion": "nais.io/v1", "kind": "AzureAdApplication",
            "metadata": {"name": format!("single-{i}"), "namespace": "entra-single"},
            "spec": {"secretName": format!("single-{i}-azure"),
                     "replyUrls": [{"url": "https://single.example/oauth2/callback"}]},
        }))
        .context("a single app")
    };
    // A warm-up app: the operator has started its watches once it is Ready.
    let c0 = probe.calls().await?;
    singles_api
        .create(&PostParams::default(), &single(0)?)
        .await?;
    until(&singles_api, "single-0", Duration::from_secs(60), ready).await?;
    let mut singles = Vec::new();
    for i in 1..=SINGLES {
        op.ensure_running()?;
        let t = Instant::now();
        singles_api
            .create(&PostParams::default(), &single(i)?)
            .await?;
        until(
            &singles_api,
            &format!("single-{i}"),
            Duration::from_secs(60),
            ready,
        )
        .await?;
        let d = t.elapsed();
        progress(format_args!(
            "single app {i}: Ready {:.2} s after apply",
            d.as_secs_f64()
        ));
        singles.push(d);
    }
    let single_calls = probe.calls().await?.minus(&c0);
    drop(op);

    // Phase 2: the chain, seeded while no operator runs, then a cold start.
    progress(format_args!(
        "seeding {} apps in a chain over {} namespaces",
        args.n, args.namespaces
    ));
    for i in 0..args.namespaces {
        ensure_namespace(&client, &ns_name(i)).await?;
    }
    let mut results = futures::stream::iter(0..args.n)
        .map(|i| {
            let client = client.clone();
            async move {
                let app = chain_app(i, args.n, args.namespaces)?;
                let api: Api<AzureAdApplication> =
                    Api::namespaced(client, &ns_name(i % args.namespaces));
                api.create(&PostParams::default(), &app)
                    .await
                    .with_context(|| format!("creating {}", app_name(i)))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    let before = probe.calls().await?;
    let mut op = ChildGuard::spawn(
        "run",
        operator_command(&exe, &run_env, &kubeconfig, metrics_port, args, steady),
        &dir.0,
    )?;
    let start = Instant::now();
    let all: Api<AzureAdApplication> = Api::all(client.clone());
    let chain_lp = ListParams::default();
    let in_chain = |o: &AzureAdApplication| {
        o.metadata
            .namespace
            .as_deref()
            .is_some_and(|n| n.starts_with("entra-") && n != "entra-single")
    };
    let mut time_to_ready = None;
    let mut last_report = Instant::now();
    let time_to_assigned = loop {
        op.ensure_running()?;
        sim.ensure_running()?;
        let list = all.list(&chain_lp).await?;
        let chain: Vec<&AzureAdApplication> = list.items.iter().filter(|o| in_chain(o)).collect();
        let n_ready = chain.iter().filter(|o| ready(o)).count();
        let n_assigned = chain.iter().filter(|o| ready(o) && all_assigned(o)).count();
        if time_to_ready.is_none() && n_ready >= args.n {
            time_to_ready = Some(start.elapsed());
            progress(format_args!(
                "all {} Ready after {:.1} s",
                args.n,
                start.elapsed().as_secs_f64()
            ));
        }
        if n_assigned >= args.n {
            break start.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(format_args!(
                "{n_ready}/{} Ready, {n_assigned} with every pre-authorization assigned after {:.0} s",
                args.n,
                start.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "--timeout: {n_ready}/{} Ready, {n_assigned} assigned; the operator's log:\n{}",
                args.n,
                op.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let time_to_ready = time_to_ready.unwrap_or(time_to_assigned);
    let chain_calls = probe.calls().await?.minus(&before);

    // Phase 3: settled (no Graph call and no Secret write for 3 s), then one resync period.
    let mut last = (probe.calls().await?.graph, -1.0);
    let mut quiet = Instant::now();
    loop {
        op.ensure_running()?;
        let now = (
            probe.calls().await?.graph,
            metric(&probe.metrics().await?, "portvakt_secret_writes_total"),
        );
        if now != last {
            last = now;
            quiet = Instant::now();
        }
        if quiet.elapsed() > Duration::from_secs(3) {
            break;
        }
        if Instant::now() > deadline {
            bail!("--timeout: Graph calls or Secret writes did not stop");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let window = steady + (steady / 10).max(Duration::from_secs(2));
    let secrets: Api<Secret> = Api::all(client.clone());
    let managed = ListParams::default().labels("type=azurerator.nais.io");
    let m0 = probe.metrics().await?;
    let s0 = probe.calls().await?;
    let apps0 = all.list(&ListParams::default()).await?.items;
    let v0 = resource_versions(&apps0);
    let k0 = versions(&secrets, &managed).await?;
    let w0 = Instant::now();
    while w0.elapsed() < window {
        op.ensure_running()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s1 = probe.calls().await?;
    let m1 = probe.metrics().await?;
    let apps1 = all.list(&ListParams::default()).await?.items;
    let v1 = resource_versions(&apps1);
    let k1 = versions(&secrets, &managed).await?;
    // What changed in the window, so a steady-state miss can be read from the output.
    for app in &apps1 {
        let key = object_key(&app.metadata);
        if v0.get(&key) != v1.get(&key) {
            let before = apps0.iter().find(|a| object_key(&a.metadata) == key);
            progress(format_args!(
                "written in the steady window: {key}: conditions before {}, after {}",
                conditions_summary(before),
                conditions_summary(Some(app)),
            ));
        }
    }
    if changed(&v0, &v1) > 0 {
        progress(format_args!(
            "the operator's last log lines:\n{}",
            op.log_tail(20)
        ));
    }
    let (operator_cpu, peak_rss) = proc_usage(op.pid())?;
    drop(op);
    drop(sim);
    Ok(Outcome {
        n: args.n,
        concurrency: args.concurrency,
        latency,
        throttling: args.graph_throttling,
        singles,
        single_calls,
        time_to_ready,
        time_to_assigned,
        chain_calls,
        steady_window: w0.elapsed(),
        steady_calls: s1.minus(&s0),
        steady_reconciles: metric(&m1, "portvakt_reconciles_total")
            - metric(&m0, "portvakt_reconciles_total"),
        steady_objects_written: changed(&v0, &v1),
        steady_secrets_written: changed(&k0, &k1),
        operator_cpu,
        peak_rss,
    })
}

/// `type=status(reason)` for each condition, for the steady window's report.
fn conditions_summary(app: Option<&AzureAdApplication>) -> String {
    let Some(conditions) = app
        .and_then(|a| a.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
    else {
        return "none".into();
    };
    conditions
        .iter()
        .map(|c| {
            format!(
                "{}={}({}, generation {:?})",
                c.type_, c.status, c.reason, c.observed_generation
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
