//! IDPortenClient and MaskinportenClient through the seam ([`crate::controller::Kind`]): the Digdir
//! provider's shared state ([`DigdirProvider`]) and what differs between the two kinds
//! ([`DigdirResource`]). The pass itself is a short pipeline ([`pipeline`]); its steps are
//! [`exposed`] (a MaskinportenClient's exposed scopes and their consumers), [`registration`],
//! [`keys`] and the app Secret; [`observe`] is `--observe`; [`periodic`] the steady-state pass;
//! [`registry`] the index of registrations.

pub mod exposed;
pub mod keys;
pub mod observe;
pub mod periodic;
pub mod pipeline;
pub mod registration;
pub mod registry;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::context::Shared;
use super::kind::{Kind, KindNames, KindStatus, Provider};
use super::pass::Pass;
use super::{Applied, Error};
use crate::clock::Clock;
use crate::core::digdir::registration::{self as creg, Payload};
use crate::core::digdir::status as cstatus;
use crate::core::digdir::{self as cd, DigdirKind, app_secret as csecret};
use crate::core::hash;
use crate::crd::{DigdiratorStatus, IDPortenClient, MaskinportenClient};
use crate::digdir::DigdirClient;

/// Access to consumed scopes (Maskinporten), as digdirator checks it.
#[derive(Clone, Debug)]
pub struct ScopeAccess {
    pub fetched: Timestamp,
    pub approved: BTreeSet<String>,
    pub open: BTreeSet<String>,
}

/// The controllers' reflector stores (`None` for a disabled kind), read by the periodic pass.
#[derive(Clone, Default)]
pub struct Stores {
    pub idporten: Option<Store<IDPortenClient>>,
    pub maskinporten: Option<Store<MaskinportenClient>>,
}

/// The Digdir provider: its client and what the passes of both Digdir kinds share.
pub struct DigdirProvider {
    pub client: DigdirClient,
    pub config: cd::Config,
    /// Which client belongs to which resource, from one shared list.
    pub registrations: registry::RegistrationIndex,
    /// A full pass (Digdir read) happens at least this often even for an unchanged resource.
    pub full_sync_every: Duration,
    /// How long an unknown create outcome holds the next create of that identity: the client's
    /// request timeout plus a margin (a late answer lands within it).
    pub create_settle: Duration,
    /// Scopes the organisation may consume (cached 10 minutes, as digdirator does).
    pub(crate) scope_access: tokio::sync::Mutex<Option<ScopeAccess>>,
    /// What the periodic pass found and when it read each JWKS.
    pub(crate) drift: Mutex<periodic::DriftState>,
    /// Resources whose next key is deferred, by object key.
    deferred_next: Mutex<HashSet<String>>,
    pub(crate) stores: Mutex<Stores>,
    /// `--observe`: the one list of registrations every resource's report is judged against.
    pub(crate) observe_listing: tokio::sync::OnceCell<Vec<crate::digdir::ClientRegistration>>,
    /// Exposed scopes: delegation sources, outcomes not known yet, ACL read times, scope owners.
    pub(crate) exposed: exposed::ExposedState,
}

impl DigdirProvider {
    /// `request_timeout` is the Digdir client's (it decides how long an unknown create outcome
    /// holds the next create).
    pub fn new(
        client: DigdirClient,
        config: cd::Config,
        clock: Clock,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client,
            config,
            registrations: registry::RegistrationIndex::new(clock),
            full_sync_every: Duration::from_secs(24 * 3600),
            create_settle: request_timeout + (request_timeout / 2).max(Duration::from_secs(1)),
            scope_access: tokio::sync::Mutex::new(None),
            drift: Mutex::new(periodic::DriftState::default()),
            deferred_next: Mutex::new(HashSet::new()),
            stores: Mutex::new(Stores::default()),
            observe_listing: tokio::sync::OnceCell::new(),
            exposed: exposed::ExposedState::default(),
        }
    }

    /// Resources whose next key is still deferred (made in a later pass).
    pub fn deferred_next_keys(&self) -> usize {
        self.deferred_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub(crate) fn set_deferred_next(&self, key: &str, deferred: bool) {
        let mut s = self.deferred_next.lock().unwrap_or_else(|p| p.into_inner());
        if deferred {
            if !s.contains(key) {
                s.insert(key.to_string());
            }
        } else {
            s.remove(key);
        }
    }

    pub(crate) fn stores(&self) -> Stores {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Provider for DigdirProvider {
    fn name(&self) -> &'static str {
        "Digdir"
    }

    fn periodic_pass<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, ()> {
        Box::pin(periodic::run_once(self, shared))
    }
}

/// What differs between the two Digdir kinds.
pub trait DigdirResource: Kind<Status = DigdiratorStatus, Provider = DigdirProvider> {
    const KIND: DigdirKind;
    fn secret_name(&self) -> &str;
    fn spec_hash(&self) -> String;
    /// The integration type at Digdir.
    fn integration_type(&self) -> &'static str;
    /// IDPORTEN_REDIRECT_URI / MASKINPORTEN_SCOPES.
    fn secret_kind_value(&self) -> String;
    /// Consumed scopes to check for access (Maskinporten only).
    fn consumed_scopes(&self) -> Option<Vec<String>> {
        None
    }
    /// `spec.scopes.exposes` (Maskinporten only; `None` for a kind that cannot expose scopes).
    fn exposed_scopes(&self) -> Option<&[crate::crd::ExposedScope]> {
        None
    }
    fn payload(&self, cfg: &cd::Config, valid_scopes: &[String]) -> Payload;
    /// Hands the periodic pass this kind's store.
    fn attach(stores: &mut Stores, store: Store<Self>);
}

impl KindStatus for DigdiratorStatus {
    fn conditions(&self) -> &[Condition] {
        self.conditions.as_deref().unwrap_or(&[])
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        self.conditions.get_or_insert_with(Vec::new)
    }
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

impl DigdirResource for IDPortenClient {
    const KIND: DigdirKind = DigdirKind::IDPorten;
    fn secret_name(&self) -> &str {
        &self.spec.secret_name
    }
    fn spec_hash(&self) -> String {
        hash::idporten_hash(&self.spec)
    }
    fn integration_type(&self) -> &'static str {
        self.spec.integration_type.as_str()
    }
    fn secret_kind_value(&self) -> String {
        csecret::idporten_redirect_uri(&self.spec)
    }
    fn payload(&self, cfg: &cd::Config, _: &[String]) -> Payload {
        creg::idporten_payload(
            cfg,
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &self.spec,
        )
    }
    fn attach(stores: &mut Stores, store: Store<Self>) {
        stores.idporten = Some(store);
    }
}

impl DigdirResource for MaskinportenClient {
    const KIND: DigdirKind = DigdirKind::Maskinporten;
    fn secret_name(&self) -> &str {
        &self.spec.secret_name
    }
    fn spec_hash(&self) -> String {
        hash::maskinporten_hash(&self.spec)
    }
    fn integration_type(&self) -> &'static str {
        "maskinporten"
    }
    fn secret_kind_value(&self) -> String {
        csecret::maskinporten_scopes(&self.spec)
    }
    fn consumed_scopes(&self) -> Option<Vec<String>> {
        Some(creg::maskinporten_consumed(&self.spec))
    }
    fn exposed_scopes(&self) -> Option<&[crate::crd::ExposedScope]> {
        Some(
            self.spec
                .scopes
                .as_ref()
                .and_then(|s| s.exposes.as_deref())
                .unwrap_or_default(),
        )
    }
    fn payload(&self, cfg: &cd::Config, valid: &[String]) -> Payload {
        creg::maskinporten_payload(
            cfg,
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &self.spec,
            valid,
        )
    }
    fn attach(stores: &mut Stores, store: Store<Self>) {
        stores.maskinporten = Some(store);
    }
}

/// digdirator's finalizer and annotations, for both kinds.
const fn names(secret_type_label: &'static str) -> KindNames {
    KindNames {
        finalizer: cstatus::FINALIZER,
        legacy_finalizers: &[cstatus::LEGACY_FINALIZER],
        consumed_annotations: &[cstatus::ANN_RESYNC, cstatus::ANN_ROTATE],
        resync_annotation: cstatus::ANN_RESYNC,
        secret_type_label,
    }
}

macro_rules! digdir_kind {
    ($kind:ty, $label:expr) => {
        impl Kind for $kind {
            type Status = DigdiratorStatus;
            type Provider = DigdirProvider;
            const NAMES: KindNames = names($label);

            fn status(&self) -> Option<&DigdiratorStatus> {
                self.status.as_ref()
            }

            fn validate(&self, provider: &DigdirProvider) -> Result<(), Error> {
                pipeline::validate(self, provider)
            }

            fn apply<'a>(
                pass: &'a Pass<'a, Self>,
            ) -> impl std::future::Future<Output = Result<Applied<DigdiratorStatus>, Error>> + Send + 'a
            {
                pipeline::apply(pass)
            }

            fn cleanup<'a>(
                pass: &'a Pass<'a, Self>,
            ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'a {
                pipeline::cleanup(pass)
            }

            fn observe<'a>(
                pass: &'a Pass<'a, Self>,
            ) -> impl std::future::Future<
                Output = Result<Vec<crate::core::observe::Action>, Error>,
            > + Send
            + 'a {
                observe::observe_one(pass)
            }

            fn failure_status(
                prev: Option<&DigdiratorStatus>,
                generation: Option<i64>,
                now: Timestamp,
                reason: &str,
                message: &str,
            ) -> DigdiratorStatus {
                cstatus::failure(prev, generation, now, reason, message)
            }

            fn after_success<'a>(
                pass: &'a Pass<'a, Self>,
                changes: &'a [String],
            ) -> impl std::future::Future<Output = ()> + Send + 'a {
                periodic::report_repair(pass, changes)
            }

            fn attach_store(provider: &DigdirProvider, store: Store<Self>) {
                let mut stores = provider.stores.lock().unwrap_or_else(|p| p.into_inner());
                <$kind as DigdirResource>::attach(&mut stores, store);
            }
        }
    };
}

digdir_kind!(IDPortenClient, DigdirKind::IDPorten.secret_type_label());
digdir_kind!(
    MaskinportenClient,
    DigdirKind::Maskinporten.secret_type_label()
);
