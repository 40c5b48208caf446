//! The binary as a user runs it: `portvakt sim` and `portvakt run` as child processes (killed when
//! dropped; `portvakt run` can be killed with SIGKILL at a chosen point and started again), with the
//! simulator's control routes (`/_sim/faults`, `/_sim/journal`, `/_sim/digdir/clients`) to inject
//! faults and to see what reached Digdir.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `portvakt sim` as a child process.
pub struct SimProcess {
    child: Child,
    pub kubeconfig: PathBuf,
    pub state: PathBuf,
    pub digdir_url: String,
    pub kube_url: String,
    /// The Entra simulator (Graph and the tenant's token endpoint).
    pub graph_url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `portvakt sim` with `args` (e.g. `--digdir-fault RULE`) and waits for its addresses.
pub async fn start_sim(args: &[&str]) -> SimProcess {
    portvakt::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let state = dir.path().join("state");
    let out = dir.path().join("sim.out");
    let child = Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args([
            "sim",
            "--install-crds",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&state)
        .args(args)
        .stdout(std::fs::File::create(&out).expect("sim.out"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting portvakt sim");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (kube_url, digdir_url, graph_url) = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let url = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|s| s.trim().to_string())
        };
        if let (Some(k), Some(d), Some(g), true) = (
            url("Embedded Kubernetes API server listening on "),
            url("Digdir simulator listening on "),
            url("Entra simulator listening on "),
            state.join("run.env").exists() && kubeconfig.exists(),
        ) {
            break (k, d, g);
        }
        assert!(
            Instant::now() < deadline,
            "portvakt sim did not start:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    SimProcess {
        child,
        kubeconfig,
        state,
        digdir_url,
        kube_url,
        graph_url,
        dir,
        http: reqwest::Client::new(),
    }
}

impl SimProcess {
    /// A kube client for the embedded server.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// The settings `portvakt sim` wrote for `portvakt run`.
    pub fn run_env(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.state.join("run.env"))
            .expect("run.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Adds a fault rule to the Digdir simulator (the one-line form of `/_sim/faults`).
    pub async fn digdir_fault(&self, rule: &str) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.digdir_url))
            .body(rule.to_string())
            .send()
            .await
            .expect("POST /_sim/faults");
        assert_eq!(
            r.status(),
            201,
            "{rule}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// The embedded Kubernetes API server's journal (with request bodies and user agents).
    pub async fn kube_journal(&self) -> Vec<Value> {
        let j: Value = self
            .http
            .get(format!("{}/_sim/journal?bodies=true", self.kube_url))
            .send()
            .await
            .expect("GET /_sim/journal")
            .json()
            .await
            .expect("JSON");
        j["calls"].as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_kube_faults(&self) {
        self.http
            .delete(format!("{}/_sim/faults", self.kube_url))
            .send()
            .await
            .expect("DELETE /_sim/faults");
    }

    /// Adds a fault rule to the embedded Kubernetes API server.
    pub async fn kube_fault(&self, rule: &str) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.kube_url))
            .body(rule.to_string())
            .send()
            .await
            .expect("POST /_sim/faults");
        assert_eq!(
            r.status(),
            201,
            "{rule}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub async fn clear_digdir_faults(&self) {
        self.http
            .delete(format!("{}/_sim/faults", self.digdir_url))
            .send()
            .await
            .expect("DELETE /_sim/faults");
    }

    /// The Digdir simulator's journal (with request bodies).
    pub async fn digdir_journal(&self) -> Vec<Value> {
        let j: Value = self
            .http
            .get(format!("{}/_sim/journal?bodies=true", self.digdir_url))
            .send()
            .await
            .expect("GET /_sim/journal")
            .json()
            .await
            .expect("JSON");
        j["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Digdir calls with this method whose path matches `pred`.
    pub async fn digdir_calls(&self, method: &str, pred: impl Fn(&str) -> bool) -> Vec<Value> {
        self.digdir_journal()
            .await
            .into_iter()
            .filter(|c| c["method"] == method && c["path"].as_str().is_some_and(&pred))
            .collect()
    }

    /// Every client the Digdir simulator holds.
    pub async fn digdir_clients(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/digdir/clients", self.digdir_url))
            .send()
            .await
            .expect("GET /_sim/digdir/clients")
            .json()
            .await
            .expect("JSON")
    }

    /// The kids registered for a client now.
    pub async fn jwks_kids(&self, client_id: &str) -> Vec<String> {
        let j: Value = self
            .http
            .get(format!(
                "{}/_sim/digdir/clients/{client_id}/jwks",
                self.digdir_url
            ))
            .send()
            .await
            .expect("GET jwks")
            .json()
            .await
            .expect("JSON");
        j["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(String::from))
            .collect()
    }

    /// The active clients with this description.
    pub async fn active_clients(&self, description: &str) -> Vec<Value> {
        self.digdir_clients()
            .await
            .into_iter()
            .filter(|c| c["description"] == description && c["active"] != false)
            .collect()
    }

    /// `portvakt run` with the settings from run.env, overridden by `env`.
    pub fn start_operator(&self, env: &[(&str, &str)]) -> OperatorProcess {
        self.start_operator_without(&[], env)
    }

    /// [`Self::start_operator`] without the run.env settings named in `unset`.
    pub fn start_operator_without(&self, unset: &[&str], env: &[(&str, &str)]) -> OperatorProcess {
        let log = self
            .dir
            .path()
            .join(format!("operator-{}.log", uuid::Uuid::new_v4().simple()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portvakt"));
        cmd.arg("run");
        for (k, _) in std::env::vars() {
            if k.starts_with("PORTVAKT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("PORTVAKT_LOG_FORMAT", "text")
            .env("PORTVAKT_LOG", "info");
        for (k, v) in self.run_env() {
            if !unset.contains(&k.as_str()) {
                cmd.env(k, v);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("operator log"))
            .spawn()
            .expect("starting portvakt run");
        OperatorProcess { child, log }
    }
}

/// `portvakt run` as a child process.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OperatorProcess {
    /// SIGKILL: the process dies at once, mid-pass.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and how long it took to stop.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, start.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "portvakt run did not stop within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until it logged the address of its metrics endpoint, and returns it.
    pub async fn metrics_address(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log_text();
            if let Some(addr) = log
                .split_whitespace()
                .find_map(|w| w.strip_prefix("metrics="))
            {
                return addr.trim_matches('"').to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its `/metrics`, parsed ([`crate::metrics::parse`]).
    pub async fn metrics(&self) -> crate::metrics::Exposition {
        let addr = self.metrics_address().await;
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        crate::metrics::parse(&text)
    }

    /// One metric of its `/metrics` (0 when absent): `name` summed over its series, or one series
    /// as `name{label="value",...}`.
    pub async fn metric(&self, name: &str) -> f64 {
        let m = self.metrics().await;
        if let Some((family, labels)) = name.strip_suffix('}').and_then(|n| n.split_once('{')) {
            let labels: Vec<(&str, &str)> = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            return m.get(family, &labels).unwrap_or(0.0);
        }
        m.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// `GET /path` on its health and metrics endpoint: the status code and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let addr = self.metrics_address().await;
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Waits until it has exited; its exit status.
    pub async fn exited(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "portvakt run did not exit within {secs}s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits for `cond`, polling, up to `secs` seconds.
pub async fn wait_for(what: &str, secs: u64, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
