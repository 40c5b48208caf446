//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`. Built-in types get
//! kube-apiserver's columns and cells ([`super::printers`]); custom resources follow
//! apiextensions-apiserver's table convertor: Name, then the CRD's additionalPrinterColumns (or Age). Cells of `date`
//! columns are human-readable ages ("5m", "3d4h") computed by the server, as the real one does; string
//! columns print the JSONPath result (maps and lists as compact JSON); integer/number/boolean cells are
//! typed; missing values are null.

use serde_json::{Value, json};

use super::resource::{PrinterColumn, ResourceInfo};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The columns of a resource: its printer columns, or Age when it has none.
fn columns(info: &ResourceInfo) -> Vec<PrinterColumn> {
    if info.printer_columns.is_empty() {
        vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            description: Some(AGE_DESCRIPTION.into()),
            format: None,
            priority: 0,
        }]
    } else {
        info.printer_columns.clone()
    }
}

/// A `meta.k8s.io/v1` Table of `objects`; each row's `object` is the object's PartialObjectMetadata
/// (what `includeObject=Metadata`, the default, returns).
pub fn to_table(
    info: &ResourceInfo,
    objects: &[Value],
    list_resource_version: &str,
    now: jiff::Timestamp,
) -> Value {
    if let Some(defs) = super::printers::column_definitions(info) {
        let rows: Vec<Value> = objects
            .iter()
            .map(|obj| {
                let cells = super::printers::cells(info, obj, now).unwrap_or_default();
                json!({"cells": cells, "object": partial_metadata(obj)})
            })
            .collect();
        return json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": list_resource_version},
            "columnDefinitions": defs,
            "rows": rows
        });
    }
    let cols = columns(info);
    let mut defs = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": NAME_DESCRIPTION,
        "priority": 0
    })];
    for c in &cols {
        let description = c.description.clone().unwrap_or_else(|| {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        });
        defs.push(json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format.clone().unwrap_or_default(),
            "description": description,
            "priority": c.priority
        }));
    }
    let paths: Vec<Option<Vec<Step>>> = cols.iter().map(|c| parse(&c.json_path)).collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )];
            for (c, steps) in cols.iter().zip(&paths) {
                let value = steps.as_ref().and_then(|s| eval(s, obj).into_iter().next());
                cells.push(cell(&c.type_, value, now));
            }
            json!({"cells": cells, "object": partial_metadata(obj)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list_resource_version},
        "columnDefinitions": defs,
        "rows": rows
    })
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))
    })
}

/// `cellForJSONValue` plus the string printing of the JSONPath printer.
fn cell(type_: &str, value: Option<&Value>, now: jiff::Timestamp) -> Value {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match type_ {
        "string" => match v {
            Value::String(s) => json!(s),
            Value::Number(n) => json!(super::schema::go_number(n)),
            Value::Bool(b) => json!(b.to_string()),
            other => json!(other.to_string()),
        },
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| Value::from(f.trunc() as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => json!(b),
            _ => Value::Null,
        },
        "date" => match v {
            Value::String(s) => json!(match s.parse::<jiff::Timestamp>() {
                Ok(t) => human_duration(now.duration_since(t)),
                Err(_) => "<invalid>".to_string(),
            }),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------------
// A JSONPath subset: .a.b, ['a.b'], [0], [-1], [*], .*, [?(@.x.y=="v")], [?(@.x)], ..name
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Recursive(String),
    Filter {
        path: Vec<String>,
        op: Option<(String, Value)>,
    },
}

/// Parses a CRD column path (`.status.conditions[?(@.type=="Ready")].status`, optionally wrapped in
/// `{}`); `None` when it is outside the subset.
fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                if chars.get(i + 1) == Some(&'.') {
                    let (name, next) = ident(&chars, i + 2);
                    if name.is_empty() {
                        return None;
                    }
                    steps.push(Step::Recursive(name));
                    i = next;
                    continue;
                }
                if chars.get(i + 1) == Some(&'*') {
                    steps.push(Step::Wildcard);
                    i += 2;
                    continue;
                }
                let (name, next) = ident(&chars, i + 1);
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
                i = next;
            }
            '[' => {
                let end = closing_bracket(&chars, i)?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(bracket(inner.trim())?);
                i = end + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // a leading name without a dot
                let (name, next) = ident(&chars, i);
                if name.is_empty() {
                    return None;
                }
                steps.push(Step::Field(name));
                i = next;
            }
        }
    }
    Some(steps)
}

/// A field name up to the next unescaped `.` or `[`; `\.` escapes a dot.
fn ident(chars: &[char], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                s.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    (s, i)
}

fn closing_bracket(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(start) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return Some(inner.to_string());
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Some(Step::Index(i));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((lhs, rhs)) = expr.split_once(op) {
            let path = at_path(lhs.trim())?;
            let rhs = rhs.trim();
            let lit = match unquote(rhs) {
                Some(s) => Value::String(s),
                None => serde_json::from_str(rhs).ok()?,
            };
            return Some(Step::Filter {
                path,
                op: Some((op.to_string(), lit)),
            });
        }
    }
    Some(Step::Filter {
        path: at_path(expr)?,
        op: None,
    })
}

/// `@.a.b` → ["a", "b"].
fn at_path(s: &str) -> Option<Vec<String>> {
    let rest = s.strip_prefix('@')?;
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '.' {
            return None;
        }
        let (name, next) = ident(&chars, i + 1);
        out.push(name);
        i = next;
    }
    Some(out)
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.get(name) {
                        next.push(x);
                    }
                }
                Step::Index(i) => {
                    if let Value::Array(a) = v {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Recursive(name) => recursive(v, name, &mut next, 0),
                Step::Filter { path, op } => {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        Value::Object(m) => m.values().collect(),
                        _ => vec![],
                    };
                    for item in items {
                        let mut x = Some(item);
                        for p in path {
                            x = x.and_then(|x| x.get(p));
                        }
                        let keep = match (x, op) {
                            (None, _) => false,
                            (Some(_), None) => true,
                            (Some(x), Some((op, lit))) => compare(x, op, lit),
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn recursive<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x);
            }
            for x in m.values() {
                recursive(x, name, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                recursive(x, name, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn compare(x: &Value, op: &str, lit: &Value) -> bool {
    let ord = match (x, lit) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => {
            return match op {
                "==" => a == b,
                "!=" => a != b,
                _ => false,
            };
        }
    };
    let Some(ord) = ord else { return false };
    use std::cmp::Ordering::*;
    match op {
        "==" => ord == Equal,
        "!=" => ord != Equal,
        "<" => ord == Less,
        ">" => ord == Greater,
        "<=" => ord != Greater,
        ">=" => ord != Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::discovery::tests::info;

    fn now() -> jiff::Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("timestamp")
    }

    fn col(name: &str, ty: &str, path: &str, priority: i32) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            type_: ty.into(),
            json_path: path.into(),
            description: None,
            format: None,
            priority,
        }
    }

    #[test]
    fn custom_columns_and_cells() {
        let mut r = info(
            "nais.io",
            "v1",
            "MaskinportenClient",
            "maskinportenclients",
            true,
        );
        r.printer_columns = vec![
            col("Secret Ref", "string", ".spec.secretName", 0),
            col("ClientID", "string", ".status.clientID", 0),
            col("Age", "date", ".metadata.creationTimestamp", 0),
            col("Synchronized", "date", ".status.synchronizationTime", 0),
            col(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                0,
            ),
            col("Gen", "integer", ".metadata.generation", 1),
            col("Scopes", "string", ".spec.scopes", 2),
        ];
        let obj = json!({
            "apiVersion": "nais.io/v1", "kind": "MaskinportenClient",
            "metadata": {"name": "a", "namespace": "ns", "creationTimestamp": "2025-06-01T11:55:00Z", "generation": 2, "resourceVersion": "7"},
            "spec": {"secretName": "s", "scopes": {"consumes": [{"name": "x"}]}},
            "status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        let t = to_table(&r, &[obj], "42", now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("cols")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Secret Ref",
                "ClientID",
                "Age",
                "Synchronized",
                "Ready",
                "Gen",
                "Scopes"
            ]
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][6]["priority"], 1);
        assert_eq!(
            t["columnDefinitions"][1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.secretName"
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "a",
                "s",
                null,
                "5m",
                null,
                "True",
                2,
                "{\"consumes\":[{\"name\":\"x\"}]}"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ns");
    }

    #[test]
    fn builtins_without_a_printer_get_name_and_age() {
        let r = info("apps", "v1", "StatefulSet", "statefulsets", true);
        let t = to_table(
            &r,
            &[
                json!({"metadata": {"name": "x", "creationTimestamp": "2025-05-29T12:00:00Z"}}),
                json!({}),
            ],
            "1",
            now(),
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("cols")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["x", "3d"]));
        assert_eq!(t["rows"][1]["cells"], json!(["", null]));
        assert_eq!(to_table(&r, &[], "1", now())["rows"], json!([]));
    }

    #[test]
    fn human_durations() {
        let d = |s: i64| human_duration(jiff::SignedDuration::from_secs(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(0), "0s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(125), "2m5s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 60), "3h1m");
        assert_eq!(d(10 * 3600), "10h");
        assert_eq!(d(50 * 3600), "2d2h");
        assert_eq!(d(10 * 86400), "10d");
        assert_eq!(d(3 * 365 * 86400 + 86400), "3y1d");
        assert_eq!(d(9 * 365 * 86400), "9y");
    }

    #[test]
    fn jsonpath_subset() {
        let v = json!({"a": {"b.c": 1, "l": [1, 2, 3], "m": {"x": {"k": 5}}}, "items": [{"n": "p", "v": 1}, {"n": "q", "v": 2}]});
        let e = |p: &str| parse(p).map(|s| eval(&s, &v).into_iter().cloned().collect::<Vec<_>>());
        assert_eq!(e(".a.b\\.c"), Some(vec![json!(1)]));
        assert_eq!(e(".a['b.c']"), Some(vec![json!(1)]));
        assert_eq!(e("{.a.l[-1]}"), Some(vec![json!(3)]));
        assert_eq!(e(".a.l[*]"), Some(vec![json!(1), json!(2), json!(3)]));
        assert_eq!(e(".items[?(@.v>1)].n"), Some(vec![json!("q")]));
        assert_eq!(e(".items[?(@.n=='p')].v"), Some(vec![json!(1)]));
        assert_eq!(e(".items[?(@.v)].n"), Some(vec![json!("p"), json!("q")]));
        assert_eq!(e("..k"), Some(vec![json!(5)]));
        assert_eq!(e(".nope.x"), Some(vec![]));
        for bad in ["[", ".a[?(x)]", "[?(@.a==)]", "..", "]["] {
            let _ = e(bad);
        }
    }
}
