//! `--observe` for an AzureAdApplication: what a pass would do, reading only (Kubernetes and Graph).

use super::application::{previous, resolve_all};
use super::credentials::mode_inputs;
use super::pipeline::{find_app, load};
use crate::controller::Error;
use crate::controller::pass::Pass;
use crate::core::entra::credentials::{self as cc, Mode};
use crate::core::entra::observe::{Observed, actions};
use crate::core::entra::{self as ce, application as capp, preauth};
use crate::core::observe::Action;
use crate::crd::AzureAdApplication;

pub(super) async fn observe_one(pass: &Pass<'_, AzureAdApplication>) -> Result<Vec<Action>, Error> {
    let obj = pass.obj;
    let p = pass.provider;
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(vec![if ce::preserve(obj.metadata.annotations.as_ref()) {
            Action::Preserve
        } else {
            Action::Delete
        }]);
    }
    let view = load(pass).await?;
    let status = obj.status.clone().unwrap_or_default();
    let desired = capp::desired(&p.config, &pass.namespace, &pass.name, &obj.spec);
    let Some(app) = find_app(pass).await? else {
        return Ok(actions(&Observed {
            found: None,
            credentials: Some(Mode::Add("new application".into())),
            secret_write: true,
            ..Default::default()
        }));
    };
    let known = status.object_id.as_deref() == Some(app.id.as_str());
    let update = capp::update(&desired, &app);
    let mut fields: Vec<String> = update.fields.iter().map(|f| f.to_string()).collect();
    let rules = preauth::rules(&p.config, &pass.namespace, &obj.spec);
    let resolved = resolve_all(p, &desired.display_name, rules).await?;
    let (prev_clients, _) = previous(&status);
    let mut all = resolved.clone();
    if let Some(sp) = p
        .graph
        .find_service_principal_by_app_id(&app.app_id)
        .await?
    {
        all.push(preauth::self_rule(
            &p.config,
            &pass.namespace,
            &pass.name,
            preauth::Found {
                client_id: app.app_id.clone(),
                sp_id: sp.id,
            },
        ));
    } else {
        fields.push("service principal".into());
    }
    let scopes = update
        .permissions
        .as_ref()
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| app.scopes().to_vec());
    let pre = preauth::pre_authorized(
        &all,
        &scopes,
        app.pre_authorized_applications(),
        &prev_clients,
    );
    if !preauth::same_pre_authorized(app.pre_authorized_applications(), &pre)
        && !fields.iter().any(|f| f == "preAuthorizedApplications")
    {
        fields.push("preAuthorizedApplications".into());
    }
    let mode = cc::mode(&mode_inputs(
        pass,
        &view,
        &status,
        &app.password_credentials,
        &app.key_credentials,
    ));
    let secret_write = mode != Mode::Keep || view.app.is_none();
    Ok(actions(&Observed {
        found: Some((app.id.clone(), known)),
        update: fields,
        assignments: vec![],
        credentials: Some(mode),
        secret_write,
        delete_secrets: vec![],
    }))
}
