//! Pruning, defaulting and OpenAPI v3 value validation of structural schemas, after
//! apiextensions-apiserver (`structural/pruning`, `structural/defaulting`, `structural/listtype`) and
//! kube-openapi's validators.

use serde_json::{Map, Value};

use super::{ErrType, FieldErr, format, go_float, go_quote, gopattern};

/// The `ObjectMeta` fields; anything else under `metadata` is dropped (and reported as unknown).
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Deeper nesting than this is not walked (the API server limits nesting far below it).
const MAX_DEPTH: usize = 256;

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

fn preserve_unknown(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

fn embedded(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
}

/// `additionalProperties` as a schema (an object), if any.
fn additional_schema(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn items_schema(s: &Value) -> Option<&Value> {
    s.get("items").filter(|a| a.is_object())
}

fn has_default(s: &Value) -> bool {
    s.get("default").is_some_and(|d| !d.is_null())
}

fn type_of(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------------
// Pruning and defaulting
// ---------------------------------------------------------------------------------------------------

/// Drops null values and fields not declared in the schema (unless x-kubernetes-preserve-unknown-fields;
/// `metadata` is pruned to the standard `ObjectMeta` fields), applies `default`s (recursively, also
/// inside defaulted objects and inside array items); returns the JSON paths of pruned unknown fields
/// like `spec.foo` / `spec.items[0].bar` for Strict field validation.
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune(schema, obj, "", true, &mut pruned, 0);
    default(schema, obj, 0);
    pruned.sort();
    pruned
}

fn prune_metadata(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            let is_null = m.get(&k).is_some_and(Value::is_null);
            if !OBJECT_META_FIELDS.contains(&k.as_str()) {
                m.remove(&k);
                if !is_null {
                    pruned.push(child(path, &k));
                }
            } else if is_null {
                m.remove(&k);
            }
        }
    }
}

fn prune(
    schema: &Value,
    value: &mut Value,
    path: &str,
    resource_root: bool,
    pruned: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let is_resource = resource_root || embedded(schema);
            let properties = props(schema);
            let additional = additional_schema(schema);
            let keep_unknown = preserve_unknown(schema)
                || schema.get("additionalProperties").and_then(Value::as_bool) == Some(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_path = child(path, &k);
                if is_resource && (k == "apiVersion" || k == "kind") {
                    if map.get(&k).is_some_and(Value::is_null) {
                        map.remove(&k);
                    }
                    continue;
                }
                if is_resource && k == "metadata" {
                    if let Some(meta) = map.get_mut(&k) {
                        if meta.is_null() {
                            map.remove(&k);
                        } else {
                            prune_metadata(meta, &child_path, pruned);
                        }
                    }
                    continue;
                }
                let sub = properties.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(sub) => {
                        let drop_null = map.get(&k).is_some_and(Value::is_null)
                            && !nullable(sub)
                            && !has_default(sub);
                        if drop_null {
                            map.remove(&k);
                        } else if let Some(v) = map.get_mut(&k) {
                            prune(sub, v, &child_path, false, pruned, depth + 1);
                        }
                    }
                    None if keep_unknown => {}
                    None => {
                        map.remove(&k);
                        pruned.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = items_schema(schema) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &index(path, i), false, pruned, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = props(schema) {
                for (k, ps) in properties {
                    let Some(d) = ps.get("default").filter(|d| !d.is_null()) else {
                        continue;
                    };
                    let missing = match map.get(k) {
                        None => true,
                        Some(v) => v.is_null() && !nullable(ps),
                    };
                    if missing {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let properties = props(schema);
            let additional = additional_schema(schema);
            for (k, v) in map.iter_mut() {
                if let Some(ps) = properties.and_then(|p| p.get(k)) {
                    default(ps, v, depth + 1);
                } else if let Some(a) = additional {
                    if v.is_null()
                        && !nullable(a)
                        && let Some(d) = a.get("default").filter(|d| !d.is_null())
                    {
                        *v = d.clone();
                    }
                    default(a, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = items_schema(schema) {
                for v in items.iter_mut() {
                    if v.is_null()
                        && !nullable(is)
                        && let Some(d) = is.get("default").filter(|d| !d.is_null())
                    {
                        *v = d.clone();
                    }
                    default(is, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------------
// Correlation with the old object (ratcheting)
// ---------------------------------------------------------------------------------------------------

fn list_type(s: &Value) -> &str {
    s.get("x-kubernetes-list-type")
        .and_then(Value::as_str)
        .unwrap_or("atomic")
}

fn map_keys(s: &Value) -> Vec<&str> {
    s.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The item of `old` that corresponds to `item` (the API server correlates items of `map` lists by their
/// keys and of `set` lists by value; items of atomic lists have no old counterpart).
pub(crate) fn correlate_item<'a>(
    list_schema: &Value,
    item: &Value,
    old: Option<&'a Value>,
) -> Option<&'a Value> {
    let old = old?.as_array()?;
    match list_type(list_schema) {
        "map" => {
            let keys = map_keys(list_schema);
            if keys.is_empty() {
                return None;
            }
            let key_of = |v: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| v.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            let want = key_of(item);
            old.iter().find(|o| key_of(o) == want)
        }
        "set" => old.iter().find(|o| json_eq(o, item)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------
// OpenAPI validation
// ---------------------------------------------------------------------------------------------------

/// Equality of decoded JSON values the way Go compares them after decoding (numbers by value).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn data_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(schema_type: &str, v: &Value) -> bool {
    match schema_type {
        "" => true,
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64()
                    || n.is_u64()
                    || n.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
            }
            _ => false,
        },
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Validates like kube-openapi's `SchemaValidator` (type, allOf/anyOf/oneOf/not, string, format,
/// number, array, enum, object), in that order per node.
pub(crate) fn validate_openapi(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    walk(schema, obj, old, "", true, &mut errs, 0);
    errs
}

#[allow(clippy::too_many_arguments)]
fn walk(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    resource_root: bool,
    errs: &mut Vec<FieldErr>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !schema.is_object() {
        return;
    }
    // Ratcheting: an unchanged value keeps validating as it did when it was stored.
    if let Some(o) = old
        && json_eq(o, value)
    {
        return;
    }
    let at = path;
    let name = path;
    let t = type_of(schema);

    if value.is_null() {
        if nullable(schema) || t.is_empty() {
            return;
        }
        errs.push(FieldErr::new(
            ErrType::TypeInvalid,
            at,
            Some(Value::String("null".into())),
            format!("{name} in body must be of type {t}: \"null\""),
        ));
        return;
    }
    if !type_matches(t, value) {
        let dt = data_type(value);
        errs.push(FieldErr::new(
            ErrType::TypeInvalid,
            at,
            Some(Value::String(dt.into())),
            format!("{name} in body must be of type {t}: {}", go_quote(dt)),
        ));
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string")
        && !(value.is_string() || type_matches("integer", value))
    {
        let dt = data_type(value);
        errs.push(FieldErr::new(
            ErrType::TypeInvalid,
            at,
            Some(Value::String(dt.into())),
            format!(
                "{name} in body must be of type integer,string: {}",
                go_quote(dt)
            ),
        ));
        return;
    }

    // allOf / anyOf / oneOf / not
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            walk_value_only(s, value, path, errs, depth);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.is_empty()
        && !any.iter().any(|s| passes(s, value, path, depth))
    {
        errs.push(FieldErr::new(
            ErrType::Invalid,
            at,
            Some(value.clone()),
            format!("{name} in body must validate at least one schema (anyOf)"),
        ));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && !one.is_empty()
        && one.iter().filter(|s| passes(s, value, path, depth)).count() != 1
    {
        errs.push(FieldErr::new(
            ErrType::Invalid,
            at,
            Some(value.clone()),
            format!("{name} in body must validate one and only one schema (oneOf)"),
        ));
    }
    if let Some(not) = schema.get("not").filter(|s| s.is_object())
        && passes(not, value, path, depth)
    {
        errs.push(FieldErr::new(
            ErrType::Invalid,
            at,
            Some(value.clone()),
            format!("{name} in body must not validate the schema (not)"),
        ));
    }

    // Strings
    if let Value::String(s) = value {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            errs.push(FieldErr::new(
                ErrType::TooLong,
                at,
                None,
                format!("may not be more than {max} {unit}"),
            ));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && gopattern::is_match(p, s) == Some(false)
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body should match '{p}'"),
            ));
        }
        if let Some(f) = schema.get("format").and_then(Value::as_str)
            && format::check(f, s) == Some(false)
        {
            errs.push(FieldErr::new(
                ErrType::TypeInvalid,
                at,
                Some(value.clone()),
                format!("{name} in body must be of type {f}: {}", go_quote(s)),
            ));
        }
    }

    // Numbers
    if let Some(x) = value.as_f64().filter(|_| value.is_number()) {
        if let Some(m) = schema.get("multipleOf").and_then(num)
            && m > 0.0
            && (x / m).fract().abs() > f64::EPSILON * 8.0
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body should be a multiple of {}", go_float(m)),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(num) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if (exclusive && x >= max) || x > max {
                let rel = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(FieldErr::new(
                    ErrType::Invalid,
                    at,
                    Some(value.clone()),
                    format!("{name} in body should be {rel} {}", go_float(max)),
                ));
            }
        }
        if let Some(min) = schema.get("minimum").and_then(num) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if (exclusive && x <= min) || x < min {
                let rel = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(FieldErr::new(
                    ErrType::Invalid,
                    at,
                    Some(value.clone()),
                    format!("{name} in body should be {rel} {}", go_float(min)),
                ));
            }
        }
    }

    // Arrays
    if let Value::Array(items) = value {
        let n = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            errs.push(FieldErr::new(
                ErrType::TooMany,
                at,
                Some(Value::from(n)),
                format!("must have at most {max} {unit}"),
            ));
        }
        if flag(schema, "uniqueItems")
            && items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)))
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
    }

    // Enum
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.iter().any(|a| json_eq(a, value))
    {
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => go_quote(s),
                other => go_quote(&other.to_string()),
            })
            .collect();
        let detail = if values.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", values.join(", "))
        };
        errs.push(FieldErr::new(
            ErrType::NotSupported,
            at,
            Some(value.clone()),
            detail,
        ));
    }

    // Objects
    if let Value::Object(map) = value {
        let n = map.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && n > max
        {
            errs.push(FieldErr::new(
                ErrType::TooMany,
                at,
                Some(Value::from(n)),
                format!("must have at most {max} items"),
            ));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && n < min
        {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                at,
                Some(value.clone()),
                format!("{name} in body should have at least {min} properties"),
            ));
        }
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(k) {
                    errs.push(FieldErr::new(ErrType::Required, &child(path, k), None, ""));
                }
            }
        }
        let properties = props(schema);
        if let Some(properties) = properties {
            for (k, ps) in properties {
                if resource_root && k == "metadata" {
                    // ObjectMeta is validated by the generic metadata validation, not the schema, except
                    // for what the schema declares explicitly.
                    if props(ps).is_none() {
                        continue;
                    }
                }
                if let Some(v) = map.get(k) {
                    let old_child = old.and_then(|o| o.get(k));
                    walk(ps, v, old_child, &child(path, k), false, errs, depth + 1);
                }
            }
        }
        if let Some(a) = additional_schema(schema) {
            for (k, v) in map {
                if properties.is_some_and(|p| p.contains_key(k)) {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                walk(a, v, old_child, &child(path, k), false, errs, depth + 1);
            }
        }
    }

    if let (Value::Array(items), Some(is)) = (value, items_schema(schema)) {
        for (i, item) in items.iter().enumerate() {
            let old_item = correlate_item(schema, item, old);
            walk(is, item, old_item, &index(path, i), false, errs, depth + 1);
        }
    }
}

/// Validates a value against a sub-schema of allOf (value validations only).
fn walk_value_only(
    schema: &Value,
    value: &Value,
    path: &str,
    errs: &mut Vec<FieldErr>,
    depth: usize,
) {
    walk(schema, value, None, path, false, errs, depth + 1);
}

fn passes(schema: &Value, value: &Value, path: &str, depth: usize) -> bool {
    let mut e = Vec::new();
    walk(schema, value, None, path, false, &mut e, depth + 1);
    e.is_empty()
}

// ---------------------------------------------------------------------------------------------------
// x-kubernetes-list-type
// ---------------------------------------------------------------------------------------------------

/// Uniqueness of `set` items and `map` keys (apiextensions' `ValidateListSetsAndMaps`).
pub(crate) fn validate_list_types(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    lists(schema, obj, old, "", &mut errs, 0);
    errs
}

fn lists(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldErr>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(o) = old
        && json_eq(o, value)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = props(schema);
            let additional = additional_schema(schema);
            for (k, v) in map {
                if let Some(ps) = properties.and_then(|p| p.get(k)).or(additional) {
                    lists(
                        ps,
                        v,
                        old.and_then(|o| o.get(k)),
                        &child(path, k),
                        errs,
                        depth + 1,
                    );
                }
            }
        }
        Value::Array(items) => {
            match list_type(schema) {
                "set" => {
                    for (i, a) in items.iter().enumerate() {
                        if items[..i].iter().any(|b| json_eq(a, b)) {
                            errs.push(FieldErr::new(
                                ErrType::Duplicate,
                                &index(path, i),
                                Some(a.clone()),
                                "",
                            ));
                        }
                    }
                }
                "map" => list_map(schema, items, path, errs),
                _ => {}
            }
            if let Some(is) = items_schema(schema) {
                for (i, item) in items.iter().enumerate() {
                    let old_item = correlate_item(schema, item, old);
                    lists(is, item, old_item, &index(path, i), errs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn list_map(schema: &Value, items: &[Value], path: &str, errs: &mut Vec<FieldErr>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errs.push(FieldErr::new(
                ErrType::Invalid,
                &index(path, i),
                Some(x.clone()),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let keys = map_keys(schema);
    if keys.is_empty() {
        return;
    }
    let item_props = items_schema(schema).and_then(props);
    let key_value = |x: &Value, k: &str| -> Option<Value> {
        match x.get(k) {
            Some(v) => Some(v.clone()),
            None => item_props
                .and_then(|p| p.get(k))
                .and_then(|s| s.get("default"))
                .cloned(),
        }
    };
    let mut seen: Vec<Vec<Option<Value>>> = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let kv: Vec<Option<Value>> = keys.iter().map(|k| key_value(x, k)).collect();
        if seen.iter().any(|s| {
            s.len() == kv.len()
                && s.iter().zip(&kv).all(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => json_eq(a, b),
                    (None, None) => true,
                    _ => false,
                })
        }) {
            let mut m = Map::new();
            for (k, v) in keys.iter().zip(&kv) {
                if let Some(v) = v {
                    m.insert((*k).to_string(), v.clone());
                }
            }
            errs.push(FieldErr::new(
                ErrType::Duplicate,
                &index(path, i),
                Some(Value::Object(m)),
                "",
            ));
        } else {
            seen.push(kv);
        }
    }
}

/// The schema node at a field path like `spec.scopes.exposes[0]` (walking properties, items and
/// additionalProperties), if it exists.
pub(crate) fn schema_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = schema;
    for seg in split_path(path) {
        node = match seg {
            Seg::Key(k) => props(node)
                .and_then(|p| p.get(k))
                .or_else(|| additional_schema(node))?,
            Seg::Index(_) => items_schema(node)?,
        };
    }
    Some(node)
}

/// The value at a field path, if it exists.
pub(crate) fn value_at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = value;
    for seg in split_path(path) {
        node = match seg {
            Seg::Key(k) => node.get(k)?,
            Seg::Index(i) => node.get(i)?,
        };
    }
    Some(node)
}

pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub(crate) fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(b) => (&part[..b], &part[b..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}
