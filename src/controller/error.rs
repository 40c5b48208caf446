//! The errors of a pass, for every kind, in one place: each carries its `Ready=False` condition reason
//! ([`Error::reason`]), a metric label ([`Error::metric_label`]), whether the resource is stalled until
//! something changes ([`Error::is_stalled`]), and how long to wait before a retry.
//!
//! Messages are for platform engineers: they say what is wrong in words, quote the server's or the
//! provider's message and name the field or setting. No `Debug` dump of a Rust type ever reaches a
//! condition, an event or a log line.

use std::time::Duration;

use crate::conditions::reason;
use crate::controller::secret_store::SecretError;
use crate::controller::workload_scan::ScanError;
use crate::digdir::DigdirError;
use crate::entra::GraphError;

/// Longest message written into a condition or event (a list of thousands of scopes is cut, with a
/// count of what was left out).
pub const MAX_MESSAGE_CHARS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be acted on; `field` is its path (`spec.secretName`).
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    /// An operator setting this resource needs is missing or wrong.
    #[error("operator setting {setting}: {message}")]
    Configuration {
        setting: &'static str,
        message: String,
    },
    /// Reading or writing a Secret failed, or it belongs to someone else.
    #[error("{0}")]
    Secret(#[from] SecretError),
    /// Listing the namespace's workloads failed.
    #[error("{0}")]
    Scan(#[from] ScanError),
    /// A call to the Kubernetes API failed (`action` says which).
    #[error("{action}: {}", describe_kube(source))]
    Kube {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Digdir failed, refused, or answered something that is not what its API documents.
    #[error("{0}")]
    Digdir(#[from] DigdirError),
    /// Microsoft Graph (or the operator's authentication to Entra) failed or refused.
    #[error("{0}")]
    Entra(#[from] GraphError),
    /// Generating a key failed.
    #[error("generating a key: {0}")]
    KeyGeneration(String),
    /// portvakt itself got something wrong (a bug, not the user's manifest).
    #[error("internal error: {0}")]
    Internal(String),
    /// Not an error of the resource: the pass must wait (e.g. to learn whether an earlier create
    /// went through) and is retried after `retry_in`.
    #[error("{message}")]
    Wait { message: String, retry_in: Duration },
}

impl Error {
    /// A Kubernetes API failure while doing `action` ("patching status of IDPortenClient ns/name").
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source: Box::new(source),
        }
    }

    pub fn invalid_spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The `Ready=False` reason of the condition policy ([`crate::conditions::reason`]): whose problem it is.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => reason::INVALID_SPEC,
            Error::Configuration { .. } => reason::CONFIGURATION_ERROR,
            Error::Secret(SecretError::NotOwned { .. }) => reason::SECRET_NOT_OWNED,
            // The API server refusing a Secret portvakt built from the spec (a name it does not
            // accept, say) is the spec's problem.
            Error::Secret(e) if e.is_invalid() => reason::INVALID_SPEC,
            Error::Secret(_) | Error::Scan(_) | Error::Kube { .. } => reason::KUBERNETES_ERROR,
            Error::Digdir(e) if e.is_throttled() => reason::THROTTLED,
            Error::Digdir(_) => reason::DIGDIR_ERROR,
            Error::Entra(e) => e.condition_reason(),
            Error::KeyGeneration(_) | Error::Internal(_) => reason::INTERNAL_ERROR,
            Error::Wait { .. } => reason::PENDING,
        }
    }

    /// The label of the failure metrics (`portvakt_reconcile_failures_total{error=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "invalid_spec",
            Error::Configuration { .. } => "configuration",
            Error::Secret(SecretError::NotOwned { .. }) => "secret_not_owned",
            Error::Secret(_) => "secret",
            Error::Scan(_) => "workload_scan",
            Error::Kube { .. } => "kubernetes",
            Error::Digdir(e) => e.metric_label(),
            Error::Entra(e) => e.metric_label(),
            Error::KeyGeneration(_) => "key_generation",
            Error::Internal(_) => "internal",
            Error::Wait { .. } => "waiting",
        }
    }

    /// Whether the pass cannot proceed until someone changes something (the spec, a setting, a
    /// Secret in the way): retrying soon would only repeat the failure.
    pub fn is_stalled(&self) -> bool {
        crate::conditions::is_stalled_reason(self.reason())
    }

    /// How long the provider asked us to wait (Retry-After), or the wait a [`Error::Wait`] names.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Digdir(e) => e.retry_after(),
            Error::Entra(e) => e.retry_after(),
            Error::Wait { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// The message for conditions and events: the error's text, cut to [`MAX_MESSAGE_CHARS`].
    pub fn message(&self) -> String {
        cut(&self.to_string(), MAX_MESSAGE_CHARS)
    }
}

/// `text` cut to `max` characters, saying how much was left out.
pub fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(40)).collect();
    format!("{kept}… ({} more characters)", total - kept.chars().count())
}

/// A list for a message: the first `max` items joined by ", ", then "and N more".
pub fn list_cut(items: &[String], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    format!("{} and {} more", items[..max].join(", "), items.len() - max)
}

/// A Kubernetes API error in words: the server's status code, reason and message (which names the
/// field), or the transport failure with its causes. Never a `Debug` dump.
pub fn describe_kube(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let mut text = format!(
                "the API server answered {} {}",
                s.code,
                if s.reason.is_empty() {
                    "error"
                } else {
                    &s.reason
                }
            );
            if !s.message.is_empty() {
                text.push_str(": ");
                text.push_str(&s.message);
            }
            // Causes the message does not already carry (the real server repeats them in it).
            for c in s.details.iter().flat_map(|d| d.causes.iter()) {
                let cause = match (c.field.is_empty(), c.message.is_empty()) {
                    (false, false) => format!("{}: {}", c.field, c.message),
                    (true, false) => c.message.clone(),
                    _ => continue,
                };
                if !s.message.contains(&c.message) {
                    text.push_str("; ");
                    text.push_str(&cause);
                }
            }
            text
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let part = s.to_string();
                if !text.contains(&part) {
                    text.push_str(": ");
                    text.push_str(&part);
                }
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_secret_status() -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": "Secret \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            "details": {"name": "Bad_Name", "kind": "Secret", "causes": [{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
                "field": "metadata.name"
            }]}
        }))
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn kubernetes_errors_read_as_words_quoting_the_server() {
        let text = describe_kube(&invalid_secret_status());
        assert!(
            text.starts_with("the API server answered 422 Invalid: Secret \"Bad_Name\" is invalid"),
            "{text}"
        );
        assert!(
            !text.contains("Status {") && !text.contains("Some("),
            "no Debug dump: {text}"
        );
        // The cause is already in the message: not repeated.
        assert_eq!(text.matches("RFC 1123").count(), 1, "{text}");
    }

    #[test]
    fn a_secret_the_server_refuses_is_the_specs_problem() {
        let e = Error::Secret(SecretError::Kube {
            verb: "creating",
            namespace: "team".into(),
            name: "Bad_Name".into(),
            source: Box::new(invalid_secret_status()),
        });
        assert_eq!(e.reason(), reason::INVALID_SPEC);
        assert!(e.is_stalled());
        let text = e.message();
        assert!(
            text.contains("creating Secret team/Bad_Name") && text.contains("422 Invalid"),
            "{text}"
        );
    }

    #[test]
    fn internal_faults_are_not_the_users_spec() {
        let e = Error::Internal("encoding the registration".into());
        assert_eq!(e.reason(), reason::INTERNAL_ERROR);
        assert!(!e.is_stalled());
    }

    #[test]
    fn long_lists_and_messages_are_cut_with_a_count() {
        let items: Vec<String> = (0..6000).map(|i| format!("org:scope{i}")).collect();
        let listed = list_cut(&items, 20);
        assert!(listed.ends_with("and 5980 more"), "{listed}");
        let long = "x".repeat(40_000);
        let c = cut(&long, MAX_MESSAGE_CHARS);
        assert!(c.chars().count() <= MAX_MESSAGE_CHARS + 40 && c.contains("more characters"));
    }
}
