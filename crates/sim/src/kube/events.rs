//! Events are stored once, in `events.k8s.io/v1` form, and served as both that and
//! core `v1` (the conversion the real API server does).

use serde_json::{Map, Value, json};

fn mv(from: &mut Map<String, Value>, to: &mut Map<String, Value>, a: &str, b: &str) {
    if let Some(v) = from.shift_remove(a)
        && !v.is_null()
    {
        to.insert(b.to_string(), v);
    }
}

/// core v1 → events.k8s.io/v1 (storage form).
pub fn from_core(v: Value) -> Value {
    let Value::Object(mut src) = v else { return v };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    src.shift_remove("apiVersion");
    src.shift_remove("kind");
    mv(&mut src, &mut out, "metadata", "metadata");
    mv(&mut src, &mut out, "eventTime", "eventTime");
    mv(&mut src, &mut out, "series", "series");
    mv(
        &mut src,
        &mut out,
        "reportingComponent",
        "reportingController",
    );
    mv(&mut src, &mut out, "reportingInstance", "reportingInstance");
    mv(&mut src, &mut out, "action", "action");
    mv(&mut src, &mut out, "reason", "reason");
    mv(&mut src, &mut out, "involvedObject", "regarding");
    mv(&mut src, &mut out, "related", "related");
    mv(&mut src, &mut out, "message", "note");
    mv(&mut src, &mut out, "type", "type");
    mv(&mut src, &mut out, "source", "deprecatedSource");
    mv(
        &mut src,
        &mut out,
        "firstTimestamp",
        "deprecatedFirstTimestamp",
    );
    mv(
        &mut src,
        &mut out,
        "lastTimestamp",
        "deprecatedLastTimestamp",
    );
    mv(&mut src, &mut out, "count", "deprecatedCount");
    if !out.contains_key("reportingController")
        && let Some(c) = out
            .get("deprecatedSource")
            .and_then(|s| s.get("component"))
            .cloned()
    {
        out.insert("reportingController".into(), c);
    }
    for (k, v) in src {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// events.k8s.io/v1 (storage form) → core v1.
pub fn to_core(v: &Value) -> Value {
    let Value::Object(src) = v else {
        return v.clone();
    };
    let mut src = src.clone();
    let mut out = Map::new();
    src.shift_remove("apiVersion");
    src.shift_remove("kind");
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    mv(&mut src, &mut out, "metadata", "metadata");
    mv(&mut src, &mut out, "regarding", "involvedObject");
    mv(&mut src, &mut out, "reason", "reason");
    mv(&mut src, &mut out, "note", "message");
    mv(&mut src, &mut out, "deprecatedSource", "source");
    mv(
        &mut src,
        &mut out,
        "deprecatedFirstTimestamp",
        "firstTimestamp",
    );
    mv(
        &mut src,
        &mut out,
        "deprecatedLastTimestamp",
        "lastTimestamp",
    );
    mv(&mut src, &mut out, "deprecatedCount", "count");
    mv(&mut src, &mut out, "type", "type");
    mv(&mut src, &mut out, "eventTime", "eventTime");
    mv(&mut src, &mut out, "series", "series");
    mv(&mut src, &mut out, "action", "action");
    mv(&mut src, &mut out, "related", "related");
    mv(
        &mut src,
        &mut out,
        "reportingController",
        "reportingComponent",
    );
    mv(&mut src, &mut out, "reportingInstance", "reportingInstance");
    // kubectl describe shows source.component ("From"), count and the timestamps.
    if out
        .get("source")
        .is_none_or(|s| s.get("component").is_none())
        && let Some(c) = out.get("reportingComponent").cloned()
    {
        let mut source = json!({ "component": c });
        if let Some(h) = out.get("reportingInstance").cloned() {
            source["host"] = h;
        }
        out.insert("source".into(), source);
    }
    if !out.contains_key("count") {
        let n = out
            .get("series")
            .and_then(|s| s.get("count"))
            .cloned()
            .unwrap_or(json!(1));
        out.insert("count".into(), n);
    }
    let first = out.get("eventTime").cloned().filter(|t| !t.is_null());
    if !out.contains_key("firstTimestamp")
        && let Some(t) = first
            .clone()
            .or_else(|| v.pointer("/metadata/creationTimestamp").cloned())
    {
        out.insert("firstTimestamp".into(), trim_micro(&t));
    }
    if !out.contains_key("lastTimestamp") {
        let last = out
            .get("series")
            .and_then(|s| s.get("lastObservedTime"))
            .cloned()
            .or(first)
            .or_else(|| v.pointer("/metadata/creationTimestamp").cloned());
        if let Some(t) = last {
            out.insert("lastTimestamp".into(), trim_micro(&t));
        }
    }
    for (k, v) in src {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// MicroTime ("2024-01-01T00:00:00.123456Z") → Time ("2024-01-01T00:00:00Z").
fn trim_micro(t: &Value) -> Value {
    match t.as_str() {
        Some(s) => match s.split_once('.') {
            Some((head, _)) => json!(format!("{head}Z")),
            None => json!(s),
        },
        None => t.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let core = json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e"},
            "involvedObject":{"kind":"Pod","name":"p"},"message":"hi","reason":"R","type":"Normal",
            "source":{"component":"c"},"count":3});
        let stored = from_core(core.clone());
        assert_eq!(stored["regarding"]["name"], "p");
        assert_eq!(stored["note"], "hi");
        let back = to_core(&stored);
        assert_eq!(back["involvedObject"], core["involvedObject"]);
        assert_eq!(back["message"], "hi");
        assert_eq!(back["count"], 3);
    }
}
