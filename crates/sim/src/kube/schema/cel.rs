//! `x-kubernetes-validations` through kube's CEL validator (`kube::core::cel`, the kube-cel crate),
//! reported like apiextensions-apiserver: `<path>: Invalid value: "<schema type>": <message>`, at the
//! node that declares the rule (plus its `fieldPath`), with the rule's `reason`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use kube::core::cel::{
    CompiledSchema, ErrorKind, ValidationError, compile_schema, validate_compiled,
};
use serde_json::Value;

use super::structural::{json_eq, schema_at, split_path, value_at};
use super::{ErrType, FieldErr};

thread_local! {
    static COMPILED: RefCell<HashMap<u64, Rc<CompiledSchema>>> = RefCell::new(HashMap::new());
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

fn compiled(schema: &Value) -> Rc<CompiledSchema> {
    let mut h = DefaultHasher::new();
    schema.to_string().hash(&mut h);
    let key = h.finish();
    COMPILED.with(|c| {
        if let Some(hit) = c.borrow().get(&key) {
            return hit.clone();
        }
        let compiled = Rc::new(compile_schema(schema));
        let mut c = c.borrow_mut();
        if c.len() > 64 {
            c.clear();
        }
        c.insert(key, compiled.clone());
        compiled
    })
}

/// Evaluates every CEL rule of the schema against `obj` (transition rules only when `old` is given).
pub(crate) fn validate_cel(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    if !has_rules(schema) {
        return Vec::new();
    }
    let compiled = compiled(schema);
    let Err(errors) = validate_compiled(&compiled, obj, old) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in errors.iter() {
        let (decl_path, decl_schema) = declaring_node(schema, e);
        // Ratcheting: a rule that does not look at oldSelf is not enforced on an unchanged value.
        if let Some(old) = old
            && !e.rule.contains("oldSelf")
            && let (Some(new_v), Some(old_v)) =
                (value_at(obj, &decl_path), value_at(old, &decl_path))
            && json_eq(new_v, old_v)
        {
            continue;
        }
        let schema_type = decl_schema
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.push(to_field_err(e, schema_type));
    }
    out
}

/// The path and schema of the node that declares the failed rule: the error path, or (when the rule has
/// a `fieldPath`) the closest ancestor whose `x-kubernetes-validations` holds the rule.
fn declaring_node<'a>(schema: &'a Value, e: &ValidationError) -> (String, Option<&'a Value>) {
    let segs = split_path(&e.field_path).len();
    let mut path = e.field_path.clone();
    for _ in 0..=segs {
        if let Some(node) = schema_at(schema, &path)
            && node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules
                        .iter()
                        .any(|r| r.get("rule").and_then(Value::as_str) == Some(e.rule.as_str()))
                })
        {
            return (path, Some(node));
        }
        path = parent(&path);
    }
    (e.field_path.clone(), schema_at(schema, &e.field_path))
}

fn parent(path: &str) -> String {
    if path.ends_with(']')
        && let Some(b) = path.rfind('[')
    {
        return path[..b].to_string();
    }
    match path.rfind('.') {
        Some(d) => path[..d].to_string(),
        None => String::new(),
    }
}

fn to_field_err(e: &ValidationError, schema_type: String) -> FieldErr {
    let value = Some(Value::String(schema_type));
    match e.kind {
        ErrorKind::ValidationFailure => {
            let message = e.message.clone();
            match e.reason.as_deref() {
                Some("FieldValueForbidden") => {
                    FieldErr::new(ErrType::Forbidden, &e.field_path, None, message)
                }
                Some("FieldValueRequired") => {
                    FieldErr::new(ErrType::Required, &e.field_path, None, message)
                }
                Some("FieldValueDuplicate") => {
                    FieldErr::new(ErrType::Duplicate, &e.field_path, value, "")
                }
                _ => FieldErr::new(ErrType::Invalid, &e.field_path, value, message),
            }
        }
        ErrorKind::EvaluationError => {
            let cause = e
                .source()
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.message.clone());
            FieldErr::new(
                ErrType::Invalid,
                &e.field_path,
                value,
                format!("{cause} evaluating rule: {}", e.rule),
            )
        }
        _ => FieldErr::new(ErrType::Invalid, &e.field_path, value, e.message.clone()),
    }
}
