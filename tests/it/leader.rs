//! High availability: replicas elect a leader on a Lease; only the leader writes; a standby takes
//! over once the leader stops renewing, and a leader that cannot renew stops writing at its renew
//! deadline, before a standby may start. In-process (two operators on one embedded server, time
//! moved with the shared clock) and as binaries (`portvakt run` twice, the leader killed mid-create).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use portvakt::controller::digdir_kinds::DigdirProvider;
use portvakt::controller::leader::{
    Election, LeaseLost, LeaseSettings, NOT_LEADER, WriteGate, WriteGateLayer, run_elected,
};
use portvakt::controller::{Context, RunOptions, Shared};
use portvakt::metrics::ProviderHooks;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::procs::{OperatorProcess, SimProcess, start_sim, wait_for};
use crate::support::{self, CLUSTER, Env, NS, desc, env, spec, wait_until};

const LEASE: &str = "portvakt";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

/// One in-process replica: its context, gate, and the task running it.
struct Replica {
    ctx: Arc<Context>,
    gate: Arc<WriteGate>,
    client: kube::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), LeaseLost>>>,
}

fn user_agent(name: &str) -> String {
    format!("portvakt-test ({name})")
}

/// A client of the embedded server that says who it is, and (with a gate) refuses writes while
/// the gate is closed, as `portvakt run` builds them.
fn client_for(env: &Env, name: &str, gate: Option<Arc<WriteGate>>) -> kube::Client {
    let ua = http::HeaderValue::from_str(&user_agent(name)).expect("user agent");
    let tag =
        tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
            req.headers_mut()
                .insert(http::header::USER_AGENT, ua.clone());
            req
        });
    let router = env.kube.router();
    match gate {
        Some(gate) => kube::Client::new(
            tower::ServiceBuilder::new()
                .layer(tag)
                .layer(WriteGateLayer(gate))
                .service(router),
            "default",
        ),
        None => kube::Client::new(
            tower::ServiceBuilder::new().layer(tag).service(router),
            "default",
        ),
    }
}

fn settings(name: &str) -> LeaseSettings {
    let mut s = LeaseSettings::new(LEASE, NS, name);
    s.retry_period = Duration::from_millis(100);
    s
}

fn start_replica(env: &Env, name: &'static str) -> Replica {
    let gate = WriteGate::closed(env.clock.clone());
    let client = client_for(env, name, Some(gate.clone()));
    let digdir = support::digdir_client(&env.sim, &env.urls, &env.clock, env.request_timeout);
    let provider = Arc::new(DigdirProvider::new(
        digdir.clone(),
        env.core_config(),
        env.clock.clone(),
        env.request_timeout,
    ));
    let ctx = Arc::new(
        Context::new(Shared::new(client.clone(), env.clock.clone(), CLUSTER))
            .with_provider(provider),
    );
    digdir.set_hooks(Arc::new(ProviderHooks {
        provider: "digdir",
        metrics: ctx.metrics.clone(),
        gate: gate.clone(),
    }));
    let shutdown = CancellationToken::new();
    let opts = RunOptions {
        concurrency: 4,
        shutdown: shutdown.clone(),
        ..RunOptions::default()
    };
    let election = Election {
        client: client_for(env, name, None),
        settings: settings(name),
        gate: gate.clone(),
    };
    let task = tokio::spawn(run_elected(ctx.clone(), opts, election));
    Replica {
        ctx,
        gate,
        client,
        shutdown,
        task: Some(task),
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn holder(env: &Env) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), NS)
        .get_opt(LEASE)
        .await
        .expect("get Lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

fn leads(r: &Replica) -> bool {
    r.ctx.metrics.render().contains(&format!(
        "leader_election_master_status{{name=\"{LEASE}\"}} 1"
    ))
}

/// The embedded server's journal entries of a replica: (seq, method, path, status).
fn calls_of(env: &Env, name: &str) -> Vec<(u64, String, String, u16)> {
    let ua = user_agent(name);
    env.kube
        .journal()
        .into_iter()
        .filter(|c| c.user_agent.as_deref() == Some(ua.as_str()))
        .map(|c| (c.seq, c.method.to_string(), c.path.clone(), c.status))
        .collect()
}

fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_writing_before_the_standby_takes_over() {
    let env = env().await;
    let a = start_replica(&env, "replica-a");
    wait_until("replica-a to lead", async || leads(&a)).await;
    assert_eq!(holder(&env).await.as_deref(), Some("replica-a"));
    let mut b = start_replica(&env, "replica-b");
    wait_until("replica-b to look at the Lease", async || {
        calls_of(&env, "replica-b")
            .iter()
            .any(|(_, m, p, _)| m == "GET" && p.starts_with(LEASES_PATH))
    })
    .await;
    assert!(!leads(&b) && !b.gate.may_write(), "replica-b stands by");

    env.create_idp("first", spec("first-1")).await;
    env.wait_ready("first").await;

    // The API server refuses replica-a's renewals from now on.
    env.kube.inject_fault(
        portvakt_sim::kube::FaultRule::status(500)
            .method("PUT")
            .path(&format!("{LEASES_PATH}/{LEASE}")),
    );
    // replica-b has seen the last version replica-a managed to write (it looks after the fault),
    // so its lease duration counts from before the clock moves.
    let mark = env.kube.journal().last().map_or(0, |c| c.seq);
    wait_until("replica-b to look at the Lease again", async || {
        calls_of(&env, "replica-b")
            .iter()
            .any(|(seq, m, p, _)| *seq > mark && m == "GET" && p.starts_with(LEASES_PATH))
    })
    .await;
    let mut a = a;
    env.clock.advance(Duration::from_secs(10)); // the renew deadline
    let lost = tokio::time::timeout(Duration::from_secs(10), a.task.take().expect("task"))
        .await
        .expect("replica-a gives up leading")
        .expect("no panic");
    let lost = lost.expect_err("the Lease is lost");
    assert!(lost.why.contains("renew deadline"), "{lost}");
    let lost_at = env.kube.journal().last().map_or(0, |c| c.seq);
    assert!(!a.gate.may_write());
    // A write through replica-a's client is refused before it is sent.
    let err = Api::<ConfigMap>::namespaced(a.client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late-write"}})).expect("cm"),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains(NOT_LEADER), "{err}");
    assert!(
        env.kube
            .journal()
            .iter()
            .all(|c| c.method != "POST" || !c.path.ends_with("/configmaps")),
        "the refused write never reached the server"
    );
    assert_eq!(
        holder(&env).await.as_deref(),
        Some("replica-a"),
        "no standby takes over before the lease duration"
    );
    assert!(!leads(&b));

    // Past the lease duration of what replica-b last saw: it takes over and reconciles.
    env.kube.clear_faults();
    env.clock.advance(Duration::from_secs(6));
    wait_until("replica-b to lead", async || leads(&b)).await;
    assert_eq!(holder(&env).await.as_deref(), Some("replica-b"));
    env.create_idp("second", spec("second-1")).await;
    env.wait_ready("second").await;
    assert_eq!(env.clients_with_description(&desc("first")).len(), 1);
    assert_eq!(env.clients_with_description(&desc("second")).len(), 1);

    // The journal: replica-a wrote nothing after it lost the Lease; replica-b wrote nothing but
    // the Lease before it held it.
    let a_late: Vec<_> = calls_of(&env, "replica-a")
        .into_iter()
        .filter(|(seq, m, _, _)| *seq > lost_at && is_write(m))
        .collect();
    assert!(a_late.is_empty(), "{a_late:?}");
    let b_calls = calls_of(&env, "replica-b");
    let b_took = b_calls
        .iter()
        .find(|(_, m, p, s)| m == "PUT" && p.starts_with(LEASES_PATH) && *s == 200)
        .map(|(seq, ..)| *seq)
        .expect("replica-b's Lease write");
    assert!(b_took > lost_at);
    let early: Vec<_> = b_calls
        .iter()
        .filter(|(seq, m, p, _)| *seq < b_took && is_write(m) && !p.starts_with(LEASES_PATH))
        .collect();
    assert!(early.is_empty(), "replica-b wrote as a standby: {early:?}");
    assert!(
        b_calls
            .iter()
            .any(|(seq, m, p, _)| *seq > b_took && is_write(m) && p.contains("idportenclients")),
        "replica-b did the work"
    );
    b.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), b.task.take().expect("task"))
        .await
        .expect("replica-b stops")
        .expect("no panic");
    assert!(stopped.is_ok(), "a stop is not a lost Lease");
    let released = Api::<Lease>::namespaced(env.client.clone(), NS)
        .get(LEASE)
        .await
        .expect("Lease");
    assert_eq!(
        released.spec.and_then(|s| s.holder_identity),
        None,
        "released on the stop"
    );
}

// ---- the binaries ----

/// `portvakt run` as replica `name` of the release's Lease, with short timings.
fn start_elected(sim: &SimProcess, name: &str) -> OperatorProcess {
    sim.start_operator(&[
        ("PORTVAKT_LEADER_ELECTION_LEASE_NAME", LEASE),
        ("PORTVAKT_LEADER_ELECTION_LEASE_DURATION", "3s"),
        ("PORTVAKT_LEADER_ELECTION_RENEW_DEADLINE", "2s"),
        ("PORTVAKT_LEADER_ELECTION_RETRY_PERIOD", "200ms"),
        ("POD_NAMESPACE", "team-a"),
        ("POD_NAME", name),
    ])
}

const TEAM: &str = "team-a";
/// `portvakt sim` writes this cluster name into run.env.
const SIM_CLUSTER: &str = "portvakt-sim";

async fn sim_holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), TEAM)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn leader_gauge(op: &OperatorProcess) -> Option<f64> {
    op.metrics()
        .await
        .get("leader_election_master_status", &[("name", LEASE)])
}

#[tokio::test]
async fn killing_the_leader_mid_create_leaves_one_registration_and_the_standby_finishes() {
    // Every create is handled at once and answered 20 s later: the leader dies waiting.
    let sim = start_sim(&[
        "--digdir-fault",
        "POST /api/v1/clients latency-after=20s once",
    ])
    .await;
    let client = sim.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": TEAM}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let mut a = start_elected(&sim, "replica-a");
    wait_for("replica-a to lead", 30, async || {
        sim_holder(&client).await.as_deref() == Some("replica-a")
    })
    .await;
    let b = start_elected(&sim, "replica-b");
    wait_for("replica-b standing by, ready", 30, async || {
        b.get("/readyz").await.0 == 200 && leader_gauge(&b).await == Some(0.0)
    })
    .await;
    assert_eq!(b.get("/healthz").await.0, 200);

    let mps: Api<portvakt::crd::MaskinportenClient> = Api::namespaced(client.clone(), TEAM);
    for n in ["ha-a", "ha-b", "ha-c"] {
        let obj = serde_json::from_value(json!({
            "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
            "metadata": {"name": n, "namespace": TEAM},
            "spec": {"secretName": format!("{n}-mp"), "scopes": {"consumes": [{"name": "krr:global/kontaktinformasjon.read"}]}},
        }))
        .expect("MaskinportenClient");
        mps.create(&PostParams::default(), &obj)
            .await
            .expect("create");
    }
    wait_for("a create to reach Digdir", 30, async || {
        !sim.digdir_calls("POST", |p| p == "/api/v1/clients")
            .await
            .is_empty()
    })
    .await;
    a.kill9();
    let killed_at = sim
        .kube_journal()
        .await
        .last()
        .map_or(0, |c| c["seq"].as_u64().unwrap_or(0));

    wait_for("replica-b to lead", 30, async || {
        leader_gauge(&b).await == Some(1.0)
    })
    .await;
    wait_for("every resource Ready", 60, async || {
        for n in ["ha-a", "ha-b", "ha-c"] {
            let Some(o) = mps.get_opt(n).await.ok().flatten() else {
                return false;
            };
            if !support::is_ready(o.metadata.generation, o.status.as_ref()) {
                return false;
            }
        }
        true
    })
    .await;
    for n in ["ha-a", "ha-b", "ha-c"] {
        let active = sim
            .active_clients(&format!("{SIM_CLUSTER}:{TEAM}:{n}"))
            .await;
        assert_eq!(active.len(), 1, "{n}: {active:#?}");
    }

    // Who wrote what, by user agent: replica-b wrote nothing but the Lease before holding it,
    // and replica-a nothing after it was killed.
    let journal = sim.kube_journal().await;
    let of = |pod: &str| -> Vec<&Value> {
        journal
            .iter()
            .filter(|c| {
                c["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.ends_with(&format!("({pod})")))
            })
            .collect()
    };
    let write = |c: &&Value| c["method"].as_str().is_some_and(is_write);
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{TEAM}/leases");
    let on_lease = |c: &&Value| {
        c["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(&lease_path))
    };
    let seq = |c: &&Value| c["seq"].as_u64().unwrap_or(0);
    let b_calls = of("replica-b");
    let b_took = b_calls
        .iter()
        .filter(|c| write(c) && on_lease(c) && c["status"].as_u64().is_some_and(|s| s < 300))
        .map(seq)
        .next()
        .expect("replica-b took the Lease");
    let standby_writes: Vec<_> = b_calls
        .iter()
        .filter(|c| write(c) && !on_lease(c) && seq(c) < b_took)
        .collect();
    assert!(standby_writes.is_empty(), "{standby_writes:#?}");
    assert!(
        b_calls
            .iter()
            .any(|c| write(c) && !on_lease(c) && seq(c) > b_took),
        "replica-b did the work"
    );
    let a_after: Vec<_> = of("replica-a")
        .into_iter()
        .filter(|c| write(c) && seq(c) > killed_at)
        .collect();
    assert!(a_after.is_empty(), "{a_after:#?}");
    assert!(
        of("replica-a").iter().any(|c| write(c) && !on_lease(c)),
        "replica-a had started the work"
    );
}

#[tokio::test]
async fn a_stopped_leader_hands_over_at_once_and_a_standby_is_ready() {
    let sim = start_sim(&[]).await;
    let client = sim.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": TEAM}})).expect("ns"),
        )
        .await
        .expect("namespace");
    // The default timing (15 s lease): a handover that waited for expiry would take 15 s.
    let leader_env = |name: &'static str| {
        vec![
            ("PORTVAKT_LEADER_ELECTION_LEASE_NAME", LEASE),
            ("PORTVAKT_LEADER_ELECTION_RETRY_PERIOD", "200ms"),
            ("POD_NAMESPACE", TEAM),
            ("POD_NAME", name),
        ]
    };
    let mut a = sim.start_operator(&leader_env("replica-a"));
    wait_for("replica-a to lead", 30, async || {
        sim_holder(&client).await.as_deref() == Some("replica-a")
    })
    .await;
    let b = sim.start_operator(&leader_env("replica-b"));
    wait_for("replica-b ready as a standby", 30, async || {
        b.get("/readyz").await.0 == 200 && leader_gauge(&b).await == Some(0.0)
    })
    .await;
    let (status, _) = a.terminate();
    assert!(status.success(), "a stop is a clean exit: {}", a.log_text());
    let handed_over = std::time::Instant::now();
    wait_for("replica-b to lead", 30, async || {
        leader_gauge(&b).await == Some(1.0)
    })
    .await;
    assert!(
        handed_over.elapsed() < Duration::from_secs(10),
        "released, not expired: {:?}",
        handed_over.elapsed()
    );
    assert!(
        a.log_text().contains("released the leader Lease"),
        "{}",
        a.log_text()
    );
}

#[tokio::test]
async fn leader_election_settings_are_checked_at_start() {
    let sim = start_sim(&[]).await;
    let mut op = sim.start_operator(&[("PORTVAKT_LEADER_ELECTION_LEASE_NAME", LEASE)]);
    let status = op.exited(30).await;
    assert!(!status.success());
    let log = op.log_text();
    assert!(
        log.contains("POD_NAMESPACE is required with --leader-election-lease-name"),
        "{log}"
    );
    let mut op = sim.start_operator(&[
        ("PORTVAKT_LEADER_ELECTION_LEASE_NAME", LEASE),
        ("POD_NAMESPACE", TEAM),
        ("POD_NAME", "replica-a"),
        ("PORTVAKT_LEADER_ELECTION_RENEW_DEADLINE", "20s"),
    ]);
    assert!(!op.exited(30).await.success());
    let log = op.log_text();
    assert!(
        log.contains(
            "--leader-election-renew-deadline: 20s must be shorter than the lease duration (15s)"
        ),
        "{log}"
    );
}
