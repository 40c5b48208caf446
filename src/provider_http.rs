//! What the provider clients (Digdir, Graph, KMS) share: the cache of an access token (one grant for
//! all concurrent callers, renewed a margin before it expires, dropped when the provider answers 401
//! to it), the cut of a provider's error body kept in an error, and a transport error in words.

use std::future::Future;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;
use crate::digdir::AccessToken;

struct Cached {
    token: AccessToken,
    refresh_at: Timestamp,
}

/// See the module documentation.
#[derive(Default)]
pub struct TokenCache {
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The cached token, or one from `grant` (a token and its lifetime), kept until `refresh_margin`
    /// before it expires (at least half its lifetime). Concurrent callers wait for one grant.
    pub async fn get<E, F, Fut>(
        &self,
        clock: &Clock,
        refresh_margin: Duration,
        grant: F,
    ) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(AccessToken, Duration), E>>,
    {
        let mut cache = self.cached.lock().await;
        if let Some(c) = cache.as_ref()
            && clock.now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = grant().await?;
        let keep = expires_in
            .saturating_sub(refresh_margin)
            .max(expires_in / 2);
        let now = clock.now();
        let refresh_at = now
            .checked_add(SignedDuration::try_from(keep).unwrap_or_default())
            .unwrap_or(now);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets `token` if it is the cached one (the provider answered 401 to it).
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut cache = self.cached.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == token) {
            *cache = None;
        }
    }
}

/// A provider's error body for an error message: trimmed, cut at `max` bytes (on a character
/// boundary) with an ellipsis.
pub fn cut_body(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A reqwest error as text, with its causes (no secrets: URLs and socket errors only).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
