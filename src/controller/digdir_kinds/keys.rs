//! Step: the client's keys ([`crate::core::digdir::keyplan`] decides; this gathers and applies).
//!
//! 1. the plan's inputs from portvakt's record ([`keyplan::recorded`], the same derivation
//!    `--observe` uses), a JWKS read or a workload scan only when the plan asks for one;
//! 2. the plan made once with stand-in keys, then only the keys it needs generated and filled in: the
//!    keys someone waits for (a first key, an asked-for rotation) at once and before any other, a
//!    deferred next key on idle CPU — asked for, made in the background, taken by a later pass (the
//!    plan defers it meanwhile), so a pass never holds a controller worker waiting for idle CPU;
//! 3. a new key stored in the next-key Secret before it is registered; the JWKS POST before any app
//!    Secret hands a key out; the bookkeeping (what is registered, until when) kept on the next-key
//!    Secret so a steady-state pass needs no JWKS read.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use super::DigdirResource;
use super::pipeline::{SecretsView, managed_secrets, owner};
use super::registration::Registration;
use crate::controller::keygen::Priority;
use crate::controller::pass::Pass;
use crate::controller::secret_store::AnnotationMode;
use crate::controller::{Counters, Error};
use crate::core::Key;
use crate::core::digdir::app_secret::{self as csecret, Bookkeeping};
use crate::core::digdir::keyplan::{
    self, CurrentSource, KeyActions, KeyInputs, KeyPlan, ManagedSecret, Registered,
};
use crate::core::digdir::status::{self as cstatus, events};
use crate::core::workloads::References;
use crate::crd::DigdiratorStatus;
use crate::digdir::{Jwk, JwksResponse};

/// Digdir expires a key a year after it was posted; assumed when an answer leaves `exp` out.
pub const KEY_LIFETIME: SignedDuration = SignedDuration::from_hours(365 * 24);

/// What the key step did.
pub(crate) struct KeysDone {
    pub actions: KeyActions,
    /// What is registered after this pass.
    pub registered: Registered,
    /// Kids registered by a POST in this pass.
    pub key_ids: Option<Vec<String>>,
    pub posted: bool,
    /// Managed Secrets to delete (unreferenced).
    pub deleted: Vec<String>,
    /// What changed, in words (for drift reports).
    pub changes: Vec<String>,
}

/// The registered set from a JWKS answer: its kids, and the earliest expiry (a year from `now` when
/// the answer gives none).
pub(crate) fn registered_from_jwks(resp: Option<JwksResponse>, now: Timestamp) -> Registered {
    let keys = resp.map(|r| r.keys).unwrap_or_default();
    let expires_at = keys
        .iter()
        .filter_map(|k| k.exp)
        .min()
        .and_then(|s| Timestamp::from_second(s).ok())
        .or_else(|| (!keys.is_empty()).then(|| now + KEY_LIFETIME));
    Registered {
        kids: keys.into_iter().map(|k| k.kid).collect(),
        expires_at,
    }
}

/// The plan's inputs that do not change while it gathers more observations.
pub(crate) struct KeyBase<'a> {
    pub now: Timestamp,
    pub secret_name: &'a str,
    pub synced_secret_name: Option<&'a str>,
    pub rotate: bool,
    pub managed: &'a [ManagedSecret],
    pub next: Option<&'a Key>,
    pub next_registered_at: Option<Timestamp>,
    pub replaced: &'a [keyplan::ReplacedKey],
}

/// The plan's inputs as read from the resource and its Secrets: one derivation for a real pass and
/// `--observe` alike.
pub(crate) struct Gathered {
    pub managed: Vec<ManagedSecret>,
    pub rec: keyplan::Recorded,
    pub synced_secret_name: Option<String>,
}

impl Gathered {
    pub fn read<K: DigdirResource>(
        pass: &Pass<'_, K>,
        view: &SecretsView,
        client_id: &str,
        created_now: bool,
        status: &DigdiratorStatus,
    ) -> Self {
        let (next_key, book) = match &view.next {
            Some(s) => csecret::read_next_key_secret(s),
            None => (None, Bookkeeping::default()),
        };
        let force_read = pass.annotation_true(cstatus::ANN_RESYNC);
        Self {
            managed: managed_secrets(K::KIND, view),
            rec: keyplan::recorded(client_id, created_now, force_read, next_key, &book),
            synced_secret_name: status.synchronization_secret_name.clone(),
        }
    }

    pub fn base<'a, K: DigdirResource>(&'a self, pass: &'a Pass<'_, K>) -> KeyBase<'a> {
        KeyBase {
            now: pass.shared.clock.now(),
            secret_name: pass.obj.secret_name(),
            synced_secret_name: self.synced_secret_name.as_deref(),
            rotate: pass.annotation_true(cstatus::ANN_ROTATE),
            managed: &self.managed,
            next: self.rec.next.as_ref(),
            next_registered_at: self.rec.next_registered_at,
            replaced: &self.rec.replaced,
        }
    }
}

/// Gathers what the plan needs (JWKS read, workload scan), plans once, and — with `real_keys` —
/// generates the keys the plan asks for (`--observe` keeps the stand-ins), by priority (see the
/// module documentation).
pub(crate) async fn plan<K: DigdirResource>(
    pass: &Pass<'_, K>,
    client_id: &str,
    base: &KeyBase<'_>,
    registered: &mut Option<Registered>,
    real_keys: bool,
) -> Result<KeyActions, Error> {
    let mut refs: Option<References> = None;
    // A deferred next key is being made on idle CPU (asked for by this pass or an earlier one).
    let mut next_key_waits = pass.shared.keygen.is_requested(&pass.key);
    let mut idle_key: Option<Key> = None;
    loop {
        let inputs = KeyInputs {
            now: base.now,
            secret_name: base.secret_name,
            synced_secret_name: base.synced_secret_name,
            rotate: base.rotate,
            managed: base.managed,
            next: base.next,
            next_registered_at: base.next_registered_at,
            registered: registered.as_ref(),
            refs: refs.as_ref(),
            replaced: base.replaced,
            next_key_waits,
        };
        let mut wanted = 0usize;
        let planned = keyplan::plan(
            &pass.provider.config,
            &inputs,
            &mut keyplan::placeholders(&mut wanted),
        )
        .map_err(|e| Error::KeyGeneration(e.0))?;
        match planned {
            KeyPlan::NeedRegistered => {
                Counters::inc(&pass.shared.counters.jwks_reads);
                let resp = if client_id.is_empty() {
                    None
                } else {
                    pass.provider.client.get_jwks(client_id).await?
                };
                *registered = Some(registered_from_jwks(resp, pass.shared.clock.now()));
            }
            KeyPlan::NeedScan => refs = Some(pass.scan_workloads().await?),
            KeyPlan::Act(a) if !real_keys => return Ok(*a),
            KeyPlan::Act(a) if wanted == 0 => {
                if !a.next_waits && a.next_due_in.is_none() {
                    // Nobody waits for a key made in the background any more.
                    pass.shared.keygen.forget(&pass.key);
                }
                return Ok(*a);
            }
            KeyPlan::Act(a) if a.new_keys.iter().any(|k| k.waited_for()) => {
                pass.shared.keygen.forget(&pass.key);
                let keys = pass.generate_keys(wanted, Priority::Urgent).await?;
                return a.fill(&keys).map_err(|e| Error::KeyGeneration(e.0));
            }
            KeyPlan::Act(a) => {
                // Only a deferred next key: the one made on idle CPU if it is at hand (the same
                // pass may plan again after a read; the key is taken once).
                if idle_key.is_none() {
                    idle_key = pass.idle_key();
                }
                if let Some(k) = &idle_key {
                    let mut keys = vec![k.clone()];
                    keys.extend(pass.generate_keys(wanted - 1, Priority::Idle).await?);
                    return a.fill(&keys).map_err(|e| Error::KeyGeneration(e.0));
                }
                if !next_key_waits && pass.wake.is_some() {
                    // Asked for: plan again, deferring it until it is at hand.
                    next_key_waits = true;
                    continue;
                }
                // A next key the plan cannot defer (no next-key Secret to keep meanwhile: a
                // switch-over from digdirator), or a pass that cannot be woken: made here.
                pass.shared.keygen.forget(&pass.key);
                let keys = pass.generate_keys(wanted, Priority::Idle).await?;
                return a.fill(&keys).map_err(|e| Error::KeyGeneration(e.0));
            }
        }
    }
}

/// Step: the keys (see the module documentation).
pub(crate) async fn sync<K: DigdirResource>(
    pass: &Pass<'_, K>,
    view: &SecretsView,
    reg: &Registration,
    status: &DigdiratorStatus,
) -> Result<KeysDone, Error> {
    let p = pass.provider;
    let client_id = reg.client_id.as_str();
    let gathered = Gathered::read(pass, view, client_id, reg.created, status);
    let rec = &gathered.rec;
    let base = gathered.base(pass);
    let mut registered = rec.registered.clone();
    let actions = plan(pass, client_id, &base, &mut registered, true).await?;
    let registered = registered.unwrap_or_default();

    let owner = owner::<K>(pass)?;
    let mut new_book = Bookkeeping {
        client_id: client_id.to_string(),
        registered_kids: registered.kids.clone(),
        expires_at: registered.expires_at,
        next_registered_at: if actions.next_is_new {
            None
        } else {
            rec.next_registered_at
        },
        replaced: actions.replaced.clone(),
    };
    let mut changes = Vec::new();
    // Store a new key before registering it.
    let mut next_secret: Option<Secret> = view.next.clone();
    if actions.next_is_new {
        let desired = csecret::desired_next_key_secret(&owner, &actions.next, &new_book);
        next_secret = Some(
            pass.write_secret(next_secret.as_ref(), &desired, AnnotationMode::Replace)
                .await?,
        );
    }
    let mut key_ids = None;
    let mut after = registered.clone();
    if let Some(set) = &actions.register {
        let jwks: Vec<Jwk> = set.iter().map(|k| Jwk::from(&k.public)).collect();
        let resp = p.client.register_jwks(client_id, &jwks).await?;
        Counters::inc(&pass.shared.counters.jwks_posts);
        let now = pass.shared.clock.now();
        let answered = registered_from_jwks(Some(resp), now);
        let sent: Vec<String> = set.iter().map(|k| k.kid.clone()).collect();
        let kids = if answered.kids.is_empty() {
            sent.clone()
        } else {
            answered.kids.clone()
        };
        let next_was_registered = registered.kids.contains(&actions.next.kid);
        new_book.registered_kids = kids.clone();
        new_book.expires_at = answered.expires_at.or(Some(now + KEY_LIFETIME));
        if !next_was_registered || new_book.next_registered_at.is_none() {
            new_book.next_registered_at = Some(now);
        }
        after = Registered {
            kids: kids.clone(),
            expires_at: new_book.expires_at,
        };
        tracing::info!(client_id = %client_id, kids = %kids.join(","), why = %actions.post_reasons.join(", "),
            "keys registered at Digdir");
        key_ids = Some(kids);
        changes.push(format!(
            "keys registered ({})",
            actions.post_reasons.join(", ")
        ));
        if actions.rotated {
            pass.publish(
                EventType::Normal,
                events::ROTATED_IN_DIGDIR,
                "Client credentials is rotated".into(),
            )
            .await;
        } else if actions.source != CurrentSource::Generated {
            pass.publish(
                EventType::Normal,
                events::UPDATED_IN_DIGDIR,
                actions.describe_post(),
            )
            .await;
        }
    }
    if new_book.next_registered_at.is_none() && registered.kids.contains(&actions.next.kid) {
        // Registered before portvakt recorded it: count from now, conservatively.
        new_book.next_registered_at = Some(pass.shared.clock.now());
    }
    let next_needs_write = next_secret
        .as_ref()
        .is_none_or(|s| csecret::bookkeeping_differs(s, &new_book))
        || next_secret.as_ref().is_some_and(|s| {
            csecret::read_next_key_secret(s).0.map(|k| k.kid) != Some(actions.next.kid.clone())
        });
    if next_needs_write {
        let desired = csecret::desired_next_key_secret(&owner, &actions.next, &new_book);
        pass.write_secret(next_secret.as_ref(), &desired, AnnotationMode::Replace)
            .await?;
    }
    Ok(KeysDone {
        posted: actions.register.is_some(),
        deleted: actions.delete.clone(),
        registered: after,
        key_ids,
        actions,
        changes,
    })
}
