//! The part of OData the simulator understands: `$filter` with `eq`, `startswith(...)`,
//! `prop/any(x:x eq '...')` joined by `and`; string literals with `''` escaping; alternate keys in
//! paths (`applications(appId='...')`); `$top`, `$select` and opaque `$skiptoken`s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::error::GraphApiError;

/// One clause of a `$filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clause {
    Eq {
        property: String,
        value: Literal,
    },
    StartsWith {
        property: String,
        prefix: String,
    },
    /// `property/any(x:x eq 'value')` on a collection of strings.
    AnyEq {
        property: String,
        value: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    String(String),
    Bool(bool),
    Null,
}

/// A parsed `$filter`: clauses that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest.starts_with(token) {
            self.rest = &self.rest[token.len()..];
            true
        } else {
            false
        }
    }

    /// A keyword followed by a non-identifier character.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let lower = self.rest.get(..word.len()).map(str::to_ascii_lowercase);
        if lower.as_deref() == Some(word) {
            let next = self.rest[word.len()..].chars().next();
            if next.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                self.rest = &self.rest[word.len()..];
                return true;
            }
        }
        false
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '.'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (id, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(id)
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let Some(body) = self.rest.strip_prefix('\'') else {
            return Err("expected a quoted string".into());
        };
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if body[i + 1..].starts_with('\'') {
                    out.push('\'');
                    chars.next();
                } else {
                    self.rest = &body[i + 1..];
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
        Err("unterminated string literal".into())
    }

    fn literal(&mut self) -> Result<Literal, String> {
        self.skip_ws();
        if self.rest.starts_with('\'') {
            return self.string().map(Literal::String);
        }
        if self.eat_word("true") {
            return Ok(Literal::Bool(true));
        }
        if self.eat_word("false") {
            return Ok(Literal::Bool(false));
        }
        if self.eat_word("null") {
            return Ok(Literal::Null);
        }
        // An unquoted GUID (Graph accepts `id eq <guid>` in some places).
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
            .unwrap_or(self.rest.len());
        if end == 36 {
            let (guid, rest) = self.rest.split_at(end);
            self.rest = rest;
            return Ok(Literal::String(guid.to_string()));
        }
        Err(format!(
            "unexpected {:?}",
            self.rest.chars().take(20).collect::<String>()
        ))
    }
}

/// Parses a `$filter` expression.
pub fn parse_filter(text: &str) -> Result<Filter, GraphApiError> {
    let bad = |problem: String| {
        GraphApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Invalid filter clause: {problem}"),
        )
    };
    let mut lx = Lexer { rest: text };
    let mut clauses = vec![];
    loop {
        if lx.eat_word("startswith") {
            if !lx.eat("(") {
                return Err(bad("expected ( after startswith".into()));
            }
            let property = lx
                .ident()
                .ok_or_else(|| bad("expected a property".into()))?;
            if !lx.eat(",") {
                return Err(bad("expected , in startswith".into()));
            }
            let prefix = lx.string().map_err(bad)?;
            if !lx.eat(")") {
                return Err(bad("expected ) after startswith".into()));
            }
            clauses.push(Clause::StartsWith {
                property: property.to_string(),
                prefix,
            });
        } else {
            let property = lx
                .ident()
                .ok_or_else(|| bad("expected a property name".into()))?;
            if let Some(collection) = property.strip_suffix("/any") {
                // prop/any(x:x eq 'v')
                if !lx.eat("(") {
                    return Err(bad("expected ( after any".into()));
                }
                let var = lx
                    .ident()
                    .ok_or_else(|| bad("expected a variable".into()))?;
                if !lx.eat(":") {
                    return Err(bad("expected : in any".into()));
                }
                let again = lx
                    .ident()
                    .ok_or_else(|| bad("expected a variable".into()))?;
                if again != var || !lx.eat_word("eq") {
                    return Err(bad(format!(
                        "only {var}:{var} eq '...' is supported in any"
                    )));
                }
                let value = lx.string().map_err(bad)?;
                if !lx.eat(")") {
                    return Err(bad("expected ) after any".into()));
                }
                clauses.push(Clause::AnyEq {
                    property: collection.to_string(),
                    value,
                });
            } else {
                if !lx.eat_word("eq") {
                    return Err(GraphApiError::unsupported_query(format!(
                        "Unsupported or invalid query filter clause specified for property '{property}': only eq, startswith and any are supported."
                    )));
                }
                let value = lx.literal().map_err(bad)?;
                clauses.push(Clause::Eq {
                    property: property.to_string(),
                    value,
                });
            }
        }
        lx.skip_ws();
        if lx.rest.is_empty() {
            break;
        }
        if !lx.eat_word("and") {
            return Err(GraphApiError::unsupported_query(format!(
                "Unsupported query: only 'and' joins clauses (at {:?})",
                lx.rest.chars().take(20).collect::<String>()
            )));
        }
    }
    Ok(Filter { clauses })
}

impl Filter {
    /// Whether `object` (a rendered resource) matches. `properties` lists the properties that may be
    /// filtered on; any other is refused as Graph refuses it.
    pub fn matches(
        &self,
        object: &Value,
        allowed: &[&str],
        resource: &str,
    ) -> Result<bool, GraphApiError> {
        for clause in &self.clauses {
            let property = match clause {
                Clause::Eq { property, .. }
                | Clause::StartsWith { property, .. }
                | Clause::AnyEq { property, .. } => property,
            };
            if !allowed.contains(&property.as_str()) {
                return Err(GraphApiError::unsupported_query(format!(
                    "Unsupported or invalid query filter clause specified for property '{property}' of resource '{resource}'."
                )));
            }
            let actual = object.get(property).unwrap_or(&Value::Null);
            let ok = match clause {
                // Directory string comparisons ignore case.
                Clause::Eq {
                    value: Literal::String(s),
                    ..
                } => actual.as_str().is_some_and(|a| a.eq_ignore_ascii_case(s)),
                Clause::Eq {
                    value: Literal::Bool(b),
                    ..
                } => actual.as_bool() == Some(*b),
                Clause::Eq {
                    value: Literal::Null,
                    ..
                } => actual.is_null(),
                Clause::StartsWith { prefix, .. } => actual.as_str().is_some_and(|a| {
                    a.to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
                }),
                Clause::AnyEq { value, .. } => actual.as_array().is_some_and(|items| {
                    items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.eq_ignore_ascii_case(value)))
                }),
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// An alternate key in a path: (property, value), e.g. (`appId`, `…`).
pub type AlternateKey = (String, String);

/// A path segment such as `applications(appId='x')`: the collection and the alternate key.
pub fn split_key(segment: &str) -> Result<(&str, Option<AlternateKey>), GraphApiError> {
    let Some(open) = segment.find('(') else {
        return Ok((segment, None));
    };
    let name = &segment[..open];
    let inner = segment[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| GraphApiError::bad_request(format!("Invalid key in '{segment}'")))?;
    let (key, literal) = inner
        .split_once('=')
        .ok_or_else(|| GraphApiError::bad_request(format!("Invalid key in '{segment}'")))?;
    let mut lx = Lexer { rest: literal };
    let value = lx
        .string()
        .map_err(|e| GraphApiError::bad_request(format!("Invalid key in '{segment}': {e}")))?;
    if !lx.rest.trim().is_empty() {
        return Err(GraphApiError::bad_request(format!(
            "Invalid key in '{segment}'"
        )));
    }
    Ok((name, Some((key.trim().to_string(), value))))
}

/// An opaque skip token for an offset into a stable listing.
pub fn skip_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("portvakt-sim:{offset}"))
}

pub fn parse_skip_token(token: &str) -> Result<usize, GraphApiError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("portvakt-sim:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| GraphApiError::bad_request("Invalid $skiptoken"))
}

/// Keeps only `select`ed properties (and `id`) of a rendered object.
pub fn select(object: Value, select: Option<&[String]>) -> Value {
    let (Some(fields), Value::Object(map)) = (select, &object) else {
        return object;
    };
    let kept = map
        .iter()
        .filter(|(k, _)| {
            k.as_str() == "id"
                || k.starts_with("@odata")
                || fields.iter().any(|f| f.eq_ignore_ascii_case(k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_parse_quotes_and_match_ignoring_case() {
        let f = parse_filter("displayName eq 'o''brien:ns:app'").unwrap();
        assert_eq!(
            f.clauses,
            vec![Clause::Eq {
                property: "displayName".into(),
                value: Literal::String("o'brien:ns:app".into())
            }]
        );
        let app = json!({"displayName": "O'Brien:ns:app", "tags": ["a", "b"], "appId": "x"});
        assert!(f.matches(&app, &["displayName"], "application").unwrap());
        let f = parse_filter("tags/any(t:t eq 'B') and startswith(displayName, 'o''b')").unwrap();
        assert!(
            f.matches(&app, &["displayName", "tags"], "application")
                .unwrap()
        );
        // An injection attempt is one literal, not a second clause.
        let f = parse_filter("displayName eq 'x'' or displayName eq ''y'").unwrap();
        assert_eq!(f.clauses.len(), 1);
        assert!(parse_filter("displayName ne 'x'").is_err());
        assert!(parse_filter("displayName eq 'x").is_err());
        let f = parse_filter("appId eq 'x'").unwrap();
        assert!(f.matches(&app, &["displayName"], "application").is_err());
    }

    #[test]
    fn alternate_keys_and_skip_tokens() {
        assert_eq!(
            split_key("applications(uniqueName='a''b')").unwrap(),
            ("applications", Some(("uniqueName".into(), "a'b".into())))
        );
        assert_eq!(split_key("applications").unwrap(), ("applications", None));
        assert!(split_key("applications(appId=x)").is_err());
        assert_eq!(parse_skip_token(&skip_token(42)).unwrap(), 42);
        assert!(parse_skip_token("nope").is_err());
    }
}
