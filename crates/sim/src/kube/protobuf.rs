//! Reading the few Kubernetes protobuf request bodies real clients send to a JSON server: client-go's typed
//! clientset writes `application/vnd.kubernetes.protobuf`, so Helm's release storage (Secrets), `kubectl
//! create namespace|secret|configmap` and their `DeleteOptions` arrive that way. Answers stay JSON (clients
//! accept it).
//!
//! The body is the `k8s\0` magic, then a `runtime.Unknown` (`typeMeta` 1, `raw` 2) whose `raw` is the object
//! in the field numbers of k8s.io/api's generated.proto. Secret, ConfigMap, Namespace and DeleteOptions are
//! understood (fields clients set; unknown fields are skipped); any other kind is refused with 415.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

/// The content type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// Whether `body` starts with the Kubernetes protobuf envelope.
pub fn is_envelope(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// One field of a protobuf message: varint or length-delimited (the only wire types these messages use;
/// fixed-width values are skipped).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

fn bad(problem: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is malformed: {problem}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> ApiResult<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> ApiResult<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let wire = match wire_type {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(bad)?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or_else(|| bad("length past the end"))?;
                let bytes = &buf[pos..end];
                pos = end;
                Wire::Bytes(bytes)
            }
            1 => {
                pos += 8;
                Wire::Skipped
            }
            5 => {
                pos += 4;
                Wire::Skipped
            }
            other => return Err(bad(format!("wire type {other}"))),
        };
        out.push((number, wire));
    }
    if pos > buf.len() {
        return Err(bad("fixed-width value past the end"));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> ApiResult<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("a string is not UTF-8"))
}

/// A `map<string, V>` entry (`key` 1, `value` 2).
fn map_entry(bytes: &[u8]) -> ApiResult<(String, &[u8])> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, w) in fields(bytes)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_text(map: &mut Map<String, Value>, name: &str, entry: &[u8]) -> ApiResult<()> {
    let (k, v) = map_entry(entry)?;
    let sub = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
    if let Some(sub) = sub.as_object_mut() {
        sub.insert(k, Value::String(text(v)?));
    }
    Ok(())
}

fn insert_bytes(map: &mut Map<String, Value>, name: &str, entry: &[u8]) -> ApiResult<()> {
    let (k, v) = map_entry(entry)?;
    let sub = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
    if let Some(sub) = sub.as_object_mut() {
        sub.insert(k, Value::String(STANDARD.encode(v)));
    }
    Ok(())
}

fn push_text(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) -> ApiResult<()> {
    let list = map.entry(name).or_insert_with(|| Value::Array(vec![]));
    if let Some(list) = list.as_array_mut() {
        list.push(Value::String(text(bytes)?));
    }
    Ok(())
}

/// `meta.v1.Time` (`seconds` 1) as RFC 3339.
fn time(bytes: &[u8]) -> ApiResult<Value> {
    let mut seconds = 0i64;
    for (n, w) in fields(bytes)? {
        if let (1, Wire::Varint(v)) = (n, w) {
            seconds = v as i64;
        }
    }
    let t = jiff::Timestamp::from_second(seconds).map_err(bad)?;
    Ok(Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn owner_reference(bytes: &[u8]) -> ApiResult<Value> {
    let mut o = Map::new();
    for (n, w) in fields(bytes)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => drop(o.insert("kind".into(), text(b)?.into())),
            (3, Wire::Bytes(b)) => drop(o.insert("name".into(), text(b)?.into())),
            (4, Wire::Bytes(b)) => drop(o.insert("uid".into(), text(b)?.into())),
            (5, Wire::Bytes(b)) => drop(o.insert("apiVersion".into(), text(b)?.into())),
            (6, Wire::Varint(v)) => drop(o.insert("controller".into(), (v != 0).into())),
            (7, Wire::Varint(v)) => drop(o.insert("blockOwnerDeletion".into(), (v != 0).into())),
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// `meta.v1.ObjectMeta`; managedFields are left to the server.
fn object_meta(bytes: &[u8]) -> ApiResult<Value> {
    let mut m = Map::new();
    for (n, w) in fields(bytes)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => drop(m.insert("name".into(), text(b)?.into())),
            (2, Wire::Bytes(b)) => drop(m.insert("generateName".into(), text(b)?.into())),
            (3, Wire::Bytes(b)) => drop(m.insert("namespace".into(), text(b)?.into())),
            (5, Wire::Bytes(b)) => drop(m.insert("uid".into(), text(b)?.into())),
            (6, Wire::Bytes(b)) => drop(m.insert("resourceVersion".into(), text(b)?.into())),
            (8, Wire::Bytes(b)) => drop(m.insert("creationTimestamp".into(), time(b)?)),
            (11, Wire::Bytes(b)) => insert_text(&mut m, "labels", b)?,
            (12, Wire::Bytes(b)) => insert_text(&mut m, "annotations", b)?,
            (13, Wire::Bytes(b)) => {
                let list = m
                    .entry("ownerReferences")
                    .or_insert_with(|| Value::Array(vec![]));
                if let Some(list) = list.as_array_mut() {
                    list.push(owner_reference(b)?);
                }
            }
            (14, Wire::Bytes(b)) => push_text(&mut m, "finalizers", b)?,
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn secret(raw: &[u8], obj: &mut Map<String, Value>) -> ApiResult<()> {
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            (2, Wire::Bytes(b)) => insert_bytes(obj, "data", b)?,
            (3, Wire::Bytes(b)) => drop(obj.insert("type".into(), text(b)?.into())),
            (4, Wire::Bytes(b)) => insert_text(obj, "stringData", b)?,
            (5, Wire::Varint(v)) => drop(obj.insert("immutable".into(), (v != 0).into())),
            _ => {}
        }
    }
    Ok(())
}

fn config_map(raw: &[u8], obj: &mut Map<String, Value>) -> ApiResult<()> {
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            (2, Wire::Bytes(b)) => insert_text(obj, "data", b)?,
            (3, Wire::Bytes(b)) => insert_bytes(obj, "binaryData", b)?,
            (4, Wire::Varint(v)) => drop(obj.insert("immutable".into(), (v != 0).into())),
            _ => {}
        }
    }
    Ok(())
}

fn namespace(raw: &[u8], obj: &mut Map<String, Value>) -> ApiResult<()> {
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            (2, Wire::Bytes(b)) => {
                let mut spec = Map::new();
                for (n, w) in fields(b)? {
                    if let (1, Wire::Bytes(f)) = (n, w) {
                        push_text(&mut spec, "finalizers", f)?;
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(())
}

fn delete_options(raw: &[u8], obj: &mut Map<String, Value>) -> ApiResult<()> {
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Varint(v)) => drop(obj.insert("gracePeriodSeconds".into(), json!(v as i64))),
            (2, Wire::Bytes(b)) => {
                let mut p = Map::new();
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(u)) => drop(p.insert("uid".into(), text(u)?.into())),
                        (2, Wire::Bytes(r)) => {
                            drop(p.insert("resourceVersion".into(), text(r)?.into()))
                        }
                        _ => {}
                    }
                }
                obj.insert("preconditions".into(), Value::Object(p));
            }
            (3, Wire::Varint(v)) => drop(obj.insert("orphanDependents".into(), (v != 0).into())),
            (4, Wire::Bytes(b)) => drop(obj.insert("propagationPolicy".into(), text(b)?.into())),
            (5, Wire::Bytes(b)) => push_text(obj, "dryRun", b)?,
            _ => {}
        }
    }
    Ok(())
}

/// The JSON form of a protobuf-encoded request body.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(bad("no k8s\\0 envelope"));
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, w) in fields(envelope)? {
        match (n, w) {
            (1, Wire::Bytes(b)) => {
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(v)) => api_version = text(v)?,
                        (2, Wire::Bytes(k)) => kind = text(k)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    let raw = raw.unwrap_or_default();
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.clone().into());
    obj.insert("kind".into(), kind.clone().into());
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(raw, &mut obj)?,
        ("v1", "ConfigMap") => config_map(raw, &mut obj)?,
        ("v1", "Namespace") => namespace(raw, &mut obj)?,
        (_, "DeleteOptions") => delete_options(raw, &mut obj)?,
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the embedded API server reads protobuf bodies of v1 Secret, ConfigMap, Namespace and \
                     DeleteOptions only (got {api_version} {kind}); send application/json"
                ),
            ));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, number << 3 | 2);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, number << 3);
        put_varint(&mut out, value);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [field(1, k.as_bytes()), field(2, v)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    /// A Secret as Helm's storage driver writes it (name, labels, data, type), with an unknown field.
    #[test]
    fn a_helm_release_secret_reads_as_its_json_form() {
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
        let body = envelope("v1", "Secret", &raw);
        assert!(is_envelope(&body));
        assert_eq!(
            decode(&body).unwrap(),
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
    fn delete_options_namespaces_and_refusals() {
        let raw = [field(4, b"Background"), field(2, &field(1, b"uid-1"))].concat();
        assert_eq!(
            decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &raw)).unwrap(),
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions",
                   "propagationPolicy": "Background", "preconditions": {"uid": "uid-1"}})
        );
        let ns = [field(1, &field(1, b"team-a"))].concat();
        assert_eq!(
            decode(&envelope("v1", "Namespace", &ns)).unwrap()["metadata"]["name"],
            "team-a"
        );
        let e = decode(&envelope("apps/v1", "Deployment", b"")).unwrap_err();
        assert_eq!(e.code, 415);
        let truncated = envelope("v1", "Secret", &field(1, b"x"));
        let e = decode(&truncated[..truncated.len() - 1]).unwrap_err();
        assert!(e.message.contains("malformed"), "{}", e.message);
    }
}
