//! Merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch reduced
//! to merge patch plus merge keys for the lists built-in types use it on.

use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::fields::{self, ListKind, Path};
use super::resource::ResourceInfo;

/// The patch types, by request Content-Type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

pub fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// RFC 7386.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902: malformed → 400, failed op (incl. `test`) → 422.
pub fn json_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    for (i, op) in ops.0.iter().enumerate() {
        // Like the API server's JSON patch library: testing a missing path for null passes.
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && target.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(target, std::slice::from_ref(op)).map_err(|e| match e.kind {
            json_patch::PatchErrorKind::TestFailed => ApiError::unprocessable(format!(
                "the server rejected our request due to an error in our request: testing value {} failed: test failed (operation {i})",
                e.path
            )),
            _ => ApiError::unprocessable(format!(
                "the server rejected our request due to an error in our request: {e} (operation {i})"
            )),
        })?;
    }
    Ok(())
}

/// Strategic merge: merge patch, but lists with merge keys merge item by item,
/// `$patch: delete` removes an item, `$patch: replace` replaces, other `$` directives are dropped.
pub fn strategic(info: &ResourceInfo, target: &mut Value, patch: &Value) {
    smp(info, target, patch, &mut Vec::new());
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$') && !k.starts_with("$setElementOrder"))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn smp(info: &ResourceInfo, target: &mut Value, patch: &Value, path: &mut Path) {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(tm) = target else { return };
    for (k, pv) in pm {
        if k.starts_with('$') {
            continue;
        }
        path.push(fields::field(k));
        match pv {
            Value::Null => {
                tm.shift_remove(k);
            }
            Value::Object(_) => {
                let entry = tm.entry(k.clone()).or_insert(Value::Null);
                smp(info, entry, pv, path);
            }
            Value::Array(items) => {
                let kind = fields::list_kind(info, path);
                match (kind, tm.get_mut(k)) {
                    (ListKind::Map(keys), Some(Value::Array(existing))) => {
                        for item in items {
                            let delete =
                                item.get("$patch").and_then(Value::as_str) == Some("delete");
                            let Some(key) = fields::key_of(item, &keys) else {
                                existing.push(strip_directives(item));
                                continue;
                            };
                            let pos = existing.iter().position(|e| {
                                fields::key_of(e, &keys).as_deref() == Some(key.as_str())
                            });
                            match (pos, delete) {
                                (Some(i), true) => {
                                    existing.remove(i);
                                }
                                (Some(i), false) => {
                                    path.push(key);
                                    smp(info, &mut existing[i], item, path);
                                    path.pop();
                                }
                                (None, true) => {}
                                (None, false) => existing.push(strip_directives(item)),
                            }
                        }
                    }
                    (ListKind::Set, Some(Value::Array(existing))) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let items: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .map(strip_directives)
                            .collect();
                        tm.insert(k.clone(), Value::Array(items));
                    }
                }
            }
            other => {
                tm.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let info = super::super::registry::builtins()
            .into_iter()
            .find(|r| r.plural == "deployments")
            .unwrap();
        let mut t = json!({"spec":{"template":{"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"1"}]}}}});
        let p = json!({"spec":{"template":{"spec":{"containers":[{"name":"b","image":"2"},{"name":"a","$patch":"delete"}]}}}});
        strategic(&info, &mut t, &p);
        assert_eq!(
            t,
            json!({"spec":{"template":{"spec":{"containers":[{"name":"b","image":"2"}]}}}})
        );
    }

    #[test]
    fn json_patch_test_failure_is_422() {
        let mut t = json!({"metadata":{}});
        let err = json_patch(
            &mut t,
            br#"[{"op":"test","path":"/metadata/finalizers","value":["x"]}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let err = json_patch(&mut t, b"[{\"op\":\"nope\"}]").unwrap_err();
        assert_eq!(err.code, 400);
    }
}
