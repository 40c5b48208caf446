//! The CRDs in crds/ against the Rust types, liberator's CRDs, the shared examples and the validation rules.
//!
//! - `rust_types_match_the_crd_schemas`: the schemars schema of every Spec/Status type equals the YAML's
//!   openAPIV3Schema path by path (property names, types, required, enums, defaults): fails on drift.
//! - `crds_are_a_superset_of_liberator`: every liberator key and constraint is present unchanged; the only
//!   additions are the documented ones.
//! - `crds_yaml_is_what_crds_dir_holds`: `portvakt crds` prints exactly crds/.
//! - examples deserialize (and round-trip losslessly) into the Rust types; the validation table of
//!   `crd_testdata` is checked against the embedded API server's schema validation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use portvakt::crd::{
    self, AzureAdApplication, AzureAdApplicationSpec, AzureAdApplicationStatus, DigdiratorStatus,
    IDPortenClient, IDPortenClientSpec, MaskinportenClient, MaskinportenClientSpec,
};
use schemars::JsonSchema;

use crate::crd_testdata as testdata;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test data: liberator's CRDs and the example manifests (copies, see tests/data/README.md).
fn shared(sub: &str) -> PathBuf {
    repo().join("tests/data").join(sub)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Our CRD (as JSON) of one kind.
fn our_crd(kind: &str) -> Value {
    for (file, yaml) in crd::crd_files() {
        let v = crd::crd_value(file, yaml).unwrap();
        if v["spec"]["names"]["kind"] == kind {
            return v;
        }
    }
    panic!("no CRD for {kind} in crds/")
}

fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

// ---------------------------------------------------------------------------------------------------
// Rust types <-> YAML schema

fn rust_schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// Strips `null` alternatives and nullable markers from a schemars node.
fn normalize(node: &Value) -> Value {
    let mut n = node.clone();
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = n.get(key).and_then(Value::as_array).cloned() {
            let non_null: Vec<Value> = alts
                .into_iter()
                .filter(|a| a.get("type") != Some(&json!("null")))
                .collect();
            if non_null.len() == 1 {
                let mut inner = normalize(&non_null[0]);
                if let (Some(o), Some(d)) = (inner.as_object_mut(), n.get("default")) {
                    o.insert("default".into(), d.clone());
                }
                return inner;
            }
            // An enum whose variants are documented: oneOf of const/enum branches.
            let mut values = Vec::new();
            for a in &non_null {
                if let Some(c) = a.get("const") {
                    values.push(c.clone());
                } else if let Some(e) = a.get("enum").and_then(Value::as_array) {
                    values.extend(e.iter().cloned());
                } else {
                    panic!("unsupported {key} in Rust schema: {node}");
                }
            }
            if let Some(o) = n.as_object_mut() {
                o.remove(key);
                o.insert("type".into(), json!("string"));
                o.insert("enum".into(), Value::Array(values));
            }
        }
    }
    if let Some(t) = n.get("type").and_then(Value::as_array).cloned() {
        let t: Vec<_> = t.into_iter().filter(|t| t != "null").collect();
        if t.len() == 1 {
            n["type"] = t[0].clone();
        }
    }
    if let Some(e) = n.get("enum").and_then(Value::as_array).cloned() {
        n["enum"] = Value::Array(e.into_iter().filter(|v| !v.is_null()).collect());
        if n.get("type").is_none() {
            n["type"] = json!("string");
        }
    }
    n
}

fn str_set(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn compare(path: &str, rust: &Value, yaml: &Value, errs: &mut Vec<String>) {
    let rust = normalize(rust);
    let (rt, yt) = (rust.get("type"), yaml.get("type"));
    if rt != yt {
        errs.push(format!("{path}: type {rt:?} in Rust, {yt:?} in crds/"));
        return;
    }
    // enums
    let (re, ye) = (str_set(rust.get("enum")), str_set(yaml.get("enum")));
    // k8s-openapi's `Condition.status` is a plain string; only the schema restricts it.
    let schema_only_enum = path.ends_with(".status.conditions[].status") && re.is_empty();
    if re != ye && !schema_only_enum {
        errs.push(format!("{path}: enum {re:?} in Rust, {ye:?} in crds/"));
    }
    // defaults
    if let Some(yd) = yaml.get("default")
        && rust.get("default") != Some(yd)
    {
        errs.push(format!(
            "{path}: default {yd} in crds/, {:?} in Rust",
            rust.get("default")
        ));
    }
    // date-time strings
    if yaml.get("format") == Some(&json!("date-time")) && rust.get("format") != yaml.get("format") {
        errs.push(format!("{path}: format date-time in crds/, not in Rust"));
    }
    match yt.and_then(Value::as_str) {
        Some("object") => {
            let empty = serde_json::Map::new();
            let rp = rust
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let yp = yaml
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let rk: BTreeSet<_> = rp.keys().collect();
            let yk: BTreeSet<_> = yp.keys().collect();
            for k in rk.difference(&yk) {
                errs.push(format!("{path}.{k}: in Rust, not in crds/"));
            }
            for k in yk.difference(&rk) {
                errs.push(format!("{path}.{k}: in crds/, not in Rust"));
            }
            let (rr, yr) = (str_set(rust.get("required")), str_set(yaml.get("required")));
            if rr != yr {
                errs.push(format!("{path}: required {rr:?} in Rust, {yr:?} in crds/"));
            }
            for (k, y) in yp {
                if let Some(r) = rp.get(k) {
                    compare(&format!("{path}.{k}"), r, y, errs);
                }
            }
        }
        Some("array") => compare(&format!("{path}[]"), &rust["items"], &yaml["items"], errs),
        _ => {}
    }
}

fn drift<Spec: JsonSchema, Status: JsonSchema>(kind: &str) -> Vec<String> {
    let crd = our_crd(kind);
    let schema = schema_of(&crd);
    let mut errs = Vec::new();
    compare(
        &format!("{kind}.spec"),
        &rust_schema::<Spec>(),
        &schema["properties"]["spec"],
        &mut errs,
    );
    compare(
        &format!("{kind}.status"),
        &rust_schema::<Status>(),
        &schema["properties"]["status"],
        &mut errs,
    );
    errs
}

#[test]
fn rust_types_match_the_crd_schemas() {
    let mut errs = drift::<IDPortenClientSpec, DigdiratorStatus>("IDPortenClient");
    errs.extend(drift::<MaskinportenClientSpec, DigdiratorStatus>(
        "MaskinportenClient",
    ));
    errs.extend(drift::<AzureAdApplicationSpec, AzureAdApplicationStatus>(
        "AzureAdApplication",
    ));
    assert!(
        errs.is_empty(),
        "Rust types and crds/ drifted apart:\n{}",
        errs.join("\n")
    );
}

#[test]
fn drift_detection_notices_a_missing_field() {
    // The comparison itself must catch drift: compare a Spec against another kind's schema.
    let errs = {
        let crd = our_crd("MaskinportenClient");
        let mut errs = Vec::new();
        compare(
            "x",
            &rust_schema::<IDPortenClientSpec>(),
            &schema_of(&crd)["properties"]["spec"],
            &mut errs,
        );
        errs
    };
    assert!(
        errs.iter()
            .any(|e| e.contains("x.redirectURIs: in Rust, not in crds/"))
    );
    assert!(errs.iter().any(|e| e.contains("x.scopes: type")));
}

#[test]
fn derived_resource_names_match_the_crds() {
    for (derived, kind) in [
        (IDPortenClient::crd(), "IDPortenClient"),
        (MaskinportenClient::crd(), "MaskinportenClient"),
        (AzureAdApplication::crd(), "AzureAdApplication"),
    ] {
        let ours: CustomResourceDefinition =
            serde_json::from_value(our_crd(kind)).expect("typed CRD");
        assert_eq!(derived.metadata.name, ours.metadata.name, "{kind}");
        assert_eq!(derived.spec.group, ours.spec.group, "{kind}");
        assert_eq!(derived.spec.scope, ours.spec.scope, "{kind}");
        assert_eq!(derived.spec.names.plural, ours.spec.names.plural, "{kind}");
        assert_eq!(
            derived.spec.names.singular, ours.spec.names.singular,
            "{kind}"
        );
        assert_eq!(
            derived.spec.names.short_names, ours.spec.names.short_names,
            "{kind}"
        );
        assert_eq!(derived.spec.names.kind, ours.spec.names.kind, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------------
// crds/ versus liberator

/// Flattens a JSON document into leaf path -> value, leaving out `description` texts.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                if k == "description" {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

const STATUS: &str = "spec.versions[0].schema.openAPIV3Schema.properties.status.properties";

#[test]
fn crds_are_a_superset_of_liberator() {
    let dir = shared("liberator-crds");
    let files = yaml_files(&dir);
    assert_eq!(
        files.len(),
        3,
        "expected liberator's three CRDs in {}",
        dir.display()
    );
    for file in files {
        let theirs = load_yaml(&file);
        let kind = theirs["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ours = our_crd(&kind);
        let (mut t, mut o) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &theirs, &mut t);
        flatten("", &ours, &mut o);
        // 1. Everything liberator has, unchanged (types, required, defaults, enums, patterns, bounds, list
        //    keys, CEL rules and messages, printer columns, names, subresources).
        for (path, value) in &t {
            match o.get(path) {
                Some(v) if v == value => {}
                other => panic!("{kind}: {path} is {value} in liberator, {other:?} in crds/"),
            }
        }
        // 2. Additions only where documented.
        let columns = theirs["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .map_or(0, Vec::len);
        let mut allowed = vec![
            "metadata.annotations.portvakt/derived-from".to_string(),
            format!("spec.versions[0].additionalPrinterColumns[{columns}]."),
            format!("{STATUS}.conditions.x-kubernetes-list-"),
        ];
        if kind == "AzureAdApplication" {
            allowed.push(format!("{STATUS}.conditions."));
            allowed.push(format!("{STATUS}.observedGeneration."));
            allowed.push(
                "spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.secretProtected."
                    .to_string(),
            );
        }
        let extra: Vec<_> = o
            .keys()
            .filter(|p| !t.contains_key(*p))
            .filter(|p| !allowed.iter().any(|a| p.starts_with(a.as_str())))
            .collect();
        assert!(
            extra.is_empty(),
            "{kind}: undocumented additions: {extra:#?}"
        );
        // 3. The additions are the intended ones.
        let col = &ours["spec"]["versions"][0]["additionalPrinterColumns"][columns];
        assert_eq!(col["name"], "Ready", "{kind}");
        assert_eq!(
            col["jsonPath"],
            ".status.conditions[?(@.type==\"Ready\")].status"
        );
        let cond = &schema_of(&ours)["properties"]["status"]["properties"]["conditions"];
        assert_eq!(cond["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            cond["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
        assert_eq!(
            str_set(cond["items"].get("required")),
            ["lastTransitionTime", "message", "reason", "status", "type"]
                .map(String::from)
                .into()
        );
        assert!(cond["items"]["properties"]["observedGeneration"].is_object());
        let og = &schema_of(&ours)["properties"]["status"]["properties"]["observedGeneration"];
        assert_eq!(og["type"], "integer", "{kind}");
    }
}

#[test]
fn crds_yaml_is_what_crds_dir_holds() {
    let files = yaml_files(&repo().join("crds"));
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let embedded: Vec<&str> = crd::crd_files().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, embedded, "crds/ and the embedded file list differ");
    let mut on_disk = String::new();
    for (path, (_, yaml)) in files.iter().zip(crd::crd_files()) {
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text, yaml, "{} is stale in the binary", path.display());
        on_disk.push_str(&text);
    }
    assert_eq!(crd::crds_yaml(), on_disk);
    // The stream parses back into the three CRDs.
    let typed = crd::crds().expect("crds/ parses");
    assert_eq!(typed.len(), 3);
    for c in &typed {
        let v = c.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        assert!(v.is_some(), "{} has a schema", c.spec.names.kind);
    }
}

// ---------------------------------------------------------------------------------------------------
// Examples and manifests into the Rust types

fn roundtrip<K: serde::de::DeserializeOwned + serde::Serialize>(name: &str, v: &Value) {
    let typed: K = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{name} does not deserialize: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    // The API server applies the schema default `integrationType: idporten`; the Rust type does too.
    let mut expected = v["spec"].clone();
    if v["kind"] == "IDPortenClient"
        && let Some(spec) = expected.as_object_mut()
    {
        spec.entry("integrationType").or_insert(json!("idporten"));
    }
    assert_eq!(
        back["spec"], expected,
        "{name}: spec changed in a round trip through the Rust types"
    );
}

fn into_types(name: &str, v: &Value) {
    match v["kind"].as_str() {
        Some("IDPortenClient") => roundtrip::<IDPortenClient>(name, v),
        Some("MaskinportenClient") => roundtrip::<MaskinportenClient>(name, v),
        Some("AzureAdApplication") => roundtrip::<AzureAdApplication>(name, v),
        other => panic!("{name}: unexpected kind {other:?}"),
    }
}

#[test]
fn shared_examples_deserialize_into_the_rust_types() {
    let files = yaml_files(&shared("examples"));
    assert!(files.len() >= 5, "expected the shared examples");
    for f in files {
        into_types(&f.display().to_string(), &load_yaml(&f));
    }
}

#[test]
fn accepted_manifests_deserialize_into_the_rust_types() {
    for (name, m) in testdata::valid_manifests() {
        into_types(name, &m);
    }
}

#[test]
fn typed_values_serialize_in_liberator_field_order() {
    // digdirator hashes the Go JSON of the spec; serde must emit the same key order.
    let spec = IDPortenClientSpec {
        secret_name: "s".into(),
        redirect_uris: Some(vec!["https://test.com".into()]),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        r#"{"integrationType":"idporten","redirectURIs":["https://test.com"],"secretName":"s"}"#
    );
}

// ---------------------------------------------------------------------------------------------------
// Validation table against the embedded API server's schema validation

use portvakt_sim::kube::schema::{prune_and_default, validate};

fn check(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    let crd = our_crd(kind);
    let schema = schema_of(&crd);
    let mut obj = obj.clone();
    prune_and_default(schema, &mut obj);
    let old = old.map(|o| {
        let mut o = o.clone();
        prune_and_default(schema, &mut o);
        o
    });
    validate(schema, &obj, old.as_ref())
        .into_iter()
        .map(|c| (c.field, c.message))
        .collect()
}

fn kind_of(v: &Value) -> String {
    v["kind"].as_str().unwrap_or_default().to_string()
}

#[test]
fn every_liberator_rule_rejects_its_manifest_naming_the_field() {
    let mut failures = Vec::new();
    let cases = testdata::invalid_manifests()
        .into_iter()
        .map(|(n, m, f)| (n, None, m, f))
        .chain(
            testdata::invalid_updates()
                .into_iter()
                .map(|(n, old, new, f)| (n, Some(old), new, f)),
        )
        .chain(
            testdata::invalid_statuses()
                .into_iter()
                .map(|(n, m, f)| (n, None, m, f)),
        );
    for (name, old, manifest, field) in cases {
        let causes = check(&kind_of(&manifest), &manifest, old.as_ref());
        if !causes.iter().any(|(f, _)| f == field) {
            failures.push(format!(
                "{name}: expected an error at {field}, got {causes:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_examples_and_accepted_manifests_pass_validation() {
    let mut all: Vec<(String, Value)> = yaml_files(&shared("examples"))
        .into_iter()
        .map(|f| (f.display().to_string(), load_yaml(&f)))
        .collect();
    all.extend(
        testdata::valid_manifests()
            .into_iter()
            .map(|(n, m)| (n.to_string(), m)),
    );
    let mut failures = Vec::new();
    for (name, m) in &all {
        let causes = check(&kind_of(m), m, None);
        if !causes.is_empty() {
            failures.push(format!("{name}: {causes:?}"));
        }
    }
    for (name, old, new) in testdata::valid_updates() {
        let causes = check(&kind_of(&new), &new, Some(&old));
        if !causes.is_empty() {
            failures.push(format!("{name}: {causes:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_written_status_passes_the_status_schema() {
    // What the condition policy writes is accepted by the CRD (reason pattern, keyed list, generation).
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let mut conds = Vec::new();
    portvakt::conditions::ready(&mut conds, "Resource is up-to-date", Some(2), now);
    portvakt::conditions::set_error(&mut conds, None, Some(2), now);
    portvakt::conditions::set_degraded(
        &mut conds,
        portvakt::conditions::PRE_AUTHORIZED_APPS_NOT_FOUND,
        Some("app cluster:ns:a not found"),
        "",
        Some(2),
        now,
    );
    let status = AzureAdApplicationStatus {
        conditions: Some(conds.clone()),
        observed_generation: Some(2),
        client_id: Some("c".into()),
        ..Default::default()
    };
    let mut obj = testdata::azure("z", json!({ "secretName": "s" }));
    obj["status"] = serde_json::to_value(&status).unwrap();
    assert_eq!(check("AzureAdApplication", &obj, None), vec![]);
    let status = DigdiratorStatus {
        conditions: Some(conds),
        observed_generation: Some(2),
        ..Default::default()
    };
    let mut obj = testdata::idporten("a", json!({ "secretName": "s" }));
    obj["status"] = serde_json::to_value(&status).unwrap();
    assert_eq!(check("IDPortenClient", &obj, None), vec![]);
}
