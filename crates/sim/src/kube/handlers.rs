//! HTTP routing: parses paths, query and bodies, calls the store, answers JSON,
//! Tables, watch streams and `Status` errors. (Faults and the journal are the shared layer's, in
//! front of this: [`crate::fault`].)

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, StatusCause, success_status};
use super::patch::PatchType;
use super::resource::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::server::ApiServer;
use super::store::{DeleteOpts, FieldValidation, Outcome, Propagation, Sub, WriteOpts};
use super::watch::{self, WatchParams};
use super::{apply, discovery, openapi, protobuf, table};
use crate::ServeHandle;
use std::net::SocketAddr;

pub use super::server::MAX_BODY;

impl ApiServer {
    /// The axum router serving the whole API, with the fault layer's control routes under `/_sim/`.
    pub fn router(&self) -> axum::Router {
        let api = axum::Router::new()
            .fallback(dispatch)
            .with_state(self.clone());
        crate::fault::control_routes(self.faults()).merge(crate::fault::wrap(api, self.faults()))
    }

    /// An in-process client (no sockets), default namespace "default".
    /// Must be called inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// Serves on a TCP address (use 127.0.0.1:0 for a free port).
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<ServeHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let server = self.clone();
        crate::serve_on(
            listener,
            self.router(),
            async move { server.drop_watches() },
        )
    }
}

type Query = HashMap<String, String>;

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The single entry point. Protobuf is translated here, on the way in and out, so that everything
/// behind works on JSON.
pub async fn dispatch(State(server): State<ApiServer>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut headers = req.headers().clone();
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let q: Query = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let pb_answer = prefers_protobuf(&headers);
    let body = match protobuf_body_as_json(&mut headers, body) {
        Ok(b) => b,
        Err(e) => return answer(e.into_response(), pb_answer).await,
    };
    let resp = match route(&server, &method, &path, &q, &headers, body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    answer(resp, pb_answer).await
}

/// A protobuf request body as JSON (and the Content-Type changed to say so).
fn protobuf_body_as_json(headers: &mut HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let is_pb = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(protobuf::is_protobuf);
    if !is_pb {
        return Ok(body);
    }
    let obj = protobuf::decode(&body).map_err(|e| match e {
        protobuf::ProtobufError::UnknownType { .. } => ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({e})"
            ),
        ),
        other => ApiError::bad_request(format!("the object provided is unrecognized: {other}")),
    })?;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()))
}

/// Whether the client asks for protobuf first (client-go sends
/// `application/vnd.kubernetes.protobuf,application/json` or `..., */*`).
fn prefers_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| protobuf::is_protobuf(first) && !first.contains("as="))
}

/// Whether an Accept header lets the server fall back to JSON.
fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|a| {
            a.split(',').any(|t| {
                let t = t.split(';').next().unwrap_or("").trim();
                t == "*/*" || t == "application/*" || t == "application/json"
            })
        })
}

/// A JSON answer in protobuf, when the client prefers it and the object has a protobuf form
/// (custom resources and discovery stay JSON, as kube-apiserver answers them to such clients).
async fn answer(resp: Response, protobuf_wanted: bool) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    if !protobuf_wanted || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return ApiError::internal("reading the answer").into_response();
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|v| {
            protobuf::supports(
                v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                v.get("kind").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .and_then(|v| protobuf::encode(&v).ok());
    match encoded {
        Some(pb) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(protobuf::MEDIA_TYPE),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(pb))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

async fn read_body(body: Body) -> ApiResult<Bytes> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

fn route(
    server: &ApiServer,
    method: &Method,
    path: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let read_only = *method == Method::GET || *method == Method::HEAD;
    let resources = || server.resources();
    let get_only = |v: Value| -> ApiResult<Response> {
        if read_only {
            Ok(json_response(StatusCode::OK, &v))
        } else {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )))
        }
    };
    match segs.as_slice() {
        ["version"] => get_only(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0",
            "gitCommit": "portvakt", "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
            "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"
        })),
        ["healthz" | "readyz" | "livez", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => get_only(discovery::core_versions()),
        ["apis"] => get_only(discovery::group_list(&resources())),
        ["api", v] => {
            let all = resources();
            if all.iter().any(|r| r.group.is_empty() && r.version == *v) {
                get_only(discovery::resource_list(&all, "", v))
            } else {
                Err(ApiError::no_route())
            }
        }
        ["apis", g] => {
            let list = discovery::group_list(&resources());
            let group = list
                .get("groups")
                .and_then(Value::as_array)
                .and_then(|gs| {
                    gs.iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(g))
                })
                .cloned()
                .ok_or_else(ApiError::no_route)?;
            let mut group = group;
            if let Some(o) = group.as_object_mut() {
                o.insert("kind".into(), json!("APIGroup"));
                o.insert("apiVersion".into(), json!("v1"));
            }
            get_only(group)
        }
        ["apis", g, v] => {
            let all = resources();
            if all.iter().any(|r| r.group == *g && r.version == *v) {
                get_only(discovery::resource_list(&all, g, v))
            } else {
                Err(ApiError::no_route())
            }
        }
        ["openapi", "v2"] if read_only => Ok(openapi::v2_document(headers)),
        ["openapi", "v3"] => get_only(openapi::v3_index(&resources())),
        ["openapi", "v3", "api", v] => openapi_gv(&resources(), "", v).and_then(get_only),
        ["openapi", "v3", "apis", g, v] => openapi_gv(&resources(), g, v).and_then(get_only),
        ["api", v, rest @ ..] => resource(server, method, "", v, rest, q, headers, body),
        ["apis", g, v, rest @ ..] => resource(server, method, g, v, rest, q, headers, body),
        _ => Err(ApiError::no_route()),
    }
}

fn openapi_gv(all: &[ResourceInfo], g: &str, v: &str) -> ApiResult<Value> {
    if all.iter().any(|r| r.group == g && r.version == v) {
        Ok(openapi::v3_group_version(all, g, v))
    } else {
        Err(ApiError::no_route())
    }
}

/// A parsed resource path.
struct Target<'a> {
    ns: Option<&'a str>,
    plural: &'a str,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(rest: &[&'a str]) -> ApiResult<Target<'a>> {
    let t = |ns, plural, name, sub| Target {
        ns,
        plural,
        name,
        sub,
    };
    Ok(match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            match tail {
                [] => t(Some(*ns), *plural, None, None),
                [name] => t(Some(*ns), *plural, Some(*name), None),
                [name, sub] => t(Some(*ns), *plural, Some(*name), Some(*sub)),
                _ => return Err(ApiError::no_route()),
            }
        }
        [plural] => t(None, *plural, None, None),
        [plural, name] => t(None, *plural, Some(*name), None),
        [plural, name, sub] => t(None, *plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    })
}

/// `ListOptions` validation, as kube-apiserver answers it (422 naming the option).
fn check_list_options(q: &Query, watching: bool) -> ApiResult<()> {
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv_match = q
        .get("resourceVersionMatch")
        .map(String::as_str)
        .unwrap_or("");
    let forbidden = |field: &str, message: &str| StatusCause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {message}"),
        field: field.into(),
    };
    let mut causes = Vec::new();
    if q.contains_key("sendInitialEvents") {
        if !watching {
            causes.push(forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        } else if rv_match != "NotOlderThan" {
            causes.push(forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
    }
    if !rv_match.is_empty() && rv.is_empty() && !(watching && q.contains_key("sendInitialEvents")) {
        causes.insert(
            0,
            forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ),
        );
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", causes))
}

fn flag(q: &Query, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

fn selectors(q: &Query, info: &ResourceInfo) -> ApiResult<Selectors> {
    Ok(Selectors {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(
            q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            &info.group,
            &info.plural,
        )?,
    })
}

/// `options`: the request's options kind (`CreateOptions`, `UpdateOptions`, `PatchOptions`), which
/// a bad option is reported against.
fn write_opts(
    q: &Query,
    headers: &HeaderMap,
    sub: Sub,
    raw: Option<Vec<u8>>,
    options: &str,
) -> ApiResult<WriteOpts> {
    let validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                options,
                "",
                vec![StatusCause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: \"{other}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                    ),
                    field: "fieldValidation".into(),
                }],
            ));
        }
    };
    let given = q.get("fieldManager").filter(|m| !m.is_empty());
    let manager = match given {
        Some(m) => m.clone(),
        None => headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    };
    Ok(WriteOpts {
        manager,
        manager_given: given.is_some(),
        sub,
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        validation,
        raw,
    })
}

fn parse_object(body: &[u8], content_type: Option<&str>) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if !ct.is_empty() && ct != "*/*" && !ct.ends_with("json") && !ct.ends_with("yaml") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct:?})"
            ),
        ));
    }
    let yaml = ct.ends_with("yaml");
    if yaml {
        apply::parse_body(body)
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type JSON or YAML): {e}"
            ))
        })
    }
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn outcome_response(o: Outcome, created: StatusCode) -> Response {
    let code = if o.created { created } else { StatusCode::OK };
    let mut resp = json_response(code, &o.object);
    for w in o.warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn propagation(policy: Option<&str>, orphan_dependents: bool) -> ApiResult<Option<Propagation>> {
    Ok(match policy {
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Background") => Some(Propagation::Background),
        None | Some("") if orphan_dependents => Some(Propagation::Orphan),
        None | Some("") => None,
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![StatusCause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                    field: "propagationPolicy".into(),
                }],
            ));
        }
    })
}

fn delete_opts(q: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts {
        propagation: propagation(
            q.get("propagationPolicy").map(String::as_str),
            flag(q, "orphanDependents"),
        )?
        .unwrap_or_default(),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        ..DeleteOpts::default()
    };
    if !body.is_empty() {
        // client-go's typed clients send DeleteOptions in protobuf, with or without saying so.
        let v: Value = if body.starts_with(b"k8s\0") {
            protobuf::decode(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        if let Some(p) = propagation(
            v.get("propagationPolicy").and_then(Value::as_str),
            v.get("orphanDependents").and_then(Value::as_bool) == Some(true),
        )? {
            o.propagation = p;
        }
        o.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
    }
    Ok(o)
}

#[allow(clippy::too_many_arguments)]
fn resource(
    server: &ApiServer,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let t = parse_target(rest)?;
    let info = server
        .lock()
        .registry
        .find(group, version, t.plural)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if !info.namespaced && t.ns.is_some() {
        return Err(ApiError::no_route());
    }
    let ns = if info.namespaced { t.ns } else { None };
    let sub = match t.sub {
        None => Sub::Main,
        Some("status") if info.status_subresource => Sub::Status,
        Some(_) => return Err(ApiError::no_route()),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if prefers_protobuf(headers)
        && !accepts_json(headers)
        && !protobuf::supports(&info.api_version(), &info.kind)
    {
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml, application/json;stream=watch",
        ));
    }
    match (method.clone(), t.name) {
        (Method::GET, Some(name)) => {
            let store = server.lock();
            let obj = store.get(&info, ns, name)?;
            if wants_table(headers) {
                let rv = store.current_rv().to_string();
                drop(store);
                let now = server.clock().now();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(&info, &[obj], &rv, now),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::GET, None) => {
            let sel = selectors(q, &info)?;
            let watching = flag(q, "watch");
            check_list_options(q, watching)?;
            if watching {
                let timeout = q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs);
                let encoding = if wants_table(headers) {
                    watch::Encoding::Table
                } else if prefers_protobuf(headers)
                    && protobuf::supports(&info.api_version(), &info.kind)
                {
                    watch::Encoding::Protobuf
                } else {
                    watch::Encoding::Json
                };
                let params = WatchParams {
                    resource_version: q.get("resourceVersion").cloned(),
                    timeout,
                    bookmarks: flag(q, "allowWatchBookmarks"),
                    send_initial_events: flag(q, "sendInitialEvents"),
                    selectors: sel,
                    encoding,
                };
                return Ok(watch::watch(server, info, ns.map(str::to_string), params));
            }
            let limit = match q.get("limit").filter(|l| !l.is_empty()) {
                Some(l) => Some(
                    l.parse::<usize>()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
                ),
                None => None,
            };
            let list = server.lock().list(
                &info,
                ns,
                &sel,
                limit,
                q.get("continue").map(String::as_str),
            )?;
            if wants_table(headers) {
                let items: Vec<Value> = list
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let rv = list
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let mut t = table::to_table(&info, &items, &rv, server.clock().now());
                if let Some(c) = list.pointer("/metadata/continue").filter(|c| *c != "")
                    && let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.insert("continue".into(), c.clone());
                }
                return Ok(json_response(StatusCode::OK, &t));
            }
            Ok(json_response(StatusCode::OK, &list))
        }
        (Method::POST, None) => {
            if sub != Sub::Main {
                return Err(ApiError::no_route());
            }
            let obj = parse_object(&body, content_type)?;
            let opts = write_opts(q, headers, sub, Some(body.to_vec()), "CreateOptions")?;
            let o = server.lock().create(&info, ns, obj, &opts)?;
            Ok(outcome_response(o, StatusCode::CREATED))
        }
        (Method::PUT, Some(name)) => {
            let obj = parse_object(&body, content_type)?;
            let opts = write_opts(q, headers, sub, Some(body.to_vec()), "UpdateOptions")?;
            let o = server.lock().update(&info, ns, name, obj, &opts)?;
            Ok(outcome_response(o, StatusCode::CREATED))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type.unwrap_or("");
            let ptype = PatchType::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let opts = write_opts(q, headers, sub, None, "PatchOptions")?;
            let force = flag(q, "force");
            let o = server
                .lock()
                .patch(&info, ns, name, ptype, &body, force, &opts)?;
            Ok(outcome_response(o, StatusCode::CREATED))
        }
        (Method::DELETE, Some(name)) => {
            if sub != Sub::Main {
                return Err(ApiError::method_not_allowed(
                    "delete is not supported on subresources",
                ));
            }
            let opts = delete_opts(q, &body)?;
            let (last, at_once) = server.lock().delete(&info, ns, name, &opts)?;
            // Gone at once: a Status; still there (finalizers, namespaces): the object.
            if at_once {
                let uid = last
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Ok(json_response(
                    StatusCode::OK,
                    &success_status(&info.group, &info.plural, name, uid),
                ));
            }
            Ok(json_response(StatusCode::OK, &last))
        }
        (Method::DELETE, None) => {
            let sel = selectors(q, &info)?;
            let opts = delete_opts(q, &body)?;
            let list = server.lock().delete_collection(&info, ns, &sel, &opts)?;
            Ok(json_response(StatusCode::OK, &list))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}
