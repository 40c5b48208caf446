//! Server-side apply: field ownership per manager, conflicts, removal of fields a
//! manager stops applying.

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::fields::{self, FieldSet, Scope};
use super::managed::{self, Entry, Managed};
use super::resource::ResourceInfo;
use super::store::{Outcome, Store, Sub, WriteOpts, served, timestamp, to_storage};

/// Parses an apply body: JSON, or YAML.
pub fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: invalid UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Keeps the part of an apply configuration a subresource may set.
fn restrict(config: &mut Value, scope: Scope) {
    let Some(o) = config.as_object_mut() else {
        return;
    };
    match scope {
        Scope::All => {}
        Scope::Main => {
            o.shift_remove("status");
        }
        Scope::Status => {
            o.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
        }
    }
}

impl Store {
    pub(super) fn apply(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: &[u8],
        force: bool,
        opts: &WriteOpts,
    ) -> ApiResult<Outcome> {
        if !opts.manager_given || opts.manager.is_empty() {
            return Err(ApiError::invalid_field(
                "meta.k8s.io",
                "PatchOptions",
                "",
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            ));
        }
        let mut config = parse_body(body)?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        let av = config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
        if av.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(
                "invalid object type: apiVersion and kind must be set in an apply configuration",
            ));
        }
        let core_event = info.plural == "events" && info.group.is_empty();
        if (av != info.api_version() && !(core_event && av == "events.k8s.io/v1"))
            || kind != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version and kind in the data ({av}, {kind}) do not match the expected ({}, {})",
                info.api_version(),
                info.kind
            )));
        }
        if let Some(n) = config.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let scope = Store::scope(info, opts.sub);
        restrict(&mut config, scope);
        let mut config = to_storage(info, config);
        if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("name".into(), json!(name));
            m.shift_remove("managedFields");
        } else if let Some(o) = config.as_object_mut() {
            o.insert("metadata".into(), json!({ "name": name }));
        }
        let new_owned = fields::field_set(info, &config, scope);
        let subresource = if opts.sub == Sub::Status {
            "status"
        } else {
            ""
        };
        let now = timestamp(self.clock());
        let key = Store::key(info, ns, name);
        let Some(old) = self.raw(&key).cloned() else {
            if opts.sub == Sub::Status {
                return Err(ApiError::not_found(&info.group, &info.plural, name));
            }
            let entries = vec![Entry {
                manager: opts.manager.clone(),
                operation: "Apply".into(),
                api_version: info.api_version(),
                time: now,
                subresource: subresource.into(),
                set: new_owned,
            }];
            let served_config = served(info, &config);
            return self.create_with(info, ns, served_config, opts, Managed::Apply(entries));
        };
        if let Some(rv) = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::stale(&info.group, &info.plural, name));
        }
        let mut entries = managed::parse(&old);
        let mine = |e: &Entry| {
            e.manager == opts.manager && e.operation == "Apply" && e.subresource == subresource
        };
        let prev_owned: FieldSet = entries
            .iter()
            .find(|e| mine(e))
            .map(|e| e.set.clone())
            .unwrap_or_default();
        // Conflicts: another manager owns a field this apply sets to a different value.
        let mut conflicts: Vec<(String, String, String)> = Vec::new();
        for e in entries.iter().filter(|e| !mine(e)) {
            for p in new_owned.intersection(&e.set) {
                if managed::is_item(p) {
                    continue;
                }
                if fields::value_at(&old, p) != fields::value_at(&config, p) {
                    conflicts.push((e.manager.clone(), e.api_version.clone(), fields::display(p)));
                }
            }
        }
        if !conflicts.is_empty() {
            if !force {
                return Err(conflict_error(info, &conflicts));
            }
            for e in entries.iter_mut().filter(|e| !mine(e)) {
                e.set.retain(|p| {
                    !new_owned.contains(p)
                        || managed::is_item(p)
                        || fields::value_at(&old, p) == fields::value_at(&config, p)
                });
            }
        }
        let mut merged = old.clone();
        fields::apply_merge(info, &mut merged, &config, &mut Vec::new());
        // Fields this manager applied before and leaves out now go, unless someone else owns them.
        let mut removed: Vec<&Vec<String>> = prev_owned.difference(&new_owned).collect();
        // Parents first: removing a list item removes its fields with it.
        removed.sort_by_key(|p| p.len());
        for p in removed {
            let kept = entries
                .iter()
                .filter(|e| !mine(e))
                .any(|e| e.set.iter().any(|q| q.starts_with(p)))
                || new_owned
                    .iter()
                    .any(|q| q.len() > p.len() && q.starts_with(p));
            if !kept {
                fields::remove_at(&mut merged, p);
            }
        }
        match entries.iter_mut().find(|e| mine(e)) {
            Some(e) => {
                if e.set != new_owned {
                    e.set = new_owned;
                    e.time = now;
                    e.api_version = info.api_version();
                }
            }
            None => entries.push(Entry {
                manager: opts.manager.clone(),
                operation: "Apply".into(),
                api_version: info.api_version(),
                time: now,
                subresource: subresource.into(),
                set: new_owned,
            }),
        }
        entries.retain(|e| !e.set.is_empty());
        let (new, warnings) =
            self.prepare(info, Some(&old), merged, opts, Managed::Apply(entries))?;
        let stored = self.commit(info, key, Some(old), new, opts.dry_run);
        Ok(Outcome {
            object: served(info, &stored),
            created: false,
            warnings,
        })
    }
}

fn conflict_error(info: &ResourceInfo, conflicts: &[(String, String, String)]) -> ApiError {
    // The manager's apiVersion is named only when it differs from the request's.
    let with = |m: &str, av: &str| {
        if av == info.api_version() {
            format!("conflict with \"{m}\"")
        } else {
            format!("conflict with \"{m}\" using {av}")
        }
    };
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, av, p)| format!("{}: {p}", with(m, av)))
        .collect();
    let message = if lines.len() == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, av, p)| {
            json!({"reason": "FieldManagerConflict", "message": with(m, av), "field": p})
        })
        .collect();
    ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}
