//! `spec.preAuthorizedApplications` and the groups: which applications and groups may get tokens for
//! the app, and what that means in Graph (azurerator.md §3.6, §3.8).
//!
//! - Each rule names an app by display name `<cluster>:<namespace>:<application>` (a missing
//!   namespace or cluster is the resource's own); rules naming the same app are merged. An app is
//!   *found* when both its application and its service principal exist; a rule whose app is not
//!   found (yet) is listed in `status.preAuthorizedApps.unassigned` and the rest proceed. The app
//!   itself is always pre-authorized (azurerator appends it).
//! - `api.preAuthorizedApplications`: one entry per found app with `defaultaccess` plus the rule's
//!   scopes; entries for other apps are kept unless portvakt (or azurerator) put them there before
//!   (they are in the previous status), so a hand-made entry survives and a removed rule goes.
//! - App role assignments on the app's service principal: `access_as_application` for every found
//!   app (self included), each custom role for the apps whose rule names it, and the default role
//!   (all zeros) for the groups. An assignment is removed only when it is not wanted and its principal
//!   is one portvakt manages (a service principal it assigned before, or a group while groups
//!   assignment is on); other assignments are never touched.

use std::collections::{BTreeMap, BTreeSet};

use super::Config;
use super::application::{ACCESS_AS_APPLICATION, DEFAULT_ACCESS, role_id, scope_id};
use crate::crd::{AccessPolicyRule, AzureAdApplicationSpec, AzureAdPreAuthorizedApp};
use crate::entra::{AppRole, AppRoleAssignment, PermissionScope, PreAuthorizedApplication};

/// The all-zero "default access" role groups are assigned.
pub const DEFAULT_ROLE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// One pre-authorized app, its namespace and cluster filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub rule: AccessPolicyRule,
    /// `<cluster>:<namespace>:<application>`: the display name it is found by.
    pub urn: String,
    pub scopes: BTreeSet<String>,
    pub roles: BTreeSet<String>,
}

/// The rules of the spec, filled in and merged by app (in order of first mention).
pub fn rules(cfg: &Config, namespace: &str, spec: &AzureAdApplicationSpec) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for r in spec.pre_authorized_applications.iter().flatten() {
        let application = r.application.trim();
        if application.is_empty() {
            continue;
        }
        let ns = r
            .namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(namespace);
        let cluster = r
            .cluster
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&cfg.cluster_name);
        let urn = super::display_name(cluster, ns, application);
        let (scopes, roles) = r
            .permissions
            .as_ref()
            .map(|p| {
                let set = |v: &Option<Vec<String>>| -> BTreeSet<String> {
                    v.iter()
                        .flatten()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                };
                (set(&p.scopes), set(&p.roles))
            })
            .unwrap_or_default();
        match out.iter_mut().find(|x| x.urn == urn) {
            Some(x) => {
                x.scopes.extend(scopes);
                x.roles.extend(roles);
            }
            None => out.push(Rule {
                rule: AccessPolicyRule {
                    application: application.to_string(),
                    namespace: Some(ns.to_string()),
                    cluster: Some(cluster.to_string()),
                },
                urn,
                scopes,
                roles,
            }),
        }
    }
    out
}

/// A found app: its client id and its service principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub client_id: String,
    pub sp_id: String,
}

/// A rule and what the lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub rule: Rule,
    pub found: Option<Found>,
    /// Why it was not found (for status and events).
    pub reason: Option<String>,
}

/// The reason azurerator gives for an app it could not find.
pub fn not_found_reason(urn: &str, cfg: &Config) -> String {
    format!(
        "skipped '{urn}'; not found in tenant ({} - {})",
        cfg.tenant_name, cfg.tenant_id
    )
}

/// The app itself, as a found rule (always pre-authorized).
pub fn self_rule(cfg: &Config, namespace: &str, name: &str, found: Found) -> Resolved {
    Resolved {
        rule: Rule {
            rule: AccessPolicyRule {
                application: name.to_string(),
                namespace: Some(namespace.to_string()),
                cluster: Some(cfg.cluster_name.clone()),
            },
            urn: super::display_name(&cfg.cluster_name, namespace, name),
            scopes: BTreeSet::new(),
            roles: BTreeSet::new(),
        },
        found: Some(found),
        reason: None,
    }
}

/// `status.preAuthorizedApps`: `(assigned, unassigned)`.
pub fn status_lists(
    resolved: &[Resolved],
) -> (Vec<AzureAdPreAuthorizedApp>, Vec<AzureAdPreAuthorizedApp>) {
    let mut assigned = Vec::new();
    let mut unassigned = Vec::new();
    for r in resolved {
        let item = AzureAdPreAuthorizedApp {
            access_policy_rule: Some(r.rule.rule.clone()),
            client_id: r.found.as_ref().map(|f| f.client_id.clone()),
            service_principal_object_id: r.found.as_ref().map(|f| f.sp_id.clone()),
            reason: r.reason.clone(),
        };
        if r.found.is_some() {
            assigned.push(item);
        } else {
            unassigned.push(item);
        }
    }
    (assigned, unassigned)
}

/// The pre-authorized list Graph should hold. `previous` are the client ids portvakt pre-authorized
/// before (from status): their entries go when their rule goes; entries of other apps stay.
pub fn pre_authorized(
    resolved: &[Resolved],
    scopes: &[PermissionScope],
    observed: &[PreAuthorizedApplication],
    previous: &BTreeSet<String>,
) -> Vec<PreAuthorizedApplication> {
    let mut out: Vec<PreAuthorizedApplication> = Vec::new();
    for r in resolved {
        let Some(f) = &r.found else { continue };
        if out
            .iter()
            .any(|p| p.app_id.eq_ignore_ascii_case(&f.client_id))
        {
            continue;
        }
        let mut ids: Vec<String> = Vec::new();
        for name in std::iter::once(DEFAULT_ACCESS).chain(r.rule.scopes.iter().map(String::as_str))
        {
            if let Some(id) = scope_id(scopes, name)
                && !ids.iter().any(|x| x == id)
            {
                ids.push(id.to_string());
            }
        }
        out.push(PreAuthorizedApplication {
            app_id: f.client_id.clone(),
            delegated_permission_ids: ids,
        });
    }
    let known: BTreeSet<String> = scopes.iter().map(|s| s.id.to_ascii_lowercase()).collect();
    for o in observed {
        let id = o.app_id.to_ascii_lowercase();
        let wanted = out.iter().any(|p| p.app_id.eq_ignore_ascii_case(&id));
        let ours = previous.iter().any(|p| p.eq_ignore_ascii_case(&id));
        if wanted || ours {
            continue;
        }
        let mut kept = o.clone();
        kept.delegated_permission_ids
            .retain(|p| known.contains(&p.to_ascii_lowercase()));
        out.push(kept);
    }
    out
}

/// Whether two pre-authorized lists say the same (order ignored, ids compared without case).
pub fn same_pre_authorized(a: &[PreAuthorizedApplication], b: &[PreAuthorizedApplication]) -> bool {
    let norm = |l: &[PreAuthorizedApplication]| -> BTreeMap<String, BTreeSet<String>> {
        l.iter()
            .map(|p| {
                (
                    p.app_id.to_ascii_lowercase(),
                    p.delegated_permission_ids
                        .iter()
                        .map(|i| i.to_ascii_lowercase())
                        .collect(),
                )
            })
            .collect()
    };
    norm(a) == norm(b)
}

/// An assignment portvakt wants on the app's service principal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub principal_id: String,
    /// `ServicePrincipal` or `Group`.
    pub principal_type: &'static str,
    pub app_role_id: String,
    /// The app's display name or the group's id, for logs.
    pub principal: String,
}

/// The groups to assign: `spec.claims.groups` (while groups assignment is on), and the configured
/// all-users groups for `allowAllUsers` (only with assignment required, as azurerator).
/// `(claimed, all_users)`: a claimed group that does not exist is skipped; a missing all-users group
/// is an error of the configuration.
pub fn group_ids(cfg: &Config, spec: &AzureAdApplicationSpec) -> (Vec<String>, Vec<String>) {
    if !cfg.groups_assignment {
        return (vec![], vec![]);
    }
    let mut claimed: Vec<String> = Vec::new();
    for g in spec.claims.iter().flat_map(|c| c.groups.iter().flatten()) {
        if let Some(id) = g.id.as_deref().map(str::trim).filter(|s| !s.is_empty())
            && !claimed.iter().any(|c| c.eq_ignore_ascii_case(id))
        {
            claimed.push(id.to_string());
        }
    }
    let all_users = if spec.allow_all_users == Some(true) && cfg.assignment_required {
        cfg.all_users_group_ids
            .iter()
            .filter(|id| !claimed.iter().any(|c| c.eq_ignore_ascii_case(id)))
            .cloned()
            .collect()
    } else {
        vec![]
    };
    (claimed, all_users)
}

/// Every assignment wanted on the app's service principal: the found apps' roles and the groups.
pub fn wanted_assignments(
    resolved: &[Resolved],
    roles: &[AppRole],
    groups: &[String],
) -> Vec<Wanted> {
    let mut out: BTreeSet<Wanted> = BTreeSet::new();
    for r in resolved {
        let Some(f) = &r.found else { continue };
        let names =
            std::iter::once(ACCESS_AS_APPLICATION).chain(r.rule.roles.iter().map(String::as_str));
        for name in names {
            if let Some(id) = role_id(roles, name) {
                out.insert(Wanted {
                    principal_id: f.sp_id.clone(),
                    principal_type: "ServicePrincipal",
                    app_role_id: id.to_string(),
                    principal: r.rule.urn.clone(),
                });
            }
        }
    }
    for g in groups {
        out.insert(Wanted {
            principal_id: g.clone(),
            principal_type: "Group",
            app_role_id: DEFAULT_ROLE_ID.into(),
            principal: g.clone(),
        });
    }
    out.into_iter().collect()
}

/// What to add and what to remove, given what Graph holds. `managed` are service principals portvakt
/// manages assignments of (assigned before, or wanted now); groups count as managed while
/// `groups_assignment` is on.
pub fn assignment_changes(
    wanted: &[Wanted],
    observed: &[AppRoleAssignment],
    managed: &BTreeSet<String>,
    groups_assignment: bool,
) -> (Vec<Wanted>, Vec<AppRoleAssignment>) {
    let key = |p: &str, r: &str| (p.to_ascii_lowercase(), r.to_ascii_lowercase());
    let have: BTreeSet<(String, String)> = observed
        .iter()
        .map(|a| key(&a.principal_id, &a.app_role_id))
        .collect();
    let want: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|w| key(&w.principal_id, &w.app_role_id))
        .collect();
    let add = wanted
        .iter()
        .filter(|w| !have.contains(&key(&w.principal_id, &w.app_role_id)))
        .cloned()
        .collect();
    let managed: BTreeSet<String> = managed.iter().map(|m| m.to_ascii_lowercase()).collect();
    let remove = observed
        .iter()
        .filter(|a| !want.contains(&key(&a.principal_id, &a.app_role_id)))
        .filter(|a| match a.principal_type.as_deref() {
            Some("Group") => groups_assignment,
            Some("ServicePrincipal") | None => {
                managed.contains(&a.principal_id.to_ascii_lowercase())
            }
            _ => false,
        })
        .cloned()
        .collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entra::application;
    use crate::crd::{
        AccessPolicyInboundRule, AccessPolicyPermissions, AzureAdClaims, AzureAdGroup,
    };

    fn cfg() -> Config {
        Config {
            cluster_name: "dev".into(),
            tenant_id: "tid".into(),
            tenant_name: "example.org".into(),
            ..Config::default()
        }
    }

    fn rule(
        app: &str,
        ns: Option<&str>,
        cluster: Option<&str>,
        scopes: &[&str],
        roles: &[&str],
    ) -> AccessPolicyInboundRule {
        AccessPolicyInboundRule {
            application: app.into(),
            namespace: ns.map(String::from),
            cluster: cluster.map(String::from),
            permissions: Some(AccessPolicyPermissions {
                scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
                roles: Some(roles.iter().map(|s| s.to_string()).collect()),
            }),
        }
    }

    fn spec(rules: Vec<AccessPolicyInboundRule>) -> AzureAdApplicationSpec {
        AzureAdApplicationSpec {
            secret_name: "s".into(),
            pre_authorized_applications: Some(rules),
            ..Default::default()
        }
    }

    #[test]
    fn rules_default_to_the_own_namespace_and_cluster_and_merge() {
        let s = spec(vec![
            rule("b", None, None, &["read"], &[]),
            rule("b", Some("team"), Some("dev"), &[], &["admin"]),
            rule("c", Some("other"), Some("prod"), &[], &[]),
            rule("  ", None, None, &[], &[]),
        ]);
        let rs = rules(&cfg(), "team", &s);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].urn, "dev:team:b");
        assert_eq!(rs[0].scopes.iter().collect::<Vec<_>>(), ["read"]);
        assert_eq!(rs[0].roles.iter().collect::<Vec<_>>(), ["admin"]);
        assert_eq!(rs[1].urn, "prod:other:c");
        assert_eq!(rs[1].rule.namespace.as_deref(), Some("other"));
    }

    fn found(cid: &str, sp: &str) -> Option<Found> {
        Some(Found {
            client_id: cid.into(),
            sp_id: sp.into(),
        })
    }

    fn setup() -> (Vec<Resolved>, Vec<PermissionScope>, Vec<AppRole>) {
        let s = spec(vec![
            rule("b", None, None, &["read"], &["admin"]),
            rule("c", None, Some("prod"), &[], &[]),
        ]);
        let c = cfg();
        let rs = rules(&c, "team", &s);
        let d = application::desired(&c, "team", "a", &s);
        let (scopes, roles) = application::permissions(&d, None);
        let mut resolved: Vec<Resolved> = vec![
            Resolved {
                rule: rs[0].clone(),
                found: found("cid-b", "sp-b"),
                reason: None,
            },
            Resolved {
                rule: rs[1].clone(),
                found: None,
                reason: Some(not_found_reason("prod:team:c", &c)),
            },
        ];
        resolved.push(self_rule(
            &c,
            "team",
            "a",
            Found {
                client_id: "cid-a".into(),
                sp_id: "sp-a".into(),
            },
        ));
        (resolved, scopes, roles)
    }

    #[test]
    fn status_lists_split_found_and_not_found() {
        let (resolved, _, _) = setup();
        let (assigned, unassigned) = status_lists(&resolved);
        assert_eq!(assigned.len(), 2);
        assert_eq!(unassigned.len(), 1);
        assert_eq!(
            unassigned[0].reason.as_deref(),
            Some("skipped 'prod:team:c'; not found in tenant (example.org - tid)")
        );
        assert_eq!(assigned[1].client_id.as_deref(), Some("cid-a"));
    }

    #[test]
    fn the_pre_authorized_list_keeps_foreign_entries_and_drops_former_ones() {
        let (resolved, scopes, _) = setup();
        let observed = vec![
            PreAuthorizedApplication {
                app_id: "hand-made".into(),
                delegated_permission_ids: vec![
                    application::DEFAULT_ACCESS_ID.into(),
                    "gone-scope".into(),
                ],
            },
            PreAuthorizedApplication {
                app_id: "formerly-ours".into(),
                delegated_permission_ids: vec![],
            },
        ];
        let previous = BTreeSet::from(["FORMERLY-OURS".to_string()]);
        let list = pre_authorized(&resolved, &scopes, &observed, &previous);
        let ids: Vec<&str> = list.iter().map(|p| p.app_id.as_str()).collect();
        assert_eq!(ids, ["cid-b", "cid-a", "hand-made"]);
        let read = application::scope_id(&scopes, "read").unwrap();
        assert_eq!(
            list[0].delegated_permission_ids,
            vec![application::DEFAULT_ACCESS_ID, read]
        );
        assert_eq!(
            list[1].delegated_permission_ids,
            vec![application::DEFAULT_ACCESS_ID]
        );
        assert_eq!(
            list[2].delegated_permission_ids,
            vec![application::DEFAULT_ACCESS_ID]
        );
        let mut shuffled = list.clone();
        shuffled.reverse();
        assert!(same_pre_authorized(&list, &shuffled));
        assert!(!same_pre_authorized(&list, &list[..2]));
    }

    #[test]
    fn assignments_give_roles_to_found_apps_and_the_default_role_to_groups() {
        let (resolved, _, roles) = setup();
        let wanted = wanted_assignments(&resolved, &roles, &["g1".into()]);
        let admin = application::role_id(&roles, "admin").unwrap();
        let mut got: Vec<(&str, &str)> = wanted
            .iter()
            .map(|w| (w.principal_id.as_str(), w.app_role_id.as_str()))
            .collect();
        got.sort();
        let mut expected = vec![
            ("g1", DEFAULT_ROLE_ID),
            ("sp-a", application::ACCESS_AS_APPLICATION_ID),
            ("sp-b", application::ACCESS_AS_APPLICATION_ID),
            ("sp-b", admin),
        ];
        expected.sort();
        assert_eq!(got, expected);
    }

    fn assignment(id: &str, principal: &str, kind: &str, role: &str) -> AppRoleAssignment {
        AppRoleAssignment {
            id: id.into(),
            app_role_id: role.into(),
            principal_id: principal.into(),
            principal_type: Some(kind.into()),
            resource_id: "sp-a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_managed_principals_lose_assignments() {
        let (resolved, _, roles) = setup();
        let wanted = wanted_assignments(&resolved, &roles, &[]);
        let observed = vec![
            assignment(
                "1",
                "sp-a",
                "ServicePrincipal",
                application::ACCESS_AS_APPLICATION_ID,
            ),
            assignment(
                "2",
                "sp-old",
                "ServicePrincipal",
                application::ACCESS_AS_APPLICATION_ID,
            ),
            assignment(
                "3",
                "sp-foreign",
                "ServicePrincipal",
                application::ACCESS_AS_APPLICATION_ID,
            ),
            assignment("4", "g-old", "Group", DEFAULT_ROLE_ID),
            assignment("5", "user", "User", DEFAULT_ROLE_ID),
        ];
        let managed = BTreeSet::from(["sp-old".to_string(), "sp-a".into(), "sp-b".into()]);
        let (add, remove) = assignment_changes(&wanted, &observed, &managed, true);
        let added: Vec<&str> = add.iter().map(|w| w.principal_id.as_str()).collect();
        assert_eq!(added, ["sp-b", "sp-b"], "access_as_application and admin");
        let removed: Vec<&str> = remove.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(removed, ["2", "4"]);
        // Without groups assignment, groups are not portvakt's to remove.
        let (_, remove) = assignment_changes(&wanted, &observed, &managed, false);
        assert_eq!(remove.len(), 1);
    }

    #[test]
    fn groups_follow_the_feature_settings() {
        let mut s = spec(vec![]);
        s.claims = Some(AzureAdClaims {
            extra: None,
            groups: Some(vec![
                AzureAdGroup {
                    id: Some("g1".into()),
                },
                AzureAdGroup {
                    id: Some("g1".into()),
                },
                AzureAdGroup { id: None },
            ]),
        });
        s.allow_all_users = Some(true);
        let mut c = cfg();
        assert_eq!(group_ids(&c, &s), (vec![], vec![]), "feature off");
        c.groups_assignment = true;
        c.all_users_group_ids = vec!["all".into()];
        assert_eq!(
            group_ids(&c, &s),
            (vec!["g1".to_string()], vec![]),
            "all users needs assignment required"
        );
        c.assignment_required = true;
        assert_eq!(
            group_ids(&c, &s),
            (vec!["g1".to_string()], vec!["all".to_string()])
        );
        s.allow_all_users = Some(false);
        assert_eq!(group_ids(&c, &s).1, Vec::<String>::new());
    }
}
