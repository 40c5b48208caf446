//! The `nais.io/v1` custom resources: `IDPortenClient`, `MaskinportenClient` and `AzureAdApplication`.
//!
//! # Source of truth
//! The CRD YAML in `crds/` is the source: nais/liberator's CRDs copied unchanged and extended as a
//! superset (standard `conditions` keyed by `type` and `observedGeneration` on every kind's status, a
//! `Ready` printer column, and the ignored legacy field `AzureAdApplication.spec.secretProtected`). The YAML
//! is embedded into the binary; [`crds()`] parses it and [`crds_yaml()`] is what `portvakt crds` prints.
//! The Rust types here are proven to match that schema field for field by `tests/it/crd_schema.rs`.
//!
//! The kinds derive `kube::CustomResource` with `schema = "disabled"`, so `kube::Api<IDPortenClient>`
//! works, but `CustomResourceExt::crd()` yields a CRD **without** a schema: install [`crds()`] instead.

mod azure;
mod idporten;
mod maskinporten;
mod status;

pub use azure::*;
pub use idporten::*;
pub use maskinporten::*;
pub use status::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// API group of all three kinds.
pub const GROUP: &str = "nais.io";
/// API version of all three kinds.
pub const VERSION: &str = "v1";
/// `apiVersion` of all three kinds.
pub const API_VERSION: &str = "nais.io/v1";

/// The CRD files in `crds/`: (file name, YAML), sorted by file name.
const FILES: [(&str, &str); 3] = [
    (
        "nais.io_azureadapplications.yaml",
        include_str!("../../crds/nais.io_azureadapplications.yaml"),
    ),
    (
        "nais.io_idportenclients.yaml",
        include_str!("../../crds/nais.io_idportenclients.yaml"),
    ),
    (
        "nais.io_maskinportenclients.yaml",
        include_str!("../../crds/nais.io_maskinportenclients.yaml"),
    ),
];

/// Errors from reading the embedded CRD YAML.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("crds/{file}: invalid YAML: {message}")]
    Yaml { file: &'static str, message: String },
    #[error("crds/{file}: not a CustomResourceDefinition: {source}")]
    Decode {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("no CRD for kind {0} in crds/")]
    UnknownKind(String),
}

/// The CRD files embedded from `crds/`: (file name, YAML text), sorted by file name.
pub fn crd_files() -> Vec<(&'static str, &'static str)> {
    FILES.to_vec()
}

/// What `portvakt crds` prints: the files of [`crd_files()`] in that order, concatenated as one
/// multi-document YAML stream. Every file starts with its own `---` line and ends with a newline, so the
/// concatenation is the stream (and `portvakt crds | kubectl apply -f -` equals `kubectl apply -f crds/`).
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for (_, yaml) in FILES {
        if !yaml.starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// One CRD file parsed into a JSON value (YAML -> JSON, no typing).
pub fn crd_value(file: &'static str, yaml: &str) -> Result<serde_json::Value, CrdError> {
    serde_saphyr::from_str::<serde_json::Value>(yaml).map_err(|e| CrdError::Yaml {
        file,
        message: e.to_string(),
    })
}

/// The CRDs in `crds/`, typed, in [`crd_files()`] order.
pub fn crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    FILES
        .iter()
        .map(|(file, yaml)| {
            let value = crd_value(file, yaml)?;
            serde_json::from_value(value).map_err(|source| CrdError::Decode { file, source })
        })
        .collect()
}

/// The CRD of one kind (`IDPortenClient`, `MaskinportenClient`, `AzureAdApplication`).
pub fn crd_for_kind(kind: &str) -> Result<CustomResourceDefinition, CrdError> {
    crds()?
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .ok_or_else(|| CrdError::UnknownKind(kind.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_parse_and_name_the_three_kinds() {
        let crds = crds().unwrap();
        let kinds: Vec<_> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["AzureAdApplication", "IDPortenClient", "MaskinportenClient"]
        );
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions.len(), 1);
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, VERSION);
            assert!(v.served && v.storage);
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
        }
    }

    #[test]
    fn crds_yaml_is_the_files_joined_as_a_stream() {
        let all = crds_yaml();
        assert_eq!(all.matches("\nkind: CustomResourceDefinition\n").count(), 3);
        assert_eq!(
            all,
            FILES.iter().map(|(_, y)| *y).collect::<Vec<_>>().concat()
        );
        for (name, yaml) in crd_files() {
            assert!(yaml.starts_with("---\n"), "{name}");
            assert!(yaml.ends_with('\n'), "{name}");
        }
    }

    #[test]
    fn api_resource_matches_the_crds() {
        use kube::Resource;
        assert_eq!(IDPortenClient::plural(&()), "idportenclients");
        assert_eq!(MaskinportenClient::plural(&()), "maskinportenclients");
        assert_eq!(AzureAdApplication::plural(&()), "azureadapplications");
        assert_eq!(IDPortenClient::api_version(&()), API_VERSION);
    }
}
