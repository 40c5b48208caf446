//! `--observe` for one IDPortenClient or MaskinportenClient: the same steps as a pass, reading only.
//! Registrations come from one list for all resources; keys are planned with stand-ins (no CPU spent
//! on real keys); exposed scopes from one scope list ([`super::exposed::observe`]); nothing is
//! written anywhere.

use super::keys::{self, Gathered};
use super::pipeline;
use super::registration::{check_scopes, observed_json};
use super::{DigdirResource, exposed};
use crate::controller::pass::{Pass, is_not_owned};
use crate::controller::{Error, Kind};
use crate::core::digdir::app_secret as csecret;
use crate::core::digdir::observe::{self as cobserve, Action};
use crate::core::digdir::registration::{self as creg, Identity};
use crate::core::digdir::status as cstatus;
use crate::core::secret_content;

pub(super) async fn observe_one<K: DigdirResource>(
    pass: &Pass<'_, K>,
) -> Result<Vec<Action>, Error> {
    let obj = pass.obj;
    let p = pass.provider;
    let listed = p
        .observe_listing
        .get_or_try_init(|| async { p.client.list_clients(false).await })
        .await?;
    let desc = creg::description(&p.config.cluster_name, &pass.namespace, &pass.name);
    let reduced: Vec<creg::Listed> = listed
        .iter()
        .filter(|c| c.is_active())
        .map(|c| creg::Listed {
            client_id: c.client_id.clone().unwrap_or_default(),
            description: c.description.clone(),
            integration_type: c.integration_type.as_str().to_string(),
        })
        .collect();
    let status_id = Kind::status(obj).and_then(|s| s.client_id.as_deref());
    let identity = creg::identify(status_id, &reduced, &desc, obj.integration_type());
    let deleting = obj.meta().deletion_timestamp.is_some();
    let mut o = cobserve::Observed {
        deleting,
        preserve: cstatus::preserve(obj.meta().annotations.as_ref()),
        identity: Some(&identity),
        ..Default::default()
    };
    if deleting {
        let mut actions = cobserve::decide(&o);
        actions.extend(exposed::observe(pass).await?);
        return Ok(actions);
    }
    if let Err(e) = pipeline::validate(obj, p) {
        o.blocked = Some(e.message());
        return Ok(cobserve::decide(&o));
    }
    let view = match pipeline::load(pass).await {
        Ok(v) => v,
        Err(e) if is_not_owned(&e) => {
            o.blocked = Some(e.message());
            return Ok(cobserve::decide(&o));
        }
        Err(e) => return Err(e),
    };
    let valid = match obj.consumed_scopes() {
        Some(s) => check_scopes(pass, &s).await?.0,
        None => Vec::new(),
    };
    let payload = obj.payload(&p.config, &valid);
    let client_id = match &identity {
        Identity::Known(id) | Identity::Adopt(id) => {
            if let Some(c) = listed
                .iter()
                .find(|c| c.client_id.as_deref() == Some(id.as_str()))
            {
                o.differing = creg::differing_fields(&payload, &observed_json(c));
            }
            id.clone()
        }
        Identity::Create => String::new(),
    };
    let status = Kind::status(obj).cloned().unwrap_or_default();
    let gathered = Gathered::read(pass, &view, &client_id, false, &status);
    let base = gathered.base(pass);
    let mut registered = gathered.rec.registered.clone();
    let actions = keys::plan(pass, &client_id, &base, &mut registered, false).await?;
    if let Some(current) = &actions.current {
        let owner = pipeline::owner::<K>(pass)?;
        let desired = csecret::desired_app_secret(
            &p.config,
            &csecret::AppSecretInputs {
                owner: &owner,
                secret_name: obj.secret_name(),
                client_id: if client_id.is_empty() {
                    "<new>"
                } else {
                    &client_id
                },
                key: current,
                kind_value: obj.secret_kind_value(),
            },
        );
        o.secret_write = view
            .app
            .as_ref()
            .is_none_or(|s| secret_content::needs_write(s, &desired));
    }
    o.keys = Some(&actions);
    let mut out = exposed::observe(pass).await?;
    out.extend(cobserve::decide(&o));
    Ok(out)
}
