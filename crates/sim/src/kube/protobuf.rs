//! Protobuf for the built-in types, as client-go speaks it with `application/vnd.kubernetes.protobuf`
//! (`kubectl create namespace|secret|configmap`, Helm's release Secrets, controllers' informers).
//! The server works on JSON; this module decodes protobuf bodies into that JSON form and encodes
//! answers back, so handlers never see protobuf.
//!
//! The wire format is the magic `k8s\0` followed by a `runtime.Unknown` whose `typeMeta` names the
//! apiVersion and kind and whose `raw` is the object's message, as defined by Kubernetes' own
//! `generated.proto` files (vendored in `crates/sim/proto`, compiled by `build.rs`). Watch streams
//! (`;stream=watch`) are 4-byte big-endian length-prefixed frames, each a bare `meta.v1.WatchEvent`
//! message whose `object.raw` is the object's envelope (magic included).
//!
//! What the two forms disagree on is decided here: `Time`/`MicroTime` (seconds and nanos, RFC 3339 in
//! JSON, the zero time absent), `IntOrString`, `Quantity`, `RawExtension`/`FieldsV1` (raw JSON bytes),
//! `bytes` (base64 in JSON), structs Go inlines in JSON (`LocalObjectReference` in key selectors,
//! `VolumeSource` in `Volume`, ...), and Go's `omitempty`: the Go encoder writes empty strings of
//! non-pointer fields, which the JSON form leaves out, so decoding drops empty strings. Custom
//! resources have no protobuf form (as on a real server): their requests must be JSON or YAML.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value as PValue,
};
use serde_json::{Map, Value, json};

/// The media type (without parameters).
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
const MAGIC: &[u8] = b"k8s\0";

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

/// Why a body could not be decoded or an object encoded; the message is for the client.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic number")]
    NoMagic,
    #[error("the protobuf body is not valid: {0}")]
    Invalid(String),
    #[error("no protobuf form for {api_version}, Kind={kind}")]
    UnknownType { api_version: String, kind: String },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("the protobuf definitions could not be loaded: {0}")]
    Definitions(String),
}

fn pool() -> Result<&'static DescriptorPool, ProtobufError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.bin"))[..])
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ProtobufError::Definitions(e.clone()))
}

fn message(name: &str) -> Result<MessageDescriptor, ProtobufError> {
    pool()?
        .get_message_by_name(name)
        .ok_or_else(|| ProtobufError::Definitions(format!("no message {name}")))
}

/// The protobuf message of an apiVersion and kind, when it has one.
fn descriptor_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "k8s.io.api.core",
        "apps" => "k8s.io.api.apps",
        "batch" => "k8s.io.api.batch",
        "coordination.k8s.io" => "k8s.io.api.coordination",
        "events.k8s.io" => "k8s.io.api.events",
        "rbac.authorization.k8s.io" => "k8s.io.api.rbac",
        "policy" => "k8s.io.api.policy",
        "networking.k8s.io" => "k8s.io.api.networking",
        "meta.k8s.io" => "k8s.io.apimachinery.pkg.apis.meta",
        _ => return None,
    };
    let pool = pool().ok()?;
    pool.get_message_by_name(&format!("{package}.{version}.{kind}"))
        .or_else(|| {
            // Status, DeleteOptions, WatchEvent... are served under every group version.
            pool.get_message_by_name(&format!("{META}.{kind}"))
        })
}

/// Whether objects of this apiVersion and kind have a protobuf form.
pub fn supports(api_version: &str, kind: &str) -> bool {
    descriptor_for(api_version, kind).is_some()
}

/// Whether a Content-Type or Accept entry names protobuf.
pub fn is_protobuf(media_type: &str) -> bool {
    media_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim() == MEDIA_TYPE)
}

/// A protobuf body (magic + `runtime.Unknown`) as the JSON object it encodes.
pub fn decode(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let (api_version, kind, raw) = open_envelope(bytes)?;
    let desc = descriptor_for(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownType {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let msg = DynamicMessage::decode(desc, raw.as_slice())
        .map_err(|e| ProtobufError::Invalid(e.to_string()))?;
    Ok(with_type(&api_version, &kind, message_to_json(&msg)))
}

fn with_type(api_version: &str, kind: &str, body: Value) -> Value {
    let mut out = Map::new();
    if !kind.is_empty() {
        out.insert("kind".into(), json!(kind));
    }
    if !api_version.is_empty() {
        out.insert("apiVersion".into(), json!(api_version));
    }
    if let Value::Object(m) = body {
        out.extend(m);
    }
    Value::Object(out)
}

fn open_envelope(bytes: &[u8]) -> Result<(String, String, Vec<u8>), ProtobufError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let unknown = DynamicMessage::decode(message(UNKNOWN)?, rest)
        .map_err(|e| ProtobufError::Invalid(e.to_string()))?;
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned());
    let text = |m: &Option<DynamicMessage>, f: &str| {
        m.as_ref()
            .and_then(|m| m.get_field_by_name(f))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
        .unwrap_or_default();
    Ok((
        text(&type_meta, "apiVersion"),
        text(&type_meta, "kind"),
        raw,
    ))
}

/// A JSON object (with apiVersion and kind) in protobuf: magic + `runtime.Unknown`.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (s("apiVersion"), s("kind"));
    let desc = descriptor_for(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownType {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let msg = json_to_message(&desc, obj, "")?;
    envelope(&api_version, &kind, msg.encode_to_vec())
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Result<Vec<u8>, ProtobufError> {
    let unknown_desc = message(UNKNOWN)?;
    let type_meta_desc = message("k8s.io.apimachinery.pkg.runtime.TypeMeta")?;
    let mut type_meta = DynamicMessage::new(type_meta_desc);
    type_meta.set_field_by_name("apiVersion", PValue::String(api_version.into()));
    type_meta.set_field_by_name("kind", PValue::String(kind.into()));
    let mut unknown = DynamicMessage::new(unknown_desc);
    unknown.set_field_by_name("typeMeta", PValue::Message(type_meta));
    unknown.set_field_by_name("raw", PValue::Bytes(raw.into()));
    unknown.set_field_by_name("contentEncoding", PValue::String(String::new()));
    unknown.set_field_by_name("contentType", PValue::String(String::new()));
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    Ok(out)
}

/// One frame of a protobuf watch stream: length + `WatchEvent` envelope.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let object = encode(object)?;
    let mut raw_ext = DynamicMessage::new(message(RAW_EXTENSION)?);
    raw_ext.set_field_by_name("raw", PValue::Bytes(object.into()));
    let mut ev = DynamicMessage::new(message(&format!("{META}.WatchEvent"))?);
    ev.set_field_by_name("type", PValue::String(event_type.into()));
    ev.set_field_by_name("object", PValue::Message(raw_ext));
    let body = ev.encode_to_vec();
    let len = u32::try_from(body.len())
        .map_err(|_| ProtobufError::Invalid("watch event too large".into()))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend(body);
    Ok(frame)
}

/// The first complete frame of a protobuf watch stream in `buf`: (frame, bytes used).
pub fn split_watch_frame(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let frame = buf.get(4..4 + len)?;
    Some((frame.to_vec(), 4 + len))
}

/// A watch frame as the JSON watch event `{"type", "object"}`.
pub fn decode_watch_event(frame: &[u8]) -> Result<Value, ProtobufError> {
    let ev = DynamicMessage::decode(message(&format!("{META}.WatchEvent"))?, frame)
        .map_err(|e| ProtobufError::Invalid(e.to_string()))?;
    let event_type = ev
        .get_field_by_name("type")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let object = ev
        .get_field_by_name("object")
        .and_then(|v| v.as_message().cloned())
        .and_then(|m| {
            m.get_field_by_name("raw")
                .and_then(|r| r.as_bytes().cloned())
        })
        .unwrap_or_default();
    Ok(json!({"type": event_type, "object": decode(&object)?}))
}

/// Removes the fields an object's type does not have (by its protobuf message, which has every
/// field of the Go type), returning their paths (`metadata.foo`, `spec.containers[0].bar`), sorted,
/// as kube-apiserver's strict decoding names them. Objects without a protobuf form are left alone.
pub fn prune_unknown_fields(obj: &mut Value) -> Vec<String> {
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let Some(desc) = descriptor_for(&s("apiVersion"), &s("kind")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    prune_message(&desc, obj, "", true, &mut out);
    out.sort();
    out
}

fn prune_message(
    desc: &MessageDescriptor,
    v: &mut Value,
    at: &str,
    top: bool,
    out: &mut Vec<String>,
) {
    if matches!(
        desc.full_name(),
        TIME | MICRO_TIME | INT_OR_STRING | QUANTITY | RAW_EXTENSION | FIELDS_V1 | DURATION
    ) {
        return;
    }
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let inline: Vec<FieldDescriptor> = desc.fields().filter(|f| is_inline(desc, f)).collect();
    let mut unknown = Vec::new();
    for (k, child) in obj.iter_mut() {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        if top && (k == "apiVersion" || k == "kind") {
            continue;
        }
        let field = desc
            .get_field_by_name(k)
            .filter(|f| !is_inline(desc, f))
            .or_else(|| {
                inline
                    .iter()
                    .find_map(|f| f.kind().as_message().and_then(|m| m.get_field_by_name(k)))
            });
        let Some(field) = field else {
            unknown.push(k.clone());
            out.push(path);
            continue;
        };
        let Kind::Message(m) = field.kind() else {
            continue;
        };
        if field.is_map() {
            let value_kind = m.map_entry_value_field().kind();
            if let (Kind::Message(vm), Some(entries)) = (value_kind, child.as_object_mut()) {
                for (key, item) in entries.iter_mut() {
                    prune_message(&vm, item, &format!("{path}[{key}]"), false, out);
                }
            }
        } else if field.is_list() {
            if let Some(items) = child.as_array_mut() {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_message(&m, item, &format!("{path}[{i}]"), false, out);
                }
            }
        } else {
            prune_message(&m, child, &path, false, out);
        }
    }
    for k in unknown {
        obj.shift_remove(&k);
    }
}

/// Go structs embedded with `json:",inline"`: their fields sit in the parent in JSON.
fn is_inline(parent: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    matches!(
        (parent.name(), field.name()),
        (_, "localObjectReference")
            | ("EphemeralContainer", "ephemeralContainerCommon")
            | ("PersistentVolumeSpec", "persistentVolumeSource")
            | ("Volume", "volumeSource")
            | ("Probe", "handler")
    )
}

fn seconds_nanos(msg: &DynamicMessage) -> (i64, i32) {
    let seconds = msg
        .get_field_by_name("seconds")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let nanos = msg
        .get_field_by_name("nanos")
        .and_then(|v| v.as_i32())
        .unwrap_or(0);
    (seconds, nanos)
}

fn raw_json(msg: &DynamicMessage, field: &str) -> Value {
    let raw = msg
        .get_field_by_name(field)
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
}

fn message_to_json(msg: &DynamicMessage) -> Value {
    let desc = msg.descriptor();
    match desc.full_name() {
        TIME | MICRO_TIME => {
            let (s, n) = seconds_nanos(msg);
            if s == 0 && n == 0 {
                return Value::Null;
            }
            let Ok(t) = jiff::Timestamp::new(s, n) else {
                return Value::Null;
            };
            if desc.full_name() == TIME {
                json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            } else {
                json!(t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
            }
        }
        INT_OR_STRING => {
            let is_string = msg
                .get_field_by_name("type")
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
                == 1;
            if is_string {
                json!(
                    msg.get_field_by_name("strVal")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            } else {
                json!(
                    msg.get_field_by_name("intVal")
                        .and_then(|v| v.as_i32())
                        .unwrap_or(0)
                )
            }
        }
        QUANTITY => json!(
            msg.get_field_by_name("string")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        RAW_EXTENSION => raw_json(msg, "raw"),
        FIELDS_V1 => raw_json(msg, "Raw"),
        DURATION => {
            let ns = msg
                .get_field_by_name("duration")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            json!(go_duration(ns))
        }
        _ => {
            let mut out = Map::new();
            for (field, value) in msg.fields() {
                let v = value_to_json(value);
                if omitted(&v) || zero_omitted(desc.name(), field.name(), &v) {
                    continue;
                }
                if is_inline(&desc, &field)
                    && let Value::Object(inner) = v
                {
                    out.extend(inner);
                } else {
                    out.insert(field.name().to_string(), v);
                }
            }
            Value::Object(out)
        }
    }
}

/// Integer fields that are not pointers in Go, whose zero the JSON form leaves out (`omitempty`)
/// while the protobuf form always carries it.
fn zero_omitted(message: &str, field: &str, v: &Value) -> bool {
    v.as_i64() == Some(0)
        && matches!(
            (message, field),
            ("ObjectMeta", "generation")
                | ("StatusDetails", "retryAfterSeconds")
                | ("Status", "code")
                | ("ContainerPort", "hostPort")
        )
}

/// What Go's JSON leaves out that its protobuf encoder writes anyway.
fn omitted(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn value_to_json(v: &PValue) -> Value {
    match v {
        PValue::Bool(b) => json!(b),
        PValue::I32(n) => json!(n),
        PValue::I64(n) => json!(n),
        PValue::U32(n) => json!(n),
        PValue::U64(n) => json!(n),
        PValue::F32(n) => json!(n),
        PValue::F64(n) => json!(n),
        PValue::String(s) => json!(s),
        PValue::Bytes(b) => json!(STANDARD.encode(b)),
        PValue::EnumNumber(n) => json!(n),
        PValue::Message(m) => message_to_json(m),
        PValue::List(items) => Value::Array(items.iter().map(value_to_json).collect()),
        PValue::Map(entries) => {
            let mut keys: Vec<(&MapKey, &PValue)> = entries.iter().collect();
            keys.sort_by_key(|(k, _)| map_key_string(k));
            let mut out = Map::new();
            for (k, v) in keys {
                out.insert(map_key_string(k), value_to_json(v));
            }
            Value::Object(out)
        }
    }
}

fn map_key_string(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// Go's `time.Duration.String()` for whole seconds and larger ("1h0m0s"); smaller as "Nms"/"Nns".
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns.abs() < 1_000_000_000 {
        return if ns % 1_000_000 == 0 {
            format!("{}ms", ns / 1_000_000)
        } else {
            format!("{ns}ns")
        };
    }
    let total = ns / 1_000_000_000;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let frac = ns % 1_000_000_000;
    let secs = if frac == 0 {
        format!("{s}")
    } else {
        format!("{s}.{}", format!("{frac:09}").trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if matches!(c, 'm' | 'u' | 'n') && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
    }
    num.is_empty().then_some(total as i64)
}

fn field_error(at: &str, message: impl Into<String>) -> ProtobufError {
    ProtobufError::Field {
        field: if at.is_empty() {
            "<root>".into()
        } else {
            at.trim_start_matches('.').to_string()
        },
        message: message.into(),
    }
}

fn json_to_message(
    desc: &MessageDescriptor,
    v: &Value,
    at: &str,
) -> Result<DynamicMessage, ProtobufError> {
    let mut msg = DynamicMessage::new(desc.clone());
    match desc.full_name() {
        TIME | MICRO_TIME => {
            let Some(s) = v.as_str() else {
                return Err(field_error(at, "expected an RFC 3339 time"));
            };
            let t: jiff::Timestamp = s
                .parse()
                .map_err(|e| field_error(at, format!("not an RFC 3339 time: {e}")))?;
            msg.set_field_by_name("seconds", PValue::I64(t.as_second()));
            msg.set_field_by_name("nanos", PValue::I32(t.subsec_nanosecond()));
        }
        INT_OR_STRING => match v {
            Value::String(s) => {
                msg.set_field_by_name("type", PValue::I64(1));
                msg.set_field_by_name("strVal", PValue::String(s.clone()));
            }
            Value::Number(n) => {
                let n = n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| field_error(at, "not a 32-bit integer"))?;
                msg.set_field_by_name("type", PValue::I64(0));
                msg.set_field_by_name("intVal", PValue::I32(n));
            }
            _ => return Err(field_error(at, "expected an integer or a string")),
        },
        QUANTITY => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(field_error(at, "expected a quantity")),
            };
            msg.set_field_by_name("string", PValue::String(s));
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let field = if desc.full_name() == FIELDS_V1 {
                "Raw"
            } else {
                "raw"
            };
            let raw = serde_json::to_vec(v).map_err(|e| field_error(at, e.to_string()))?;
            msg.set_field_by_name(field, PValue::Bytes(raw.into()));
        }
        DURATION => {
            let ns = v
                .as_str()
                .and_then(parse_go_duration)
                .ok_or_else(|| field_error(at, "expected a duration such as \"1h0m0s\""))?;
            msg.set_field_by_name("duration", PValue::I64(ns));
        }
        _ => {
            let Some(obj) = v.as_object() else {
                return Err(field_error(at, "expected an object"));
            };
            let inline: Vec<FieldDescriptor> =
                desc.fields().filter(|f| is_inline(desc, f)).collect();
            let mut inlined: HashMap<String, Map<String, Value>> = HashMap::new();
            for (k, val) in obj {
                if val.is_null() {
                    continue;
                }
                let path = format!("{at}.{k}");
                if let Some(f) = desc.get_field_by_name(k).filter(|f| !is_inline(desc, f)) {
                    msg.set_field(&f, json_to_field(&f, val, &path)?);
                } else if let Some(f) = inline.iter().find(|f| {
                    f.kind()
                        .as_message()
                        .is_some_and(|m| m.get_field_by_name(k).is_some())
                }) {
                    inlined
                        .entry(f.name().to_string())
                        .or_default()
                        .insert(k.clone(), val.clone());
                }
                // Anything else (apiVersion, kind, fields newer than these definitions) has no
                // place in the message.
            }
            for (name, fields) in inlined {
                if let Some(f) = desc.get_field_by_name(&name)
                    && let Some(m) = f.kind().as_message()
                {
                    let sub = json_to_message(m, &Value::Object(fields), at)?;
                    msg.set_field(&f, PValue::Message(sub));
                }
            }
        }
    }
    Ok(msg)
}

fn json_to_field(f: &FieldDescriptor, v: &Value, at: &str) -> Result<PValue, ProtobufError> {
    if f.is_map() {
        let entry = f
            .kind()
            .as_message()
            .cloned()
            .ok_or_else(|| field_error(at, "map without an entry type"))?;
        let value_field = entry.map_entry_value_field();
        let obj = v
            .as_object()
            .ok_or_else(|| field_error(at, "expected an object"))?;
        let mut out = HashMap::new();
        for (k, val) in obj {
            if val.is_null() {
                continue;
            }
            out.insert(
                MapKey::String(k.clone()),
                json_to_single(&value_field.kind(), val, &format!("{at}[{k}]"))?,
            );
        }
        return Ok(PValue::Map(out));
    }
    if f.is_list() {
        let items = v
            .as_array()
            .ok_or_else(|| field_error(at, "expected a list"))?;
        return Ok(PValue::List(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| json_to_single(&f.kind(), x, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ));
    }
    json_to_single(&f.kind(), v, at)
}

fn json_to_single(kind: &Kind, v: &Value, at: &str) -> Result<PValue, ProtobufError> {
    let int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| field_error(at, "expected an integer"))
    };
    Ok(match kind {
        Kind::String => match v {
            Value::String(s) => PValue::String(s.clone()),
            _ => return Err(field_error(at, "expected a string")),
        },
        Kind::Bytes => {
            let s = v
                .as_str()
                .ok_or_else(|| field_error(at, "expected base64-encoded bytes"))?;
            PValue::Bytes(
                STANDARD
                    .decode(s)
                    .map_err(|_| field_error(at, "not valid base64"))?
                    .into(),
            )
        }
        Kind::Bool => PValue::Bool(
            v.as_bool()
                .ok_or_else(|| field_error(at, "expected true or false"))?,
        ),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PValue::I32(
            i32::try_from(int(v)?).map_err(|_| field_error(at, "out of the 32-bit range"))?,
        ),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PValue::I64(int(v)?),
        Kind::Uint32 | Kind::Fixed32 => PValue::U32(
            u32::try_from(int(v)?).map_err(|_| field_error(at, "out of the 32-bit range"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => PValue::U64(
            u64::try_from(int(v)?).map_err(|_| field_error(at, "must not be negative"))?,
        ),
        Kind::Double => PValue::F64(
            v.as_f64()
                .ok_or_else(|| field_error(at, "expected a number"))?,
        ),
        Kind::Float => PValue::F32(
            v.as_f64()
                .ok_or_else(|| field_error(at, "expected a number"))? as f32,
        ),
        Kind::Enum(_) => PValue::EnumNumber(i32::try_from(int(v)?).unwrap_or(0)),
        Kind::Message(m) => PValue::Message(json_to_message(m, v, at)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_through_the_wire_format() {
        let secret = json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "s", "namespace": "ns", "labels": {"a": "b"},
                         "creationTimestamp": "2026-01-02T03:04:05Z",
                         "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                             "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                             "fieldsV1": {"f:data": {".": {}, "f:k": {}}}}]},
            "data": {"k": "dmFsdWU="},
            "type": "Opaque"
        });
        let bytes = encode(&secret).expect("encodes");
        assert!(bytes.starts_with(b"k8s\0"));
        assert_eq!(decode(&bytes).expect("decodes"), secret);
    }

    #[test]
    fn int_or_string_inline_fields_and_quantities_keep_their_json_form() {
        let pod = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "resources": {"limits": {"cpu": "500m"}},
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
                "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}
        });
        let back = decode(&encode(&pod).expect("encodes")).expect("decodes");
        assert_eq!(back, pod);
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = encode(&json!({"kind": "Secret", "apiVersion": "v1", "data": {"k": "%%"}}))
            .expect_err("invalid base64");
        assert_eq!(err.to_string(), "data[k]: not valid base64");
        assert!(matches!(
            encode(&json!({"kind": "Thing", "apiVersion": "example.com/v1"})),
            Err(ProtobufError::UnknownType { .. })
        ));
        assert!(matches!(decode(b"{}"), Err(ProtobufError::NoMagic)));
        assert!(supports("v1", "Status"));
        assert!(supports("apps/v1", "DeploymentList"));
        assert!(!supports("nais.io/v1", "IDPortenClient"));
    }

    /// Bytes built by hand from generated.proto's field numbers (not through the descriptors), as
    /// client-go writes them: an independent check of the decoder.
    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint((number << 3) | 2, &mut out);
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(number << 3, &mut out);
        prost::encoding::encode_varint(value, &mut out);
        out
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [field(1, key.as_bytes()), field(2, value)].concat()
    }

    fn hand_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn a_helm_release_secret_written_by_hand_reads_as_its_json_form() {
        let meta = [
            field(1, b"sh.helm.release.v1.r1.v1"),
            field(11, &entry("owner", b"helm")),
            field(11, &entry("status", b"deployed")),
            field(8, &varint_field(1, 1_767_225_600)),
            field(99, b"a field from a later Kubernetes"),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &entry("release", b"H4sI\x00binary")),
            field(3, b"helm.sh/release.v1"),
            varint_field(5, 1),
        ]
        .concat();
        assert_eq!(
            decode(&hand_envelope("v1", "Secret", &raw)).expect("decodes"),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": "sh.helm.release.v1.r1.v1",
                    "labels": {"owner": "helm", "status": "deployed"},
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "data": {"release": STANDARD.encode(b"H4sI\x00binary")},
                "type": "helm.sh/release.v1",
                "immutable": true,
            })
        );
    }

    #[test]
    fn delete_options_and_a_truncated_body() {
        let raw = [field(4, b"Background"), field(2, &field(1, b"uid-1"))].concat();
        assert_eq!(
            decode(&hand_envelope("meta.k8s.io/v1", "DeleteOptions", &raw)).expect("decodes"),
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions",
                   "propagationPolicy": "Background", "preconditions": {"uid": "uid-1"}})
        );
        let truncated = hand_envelope("v1", "Secret", &field(1, b"x"));
        assert!(matches!(
            decode(&truncated[..truncated.len() - 1]),
            Err(ProtobufError::Invalid(_))
        ));
        assert!(supports("policy/v1", "PodDisruptionBudget"));
        assert!(supports("networking.k8s.io/v1", "NetworkPolicy"));
    }

    #[test]
    fn watch_frames_split_and_decode() {
        let obj = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"a": "b"}});
        let mut stream = encode_watch_event("ADDED", &obj).expect("frame");
        stream.extend(encode_watch_event("DELETED", &obj).expect("frame"));
        let (first, used) = split_watch_frame(&stream).expect("a whole frame");
        assert_eq!(
            decode_watch_event(&first).expect("event"),
            json!({"type": "ADDED", "object": obj})
        );
        let (second, _) = split_watch_frame(&stream[used..]).expect("a whole frame");
        assert_eq!(
            decode_watch_event(&second).expect("event")["type"],
            "DELETED"
        );
        assert!(split_watch_frame(&stream[..used - 1]).is_none());
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(parse_go_duration("1h0m0s"), Some(3_600_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
    }
}
