//! Watch streams: events as newline-delimited JSON, as JSON `Table`s (`kubectl get -w`) or as
//! length-prefixed protobuf frames; resume from the history, bookmarks (with the
//! `k8s.io/initial-events-end` one after the initial state, which watch-list clients such as Helm's
//! `--wait` wait for), timeouts, 410 Expired, selector transitions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::resource::ResourceInfo;
use super::selector::Selectors;
use super::server::ApiServer;
use super::store::{EventType, WatchEvent, is_core_event, served};
use super::{protobuf, registry, table};

pub struct WatchParams {
    pub resource_version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: the current state first, also when resuming from a version.
    pub send_initial_events: bool,
    pub selectors: Selectors,
    pub encoding: Encoding,
}

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// Each event's object is a one-row `meta.k8s.io/v1` Table; only the first carries the
    /// column definitions (as kube-apiserver does, so kubectl prints one header).
    Table,
    Protobuf,
}

/// Writes events in one encoding; remembers whether the Table header was sent.
struct Writer {
    info: ResourceInfo,
    encoding: Encoding,
    header_sent: bool,
    clock: portvakt_clock::Clock,
}

impl Writer {
    fn event(&mut self, etype: &str, object: Value) -> Bytes {
        match self.encoding {
            Encoding::Json => json_line(etype, object),
            Encoding::Table if etype != "ERROR" => {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let mut t = table::to_table(&self.info, &[object], &rv, self.clock.now());
                if self.header_sent {
                    t["columnDefinitions"] = Value::Null;
                }
                self.header_sent = true;
                json_line(etype, t)
            }
            Encoding::Table => json_line(etype, object),
            Encoding::Protobuf => match protobuf::encode_watch_event(etype, &object) {
                Ok(frame) => Bytes::from(frame),
                // Every type served here has a protobuf form (handlers check before choosing it).
                Err(_) => json_line(etype, object),
            },
        }
    }

    fn expired(&mut self, rv: &str, oldest: u64) -> Bytes {
        let err = ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
        self.event("ERROR", err.status())
    }

    fn bookmark(&mut self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata});
        self.event("BOOKMARK", object)
    }
}

fn json_line(etype: &str, object: Value) -> Bytes {
    let mut s = json!({ "type": etype, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Decides what a watcher with these selectors sees of an event: its type and the served object.
fn render(
    info: &ResourceInfo,
    ns: Option<&str>,
    sel: &Selectors,
    ev: &WatchEvent,
) -> Option<(&'static str, Value)> {
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
    // An object leaving the selection is DELETED in its last state that matched, as the watch
    // cache sends it.
    let (etype, object) = match ev.etype {
        EventType::Added | EventType::Deleted => (now.then_some(ev.etype)?, &ev.object),
        EventType::Modified => {
            let before = ev.prev.as_ref().is_some_and(matches);
            match (before, now, &ev.prev) {
                (true, true, _) => (EventType::Modified, &ev.object),
                (false, true, _) => (EventType::Added, &ev.object),
                (true, false, Some(prev)) => (EventType::Deleted, prev),
                _ => return None,
            }
        }
    };
    let mut object = served(info, object);
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        // The previous content, at the event's version (clients resume from it).
        m.insert("resourceVersion".into(), json!(ev.rv.to_string()));
    }
    Some((etype.as_str(), object))
}

/// Starts a watch and returns the streaming response.
pub fn watch(
    server: &ApiServer,
    info: ResourceInfo,
    ns: Option<String>,
    p: WatchParams,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut writer = Writer {
        info: info.clone(),
        encoding: p.encoding,
        header_sent: false,
        clock: server.clock(),
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let (events, start_rv, done) = {
        let store = server.lock();
        let events = store.subscribe();
        let current = store.current_rv();
        let mut done = false;
        let rv = p.resource_version.as_deref().unwrap_or("");
        // The current state first: for a watch from "now" (no version, or 0), and for watch-list.
        let state_first = rv.is_empty() || rv == "0" || p.send_initial_events;
        if server.take_forced_expiry() {
            initial.push(writer.expired(rv, current));
            done = true;
        } else if state_first {
            for (_, obj) in store.matching_served(&info, ns.as_deref(), &p.selectors) {
                initial.push(writer.event("ADDED", obj));
            }
            if p.bookmarks {
                initial.push(writer.bookmark(current, true));
            }
        } else {
            match rv.parse::<u64>() {
                Ok(n) => match store.events_since(n) {
                    Some(evs) => {
                        for ev in evs {
                            if let Some((t, o)) = render(&info, ns.as_deref(), &p.selectors, &ev) {
                                initial.push(writer.event(t, o));
                            }
                        }
                    }
                    None => {
                        initial.push(writer.expired(rv, store.oldest_rv()));
                        done = true;
                    }
                },
                Err(_) => {
                    return ApiError::bad_request(format!("invalid resource version: {rv}"))
                        .into_response();
                }
            }
        }
        (events, current, done)
    };
    let server = server.clone();
    let content_type = match p.encoding {
        Encoding::Protobuf => protobuf::WATCH_MEDIA_TYPE,
        Encoding::Json | Encoding::Table => "application/json",
    };
    tokio::spawn(async move {
        for l in initial {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
        stream_events(server, info, ns, p, writer, events, start_rv, tx).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(http::header::CONTENT_TYPE, content_type)], body).into_response()
}

#[allow(clippy::too_many_arguments)]
async fn stream_events(
    server: ApiServer,
    info: ResourceInfo,
    ns: Option<String>,
    p: WatchParams,
    mut writer: Writer,
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
                    if let Some((t, o)) = render(&info, ns.as_deref(), &p.selectors, &ev)
                        && tx.send(Ok(writer.event(t, o))).await.is_err()
                    {
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
                    let _ = tx.send(Ok(writer.bookmark(last_rv, false))).await;
                }
                return;
            }
            _ = dropped.changed() => return,
            _ = tick.tick(), if p.bookmarks => {
                if tx.send(Ok(writer.bookmark(last_rv, false))).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}
