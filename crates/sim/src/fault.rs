//! The fault-injection and call-journal layer shared by every simulator (the Kubernetes API server,
//! Digdir, and any later one), so a test — or a user's CI through `portvakt sim` — can make a
//! provider slow, failing, throttled or wrong in one way for all of them.
//!
//! - A [`FaultRule`] matches calls by method (any when unset) and path prefix and does one
//!   [`FaultAction`]: answer a status instead of handling the call (with `Retry-After` when asked),
//!   delay before handling, handle and then answer a status anyway ("did my POST go through?"),
//!   handle and then delay the answer (a client timeout after the change was made), or answer a raw
//!   body (a 200 whose content is not what the API documents). It fires once, `n` times, always, or
//!   within a window of the shared [`Clock`].
//! - Every call is journaled ([`CallRecord`]): method, path, query, content type, user agent, body
//!   (cut at [`MAX_BODY_IN_JOURNAL`]), status, time by the shared clock, and whether a fault decided it.
//! - [`control_routes`] exposes both over HTTP under `/_sim/` (documented in the README), and
//!   [`FaultRule::parse`] reads the one-line form the routes and `portvakt sim`'s flags take:
//!   `[METHOD] /path-prefix ACTION [WHEN]`, e.g. `POST /api/v1/clients status=503 retry-after=5 times=3`.
//!
//! Error bodies stay each simulator's own ([`ErrorShape`]): a Kubernetes `Status`, Digdir's
//! `{error, error_description}`, and so on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use portvakt_clock::Clock;
use serde::Serialize;
use serde_json::json;

/// Request bodies longer than this are journaled cut to this many bytes.
pub const MAX_BODY_IN_JOURNAL: usize = 64 * 1024;

/// How often a fault fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTimes {
    /// The next matching call only.
    Once,
    /// The next `n` matching calls.
    Times(u32),
    /// Every matching call until the rules are cleared.
    Always,
    /// Every matching call whose time (the shared [`Clock`]) lies in `[from, until)`.
    Window { from: Timestamp, until: Timestamp },
}

/// What a fault does to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status and the simulator's error body instead of handling the call.
    Status {
        status: u16,
        /// Seconds, sent as `Retry-After`.
        retry_after: Option<u64>,
        /// The error message (a default naming the fault otherwise).
        message: Option<String>,
    },
    /// Delay the call by this much (real time), then handle it normally. A latency longer than
    /// the client's timeout makes a timeout; the held call is handled all the same, after the
    /// client gave up (a late answer).
    Latency(Duration),
    /// Handle the call (its effect happens), then answer with this status anyway.
    StatusAfterHandling(u16),
    /// Handle the call to completion (even if the client gives up), then delay the answer: a client
    /// timeout after the change was made.
    LatencyAfterHandling(Duration),
    /// Answer this body with this status (content type JSON) instead of handling the call: a
    /// success whose content is not what the API documents.
    Body { status: u16, body: String },
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// `None` matches every method.
    pub method: Option<Method>,
    /// Matches paths starting with this ("" matches every path); ending in `$`, that path exactly.
    pub path_prefix: String,
    pub action: FaultAction,
    pub times: FaultTimes,
}

impl FaultRule {
    fn with(action: FaultAction) -> Self {
        Self {
            method: None,
            path_prefix: String::new(),
            action,
            times: FaultTimes::Always,
        }
    }

    /// Every matching call is answered with `status` (until [`Self::times`] says otherwise).
    pub fn status(status: u16) -> Self {
        Self::with(FaultAction::Status {
            status,
            retry_after: None,
            message: None,
        })
    }

    /// 429 with `Retry-After: secs`.
    pub fn throttle(secs: u64) -> Self {
        Self::with(FaultAction::Status {
            status: 429,
            retry_after: Some(secs),
            message: None,
        })
    }

    /// Delay, then handle.
    pub fn latency(by: Duration) -> Self {
        Self::with(FaultAction::Latency(by))
    }

    /// Handle, then answer `status` anyway.
    pub fn status_after_handling(status: u16) -> Self {
        Self::with(FaultAction::StatusAfterHandling(status))
    }

    /// Handle, then delay the answer.
    pub fn latency_after_handling(by: Duration) -> Self {
        Self::with(FaultAction::LatencyAfterHandling(by))
    }

    /// Answer `body` with `status` instead of handling.
    pub fn body(status: u16, body: &str) -> Self {
        Self::with(FaultAction::Body {
            status,
            body: body.to_string(),
        })
    }

    /// Only calls with this method (`Method::POST` or `"POST"`; a name that is no method matches
    /// nothing).
    pub fn method<M: TryInto<Method>>(mut self, method: M) -> Self {
        self.method = Some(method.try_into().unwrap_or(Method::CONNECT));
        self
    }

    /// Only calls whose path starts with `prefix`.
    pub fn path(mut self, prefix: &str) -> Self {
        self.path_prefix = prefix.to_string();
        self
    }

    pub fn times(mut self, times: FaultTimes) -> Self {
        self.times = times;
        self
    }

    /// Fire for the next matching call only.
    pub fn once(self) -> Self {
        self.times(FaultTimes::Once)
    }

    /// Fire for the next `n` matching calls.
    pub fn count(self, n: u32) -> Self {
        self.times(FaultTimes::Times(n))
    }

    /// `Retry-After` on a status answer.
    pub fn retry_after(mut self, secs: u64) -> Self {
        if let FaultAction::Status { retry_after, .. } = &mut self.action {
            *retry_after = Some(secs);
        }
        self
    }

    /// The message of a status answer.
    pub fn message(mut self, text: &str) -> Self {
        if let FaultAction::Status { message, .. } = &mut self.action {
            *message = Some(text.to_string());
        }
        self
    }

    /// Whether the rule applies to a call. A prefix ending in `$` matches that path exactly.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        let path_ok = match self.path_prefix.strip_suffix('$') {
            Some(exact) => path == exact,
            None => path.starts_with(&self.path_prefix),
        };
        self.method.as_ref().is_none_or(|m| m == method) && path_ok
    }

    /// Reads the one-line form: `[METHOD] /path-prefix ACTION [WHEN]`, tokens separated by spaces.
    ///
    /// ACTION is one of `status=CODE [retry-after=SECS] [message=TEXT…]`, `throttle=SECS` (429 with
    /// Retry-After), `latency=DURATION`, `latency-after=DURATION`, `status-after=CODE`,
    /// `body=TEXT…` (a 200 with that body) or `garbage` (a 200 with `{"garbage":true}`). WHEN is
    /// `once`, `times=N`, `for=DURATION` (a window starting `now`) or `always` (the default).
    /// `message=` and `body=` take the rest of the line. Durations: `250ms`, `2s`, `1m`, or seconds.
    pub fn parse(line: &str, now: Timestamp) -> Result<FaultRule, RuleError> {
        let err = |problem: String| RuleError {
            rule: line.to_string(),
            problem,
        };
        let mut rest = line.trim();
        let mut method = None;
        let mut prefix = None;
        let mut action: Option<FaultAction> = None;
        let mut retry_after = None;
        let mut message = None;
        let mut times = FaultTimes::Always;
        while !rest.is_empty() {
            let (token, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            rest = tail.trim_start();
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            match key {
                _ if token.starts_with('/') && prefix.is_none() => prefix = Some(token.to_string()),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
                    if method.is_none() && prefix.is_none() =>
                {
                    method =
                        Some(Method::from_bytes(key.as_bytes()).map_err(|e| err(e.to_string()))?);
                }
                "status" => {
                    action = Some(FaultAction::Status {
                        status: parse_status(value).map_err(err)?,
                        retry_after: None,
                        message: None,
                    })
                }
                "throttle" => {
                    action = Some(FaultAction::Status {
                        status: 429,
                        retry_after: None,
                        message: None,
                    });
                    retry_after = Some(parse_secs("throttle", value).map_err(err)?);
                }
                "retry-after" => retry_after = Some(parse_secs("retry-after", value).map_err(err)?),
                "latency" => {
                    action = Some(FaultAction::Latency(parse_dur(key, value).map_err(err)?))
                }
                "latency-after" => {
                    action = Some(FaultAction::LatencyAfterHandling(
                        parse_dur(key, value).map_err(err)?,
                    ))
                }
                "status-after" => {
                    action = Some(FaultAction::StatusAfterHandling(
                        parse_status(value).map_err(err)?,
                    ))
                }
                "garbage" if value.is_empty() => {
                    action = Some(FaultAction::Body {
                        status: 200,
                        body: "{\"garbage\":true}".into(),
                    })
                }
                "body" => {
                    let body = format!("{value}{}{rest}", if rest.is_empty() { "" } else { " " });
                    action = Some(FaultAction::Body { status: 200, body });
                    rest = "";
                }
                "message" => {
                    message = Some(format!(
                        "{value}{}{rest}",
                        if rest.is_empty() { "" } else { " " }
                    ));
                    rest = "";
                }
                "once" if value.is_empty() => times = FaultTimes::Once,
                "always" if value.is_empty() => times = FaultTimes::Always,
                "times" => {
                    let n: u32 = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        err(format!("times={value:?} is not a count of at least 1"))
                    })?;
                    times = FaultTimes::Times(n);
                }
                "for" => {
                    let d = parse_dur(key, value).map_err(err)?;
                    let span = SignedDuration::try_from(d)
                        .map_err(|_| err(format!("for={value:?} is too long")))?;
                    let until = now
                        .checked_add(span)
                        .map_err(|_| err(format!("for={value:?} is too long")))?;
                    times = FaultTimes::Window { from: now, until };
                }
                _ => {
                    return Err(err(format!(
                        "unknown word {token:?} (expected a method, a /path, status=, throttle=, latency=, \
                         latency-after=, status-after=, body=, garbage, retry-after=, message=, once, times=, for=, always)"
                    )));
                }
            }
        }
        let mut action = action.ok_or_else(|| {
            err("no action: say status=, throttle=, latency=, latency-after=, status-after=, body= or garbage".into())
        })?;
        if let FaultAction::Status {
            retry_after: r,
            message: m,
            ..
        } = &mut action
        {
            *r = retry_after;
            *m = message;
        } else if retry_after.is_some() || message.is_some() {
            return Err(err(
                "retry-after= and message= go with status= or throttle= only".into(),
            ));
        }
        Ok(FaultRule {
            method,
            path_prefix: prefix
                .ok_or_else(|| err("no path: give a prefix starting with /".into()))?,
            action,
            times,
        })
    }

    /// The rule in the one-line form [`Self::parse`] reads (a window is shown by its end).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.method {
            out.push_str(m.as_str());
            out.push(' ');
        }
        out.push_str(if self.path_prefix.is_empty() {
            "/"
        } else {
            &self.path_prefix
        });
        out.push(' ');
        match &self.action {
            FaultAction::Status {
                status,
                retry_after,
                message,
            } => {
                out.push_str(&format!("status={status}"));
                if let Some(r) = retry_after {
                    out.push_str(&format!(" retry-after={r}"));
                }
                if let Some(m) = message {
                    out.push_str(&format!(" message={m}"));
                }
            }
            FaultAction::Latency(d) => out.push_str(&format!("latency={}ms", d.as_millis())),
            FaultAction::StatusAfterHandling(s) => out.push_str(&format!("status-after={s}")),
            FaultAction::LatencyAfterHandling(d) => {
                out.push_str(&format!("latency-after={}ms", d.as_millis()))
            }
            FaultAction::Body { body, .. } => out.push_str(&format!("body={body}")),
        }
        match &self.times {
            FaultTimes::Once => out.push_str(" once"),
            FaultTimes::Times(n) => out.push_str(&format!(" times={n}")),
            FaultTimes::Always => {}
            FaultTimes::Window { until, .. } => out.push_str(&format!(" until={until}")),
        }
        out
    }
}

/// A fault rule that does not parse; names the rule and the problem.
#[derive(Debug, thiserror::Error)]
#[error("fault rule {rule:?}: {problem}")]
pub struct RuleError {
    pub rule: String,
    pub problem: String,
}

fn parse_status(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("{value:?} is not an HTTP status (100-599)"))
}

fn parse_secs(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{key}={value:?} is not a number of seconds"))
}

fn parse_dur(key: &str, value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a duration like 250ms, 2s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!(
            "{key}={value:?} has an unknown unit (use ms, s or m)"
        )),
    }
}

/// The active rules, with their remaining counts.
#[derive(Debug, Default)]
struct Rules {
    rules: Vec<(FaultRule, Option<u32>)>,
}

impl Rules {
    fn add(&mut self, rule: FaultRule) {
        let remaining = match rule.times {
            FaultTimes::Once => Some(1),
            FaultTimes::Times(n) => Some(n),
            FaultTimes::Always | FaultTimes::Window { .. } => None,
        };
        self.rules.push((rule, remaining));
    }

    /// The actions that apply to this call (consuming counted rules; expired windows dropped).
    fn take(&mut self, method: &Method, path: &str, now: Timestamp) -> Vec<FaultAction> {
        self.rules.retain(|(r, _)| match r.times {
            FaultTimes::Window { until, .. } => now < until,
            _ => true,
        });
        let mut out = vec![];
        for (rule, remaining) in &mut self.rules {
            if !rule.matches(method, path) {
                continue;
            }
            if let FaultTimes::Window { from, until } = rule.times
                && !(from <= now && now < until)
            {
                continue;
            }
            match remaining {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            out.push(rule.action.clone());
        }
        self.rules.retain(|(_, remaining)| *remaining != Some(0));
        out
    }
}

/// One call a simulator received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// Position in the journal since the simulator started (survives [`FaultLayer::clear_journal`]).
    pub seq: u64,
    #[serde(serialize_with = "method_str")]
    pub method: Method,
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    pub content_type: Option<String>,
    /// The caller's `User-Agent` (tells several clients of one simulator apart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request body as text (lossy), cut at [`MAX_BODY_IN_JOURNAL`]; `None` when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The answer's status; 0 while the call is still being answered.
    pub status: u16,
    /// Simulated time (the shared clock) when the call arrived.
    pub time: Timestamp,
    /// Whether an injected fault decided the answer (status, body, or an answer delayed after
    /// handling).
    pub faulted: bool,
}

fn method_str<S: serde::Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

impl CallRecord {
    /// One query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A simulator's own error body, used when a fault answers for it.
pub trait ErrorShape: Send + Sync + 'static {
    /// The error answer for `status` on `path` (without `Retry-After`; the layer adds it).
    fn error(&self, path: &str, status: StatusCode, message: &str) -> Response;
}

#[derive(Default)]
struct Journal {
    records: VecDeque<CallRecord>,
    next_seq: u64,
}

/// Fault rules, the journal and the settings of one simulator; shared by its middleware and its
/// control routes.
pub struct FaultLayer {
    clock: Clock,
    shape: Box<dyn ErrorShape>,
    rules: Mutex<Rules>,
    journal: Mutex<Journal>,
    journal_cap: usize,
    /// Largest request body accepted (a longer one is answered 413 before handling).
    max_body: usize,
    /// Paths the layer passes through untouched and unjournaled.
    control_prefix: &'static str,
    /// A fixed delay on every call under a prefix (e.g. the Digdir admin API's latency).
    base_latency: Mutex<Option<(String, Duration)>>,
}

fn recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultLayer {
    pub fn new(
        clock: Clock,
        shape: impl ErrorShape,
        journal_cap: usize,
        max_body: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            clock,
            shape: Box::new(shape),
            rules: Mutex::new(Rules::default()),
            journal: Mutex::new(Journal::default()),
            journal_cap,
            max_body,
            control_prefix: CONTROL_PREFIX,
            base_latency: Mutex::new(None),
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn inject(&self, rule: FaultRule) {
        recover(&self.rules).add(rule);
    }

    pub fn clear_faults(&self) {
        recover(&self.rules).rules.clear();
    }

    /// The active rules with their remaining counts (`None`: not counted).
    pub fn rules(&self) -> Vec<(FaultRule, Option<u32>)> {
        recover(&self.rules).rules.clone()
    }

    pub fn journal(&self) -> Vec<CallRecord> {
        recover(&self.journal).records.iter().cloned().collect()
    }

    /// Journal records with `seq >= since`.
    pub fn journal_since(&self, since: u64) -> Vec<CallRecord> {
        recover(&self.journal)
            .records
            .iter()
            .filter(|r| r.seq >= since)
            .cloned()
            .collect()
    }

    pub fn clear_journal(&self) {
        recover(&self.journal).records.clear();
    }

    /// A fixed delay before every call whose path starts with `prefix` (`Duration::ZERO` removes it).
    pub fn set_base_latency(&self, prefix: &str, latency: Duration) {
        *recover(&self.base_latency) = (!latency.is_zero()).then(|| (prefix.to_string(), latency));
    }

    /// Journals a call as it arrives (status 0 until it is answered), so the journal is in order of
    /// arrival and shows calls still being answered. Returns its position.
    fn record_arrival(&self, mut rec: CallRecord) -> u64 {
        let mut j = recover(&self.journal);
        rec.seq = j.next_seq;
        j.next_seq += 1;
        if j.records.len() >= self.journal_cap {
            j.records.pop_front();
        }
        let seq = rec.seq;
        j.records.push_back(rec);
        seq
    }

    /// Completes the journal entry `seq` with the answer's status.
    fn record_answer(&self, seq: u64, status: u16, faulted: bool) {
        let mut j = recover(&self.journal);
        let first = j.records.front().map_or(seq, |r| r.seq);
        if let Some(r) = seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| j.records.get_mut(i))
            && r.seq == seq
        {
            r.status = status;
            r.faulted = faulted;
        }
    }

    fn fault_answer(
        &self,
        path: &str,
        status: u16,
        retry_after: Option<u64>,
        message: Option<&str>,
    ) -> Response {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let default = format!("injected fault: {code}");
        let mut response = self.shape.error(path, code, message.unwrap_or(&default));
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }

    /// Journals the call and applies the faults that match it around `next` (the simulator).
    pub async fn handle(self: Arc<Self>, req: Request, next: Next) -> Response {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if path.starts_with(self.control_prefix) {
            return next.run(req).await;
        }
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let time = self.clock.now();
        let mut rec = CallRecord {
            seq: 0,
            method: method.clone(),
            path: path.clone(),
            query,
            content_type,
            user_agent,
            body: None,
            status: 0,
            time,
            faulted: false,
        };
        let (parts, body) = req.into_parts();
        let bytes = match http_body_util::Limited::new(body, self.max_body)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                let (status, message) = if e.is::<http_body_util::LengthLimitError>() {
                    (
                        413,
                        format!("Request entity too large: limit is {}", self.max_body),
                    )
                } else {
                    (400, format!("error reading request body: {e}"))
                };
                let response = self.fault_answer(&path, status, None, Some(&message));
                let seq = self.record_arrival(rec);
                self.record_answer(seq, status, false);
                return response;
            }
        };
        if !bytes.is_empty() {
            let cut = &bytes[..bytes.len().min(MAX_BODY_IN_JOURNAL)];
            rec.body = Some(String::from_utf8_lossy(cut).into_owned());
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        let seq = self.record_arrival(rec);
        let mut faulted = false;

        let base = recover(&self.base_latency).clone();
        if let Some((prefix, d)) = base
            && path.starts_with(&prefix)
        {
            tokio::time::sleep(d).await;
        }
        let actions = recover(&self.rules).take(&method, &path, time);
        let mut early = None;
        let mut after = None;
        let mut slow_answer = None;
        let mut hold = Duration::ZERO;
        for action in &actions {
            match action {
                FaultAction::Latency(d) => hold += *d,
                FaultAction::Status {
                    status,
                    retry_after,
                    message,
                } if early.is_none() => {
                    early =
                        Some(self.fault_answer(&path, *status, *retry_after, message.as_deref()));
                }
                FaultAction::Body { status, body } if early.is_none() => {
                    let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                    early = Some(
                        (
                            code,
                            [(header::CONTENT_TYPE, "application/json")],
                            body.clone(),
                        )
                            .into_response(),
                    );
                }
                FaultAction::StatusAfterHandling(status) if after.is_none() => {
                    after = Some(*status)
                }
                FaultAction::LatencyAfterHandling(d) => slow_answer = Some(*d),
                _ => {}
            }
        }
        let response = match early {
            Some(r) => {
                faulted = true;
                r
            }
            None => {
                // Spawned, so a held call is still handled, and its effect happens, even if the client
                // hangs up meanwhile (as a real server finishes a request its client gave up on).
                let handled = tokio::spawn(async move {
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                    next.run(req).await
                });
                let r = match handled.await {
                    Ok(r) => r,
                    Err(_) => self.fault_answer(
                        &path,
                        500,
                        None,
                        Some("the simulator failed to handle the call"),
                    ),
                };
                if let Some(d) = slow_answer {
                    faulted = true;
                    tokio::time::sleep(d).await;
                }
                match after {
                    Some(status) => {
                        faulted = true;
                        self.fault_answer(&path, status, None, None)
                    }
                    None => r,
                }
            }
        };
        self.record_answer(seq, response.status().as_u16(), faulted);
        response
    }
}

/// Wraps `router` in the layer: every call journaled, faults applied.
pub fn wrap(router: Router, layer: &Arc<FaultLayer>) -> Router {
    let layer = layer.clone();
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let layer = layer.clone();
            async move { layer.handle(req, next).await }
        },
    ))
}

/// Where the control routes live on every simulator's server.
pub const CONTROL_PREFIX: &str = "/_sim/";

#[derive(serde::Deserialize)]
struct JournalQuery {
    #[serde(default)]
    since: u64,
    /// Include request bodies.
    #[serde(default)]
    bodies: bool,
}

/// `/_sim/faults` (GET the rules, POST one rule per line in the one-line form, DELETE all) and
/// `/_sim/journal` (GET `?since=SEQ&bodies=true`, DELETE), for the simulator served with `layer`.
pub fn control_routes(layer: &Arc<FaultLayer>) -> Router {
    Router::new()
        .route(
            "/_sim/faults",
            get(list_rules).post(add_rules).delete(clear_rules),
        )
        .route("/_sim/journal", get(read_journal).delete(clear_journal))
        .with_state(layer.clone())
}

async fn list_rules(State(layer): State<Arc<FaultLayer>>) -> Response {
    let rules: Vec<_> = layer
        .rules()
        .into_iter()
        .map(|(r, remaining)| json!({"rule": r.describe(), "remaining": remaining}))
        .collect();
    axum::Json(json!({ "rules": rules })).into_response()
}

async fn add_rules(State(layer): State<Arc<FaultLayer>>, body: String) -> Response {
    let now = layer.clock.now();
    let mut parsed = Vec::new();
    for line in body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match FaultRule::parse(line, now) {
            Ok(r) => parsed.push(r),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": e.to_string()})),
                )
                    .into_response();
            }
        }
    }
    if parsed.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "no rule in the body: one rule per line, e.g. `POST /api/v1/clients status=503 times=3`"})),
        )
            .into_response();
    }
    let added: Vec<String> = parsed.iter().map(FaultRule::describe).collect();
    for r in parsed {
        layer.inject(r);
    }
    (StatusCode::CREATED, axum::Json(json!({ "added": added }))).into_response()
}

async fn clear_rules(State(layer): State<Arc<FaultLayer>>) -> StatusCode {
    layer.clear_faults();
    StatusCode::NO_CONTENT
}

async fn read_journal(
    State(layer): State<Arc<FaultLayer>>,
    Query(q): Query<JournalQuery>,
) -> Response {
    let mut calls = layer.journal_since(q.since);
    if !q.bodies {
        for c in &mut calls {
            c.body = None;
        }
    }
    axum::Json(json!({ "calls": calls })).into_response()
}

async fn clear_journal(State(layer): State<Arc<FaultLayer>>) -> StatusCode {
    layer.clear_journal();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn counted_rules_fire_that_many_times_and_windows_follow_the_clock() {
        let mut rules = Rules::default();
        rules.add(
            FaultRule::status(502)
                .method(Method::POST)
                .path("/api/v1/clients")
                .count(2),
        );
        assert!(
            rules
                .take(&Method::GET, "/api/v1/clients", now())
                .is_empty()
        );
        assert_eq!(
            rules
                .take(&Method::POST, "/api/v1/clients/x/jwks", now())
                .len(),
            1
        );
        assert_eq!(rules.take(&Method::POST, "/api/v1/clients", now()).len(), 1);
        assert!(
            rules
                .take(&Method::POST, "/api/v1/clients", now())
                .is_empty()
        );

        let until = now().checked_add(SignedDuration::from_secs(60)).unwrap();
        rules.add(
            FaultRule::latency(Duration::from_millis(1))
                .path("/maskinporten")
                .times(FaultTimes::Window { from: now(), until }),
        );
        assert_eq!(
            rules
                .take(&Method::POST, "/maskinporten/token", now())
                .len(),
            1
        );
        assert_eq!(
            rules
                .take(&Method::POST, "/maskinporten/token", now())
                .len(),
            1
        );
        assert!(
            rules
                .take(&Method::POST, "/maskinporten/token", until)
                .is_empty()
        );
        assert!(rules.rules.is_empty(), "an expired window is dropped");
    }

    #[test]
    fn the_one_line_form_reads_every_action_and_names_what_is_wrong() {
        let r = FaultRule::parse(
            "POST /api/v1/clients status=503 retry-after=5 times=3",
            now(),
        )
        .unwrap();
        assert_eq!(r.method, Some(Method::POST));
        assert_eq!(r.path_prefix, "/api/v1/clients");
        assert_eq!(
            r.action,
            FaultAction::Status {
                status: 503,
                retry_after: Some(5),
                message: None
            }
        );
        assert_eq!(r.times, FaultTimes::Times(3));
        assert_eq!(FaultRule::parse(&r.describe(), now()).unwrap(), r);

        let r = FaultRule::parse("/api/v1 latency-after=35s for=10s", now()).unwrap();
        assert_eq!(
            r.action,
            FaultAction::LatencyAfterHandling(Duration::from_secs(35))
        );
        assert_eq!(
            r.times,
            FaultTimes::Window {
                from: now(),
                until: "2026-01-01T00:00:10Z".parse().unwrap()
            }
        );
        let r = FaultRule::parse("GET /api/v1/clients throttle=7 once", now()).unwrap();
        assert_eq!(
            (r.action.clone(), r.times.clone()),
            (
                FaultAction::Status {
                    status: 429,
                    retry_after: Some(7),
                    message: None
                },
                FaultTimes::Once
            )
        );
        let r = FaultRule::parse("POST /api/v1/clients body={\"client_id\": \"\"}", now()).unwrap();
        assert_eq!(
            r.action,
            FaultAction::Body {
                status: 200,
                body: "{\"client_id\": \"\"}".into()
            }
        );
        let r = FaultRule::parse("/ status=500 message=the database is down", now()).unwrap();
        assert!(
            matches!(r.action, FaultAction::Status { message: Some(ref m), .. } if m == "the database is down")
        );
        assert!(FaultRule::parse("/x latency=250ms", now()).is_ok());
        assert!(FaultRule::parse("/x garbage once", now()).is_ok());
        assert!(FaultRule::parse("/x status-after=502", now()).is_ok());
        let exact = FaultRule::parse("PATCH /a/b$ status=409", now()).unwrap();
        assert!(exact.matches(&Method::PATCH, "/a/b"));
        assert!(!exact.matches(&Method::PATCH, "/a/b/status"));

        for (bad, fragment) in [
            ("/x", "no action"),
            ("status=503", "no path"),
            ("/x status=42", "not an HTTP status"),
            ("/x latency=soon", "not a duration"),
            ("/x latency=5h", "unknown unit"),
            ("/x status=500 times=0", "at least 1"),
            ("/x status=500 sometimes", "unknown word"),
            ("/x latency=1s retry-after=3", "go with status"),
        ] {
            let e = FaultRule::parse(bad, now()).unwrap_err().to_string();
            assert!(e.contains(fragment) && e.contains(bad), "{bad}: {e}");
        }
    }
}
