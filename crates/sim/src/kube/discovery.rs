//! Aggregated-free (legacy) discovery documents: `/api` (APIVersions), `/apis` (APIGroupList) and
//! `/api/v1`, `/apis/{group}/{version}` (APIResourceList). kubectl asks for the v2 aggregated format
//! first and falls back to these.

use serde_json::{Map, Value, json};

use super::resource::ResourceInfo;

/// The verbs of a resource when its [`ResourceInfo`] names none.
const DEFAULT_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// apiserver's `discovery.StorageVersionHash`: the first 8 bytes of sha256("group/version/kind"),
/// base64. (For a type stored at the version it is served at, as every type here is.)
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    })
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, then other strings
/// alphabetically (`k8s.io/apimachinery/pkg/version.CompareKubeAwareVersionStrings`). Smaller sorts first.
fn version_rank(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        let (kind, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        let minor: i64 = num.parse().ok()?;
        Some((major, kind, minor))
    };
    match parse(v) {
        Some((major, kind, minor)) => (kind, -major, -minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// `GET /apis`: every non-core group with its versions and preferred version.
pub fn group_list(resources: &[ResourceInfo]) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version.clone());
                }
            }
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, mut versions)| {
            versions.sort_by_key(|v| version_rank(v));
            let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
            let preferred = versions.first().map(gv).unwrap_or(Value::Null);
            json!({
                "name": group,
                "versions": versions.iter().map(gv).collect::<Vec<_>>(),
                "preferredVersion": preferred,
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`: the resources of one group/version, including
/// `<plural>/status` entries for status subresources.
pub fn resource_list(resources: &[ResourceInfo], group: &str, version: &str) -> Value {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut list = Vec::new();
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut verbs: Vec<String> = if r.verbs.is_empty() {
            DEFAULT_VERBS.iter().map(|v| v.to_string()).collect()
        } else {
            r.verbs.clone()
        };
        if r.custom {
            // The order the custom resource handler lists them in.
            let order = [
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ];
            verbs.sort_by_key(|v| order.iter().position(|o| o == v).unwrap_or(order.len()));
        }
        if !r.custom && r.group.is_empty() && r.plural == "namespaces" {
            // Namespaces are deleted one by one (each through the namespace controller).
            verbs.retain(|v| v != "deletecollection");
        }
        let mut e = Map::new();
        e.insert("name".into(), json!(r.plural));
        e.insert("singularName".into(), json!(r.singular));
        e.insert("namespaced".into(), json!(r.namespaced));
        e.insert("kind".into(), json!(r.kind));
        e.insert("verbs".into(), json!(verbs));
        if !r.short_names.is_empty() {
            e.insert("shortNames".into(), json!(r.short_names));
        }
        if !r.categories.is_empty() {
            e.insert("categories".into(), json!(r.categories));
        }
        e.insert(
            "storageVersionHash".into(),
            json!(storage_version_hash(&r.group, &r.version, &r.kind)),
        );
        list.push(Value::Object(e));
        if r.status_subresource {
            list.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            status_subresource: false,
            schema: None,
            printer_columns: vec![],
            custom: false,
        }
    }

    pub(crate) fn sample() -> Vec<ResourceInfo> {
        let mut idp = info("nais.io", "v1", "IDPortenClient", "idportenclients", true);
        idp.short_names = vec!["idportenclient".into()];
        idp.status_subresource = true;
        idp.custom = true;
        idp.schema = Some(json!({"type": "object", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["secretName"], "properties": {"secretName": {"type": "string"}}}}}));
        vec![
            info("", "v1", "Secret", "secrets", true),
            info("", "v1", "Namespace", "namespaces", false),
            info("apps", "v1", "Deployment", "deployments", true),
            info("example.com", "v1beta1", "Thing", "things", true),
            info("example.com", "v2", "Thing", "things", true),
            info("example.com", "v1", "Thing", "things", true),
            idp,
        ]
    }

    #[test]
    fn core_and_groups() {
        assert_eq!(core_versions()["versions"], json!(["v1"]));
        let g = group_list(&sample());
        assert_eq!(g["kind"], "APIGroupList");
        let groups = g["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 3);
        let ex = &groups[1];
        assert_eq!(ex["name"], "example.com");
        assert_eq!(
            ex["preferredVersion"],
            json!({"groupVersion": "example.com/v2", "version": "v2"})
        );
        assert_eq!(ex["versions"][2]["version"], "v1beta1");
        assert_eq!(groups[2]["preferredVersion"]["groupVersion"], "nais.io/v1");
    }

    #[test]
    fn resources_with_status_and_short_names() {
        let l = resource_list(&sample(), "nais.io", "v1");
        assert_eq!(l["groupVersion"], "nais.io/v1");
        let r = l["resources"].as_array().expect("resources");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["name"], "idportenclients");
        assert_eq!(r[0]["singularName"], "idportenclient");
        assert_eq!(r[0]["namespaced"], true);
        assert_eq!(r[0]["kind"], "IDPortenClient");
        assert_eq!(r[0]["shortNames"], json!(["idportenclient"]));
        assert!(
            r[0]["verbs"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("watch")))
        );
        assert_eq!(r[1]["name"], "idportenclients/status");
        assert_eq!(r[1]["verbs"], json!(["get", "patch", "update"]));
        let core = resource_list(&sample(), "", "v1");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(core["resources"][1]["namespaced"], false);
        assert_eq!(
            resource_list(&sample(), "nope", "v1")["resources"],
            json!([])
        );
    }
}
