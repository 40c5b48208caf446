//! `--observe` for one AzureAdApplication: what a pass would do, from what was read.

use super::credentials::Mode;
use crate::core::observe::Action;

/// What was read about one resource.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The application found by display name: its object id, and whether status already names it.
    pub found: Option<(String, bool)>,
    /// Fields of the application that differ.
    pub update: Vec<String>,
    /// Pre-authorized apps or group assignments that would change.
    pub assignments: Vec<String>,
    pub credentials: Option<Mode>,
    pub secret_write: bool,
    pub delete_secrets: Vec<String>,
}

/// The report's actions.
pub fn actions(o: &Observed) -> Vec<Action> {
    let mut out = Vec::new();
    match &o.found {
        None => out.push(Action::Create),
        Some((id, false)) => out.push(Action::Adopt(id.clone())),
        Some((_, true)) => {}
    }
    let mut fields = o.update.clone();
    fields.extend(o.assignments.iter().cloned());
    if !fields.is_empty() && o.found.is_some() {
        out.push(Action::Update(fields));
    }
    match &o.credentials {
        Some(Mode::Add(why)) => out.push(Action::RegisterKeys(vec![format!(
            "new credentials: {why}"
        )])),
        Some(Mode::Rotate(_)) => out.push(Action::Rotate),
        _ => {}
    }
    if o.secret_write {
        out.push(Action::WriteSecret);
    }
    if !o.delete_secrets.is_empty() {
        out.push(Action::DeleteSecrets(o.delete_secrets.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_update_rotation_and_secret() {
        assert_eq!(actions(&Observed::default()), vec![Action::Create]);
        let o = Observed {
            found: Some(("obj".into(), false)),
            update: vec!["redirectUris".into()],
            assignments: vec!["assign dev:team:b".into()],
            credentials: Some(Mode::Rotate("azure.nais.io/rotate".into())),
            secret_write: true,
            delete_secrets: vec!["old".into()],
        };
        assert_eq!(
            actions(&o),
            vec![
                Action::Adopt("obj".into()),
                Action::Update(vec!["redirectUris".into(), "assign dev:team:b".into()]),
                Action::Rotate,
                Action::WriteSecret,
                Action::DeleteSecrets(vec!["old".into()]),
            ]
        );
        let steady = Observed {
            found: Some(("obj".into(), true)),
            credentials: Some(Mode::Keep),
            ..Default::default()
        };
        assert!(actions(&steady).is_empty());
    }
}
