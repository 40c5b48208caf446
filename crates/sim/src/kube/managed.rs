//! `metadata.managedFields`: which manager owns which field paths.

use serde_json::{Map, Value, json};

use super::fields::{self, FieldSet, Scope};
use super::resource::ResourceInfo;

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub time: String,
    /// "" or "status".
    pub subresource: String,
    pub set: FieldSet,
}

/// How a write changes field ownership.
#[derive(Clone, Debug)]
pub enum Managed {
    /// A non-apply write by this manager: it takes the fields it changed.
    Update,
    /// Server-side apply computed the entries already.
    Apply(Vec<Entry>),
    /// Leave managedFields as they are (direct store writes).
    Keep,
}

pub fn parse(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Entry {
                        manager: s("manager"),
                        operation: s("operation"),
                        api_version: s("apiVersion"),
                        time: s("time"),
                        subresource: s("subresource"),
                        set: e
                            .get("fieldsV1")
                            .map(fields::from_fields_v1)
                            .unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn render(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.set.is_empty())
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                m.insert("time".into(), json!(e.time));
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), fields::to_fields_v1(&e.set));
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Whether a path names a list item (`k:`/`v:`), whose ownership is about presence.
pub fn is_item(path: &[String]) -> bool {
    path.last()
        .is_some_and(|e| e.starts_with("k:") || e.starts_with("v:"))
}

/// Maps and structs that a write brings into being: their own path (`.` in FieldsV1) goes to the
/// writer, as kube-apiserver's field manager records them. Compared with the old object, or for a
/// create with the type's zero value, which for built-in types already has `metadata`, `spec` and
/// `status` (and a workload's pod template); `metadata` itself is never owned.
fn new_nodes(info: &ResourceInfo, old: Option<&Value>, new: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let mut path = Vec::new();
    collect_nodes(info, old, new, &mut path, &mut out);
    out
}

fn in_zero_value(info: &ResourceInfo, path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    if p == ["f:metadata"] {
        return true;
    }
    if info.custom {
        return false;
    }
    matches!(
        p.as_slice(),
        ["f:spec"]
            | ["f:status"]
            | ["f:source"]
            | ["f:spec", "f:containers"]
            | ["f:spec", "f:template", "f:spec", "f:containers"]
            | ["f:spec", "f:template"]
            | ["f:spec", "f:template", "f:metadata"]
            | ["f:spec", "f:template", "f:spec"]
            | ["f:spec", "f:jobTemplate"]
            | ["f:spec", "f:jobTemplate", "f:spec"]
            | ["f:spec", "f:jobTemplate", "f:spec", "f:template"]
            | ["f:spec", "f:jobTemplate", "f:spec", "f:template", "f:spec"]
    )
}

fn collect_nodes(
    info: &ResourceInfo,
    old: Option<&Value>,
    v: &Value,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) {
    let existed = |path: &[String]| match old {
        Some(o) => fields::value_at(o, path).is_some(),
        None => in_zero_value(info, path),
    };
    // A granular list (a set, or a map keyed by fields) is owned as a node too.
    if let Value::Array(items) = v {
        if !items.is_empty()
            && fields::list_kind(info, path) != fields::ListKind::Atomic
            && !existed(path)
        {
            out.insert(path.clone());
        }
        return;
    }
    let Value::Object(m) = v else { return };
    if m.is_empty() || fields::atomic_struct(info, path) {
        return;
    }
    if !path.is_empty() && !existed(path) {
        out.insert(path.clone());
    }
    for (k, child) in m {
        // List items are tracked by the field set itself.
        if child.is_object() || child.is_array() {
            path.push(fields::field(k));
            // Of metadata, only these are nodes a writer owns.
            let tracked = !(path.len() == 2
                && path[0] == "f:metadata"
                && !matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                ));
            if tracked {
                collect_nodes(info, old, child, path, out);
            }
            path.pop();
        }
    }
}

/// Ownership after a non-apply write: the manager takes what it changed; fields
/// that disappeared are dropped from everyone.
#[allow(clippy::too_many_arguments)]
pub fn after_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: &str,
    now: &str,
) -> Vec<Entry> {
    let mut entries = old.map(parse).unwrap_or_default();
    let new_set = fields::field_set(info, new, Scope::All);
    let old_set = old
        .map(|o| fields::field_set(info, o, Scope::All))
        .unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| {
            let before = old.and_then(|o| fields::value_at(o, p));
            if is_item(p) {
                before.is_none()
            } else {
                before != fields::value_at(new, p)
            }
        })
        .cloned()
        .collect();
    let mut changed = changed;
    changed.extend(new_nodes(info, old, new));
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in entries.iter_mut() {
        // What is gone from the object is no one's any more.
        e.set.retain(|p| {
            !changed.contains(p) && !removed.contains(p) && fields::value_at(new, p).is_some()
        });
    }
    if !changed.is_empty() {
        let idx = entries.iter().position(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        });
        let idx = match idx {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    manager: manager.to_string(),
                    operation: "Update".to_string(),
                    api_version: info.api_version(),
                    time: now.to_string(),
                    subresource: subresource.to_string(),
                    set: FieldSet::new(),
                });
                entries.len() - 1
            }
        };
        let e = &mut entries[idx];
        let before = e.set.len();
        e.set.extend(changed);
        if e.set.len() != before {
            e.time = now.to_string();
            e.api_version = info.api_version();
        }
    }
    entries.retain(|e| !e.set.is_empty());
    entries
}
