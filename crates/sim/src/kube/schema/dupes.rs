//! Duplicate keys in raw JSON (serde_json keeps the last one silently; the API server's strict decoder
//! reports `duplicate field "<path>"` for `fieldValidation=Strict`).

/// Field paths (`spec.secretName`, `spec.items[0].name`) that occur twice in one JSON object, in the order
/// the second occurrence appears. Malformed JSON yields whatever was found before the error.
pub fn duplicate_fields(raw_json: &[u8]) -> Vec<String> {
    let mut p = Parser {
        b: raw_json,
        i: 0,
        out: Vec::new(),
    };
    p.ws();
    let _ = p.value("", 0);
    p.out
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    out: Vec<String>,
}

const MAX_DEPTH: usize = 512;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, path: &str, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(path, depth),
            b'[' => self.array(path, depth),
            b'"' => self.string().map(|_| ()),
            _ => {
                // number, true, false, null
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    fn object(&mut self, path: &str, depth: usize) -> Option<()> {
        self.i += 1;
        let mut seen: Vec<String> = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if seen.contains(&key) {
                if !self.out.contains(&child) {
                    self.out.push(child.clone());
                }
            } else {
                seen.push(key);
            }
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            self.value(&child, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, path: &str, depth: usize) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        let mut n = 0usize;
        loop {
            self.ws();
            self.value(&format!("{path}[{n}]"), depth + 1)?;
            n += 1;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A JSON string at the cursor, unescaped.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'\\' {
                escaped = true;
                self.i += 2;
                continue;
            }
            if c == b'"' {
                let raw = self.b.get(start..self.i)?;
                self.i += 1;
                if !escaped {
                    return Some(String::from_utf8_lossy(raw).into_owned());
                }
                let mut quoted = Vec::with_capacity(raw.len() + 2);
                quoted.push(b'"');
                quoted.extend_from_slice(raw);
                quoted.push(b'"');
                return serde_json::from_slice::<String>(&quoted)
                    .ok()
                    .or_else(|| Some(String::from_utf8_lossy(raw).into_owned()));
            }
            self.i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_fields;

    #[test]
    fn finds_duplicates_with_paths() {
        let raw = br#"{"apiVersion":"nais.io/v1","spec":{"secretName":"a","secretName":"b",
            "scopes":{"exposes":[{"name":"x","name":"y"},{"name":"z"}]}},"spec2":1}"#;
        assert_eq!(
            duplicate_fields(raw),
            vec![
                "spec.secretName".to_string(),
                "spec.scopes.exposes[0].name".to_string()
            ]
        );
        assert_eq!(
            duplicate_fields(br#"{"a":1,"a":2,"a":3}"#),
            vec!["a".to_string()]
        );
        assert_eq!(
            duplicate_fields(br#"{"a\u0062":1,"ab":2}"#),
            vec!["ab".to_string()]
        );
    }

    #[test]
    fn no_duplicates_and_garbage() {
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":[{"b":1},{"b":2}]}"#).is_empty());
        for junk in [
            &b""[..],
            b"{",
            b"{\"a\"",
            b"[[[[",
            b"\"\\",
            b"{\"a\":1,\"a\"",
            b"}}}",
        ] {
            let _ = duplicate_fields(junk);
        }
        let deep = "[".repeat(100_000);
        assert!(duplicate_fields(deep.as_bytes()).is_empty());
    }
}
