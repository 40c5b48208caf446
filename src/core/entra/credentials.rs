//! The app's credentials (azurerator.md §4): a *current* and a *next* set, each one password and one
//! certificate, and the rule that no credential is revoked while a workload may still hold it.
//!
//! When ([`mode`]):
//! - **Add** a brand-new current + next set when there is no valid set: no Secret yet, its values
//!   missing or broken, its key ids not (or no longer) registered in Entra, the tenant changed, or the
//!   set is older than the max age (`secret-rotation.max-age`);
//! - **Rotate** on `azure.nais.io/rotate` or a changed `spec.secretName`: the next set (registered
//!   long ago, so it works at once) becomes current, and a new next set is made;
//! - otherwise keep the set.
//!
//! Which credentials go ([`revocations`]): only ones portvakt or azurerator made (display name
//! `portvakt-…` or `azurerator-…`; a hand-made credential is never touched). Kept are the set in the
//! Secret, every credential in a managed Secret a workload references, the credentials a Secret held
//! before it was rewritten in place while a running Pod may still hold them (started before the
//! rewrite) or the grace period has not passed, and the newest of each kind. Expired ones go.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::certificate::CertificateKey;
use crate::entra::{KeyCredential, PasswordCredential};

/// Display-name prefixes of credentials portvakt counts as its own (azurerator's too).
pub const MANAGED_PREFIXES: [&str; 2] = ["azurerator", "portvakt"];

/// Whether a credential with this display name is portvakt's (or azurerator's) to revoke.
pub fn is_managed(display_name: Option<&str>) -> bool {
    display_name.is_some_and(|n| MANAGED_PREFIXES.iter().any(|p| n.starts_with(p)))
}

/// The display name of a new credential: unique per call (a lost addPassword answer is found by it).
pub fn new_display_name(now: Timestamp) -> String {
    let t = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let short = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("portvakt-{t}-{short}")
}

/// One set: a password and a certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialSet {
    pub client_secret: String,
    pub password_key_id: String,
    pub certificate_key_id: String,
    pub certificate: CertificateKey,
}

impl std::fmt::Debug for CredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSet")
            .field("password_key_id", &self.password_key_id)
            .field("certificate_key_id", &self.certificate_key_id)
            .finish_non_exhaustive()
    }
}

/// The current and the next set, as the Secret holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub current: CredentialSet,
    pub next: CredentialSet,
}

impl Credentials {
    pub fn password_ids(&self) -> [&str; 2] {
        [&self.current.password_key_id, &self.next.password_key_id]
    }
    pub fn certificate_ids(&self) -> [&str; 2] {
        [
            &self.current.certificate_key_id,
            &self.next.certificate_key_id,
        ]
    }
}

/// Key ids a Secret held, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIds {
    #[serde(rename = "passwordKeyIds", default)]
    pub passwords: Vec<String>,
    #[serde(rename = "certificateKeyIds", default)]
    pub certificates: Vec<String>,
}

impl KeyIds {
    pub fn of(c: &Credentials) -> Self {
        Self {
            passwords: c.password_ids().iter().map(|s| s.to_string()).collect(),
            certificates: c.certificate_ids().iter().map(|s| s.to_string()).collect(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty() && self.certificates.is_empty()
    }
    pub fn extend(&mut self, other: &KeyIds) {
        for p in &other.passwords {
            if !self.passwords.iter().any(|x| x.eq_ignore_ascii_case(p)) {
                self.passwords.push(p.clone());
            }
        }
        for c in &other.certificates {
            if !self.certificates.iter().any(|x| x.eq_ignore_ascii_case(c)) {
                self.certificates.push(c.clone());
            }
        }
    }
    fn contains_password(&self, id: &str) -> bool {
        self.passwords.iter().any(|x| x.eq_ignore_ascii_case(id))
    }
    fn contains_certificate(&self, id: &str) -> bool {
        self.certificates.iter().any(|x| x.eq_ignore_ascii_case(id))
    }
}

/// Credentials a Secret held before it was rewritten in place, and when (kept on the Secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub at: Timestamp,
    #[serde(flatten)]
    pub ids: KeyIds,
}

/// What a pass does with the credential set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Keep,
    /// A brand-new current + next set (why).
    Add(String),
    /// Next becomes current; a new next (why).
    Rotate(String),
}

/// What [`mode`] decides on.
#[derive(Clone, Debug)]
pub struct ModeInputs<'a> {
    pub now: Timestamp,
    /// The set in the Secret last synchronised (`status.synchronizationSecretName`), if readable.
    pub latest: Option<&'a Credentials>,
    /// What Entra has registered.
    pub passwords: &'a [PasswordCredential],
    pub keys: &'a [KeyCredential],
    pub rotation_time: Option<Timestamp>,
    pub max_age: Duration,
    /// `status.synchronizationTenant` names the configured tenant.
    pub tenant_unchanged: bool,
    pub rotate_annotation: bool,
    /// `spec.secretName` differs from the last synchronised one.
    pub secret_name_changed: bool,
}

fn parse_time(t: Option<&str>) -> Option<Timestamp> {
    t.and_then(|s| s.parse::<Timestamp>().ok())
}

fn unexpired(end: Option<&str>, now: Timestamp) -> bool {
    parse_time(end).is_none_or(|e| e > now)
}

/// Whether the credentials are older than the max age.
pub fn expired(rotation_time: Option<Timestamp>, max_age: Duration, now: Timestamp) -> bool {
    rotation_time.is_some_and(|t| {
        let age = now.duration_since(t);
        age.as_secs() >= 0 && age.unsigned_abs() >= max_age
    })
}

/// When the max age is reached (for the requeue).
pub fn rotation_due(rotation_time: Option<Timestamp>, max_age: Duration) -> Option<Timestamp> {
    let age = jiff::SignedDuration::try_from(max_age).ok()?;
    rotation_time.and_then(|t| t.checked_add(age).ok())
}

/// Why the set cannot stay, or `None` when it is valid.
pub fn invalid_reason(inp: &ModeInputs<'_>) -> Option<String> {
    let Some(latest) = inp.latest else {
        return Some("no valid credentials in the Secret".into());
    };
    if !inp.tenant_unchanged {
        return Some("the tenant changed".into());
    }
    if expired(inp.rotation_time, inp.max_age, inp.now) {
        return Some(format!(
            "the credentials are older than the max age ({}h)",
            inp.max_age.as_secs() / 3600
        ));
    }
    let pw_ok = |id: &str| {
        inp.passwords.iter().any(|p| {
            p.key_id.eq_ignore_ascii_case(id) && unexpired(p.end_date_time.as_deref(), inp.now)
        })
    };
    let key_ok = |id: &str| {
        inp.keys.iter().any(|k| {
            k.key_id
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(id))
                && unexpired(k.end_date_time.as_deref(), inp.now)
        })
    };
    if !latest.password_ids().iter().all(|id| pw_ok(id))
        || !latest.certificate_ids().iter().all(|id| key_ok(id))
    {
        return Some("the Secret's credentials are not registered in Entra ID".into());
    }
    None
}

/// What to do with the set this pass.
pub fn mode(inp: &ModeInputs<'_>) -> Mode {
    if let Some(why) = invalid_reason(inp) {
        return Mode::Add(why);
    }
    if inp.rotate_annotation {
        return Mode::Rotate("azure.nais.io/rotate".into());
    }
    if inp.secret_name_changed {
        return Mode::Rotate("spec.secretName changed".into());
    }
    Mode::Keep
}

/// What [`revocations`] decides on.
#[derive(Clone, Debug)]
pub struct RevokeInputs<'a> {
    pub now: Timestamp,
    /// The set the Secret holds after this pass.
    pub in_secret: &'a KeyIds,
    /// Key ids of managed Secrets a workload references.
    pub referenced: &'a KeyIds,
    /// Credentials replaced in place that a workload may still hold.
    pub held: &'a KeyIds,
    pub passwords: &'a [PasswordCredential],
    pub keys: &'a [KeyCredential],
}

/// Credentials to revoke, and the managed ones that stay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    pub passwords: Vec<String>,
    pub certificates: Vec<String>,
    /// Managed credentials still registered after the revocations (`status.*KeyIds`).
    pub kept: KeyIds,
}

impl Revocations {
    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty() && self.certificates.is_empty()
    }
}

fn newest<'a, T>(
    items: &'a [T],
    start: impl Fn(&T) -> Option<&str>,
    id: impl Fn(&'a T) -> &'a str,
) -> Option<&'a str> {
    items
        .iter()
        .filter_map(|i| parse_time(start(i)).map(|t| (t, id(i))))
        .max_by_key(|(t, _)| *t)
        .map(|(_, id)| id)
}

/// Which managed credentials may go (see the module documentation).
pub fn revocations(inp: &RevokeInputs<'_>) -> Revocations {
    let mut out = Revocations::default();
    let newest_pw = newest(
        inp.passwords,
        |p| p.start_date_time.as_deref(),
        |p| p.key_id.as_str(),
    );
    for p in inp.passwords {
        if !is_managed(p.display_name.as_deref()) {
            continue;
        }
        let id = p.key_id.as_str();
        let keep = unexpired(p.end_date_time.as_deref(), inp.now)
            && (inp.in_secret.contains_password(id)
                || inp.referenced.contains_password(id)
                || inp.held.contains_password(id)
                || newest_pw.is_some_and(|n| n.eq_ignore_ascii_case(id)));
        if keep {
            out.kept.passwords.push(id.to_string());
        } else {
            out.passwords.push(id.to_string());
        }
    }
    let newest_key = newest(
        inp.keys,
        |k| k.start_date_time.as_deref(),
        |k| k.key_id.as_deref().unwrap_or_default(),
    );
    for k in inp.keys {
        let Some(id) = k.key_id.as_deref() else {
            continue;
        };
        if !is_managed(k.display_name.as_deref()) {
            continue;
        }
        let keep = unexpired(k.end_date_time.as_deref(), inp.now)
            && (inp.in_secret.contains_certificate(id)
                || inp.referenced.contains_certificate(id)
                || inp.held.contains_certificate(id)
                || newest_key.is_some_and(|n| n.eq_ignore_ascii_case(id)));
        if keep {
            out.kept.certificates.push(id.to_string());
        } else {
            out.certificates.push(id.to_string());
        }
    }
    out.kept.passwords.sort();
    out.kept.certificates.sort();
    out
}

/// Whether managed credentials beyond the Secret's set may still be registered (`status` key ids
/// name more than the Secret holds, or replaced credentials are still remembered): a pass must look.
pub fn cleanup_pending(status_ids: &KeyIds, in_secret: &KeyIds, history: &[Replaced]) -> bool {
    if !history.is_empty() {
        return true;
    }
    let extra_pw = status_ids
        .passwords
        .iter()
        .any(|p| !in_secret.contains_password(p));
    let extra_cert = status_ids
        .certificates
        .iter()
        .any(|c| !in_secret.contains_certificate(c));
    extra_pw || extra_cert
}

/// The history after this pass: `history` plus what an in-place rewrite replaced (`replaced`, at
/// `now`), without entries none of whose credentials is still registered, or that no workload may
/// hold any more (`still_held`).
pub fn next_history(
    history: &[Replaced],
    replaced: Option<KeyIds>,
    now: Timestamp,
    registered: &KeyIds,
    still_held: impl Fn(&Replaced) -> bool,
) -> Vec<Replaced> {
    let mut out: Vec<Replaced> = history
        .iter()
        .filter(|r| still_held(r))
        .filter(|r| {
            r.ids
                .passwords
                .iter()
                .any(|p| registered.contains_password(p))
                || r.ids
                    .certificates
                    .iter()
                    .any(|c| registered.contains_certificate(c))
        })
        .cloned()
        .collect();
    if let Some(ids) = replaced.filter(|i| !i.is_empty()) {
        out.push(Replaced { at: now, ids });
    }
    out
}

/// The key ids of a set of `Replaced` entries.
pub fn held_ids(history: &[Replaced]) -> KeyIds {
    let mut out = KeyIds::default();
    for r in history {
        out.extend(&r.ids);
    }
    out
}

/// The ids `before` had that `after` does not (what an in-place rewrite replaces).
pub fn replaced_ids(before: &Credentials, after: &KeyIds) -> KeyIds {
    let b = KeyIds::of(before);
    KeyIds {
        passwords: b
            .passwords
            .into_iter()
            .filter(|p| !after.contains_password(p))
            .collect(),
        certificates: b
            .certificates
            .into_iter()
            .filter(|c| !after.contains_certificate(c))
            .collect(),
    }
}

/// Every managed key id of a list of credentials (for `status` when nothing was revoked).
pub fn managed_ids(passwords: &[PasswordCredential], keys: &[KeyCredential]) -> KeyIds {
    let mut out = KeyIds {
        passwords: passwords
            .iter()
            .filter(|p| is_managed(p.display_name.as_deref()))
            .map(|p| p.key_id.clone())
            .collect(),
        certificates: keys
            .iter()
            .filter(|k| is_managed(k.display_name.as_deref()))
            .filter_map(|k| k.key_id.clone())
            .collect(),
    };
    out.passwords.sort();
    out.certificates.sort();
    out
}

/// The set in use after a rotation: the old next as current, `new_next` as next.
pub fn rotated(latest: &Credentials, new_next: CredentialSet) -> Credentials {
    Credentials {
        current: latest.next.clone(),
        next: new_next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Key;
    use crate::core::entra::certificate::certificate_key;

    fn now() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    fn cert() -> CertificateKey {
        use std::sync::OnceLock;
        static C: OnceLock<CertificateKey> = OnceLock::new();
        C.get_or_init(|| {
            certificate_key(
                &Key::from_private(&crate::keys::generate_key().unwrap()),
                "x",
                now(),
            )
            .unwrap()
        })
        .clone()
    }

    fn set(n: &str) -> CredentialSet {
        CredentialSet {
            client_secret: format!("secret-{n}"),
            password_key_id: format!("pw-{n}"),
            certificate_key_id: format!("cert-{n}"),
            certificate: cert(),
        }
    }

    fn creds() -> Credentials {
        Credentials {
            current: set("1"),
            next: set("2"),
        }
    }

    fn pw(id: &str, name: &str, start: &str, end: &str) -> PasswordCredential {
        PasswordCredential {
            key_id: id.into(),
            display_name: Some(name.into()),
            start_date_time: Some(start.into()),
            end_date_time: Some(end.into()),
            ..Default::default()
        }
    }

    fn key(id: &str, name: &str, start: &str, end: &str) -> KeyCredential {
        KeyCredential {
            key_id: Some(id.into()),
            display_name: Some(name.into()),
            kind: "AsymmetricX509Cert".into(),
            usage: "Verify".into(),
            start_date_time: Some(start.into()),
            end_date_time: Some(end.into()),
            ..Default::default()
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-02-01T00:00:00Z";
    const END: &str = "2027-01-01T00:00:00Z";

    fn registered() -> (Vec<PasswordCredential>, Vec<KeyCredential>) {
        (
            vec![
                pw("pw-1", "azurerator-2026-01-01T00:00:00Z", T0, END),
                pw("pw-2", "portvakt-x", T0, END),
            ],
            vec![
                key("cert-1", "azurerator-2026-01-01T00:00:00Z", T0, END),
                key("cert-2", "portvakt-x", T0, END),
            ],
        )
    }

    fn inputs<'a>(
        latest: Option<&'a Credentials>,
        pws: &'a [PasswordCredential],
        keys: &'a [KeyCredential],
    ) -> ModeInputs<'a> {
        ModeInputs {
            now: now(),
            latest,
            passwords: pws,
            keys,
            rotation_time: Some("2026-02-27T00:00:00Z".parse().unwrap()),
            max_age: Duration::from_secs(168 * 3600),
            tenant_unchanged: true,
            rotate_annotation: false,
            secret_name_changed: false,
        }
    }

    #[test]
    fn a_valid_set_stays_and_annotations_or_a_new_name_rotate_it() {
        let c = creds();
        let (p, k) = registered();
        let mut i = inputs(Some(&c), &p, &k);
        assert_eq!(mode(&i), Mode::Keep);
        i.rotate_annotation = true;
        assert!(matches!(mode(&i), Mode::Rotate(_)));
        i.rotate_annotation = false;
        i.secret_name_changed = true;
        assert_eq!(mode(&i), Mode::Rotate("spec.secretName changed".into()));
    }

    #[test]
    fn an_invalid_set_is_replaced_by_a_new_one() {
        let c = creds();
        let (p, k) = registered();
        let i = inputs(None, &p, &k);
        assert_eq!(
            mode(&i),
            Mode::Add("no valid credentials in the Secret".into())
        );
        let mut i = inputs(Some(&c), &p, &k);
        i.tenant_unchanged = false;
        assert!(matches!(mode(&i), Mode::Add(w) if w.contains("tenant")));
        // Older than the max age: a new set, even with rotate asked for.
        let mut i = inputs(Some(&c), &p, &k);
        i.rotation_time = Some("2026-02-01T00:00:00Z".parse().unwrap());
        i.rotate_annotation = true;
        assert!(matches!(mode(&i), Mode::Add(w) if w.contains("max age (168h)")));
        assert_eq!(
            rotation_due(i.rotation_time, i.max_age)
                .unwrap()
                .to_string(),
            "2026-02-08T00:00:00Z"
        );
        // Removed in Entra by hand, or expired there.
        let i = inputs(Some(&c), &p[..1], &k);
        assert!(matches!(mode(&i), Mode::Add(w) if w.contains("not registered")));
        let mut p2 = p.clone();
        p2[1].end_date_time = Some("2026-02-28T00:00:00Z".into());
        let i = inputs(Some(&c), &p2, &k);
        assert!(matches!(mode(&i), Mode::Add(_)));
    }

    #[test]
    fn nothing_a_workload_may_hold_is_revoked_and_hand_made_ones_never() {
        let (mut p, mut k) = registered();
        p.push(pw("pw-old", "azurerator-2025", "2025-06-01T00:00:00Z", END));
        p.push(pw("pw-used", "portvakt-y", "2025-07-01T00:00:00Z", END));
        p.push(pw("pw-held", "portvakt-z", "2025-07-01T00:00:00Z", END));
        p.push(pw(
            "pw-hand",
            "made in the portal",
            "2025-01-01T00:00:00Z",
            END,
        ));
        p.push(pw(
            "pw-expired",
            "portvakt-e",
            "2025-01-01T00:00:00Z",
            "2026-01-15T00:00:00Z",
        ));
        k.push(key(
            "cert-old",
            "azurerator-2025",
            "2025-06-01T00:00:00Z",
            END,
        ));
        k.push(key("cert-new", "portvakt-n", T1, END));
        let in_secret = KeyIds::of(&creds());
        let referenced = KeyIds {
            passwords: vec!["PW-USED".into()],
            certificates: vec![],
        };
        let held = KeyIds {
            passwords: vec!["pw-held".into()],
            certificates: vec![],
        };
        let r = revocations(&RevokeInputs {
            now: now(),
            in_secret: &in_secret,
            referenced: &referenced,
            held: &held,
            passwords: &p,
            keys: &k,
        });
        assert_eq!(r.passwords, vec!["pw-old", "pw-expired"]);
        assert_eq!(r.certificates, vec!["cert-old"], "cert-new is the newest");
        assert_eq!(r.kept.passwords, vec!["pw-1", "pw-2", "pw-held", "pw-used"]);
        assert_eq!(r.kept.certificates, vec!["cert-1", "cert-2", "cert-new"]);
    }

    #[test]
    fn in_place_replacements_are_remembered_until_nobody_may_hold_them() {
        let before = creds();
        let after = KeyIds {
            passwords: vec!["pw-2".into(), "pw-3".into()],
            certificates: vec!["cert-2".into(), "cert-3".into()],
        };
        let replaced = replaced_ids(&before, &after);
        assert_eq!(replaced.passwords, vec!["pw-1"]);
        let registered = KeyIds {
            passwords: vec!["pw-1".into(), "pw-2".into(), "pw-3".into()],
            certificates: vec!["cert-1".into()],
        };
        let h = next_history(&[], Some(replaced), now(), &registered, |_| true);
        assert_eq!(h.len(), 1);
        assert!(cleanup_pending(&after, &after, &h));
        assert_eq!(held_ids(&h).passwords, vec!["pw-1"]);
        // Still held: kept. No longer held, or no longer registered: forgotten.
        assert_eq!(next_history(&h, None, now(), &registered, |_| true), h);
        assert!(next_history(&h, None, now(), &registered, |_| false).is_empty());
        assert!(next_history(&h, None, now(), &KeyIds::default(), |_| true).is_empty());
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"passwordKeyIds\":[\"pw-1\"]"), "{json}");
        let back: Vec<Replaced> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(!cleanup_pending(&after, &after, &[]));
        let mut more = after.clone();
        more.passwords.push("pw-1".into());
        assert!(cleanup_pending(&more, &after, &[]));
        assert!(new_display_name(now()).starts_with("portvakt-2026-03-01T10:00:00Z-"));
    }
}
