//! When a Secret belongs to a resource: the one rule every Secret writer and every kind obeys.
//!
//! "Owned" means a controller owner reference with the owner's apiVersion, kind and name. The uid is
//! not compared: uids change when a cluster is restored from backup (the write that follows repairs
//! the reference's uid). A Secret controlled by anything else, or by nothing, is never written or
//! deleted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The resource a Secret must be controlled by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerId<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl OwnerId<'_> {
    /// "Kind name", for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// Whether `meta` has a controller owner reference to `owner` (uid not compared).
pub fn is_controlled_by(meta: &ObjectMeta, owner: OwnerId<'_>) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.api_version == owner.api_version
            && r.kind == owner.kind
            && r.name == owner.name
    })
}

/// Who controls the object, for messages: "Kind name", or that nothing does.
pub fn controller_of(meta: &ObjectMeta) -> String {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| format!("{} {}", r.kind, r.name))
        .unwrap_or_else(|| "nothing (no controller owner reference)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    const OWNER: OwnerId<'static> = OwnerId {
        api_version: "nais.io/v1",
        kind: "IDPortenClient",
        name: "app",
    };

    fn reference(controller: Option<bool>, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "nais.io/v1".into(),
            kind: "IDPortenClient".into(),
            name: "app".into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        }
    }

    #[test]
    fn ownership_is_by_controller_reference_kind_and_name_not_uid() {
        let mut meta = ObjectMeta::default();
        assert!(!is_controlled_by(&meta, OWNER));
        assert!(controller_of(&meta).starts_with("nothing"));
        meta.owner_references = Some(vec![reference(Some(true), "any-uid")]);
        assert!(is_controlled_by(&meta, OWNER));
        assert_eq!(controller_of(&meta), "IDPortenClient app");
        assert!(!is_controlled_by(
            &meta,
            OwnerId {
                name: "other",
                ..OWNER
            }
        ));
        meta.owner_references = Some(vec![reference(None, "any-uid")]);
        assert!(!is_controlled_by(&meta, OWNER), "not the controller");
    }
}
