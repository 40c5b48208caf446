//! Structural-schema semantics of the Kubernetes API server for custom resources: pruning, defaulting,
//! OpenAPI v3 validation with Go's pattern semantics, `x-kubernetes-list-type` uniqueness,
//! `x-kubernetes-validations` (CEL) with transition rules, validation ratcheting on update, and the
//! wording of the resulting `422 Invalid` errors.
//!
//! The error texts follow the real API server (apiextensions-apiserver + kube-openapi +
//! apimachinery's `field.Error`): each [`Cause`] carries the `reason` (`FieldValueInvalid`, ...), the
//! `field` path (`spec.scopes.exposes[0].atMaxAge`) and the `message` as `ErrorBody()` renders it
//! (`Invalid value: 1000: spec.scopes.exposes[0].atMaxAge in body should be less than or equal to 680`).

mod cel;
mod dupes;
mod format;
pub mod gopattern;
mod structural;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use dupes::duplicate_fields;
pub use structural::prune_and_default;

/// One `details.causes[]` entry of a `422 Invalid` Status (a Kubernetes `StatusCause`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// The kinds of `field.Error` the validation produces (apimachinery's `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrType {
    Required,
    Invalid,
    TypeInvalid,
    NotSupported,
    TooLong,
    TooMany,
    Duplicate,
    Forbidden,
}

impl ErrType {
    fn reason(self) -> &'static str {
        match self {
            ErrType::Required => "FieldValueRequired",
            ErrType::Invalid => "FieldValueInvalid",
            ErrType::TypeInvalid => "FieldValueTypeInvalid",
            ErrType::NotSupported => "FieldValueNotSupported",
            ErrType::TooLong => "FieldValueTooLong",
            ErrType::TooMany => "FieldValueTooMany",
            ErrType::Duplicate => "FieldValueDuplicate",
            ErrType::Forbidden => "FieldValueForbidden",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrType::Required => "Required value",
            ErrType::Invalid | ErrType::TypeInvalid => "Invalid value",
            ErrType::NotSupported => "Unsupported value",
            ErrType::TooLong => "Too long",
            ErrType::TooMany => "Too many",
            ErrType::Duplicate => "Duplicate value",
            ErrType::Forbidden => "Forbidden",
        }
    }

    /// Errors that make the API server skip CEL rules (`hasBlockingErr`).
    fn blocks_cel(self) -> bool {
        matches!(
            self,
            ErrType::NotSupported
                | ErrType::Required
                | ErrType::TooLong
                | ErrType::TooMany
                | ErrType::TypeInvalid
        )
    }
}

/// A `field.Error`: type, path, bad value (None = omitted) and detail.
#[derive(Clone, Debug)]
pub(crate) struct FieldErr {
    pub kind: ErrType,
    pub field: String,
    pub bad: Option<Value>,
    pub detail: String,
}

impl FieldErr {
    pub fn new(kind: ErrType, field: &str, bad: Option<Value>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: if field.is_empty() {
                "<nil>".to_string()
            } else {
                field.to_string()
            },
            bad,
            detail: detail.into(),
        }
    }

    /// apimachinery's `(*field.Error).ErrorBody()`.
    pub fn body(&self) -> String {
        let mut s = match (&self.kind, &self.bad) {
            (ErrType::Required | ErrType::Forbidden | ErrType::TooLong, _) | (_, None) => {
                self.kind.text().to_string()
            }
            (_, Some(v)) => format!("{}: {}", self.kind.text(), go_value(v)),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub fn into_cause(self) -> Cause {
        Cause {
            reason: self.kind.reason().to_string(),
            message: self.body(),
            field: self.field,
        }
    }
}

/// Validates `obj` against the structural schema (the CRD version's `openAPIV3Schema`) and its CEL rules.
/// `old` is the stored object on update: it enables transition rules (`oldSelf`) and validation
/// ratcheting (unchanged invalid values stay accepted, as in Kubernetes 1.30+).
/// The object is expected to be pruned and defaulted already ([`prune_and_default`]).
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = structural::validate_openapi(schema, obj, old);
    errs.extend(structural::validate_list_types(schema, obj, old));
    if errs.iter().any(|e| e.kind.blocks_cel()) {
        errs.push(FieldErr::new(
            ErrType::Invalid,
            "",
            Some(Value::Null),
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errs.extend(cel::validate_cel(schema, obj, old));
    }
    errs.into_iter().map(FieldErr::into_cause).collect()
}

/// The message of a 422 like the real server:
/// `<Kind>.<group> "<name>" is invalid: [<field>: <detail>, ...]` (one cause: without brackets).
pub fn invalid_message(kind: &str, group: &str, name: &str, causes: &[Cause]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut parts: Vec<String> = Vec::new();
    for c in causes {
        let s = if c.field.is_empty() {
            c.message.clone()
        } else {
            format!("{}: {}", c.field, c.message)
        };
        // utilerrors.NewAggregate + Error() drops duplicate messages.
        if !parts.contains(&s) {
            parts.push(s);
        }
    }
    let head = format!("{qualified} {} is invalid", go_quote(name));
    match parts.len() {
        0 => head,
        1 => format!("{head}: {}", parts[0]),
        _ => format!("{head}: [{}]", parts.join(", ")),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0C' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0B' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xFFFF {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's exponent rules).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) {
        let s = format!("{f}");
        return s;
    }
    // Rust: "1e21" / "1.5e-7"; Go: "1e+21" / "1.5e-07".
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mant, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            format!("{mant}e{sign}{digits}")
        }
        None => s,
    }
}

/// A JSON number as Go prints the decoded value with `%v` (int64 for integers, float64 otherwise).
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// The bad value as `ErrorBody` prints it: `%q` for strings, `%v` for numbers and booleans, `"null"` for
/// null and `%#v` for lists and maps.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        // kube-apiserver 1.34 prints a nil bad value as a bare `null`.
        Value::Null => "null".into(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(_) | Value::Object(_) => go_sharp_v(v),
    }
}

/// Go's `%#v` of a decoded JSON value (`[]interface {}{...}`, `map[string]interface {}{...}`).
fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_sharp_v).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_quote(k), go_sharp_v(&m[k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", items.join(", "))
        }
    }
}
