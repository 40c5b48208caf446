//! The Helm chart without Helm: it ships the same CRDs as crds/ (Helm installs a chart's crds/ folder first),
//! every value is in the schema (strict) and in the chart README with its default, and no organisation's
//! values are defaults. With Helm: `chart.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

#[test]
fn chart_crds_are_the_crds_portvakt_owns() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (file, yaml) in portvakt::crd::crd_files() {
        let path = repo.join("charts/portvakt/crds").join(file);
        let chart = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); copy crds/ into the chart",
                path.display()
            )
        });
        assert_eq!(
            chart,
            yaml,
            "{} differs from crds/{file}: copy crds/ into the chart",
            path.display()
        );
    }
}

/// A dotted path (`digdir.adminKey.kid`) → its node in values.yaml, walked along the schema: a node is a leaf
/// when its schema lists no `properties` (a scalar, a list, or a free-form map such as `podAnnotations`).
fn value_leaves(values: &Value, schema: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        out.push((prefix.to_string(), values.clone()));
        return;
    };
    let values = values.as_object().cloned().unwrap_or_default();
    let keys: BTreeSet<&String> = props.keys().chain(values.keys()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if path == "global" {
            continue;
        }
        let (Some(value), Some(sub)) = (values.get(key), props.get(key)) else {
            panic!(
                "{path}: in {} but not in {}",
                if values.contains_key(key) {
                    "values.yaml"
                } else {
                    "values.schema.json"
                },
                if values.contains_key(key) {
                    "values.schema.json"
                } else {
                    "values.yaml"
                }
            );
        };
        value_leaves(value, sub, &path, out);
    }
}

fn chart_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/portvakt")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every object of the schema refuses unknown keys, so a typo (`replicaCount`) fails instead of being ignored.
fn assert_strict(schema: &Value, path: &str) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{path} accepts unknown keys"
        );
        for (k, sub) in props {
            if k != "global" {
                assert_strict(sub, &format!("{path}.{k}"));
            }
        }
    }
}

#[test]
fn every_value_is_in_the_schema_and_the_readme_with_its_default() {
    let values: Value = serde_saphyr::from_str(&chart_file("values.yaml")).expect("values.yaml");
    let schema: Value =
        serde_json::from_str(&chart_file("values.schema.json")).expect("values.schema.json");
    assert_strict(&schema, "values");
    assert!(
        schema["properties"]["global"].is_object(),
        "parent charts pass `global`"
    );
    let mut leaves = Vec::new();
    value_leaves(&values, &schema, "", &mut leaves);
    assert!(leaves.len() > 60, "{} values", leaves.len());

    let readme = chart_file("README.md");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").collect())
        .collect();
    for (path, value) in &leaves {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("| `{path}`"))
            .unwrap_or_else(|| panic!("charts/portvakt/README.md has no row for `{path}`"));
        let default = row.get(1).copied().unwrap_or_default();
        let expected = match value {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        if let Some(expected) = expected {
            assert!(
                default.contains(&format!("`{expected}`")),
                "README says the default of {path} is {default}, values.yaml {expected}"
            );
        } else if value.as_str() == Some("") {
            assert!(
                default == "`\"\"`" || default.starts_with("required"),
                "README says the default of {path} is {default}, values.yaml \"\""
            );
        }
    }
}

#[test]
fn no_organisations_values_are_defaults() {
    let mut files = vec!["values.yaml".to_string(), "values.schema.json".to_string()];
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/portvakt/templates");
    for entry in std::fs::read_dir(&templates).expect("templates") {
        let name = entry.expect("entry").file_name();
        files.push(format!("templates/{}", name.to_string_lossy()));
    }
    for file in files {
        let text = chart_file(&file);
        for org in ["ARBEIDS- OG VELFERDSETATEN", "nav.no", "nav:test", "nav:"] {
            assert!(!text.contains(org), "{file} holds NAV's {org:?}");
        }
    }
    for ci in ["default", "entra", "kid", "kms", "nav"] {
        chart_file(&format!("ci/{ci}-values.yaml"));
    }
}

#[test]
fn the_chart_passes_every_setting_of_portvakt_run() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["run", "--help"])
        .output()
        .expect("portvakt run --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let vars: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .collect();
    assert!(vars.len() > 10, "{help}");
    let deployment = chart_file("templates/deployment.yaml");
    for var in vars {
        assert!(
            deployment.contains(&format!("name: {var}\n")),
            "templates/deployment.yaml does not set {var}, which portvakt run reads"
        );
    }
}
