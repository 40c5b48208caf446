//! Rules of particular built-in types: Secrets, Namespaces, CustomResourceDefinitions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, StatusCause};
use super::registry;

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Folds `stringData` into `data`, checks base64, `type` and `immutable`.
pub fn secret(old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
    let name = name_of(new).to_string();
    let invalid = |field: &str, reason: &str, msg: &str| {
        ApiError::invalid_field("", "Secret", &name, field, reason, msg)
    };
    let Some(obj) = new.as_object_mut() else {
        return Ok(());
    };
    if let Some(sd) = obj.shift_remove("stringData") {
        let mut data = match obj.shift_remove("data") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Value::Object(sd) = sd {
            for (k, v) in sd {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                data.insert(k, json!(STANDARD.encode(s.as_bytes())));
            }
        }
        obj.insert("data".into(), Value::Object(data));
    }
    if let Some(Value::Object(data)) = obj.get("data") {
        for v in data.values() {
            // Decoding fails before validation: a 400, as the real server answers.
            let at = match v.as_str().map(|s| STANDARD.decode(s.as_bytes())) {
                Some(Ok(_)) => continue,
                Some(Err(base64::DecodeError::InvalidByte(at, _))) => at,
                Some(Err(base64::DecodeError::InvalidLastSymbol(at, _))) => at,
                Some(Err(_)) => v.as_str().map_or(0, |s| s.len() / 4 * 4),
                None => 0,
            };
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}"
            )));
        }
    }
    if !obj.get("type").is_some_and(Value::is_string) {
        obj.insert("type".into(), json!("Opaque"));
    }
    let mut causes: Vec<StatusCause> = Vec::new();
    if let Some(old) = old {
        let ty = obj.get("type").cloned().unwrap_or(Value::Null);
        let old_ty = old.get("type").cloned().unwrap_or(json!("Opaque"));
        if ty != old_ty {
            causes.push(StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {ty}: field is immutable"),
                field: "type".into(),
            });
        }
    }
    let has = |k: &str| {
        obj.get("data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    let required: &[&str] = match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required {
        if !has(k) {
            causes.push(StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: format!("data[{k}]"),
            });
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Secret", &name, causes));
    }
    if let Some(old) = old
        && old.get("immutable").and_then(Value::as_bool) == Some(true)
    {
        let empty = Value::Object(Map::new());
        let data = obj.get("data").unwrap_or(&empty);
        let old_data = old.get("data").unwrap_or(&empty);
        if data != old_data {
            return Err(invalid(
                "data",
                "FieldValueForbidden",
                "Forbidden: field is immutable when `immutable` is set",
            ));
        }
        if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
            return Err(invalid(
                "immutable",
                "FieldValueForbidden",
                "Forbidden: field is immutable when `immutable` is set",
            ));
        }
    }
    Ok(())
}

/// Namespaces carry their name as a label (a default, so the writer owns it).
pub fn namespace_defaults(new: &mut Value) {
    let name = name_of(new).to_string();
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
}

/// The namespace strategy: the `kubernetes` finalizer from creation on, and the phase, both the
/// server's (kept from the stored object on update).
pub fn namespace_strategy(old: Option<&Value>, new: &mut Value) {
    let phase = old
        .and_then(|o| o.pointer("/status/phase"))
        .cloned()
        .unwrap_or(json!("Active"));
    let finalizers = match old {
        Some(o) => o.pointer("/spec/finalizers").cloned(),
        None => Some(json!(["kubernetes"])),
    };
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    let spec = obj
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(spec) = spec.as_object_mut() {
        match finalizers {
            Some(f) => {
                spec.insert("finalizers".into(), f);
            }
            None => {
                spec.shift_remove("finalizers");
            }
        }
    }
    let status = obj
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(s) = status.as_object_mut() {
        s.insert("phase".into(), phase);
    }
}

/// The pod strategy on create: a new Pod is Pending, with its QoS class (no kubelet ever runs it).
pub fn pod_strategy(old: Option<&Value>, new: &mut Value) {
    if old.is_some() {
        return;
    }
    let qos = qos_class(new);
    if let Some(obj) = new.as_object_mut() {
        obj.insert(
            "status".into(),
            json!({"phase": "Pending", "qosClass": qos}),
        );
    }
}

/// `v1qos.GetPodQOS`, for cpu and memory.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        for r in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(r));
            let lim = limits.and_then(|m| m.get(r));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match lim {
                Some(l) if req.is_none_or(|q| q == l) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Checks a CRD and fills its status like the apiextensions controllers do.
pub fn crd(old: Option<&Value>, new: &mut Value, now: &str) -> ApiResult<()> {
    let name = name_of(new).to_string();
    let invalid = |field: &str, msg: &str| {
        ApiError::invalid_field(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            field,
            "FieldValueInvalid",
            msg,
        )
    };
    let Some(infos) = registry::from_crd(new) else {
        return Err(invalid(
            "spec",
            "Required value: spec.group, spec.names.kind, spec.names.plural and spec.versions are required",
        ));
    };
    let group = new
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = new
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let want = format!("{plural}.{group}");
    if name != want {
        return Err(invalid(
            "metadata.name",
            &format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if infos.is_empty() {
        return Err(invalid(
            "spec.versions",
            "Invalid value: must have at least one served version",
        ));
    }
    if let Some(old) = old {
        let old_group = old.pointer("/spec/group");
        if old_group != new.pointer("/spec/group") {
            return Err(invalid("spec.group", "Invalid value: field is immutable"));
        }
    }
    let Some(first) = infos.first() else {
        return Ok(());
    };
    let accepted = json!({
        "kind": first.kind,
        "listKind": first.list_kind,
        "plural": first.plural,
        "singular": first.singular,
        "shortNames": first.short_names,
        "categories": first.categories,
    });
    let stored: Vec<Value> = new
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let since = |ty: &str| {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
            })
            .and_then(|c| c.get("lastTransitionTime"))
            .cloned()
            .unwrap_or(json!(now))
    };
    let status = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": since("NamesAccepted"),
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": since("Established"),
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    });
    if let Some(obj) = new.as_object_mut() {
        obj.insert("status".into(), status);
    }
    Ok(())
}

/// RFC 1123 subdomain, as object names must be.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}
