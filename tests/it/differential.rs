//! The embedded API server measured against a real kube-apiserver: the same request sequences go
//! to both, and the answers are compared after normalising what legitimately differs (uids,
//! timestamps, resourceVersion values, continue tokens, generated names, `selfLink`).
//!
//! The cases are data, in `tests/data/differential/cases.yaml` (its header says how to write one).
//! Each case runs in a namespace of its own on both servers; a step's answer is its HTTP status,
//! its body (or, for a watch, the events read) and its `Warning` headers. A difference the embedded
//! server keeps on purpose is named in the case (`known:`, with the reason) and in the README
//! section "The embedded API server: known limits"; every other difference fails the test, which
//! lists them all. The real tier needs the test tools (see [`super::real_cluster::test_tools`]):
//! without them the suite skips, with `PORTVAKT_REQUIRE_TEST_TOOLS=1` it fails.
//! `PORTVAKT_DIFF_CASE=text` runs only the cases whose name contains `text`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::real_cluster::{Options, RealCluster};
use portvakt_sim::kube::ApiServer;
use portvakt_sim::kube::protobuf;

const USER_AGENT: &str = "portvakt-differential/1.0";
const WATCH_LIMIT: Duration = Duration::from_secs(20);
const UNTIL_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    setup: Vec<Step>,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Step {
    /// `METHOD /path?query`, with `{ns}` and saved variables substituted.
    req: String,
    /// Sent as JSON (or encoded as protobuf when `type` says so).
    #[serde(default)]
    body: Option<Value>,
    /// A manifest under tests/data (e.g. `examples/idportenclient.yaml`), its namespace set to `{ns}`.
    #[serde(default)]
    body_file: Option<String>,
    /// Sent as it is.
    #[serde(default)]
    raw: Option<String>,
    /// The Content-Type (default `application/json` when there is a body).
    #[serde(default, rename = "type")]
    content_type: Option<String>,
    #[serde(default)]
    accept: Option<String>,
    /// Variables saved from the answer's body: name → JSON pointer.
    #[serde(default)]
    save: BTreeMap<String, String>,
    /// `full` (default), `status` (only the HTTP status), `none`, or a list of JSON pointers
    /// (into `{code, body, warnings}`; `*` matches every array item or object member).
    #[serde(default)]
    compare: Compare,
    /// Pointers (as in `compare`) left out of the comparison.
    #[serde(default)]
    ignore: Vec<String>,
    /// Arrays (pointers into the answer) whose embedded items are compared with the real items of
    /// the same `name`; items only the real server has are not compared (discovery lists).
    #[serde(default)]
    subset_by_name: Vec<String>,
    /// The request is a watch: read events until this.
    #[serde(default)]
    watch: Option<WatchUntil>,
    /// Before this step both servers forget their history: the embedded one its watch history,
    /// the real one its etcd revisions (compacted through etcd's HTTP gateway).
    #[serde(default)]
    compact: bool,
    /// Repeat the request (both servers) until its answer has this HTTP status (asynchronous
    /// controllers on the real side: garbage collection, namespace deletion).
    #[serde(default)]
    until_code: Option<u16>,
    /// Why a difference that `ignore` hides is kept (listed in the README's known limits).
    #[serde(default)]
    known: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(untagged)]
enum Compare {
    #[default]
    Full,
    Mode(String),
    Only(Vec<String>),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct WatchUntil {
    /// Stop after this many events (BOOKMARKs other than initial-events-end are not counted).
    #[serde(default)]
    events: Option<usize>,
    /// Stop at the BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
    #[serde(default)]
    initial_events_end: bool,
}

struct Target {
    name: &'static str,
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    embedded: Option<ApiServer>,
    /// The real server's etcd, for `compact`.
    etcd: Option<String>,
}

/// Compacts etcd at its current revision: older resourceVersions are gone from the real server.
async fn compact_etcd(http: &reqwest::Client, etcd: &str) {
    let range: Value = http
        .post(format!("{etcd}/v3/kv/range"))
        .body(r#"{"key":"AA=="}"#)
        .send()
        .await
        .expect("etcd range")
        .json()
        .await
        .expect("etcd range JSON");
    let revision = range["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse::<i64>().ok())
        .expect("etcd revision");
    let done = http
        .post(format!("{etcd}/v3/kv/compaction"))
        .body(json!({"revision": revision, "physical": true}).to_string())
        .send()
        .await
        .expect("etcd compaction");
    assert!(
        done.status().is_success(),
        "etcd compaction: {}",
        done.status()
    );
}

impl Target {
    async fn send(&self, step: &Step, vars: &BTreeMap<String, String>) -> Value {
        let req = substitute(&step.req, vars);
        let (method, path) = req
            .split_once(' ')
            .unwrap_or_else(|| panic!("step {req:?}: expected `METHOD /path`"));
        let method: reqwest::Method = method.parse().expect("HTTP method");
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("User-Agent", USER_AGENT);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(a) = &step.accept {
            r = r.header("Accept", a.as_str());
        }
        let ct = step.content_type.clone();
        if let Some(raw) = &step.raw {
            r = r
                .header("Content-Type", ct.as_deref().unwrap_or("application/json"))
                .body(substitute(raw, vars));
        } else if let Some(body) = step
            .body
            .clone()
            .or_else(|| step.body_file.as_deref().map(manifest))
        {
            let body: Value = serde_json::from_str(&substitute(&body.to_string(), vars))
                .expect("body after substitution is JSON");
            let ct = ct.unwrap_or_else(|| "application/json".to_string());
            let bytes = if ct.starts_with(protobuf::MEDIA_TYPE) {
                protobuf::encode(&body).unwrap_or_else(|e| panic!("{req}: encoding protobuf: {e}"))
            } else {
                serde_json::to_vec(&body).expect("JSON body")
            };
            r = r.header("Content-Type", ct).body(bytes);
        }
        let resp = match r.send().await {
            Ok(resp) => resp,
            Err(e) => return json!({"code": 0, "body": format!("request failed: {e}")}),
        };
        let code = resp.status().as_u16();
        let warnings: Vec<Value> = {
            let mut w: Vec<String> = resp
                .headers()
                .get_all("warning")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.trim_start_matches("299 - ").trim_matches('"').to_string())
                .collect();
            w.sort();
            w.into_iter().map(Value::String).collect()
        };
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match &step.watch {
            Some(until) if code == 200 => read_events(resp, &content_type, until).await,
            _ => {
                let bytes = resp.bytes().await.unwrap_or_default();
                decode_body(&content_type, &bytes)
            }
        };
        let mut answer = json!({"code": code, "body": body});
        if !warnings.is_empty() {
            answer["warnings"] = Value::Array(warnings);
        }
        answer
    }
}

fn decode_body(content_type: &str, bytes: &[u8]) -> Value {
    if content_type.starts_with(protobuf::MEDIA_TYPE) {
        return match protobuf::decode(bytes) {
            Ok(v) => json!({"protobuf": v}),
            Err(e) => json!(format!("undecodable protobuf: {e}")),
        };
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Reads watch events (JSON lines, or length-prefixed protobuf frames) until `until` holds.
async fn read_events(mut resp: reqwest::Response, content_type: &str, until: &WatchUntil) -> Value {
    let pb = content_type.starts_with(protobuf::MEDIA_TYPE);
    let deadline = Instant::now() + WATCH_LIMIT;
    let mut buf: Vec<u8> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    loop {
        // Take every complete event in the buffer.
        loop {
            let next = if pb {
                protobuf::split_watch_frame(&buf)
            } else {
                buf.iter()
                    .position(|b| *b == b'\n')
                    .map(|i| (buf[..i].to_vec(), i + 1))
            };
            let Some((frame, used)) = next else { break };
            buf.drain(..used);
            let event = if pb {
                protobuf::decode_watch_event(&frame)
                    .unwrap_or_else(|e| json!(format!("undecodable event: {e}")))
            } else if frame.iter().all(u8::is_ascii_whitespace) {
                continue;
            } else {
                serde_json::from_slice(&frame)
                    .unwrap_or_else(|_| json!(String::from_utf8_lossy(&frame)))
            };
            let end = is_initial_events_end(&event);
            if event["type"] == "BOOKMARK" && !end {
                continue;
            }
            events.push(event);
            if (until.initial_events_end && end) || until.events.is_some_and(|n| events.len() >= n)
            {
                return json!({"events": events});
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
            Ok(Ok(None)) => return json!({"events": events, "closed": true}),
            Ok(Err(e)) => return json!({"events": events, "error": e.to_string()}),
            Err(_) => return json!({"events": events, "timedOut": true}),
        }
    }
}

fn is_initial_events_end(event: &Value) -> bool {
    event["type"] == "BOOKMARK"
        && event
            .pointer("/object/metadata/annotations/k8s.io~1initial-events-end")
            .is_some_and(|v| v == "true")
}

/// A manifest from tests/data, placed in the case's namespace.
fn manifest(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v["metadata"]["namespace"] = json!("{ns}");
    v
}

/// Keeps, in the real answer's array at `pointer`, the items named like the embedded answer's.
fn match_by_name(embedded: &Value, real: &mut Value, pointer: &str) {
    let names: Vec<Value> = embedded
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|i| i["name"].clone()).collect())
        .unwrap_or_default();
    if let Some(Value::Array(items)) = real.pointer_mut(pointer) {
        let picked: Vec<Value> = names
            .iter()
            .map(|n| {
                items
                    .iter()
                    .find(|i| &i["name"] == n)
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        *items = picked;
    }
}

fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Replaces what legitimately differs between two servers with placeholders.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.shift_remove("selfLink");
            let generate = m
                .get("generateName")
                .and_then(Value::as_str)
                .map(str::to_string);
            for (k, child) in m.iter_mut() {
                match (k.as_str(), &*child) {
                    ("uid", Value::String(_)) => *child = json!("<uid>"),
                    ("resourceVersion", Value::String(s)) if !s.is_empty() => {
                        *child = json!("<rv>")
                    }
                    ("continue", Value::String(s)) if !s.is_empty() => *child = json!("<continue>"),
                    ("name", Value::String(s))
                        if generate.as_ref().is_some_and(|g| s.starts_with(g.as_str())) =>
                    {
                        *child = json!(format!("{}<random>", generate.as_deref().unwrap_or("")));
                    }
                    _ => normalise(child),
                }
            }
            if m.get("kind").and_then(Value::as_str) == Some("Table") {
                normalise_table_ages(m);
            }
            // The order of several causes is not part of the contract; their set is.
            if let Some(Value::Array(causes)) = m.get_mut("causes") {
                causes.sort_by_key(|c| c.to_string());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        Value::String(s) if s.len() >= 20 && s.parse::<jiff::Timestamp>().is_ok() => {
            *v = json!("<time>");
        }
        _ => {}
    }
}

/// Age-like cells ("0s", "3m") depend on when each server created the object.
fn normalise_table_ages(table: &mut Map<String, Value>) {
    let ages: Vec<usize> = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .enumerate()
                .filter(|(_, c)| {
                    c["type"] == "date" || matches!(c["name"].as_str(), Some("Age" | "Last Seen"))
                })
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    if let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(cells) = row.get_mut("cells").and_then(Value::as_array_mut) {
                for i in &ages {
                    if let Some(c) = cells.get_mut(*i)
                        && c.is_string()
                    {
                        *c = json!("<age>");
                    }
                }
            }
        }
    }
}

/// Every value at a pointer whose segments may be `*`.
fn select<'a>(v: &'a Value, pointer: &str) -> Vec<(String, &'a Value)> {
    let mut cur: Vec<(String, &Value)> = vec![(String::new(), v)];
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for (at, x) in cur {
            match (seg.as_str(), x) {
                ("*", Value::Array(a)) => {
                    next.extend(a.iter().enumerate().map(|(i, y)| (format!("{at}/{i}"), y)))
                }
                ("*", Value::Object(o)) => {
                    next.extend(o.iter().map(|(k, y)| (format!("{at}/{k}"), y)))
                }
                (s, Value::Array(a)) => {
                    if let Some(y) = s.parse::<usize>().ok().and_then(|i| a.get(i)) {
                        next.push((format!("{at}/{s}"), y));
                    }
                }
                (s, Value::Object(o)) => {
                    if let Some(y) = o.get(s) {
                        next.push((format!("{at}/{s}"), y));
                    }
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    let paths: Vec<String> = select(v, pointer).into_iter().map(|(p, _)| p).collect();
    // Deepest and last first, so indices stay valid.
    for p in paths.iter().rev() {
        let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
        match v.pointer_mut(parent) {
            Some(Value::Object(o)) => {
                o.shift_remove(last);
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            _ => {}
        }
    }
}

fn prepared(answer: &Value, step: &Step) -> Value {
    let mut a = answer.clone();
    normalise(&mut a);
    for p in &step.ignore {
        remove_pointer(&mut a, p);
    }
    match &step.compare {
        Compare::Full => a,
        Compare::Mode(m) if m == "full" => a,
        Compare::Mode(m) if m == "status" => json!({"code": a["code"]}),
        Compare::Mode(m) if m == "none" => Value::Null,
        Compare::Mode(m) => panic!("compare: {m:?} is not full, status or none"),
        Compare::Only(pointers) => {
            let mut out = Map::new();
            out.insert("code".into(), a["code"].clone());
            for p in pointers {
                let found: Vec<Value> = select(&a, p).into_iter().map(|(_, x)| x.clone()).collect();
                out.insert(p.clone(), Value::Array(found));
            }
            Value::Object(out)
        }
    }
}

fn diff(embedded: &Value, real: &Value, at: &str, out: &mut Vec<String>) {
    match (embedded, real) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                match b.get(k) {
                    Some(bv) => diff(av, bv, &format!("{at}/{k}"), out),
                    None => out.push(format!("{at}/{k}: embedded has {av}, real has nothing")),
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.push(format!("{at}/{k}: embedded has nothing, real has {bv}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                diff(av, bv, &format!("{at}/{i}"), out);
            }
            if a.len() != b.len() {
                let extra = |x: &[Value], n: usize| {
                    x[n..]
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let n = a.len().min(b.len());
                out.push(format!(
                    "{at}: embedded has {} items, real has {} (beyond: embedded [{}], real [{}])",
                    a.len(),
                    b.len(),
                    extra(a, n),
                    extra(b, n)
                ));
            }
        }
        _ if embedded == real => {}
        _ => out.push(format!("{at}: embedded {embedded}, real {real}")),
    }
}

fn save_vars(answer: &Value, step: &Step, vars: &mut BTreeMap<String, String>) {
    for (name, pointer) in &step.save {
        if let Some(v) = answer["body"].pointer(pointer) {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.insert(name.clone(), s);
        }
    }
}

/// Runs one step on a target, repeating it while `until_code` is not met.
async fn run_step(target: &Target, step: &Step, vars: &mut BTreeMap<String, String>) -> Value {
    if step.compact {
        if let Some(server) = &target.embedded {
            server.compact();
        }
        if let Some(etcd) = &target.etcd {
            compact_etcd(&reqwest::Client::new(), etcd).await;
        }
    }
    let deadline = Instant::now() + UNTIL_LIMIT;
    loop {
        let answer = target.send(step, vars).await;
        // A freshly established CRD's watch cache answers 429 for a moment.
        if answer["code"] == 429 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let done = match step.until_code {
            None => true,
            Some(c) => answer["code"] == c || Instant::now() > deadline,
        };
        if done {
            save_vars(&answer, step, vars);
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn load_cases() -> Vec<Case> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/differential/cases.yaml");
    let text = std::fs::read_to_string(&path).expect("reading the differential cases");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn crds() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            serde_saphyr::from_str(&std::fs::read_to_string(f).expect("crd")).expect("CRD YAML")
        })
        .collect()
}

async fn install_crds(target: &Target) {
    for crd in crds() {
        let step = Step {
            req: "POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions".into(),
            body: Some(crd.clone()),
            ..step_template()
        };
        let answer = target.send(&step, &BTreeMap::new()).await;
        assert_eq!(
            answer["code"], 201,
            "{}: installing a CRD: {answer}",
            target.name
        );
    }
    // Served once discovery lists the kinds and the first list succeeds.
    let deadline = Instant::now() + Duration::from_secs(60);
    // A real server creates its system namespaces shortly after it is ready; cases compare them.
    loop {
        let step = Step {
            req: "GET /api/v1/namespaces/kube-node-lease".into(),
            ..step_template()
        };
        let answer = target.send(&step, &BTreeMap::new()).await;
        if answer["code"] == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no kube-node-lease namespace within 60s: {answer}",
            target.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for plural in [
        "idportenclients",
        "maskinportenclients",
        "azureadapplications",
    ] {
        loop {
            let step = Step {
                req: format!("GET /apis/nais.io/v1/{plural}"),
                ..step_template()
            };
            let answer = target.send(&step, &BTreeMap::new()).await;
            if answer["code"] == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {plural} not served within 60s: {answer}",
                target.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn step_template() -> Step {
    Step {
        req: String::new(),
        body: None,
        body_file: None,
        raw: None,
        content_type: None,
        accept: None,
        save: BTreeMap::new(),
        compare: Compare::Full,
        ignore: Vec::new(),
        subset_by_name: Vec::new(),
        watch: None,
        compact: false,
        until_code: None,
        known: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_api_server_answers_like_a_real_one() {
    let Some(cluster) = RealCluster::start(Options {
        controller_manager: true,
    }) else {
        return;
    };
    portvakt::install_crypto_provider();
    let began = Instant::now();
    let embedded = ApiServer::new(portvakt::clock::Clock::system());
    let handle = embedded
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("serving the embedded API server");
    let plain = reqwest::Client::builder().build().expect("HTTP client");
    let ca = reqwest::Certificate::from_der(cluster.ca_der()).expect("cluster CA");
    let tls = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("HTTPS client");
    let targets = [
        Target {
            name: "embedded",
            base: handle.url(),
            http: plain,
            token: None,
            embedded: Some(embedded.clone()),
            etcd: None,
        },
        Target {
            name: "real",
            base: cluster.server_url().to_string(),
            http: tls,
            token: Some(cluster.admin_token().to_string()),
            embedded: None,
            etcd: Some(cluster.etcd_url().to_string()),
        },
    ];
    for t in &targets {
        install_crds(t).await;
    }

    let filter = std::env::var("PORTVAKT_DIFF_CASE").unwrap_or_default();
    let cases = load_cases();
    assert!(cases.len() >= 60, "only {} differential cases", cases.len());
    let mut failures: Vec<String> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    let mut ran = 0;
    for (i, case) in cases.iter().enumerate() {
        if !case.name.contains(&filter) {
            continue;
        }
        ran += 1;
        let ns = format!("diff-{i:03}");
        let mut answers: Vec<Vec<Value>> = Vec::new();
        for t in &targets {
            let mut vars = BTreeMap::from([("ns".to_string(), ns.clone())]);
            let create_ns = Step {
                req: "POST /api/v1/namespaces".into(),
                body: Some(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                ),
                ..step_template()
            };
            let a = t.send(&create_ns, &vars).await;
            assert_eq!(a["code"], 201, "{}: creating namespace {ns}: {a}", t.name);
            for s in &case.setup {
                let a = run_step(t, s, &mut vars).await;
                if a["code"].as_u64().is_none_or(|c| c >= 400) {
                    failures.push(format!(
                        "[{}] {}: setup {} failed on {}: {a}",
                        i, case.name, s.req, t.name
                    ));
                }
            }
            let mut got = Vec::new();
            for s in &case.steps {
                got.push(run_step(t, s, &mut vars).await);
            }
            answers.push(got);
        }
        for (j, step) in case.steps.iter().enumerate() {
            if let Some(why) = &step.known {
                known.push(format!("[{i}] {}: {why}", case.name));
            }
            let mut real = answers[1][j].clone();
            for p in &step.subset_by_name {
                match_by_name(&answers[0][j], &mut real, p);
            }
            let (e, r) = (prepared(&answers[0][j], step), prepared(&real, step));
            let mut out = Vec::new();
            diff(&e, &r, "", &mut out);
            if !out.is_empty() {
                failures.push(format!(
                    "[{i}] {} — step {} `{}`:\n    {}",
                    case.name,
                    j + 1,
                    step.req,
                    out.join("\n    ")
                ));
            }
        }
    }
    eprintln!(
        "differential: {ran} cases against kube-apiserver in {:.1}s; known differences hidden:\n  {}",
        began.elapsed().as_secs_f64(),
        known.join("\n  ")
    );
    assert!(ran > 0, "no case matches PORTVAKT_DIFF_CASE={filter:?}");
    assert!(
        failures.is_empty(),
        "{} differences between the embedded and the real API server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn normalising_hides_only_what_legitimately_differs() {
    let mut a = json!({
        "metadata": {"name": "x-abcde", "generateName": "x-", "uid": "1", "resourceVersion": "5",
                     "creationTimestamp": "2026-01-01T00:00:00Z", "selfLink": "/x"},
        "data": {"k": "v"}
    });
    normalise(&mut a);
    assert_eq!(
        a,
        json!({"metadata": {"name": "x-<random>", "generateName": "x-", "uid": "<uid>",
               "resourceVersion": "<rv>", "creationTimestamp": "<time>"}, "data": {"k": "v"}})
    );
    let mut out = Vec::new();
    diff(
        &json!({"a": [1, 2]}),
        &json!({"a": [1, 3], "b": 1}),
        "",
        &mut out,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let mut v = json!({"items": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]});
    remove_pointer(&mut v, "/items/*/a");
    assert_eq!(v, json!({"items": [{"b": 2}, {"b": 4}]}));
}
