//! The object store: one global resourceVersion, the write pipeline (status split,
//! type rules, schema validation, generation, managed fields), finalizers,
//! garbage collection, namespace deletion and the watch event history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::error::{ApiError, ApiResult, StatusCause};
use super::events;
use super::fields::{self, Scope};
use super::managed::{self, Managed};
use super::patch::{self, PatchType};
use super::registry::{self, Registry};
use super::resource::ResourceInfo;
use super::selector::Selectors;
use super::types;
use portvakt_clock::Clock;

/// (storage key, namespace or "", name).
pub type ObjKey = (String, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers (storage form).
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub skey: String,
    pub namespace: String,
    pub etype: EventType,
    pub object: Value,
    /// The previous state, for MODIFIED (selector transitions).
    pub prev: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options of one write request.
#[derive(Clone, Debug)]
pub struct WriteOpts {
    pub manager: String,
    /// Whether `fieldManager` was given explicitly (apply requires it).
    pub manager_given: bool,
    pub sub: Sub,
    pub dry_run: bool,
    pub validation: FieldValidation,
    /// The raw body, for duplicate-field detection.
    pub raw: Option<Vec<u8>>,
}

impl Default for WriteOpts {
    fn default() -> Self {
        Self {
            manager: "unknown".to_string(),
            manager_given: false,
            sub: Sub::Main,
            dry_run: false,
            validation: FieldValidation::Warn,
            raw: None,
        }
    }
}

/// `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The object goes now; its dependents after it (the default).
    #[default]
    Background,
    /// The object stays, with the `foregroundDeletion` finalizer, until the dependents that
    /// block its deletion are gone.
    Foreground,
    /// The object stays, with the `orphan` finalizer, until its dependents no longer refer to it.
    Orphan,
}

/// `DeleteOptions` that matter here.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// The result of a write: the object as served, and warnings for the client.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

pub struct Store {
    pub registry: Registry,
    pub(super) objects: BTreeMap<ObjKey, Value>,
    rv: u64,
    history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    /// Events with rv at or below this are no longer in the history.
    compacted: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    clock: Clock,
}

pub fn timestamp(clock: &Clock) -> String {
    clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(root) = v else {
        unreachable!("replaced by an object above")
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(m) = meta else {
        unreachable!("replaced by an object above")
    };
    m
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        for k in keys {
            o.shift_remove(*k);
        }
    }
    c
}

fn same_except_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("resourceVersion");
        }
        c
    };
    strip(a) == strip(b)
}

/// The garbage collector's finalizers (`DeleteOptions.propagationPolicy`).
const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| GENERATE_CHARS[rng.gen_range(0..GENERATE_CHARS.len())] as char)
        .collect()
}

/// A decoded continue token.
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string().as_bytes())
}

fn decode_continue(c: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim_end_matches('=').as_bytes())
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    Ok(ContinueToken {
        rv: v.get("rv").and_then(Value::as_i64).unwrap_or(0),
        start: v
            .get("start")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// Unknown and duplicate fields of a built-in type (its fields are those of its protobuf
/// message): refused under `Strict`, dropped with a warning under `Warn`, dropped under `Ignore`.
fn check_builtin_fields(
    info: &ResourceInfo,
    new: &mut Value,
    opts: &WriteOpts,
) -> ApiResult<Vec<String>> {
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = new
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !super::protobuf::supports(&api_version, &kind) {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = super::protobuf::prune_unknown_fields(new)
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    if let (Some(raw), FieldValidation::Strict | FieldValidation::Warn) =
        (&opts.raw, opts.validation)
    {
        problems.extend(
            super::schema::duplicate_fields(raw)
                .iter()
                .map(|p| format!("duplicate field \"{}\"", p.trim_start_matches('.'))),
        );
    }
    match opts.validation {
        FieldValidation::Strict if !problems.is_empty() => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            problems.join(", ")
        ))),
        FieldValidation::Warn => Ok(problems),
        _ => Ok(Vec::new()),
    }
}

/// Core Events are stored in events.k8s.io form and served converted.
pub(super) fn is_core_event(info: &ResourceInfo) -> bool {
    info.plural == "events" && info.group.is_empty()
}

/// The object as served at this resource's version.
pub fn served(info: &ResourceInfo, stored: &Value) -> Value {
    if is_core_event(info) {
        return events::to_core(stored);
    }
    let mut v = stored.clone();
    if let Some(o) = v.as_object_mut() {
        // apiVersion and kind first, as the real server writes them.
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(info.api_version()));
        out.insert("kind".into(), json!(info.kind));
        for (k, val) in std::mem::take(o) {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, val);
            }
        }
        *o = out;
    }
    v
}

/// The object in storage form.
pub fn to_storage(info: &ResourceInfo, v: Value) -> Value {
    if info.plural == "events" && info.group.is_empty() {
        return events::from_core(v);
    }
    v
}

impl Store {
    pub fn new(clock: Clock, history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 0,
            tx,
            clock,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn set_history_cap(&mut self, cap: usize) {
        self.history_cap = cap.max(1);
        self.trim_history();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// Events after `rv`, or None when some of them are gone (410).
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<WatchEvent>>> {
        if rv < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_cap {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// The newest resourceVersion whose events are no longer in the history (0: none forgotten).
    pub fn oldest_rv(&self) -> u64 {
        self.compacted
    }

    /// Forgets the whole history: every watch resuming from an older version gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn emit(&mut self, etype: EventType, key: &ObjKey, object: Value, prev: Option<Value>) {
        let rv = meta_str(&object, "resourceVersion")
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.rv);
        let ev = Arc::new(WatchEvent {
            rv,
            skey: key.0.clone(),
            namespace: key.1.clone(),
            etype,
            object,
            prev,
        });
        self.history.push_back(ev.clone());
        self.trim_history();
        let _ = self.tx.send(ev);
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub fn key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> ObjKey {
        let ns = if info.namespaced {
            ns.unwrap_or("")
        } else {
            ""
        };
        (
            registry::storage_key(info),
            ns.to_string(),
            name.to_string(),
        )
    }

    fn info_for_skey(&self, skey: &str) -> Option<ResourceInfo> {
        self.registry
            .all()
            .iter()
            .find(|r| registry::storage_key(r) == skey)
            .cloned()
    }

    // ----- reads -----

    pub fn get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&Self::key(info, ns, name))
            .map(|o| served(info, o))
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// Objects of a type as stored, in key order, optionally in one namespace.
    fn stored_objects<'a>(
        &'a self,
        info: &'a ResourceInfo,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> + 'a {
        let skey = registry::storage_key(info);
        // A namespace narrows the range itself (keys are ordered by kind, namespace, name).
        let start_ns = ns
            .filter(|_| info.namespaced)
            .map(str::to_string)
            .unwrap_or_default();
        self.objects
            .range((skey.clone(), start_ns, String::new())..)
            .take_while(move |(k, _)| {
                k.0 == skey && ns.is_none_or(|n| !info.namespaced || k.1 == n)
            })
    }

    /// Objects of a type as served, in key order, optionally in one namespace.
    pub fn served_objects(&self, info: &ResourceInfo, ns: Option<&str>) -> Vec<(ObjKey, Value)> {
        self.stored_objects(info, ns)
            .map(|(k, v)| (k.clone(), served(info, v)))
            .collect()
    }

    /// Objects of a type matching `sel`, as served, in key order, optionally in one namespace.
    /// Selectors are decided on the stored form where it answers them like the served form (every
    /// type but core Events), so objects that do not match are never copied.
    pub fn matching_served(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        sel: &Selectors,
    ) -> Vec<(ObjKey, Value)> {
        let same_form = !is_core_event(info);
        self.stored_objects(info, ns)
            .filter_map(|(k, v)| {
                if same_form {
                    sel.matches(v).then(|| (k.clone(), served(info, v)))
                } else {
                    let o = served(info, v);
                    sel.matches(&o).then(|| (k.clone(), o))
                }
            })
            .collect()
    }

    pub fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        sel: &Selectors,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> ApiResult<Value> {
        // Continue tokens as kube-apiserver writes them: {"v":"meta.k8s.io/v1","rv":N,"start":KEY},
        // base64url; KEY is the last key returned plus a NUL, relative to the listed prefix.
        let across = info.namespaced && ns.is_none();
        let start = match cont.filter(|c| !c.is_empty()) {
            Some(c) => {
                let token = decode_continue(c)?;
                if token.rv >= 0 && (token.rv as u64) < self.compacted {
                    let fresh = encode_continue(-1, &token.start);
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    )
                    .with_list_continue(fresh));
                }
                let key = token.start.trim_end_matches('\0');
                Some(match key.split_once('/') {
                    Some((n, name)) if across => (n.to_string(), name.to_string()),
                    _ if across => (key.to_string(), String::new()),
                    _ => (ns.unwrap_or("").to_string(), key.to_string()),
                })
            }
            None => None,
        };
        let mut items = Vec::new();
        let mut next = None;
        let same_form = !is_core_event(info);
        for (k, stored) in self.stored_objects(info, ns) {
            if let Some((sns, sname)) = &start
                && (&k.1, &k.2) <= (sns, sname)
            {
                continue;
            }
            let obj = if same_form {
                if !sel.matches(stored) {
                    continue;
                }
                served(info, stored)
            } else {
                let obj = served(info, stored);
                if !sel.matches(&obj) {
                    continue;
                }
                obj
            };
            if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                next = Some(k.clone());
                break;
            }
            items.push((k.clone(), obj));
        }
        let mut metadata = json!({ "resourceVersion": self.rv.to_string() });
        if info.custom {
            // Lists of custom resources (unstructured) always carry the token, empty at the end.
            metadata["continue"] = json!("");
        }
        if let (Some(_), Some((last, _))) = (&next, items.last()) {
            let key = if across {
                format!("{}/{}\0", last.1, last.2)
            } else {
                format!("{}\0", last.2)
            };
            metadata["continue"] = json!(encode_continue(self.rv as i64, &key));
            if sel.is_empty() {
                let remaining = self
                    .stored_objects(info, ns)
                    .filter(|(k, _)| (&k.1, &k.2) > (&last.1, &last.2))
                    .count();
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        // Items of a typed list carry no apiVersion and kind; those of custom resources do.
        let items: Vec<Value> = items
            .into_iter()
            .map(|(_, mut o)| {
                if !info.custom
                    && let Some(m) = o.as_object_mut()
                {
                    m.shift_remove("apiVersion");
                    m.shift_remove("kind");
                }
                o
            })
            .collect();
        Ok(json!({
            "apiVersion": info.api_version(),
            "kind": info.list_kind,
            "metadata": metadata,
            "items": items,
        }))
    }

    // ----- writes -----

    /// Checks a request body against the URL and normalises apiVersion, kind, namespace.
    fn check_body(&self, info: &ResourceInfo, ns: Option<&str>, body: Value) -> ApiResult<Value> {
        let Value::Object(mut m) = body else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON or YAML object",
            ));
        };
        let want_av = info.api_version();
        let core_event = info.plural == "events" && info.group.is_empty();
        match m.get("apiVersion") {
            Some(Value::String(av))
                if *av != want_av && !(core_event && av == "events.k8s.io/v1") =>
            {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            Some(Value::String(_)) | None => {}
            Some(_) => return Err(ApiError::bad_request("apiVersion must be a string")),
        }
        match m.get("kind") {
            Some(Value::String(k)) if *k != info.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                    info.kind,
                    info.path_prefix()
                )));
            }
            Some(Value::String(_)) | None => {}
            Some(_) => return Err(ApiError::bad_request("kind must be a string")),
        }
        m.insert("apiVersion".into(), json!(want_av));
        m.insert("kind".into(), json!(info.kind));
        let mut v = Value::Object(m);
        match v.get("metadata") {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
        }
        let meta = meta_mut(&mut v);
        if info.namespaced {
            let url_ns = ns.unwrap_or("");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.shift_remove("namespace");
        }
        Ok(v)
    }

    /// 404 for a missing namespace, 403 for a terminating one.
    fn check_namespace(&self, ns: &str, info: &ResourceInfo, name: &str) -> ApiResult<()> {
        let key = ("/namespaces".to_string(), String::new(), ns.to_string());
        match self.objects.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if deleting(n) => Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                super::error::qualified(&info.group, &info.plural)
            ))
            .with_details(json!({
                "name": name,
                "kind": info.plural,
                "group": info.group,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace"
                }]
            }))),
            Some(_) => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Outcome> {
        self.create_with(info, ns, body, opts, Managed::Update)
    }

    pub(super) fn create_with(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
        managed: Managed,
    ) -> ApiResult<Outcome> {
        if info.namespaced && ns.is_none_or(str::is_empty) {
            return Err(ApiError::no_route());
        }
        let mut obj = self.check_body(info, ns, body)?;
        let now = timestamp(&self.clock);
        let meta = meta_mut(&mut obj);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => format!("{g}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid_field(
                        &info.group,
                        &info.kind,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        let name_ok = if info.group == "rbac.authorization.k8s.io" {
            !name.is_empty() && !name.contains('/') && name != "." && name != ".."
        } else {
            types::valid_name(&name)
        };
        if !name_ok {
            return Err(ApiError::invalid_field(
                &info.group,
                &info.kind,
                &name,
                "metadata.name",
                "FieldValueInvalid",
                &format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        meta.insert("name".into(), json!(name));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.shift_remove(f);
        }
        if !matches!(managed, Managed::Keep) {
            meta.shift_remove("managedFields");
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now));
        if registry::has_generation(info) {
            meta.insert("generation".into(), json!(1));
        }
        if info.namespaced {
            self.check_namespace(ns.unwrap_or(""), info, &name)?;
        }
        let key = Self::key(info, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&info.group, &info.plural, &name));
        }
        if info.custom
            && info.status_subresource
            && let Some(o) = obj.as_object_mut()
        {
            o.shift_remove("status");
        }
        let obj = to_storage(info, obj);
        let (obj, warnings) = self.prepare(info, None, obj, opts, managed)?;
        let stored = self.commit(info, key, None, obj, opts.dry_run);
        Ok(Outcome {
            object: served(info, &stored),
            created: true,
            warnings,
        })
    }

    /// PUT (main or status).
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Outcome> {
        let mut obj = self.check_body(info, ns, body)?;
        if let Some(n) = meta_str(&obj, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        meta_mut(&mut obj).insert("name".into(), json!(name));
        let key = Self::key(info, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info.group, &info.plural, name));
        };
        match meta_str(&obj, "resourceVersion") {
            Some(rv) if !rv.is_empty() && Some(rv) != meta_str(&old, "resourceVersion") => {
                return Err(ApiError::stale(&info.group, &info.plural, name));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if info.custom => {
                // Named by resource, not kind: the custom resource handler's wording.
                return Err(ApiError::invalid_field(
                    &info.group,
                    &info.plural,
                    name,
                    "metadata.resourceVersion",
                    "FieldValueInvalid",
                    "Invalid value: 0: must be specified for an update",
                ));
            }
            _ => {}
        }
        let obj = to_storage(info, obj);
        let (obj, warnings) = self.prepare(info, Some(&old), obj, opts, Managed::Update)?;
        let stored = self.commit(info, key, Some(old), obj, opts.dry_run);
        Ok(Outcome {
            object: served(info, &stored),
            created: false,
            warnings,
        })
    }

    /// PATCH other than apply.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        force: bool,
        opts: &WriteOpts,
    ) -> ApiResult<Outcome> {
        if force && ptype != PatchType::Apply {
            return Err(ApiError::unprocessable(
                "force: Forbidden: may not be specified for non-apply patch",
            ));
        }
        match ptype {
            PatchType::Apply => return self.apply(info, ns, name, body, force, opts),
            PatchType::Strategic if info.custom => {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            _ => {}
        }
        let key = Self::key(info, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info.group, &info.plural, name));
        };
        let mut obj = served(info, &old);
        match ptype {
            PatchType::Merge => patch::merge(&mut obj, &patch::parse_json(body)?),
            PatchType::Json => patch::json_patch(&mut obj, body)?,
            PatchType::Strategic => patch::strategic(info, &mut obj, &patch::parse_json(body)?),
            PatchType::Apply => {}
        }
        if !obj.is_object() {
            return Err(ApiError::unprocessable(
                "the patch must result in an object",
            ));
        }
        let rv = meta_str(&obj, "resourceVersion").map(str::to_string);
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("").to_string();
        match rv {
            Some(rv) if !rv.is_empty() && rv != old_rv => {
                return Err(ApiError::stale(&info.group, &info.plural, name));
            }
            _ => {}
        }
        let mut obj = self.check_body(info, ns, obj)?;
        let meta = meta_mut(&mut obj);
        meta.insert("name".into(), json!(name));
        meta.insert("resourceVersion".into(), json!(old_rv));
        let obj = to_storage(info, obj);
        let (obj, warnings) = self.prepare(info, Some(&old), obj, opts, Managed::Update)?;
        let stored = self.commit(info, key, Some(old), obj, opts.dry_run);
        Ok(Outcome {
            object: served(info, &stored),
            created: false,
            warnings,
        })
    }

    /// Everything between a candidate object and a commit: status split, metadata
    /// rules, type rules, schema, generation and managed fields.
    pub(super) fn prepare(
        &self,
        info: &ResourceInfo,
        old: Option<&Value>,
        mut new: Value,
        opts: &WriteOpts,
        managed: Managed,
    ) -> ApiResult<(Value, Vec<String>)> {
        let name = meta_str(&new, "name").unwrap_or("").to_string();
        let now = timestamp(&self.clock);
        if let Some(old) = old {
            if info.status_subresource {
                match opts.sub {
                    Sub::Main => {
                        let status = old.get("status").cloned();
                        if let Some(o) = new.as_object_mut() {
                            match status {
                                Some(s) => {
                                    o.insert("status".into(), s);
                                }
                                None => {
                                    o.shift_remove("status");
                                }
                            }
                        }
                    }
                    Sub::Status => {
                        let status = new.get("status").cloned();
                        let mut merged = old.clone();
                        if let Some(o) = merged.as_object_mut() {
                            match status {
                                Some(s) => {
                                    o.insert("status".into(), s);
                                }
                                None => {
                                    o.shift_remove("status");
                                }
                            }
                        }
                        new = merged;
                    }
                }
            }
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "name",
                "namespace",
                "generation",
                "resourceVersion",
                "managedFields",
            ] {
                match old_meta.get(f) {
                    Some(v) => {
                        meta.insert(f.to_string(), v.clone());
                    }
                    None => {
                        meta.shift_remove(f);
                    }
                }
            }
            if deleting(old) {
                let before = finalizers(old);
                let added: Vec<String> = finalizers(&new)
                    .into_iter()
                    .filter(|f| !before.contains(f))
                    .collect();
                if !added.is_empty() {
                    let go_list: Vec<String> =
                        added.iter().map(|f| super::schema::go_quote(f)).collect();
                    let cause = StatusCause {
                        reason: "FieldValueForbidden".into(),
                        message: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                            go_list.join(", ")
                        ),
                        field: "metadata.finalizers".into(),
                    };
                    // kube-apiserver reports this cause twice (metadata and finalizer validation
                    // both find it); its message lists it once.
                    let mut err =
                        ApiError::invalid(&info.group, &info.kind, &name, vec![cause.clone()]);
                    if let Some(d) = err.details.as_mut()
                        && let Some(Value::Array(causes)) = d.get_mut("causes")
                    {
                        causes.push(json!({"reason": cause.reason, "message": cause.message, "field": cause.field}));
                    }
                    return Err(err);
                }
            }
        }
        // Type rules.
        match (info.group.as_str(), info.plural.as_str()) {
            ("", "secrets") => types::secret(old, &mut new)?,
            ("", "namespaces") => types::namespace_defaults(&mut new),
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                types::crd(old, &mut new, &now)?;
                let group = new
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if self
                    .registry
                    .all()
                    .iter()
                    .any(|r| !r.custom && r.group == group)
                {
                    return Err(ApiError::invalid_field(
                        &info.group,
                        &info.kind,
                        &name,
                        "spec.group",
                        "FieldValueInvalid",
                        "Invalid value: the group is served by a built-in API",
                    ));
                }
            }
            _ => {}
        }
        let mut warnings = Vec::new();
        if info.custom
            && let Some(schema) = &info.schema
        {
            warnings = self.check_schema(info, schema, old, &mut new, opts, &name)?;
        } else if !info.custom {
            warnings = check_builtin_fields(info, &mut new, opts)?;
        }
        // Generation: bumped on changes outside metadata (and status, with the subresource).
        if registry::has_generation(info) {
            let old_gen = old
                .and_then(|o| o.pointer("/metadata/generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let mut gen_ = old_gen;
            if let Some(old) = old {
                let ignore: &[&str] = if info.status_subresource {
                    &["metadata", "status"]
                } else {
                    &["metadata"]
                };
                if without(old, ignore) != without(&new, ignore) {
                    gen_ += 1;
                }
            }
            meta_mut(&mut new).insert("generation".into(), json!(gen_));
        }
        let subresource = match opts.sub {
            Sub::Main => "",
            Sub::Status => "status",
        };
        let entries = match managed {
            // Core Events are owned in the form they were written in.
            Managed::Update if is_core_event(info) => Some(managed::after_update(
                info,
                old.map(events::core_as_written).as_ref(),
                &events::core_as_written(&new),
                &opts.manager,
                subresource,
                &now,
            )),
            Managed::Update => Some(managed::after_update(
                info,
                old,
                &new,
                &opts.manager,
                subresource,
                &now,
            )),
            Managed::Apply(entries) => Some(entries),
            Managed::Keep => None,
        };
        if let Some(entries) = entries {
            let rendered = managed::render(&entries);
            let meta = meta_mut(&mut new);
            if rendered.as_array().is_some_and(|a| a.is_empty()) {
                meta.shift_remove("managedFields");
            } else {
                meta.insert("managedFields".into(), rendered);
            }
        }
        // What the type's strategy sets after the field manager ran, so nobody owns it.
        match (info.group.as_str(), info.plural.as_str()) {
            ("", "namespaces") => types::namespace_strategy(old, &mut new),
            ("", "pods") => types::pod_strategy(old, &mut new),
            _ => {}
        }
        Ok((new, warnings))
    }

    /// Prunes, defaults and validates a custom resource against its schema.
    fn check_schema(
        &self,
        info: &ResourceInfo,
        schema: &Value,
        old: Option<&Value>,
        new: &mut Value,
        opts: &WriteOpts,
        name: &str,
    ) -> ApiResult<Vec<String>> {
        // Metadata, apiVersion and kind are never pruned.
        let mut body = new.clone();
        let kept: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
            .iter()
            .filter_map(|k| {
                body.as_object_mut()
                    .and_then(|o| o.shift_remove(*k))
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        let unknown = super::schema::prune_and_default(schema, &mut body);
        let duplicates = match (&opts.raw, opts.validation) {
            (Some(raw), FieldValidation::Strict | FieldValidation::Warn) => {
                super::schema::duplicate_fields(raw)
            }
            _ => Vec::new(),
        };
        let mut problems: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
            .collect();
        problems.extend(
            duplicates
                .iter()
                .map(|p| format!("duplicate field \"{}\"", p.trim_start_matches('.'))),
        );
        let mut warnings = Vec::new();
        match opts.validation {
            FieldValidation::Strict if !problems.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    info.kind,
                    info.version,
                    info.kind,
                    problems.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = problems,
            _ => {}
        }
        let mut rebuilt = Map::new();
        for (k, v) in kept {
            rebuilt.insert(k, v);
        }
        if let Value::Object(rest) = body {
            for (k, v) in rest {
                rebuilt.insert(k, v);
            }
        }
        *new = Value::Object(rebuilt);
        let causes = super::schema::validate(schema, new, old);
        if !causes.is_empty() {
            let causes = causes
                .into_iter()
                .map(|c| StatusCause {
                    reason: c.reason,
                    message: c.message,
                    field: c.field,
                })
                .collect();
            return Err(ApiError::invalid(&info.group, &info.kind, name, causes));
        }
        Ok(warnings)
    }

    /// Stores a prepared object: skips no-ops, bumps the resourceVersion, emits the
    /// event, finishes deletion when the last finalizer is gone.
    pub(super) fn commit(
        &mut self,
        info: &ResourceInfo,
        key: ObjKey,
        old: Option<Value>,
        mut new: Value,
        dry_run: bool,
    ) -> Value {
        if let Some(o) = &old
            && same_except_rv(o, &new)
        {
            return o.clone();
        }
        if dry_run {
            return new;
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        if deleting(&new) && finalizers(&new).is_empty() {
            self.remove(key, new.clone(), false);
            return new;
        }
        self.objects.insert(key.clone(), new.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(etype, &key, new.clone(), old);
        if key.0 == "apiextensions.k8s.io/customresourcedefinitions" {
            self.register_crd(info, &new);
        }
        new
    }

    fn register_crd(&mut self, _info: &ResourceInfo, crd: &Value) {
        if let Some(infos) = registry::from_crd(crd) {
            if let Some(first) = infos.first() {
                let (g, p) = (first.group.clone(), first.plural.clone());
                self.registry.unregister(&g, &p);
            }
            for i in infos {
                self.registry.register(i);
            }
        }
    }

    /// DELETE of one object.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<(Value, bool)> {
        let key = Self::key(info, ns, name);
        let Some(obj) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&info.group, &info.plural, name));
        };
        if let Some(uid) = &opts.uid {
            let actual = meta_str(&obj, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::precondition_failed(
                    info,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            let actual = meta_str(&obj, "resourceVersion").unwrap_or("");
            if rv != actual {
                return Err(ApiError::precondition_failed(
                    info,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        if opts.dry_run {
            let at_once = finalizers(&obj).is_empty() && info.plural != "namespaces";
            return Ok((served(info, &obj), at_once));
        }
        let (last, at_once) = self
            .delete_key(&key, opts.propagation)
            .unwrap_or((obj, false));
        Ok((served(info, &last), at_once))
    }

    /// Deletes by key: marks objects with finalizers (or with the garbage collector's, for the
    /// Foreground and Orphan policies), removes the others. Returns the state to answer with and
    /// whether the object went at once (then kube-apiserver answers a `Status`).
    pub(super) fn delete_key(
        &mut self,
        key: &ObjKey,
        propagation: Propagation,
    ) -> Option<(Value, bool)> {
        let obj = self.objects.get(key).cloned()?;
        if key.0 == "/namespaces" {
            return Some((self.delete_namespace(key, obj), false));
        }
        let gc_finalizer = match propagation {
            Propagation::Background => None,
            Propagation::Foreground => Some(FOREGROUND),
            Propagation::Orphan => Some(ORPHAN),
        };
        if deleting(&obj) {
            return Some((obj, false));
        }
        if let Some(fin) = gc_finalizer {
            let marked = self.mark_deleting(key, &obj, Some(fin));
            let uid = meta_str(&marked, "uid").unwrap_or("").to_string();
            // The garbage collector's part, done at once: orphan the dependents, or delete them.
            self.collect_dependents(&uid, propagation == Propagation::Orphan);
            if propagation == Propagation::Orphan || !self.has_blocking_dependents(&uid) {
                self.release_gc_finalizer(key, fin);
            }
            return Some((marked, false));
        }
        if !finalizers(&obj).is_empty() {
            return Some((self.mark_deleting(key, &obj, None), false));
        }
        let mut last = obj;
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv));
        self.remove(key.clone(), last.clone(), false);
        Some((last, true))
    }

    /// Sets deletionTimestamp (and a garbage-collector finalizer), bumps the generation; commits.
    fn mark_deleting(&mut self, key: &ObjKey, obj: &Value, finalizer: Option<&str>) -> Value {
        let info = self.info_for_skey(&key.0);
        let mut new = obj.clone();
        let now = timestamp(&self.clock);
        let meta = meta_mut(&mut new);
        meta.insert("deletionTimestamp".into(), json!(now));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(fin) = finalizer {
            let list = meta
                .entry("finalizers")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list
                && !a.iter().any(|f| f == fin)
            {
                a.push(json!(fin));
            }
        }
        if info.as_ref().is_some_and(registry::has_generation) {
            let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
            meta.insert("generation".into(), json!(g + 1));
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects.insert(key.clone(), new.clone());
        self.emit(EventType::Modified, key, new.clone(), Some(obj.clone()));
        new
    }

    /// Removes a garbage-collector finalizer (the object goes when it was the last one).
    fn release_gc_finalizer(&mut self, key: &ObjKey, fin: &str) {
        let Some(obj) = self.objects.get(key).cloned() else {
            return;
        };
        if !finalizers(&obj).iter().any(|f| f == fin) {
            return;
        }
        let mut new = obj.clone();
        if let Some(Value::Array(a)) = new.pointer_mut("/metadata/finalizers") {
            a.retain(|f| f != fin);
            if a.is_empty()
                && let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.shift_remove("finalizers");
            }
        }
        let Some(info) = self.info_for_skey(&key.0) else {
            return;
        };
        self.commit(&info, key.clone(), Some(obj), new, false);
    }

    /// Whether objects that block the owner's deletion (`blockOwnerDeletion`) still exist.
    fn has_blocking_dependents(&self, owner_uid: &str) -> bool {
        self.objects.values().any(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                            && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                    })
                })
        })
    }

    /// After a dependent went: owners in foreground deletion that no longer wait for anything go too.
    fn finish_foreground_owners(&mut self, last: &Value) {
        let owners: Vec<String> = last
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for uid in owners {
            let waiting = self
                .objects
                .iter()
                .find(|(_, o)| {
                    meta_str(o, "uid") == Some(uid.as_str())
                        && deleting(o)
                        && finalizers(o).iter().any(|f| f == FOREGROUND)
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = waiting
                && !self.has_blocking_dependents(&uid)
            {
                self.release_gc_finalizer(&k, FOREGROUND);
            }
        }
    }

    fn delete_namespace(&mut self, key: &ObjKey, obj: Value) -> Value {
        let name = key.2.clone();
        let mut current = obj.clone();
        if !deleting(&obj) {
            let now = timestamp(&self.clock);
            let meta = meta_mut(&mut current);
            meta.insert("deletionTimestamp".into(), json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(o) = current.as_object_mut() {
                o.insert("status".into(), json!({"phase": "Terminating"}));
            }
            let rv = self.next_rv();
            meta_mut(&mut current).insert("resourceVersion".into(), json!(rv));
            self.objects.insert(key.clone(), current.clone());
            self.emit(EventType::Modified, key, current.clone(), Some(obj));
        }
        let contents: Vec<ObjKey> = self
            .objects
            .keys()
            .filter(|k| k.1 == name)
            .cloned()
            .collect();
        for k in contents {
            self.delete_key(&k, Propagation::Background);
        }
        self.maybe_finish_namespace(&name);
        self.objects.get(key).cloned().unwrap_or(current)
    }

    fn maybe_finish_namespace(&mut self, ns: &str) {
        let key = ("/namespaces".to_string(), String::new(), ns.to_string());
        let Some(obj) = self.objects.get(&key).cloned() else {
            return;
        };
        if !deleting(&obj) || !finalizers(&obj).is_empty() {
            return;
        }
        if self.objects.keys().any(|k| k.1 == ns) {
            return;
        }
        let mut last = obj;
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv));
        self.remove(key, last, false);
    }

    /// Really removes an object (its last state already carries a fresh resourceVersion),
    /// then collects garbage.
    fn remove(&mut self, key: ObjKey, last: Value, orphan: bool) {
        if self.objects.remove(&key).is_none() {
            return;
        }
        self.emit(EventType::Deleted, &key, last.clone(), None);
        if key.0 == "apiextensions.k8s.io/customresourcedefinitions"
            && let Some(infos) = registry::from_crd(&last)
            && let Some(first) = infos.first()
        {
            let skey = registry::storage_key(first);
            let (g, p) = (first.group.clone(), first.plural.clone());
            let keys: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.0 == skey)
                .cloned()
                .collect();
            for k in keys {
                if let Some(mut o) = self.objects.get(&k).cloned() {
                    let rv = self.next_rv();
                    meta_mut(&mut o).insert("resourceVersion".into(), json!(rv));
                    self.remove(k, o, false);
                }
            }
            self.registry.unregister(&g, &p);
        }
        if let Some(uid) = meta_str(&last, "uid").map(str::to_string) {
            self.collect_dependents(&uid, orphan);
        }
        self.finish_foreground_owners(&last);
        if !key.1.is_empty() {
            self.maybe_finish_namespace(&key.1);
        }
    }

    /// Garbage collection: dependents with no remaining owner are deleted (or, when
    /// orphaning, lose the reference).
    fn collect_dependents(&mut self, uid: &str, orphan: bool) {
        let owns = |o: &Value| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                })
        };
        let dependents: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, o)| owns(o))
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            let Some(obj) = self.objects.get(&k).cloned() else {
                continue;
            };
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let remaining: Vec<Value> = refs
                .iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                .cloned()
                .collect();
            let any_owner_alive = remaining.iter().any(|r| {
                let ruid = r.get("uid").and_then(Value::as_str).unwrap_or("");
                self.objects
                    .values()
                    .any(|o| meta_str(o, "uid") == Some(ruid))
            });
            if orphan || any_owner_alive {
                let mut new = obj.clone();
                let meta = meta_mut(&mut new);
                if remaining.is_empty() {
                    meta.shift_remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), Value::Array(remaining));
                }
                let rv = self.next_rv();
                meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
                self.objects.insert(k.clone(), new.clone());
                self.emit(EventType::Modified, &k, new, Some(obj));
            } else {
                self.delete_key(&k, Propagation::Background);
            }
        }
    }

    /// Direct store write (test seeding): creates or replaces without validation.
    pub fn put_object(&mut self, obj: Value) -> ApiResult<Value> {
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("apiVersion is required"))?
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("kind is required"))?
            .to_string();
        let info = self
            .registry
            .find_any(&av, &kind)
            .cloned()
            .ok_or_else(ApiError::no_route)?;
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        let name = meta_str(&obj, "name")
            .ok_or_else(|| ApiError::bad_request("metadata.name is required"))?
            .to_string();
        let key = Self::key(&info, ns.as_deref(), &name);
        let mut obj = to_storage(&info, obj);
        let now = timestamp(&self.clock);
        let old = self.objects.get(&key).cloned();
        let meta = meta_mut(&mut obj);
        for f in ["uid", "creationTimestamp"] {
            let existing = old
                .as_ref()
                .and_then(|o| o.pointer(&format!("/metadata/{f}")).cloned());
            if let Some(v) = existing {
                meta.insert(f.into(), v);
            } else if !meta.contains_key(f) {
                let v = if f == "uid" {
                    json!(uuid::Uuid::new_v4().to_string())
                } else {
                    json!(now)
                };
                meta.insert(f.into(), v);
            }
        }
        if registry::has_generation(&info) && !meta.contains_key("generation") {
            meta.insert("generation".into(), json!(1));
        }
        if info.plural == "secrets" && info.group.is_empty() {
            types::secret(None, &mut obj)?;
        }
        let stored = self.commit(&info, key, old, obj, false);
        Ok(served(&info, &stored))
    }

    /// DELETE on a collection: deletes every matching object.
    pub fn delete_collection(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        sel: &Selectors,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let list = self.list(info, ns, sel, None, None)?;
        if !opts.dry_run {
            let keys: Vec<ObjKey> = self
                .matching_served(info, ns, sel)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            for k in keys {
                self.delete_key(&k, opts.propagation);
            }
        }
        Ok(list)
    }

    /// Applies `Scope` for a subresource.
    pub fn scope(info: &ResourceInfo, sub: Sub) -> Scope {
        match (sub, info.status_subresource) {
            (Sub::Status, _) => Scope::Status,
            (Sub::Main, true) => Scope::Main,
            (Sub::Main, false) => Scope::All,
        }
    }

    pub fn object_exists(&self, key: &ObjKey) -> bool {
        self.objects.contains_key(key)
    }

    pub fn raw(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn field_value<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
        fields::value_at(obj, path)
    }
}
