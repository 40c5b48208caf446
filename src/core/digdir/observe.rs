//! `--observe` for the Digdir kinds: what a pass would do for one resource. Nothing is written
//! anywhere; the controller gathers the observations (read-only calls) and this decides.

use super::keyplan::{CurrentSource, KeyActions};
use super::registration::Identity;
use super::scopes::{Orphan, ScopeAction, ScopeChange};
pub use crate::core::observe::Action;

/// The observations of one resource.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub deleting: bool,
    pub preserve: bool,
    /// `None` when the resource is being deleted and has no registration.
    pub identity: Option<&'a Identity>,
    pub differing: Vec<&'static str>,
    pub keys: Option<&'a KeyActions>,
    pub secret_write: bool,
    pub blocked: Option<String>,
}

/// The actions a pass would take.
pub fn decide(o: &Observed<'_>) -> Vec<Action> {
    let mut out = Vec::new();
    if let Some(b) = &o.blocked {
        return vec![Action::Blocked(b.clone())];
    }
    if o.deleting {
        match (o.identity, o.preserve) {
            (Some(Identity::Known(_) | Identity::Adopt(_)), true) => out.push(Action::Preserve),
            (Some(Identity::Known(_) | Identity::Adopt(_)), false) => out.push(Action::Delete),
            _ => {}
        }
        return out;
    }
    match o.identity {
        Some(Identity::Adopt(id)) => out.push(Action::Adopt(id.clone())),
        Some(Identity::Create) => out.push(Action::Create),
        _ => {}
    }
    if !o.differing.is_empty() && !matches!(o.identity, Some(Identity::Create)) {
        out.push(Action::Update(
            o.differing.iter().map(|s| s.to_string()).collect(),
        ));
    }
    if let Some(k) = o.keys {
        if k.rotated || (k.wait.is_some() && k.current.is_none()) {
            out.push(Action::Rotate);
        }
        if let Some(_set) = &k.register {
            out.push(Action::RegisterKeys(
                k.post_reasons.iter().map(|s| s.to_string()).collect(),
            ));
        }
        if !k.delete.is_empty() {
            out.push(Action::DeleteSecrets(k.delete.clone()));
        }
        if k.source == CurrentSource::Generated && !out.contains(&Action::Create) {
            out.push(Action::Rotate);
        }
    }
    if o.secret_write {
        out.push(Action::WriteSecret);
    }
    out
}

/// The `--observe` actions of a resource's exposed-scope changes (in plan order), then the scopes it
/// no longer exposes (left active).
pub fn scope_actions<'a>(
    changes: impl IntoIterator<Item = &'a ScopeChange>,
    orphans: impl IntoIterator<Item = &'a Orphan>,
) -> Vec<Action> {
    let mut out: Vec<Action> = changes
        .into_iter()
        .map(|c| {
            let scope = c.scope.clone();
            match &c.action {
                ScopeAction::Create { .. } => Action::CreateScope(scope),
                ScopeAction::Update { fields, .. } => {
                    Action::UpdateScope(scope, fields.iter().map(|f| f.to_string()).collect())
                }
                ScopeAction::Reactivate { .. } => Action::ReactivateScope(scope),
                ScopeAction::Deactivate => Action::DeactivateScope(scope),
                ScopeAction::Grant { orgno } | ScopeAction::Regrant { orgno } => Action::Grant {
                    scope,
                    orgno: orgno.clone(),
                },
                ScopeAction::Revoke { orgno } => Action::Revoke {
                    scope,
                    orgno: orgno.clone(),
                },
            }
        })
        .collect();
    out.extend(
        orphans
            .into_iter()
            .map(|o| Action::LeaveScope(o.scope.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Key;

    fn keys(rotated: bool, register: bool, delete: Vec<String>) -> KeyActions {
        KeyActions {
            current: Some(Key::placeholder("c")),
            source: CurrentSource::Existing("s".into()),
            next: Key::placeholder("n"),
            next_is_new: false,
            register: register.then(Vec::new),
            wait: None,
            next_due_in: None,
            next_waits: false,
            new_keys: vec![],
            rotated,
            post_reasons: if register {
                vec!["next key not registered"]
            } else {
                vec![]
            },
            dropped: vec![],
            delete,
            replaced: vec![],
        }
    }

    #[test]
    fn decisions() {
        let adopt = Identity::Adopt("c1".into());
        let k = keys(false, true, vec![]);
        let o = Observed {
            identity: Some(&adopt),
            keys: Some(&k),
            ..Default::default()
        };
        assert_eq!(
            decide(&o),
            [
                Action::Adopt("c1".into()),
                Action::RegisterKeys(vec!["next key not registered".into()])
            ]
        );
        let known = Identity::Known("c1".into());
        let k = keys(true, true, vec!["old".into()]);
        let o = Observed {
            identity: Some(&known),
            differing: vec!["redirect_uris"],
            keys: Some(&k),
            secret_write: true,
            ..Default::default()
        };
        let labels: Vec<_> = decide(&o).iter().map(Action::label).collect();
        assert_eq!(
            labels,
            [
                "update",
                "rotate",
                "register-keys",
                "delete-secrets",
                "write-secret"
            ]
        );
        let o = Observed {
            deleting: true,
            identity: Some(&known),
            ..Default::default()
        };
        assert_eq!(decide(&o), [Action::Delete]);
        let o = Observed {
            deleting: true,
            preserve: true,
            identity: Some(&known),
            ..Default::default()
        };
        assert_eq!(decide(&o), [Action::Preserve]);
        let o = Observed {
            blocked: Some("Secret s not owned".into()),
            identity: Some(&known),
            ..Default::default()
        };
        assert_eq!(decide(&o).len(), 1);
        let o = Observed {
            identity: Some(&known),
            ..Default::default()
        };
        assert!(decide(&o).is_empty());
    }

    #[test]
    fn scope_changes_are_reported_with_totals() {
        use crate::core::digdir::scopes::ResourceId;
        use crate::core::observe::{Report, ResourceReport};
        let id = ResourceId::new("c", "ns", "api");
        let change = |scope: &str, action| ScopeChange {
            resource: id.clone(),
            scope: scope.into(),
            action,
        };
        let changes = [
            change(
                "org:a",
                ScopeAction::Create {
                    registration: Default::default(),
                },
            ),
            change(
                "org:b",
                ScopeAction::Update {
                    registration: Default::default(),
                    fields: vec!["at_max_age"],
                },
            ),
            change(
                "org:c",
                ScopeAction::Reactivate {
                    registration: Default::default(),
                },
            ),
            change("org:d", ScopeAction::Deactivate),
            change(
                "org:a",
                ScopeAction::Grant {
                    orgno: "111111111".into(),
                },
            ),
            change(
                "org:b",
                ScopeAction::Regrant {
                    orgno: "222222222".into(),
                },
            ),
            change(
                "org:b",
                ScopeAction::Revoke {
                    orgno: "333333333".into(),
                },
            ),
        ];
        let orphans = [Orphan {
            scope: "org:old".into(),
            owner: id.clone(),
        }];
        let actions = scope_actions(&changes, &orphans);
        let report = Report {
            resources: vec![ResourceReport {
                kind: "MaskinportenClient",
                namespace: "ns".into(),
                name: "api".into(),
                actions,
            }],
        };
        let t = report.totals();
        for (label, n) in [
            ("create-scope", 1),
            ("update-scope", 1),
            ("reactivate-scope", 1),
            ("deactivate-scope", 1),
            ("grant", 2),
            ("revoke", 1),
            ("scope-left-active", 1),
        ] {
            assert_eq!(t.get(label), Some(&n), "{label}");
        }
        let text = report.to_string();
        assert!(text.contains("update scope org:b (at_max_age)"), "{text}");
        assert!(text.contains("grant 222222222 access to org:b"), "{text}");
        assert!(
            text.contains("revoke 333333333's access to org:b"),
            "{text}"
        );
        assert!(
            text.contains("scope org:old no longer exposed: left active"),
            "{text}"
        );
    }
}
