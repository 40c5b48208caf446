//! What the periodic pass compares: an application as Graph lists it against what its resource
//! wants. Differences made by hand in Entra (a removed redirect URI, a deleted pre-authorization, a
//! changed permission) are reported and repaired by a full pass of the resource.

use std::collections::BTreeMap;

use super::application::{Desired, update};
use crate::crd::AzureAdApplicationStatus;
use crate::entra::Application;

/// What differs, in words (empty: no drift). `assigned` are the client ids the last pass
/// pre-authorized (from status).
pub fn find(d: &Desired, app: &Application, assigned: &[String]) -> Vec<String> {
    let mut out: Vec<String> = update(d, app)
        .fields
        .iter()
        .map(|f| f.to_string())
        .collect();
    let have = app.pre_authorized_applications();
    let missing: Vec<&str> = assigned
        .iter()
        .filter(|c| !have.iter().any(|p| p.app_id.eq_ignore_ascii_case(c)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "preAuthorizedApplications (missing {})",
            missing.join(", ")
        ));
    }
    out
}

/// The client ids a status lists as pre-authorized.
pub fn assigned_client_ids(st: &AzureAdApplicationStatus) -> Vec<String> {
    st.pre_authorized_apps
        .iter()
        .flat_map(|p| p.assigned.iter().flatten())
        .filter_map(|a| a.client_id.clone())
        .collect()
}

/// The object id of a resource the periodic pass may compare: Ready for its generation, not
/// being deleted, no resync pending.
pub fn settled_object_id<'a>(
    generation: Option<i64>,
    status: Option<&'a AzureAdApplicationStatus>,
    annotations: Option<&BTreeMap<String, String>>,
    deleting: bool,
) -> Option<&'a str> {
    let st = status?;
    let ready = crate::conditions::is_ready(st.conditions.as_deref().unwrap_or(&[]), generation);
    if deleting || !ready || super::wants_resync(annotations) || super::wants_rotate(annotations) {
        return None;
    }
    st.object_id.as_deref().filter(|o| !o.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entra::{Config, application};
    use crate::crd::{AzureAdApplicationSpec, AzureAdReplyUrl};
    use crate::entra::{ApiApplication, PreAuthorizedApplication};

    #[test]
    fn hand_made_changes_are_named() {
        let cfg = Config {
            cluster_name: "dev".into(),
            ..Config::default()
        };
        let spec = AzureAdApplicationSpec {
            secret_name: "s".into(),
            reply_urls: Some(vec![AzureAdReplyUrl {
                url: Some("https://a.example/cb".into()),
            }]),
            ..Default::default()
        };
        let d = application::desired(&cfg, "team", "a", &spec);
        let body = application::create_body(&d);
        let (scopes, roles) = application::permissions(&d, None);
        let app = Application {
            app_id: "cid".into(),
            sign_in_audience: Some("AzureADMyOrg".into()),
            tags: body.tags.clone().unwrap(),
            identifier_uris: application::identifier_uris(&d, &[], "cid"),
            group_membership_claims: Some("ApplicationGroup".into()),
            api: Some(ApiApplication {
                requested_access_token_version: Some(2),
                oauth2_permission_scopes: scopes,
                pre_authorized_applications: vec![PreAuthorizedApplication {
                    app_id: "cid-b".into(),
                    delegated_permission_ids: vec![],
                }],
                ..Default::default()
            }),
            app_roles: roles,
            optional_claims: Some(application::default_optional_claims()),
            web: Some(crate::entra::WebApplication {
                redirect_uris: vec!["https://a.example/cb".into()],
                logout_url: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(find(&d, &app, &["cid-b".into()]).is_empty());
        let mut hand = app.clone();
        hand.web.as_mut().unwrap().redirect_uris.clear();
        hand.api
            .as_mut()
            .unwrap()
            .pre_authorized_applications
            .clear();
        assert_eq!(
            find(&d, &hand, &["CID-B".into()]),
            vec!["redirectUris", "preAuthorizedApplications (missing CID-B)"]
        );
    }
}
