//! Table rows of built-in types, as kube-apiserver prints them (`pkg/printers/internalversion`,
//! always with `Wide`, as its table convertor does): what `kubectl get secrets|pods|events|...`
//! shows. The column definitions are kube-apiserver v1.34's own (`builtin_columns.json`, captured
//! from its Table answers); the cells follow its printers. Types without a printer here get Name and
//! Age (README: "The embedded API server: known limits").

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::events;
use super::resource::ResourceInfo;
use super::table::human_duration;

fn columns_data() -> &'static Map<String, Value> {
    static DATA: OnceLock<Map<String, Value>> = OnceLock::new();
    DATA.get_or_init(|| {
        serde_json::from_str(include_str!("builtin_columns.json")).unwrap_or_default()
    })
}

fn key(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.clone()
    } else {
        format!("{}/{}", info.group, info.plural)
    }
}

/// kube-apiserver's column definitions of a built-in type, when a printer exists for it.
pub fn column_definitions(info: &ResourceInfo) -> Option<Value> {
    if info.custom {
        return None;
    }
    columns_data().get(&key(info)).cloned()
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn len_of(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn items<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `translateTimestampSince`: a human age, or `<unknown>` for no time.
fn age(ts: &str, now: jiff::Timestamp) -> Value {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => json!(human_duration(now.duration_since(t))),
        Err(_) => json!("<unknown>"),
    }
}

fn or_none(v: &str) -> Value {
    json!(if v.is_empty() { "<none>" } else { v })
}

/// The cells of one object (after Name, which the printers put first too), or None when the type
/// has no printer here.
pub fn cells(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Option<Vec<Value>> {
    if info.custom {
        return None;
    }
    let name = json!(s(obj, "/metadata/name"));
    let created = age(s(obj, "/metadata/creationTimestamp"), now);
    let created_at = |obj: &Value| -> Value {
        match s(obj, "/metadata/creationTimestamp").parse::<jiff::Timestamp>() {
            Ok(t) => json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            Err(_) => json!("0001-01-01T00:00:00Z"),
        }
    };
    Some(match key(info).as_str() {
        "namespaces" => vec![name, json!(s(obj, "/status/phase")), created],
        "configmaps" => vec![
            name,
            json!(len_of(obj, "/data") + len_of(obj, "/binaryData")),
            created,
        ],
        "secrets" => vec![
            name,
            json!(s(obj, "/type")),
            json!(len_of(obj, "/data")),
            created,
        ],
        "serviceaccounts" => vec![name, json!(len_of(obj, "/secrets")), created],
        "pods" => pod(obj, name, created),
        "events" | "events.k8s.io/events" => {
            let core = if info.group.is_empty() {
                obj.clone()
            } else {
                events::to_core(obj)
            };
            event(&core, now)
        }
        "apps/deployments" => deployment(obj, name, created),
        "coordination.k8s.io/leases" => {
            let holder = obj.pointer("/spec/holderIdentity").and_then(Value::as_str);
            vec![name, json!(holder.unwrap_or("<none>")), created]
        }
        "rbac.authorization.k8s.io/roles"
        | "rbac.authorization.k8s.io/clusterroles"
        | "apiextensions.k8s.io/customresourcedefinitions" => vec![name, created_at(obj)],
        "rbac.authorization.k8s.io/rolebindings"
        | "rbac.authorization.k8s.io/clusterrolebindings" => binding(obj, name, created),
        _ => return None,
    })
}

fn pod(obj: &Value, name: Value, created: Value) -> Vec<Value> {
    let containers = items(obj, "/spec/containers").len();
    let mut restarts: i64 = 0;
    let mut ready = 0;
    let mut reason = s(obj, "/status/phase").to_string();
    if !s(obj, "/status/reason").is_empty() {
        reason = s(obj, "/status/reason").to_string();
    }
    let mut initializing = false;
    let inits = items(obj, "/status/initContainerStatuses");
    for (i, c) in inits.iter().enumerate() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let terminated = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if terminated.is_object() && terminated["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if terminated.is_object() {
            reason = match terminated["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match terminated["signal"].as_i64().filter(|s| *s != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{}", terminated["exitCode"]),
                },
            };
        } else if let Some(r) = waiting["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", items(obj, "/spec/initContainers").len());
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in items(obj, "/status/containerStatuses").iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if state["terminated"].is_object() {
                let t = &state["terminated"];
                reason = match t["reason"].as_str().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None => match t["signal"].as_i64().filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", t["exitCode"]),
                    },
                };
            } else if state["running"].is_object() && c["ready"].as_bool() == Some(true) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(obj, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let gates = items(obj, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        json!("<none>")
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                items(obj, "/status/conditions").iter().any(|c| {
                    c["type"] == g["conditionType"] && c["status"].as_str() == Some("True")
                })
            })
            .count();
        json!(format!("{met}/{}", gates.len()))
    };
    vec![
        name,
        json!(format!("{ready}/{containers}")),
        json!(reason),
        json!(restarts.to_string()),
        created,
        or_none(s(obj, "/status/podIP")),
        or_none(s(obj, "/spec/nodeName")),
        or_none(s(obj, "/status/nominatedNodeName")),
        gates_cell,
    ]
}

fn event(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first = {
        let t = s(obj, "/firstTimestamp");
        if t.is_empty() {
            s(obj, "/eventTime")
        } else {
            t
        }
    };
    let first_seen = age(first, now);
    let mut last_seen = if s(obj, "/lastTimestamp").is_empty() {
        first_seen.clone()
    } else {
        age(s(obj, "/lastTimestamp"), now)
    };
    let mut count = obj["count"].as_i64().unwrap_or(0);
    if obj["series"].is_object() {
        last_seen = age(s(obj, "/series/lastObservedTime"), now);
        count = obj["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(obj, "/involvedObject/kind").to_lowercase();
    let target = match s(obj, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(s(obj, "/source/component"), s(obj, "/reportingComponent"));
    let instance = first_non_empty(s(obj, "/source/host"), s(obj, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen,
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(obj, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(obj, "/message").trim()),
        first_seen,
        json!(count),
        json!(s(obj, "/metadata/name")),
    ]
}

/// Comma-joined container names and images, and the label selector, of a workload's template.
fn containers_images_selector(obj: &Value) -> [Value; 3] {
    let cs = items(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c["image"].as_str().unwrap_or(""))
        .collect();
    let selector = label_selector(obj.pointer("/spec/selector").unwrap_or(&Value::Null));
    [
        json!(names.join(",")),
        json!(images.join(",")),
        json!(selector),
    ]
}

/// `metav1.FormatLabelSelector`.
fn label_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        let mut kv: Vec<(&String, &Value)> = m.iter().collect();
        kv.sort_by_key(|(k, _)| k.as_str());
        parts.extend(
            kv.into_iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn deployment(obj: &Value, name: Value, created: Value) -> Vec<Value> {
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let n = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let [containers, images, selector] = containers_images_selector(obj);
    vec![
        name,
        json!(format!("{}/{desired}", n("/status/readyReplicas"))),
        json!(n("/status/updatedReplicas")),
        json!(n("/status/availableReplicas")),
        created,
        containers,
        images,
        selector,
    ]
}

fn binding(obj: &Value, name: Value, created: Value) -> Vec<Value> {
    let role = format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"));
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(obj, "/subjects") {
        let n = subject["name"].as_str().unwrap_or("");
        match subject["kind"].as_str().unwrap_or("") {
            "User" => users.push(n.to_string()),
            "Group" => groups.push(n.to_string()),
            "ServiceAccount" => sas.push(format!(
                "{}/{n}",
                subject["namespace"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
    vec![
        name,
        json!(role),
        created,
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::registry::builtins;

    fn info(plural: &str) -> ResourceInfo {
        builtins()
            .into_iter()
            .find(|r| r.plural == plural && r.group.is_empty())
            .expect("built-in")
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:10:00Z".parse().expect("time")
    }

    #[test]
    fn secrets_show_type_and_the_number_of_keys() {
        let secret = json!({"metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells(&info("secrets"), &secret, now()).expect("printer"),
            vec![
                json!("s"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("10m")
            ]
        );
        let cols = column_definitions(&info("secrets")).expect("columns");
        let names: Vec<&str> = cols
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "Type", "Data", "Age"]);
    }

    #[test]
    fn pods_without_a_kubelet_are_pending_and_a_deleted_one_terminating() {
        let mut pod = json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:09:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells(&info("pods"), &pod, now()).expect("printer"),
            vec![
                json!("p"),
                json!("0/2"),
                json!("Pending"),
                json!("0"),
                json!("60s"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        pod["status"] = json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        let c = cells(&info("pods"), &pod, now()).expect("printer");
        assert_eq!(
            (&c[1], &c[2], &c[3]),
            (&json!("1/2"), &json!("CrashLoopBackOff"), &json!("3"))
        );
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:09:30Z");
        assert_eq!(
            cells(&info("pods"), &pod, now()).expect("printer")[2],
            "Terminating"
        );
    }

    #[test]
    fn events_name_their_object_and_source() {
        let ev = json!({"metadata": {"name": "e1"}, "type": "Warning", "reason": "Failed",
            "involvedObject": {"kind": "MaskinportenClient", "name": "x"}, "message": " bad \n",
            "source": {"component": "portvakt"}, "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:05:00Z"});
        assert_eq!(
            cells(&info("events"), &ev, now()).expect("printer"),
            vec![
                json!("5m"),
                json!("Warning"),
                json!("Failed"),
                json!("maskinportenclient/x"),
                json!(""),
                json!("portvakt"),
                json!("bad"),
                json!("10m"),
                json!(3),
                json!("e1")
            ]
        );
    }

    #[test]
    fn an_empty_object_prints_like_a_bookmark_row() {
        assert_eq!(
            cells(&info("secrets"), &json!({"metadata": {}}), now()).expect("printer"),
            vec![json!(""), json!(""), json!(0), json!("<unknown>")]
        );
        assert_eq!(
            label_selector(&json!({"matchLabels": {"b": "2", "a": "1"}})),
            "a=1,b=2"
        );
    }
}
