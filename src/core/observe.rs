//! The `--observe` report, for every kind: per resource what a pass would do, with totals. The
//! kinds' pure cores decide the actions; this is the report's vocabulary and its rendering.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Take over an existing registration (same identity at the provider).
    Adopt(String),
    /// Create a registration.
    Create,
    /// PUT the registration: these fields differ.
    Update(Vec<String>),
    /// Hand the app a new key.
    Rotate,
    /// POST the client's JWKS (why).
    RegisterKeys(Vec<String>),
    /// Create or update the app Secret.
    WriteSecret,
    /// Delete unreferenced managed Secrets.
    DeleteSecrets(Vec<String>),
    /// Delete the registration (resource being deleted).
    Delete,
    /// Resource being deleted with `digdir.nais.io/preserve`: the registration stays.
    Preserve,
    /// Something prevents the pass (e.g. a Secret owned by someone else).
    Blocked(String),
    /// Maskinporten API providers: create this exposed scope.
    CreateScope(String),
    /// PUT this exposed scope: these fields differ.
    UpdateScope(String, Vec<String>),
    /// Reactivate this exposed scope (it was deactivated).
    ReactivateScope(String),
    /// Deactivate this exposed scope (`enabled: false`).
    DeactivateScope(String),
    /// Grant `orgno` access to `scope` (also when its access was DENIED).
    Grant { scope: String, orgno: String },
    /// Revoke `orgno`'s access to `scope` (no longer listed).
    Revoke { scope: String, orgno: String },
    /// A scope the resource no longer exposes: left active (consumers depend on it).
    LeaveScope(String),
}

impl Action {
    pub fn label(&self) -> &'static str {
        match self {
            Action::Adopt(_) => "adopt",
            Action::Create => "create",
            Action::Update(_) => "update",
            Action::Rotate => "rotate",
            Action::RegisterKeys(_) => "register-keys",
            Action::WriteSecret => "write-secret",
            Action::DeleteSecrets(_) => "delete-secrets",
            Action::Delete => "delete",
            Action::Preserve => "preserve",
            Action::Blocked(_) => "blocked",
            Action::CreateScope(_) => "create-scope",
            Action::UpdateScope(..) => "update-scope",
            Action::ReactivateScope(_) => "reactivate-scope",
            Action::DeactivateScope(_) => "deactivate-scope",
            Action::Grant { .. } => "grant",
            Action::Revoke { .. } => "revoke",
            Action::LeaveScope(_) => "scope-left-active",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Adopt(id) => write!(f, "adopt {id}"),
            Action::Update(fields) => write!(f, "update ({})", fields.join(", ")),
            Action::RegisterKeys(why) => write!(f, "register keys ({})", why.join(", ")),
            Action::DeleteSecrets(names) => write!(f, "delete secrets {}", names.join(", ")),
            Action::Blocked(why) => write!(f, "blocked: {why}"),
            Action::CreateScope(s) => write!(f, "create scope {s}"),
            Action::UpdateScope(s, fields) => write!(f, "update scope {s} ({})", fields.join(", ")),
            Action::ReactivateScope(s) => write!(f, "reactivate scope {s}"),
            Action::DeactivateScope(s) => write!(f, "deactivate scope {s}"),
            Action::Grant { scope, orgno } => write!(f, "grant {orgno} access to {scope}"),
            Action::Revoke { scope, orgno } => write!(f, "revoke {orgno}'s access to {scope}"),
            Action::LeaveScope(s) => {
                write!(f, "scope {s} no longer exposed: left active")
            }
            other => f.write_str(other.label()),
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct ResourceReport {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub actions: Vec<Action>,
}

/// The whole report: per resource, and totals per action label.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub resources: Vec<ResourceReport>,
}

impl Report {
    pub fn totals(&self) -> BTreeMap<&'static str, usize> {
        let mut t = BTreeMap::new();
        for r in &self.resources {
            if r.actions.is_empty() {
                *t.entry("unchanged").or_default() += 1;
            }
            for a in &r.actions {
                *t.entry(a.label()).or_default() += 1;
            }
        }
        t
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.resources {
            let actions = if r.actions.is_empty() {
                "unchanged".to_string()
            } else {
                r.actions
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            writeln!(f, "{} {}/{}: {actions}", r.kind, r.namespace, r.name)?;
        }
        let totals = self.totals();
        let t: Vec<String> = totals.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            f,
            "totals: {} resources; {}",
            self.resources.len(),
            t.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals() {
        let r = Report {
            resources: vec![
                ResourceReport {
                    kind: "IDPortenClient",
                    namespace: "a".into(),
                    name: "x".into(),
                    actions: vec![Action::Create, Action::WriteSecret],
                },
                ResourceReport {
                    kind: "MaskinportenClient",
                    namespace: "a".into(),
                    name: "y".into(),
                    actions: vec![],
                },
                ResourceReport {
                    kind: "MaskinportenClient",
                    namespace: "a".into(),
                    name: "z".into(),
                    actions: vec![Action::Adopt("c".into())],
                },
            ],
        };
        let t = r.totals();
        assert_eq!((t["create"], t["unchanged"], t["adopt"]), (1, 1, 1));
        let text = r.to_string();
        assert!(text.contains("IDPortenClient a/x: create; write-secret"));
        assert!(text.contains("totals: 3 resources"));
    }
}
