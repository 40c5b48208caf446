//! OpenAPI v3 documents as the API server publishes them (`/openapi/v3` and
//! `/openapi/v3/apis/{group}/{version}`), shaped for kubectl:
//! - kubectl trusts server-side field validation (and sends `fieldValidation=Strict`) when the document
//!   has a PATCH operation with the resource's `x-kubernetes-group-version-kind` and an inline `query`
//!   parameter named `fieldValidation` (client-go `QueryParamVerifierV3`). Every operation here has it.
//! - kubectl's client-side apply computes a strategic merge patch from the PATCH operation's
//!   `application/strategic-merge-patch+json` request schema when one is published. Custom resources
//!   must get a JSON merge patch (the server answers 415 to strategic merge), and built-ins only have
//!   permissive schemas here, so that media type is left out: kubectl then falls back to its compiled-in
//!   types for built-ins and to merge patch for custom resources.
//! - `components.schemas` holds the CRD's schema with `apiVersion`/`kind`/`metadata` refs and the
//!   `x-kubernetes-group-version-kind` extension (for `kubectl explain`); built-ins get a permissive
//!   object schema.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::resource::ResourceInfo;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The index path of a group/version: `api/v1` or `apis/{group}/{version}`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: one entry per served group/version; the hash changes whenever the document does, so
/// kubectl's cache (keyed by URL) never serves a stale document.
pub fn v3_index(resources: &[ResourceInfo]) -> Value {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for r in resources {
        let gv = (r.group.clone(), r.version.clone());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    gvs.sort();
    let mut paths = Map::new();
    for (g, v) in gvs {
        let doc = v3_group_version(resources, &g, &v);
        let hash = hex_upper(&Sha512::digest(doc.to_string().as_bytes()));
        let path = gv_path(&g, &v);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `GET /openapi/v2`: a Swagger 2.0 document without definitions, in the protobuf form client-go
/// asks for (gnostic's `openapi_v2.Document`) or as JSON. kubectl reads it only to validate the
/// items of a `kind: List` on the client; it skips kinds the document does not define, and the server
/// validates every item itself (kubectl sends each with `fieldValidation=Strict`, trusting the v3
/// documents above). Serving no definitions keeps one source of schemas: the v3 documents.
pub fn v2_document(headers: &http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    let wants_protobuf = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    let (title, version) = ("Kubernetes", "v1.34.0");
    if wants_protobuf {
        // Document { swagger = 1; info = 2 { title = 1; version = 2 } }, encoded by hand: two
        // strings and a nested message need no generated code.
        let field = |tag: u8, bytes: &[u8]| -> Vec<u8> {
            let mut out = vec![tag];
            prost::encoding::encode_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
            out
        };
        let mut info = field(0x0a, title.as_bytes());
        info.extend(field(0x12, version.as_bytes()));
        let mut doc = field(0x0a, b"2.0");
        doc.extend(field(0x12, &info));
        return ([(http::header::CONTENT_TYPE, PROTOBUF)], doc).into_response();
    }
    let doc = json!({"swagger": "2.0", "info": {"title": title, "version": version}, "paths": {}, "definitions": {}});
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The schema name prefix of a group the way Kubernetes names definitions: `io.k8s.api.core.v1`,
/// `io.k8s.api.apps.v1`, `io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1`, and reversed
/// domain names for custom groups (`io.nais.v1`).
fn definition_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        return format!("io.k8s.api.core.{version}");
    }
    if group == "apiextensions.k8s.io" {
        return format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}");
    }
    if let Some(short) = group.strip_suffix(".k8s.io") {
        let first = short.split('.').next().unwrap_or(short);
        return format!("io.k8s.api.{first}.{version}");
    }
    if !group.contains('.') {
        return format!("io.k8s.api.{group}.{version}");
    }
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}", parts.join("."))
}

/// `NaisIoV1` / `CoreV1` / `AppsV1` / `RbacAuthorizationV1`, as in operation ids.
fn op_group(group: &str, version: &str) -> String {
    let base = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    let mut out = String::new();
    for part in base.split(['.', '-']) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.extend(c.to_uppercase());
            out.push_str(cs.as_str());
        }
    }
    let mut cs = version.chars();
    if let Some(c) = cs.next() {
        out.extend(c.to_uppercase());
        out.push_str(cs.as_str());
    }
    out
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": ty, "uniqueItems": true}
    })
}

fn p_pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    )
}
fn p_dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
    )
}
fn p_field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    )
}
fn p_field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
    )
}
fn p_force() -> Value {
    query(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
    )
}
fn p_path(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true}
    })
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call.",
        ),
        query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        p_dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed.",
        ),
    ]
}

fn content(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema.clone()},
        "application/yaml": {"schema": schema},
    })
}

fn response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": content(schema)})
}

struct Op<'a> {
    r: &'a ResourceInfo,
    gvk: Value,
    obj_ref: Value,
    list_ref: Value,
    op_group: String,
}

impl Op<'_> {
    fn op(
        &self,
        action: &str,
        op_id: String,
        description: String,
        params: Vec<Value>,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("tags".into(), json!([lower_first(&self.op_group)]));
        m.insert("description".into(), json!(description));
        m.insert("operationId".into(), json!(op_id));
        if !params.is_empty() {
            m.insert("parameters".into(), json!(params));
        }
        m.insert("x-kubernetes-action".into(), json!(action));
        m.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        m
    }

    fn with_responses(mut m: Map<String, Value>, responses: Value) -> Value {
        // keep responses before the vendor extensions, like the real documents
        let action = m.remove("x-kubernetes-action");
        let gvk = m.remove("x-kubernetes-group-version-kind");
        m.insert("responses".into(), responses);
        if let Some(a) = action {
            m.insert("x-kubernetes-action".into(), a);
        }
        if let Some(g) = gvk {
            m.insert("x-kubernetes-group-version-kind".into(), g);
        }
        Value::Object(m)
    }

    fn body(&self, schema: Value) -> Value {
        json!({"content": {"*/*": {"schema": schema}}, "required": true})
    }

    fn patch_body(&self) -> Value {
        let p = schema_ref(PATCH);
        json!({
            "content": {
                "application/apply-patch+yaml": {"schema": p.clone()},
                "application/json-patch+json": {"schema": p.clone()},
                "application/merge-patch+json": {"schema": p},
            },
            "required": true
        })
    }

    fn list(&self, op_id: String, description: String) -> Value {
        let m = self.op("list", op_id, description, list_params());
        Self::with_responses(
            m,
            json!({"200": response("OK", self.list_ref.clone()), "401": {"description": "Unauthorized"}}),
        )
    }

    fn create(&self, op_id: String) -> Value {
        let mut m = self.op(
            "post",
            op_id,
            format!("create a {}", self.r.kind),
            vec![p_dry_run(), p_field_manager(), p_field_validation()],
        );
        m.insert("requestBody".into(), self.body(self.obj_ref.clone()));
        Self::with_responses(
            m,
            json!({
                "200": response("OK", self.obj_ref.clone()),
                "201": response("Created", self.obj_ref.clone()),
                "202": response("Accepted", self.obj_ref.clone()),
                "401": {"description": "Unauthorized"}
            }),
        )
    }

    fn delete_collection(&self, op_id: String) -> Value {
        let mut params = delete_params();
        params.extend(
            list_params()
                .into_iter()
                .filter(|p| p["name"] != "watch" && p["name"] != "allowWatchBookmarks"),
        );
        let mut m = self.op(
            "deletecollection",
            op_id,
            format!("delete collection of {}", self.r.kind),
            params,
        );
        m.insert(
            "requestBody".into(),
            json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}}),
        );
        Self::with_responses(
            m,
            json!({"200": response("OK", schema_ref(STATUS)), "401": {"description": "Unauthorized"}}),
        )
    }

    fn read(&self, op_id: String, what: &str) -> Value {
        let m = self.op(
            "get",
            op_id,
            format!("read {what} of the specified {}", self.r.kind),
            vec![],
        );
        Self::with_responses(
            m,
            json!({"200": response("OK", self.obj_ref.clone()), "401": {"description": "Unauthorized"}}),
        )
    }

    fn replace(&self, op_id: String, what: &str) -> Value {
        let mut m = self.op(
            "put",
            op_id,
            format!("replace {what} of the specified {}", self.r.kind),
            vec![p_dry_run(), p_field_manager(), p_field_validation()],
        );
        m.insert("requestBody".into(), self.body(self.obj_ref.clone()));
        Self::with_responses(
            m,
            json!({
                "200": response("OK", self.obj_ref.clone()),
                "201": response("Created", self.obj_ref.clone()),
                "401": {"description": "Unauthorized"}
            }),
        )
    }

    fn patch(&self, op_id: String, what: &str) -> Value {
        let mut m = self.op(
            "patch",
            op_id,
            format!("partially update {what} of the specified {}", self.r.kind),
            vec![
                p_dry_run(),
                p_field_manager(),
                p_field_validation(),
                p_force(),
            ],
        );
        m.insert("requestBody".into(), self.patch_body());
        Self::with_responses(
            m,
            json!({
                "200": response("OK", self.obj_ref.clone()),
                "201": response("Created", self.obj_ref.clone()),
                "401": {"description": "Unauthorized"}
            }),
        )
    }

    fn delete(&self, op_id: String) -> Value {
        let mut m = self.op(
            "delete",
            op_id,
            format!("delete a {}", self.r.kind),
            delete_params(),
        );
        m.insert(
            "requestBody".into(),
            json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}}),
        );
        Self::with_responses(
            m,
            json!({
                "200": response("OK", schema_ref(STATUS)),
                "202": response("Accepted", schema_ref(STATUS)),
                "401": {"description": "Unauthorized"}
            }),
        )
    }
}

fn lower_first(s: &str) -> String {
    let mut cs = s.chars();
    match cs.next() {
        Some(c) => c.to_lowercase().chain(cs).collect(),
        None => String::new(),
    }
}

/// `GET /openapi/v3/apis/{group}/{version}` (or `/openapi/v3/api/v1`).
pub fn v3_group_version(resources: &[ResourceInfo], group: &str, version: &str) -> Value {
    let prefix = definition_prefix(group, version);
    let og = op_group(group, version);
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let obj_name = format!("{prefix}.{}", r.kind);
        let list_name = format!("{prefix}.{}", r.list_kind);
        let gvk = json!({"group": group, "kind": r.kind, "version": version});
        let op = Op {
            r,
            gvk,
            obj_ref: schema_ref(&obj_name),
            list_ref: schema_ref(&list_name),
            op_group: og.clone(),
        };
        let kind = &r.kind;
        let ns = if r.namespaced { "Namespaced" } else { "" };
        let name_param = p_path("name", &format!("name of the {kind}"));
        let ns_param = p_path(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        );
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let mut scope_params = vec![];
        if r.namespaced {
            scope_params.push(ns_param.clone());
        }

        // collection
        let mut coll = Map::new();
        coll.insert(
            "get".into(),
            op.list(
                format!("list{og}{ns}{kind}"),
                format!("list or watch objects of kind {kind}"),
            ),
        );
        coll.insert("post".into(), op.create(format!("create{og}{ns}{kind}")));
        coll.insert(
            "delete".into(),
            op.delete_collection(format!("deletecollection{og}{ns}{kind}")),
        );
        let mut params = scope_params.clone();
        params.push(p_pretty());
        coll.insert("parameters".into(), json!(params));
        paths.insert(collection.clone(), Value::Object(coll));

        // item
        let mut item = Map::new();
        item.insert("get".into(), op.read(format!("read{og}{ns}{kind}"), ""));
        item.insert(
            "put".into(),
            op.replace(format!("replace{og}{ns}{kind}"), ""),
        );
        item.insert("delete".into(), op.delete(format!("delete{og}{ns}{kind}")));
        item.insert("patch".into(), op.patch(format!("patch{og}{ns}{kind}"), ""));
        let mut params = vec![name_param.clone()];
        params.extend(scope_params.clone());
        params.push(p_pretty());
        item.insert("parameters".into(), json!(params));
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));

        // status
        if r.status_subresource {
            let mut st = Map::new();
            st.insert(
                "get".into(),
                op.read(format!("read{og}{ns}{kind}Status"), "status"),
            );
            st.insert(
                "put".into(),
                op.replace(format!("replace{og}{ns}{kind}Status"), "status"),
            );
            st.insert(
                "patch".into(),
                op.patch(format!("patch{og}{ns}{kind}Status"), "status"),
            );
            st.insert("parameters".into(), json!(params));
            paths.insert(format!("{collection}/{{name}}/status"), Value::Object(st));
        }

        // all namespaces
        if r.namespaced {
            let mut all = Map::new();
            all.insert(
                "get".into(),
                op.list(
                    format!("list{og}{kind}ForAllNamespaces"),
                    format!("list or watch objects of kind {kind}"),
                ),
            );
            all.insert("parameters".into(), json!([p_pretty()]));
            paths.insert(format!("{base}/{}", r.plural), Value::Object(all));
        }

        schemas.insert(obj_name.clone(), object_schema(r));
        schemas.insert(list_name, list_schema(r, &obj_name));
    }
    for (name, schema) in meta_schemas() {
        schemas.insert(name.to_string(), schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}
            }
        }
    })
}

fn gvk_ext(r: &ResourceInfo, kind: &str) -> Value {
    json!([{"group": r.group, "kind": kind, "version": r.version}])
}

/// The published schema of one kind: the CRD's schema with `metadata` pointing at ObjectMeta, or a
/// permissive object for built-ins.
fn object_schema(r: &ResourceInfo) -> Value {
    let mut s = match &r.schema {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert(
                "description".into(),
                json!(format!("{} (schema not published by this server)", r.kind)),
            );
            m.insert("type".into(), json!("object"));
            m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            m
        }
    };
    s.entry("type").or_insert(json!("object"));
    let props = s.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(props) = props {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        props.insert(
            "metadata".into(),
            json!({
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                "allOf": [schema_ref(OBJECT_META)],
                "default": {}
            }),
        );
    }
    s.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk_ext(r, &r.kind),
    );
    Value::Object(s)
}

fn list_schema(r: &ResourceInfo, item: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {
                "type": "array",
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
                "items": {"allOf": [schema_ref(item)], "default": {}}
            },
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"description": "Standard list metadata.", "allOf": [schema_ref(LIST_META)], "default": {}}
        },
        "x-kubernetes-group-version-kind": gvk_ext(r, &r.list_kind)
    })
}

/// The apimachinery meta types the paths refer to (abridged to the fields clients use).
fn meta_schemas() -> Vec<(&'static str, Value)> {
    let string = || json!({"type": "string", "default": ""});
    let string_map =
        || json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    let time = || json!({"type": "string", "format": "date-time"});
    vec![
        (
            OBJECT_META,
            json!({
                "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
                "type": "object",
                "properties": {
                    "annotations": string_map(),
                    "creationTimestamp": time(),
                    "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                    "deletionTimestamp": time(),
                    "finalizers": {"type": "array", "items": string(), "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
                    "generateName": {"type": "string"},
                    "generation": {"type": "integer", "format": "int64"},
                    "labels": string_map(),
                    "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "x-kubernetes-list-type": "atomic"},
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "ownerReferences": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["apiVersion", "kind", "name", "uid"],
                            "properties": {
                                "apiVersion": string(),
                                "blockOwnerDeletion": {"type": "boolean"},
                                "controller": {"type": "boolean"},
                                "kind": string(),
                                "name": string(),
                                "uid": string()
                            },
                            "x-kubernetes-map-type": "atomic"
                        },
                        "x-kubernetes-list-map-keys": ["uid"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "uid",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "resourceVersion": {"type": "string"},
                    "selfLink": {"type": "string"},
                    "uid": {"type": "string"}
                }
            }),
        ),
        (
            LIST_META,
            json!({
                "description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
                "type": "object",
                "properties": {
                    "continue": {"type": "string"},
                    "remainingItemCount": {"type": "integer", "format": "int64"},
                    "resourceVersion": {"type": "string"},
                    "selfLink": {"type": "string"}
                }
            }),
        ),
        (
            STATUS,
            json!({
                "description": "Status is a return value for calls that don't return other objects.",
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "code": {"type": "integer", "format": "int32"},
                    "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "kind": {"type": "string"},
                    "message": {"type": "string"},
                    "metadata": {"allOf": [schema_ref(LIST_META)], "default": {}},
                    "reason": {"type": "string"},
                    "status": {"type": "string"}
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]
            }),
        ),
        (
            DELETE_OPTIONS,
            json!({
                "description": "DeleteOptions may be provided when deleting an API object.",
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "dryRun": {"type": "array", "items": string(), "x-kubernetes-list-type": "atomic"},
                    "gracePeriodSeconds": {"type": "integer", "format": "int64"},
                    "kind": {"type": "string"},
                    "orphanDependents": {"type": "boolean"},
                    "preconditions": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
                    "propagationPolicy": {"type": "string"}
                }
            }),
        ),
        (
            PATCH,
            json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object"
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::discovery::tests::sample;

    /// What client-go's `QueryParamVerifierV3` checks: a PATCH operation with the GVK extension and an
    /// inline `fieldValidation` query parameter, for every PATCH path of the kind.
    fn kubectl_trusts_field_validation(
        doc: &Value,
        group: &str,
        version: &str,
        kind: &str,
    ) -> bool {
        let gvk = json!({"group": group, "kind": kind, "version": version});
        let mut found = false;
        for (_, item) in doc["paths"].as_object().into_iter().flatten() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            if patch["x-kubernetes-group-version-kind"] != gvk {
                continue;
            }
            let ok = patch["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            });
            if !ok {
                return false;
            }
            found = true;
        }
        found
    }

    #[test]
    fn index_lists_group_versions_with_content_hashes() {
        let res = sample();
        let idx = v3_index(&res);
        let paths = idx["paths"].as_object().expect("paths");
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/nais.io/v1"));
        assert!(paths.contains_key("apis/example.com/v1beta1"));
        let url = paths["apis/nais.io/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        assert!(url.starts_with("/openapi/v3/apis/nais.io/v1?hash="));
        assert_eq!(url.len(), "/openapi/v3/apis/nais.io/v1?hash=".len() + 128);
        // The hash follows the document.
        let mut changed = res.clone();
        if let Some(r) = changed.iter_mut().find(|r| r.kind == "IDPortenClient") {
            r.short_names.clear();
            r.schema = Some(json!({"type": "object"}));
        }
        assert_ne!(
            v3_index(&changed)["paths"]["apis/nais.io/v1"],
            idx["paths"]["apis/nais.io/v1"]
        );
        assert_eq!(v3_index(&res), idx);
    }

    #[test]
    fn custom_resource_document() {
        let doc = v3_group_version(&sample(), "nais.io", "v1");
        assert_eq!(doc["openapi"], "3.0.0");
        let paths = doc["paths"].as_object().expect("paths");
        let coll = &paths["/apis/nais.io/v1/namespaces/{namespace}/idportenclients"];
        assert_eq!(coll["post"]["x-kubernetes-action"], "post");
        assert_eq!(
            coll["post"]["operationId"],
            "createNaisIoV1NamespacedIDPortenClient"
        );
        assert_eq!(
            coll["post"]["x-kubernetes-group-version-kind"],
            json!({"group": "nais.io", "kind": "IDPortenClient", "version": "v1"})
        );
        assert!(
            coll["post"]["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
        );
        let item = &paths["/apis/nais.io/v1/namespaces/{namespace}/idportenclients/{name}"];
        for verb in ["get", "put", "patch", "delete"] {
            assert!(item.get(verb).is_some(), "{verb}");
        }
        // custom resources never get a strategic merge patch
        let patch_types = item["patch"]["requestBody"]["content"]
            .as_object()
            .expect("content");
        assert!(!patch_types.contains_key("application/strategic-merge-patch+json"));
        assert!(patch_types.contains_key("application/merge-patch+json"));
        assert!(patch_types.contains_key("application/apply-patch+yaml"));
        assert!(
            paths.contains_key(
                "/apis/nais.io/v1/namespaces/{namespace}/idportenclients/{name}/status"
            )
        );
        assert!(paths.contains_key("/apis/nais.io/v1/idportenclients"));
        assert!(kubectl_trusts_field_validation(
            &doc,
            "nais.io",
            "v1",
            "IDPortenClient"
        ));

        let schema = &doc["components"]["schemas"]["io.nais.v1.IDPortenClient"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "nais.io", "kind": "IDPortenClient", "version": "v1"}])
        );
        assert_eq!(
            schema["properties"]["spec"]["required"],
            json!(["secretName"])
        );
        assert_eq!(
            schema["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        // every $ref resolves
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling ref {name}"
            );
        }
    }

    #[test]
    fn builtin_documents() {
        let core = v3_group_version(&sample(), "", "v1");
        assert!(kubectl_trusts_field_validation(&core, "", "v1", "Secret"));
        assert!(kubectl_trusts_field_validation(
            &core,
            "",
            "v1",
            "Namespace"
        ));
        let paths = core["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/secrets/{name}"));
        assert!(paths.contains_key("/api/v1/namespaces/{name}"));
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"]["operationId"],
            "patchCoreV1NamespacedSecret"
        );
        let secret = &core["components"]["schemas"]["io.k8s.api.core.v1.Secret"];
        assert_eq!(secret["x-kubernetes-preserve-unknown-fields"], true);
        let apps = v3_group_version(&sample(), "apps", "v1");
        assert!(kubectl_trusts_field_validation(
            &apps,
            "apps",
            "v1",
            "Deployment"
        ));
        assert!(
            apps["components"]["schemas"]
                .get("io.k8s.api.apps.v1.Deployment")
                .is_some()
        );
        assert_eq!(
            definition_prefix("rbac.authorization.k8s.io", "v1"),
            "io.k8s.api.rbac.v1"
        );
        assert_eq!(
            op_group("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
    }
}
