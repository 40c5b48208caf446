//! Events are stored once, in `events.k8s.io/v1` form, and served as both that and
//! core `v1` (the conversion the real API server does: fields renamed, nothing synthesised).

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
    // Empty strings of the core form are not carried over (the events.k8s.io form omits them).
    for k in [
        "reportingController",
        "reportingInstance",
        "action",
        "note",
        "reason",
        "type",
    ] {
        if out.get(k).is_some_and(|v| v == "") {
            out.shift_remove(k);
        }
    }
    for (k, v) in src {
        out.insert(k, v);
    }
    out.entry("eventTime").or_insert(Value::Null);
    Value::Object(out)
}

/// The core form without the empty fields the conversion adds: what a client wrote, for field
/// ownership.
pub fn core_as_written(stored: &Value) -> Value {
    let mut v = to_core(stored);
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null() && *x != json!(""));
    }
    v
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
    // The core form always has these (Go fields without omitempty), as kube-apiserver answers.
    out.entry("eventTime").or_insert(Value::Null);
    out.entry("reportingComponent").or_insert(json!(""));
    out.entry("reportingInstance").or_insert(json!(""));
    for (k, v) in src {
        out.insert(k, v);
    }
    Value::Object(out)
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
