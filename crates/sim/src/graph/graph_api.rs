//! Microsoft Graph v1.0 under `/v1.0`: applications (by object id, `appId` or `uniqueName`,
//! including the upsert `PATCH /applications(uniqueName='…')` with `Prefer: create-if-missing`),
//! addPassword/removePassword, owners, federatedIdentityCredentials, servicePrincipals and their
//! appRoleAssignedTo/appRoleAssignments, groups and oauth2PermissionGrants.
//!
//! Every call needs a valid Graph token from this tenant. Collections are paged (`$top`, default page
//! size from the settings) with `@odata.nextLink`. A write holds its target object for the configured
//! write latency; another write to the same object meanwhile gets 409
//! `Directory_ConcurrencyViolation`, and writes beyond the configured rate get 429 with `Retry-After`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::Inner;
use super::error::{GraphApiError, set_request_ids};
use super::odata::{self, Filter};
use super::state::{AppKey, State};

type Result<T, E = GraphApiError> = std::result::Result<T, E>;

/// A successful answer.
pub enum Answer {
    Ok(Value),
    Created(Value),
    NoContent,
}

/// The query options Graph calls take.
struct Query {
    pairs: Vec<(String, String)>,
    filter: Option<Filter>,
    top: Option<usize>,
    skip: usize,
    select: Option<Vec<String>>,
    count: bool,
}

impl Query {
    fn parse(raw: Option<&str>, headers: &HeaderMap) -> Result<Self> {
        let pairs: Vec<(String, String)> = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let eventual = headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
        if (get("$search").is_some() || get("$orderby").is_some()) && !eventual {
            return Err(GraphApiError::unsupported_query(
                "$search and $orderby on directory objects need the header ConsistencyLevel: eventual (and $count=true).",
            ));
        }
        if get("$search").is_some() {
            return Err(GraphApiError::unsupported_query(
                "$search is not supported by the simulator.",
            ));
        }
        let count = get("$count").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if count && !eventual {
            return Err(GraphApiError::unsupported_query(
                "$count on directory objects needs the header ConsistencyLevel: eventual.",
            ));
        }
        let filter = get("$filter").map(odata::parse_filter).transpose()?;
        let top = match get("$top") {
            None => None,
            Some(t) => match t.parse::<usize>() {
                Ok(n) if (1..=999).contains(&n) => Some(n),
                _ => {
                    return Err(GraphApiError::bad_request(format!(
                        "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                    )));
                }
            },
        };
        let skip = get("$skiptoken")
            .map(odata::parse_skip_token)
            .transpose()?
            .unwrap_or(0);
        let select = get("$select").map(|s| {
            s.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        });
        Ok(Self {
            pairs,
            filter,
            top,
            skip,
            select,
            count,
        })
    }

    fn selects(&self, property: &str) -> bool {
        self.select
            .as_ref()
            .is_some_and(|s| s.iter().any(|f| f.eq_ignore_ascii_case(property)))
    }
}

/// One page of a collection, with `@odata.nextLink` when more follow.
fn page(
    base: &str,
    path: &str,
    query: &Query,
    items: Vec<Value>,
    filter_on: &[&str],
    resource: &str,
    page_size: usize,
) -> Result<Answer> {
    let mut matched = vec![];
    for item in items {
        let keep = match &query.filter {
            Some(f) => f.matches(&item, filter_on, resource)?,
            None => true,
        };
        if keep {
            matched.push(item);
        }
    }
    let total = matched.len();
    let size = query.top.unwrap_or(page_size);
    let end = (query.skip + size).min(total);
    let value: Vec<Value> = matched
        .into_iter()
        .skip(query.skip)
        .take(size)
        .map(|v| odata::select(v, query.select.as_deref()))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#{resource}"),
        "value": value,
    });
    if let Some(map) = body.as_object_mut() {
        if query.count {
            map.insert("@odata.count".into(), total.into());
        }
        if end < total {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query.pairs.iter().filter(|(k, _)| k != "$skiptoken") {
                ser.append_pair(k, v);
            }
            ser.append_pair("$skiptoken", &odata::skip_token(end));
            map.insert(
                "@odata.nextLink".into(),
                format!("{base}/v1.0/{path}?{}", ser.finish()).into(),
            );
        }
    }
    Ok(Answer::Ok(body))
}

fn json_body(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Err(GraphApiError::bad_request(
            "Empty Payload. JSON content expected.",
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GraphApiError::bad_request(format!("Unable to read JSON request payload: {e}"))
    })?;
    if !v.is_object() {
        return Err(GraphApiError::bad_request(
            "Unable to read JSON request payload: expected an object.",
        ));
    }
    Ok(v)
}

fn optional_body(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        Ok(json!({}))
    } else {
        json_body(body)
    }
}

/// What a write does to the directory once its target is held.
type WriteAction = Box<dyn FnOnce(&mut State, Timestamp) -> Result<Answer> + Send>;

/// A write to run once its target is held (`target` None: a new object, nothing to conflict with).
struct Write {
    target: Option<String>,
    action: WriteAction,
}

enum Routed {
    Done(Answer),
    Write(Write),
}

fn write(
    target: Option<String>,
    action: impl FnOnce(&mut State, Timestamp) -> Result<Answer> + Send + 'static,
) -> Result<Routed> {
    Ok(Routed::Write(Write {
        target,
        action: Box::new(action),
    }))
}

fn not_allowed(method: &Method, path: &str) -> GraphApiError {
    GraphApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        format!("The HTTP method '{method}' is not allowed on '{path}'."),
    )
}

/// `/v1.0/{*rest}`.
pub async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client_request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match serve(&inner, &method, &uri, &headers, &body).await {
        Ok(answer) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut response = match answer {
                Answer::Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
                Answer::Created(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
                Answer::NoContent => StatusCode::NO_CONTENT.into_response(),
            };
            set_request_ids(&mut response, &request_id, client_request_id.as_deref());
            response
        }
        Err(e) => e.respond(client_request_id.as_deref()),
    }
}

async fn serve(
    inner: &Arc<Inner>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Answer> {
    super::login::check_graph_token(inner, headers)?;
    let raw_path = uri.path().strip_prefix("/v1.0/").unwrap_or_default();
    let segments: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query = Query::parse(uri.query(), headers)?;
    let base = inner.base_url(headers);
    let now = inner.clock.now();
    let routed = {
        let state = inner.lock_state();
        route(
            &state, now, &base, method, raw_path, &segments, &query, headers, body,
        )?
    };
    let w = match routed {
        Routed::Done(a) => return Ok(a),
        Routed::Write(w) => w,
    };
    let latency = {
        let mut state = inner.lock_state();
        begin_write(&mut state, w.target.as_deref(), inner.clock.now())?;
        state.settings.write_latency
    };
    // Held across the latency so that an overlapping write to the same object conflicts.
    struct Release<'a>(&'a Inner, Option<String>);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            let now = self.0.clock.now();
            end_write(&mut self.0.lock_state(), self.1.as_deref(), now);
        }
    }
    let _release = Release(inner, w.target.clone());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut state = inner.lock_state();
    (w.action)(&mut state, inner.clock.now())
}

fn begin_write(state: &mut State, target: Option<&str>, now: Timestamp) -> Result<()> {
    if let Some((limit, window)) = state.settings.write_limit {
        let since = now.checked_sub(window).unwrap_or(now);
        while state.writes.recent.front().is_some_and(|t| *t <= since) {
            state.writes.recent.pop_front();
        }
        if state.writes.recent.len() >= limit {
            let oldest = state.writes.recent.front().copied().unwrap_or(now);
            let free_at = oldest.checked_add(window).unwrap_or(now);
            // Whole seconds, rounded up: waiting that long always frees a slot.
            let millis = free_at.duration_since(now).as_millis().max(1);
            let wait = (millis + 999) / 1000;
            return Err(GraphApiError::throttled(u64::try_from(wait).unwrap_or(1)));
        }
        state.writes.recent.push_back(now);
    }
    if let Some(t) = target {
        let busy = state.writes.in_flight.get(t).copied().unwrap_or(0);
        let settling = !state.settings.write_settle.is_zero()
            && state.writes.last_write.get(t).is_some_and(|at| {
                at.checked_add(state.settings.write_settle)
                    .is_ok_and(|until| now < until)
            });
        if busy > 0 || settling {
            state.writes.conflicts += 1;
            return Err(GraphApiError::concurrency());
        }
        state.writes.in_flight.insert(t.to_string(), 1);
    }
    state.writes.total += 1;
    state.writes.peak_total = state.writes.peak_total.max(state.writes.total);
    Ok(())
}

fn end_write(state: &mut State, target: Option<&str>, now: Timestamp) {
    if let Some(t) = target {
        state.writes.in_flight.remove(t);
        state.writes.last_write.insert(t.to_string(), now);
    }
    state.writes.total = state.writes.total.saturating_sub(1);
}

#[allow(clippy::too_many_arguments)]
fn route(
    state: &State,
    now: Timestamp,
    base: &str,
    method: &Method,
    raw_path: &str,
    segments: &[String],
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Routed> {
    let Some(first) = segments.first() else {
        return Err(GraphApiError::bad_request(
            "Resource not found for the segment ''.",
        ));
    };
    let (collection, alternate) = odata::split_key(first)?;
    let (key, rest): (Option<AppKey>, &[String]) = match alternate {
        Some((k, v)) => {
            let key = match (collection, k.as_str()) {
                ("applications" | "servicePrincipals", "appId") => AppKey::AppId(v),
                ("applications", "uniqueName") => AppKey::UniqueName(v),
                _ => {
                    return Err(GraphApiError::bad_request(format!(
                        "'{k}' is not an alternate key of {collection}."
                    )));
                }
            };
            (Some(key), &segments[1..])
        }
        None => match segments.get(1) {
            Some(id) => (Some(AppKey::Id(id.clone())), &segments[2..]),
            None => (None, &segments[1..]),
        },
    };
    let page_size = state.settings.page_size;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match collection {
        "applications" => applications(
            state, now, base, method, raw_path, key, &rest, query, headers, body, page_size,
        ),
        "servicePrincipals" => service_principals(
            state, now, base, method, raw_path, key, &rest, query, body, page_size,
        ),
        "groups" => {
            if method != Method::GET || !rest.is_empty() {
                return Err(not_allowed(method, raw_path));
            }
            match key {
                None => {
                    let items = state.groups.values().map(|g| g.render()).collect();
                    page(
                        base,
                        raw_path,
                        query,
                        items,
                        &["displayName", "id", "mailNickname"],
                        "groups",
                        page_size,
                    )
                    .map(Routed::Done)
                }
                Some(k) => state
                    .groups
                    .get(k.text())
                    .map(|g| {
                        Routed::Done(Answer::Ok(odata::select(
                            g.render(),
                            query.select.as_deref(),
                        )))
                    })
                    .ok_or_else(|| GraphApiError::not_found(k.text())),
            }
        }
        "oauth2PermissionGrants" => grants(
            state, base, method, raw_path, key, &rest, query, body, page_size,
        ),
        other => Err(GraphApiError::bad_request(format!(
            "Resource not found for the segment '{other}'."
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn applications(
    state: &State,
    now: Timestamp,
    base: &str,
    method: &Method,
    raw_path: &str,
    key: Option<AppKey>,
    rest: &[&str],
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    page_size: usize,
) -> Result<Routed> {
    let Some(key) = key else {
        return match *method {
            Method::GET => {
                let mut apps: Vec<_> = state
                    .apps
                    .values()
                    .filter(|a| !a.foreign && a.visible(now))
                    .collect();
                apps.sort_by_key(|a| a.seq);
                let with_keys = query.selects("keyCredentials");
                let items = apps
                    .iter()
                    .map(|a| state.render_app(a, with_keys))
                    .collect();
                page(
                    base,
                    raw_path,
                    query,
                    items,
                    &[
                        "displayName",
                        "appId",
                        "id",
                        "uniqueName",
                        "identifierUris",
                        "tags",
                        "publisherDomain",
                        "signInAudience",
                    ],
                    "applications",
                    page_size,
                )
                .map(Routed::Done)
            }
            Method::POST => {
                let body = json_body(body)?;
                write(None, move |s, now| {
                    let id = s.create_app(&body, None, now)?;
                    let app = s
                        .apps
                        .get(&id)
                        .ok_or_else(|| GraphApiError::not_found(&id))?;
                    Ok(Answer::Created(s.render_app(app, false)))
                })
            }
            _ => Err(not_allowed(method, raw_path)),
        };
    };
    // The upsert: PATCH /applications(uniqueName='…') creates with `Prefer: create-if-missing`.
    if let (AppKey::UniqueName(unique), true, true) =
        (&key, rest.is_empty(), method == Method::PATCH)
    {
        let body = json_body(body)?;
        let existing = state
            .apps
            .values()
            .find(|a| a.unique_name.as_deref() == Some(unique.as_str()))
            .map(|a| a.id.clone());
        let create = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("create-if-missing"));
        return match existing {
            Some(id) => write(Some(id.clone()), move |s, now| {
                s.patch_app(&id, &body, now)?;
                Ok(Answer::NoContent)
            }),
            None if create => {
                let unique = unique.clone();
                write(Some(format!("uniqueName:{unique}")), move |s, now| {
                    // Created meanwhile by an earlier attempt: it is an update now.
                    if let Some(id) = s
                        .apps
                        .values()
                        .find(|a| a.unique_name.as_deref() == Some(unique.as_str()))
                        .map(|a| a.id.clone())
                    {
                        s.patch_app(&id, &body, now)?;
                        return Ok(Answer::NoContent);
                    }
                    let id = s.create_app(&body, Some(unique), now)?;
                    let app = s
                        .apps
                        .get(&id)
                        .ok_or_else(|| GraphApiError::not_found(&id))?;
                    Ok(Answer::Created(s.render_app(app, false)))
                })
            }
            None => Err(GraphApiError::not_found(unique)),
        };
    }
    let app = state
        .find_app(&key, now)
        .ok_or_else(|| GraphApiError::not_found(key.text()))?;
    let id = app.id.clone();
    match (method.clone(), rest) {
        (Method::GET, []) => Ok(Routed::Done(Answer::Ok(odata::select(
            state.render_app(app, query.selects("keyCredentials")),
            query.select.as_deref(),
        )))),
        (Method::PATCH, []) => {
            let body = json_body(body)?;
            let target = id.clone();
            write(Some(target), move |s, now| {
                s.patch_app(&id, &body, now)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, []) => write(Some(id.clone()), move |s, now| {
            s.delete_app(&id, now)?;
            Ok(Answer::NoContent)
        }),
        (Method::POST, ["addPassword"]) => {
            let body = optional_body(body)?;
            write(Some(id.clone()), move |s, now| {
                Ok(Answer::Ok(s.add_password(&id, &body, now)?))
            })
        }
        (Method::POST, ["removePassword"]) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, _| {
                s.remove_password(&id, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::GET, ["owners"]) => {
            let items = app
                .owners
                .iter()
                .filter_map(|o| state.render_directory_object(o))
                .collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["id"],
                "directoryObjects",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::POST, ["owners", "$ref"]) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, _| {
                s.add_owner(&id, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, ["owners", owner, "$ref"]) => {
            let owner = owner.to_string();
            write(Some(id.clone()), move |s, _| {
                s.remove_owner(&id, &owner)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::GET, ["federatedIdentityCredentials"]) => {
            let items = app.fics.iter().map(|f| f.render()).collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["name", "issuer", "subject", "id"],
                "federatedIdentityCredentials",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::POST, ["federatedIdentityCredentials"]) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, _| {
                Ok(Answer::Created(s.create_fic(&id, &body)?))
            })
        }
        (Method::GET, ["federatedIdentityCredentials", fic]) => app
            .fics
            .iter()
            .find(|f| f.id == *fic || f.name.eq_ignore_ascii_case(fic))
            .map(|f| Routed::Done(Answer::Ok(f.render())))
            .ok_or_else(|| GraphApiError::not_found(fic)),
        (Method::PATCH, ["federatedIdentityCredentials", fic]) => {
            let body = json_body(body)?;
            let fic = fic.to_string();
            write(Some(id.clone()), move |s, _| {
                s.patch_fic(&id, &fic, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, ["federatedIdentityCredentials", fic]) => {
            let fic = fic.to_string();
            write(Some(id.clone()), move |s, _| {
                s.delete_fic(&id, &fic)?;
                Ok(Answer::NoContent)
            })
        }
        _ => Err(not_allowed(method, raw_path)),
    }
}

#[allow(clippy::too_many_arguments)]
fn service_principals(
    state: &State,
    now: Timestamp,
    base: &str,
    method: &Method,
    raw_path: &str,
    key: Option<AppKey>,
    rest: &[&str],
    query: &Query,
    body: &Bytes,
    page_size: usize,
) -> Result<Routed> {
    let Some(key) = key else {
        return match *method {
            Method::GET => {
                let mut sps: Vec<_> = state.sps.values().filter(|s| s.visible(now)).collect();
                sps.sort_by_key(|s| s.seq);
                let items = sps.iter().map(|s| state.render_sp(s)).collect();
                page(
                    base,
                    raw_path,
                    query,
                    items,
                    &[
                        "appId",
                        "displayName",
                        "id",
                        "servicePrincipalNames",
                        "tags",
                        "accountEnabled",
                    ],
                    "servicePrincipals",
                    page_size,
                )
                .map(Routed::Done)
            }
            Method::POST => {
                let body = json_body(body)?;
                write(None, move |s, now| {
                    let id = s.create_sp(&body, now)?;
                    let sp = s
                        .sps
                        .get(&id)
                        .ok_or_else(|| GraphApiError::not_found(&id))?;
                    Ok(Answer::Created(s.render_sp(sp)))
                })
            }
            _ => Err(not_allowed(method, raw_path)),
        };
    };
    let sp = state
        .find_sp(&key, now)
        .ok_or_else(|| GraphApiError::not_found(key.text()))?;
    let id = sp.id.clone();
    match (method.clone(), rest) {
        (Method::GET, []) => Ok(Routed::Done(Answer::Ok(odata::select(
            state.render_sp(sp),
            query.select.as_deref(),
        )))),
        (Method::PATCH, []) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, _| {
                s.patch_sp(&id, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, []) => write(Some(id.clone()), move |s, _| {
            s.delete_sp(&id)?;
            Ok(Answer::NoContent)
        }),
        (Method::GET, ["appRoleAssignedTo"]) => {
            let items = state
                .assignments
                .iter()
                .filter(|a| a.resource_id == id)
                .map(|a| a.render())
                .collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["principalId", "principalType", "appRoleId", "resourceId"],
                "appRoleAssignments",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::GET, ["appRoleAssignments"]) => {
            let items = state
                .assignments
                .iter()
                .filter(|a| a.principal_id == id)
                .map(|a| a.render())
                .collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["resourceId", "appRoleId", "principalId"],
                "appRoleAssignments",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::POST, ["appRoleAssignedTo"]) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, now| {
                Ok(Answer::Created(s.create_assignment(&id, &body, now)?))
            })
        }
        (Method::DELETE, ["appRoleAssignedTo", aid]) => {
            let aid = aid.to_string();
            write(Some(id.clone()), move |s, _| {
                s.delete_assignment(&id, &aid)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::GET, ["owners"]) => {
            let items = sp
                .owners
                .iter()
                .filter_map(|o| state.render_directory_object(o))
                .collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["id"],
                "directoryObjects",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::POST, ["owners", "$ref"]) => {
            let body = json_body(body)?;
            write(Some(id.clone()), move |s, _| {
                s.add_owner(&id, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, ["owners", owner, "$ref"]) => {
            let owner = owner.to_string();
            write(Some(id.clone()), move |s, _| {
                s.remove_owner(&id, &owner)?;
                Ok(Answer::NoContent)
            })
        }
        _ => Err(not_allowed(method, raw_path)),
    }
}

#[allow(clippy::too_many_arguments)]
fn grants(
    state: &State,
    base: &str,
    method: &Method,
    raw_path: &str,
    key: Option<AppKey>,
    rest: &[&str],
    query: &Query,
    body: &Bytes,
    page_size: usize,
) -> Result<Routed> {
    if !rest.is_empty() {
        return Err(not_allowed(method, raw_path));
    }
    match (method.clone(), key) {
        (Method::GET, None) => {
            let items = state.grants.iter().map(|g| g.render()).collect();
            page(
                base,
                raw_path,
                query,
                items,
                &["clientId", "resourceId", "consentType", "principalId"],
                "oauth2PermissionGrants",
                page_size,
            )
            .map(Routed::Done)
        }
        (Method::POST, None) => {
            let body = json_body(body)?;
            let target = body
                .get("clientId")
                .and_then(Value::as_str)
                .map(str::to_string);
            write(target, move |s, _| {
                Ok(Answer::Created(s.create_grant(&body)?))
            })
        }
        (Method::GET, Some(k)) => state
            .grants
            .iter()
            .find(|g| g.id == k.text())
            .map(|g| Routed::Done(Answer::Ok(g.render())))
            .ok_or_else(|| GraphApiError::not_found(k.text())),
        (Method::PATCH, Some(k)) => {
            let body = json_body(body)?;
            let id = k.text().to_string();
            let target = Some(format!("grant:{id}"));
            write(target, move |s, _| {
                s.patch_grant(&id, &body)?;
                Ok(Answer::NoContent)
            })
        }
        (Method::DELETE, Some(k)) => {
            let id = k.text().to_string();
            let target = Some(format!("grant:{id}"));
            write(target, move |s, _| {
                s.delete_grant(&id)?;
                Ok(Answer::NoContent)
            })
        }
        _ => Err(not_allowed(method, raw_path)),
    }
}

/// The Graph error for a 405 axum produces itself, and the fallback.
pub fn unknown_route(path: &str) -> GraphApiError {
    GraphApiError::bad_request(format!("Resource not found for the segment '{path}'."))
}
