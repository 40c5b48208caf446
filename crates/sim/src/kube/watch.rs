//! Watch streams: newline-delimited JSON events, resume from the history,
//! bookmarks, timeouts, 410 Expired, selector transitions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::registry;
use super::resource::ResourceInfo;
use super::selector::Selectors;
use super::server::ApiServer;
use super::store::{EventType, WatchEvent, is_core_event, served};

pub struct WatchParams {
    pub resource_version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    pub selectors: Selectors,
}

fn line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn event_line(etype: &str, object: Value) -> Bytes {
    line(json!({ "type": etype, "object": object }))
}

fn expired_line(rv: &str, oldest: u64) -> Bytes {
    let err = ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
    event_line("ERROR", err.status())
}

fn bookmark(info: &ResourceInfo, rv: u64) -> Bytes {
    event_line(
        "BOOKMARK",
        json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

/// Decides what a watcher with these selectors sees of an event.
fn render(
    info: &ResourceInfo,
    ns: Option<&str>,
    sel: &Selectors,
    ev: &WatchEvent,
) -> Option<Bytes> {
    if ev.skey != registry::storage_key(info) {
        return None;
    }
    if info.namespaced && ns.is_some_and(|n| n != ev.namespace) {
        return None;
    }
    // Selectors answer the same on the stored form (but for core Events): only what is sent is
    // converted to the served form.
    let same_form = !is_core_event(info);
    let matches = |v: &serde_json::Value| {
        if same_form {
            sel.matches(v)
        } else {
            sel.matches(&served(info, v))
        }
    };
    let now = matches(&ev.object);
    let etype = match ev.etype {
        EventType::Added | EventType::Deleted => now.then_some(ev.etype),
        EventType::Modified => {
            let before = ev.prev.as_ref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }?;
    Some(event_line(etype.as_str(), served(info, &ev.object)))
}

/// Starts a watch and returns the streaming response.
pub fn watch(
    server: &ApiServer,
    info: ResourceInfo,
    ns: Option<String>,
    p: WatchParams,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let (events, start_rv, done) = {
        let store = server.lock();
        let events = store.subscribe();
        let current = store.current_rv();
        let mut done = false;
        if server.take_forced_expiry() {
            initial.push(expired_line(
                p.resource_version.as_deref().unwrap_or(""),
                current,
            ));
            done = true;
        } else {
            match p.resource_version.as_deref() {
                None | Some("") | Some("0") => {
                    for (_, obj) in store.matching_served(&info, ns.as_deref(), &p.selectors) {
                        initial.push(event_line("ADDED", obj));
                    }
                }
                Some(rv) => match rv.parse::<u64>() {
                    Ok(n) => match store.events_since(n) {
                        Some(evs) => {
                            for ev in evs {
                                if let Some(l) = render(&info, ns.as_deref(), &p.selectors, &ev) {
                                    initial.push(l);
                                }
                            }
                        }
                        None => {
                            initial.push(expired_line(rv, current));
                            done = true;
                        }
                    },
                    Err(_) => {
                        return ApiError::bad_request(format!("invalid resource version: {rv}"))
                            .into_response();
                    }
                },
            }
        }
        (events, current, done)
    };
    let server = server.clone();
    tokio::spawn(async move {
        for l in initial {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
        stream_events(server, info, ns, p, events, start_rv, tx).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn stream_events(
    server: ApiServer,
    info: ResourceInfo,
    ns: Option<String>,
    p: WatchParams,
    mut events: broadcast::Receiver<Arc<WatchEvent>>,
    start_rv: u64,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut last_rv = start_rv;
    let deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut dropped = server.drop_signal();
    let mut tick = tokio::time::interval(server.bookmark_interval());
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(l) = render(&info, ns.as_deref(), &p.selectors, &ev) && tx.send(Ok(l)).await.is_err() {
                            return;
                        }
                }
                Err(_) => return,
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if p.bookmarks {
                    let _ = tx.send(Ok(bookmark(&info, last_rv))).await;
                }
                return;
            }
            _ = dropped.changed() => return,
            _ = tick.tick(), if p.bookmarks => {
                if tx.send(Ok(bookmark(&info, last_rv))).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}
