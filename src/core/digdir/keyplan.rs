//! Key policy: which key an app gets, which keys are registered at Digdir, and which Secrets go.
//!
//! # Design
//! Digdir needs up to two minutes to recognise a newly registered key, so a key must be registered
//! *and aged* before a rotation hands it to an app. portvakt therefore keeps a **next key**, already
//! registered, in a separate Secret it owns (`portvakt-next-<kind>-<name>`, see
//! [`super::app_secret::next_key_secret_name`]); the app Secrets stay exactly as digdirator wrote them.
//!
//! - **First sync without a reusable key**: *one* key is made. It is stored in the next-key Secret
//!   first, then registered, then written to the app Secret, and the resource is Ready. A brand new
//!   client has no older working key, so waiting would gain nothing.
//! - **Deferred next key**: the next key is only needed by a later rotation, so it is made off the
//!   critical path: a next-key Secret whose key an app Secret already holds (the first key) counts as
//!   "no next key yet", and for [`super::Config::next_key_delay`] after that key was registered the
//!   pass makes none and asks to be run again when the delay is over ([`KeyActions::next_due_in`]).
//!   The delay is a lower bound, not the scheduler: the plan says why it asks for each new key
//!   ([`KeyActions::new_keys`]: [`NewKey::First`], [`NewKey::Rotation`], [`NewKey::Next`]), and the
//!   caller generates first keys and asked-for rotations before any deferred next key, which is made
//!   on idle CPU; while it is being made the plan keeps deferring it ([`KeyInputs::next_key_waits`],
//!   [`KeyActions::next_waits`]). A burst of new resources thus spends its CPU on first keys; their
//!   next keys follow. A rotation asked for meanwhile makes the next key at once and waits for it to
//!   age like any other. With a zero delay the first sync makes both keys in one pass (current and
//!   next, one JWKS POST).
//! - **Rotation** (`digdir.nais.io/rotate`, or `spec.secretName` changed): the next key is promoted to
//!   current once it has been registered for [`super::Config::key_propagation`]; a fresh next key is
//!   made and registered in the same POST. If the next key is younger, nothing is handed out and the
//!   pass is retried when it has aged ([`KeyActions::wait`]). If there is no next key yet (a
//!   switch-over followed at once by a rotation, or a rotation while the next key is deferred), one
//!   is made, registered, and the rotation waits for it.
//! - **Reuse**: otherwise the key in the Secret named by `spec.secretName` is kept, or — on the first
//!   sync after digdirator, or after that Secret was deleted by hand — the key of the newest managed
//!   Secret. The JWK is reused byte for byte, so digdirator's Secret is not rewritten.
//! - **Every key passes through storage before registration**: a generated key (the first key too) is
//!   written to the next-key Secret before the POST, and registered before an app Secret gets it. A
//!   crash never leaves a registered key that no Secret holds, nor an app holding an unregistered key.
//! - **Registered set** (at most [`super::Config::max_keys`], in this priority): the current key; keys of
//!   Secrets referenced by running Pods (the replaced key of a Secret rewritten in place counts, until
//!   the Pods have restarted); the next key; keys of Secrets referenced by scaled-up templates; the newest
//!   others. Referenced Secrets whose keys do not fit are reported as dropped.
//! - **Expiry**: Digdir expires a key a year after it was posted, and re-posting renews it. The earliest
//!   expiry of the last POST is recorded (bookkeeping on the next-key Secret), and the set is re-posted
//!   [`super::Config::renew_before`] ahead. Without a record (first pass after digdirator, record lost)
//!   the JWKS is read once.
//! - **Cleanup**: managed Secrets other than `spec.secretName` that nothing references are deleted.
//!   The workload scan that decides "referenced" runs only when a POST or a deletion is in view *and*
//!   some managed Secret holds a key other than the app's own (otherwise references change nothing:
//!   a first sync or a next-key pass never scans).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Config;
use crate::core::Key;
use crate::core::workloads::{References, Usage};

/// A managed app Secret (labels `app`+`type`, owned by the resource).
#[derive(Clone, Debug)]
pub struct ManagedSecret {
    pub name: String,
    pub created: Option<Timestamp>,
    /// `None` when the JWK is missing or does not parse.
    pub key: Option<Key>,
}

/// What is registered at Digdir, from the bookkeeping or from a JWKS read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    pub kids: Vec<String>,
    /// Earliest expiry of the registered keys; `None` if unknown.
    pub expires_at: Option<Timestamp>,
}

/// A key that was an app Secret's key until a rotation replaced it in place. Pods that started before
/// the replacement may still hold it, so it stays registered while any of them runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplacedKey {
    /// The app Secret it was replaced in.
    pub secret: String,
    pub kid: String,
    /// The public half (all a registration needs).
    pub n: String,
    pub e: String,
    #[serde(rename = "replacedAt")]
    pub replaced_at: Timestamp,
}

impl ReplacedKey {
    fn key(&self) -> Key {
        Key::public_only(&self.kid, &self.n, &self.e)
    }
}

#[derive(Clone, Debug)]
pub struct KeyInputs<'a> {
    pub now: Timestamp,
    pub secret_name: &'a str,
    /// `status.synchronizationSecretName`.
    pub synced_secret_name: Option<&'a str>,
    /// Annotation `digdir.nais.io/rotate: "true"`.
    pub rotate: bool,
    pub managed: &'a [ManagedSecret],
    pub next: Option<&'a Key>,
    /// When the next key was first registered (bookkeeping).
    pub next_registered_at: Option<Timestamp>,
    pub registered: Option<&'a Registered>,
    pub refs: Option<&'a References>,
    /// Keys replaced in place by earlier rotations (bookkeeping).
    pub replaced: &'a [ReplacedKey],
    /// A deferred next key is being made off the critical path (on idle CPU) and is not at hand yet:
    /// the plan keeps deferring it ([`KeyActions::next_waits`]) instead of asking for one.
    pub next_key_waits: bool,
}

/// Why a plan asks for a new key; the caller generates the keys someone waits for first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewKey {
    /// The app's first key (or, with a zero delay, the next key made with it): the resource is not
    /// Ready without it.
    First,
    /// The next key of a rotation that was asked for (`rotate`, a changed `spec.secretName`).
    Rotation,
    /// A deferred next key, only needed by a later rotation: made when no other key waits.
    Next,
}

impl NewKey {
    /// Whether someone waits for this key (a resource to become Ready, a rotation to happen).
    pub fn waited_for(self) -> bool {
        !matches!(self, NewKey::Next)
    }
}

/// Where the app's key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CurrentSource {
    /// Kept from this managed Secret.
    Existing(String),
    /// The pre-registered next key.
    PromotedNext,
    /// The stored key no app Secret holds yet (a first key whose pass failed or crashed before the
    /// app Secret was written): handed out now, with no new key made.
    Stored,
    /// Generated in this pass (first sync).
    Generated,
}

#[derive(Clone, Debug)]
pub struct KeyActions {
    /// The key for the app Secret; `None` while a rotation waits (the Secret is left as it is).
    pub current: Option<Key>,
    pub source: CurrentSource,
    /// The key the next-key Secret holds after this pass: the next key, or — after a first sync,
    /// until the deferred next key is made — the app's own key.
    pub next: Key,
    /// The key is new: store it before registering it.
    pub next_is_new: bool,
    /// The JWKS to POST (replaces the whole set), public halves in priority order.
    pub register: Option<Vec<Key>>,
    /// A rotation waits for the next key to age; retry after this.
    pub wait: Option<Duration>,
    /// The next key is deferred; make it in a pass after this long.
    pub next_due_in: Option<Duration>,
    /// The next key is deferred until the one being made off the critical path is at hand
    /// ([`KeyInputs::next_key_waits`]); its maker asks for the pass.
    pub next_waits: bool,
    /// Why each new key is asked for, in the order of the stand-ins ([`placeholders`]).
    pub new_keys: Vec<NewKey>,
    /// The app gets a new key in this pass.
    pub rotated: bool,
    /// Why a POST happens (for events and `--observe`).
    pub post_reasons: Vec<&'static str>,
    /// Referenced Secrets whose keys are left out (more than `max_keys` in use).
    pub dropped: Vec<String>,
    /// Unreferenced managed Secrets to delete.
    pub delete: Vec<String>,
    /// The keys replaced in place that a running Pod may still hold, to record after this pass
    /// (this pass's own replacement included).
    pub replaced: Vec<ReplacedKey>,
}

/// What portvakt's own record (the next-key Secret and its bookkeeping) says, as the plan takes it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub next: Option<Key>,
    pub next_registered_at: Option<Timestamp>,
    /// `None`: not known from the record; the JWKS must be read ([`KeyPlan::NeedRegistered`]).
    pub registered: Option<Registered>,
    /// Keys replaced in place that a Pod may still hold.
    pub replaced: Vec<ReplacedKey>,
}

/// The one derivation of the plan's recorded inputs, for a real pass and `--observe` alike.
///
/// - `client_id` empty (the client is yet to be created) or created in this pass: nothing is
///   registered, and no JWKS read is needed.
/// - A record about another client, or one that predates this pass's create, is ignored.
/// - A trustworthy record says what is registered (no JWKS read) unless `force_read` (a `resync`).
pub fn recorded(
    client_id: &str,
    created_now: bool,
    force_read: bool,
    next: Option<Key>,
    book: &super::app_secret::Bookkeeping,
) -> Recorded {
    let valid = !client_id.is_empty() && !created_now && book.client_id == client_id;
    let registered = if client_id.is_empty() || created_now {
        Some(Registered::default())
    } else {
        (valid && !force_read && book.expires_at.is_some()).then(|| Registered {
            kids: book.registered_kids.clone(),
            expires_at: book.expires_at,
        })
    };
    Recorded {
        next: next.filter(|_| valid),
        next_registered_at: if valid { book.next_registered_at } else { None },
        registered,
        replaced: if valid {
            book.replaced.clone()
        } else {
            Vec::new()
        },
    }
}

/// Kids of the stand-in keys a plan is made with ([`placeholders`]); [`KeyActions::fill`] swaps in
/// the real ones. The plan runs once; only the keys it asks for are generated.
pub const NEW_KEY_PREFIX: &str = "portvakt-new-key-";

/// A key generator for [`plan`] that makes stand-ins and counts them.
pub fn placeholders(count: &mut usize) -> impl FnMut() -> Result<Key, GenerateError> + '_ {
    move || {
        *count += 1;
        Ok(Key::placeholder(&format!("{NEW_KEY_PREFIX}{count}")))
    }
}

impl KeyActions {
    /// The actions with the stand-in keys of [`placeholders`] replaced by `keys` (the first stand-in
    /// by `keys[0]`, and so on).
    pub fn fill(mut self, keys: &[Key]) -> Result<Self, GenerateError> {
        let real = |k: &mut Key| -> Result<(), GenerateError> {
            if let Some(n) = k.kid.strip_prefix(NEW_KEY_PREFIX) {
                let i: usize = n
                    .parse()
                    .map_err(|_| GenerateError(format!("stand-in key {n}")))?;
                *k = keys
                    .get(i.wrapping_sub(1))
                    .cloned()
                    .ok_or_else(|| GenerateError(format!("no real key for stand-in {i}")))?;
            }
            Ok(())
        };
        if let Some(k) = self.current.as_mut() {
            real(k)?;
        }
        real(&mut self.next)?;
        for k in self.register.iter_mut().flatten() {
            real(k)?;
        }
        Ok(self)
    }

    /// What a POST of this plan does, in words (for events: says what happened).
    pub fn describe_post(&self) -> String {
        let parts: Vec<&str> = self
            .post_reasons
            .iter()
            .map(|r| match *r {
                "first key" => "the first key registered",
                "new next key" => "a new next key registered",
                "next key not registered" => "the next key (for a later rotation) registered",
                "current key not registered" => "the current key registered again",
                "keys expire soon" => "keys registered again before Digdir expires them",
                "key expiry unknown" => "keys registered again (their expiry was unknown)",
                "registered keys differ from keys in use" => {
                    "registered keys brought in line with the keys in use"
                }
                other => other,
            })
            .collect();
        let mut text = parts.join("; ");
        if let Some(first) = text.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        text
    }
}

#[derive(Clone, Debug)]
pub enum KeyPlan {
    /// Read the registered JWKS first (no bookkeeping).
    NeedRegistered,
    /// Scan the namespace's workloads first.
    NeedScan,
    Act(Box<KeyActions>),
}

#[derive(Debug, thiserror::Error)]
#[error("generating a key: {0}")]
pub struct GenerateError(pub String);

enum Cur<'a> {
    Reuse(&'a ManagedSecret),
    Promote,
    /// The stored key no app Secret holds becomes the app's key (no rotation was asked for).
    First(&'a Key),
    Generate,
    Wait(Duration),
}

fn newest(managed: &[ManagedSecret]) -> Option<&ManagedSecret> {
    managed
        .iter()
        .filter(|m| m.key.is_some())
        .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)))
}

fn to_std(d: SignedDuration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(0))
}

/// Decides the key actions of a pass. `generate` is called only when the plan is final (never before
/// a `Need*` answer), at most twice.
pub fn plan(
    cfg: &Config,
    inp: &KeyInputs<'_>,
    generate: &mut dyn FnMut() -> Result<Key, GenerateError>,
) -> Result<KeyPlan, GenerateError> {
    let Some(registered) = inp.registered else {
        return Ok(KeyPlan::NeedRegistered);
    };
    let is_registered = |kid: &str| registered.kids.iter().any(|k| k == kid);
    let propagation = SignedDuration::try_from(cfg.key_propagation).unwrap_or(SignedDuration::ZERO);
    let named = inp
        .managed
        .iter()
        .find(|m| m.name == inp.secret_name && m.key.is_some());
    let wants_rotation = inp.rotate
        || (named.is_none() && inp.synced_secret_name.is_some_and(|s| s != inp.secret_name));
    // A stored key an app Secret already holds (the first key, kept in the next-key Secret until the
    // deferred next key is made) is no next key.
    let handed_out = |k: &Key| {
        inp.managed
            .iter()
            .any(|m| m.key.as_ref().is_some_and(|mk| mk.kid == k.kid))
    };
    let next_in: Option<&Key> = inp.next.filter(|n| !handed_out(n));
    let delay = SignedDuration::try_from(cfg.next_key_delay).unwrap_or(SignedDuration::ZERO);
    // Whether the next key may still wait, and how long: the first key was registered less than the
    // delay ago (`Some(Some(left))`), or the next key is being made on idle CPU (`Some(None)`).
    let deferred_for: Option<Option<Duration>> = match (inp.next, inp.next_registered_at) {
        (Some(n), Some(at)) if next_in.is_none() && is_registered(&n.kid) => {
            if !delay.is_zero() && at + delay > inp.now {
                Some(Some(
                    to_std((at + delay).duration_since(inp.now)).max(Duration::from_secs(1)),
                ))
            } else if inp.next_key_waits {
                Some(None)
            } else {
                None
            }
        }
        _ => None,
    };

    let cur = if wants_rotation {
        match next_in {
            Some(n) if is_registered(&n.kid) => match inp.next_registered_at {
                Some(at) if at + propagation <= inp.now => Cur::Promote,
                Some(at) => Cur::Wait(
                    to_std((at + propagation).duration_since(inp.now)).max(Duration::from_secs(1)),
                ),
                None => Cur::Wait(cfg.key_propagation),
            },
            _ => Cur::Wait(cfg.key_propagation),
        }
    } else if registered.kids.is_empty() && !inp.managed.is_empty() {
        // A client without keys (re-created at Digdir, or never given any): keys of other clients'
        // Secrets are not reused (Digdir refuses a kid that belongs to another client).
        match next_in {
            Some(n) => Cur::First(n),
            None => Cur::Generate,
        }
    } else if let Some(m) = named.or_else(|| newest(inp.managed)) {
        Cur::Reuse(m)
    } else if let Some(n) = next_in {
        // A key stored by an earlier pass that failed (or crashed) before the app Secret got it: it
        // becomes the app's key. Making another one would register a new key on every failed retry.
        Cur::First(n)
    } else {
        Cur::Generate
    };

    // The key the app holds now: kept registered, even while a rotation waits.
    let in_place_old = named.and_then(|m| m.key.as_ref());
    let promote = matches!(cur, Cur::Promote);
    let waiting = matches!(cur, Cur::Wait(_));
    // First key alone; the next key follows in a later pass.
    let first_key_alone = matches!(cur, Cur::Generate) && !delay.is_zero();
    // The next key waits (the stored first key stays where it is).
    let deferring = matches!(cur, Cur::Reuse(_)) && deferred_for.is_some();
    let keep_next = if deferring { inp.next } else { next_in };
    let first_stored = matches!(cur, Cur::First(_));
    let next_waits = deferring && deferred_for == Some(None);
    let next_due_in = if first_key_alone {
        Some(cfg.next_key_delay)
    } else if deferring {
        deferred_for.flatten()
    } else if first_stored {
        // The stored key stays the next-key Secret's key until the next key is made.
        Some(match inp.next_registered_at {
            Some(at) if at + delay > inp.now => {
                to_std((at + delay).duration_since(inp.now)).max(Duration::from_secs(1))
            }
            _ => Duration::from_secs(1),
        })
    } else {
        None
    };
    let next_missing = keep_next.is_none();
    let next_unregistered = keep_next.is_none_or(|n| !is_registered(&n.kid));

    let mut post_reasons = Vec::new();
    match &cur {
        Cur::Reuse(m) => {
            if m.key.as_ref().is_some_and(|k| !is_registered(&k.kid)) {
                post_reasons.push("current key not registered");
            }
        }
        Cur::Promote => post_reasons.push("new next key"),
        Cur::First(k) => {
            if !is_registered(&k.kid) {
                post_reasons.push("first key");
            }
        }
        Cur::Generate => post_reasons.push("first key"),
        Cur::Wait(_) => {}
    }
    if !promote && !first_key_alone && !first_stored && (next_missing || next_unregistered) {
        post_reasons.push("next key not registered");
    }
    let renew_before = SignedDuration::try_from(cfg.renew_before).unwrap_or(SignedDuration::ZERO);
    match registered.expires_at {
        None => post_reasons.push("key expiry unknown"),
        Some(exp) if exp - renew_before <= inp.now => post_reasons.push("keys expire soon"),
        Some(_) => {}
    }
    let candidates: Vec<&ManagedSecret> = if waiting {
        Vec::new()
    } else {
        inp.managed
            .iter()
            .filter(|m| m.name != inp.secret_name)
            .collect()
    };
    // The key the registered set starts with; references only matter for Secrets holding others.
    let held_kid: Option<&str> = match &cur {
        Cur::Reuse(m) => m.key.as_ref().map(|k| k.kid.as_str()),
        Cur::Promote => next_in.map(|k| k.kid.as_str()),
        Cur::First(k) => Some(k.kid.as_str()),
        Cur::Generate => None,
        Cur::Wait(_) => newest(inp.managed)
            .and_then(|m| m.key.as_ref())
            .map(|k| k.kid.as_str()),
    };
    let refs_matter = !candidates.is_empty()
        || !inp.replaced.is_empty()
        || inp.managed.iter().any(|m| {
            m.key
                .as_ref()
                .is_some_and(|k| Some(k.kid.as_str()) != held_kid)
        });
    let no_refs = References::default();
    let refs = match inp.refs {
        Some(r) => r,
        None if !refs_matter && !post_reasons.is_empty() => &no_refs,
        None => {
            // Keys replaced in place stay registered only while a Pod may hold them: each pass
            // looks again, so one is removed once no Pod can.
            if !post_reasons.is_empty() || !candidates.is_empty() || !inp.replaced.is_empty() {
                return Ok(KeyPlan::NeedScan);
            }
            // Nothing to register or remove: no scan, no POST.
            let (current, source) = match cur {
                Cur::Reuse(m) => (m.key.clone(), CurrentSource::Existing(m.name.clone())),
                // Promote/Generate always have post reasons; Wait is handled with refs too.
                _ => return Ok(KeyPlan::NeedScan),
            };
            let next = match keep_next {
                Some(n) => n.clone(),
                None => return Ok(KeyPlan::NeedScan),
            };
            return Ok(KeyPlan::Act(Box::new(KeyActions {
                current,
                source,
                next,
                next_is_new: false,
                register: None,
                wait: None,
                next_due_in,
                next_waits,
                new_keys: Vec::new(),
                rotated: false,
                post_reasons,
                dropped: Vec::new(),
                delete: Vec::new(),
                replaced: inp.replaced.to_vec(),
            })));
        }
    };

    // Final: make the keys needed, saying why each is asked for.
    let mut new_keys = Vec::new();
    let (current, source, wait) = match cur {
        Cur::Reuse(m) => (m.key.clone(), CurrentSource::Existing(m.name.clone()), None),
        Cur::Promote => (next_in.cloned(), CurrentSource::PromotedNext, None),
        Cur::First(k) => (Some(k.clone()), CurrentSource::Stored, None),
        Cur::Generate => {
            new_keys.push(NewKey::First);
            (Some(generate()?), CurrentSource::Generated, None)
        }
        Cur::Wait(d) => (None, CurrentSource::Existing(String::new()), Some(d)),
    };
    let (next, next_is_new) = match (&current, keep_next) {
        // The first key is stored (as the next-key Secret's key) before it is registered.
        (Some(k), _) if first_key_alone => (k.clone(), true),
        (_, Some(n)) if !promote => (n.clone(), false),
        _ => {
            new_keys.push(if wants_rotation {
                NewKey::Rotation
            } else if source == CurrentSource::Generated {
                NewKey::First
            } else {
                NewKey::Next
            });
            (generate()?, true)
        }
    };

    // The registered set, by priority.
    let by_age = |usage: Usage| {
        let mut v: Vec<&ManagedSecret> = inp
            .managed
            .iter()
            .filter(|m| m.key.is_some() && refs.usage(&m.name) == Some(usage))
            .collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        v
    };
    let mut set: Vec<Key> = Vec::new();
    let mut kids = BTreeSet::new();
    let mut push = |k: &Key, set: &mut Vec<Key>| {
        if set.len() < cfg.max_keys && kids.insert(k.kid.clone()) {
            set.push(k.clone());
        }
    };
    // While waiting, the app still holds the key of the newest managed Secret.
    let held = current
        .clone()
        .or_else(|| newest(inp.managed).and_then(|m| m.key.clone()));
    if let Some(k) = &held {
        push(k, &mut set);
    }
    for m in by_age(Usage::RunningPod) {
        if let Some(k) = &m.key {
            push(k, &mut set);
        }
    }
    // Keys replaced in place (this pass's replacement too) while a Pod that started before the
    // replacement may still hold them, the most recently replaced first. A pod template reads the
    // Secret's current content, so templates never hold a replaced key.
    let rotated_in_place = wants_rotation && promote && current.is_some();
    let mut history: Vec<ReplacedKey> = inp.replaced.to_vec();
    if rotated_in_place
        && let Some(m) = named
        && let Some(old) = in_place_old
        && Some(&old.kid) != current.as_ref().map(|c| &c.kid)
    {
        history.push(ReplacedKey {
            secret: m.name.clone(),
            kid: old.kid.clone(),
            n: old.public.n.clone(),
            e: old.public.e.clone(),
            replaced_at: inp.now,
        });
    }
    history.sort_by_key(|h| std::cmp::Reverse(h.replaced_at));
    history.dedup_by(|a, b| a.kid == b.kid);
    history.retain(|h| refs.may_hold_content_before(&h.secret, h.replaced_at));
    for h in &history {
        push(&h.key(), &mut set);
    }
    push(&next, &mut set);
    for usage in [Usage::ScaledTemplate, Usage::IdleTemplate] {
        for m in by_age(usage) {
            if let Some(k) = &m.key {
                push(k, &mut set);
            }
        }
    }
    let registered_set: BTreeSet<&str> = set.iter().map(|k| k.kid.as_str()).collect();
    let mut dropped: Vec<String> = inp
        .managed
        .iter()
        .filter(|m| refs.is_referenced(&m.name))
        .filter(|m| {
            m.key
                .as_ref()
                .is_some_and(|k| !registered_set.contains(k.kid.as_str()))
        })
        .map(|m| m.name.clone())
        .collect();
    dropped.extend(
        history
            .iter()
            .filter(|h| !registered_set.contains(h.kid.as_str()))
            .map(|h| {
                format!(
                    "{} (its key {} replaced at {})",
                    h.secret,
                    h.kid,
                    Timestamp::from_second(h.replaced_at.as_second()).unwrap_or(h.replaced_at)
                )
            }),
    );
    let have: BTreeSet<&str> = registered.kids.iter().map(String::as_str).collect();
    if have != registered_set && post_reasons.is_empty() {
        post_reasons.push("registered keys differ from keys in use");
    }
    let delete = candidates
        .into_iter()
        .filter(|m| !refs.is_referenced(&m.name))
        .map(|m| m.name.clone())
        .collect();
    Ok(KeyPlan::Act(Box::new(KeyActions {
        rotated: wants_rotation && promote,
        current,
        source,
        next,
        next_is_new,
        register: (!post_reasons.is_empty()).then_some(set),
        wait,
        next_due_in,
        next_waits,
        new_keys,
        post_reasons,
        dropped,
        delete,
        replaced: history,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const NOW: &str = "2025-06-01T12:00:00Z";

    fn ms(name: &str, kid: &str, created: &str) -> ManagedSecret {
        ManagedSecret {
            name: name.into(),
            created: Some(ts(created)),
            key: Some(Key::placeholder(kid)),
        }
    }

    struct Gen(u32);
    impl Gen {
        fn f(&mut self) -> impl FnMut() -> Result<Key, GenerateError> + '_ {
            || {
                self.0 += 1;
                Ok(Key::placeholder(&format!("gen{}", self.0)))
            }
        }
    }

    fn base<'a>(managed: &'a [ManagedSecret]) -> KeyInputs<'a> {
        KeyInputs {
            now: ts(NOW),
            secret_name: "s1",
            synced_secret_name: Some("s1"),
            rotate: false,
            managed,
            next: None,
            next_registered_at: None,
            registered: None,
            refs: None,
            replaced: &[],
            next_key_waits: false,
        }
    }

    fn act(p: KeyPlan) -> KeyActions {
        match p {
            KeyPlan::Act(a) => *a,
            other => panic!("expected Act, got {other:?}"),
        }
    }

    fn kids(keys: &Option<Vec<Key>>) -> Vec<&str> {
        keys.iter().flatten().map(|k| k.kid.as_str()).collect()
    }

    fn reg(kids: &[&str], exp: &str) -> Registered {
        Registered {
            kids: kids.iter().map(|s| s.to_string()).collect(),
            expires_at: Some(ts(exp)),
        }
    }

    #[test]
    fn first_sync_with_zero_delay_generates_current_and_next_and_registers_both() {
        let cfg = Config {
            next_key_delay: Duration::ZERO,
            ..Config::default()
        };
        let mut inp = base(&[]);
        inp.synced_secret_name = None;
        let mut g = Gen(0);
        assert!(matches!(
            plan(&cfg, &inp, &mut g.f()).unwrap(),
            KeyPlan::NeedRegistered
        ));
        let r = Registered::default();
        inp.registered = Some(&r);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(a.source, CurrentSource::Generated);
        assert_eq!(a.current.unwrap().kid, "gen1");
        assert_eq!((a.next.kid.as_str(), a.next_is_new), ("gen2", true));
        assert_eq!(kids(&a.register), ["gen1", "gen2"]);
        assert!(!a.rotated && a.wait.is_none() && a.next_due_in.is_none());
    }

    #[test]
    fn first_sync_makes_one_key_stored_before_registration_and_defers_the_next() {
        let cfg = Config::default();
        let mut inp = base(&[]);
        inp.synced_secret_name = None;
        let mut g = Gen(0);
        let r = Registered::default();
        inp.registered = Some(&r);
        // No managed Secret: references cannot matter, so no workload scan.
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(g.0, 1, "one key on the critical path");
        assert_eq!(a.source, CurrentSource::Generated);
        assert_eq!(a.current.as_ref().unwrap().kid, "gen1");
        // The key goes to the next-key Secret (stored) before the POST, then to the app.
        assert_eq!((a.next.kid.as_str(), a.next_is_new), ("gen1", true));
        assert_eq!(kids(&a.register), ["gen1"]);
        assert_eq!(a.next_due_in, Some(cfg.next_key_delay));
        assert!(!a.rotated && a.wait.is_none());
    }

    #[test]
    fn deferred_next_key_is_made_when_the_delay_is_over_without_a_scan() {
        let cfg = Config::default();
        // After the first sync: the app Secret and the next-key Secret hold the same key.
        let managed = [ms("s1", "k1", "2025-06-01T11:58:00Z")];
        let first = Key::placeholder("k1");
        let r = reg(&["k1"], "2026-06-01T11:58:00Z");
        let mut inp = base(&managed);
        inp.next = Some(&first);
        inp.next_registered_at = Some(ts("2025-06-01T11:58:00Z"));
        inp.registered = Some(&r);
        let mut g = Gen(0);
        // Within the delay: nothing to do, come back when it is over.
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert!(a.register.is_none() && a.delete.is_empty() && !a.next_is_new);
        assert_eq!(a.next.kid, "k1");
        assert_eq!(a.current.as_ref().unwrap().kid, "k1");
        assert_eq!(a.next_due_in, Some(Duration::from_secs(180)));
        assert_eq!(g.0, 0);
        // Delay over: a next key is made and registered with the current one, no scan needed.
        inp.now = ts("2025-06-01T12:03:00Z");
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!((a.next.kid.as_str(), a.next_is_new), ("gen1", true));
        assert_eq!(kids(&a.register), ["k1", "gen1"]);
        assert_eq!(a.post_reasons, ["next key not registered"]);
        assert_eq!(a.source, CurrentSource::Existing("s1".into()));
        assert!(a.next_due_in.is_none() && !a.rotated);
        assert_eq!(a.new_keys, [NewKey::Next], "made when no first key waits");
        // While that key is being made on idle CPU, the plan keeps deferring it: nothing is
        // generated, registered or written, and no pass is scheduled for it (its maker asks).
        inp.next_key_waits = true;
        let before = g.0;
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(g.0, before, "no key asked for");
        assert!(a.new_keys.is_empty() && a.register.is_none() && !a.next_is_new);
        assert!(a.next_waits && a.next_due_in.is_none());
        assert_eq!(a.next.kid, "k1", "the next-key Secret keeps the first key");
        // Within the delay the delay still rules (the key is not being made yet).
        inp.now = ts("2025-06-01T12:00:00Z");
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert!(!a.next_waits);
        assert_eq!(a.next_due_in, Some(Duration::from_secs(180)));
    }

    /// The plan says why it asks for each key, so the caller can make the keys someone waits for
    /// (first keys, asked-for rotations) before deferred next keys.
    #[test]
    fn the_plan_says_why_it_asks_for_each_key() {
        let why = |cfg: &Config, inp: &KeyInputs<'_>| {
            act(plan(cfg, inp, &mut Gen(0).f()).unwrap()).new_keys
        };
        let none = Registered::default();
        let refs = References::default();
        // First sync: the first key alone, or with a zero delay both keys, all waited for.
        let mut inp = base(&[]);
        inp.synced_secret_name = None;
        inp.registered = Some(&none);
        assert_eq!(why(&Config::default(), &inp), [NewKey::First]);
        let zero = Config {
            next_key_delay: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(why(&zero, &inp), [NewKey::First, NewKey::First]);
        assert!(NewKey::First.waited_for() && NewKey::Rotation.waited_for());
        assert!(!NewKey::Next.waited_for());
        // A rotation promoting an aged next key: its fresh next key is part of the rotation.
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.rotate = true;
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T11:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        assert_eq!(why(&Config::default(), &inp), [NewKey::Rotation]);
        // A rotation with no next key yet: one is made (and waited for).
        let r = reg(&["cur"], "2026-05-01T00:00:00Z");
        inp.next = None;
        inp.next_registered_at = None;
        inp.registered = Some(&r);
        assert_eq!(why(&Config::default(), &inp), [NewKey::Rotation]);
        // No rotation, no next key (a switch-over from digdirator): a deferred next key.
        inp.rotate = false;
        assert_eq!(why(&Config::default(), &inp), [NewKey::Next]);
        // Nothing to make: nothing asked for.
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        inp.registered = Some(&r);
        assert!(why(&Config::default(), &inp).is_empty());
    }

    #[test]
    fn rotation_while_the_next_key_is_deferred_makes_it_and_waits() {
        let cfg = Config {
            key_propagation: Duration::from_secs(120),
            ..Config::default()
        };
        let managed = [ms("s1", "k1", "2025-06-01T11:59:00Z")];
        let first = Key::placeholder("k1");
        let r = reg(&["k1"], "2026-06-01T11:59:00Z");
        let mut inp = base(&managed);
        inp.rotate = true;
        inp.next = Some(&first);
        inp.next_registered_at = Some(ts("2025-06-01T11:59:00Z"));
        inp.registered = Some(&r);
        let refs = References::default();
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        // The app's own key is never "promoted": a real next key is made and must age first.
        assert!(a.current.is_none() && !a.rotated && a.next_is_new);
        assert_eq!(a.wait, Some(cfg.key_propagation));
        assert_eq!(kids(&a.register), ["k1", "gen1"]);
    }

    #[test]
    fn one_plan_with_stand_ins_then_the_real_keys_filled_in() {
        let cfg = Config {
            next_key_delay: Duration::ZERO,
            ..Config::default()
        };
        let mut inp = base(&[]);
        inp.synced_secret_name = None;
        let r = Registered::default();
        inp.registered = Some(&r);
        let mut n = 0;
        let a = act(plan(&cfg, &inp, &mut placeholders(&mut n)).unwrap());
        assert_eq!(n, 2);
        let real = [Key::placeholder("real1"), Key::placeholder("real2")];
        let a = a.fill(&real).unwrap();
        assert_eq!(a.current.as_ref().unwrap().kid, "real1");
        assert_eq!(a.next.kid, "real2");
        assert_eq!(kids(&a.register), ["real1", "real2"]);
        assert!(
            a.describe_post().starts_with("The first key registered"),
            "{}",
            a.describe_post()
        );
    }

    #[test]
    fn the_record_is_trusted_only_for_its_own_client() {
        use super::super::app_secret::Bookkeeping;
        let book = Bookkeeping {
            client_id: "c1".into(),
            registered_kids: vec!["k1".into()],
            expires_at: Some(ts("2026-01-01T00:00:00Z")),
            next_registered_at: Some(ts("2025-01-01T00:00:00Z")),
            replaced: vec![],
        };
        let next = || Some(Key::placeholder("n"));
        let r = recorded("c1", false, false, next(), &book);
        assert_eq!(r.registered.unwrap().kids, ["k1"]);
        assert!(r.next.is_some() && r.next_registered_at.is_some());
        // A resync reads the JWKS; the next key is still ours.
        let r = recorded("c1", false, true, next(), &book);
        assert!(r.registered.is_none() && r.next.is_some());
        // Another client's record is ignored.
        let r = recorded("c2", false, false, next(), &book);
        assert!(r.registered.is_none() && r.next.is_none());
        // No client yet, or created in this pass: nothing registered, nothing to read.
        for (id, created) in [("", false), ("c1", true)] {
            let r = recorded(id, created, false, next(), &book);
            assert_eq!(r.registered, Some(Registered::default()));
            assert!(r.next.is_none());
        }
    }

    #[test]
    fn steady_state_needs_nothing() {
        let cfg = Config::default();
        let managed = [ms("s1", "cur", "2025-01-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-01-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        inp.registered = Some(&r);
        let mut g = Gen(0);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert!(a.register.is_none() && a.delete.is_empty() && !a.rotated);
        assert_eq!(a.current.unwrap().kid, "cur");
        assert_eq!(g.0, 0);
    }

    #[test]
    fn switch_over_reuses_newest_secret_and_adds_a_next_key() {
        let cfg = Config::default();
        // digdirator's Secrets: the current one and an older one still used by a Pod.
        let managed = [
            ms("s1", "cur", "2025-05-01T00:00:00Z"),
            ms("s0", "old", "2025-01-01T00:00:00Z"),
        ];
        let r = reg(&["cur", "old"], "2026-05-01T00:00:00Z");
        let mut refs = References::default();
        refs.add("s0", Usage::RunningPod);
        refs.add("s1", Usage::RunningPod);
        let mut inp = base(&managed);
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let mut g = Gen(0);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(a.source, CurrentSource::Existing("s1".into()));
        assert_eq!(
            a.current.unwrap().private_json,
            Key::placeholder("cur").private_json
        );
        assert_eq!(kids(&a.register), ["cur", "old", "gen1"]);
        assert!(a.delete.is_empty() && !a.rotated);
        // Secret under spec name missing, status empty: newest managed Secret's key is reused.
        let mut inp = base(&managed);
        inp.secret_name = "s2";
        inp.synced_secret_name = None;
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(a.source, CurrentSource::Existing("s1".into()));
    }

    #[test]
    fn rotation_promotes_an_aged_next_key_and_keeps_used_keys() {
        let cfg = Config::default();
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        let mut refs = References::default();
        refs.add("s1", Usage::RunningPod);
        let mut inp = base(&managed);
        inp.secret_name = "s2"; // secretName changed
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T11:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let mut g = Gen(0);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert!(a.rotated);
        assert_eq!(a.source, CurrentSource::PromotedNext);
        assert_eq!(a.current.as_ref().unwrap().kid, "nxt");
        assert_eq!((a.next.kid.as_str(), a.next_is_new), ("gen1", true));
        assert_eq!(kids(&a.register), ["nxt", "cur", "gen1"]);
        assert!(a.delete.is_empty(), "s1 is still used");
        // Once nothing uses s1, it is deleted.
        let refs = References::default();
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(a.delete, ["s1"]);
        assert_eq!(kids(&a.register), ["nxt", "gen2"]);
    }

    #[test]
    fn rotation_in_place_keeps_the_replaced_key_while_pods_run() {
        let cfg = Config::default();
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        let mut refs = References::default();
        refs.add("s1", Usage::RunningPod);
        let mut inp = base(&managed);
        inp.rotate = true;
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T11:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert!(a.rotated);
        assert_eq!(kids(&a.register), ["nxt", "cur", "gen1"]);
    }

    /// Two in-place rotations while a Pod that started before both runs: every key it may hold stays
    /// registered; keys no running Pod can hold any more are removed.
    #[test]
    fn in_place_rotations_keep_every_key_a_running_pod_may_still_hold() {
        let cfg = Config::default();
        let pod_start = ts("2025-06-01T10:00:00Z");
        let mut refs = References::default();
        refs.add("s1", Usage::RunningPod);
        refs.started("s1", pod_start);
        // Rotation 1 at 12:00: k1 → k2 (the aged next key), k3 made as the next key.
        let managed = [ms("s1", "k1", "2025-05-01T00:00:00Z")];
        let k2 = Key::placeholder("k2");
        let r = reg(&["k1", "k2"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.rotate = true;
        inp.next = Some(&k2);
        inp.next_registered_at = Some(ts("2025-06-01T11:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let mut g = Gen(2);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert!(a.rotated);
        assert_eq!(a.current.as_ref().unwrap().kid, "k2");
        assert_eq!(kids(&a.register), ["k2", "k1", "gen3"]);
        assert_eq!(a.replaced.len(), 1);
        assert_eq!(
            (a.replaced[0].kid.as_str(), a.replaced[0].replaced_at),
            ("k1", ts(NOW))
        );
        let history = a.replaced.clone();

        // Rotation 2 an hour later: k2 → k3. The Pod (started at 10:00) may hold k1 or k2.
        let managed = [ms("s1", "k2", "2025-05-01T00:00:00Z")];
        let k3 = Key::placeholder("gen3");
        let r = reg(&["k2", "k1", "gen3"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.now = ts("2025-06-01T13:00:00Z");
        inp.rotate = true;
        inp.next = Some(&k3);
        inp.next_registered_at = Some(ts("2025-06-01T12:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        inp.replaced = &history;
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(a.current.as_ref().unwrap().kid, "gen3");
        assert_eq!(kids(&a.register), ["gen3", "k2", "k1", "gen4"]);
        let kept: Vec<&str> = a.replaced.iter().map(|h| h.kid.as_str()).collect();
        assert_eq!(kept, ["k2", "k1"], "newest replacement first");
        let history = a.replaced.clone();

        // The Pod restarted at 13:30 (it holds gen3 now): the replaced keys go at the next pass.
        let mut refs = References::default();
        refs.add("s1", Usage::RunningPod);
        refs.started("s1", ts("2025-06-01T13:30:00Z"));
        let managed = [ms("s1", "gen3", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("gen4");
        let r = reg(&["gen3", "k2", "k1", "gen4"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.now = ts("2025-06-01T14:00:00Z");
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T13:00:00Z"));
        inp.registered = Some(&r);
        inp.replaced = &history;
        // Without a scan nothing can be decided: the plan asks for one.
        assert!(matches!(
            plan(&cfg, &inp, &mut g.f()).unwrap(),
            KeyPlan::NeedScan
        ));
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(kids(&a.register), ["gen3", "gen4"]);
        assert!(a.replaced.is_empty());
        // No Pod at all: the same.
        let none = References::default();
        inp.refs = Some(&none);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(kids(&a.register), ["gen3", "gen4"]);
    }

    #[test]
    fn replaced_keys_that_do_not_fit_are_reported() {
        let cfg = Config {
            max_keys: 3,
            ..Config::default()
        };
        let history: Vec<ReplacedKey> = ["h1", "h2", "h3"]
            .iter()
            .enumerate()
            .map(|(i, k)| ReplacedKey {
                secret: "s1".into(),
                kid: k.to_string(),
                n: "n".into(),
                e: "AQAB".into(),
                replaced_at: ts(&format!("2025-06-01T0{}:00:00Z", i + 1)),
            })
            .collect();
        let mut refs = References::default();
        refs.add("s1", Usage::RunningPod);
        refs.started("s1", ts("2025-06-01T00:00:00Z"));
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        inp.replaced = &history;
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(kids(&a.register), ["cur", "h3", "h2"]);
        assert_eq!(a.dropped.len(), 1, "{:?}", a.dropped);
        assert!(a.dropped[0].contains("h1"), "{:?}", a.dropped);
    }

    #[test]
    fn rotation_waits_for_a_young_or_missing_next_key() {
        let cfg = Config::default();
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt"], "2026-05-01T00:00:00Z");
        let refs = References::default();
        let mut inp = base(&managed);
        inp.rotate = true;
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T11:59:30Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert!(a.current.is_none() && !a.rotated);
        assert_eq!(a.wait, Some(Duration::from_secs(90)));
        assert!(a.register.is_none() && a.delete.is_empty());
        // No next key at all (switch-over then rotate): one is made and registered, then wait.
        let r = reg(&["cur"], "2026-05-01T00:00:00Z");
        inp.next = None;
        inp.next_registered_at = None;
        inp.registered = Some(&r);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert!(a.current.is_none() && a.next_is_new);
        assert_eq!(a.wait, Some(cfg.key_propagation));
        assert_eq!(kids(&a.register), ["cur", "gen1"]);
    }

    #[test]
    fn expiry_renewal_and_missing_key_repair() {
        let cfg = Config::default();
        let managed = [ms("s1", "cur", "2025-05-01T00:00:00Z")];
        let next = Key::placeholder("nxt");
        let refs = References::default();
        let mut inp = base(&managed);
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        inp.refs = Some(&refs);
        // 29 days left: renew.
        let r = reg(&["cur", "nxt"], "2025-06-30T12:00:00Z");
        inp.registered = Some(&r);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(a.post_reasons, ["keys expire soon"]);
        assert_eq!(kids(&a.register), ["cur", "nxt"]);
        assert!(!a.rotated && a.current.is_some());
        // 31 days left: nothing.
        let r = reg(&["cur", "nxt"], "2025-07-02T12:00:00Z");
        inp.registered = Some(&r);
        assert!(
            act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap())
                .register
                .is_none()
        );
        // Current key removed at Digdir by hand: re-registered.
        let r = reg(&["nxt"], "2026-07-02T12:00:00Z");
        inp.registered = Some(&r);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(kids(&a.register), ["cur", "nxt"]);
    }

    #[test]
    fn more_than_five_keys_in_use_keeps_by_priority_and_reports_dropped() {
        let cfg = Config::default();
        let managed = [
            ms("cur", "k-cur", "2025-05-01T00:00:00Z"),
            ms("pod-a", "k-pa", "2025-01-01T00:00:00Z"),
            ms("rs-old", "k-rs-old", "2024-01-01T00:00:00Z"),
            ms("rs-new", "k-rs-new", "2025-03-01T00:00:00Z"),
            ms("tmpl", "k-tmpl", "2024-06-01T00:00:00Z"),
            ms("idle2", "k-idle2", "2024-02-01T00:00:00Z"),
        ];
        let next = Key::placeholder("nxt");
        let r = reg(&["k-cur", "nxt"], "2026-05-01T00:00:00Z");
        let mut refs = References::default();
        refs.add("cur", Usage::RunningPod);
        refs.add("pod-a", Usage::RunningPod);
        refs.add("tmpl", Usage::ScaledTemplate);
        refs.add("rs-old", Usage::IdleTemplate);
        refs.add("rs-new", Usage::IdleTemplate);
        refs.add("idle2", Usage::IdleTemplate);
        let mut inp = base(&managed);
        inp.secret_name = "cur";
        inp.synced_secret_name = Some("cur");
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(
            kids(&a.register),
            ["k-cur", "k-pa", "nxt", "k-tmpl", "k-rs-new"]
        );
        assert_eq!(a.dropped, ["rs-old", "idle2"]);
        assert!(a.delete.is_empty());
    }

    #[test]
    fn unused_old_secret_triggers_scan_then_delete() {
        let cfg = Config::default();
        let managed = [
            ms("s1", "cur", "2025-05-01T00:00:00Z"),
            ms("s0", "old", "2025-01-01T00:00:00Z"),
        ];
        let next = Key::placeholder("nxt");
        let r = reg(&["cur", "nxt", "old"], "2026-05-01T00:00:00Z");
        let mut inp = base(&managed);
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-01-01T00:00:00Z"));
        inp.registered = Some(&r);
        assert!(matches!(
            plan(&cfg, &inp, &mut Gen(0).f()).unwrap(),
            KeyPlan::NeedScan
        ));
        let refs = References::default();
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(a.delete, ["s0"]);
        assert_eq!(kids(&a.register), ["cur", "nxt"]);
        assert_eq!(a.post_reasons, ["registered keys differ from keys in use"]);
    }

    #[test]
    fn crash_after_post_before_secret_hands_out_the_stored_key_without_making_another() {
        // The pass stored and registered a key, then died (or failed writing the app Secret) before
        // any app Secret got it. The next pass hands that key out; it makes no new key, so a pass
        // that keeps failing never registers a new key each time.
        let cfg = Config::default();
        let next = Key::placeholder("nxt");
        let r = reg(&["lost", "nxt"], "2026-05-01T00:00:00Z");
        let refs = References::default();
        let mut inp = base(&[]);
        inp.synced_secret_name = None;
        inp.next = Some(&next);
        inp.next_registered_at = Some(ts("2025-06-01T11:59:00Z"));
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let mut g = Gen(0);
        let a = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!(g.0, 0, "no new key");
        assert_eq!(a.source, CurrentSource::Stored);
        assert_eq!(a.current.as_ref().unwrap().kid, "nxt");
        assert_eq!((a.next.kid.as_str(), a.next_is_new), ("nxt", false));
        // The stray registered key goes; the stored one is already registered.
        assert_eq!(kids(&a.register), ["nxt"]);
        assert_eq!(a.next_due_in, Some(Duration::from_secs(240)));
        // The same pass again (it failed again): the same answer, still no new key.
        let b = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!((g.0, b.current.unwrap().kid), (0, "nxt".to_string()));
        // Not registered yet (the POST never happened): it is registered as the first key.
        let r = reg(&[], "2026-05-01T00:00:00Z");
        inp.registered = Some(&r);
        let c = act(plan(&cfg, &inp, &mut g.f()).unwrap());
        assert_eq!((g.0, kids(&c.register)), (0, vec!["nxt"]));
        assert_eq!(c.post_reasons, ["first key"]);
    }

    #[test]
    fn a_client_without_keys_gets_a_fresh_key() {
        let cfg = Config::default();
        let managed = [ms("s1", "of-old-client", "2025-05-01T00:00:00Z")];
        let r = Registered::default();
        let refs = References::default();
        let mut inp = base(&managed);
        inp.registered = Some(&r);
        inp.refs = Some(&refs);
        let a = act(plan(&cfg, &inp, &mut Gen(0).f()).unwrap());
        assert_eq!(a.source, CurrentSource::Generated);
        assert_eq!(kids(&a.register), ["gen1"]);
        assert_eq!(a.next.kid, "gen1");
    }
}
