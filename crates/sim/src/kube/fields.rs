//! Field paths and sets as server-side apply tracks them (`FieldsV1`), and the
//! list semantics (atomic, set, map keyed by fields) they depend on.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::resource::ResourceInfo;

/// How a list is merged and owned.
#[derive(Clone, Debug, PartialEq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// One path element, encoded as in FieldsV1: `f:name`, `k:{"type":"Ready"}`, `v:"x"`.
pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Lists with merge keys on built-in types (strategic merge patch and apply).
fn builtin_list(field: &str) -> Option<ListKind> {
    let keys = |k: &[&str]| Some(ListKind::Map(k.iter().map(|s| s.to_string()).collect()));
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "ports" => keys(&["containerPort"]),
        "ownerReferences" => keys(&["uid"]),
        "conditions" => keys(&["type"]),
        "finalizers" => Some(ListKind::Set),
        _ => None,
    }
}

fn field_name(e: &str) -> Option<&str> {
    e.strip_prefix("f:")
}

/// The schema node at a path (properties for fields, items for list elements).
fn schema_at<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for e in path {
        node = match field_name(e) {
            Some(f) => node
                .pointer(&format!(
                    "/properties/{}",
                    f.replace('~', "~0").replace('/', "~1")
                ))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            None => node.get("items")?,
        };
    }
    Some(node)
}

/// The list semantics of the list at `path` (a path of encoded elements).
pub fn list_kind(info: &ResourceInfo, path: &[String]) -> ListKind {
    let last = path.last().and_then(|e| field_name(e)).unwrap_or("");
    if path.first().map(String::as_str) == Some("f:metadata") {
        return match last {
            "ownerReferences" => ListKind::Map(vec!["uid".to_string()]),
            "finalizers" => ListKind::Set,
            _ => ListKind::Atomic,
        };
    }
    if let Some(schema) = &info.schema {
        if let Some(node) = schema_at(schema, path) {
            match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys = node
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        return ListKind::Map(keys);
                    }
                }
                Some("set") => return ListKind::Set,
                Some(_) => return ListKind::Atomic,
                None => {}
            }
        }
        if last == "conditions" && path.first().map(String::as_str) == Some("f:status") {
            return ListKind::Map(vec!["type".to_string()]);
        }
        return ListKind::Atomic;
    }
    builtin_list(last).unwrap_or(ListKind::Atomic)
}

pub fn field(name: &str) -> String {
    format!("f:{name}")
}

/// The `k:{...}` element for a list item, or None if a key field is missing.
pub fn key_of(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

fn value_elem(v: &Value) -> String {
    format!("v:{v}")
}

fn item_matches(item: &Value, elem: &str) -> bool {
    if let Some(k) = elem.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        keys.iter().all(|(k, v)| item.get(k) == Some(v))
    } else if let Some(v) = elem.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| *item == v)
    } else {
        false
    }
}

/// Top-level and metadata fields apply never tracks.
fn ignored(path: &[String]) -> bool {
    match path {
        [a] => a == "f:apiVersion" || a == "f:kind",
        [m, f] if m == "f:metadata" => matches!(
            f.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:managedFields"
                | "f:selfLink"
                | "f:deletionTimestamp"
                | "f:deletionGracePeriodSeconds"
        ),
        _ => false,
    }
}

/// Which part of the object a field set covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scope {
    /// Everything (no status subresource).
    All,
    /// Everything but `status`.
    Main,
    /// Only `status`.
    Status,
}

fn in_scope(scope: Scope, path: &[String]) -> bool {
    let status = path.first().map(String::as_str) == Some("f:status");
    match scope {
        Scope::All => true,
        Scope::Main => !status,
        Scope::Status => status,
    }
}

/// The leaf paths set in `obj`.
pub fn field_set(info: &ResourceInfo, obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    walk(info, obj, &mut Vec::new(), &mut out);
    out.retain(|p| !ignored(p) && in_scope(scope, p) && !p.is_empty());
    // A parent whose children are ignored (e.g. metadata with only a name) adds nothing.
    out
}

/// Structs of built-in types owned as a whole (`+structType=atomic`): object references.
pub fn atomic_struct(info: &ResourceInfo, path: &[String]) -> bool {
    !info.custom
        && path.len() == 1
        && matches!(
            path[0].as_str(),
            "f:involvedObject" | "f:regarding" | "f:related"
        )
}

fn walk(info: &ResourceInfo, v: &Value, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(_) if atomic_struct(info, path) => {
            out.insert(path.clone());
        }
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(field(k));
                if !ignored(path) {
                    walk(info, child, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(info, path) {
            ListKind::Atomic => {
                out.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(value_elem(item));
                    out.insert(p);
                }
            }
            ListKind::Map(keys) => {
                for item in items {
                    match key_of(item, &keys) {
                        Some(k) => {
                            path.push(k);
                            out.insert(path.clone());
                            walk(info, item, path, out);
                            path.pop();
                        }
                        None => {
                            out.insert(path.clone());
                        }
                    }
                }
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = match field_name(e) {
            Some(f) => cur.as_object()?.get(f)?,
            None => cur.as_array()?.iter().find(|i| item_matches(i, e))?,
        };
    }
    Some(cur)
}

/// Removes the value at a path; prunes maps left empty below the top level.
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(obj, parent_path) else {
        return;
    };
    match (field_name(last), parent) {
        (Some(f), Value::Object(m)) => {
            m.shift_remove(f);
        }
        (None, Value::Array(items)) => items.retain(|i| !item_matches(i, last)),
        _ => return,
    }
    let empty = match value_at(obj, parent_path) {
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    };
    if empty && parent_path.len() >= 2 && parent_path.last().is_some_and(|e| e.starts_with("f:")) {
        remove_at(obj, parent_path);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for e in path {
        cur = match field_name(e) {
            Some(f) => cur.as_object_mut()?.get_mut(f)?,
            None => cur
                .as_array_mut()?
                .iter_mut()
                .find(|i| item_matches(i, e))?,
        };
    }
    Some(cur)
}

/// Merges an apply configuration into the live object.
pub fn apply_merge(info: &ResourceInfo, live: &mut Value, config: &Value, path: &mut Path) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                path.push(field(k));
                if cv.is_null() {
                    l.shift_remove(k);
                } else if let Some(lv) = l.get_mut(k) {
                    apply_merge(info, lv, cv, path);
                } else {
                    l.insert(k.clone(), cv.clone());
                }
                path.pop();
            }
        }
        (live @ Value::Array(_), Value::Array(c)) => match list_kind(info, path) {
            ListKind::Atomic => *live = config.clone(),
            ListKind::Set => {
                if let Value::Array(l) = live {
                    for v in c {
                        if !l.contains(v) {
                            l.push(v.clone());
                        }
                    }
                }
            }
            ListKind::Map(keys) => {
                if let Value::Array(l) = live {
                    for item in c {
                        let Some(k) = key_of(item, &keys) else {
                            l.push(item.clone());
                            continue;
                        };
                        match l.iter_mut().find(|i| item_matches(i, &k)) {
                            Some(existing) => {
                                path.push(k);
                                apply_merge(info, existing, item, path);
                                path.pop();
                            }
                            None => l.push(item.clone()),
                        }
                    }
                }
            }
        },
        (live, c) => *live = c.clone(),
    }
}

/// FieldsV1 JSON (`{"f:spec":{"f:x":{}}}`) from a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    // Paths that are both a member and a parent get a "." entry.
    for p in set {
        let mut node = &mut root;
        for e in p {
            let entry = node
                .entry(e.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = entry else { break };
            node = m;
        }
    }
    for p in set {
        let is_parent = set.iter().any(|q| q.len() > p.len() && q.starts_with(p));
        if is_parent && let Some(node) = node_at(&mut root, p) {
            node.insert(".".to_string(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

fn node_at<'a>(
    root: &'a mut Map<String, Value>,
    p: &[String],
) -> Option<&'a mut Map<String, Value>> {
    let mut node = root;
    for e in p {
        node = match node.get_mut(e) {
            Some(Value::Object(m)) => m,
            _ => return None,
        };
    }
    Some(node)
}

/// A set from FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn rec(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            rec(child, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out.retain(|p| !p.is_empty());
    out
}

/// Human form of a path for conflict messages: `.spec.x`, `.status.conditions[type="Ready"]`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for e in path {
        if let Some(f) = field_name(e) {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    s.push_str(&format!("[{}]", parts.join(",")));
                }
                _ => s.push_str(&format!("[{k}]")),
            }
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> ResourceInfo {
        super::super::registry::builtins()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap()
    }

    #[test]
    fn fields_v1_round_trip() {
        let info = cm();
        let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"b"},
            "ownerReferences":[{"uid":"u1","name":"o"}]},"data":{"k":"v"}});
        let set = field_set(&info, &obj, Scope::All);
        let v1 = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&v1), set);
        assert!(
            v1.pointer("/f:metadata/f:ownerReferences/k:{\"uid\":\"u1\"}/.")
                .is_some()
        );
        assert!(set.contains(&vec!["f:data".to_string(), "f:k".to_string()]));
    }
}
