//! `--observe`: what a pass would do, per resource, with totals. Nothing is written anywhere; the
//! controller gathers the observations (read-only calls) and this decides and counts.

use std::collections::BTreeMap;
use std::fmt;

use super::keyplan::{CurrentSource, KeyActions};
use super::registration::Identity;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Take over an existing registration (same description and integration type).
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
            other => f.write_str(other.label()),
        }
    }
}

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
            rotated,
            post_reasons: if register {
                vec!["next key not registered"]
            } else {
                vec![]
            },
            dropped: vec![],
            delete,
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
