//! Test hooks: fault injection rules and the request journal.

use std::time::Duration;

use jiff::Timestamp;

/// What a matching fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this status code and a `Status` body.
    Status { code: u16, message: String },
    /// Delay the request, then serve it normally.
    Latency(Duration),
}

/// A fault rule: matches method and path prefix; fires `times` times (None: until
/// cleared) and not after `until` (by the server's clock).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub method: Option<String>,
    pub path_prefix: String,
    pub action: FaultAction,
    pub times: Option<u32>,
    pub until: Option<Timestamp>,
}

impl FaultRule {
    /// Every matching request is answered with `code` (and a Status body).
    pub fn status(code: u16) -> Self {
        Self {
            method: None,
            path_prefix: String::new(),
            action: FaultAction::Status {
                code,
                message: format!("injected fault: {code}"),
            },
            times: None,
            until: None,
        }
    }

    /// Every matching request is delayed.
    pub fn latency(by: Duration) -> Self {
        Self {
            method: None,
            path_prefix: String::new(),
            action: FaultAction::Latency(by),
            times: None,
            until: None,
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_uppercase());
        self
    }

    pub fn path(mut self, prefix: &str) -> Self {
        self.path_prefix = prefix.to_string();
        self
    }

    /// Fire only this many times (1: one-shot).
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Fire until this instant of the server's clock.
    pub fn until(mut self, t: Timestamp) -> Self {
        self.until = Some(t);
        self
    }

    pub fn message(mut self, msg: &str) -> Self {
        if let FaultAction::Status { message, .. } = &mut self.action {
            *message = msg.to_string();
        }
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && path.starts_with(&self.path_prefix)
    }
}

/// Active rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

impl Faults {
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The actions firing for a request (consuming their counts).
    pub fn fire(&mut self, method: &str, path: &str, now: Timestamp) -> Vec<FaultAction> {
        self.rules
            .retain(|r| r.times != Some(0) && r.until.is_none_or(|u| now <= u));
        let mut out = Vec::new();
        for r in self.rules.iter_mut() {
            if r.matches(method, path) {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                out.push(r.action.clone());
            }
        }
        self.rules.retain(|r| r.times != Some(0));
        out
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub status: u16,
    /// The request body (as text, possibly lossy), when there was one.
    pub body: Option<String>,
}

impl JournalEntry {
    /// One query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}
