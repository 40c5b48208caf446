//! `--observe` for one kind: every resource listed once, each passed read-only to the kind's
//! [`super::Kind::observe`]. Nothing is written anywhere.

use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use super::error::Error;
use super::kind::Kind;
use super::pass::{Pass, kind_name};
use crate::core::observe::{Action, Report, ResourceReport};

/// Adds every resource of kind `K` to `report`.
pub async fn observe_kind<K: Kind>(ctx: &Context, report: &mut Report) -> Result<(), Error> {
    let Some(provider) = ctx.provider::<K::Provider>() else {
        return Ok(());
    };
    let api: Api<K> = Api::all(ctx.client.clone());
    let objs = api
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube(format!("listing {}", kind_name::<K>()), e))?;
    for obj in objs.items {
        if !obj.is_mine(&provider) {
            continue;
        }
        let actions = match Pass::new(
            &obj,
            &ctx.shared,
            &provider,
            std::time::Duration::ZERO,
            true,
        ) {
            Ok(pass) => match K::observe(&pass).await {
                Ok(a) => a,
                Err(e) => vec![Action::Blocked(e.message())],
            },
            Err(e) => vec![Action::Blocked(e.message())],
        };
        report.resources.push(ResourceReport {
            kind: kind_name::<K>(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            actions,
        });
    }
    Ok(())
}
