//! Go RE2 (`regexp`) pattern semantics on top of Rust's `regex` crate.
//!
//! The API server evaluates a schema's `pattern` with Go's `regexp`. The syntax is nearly the same as
//! Rust's, but the meaning differs in a few places that matter for validation:
//! - Perl classes are ASCII-only in Go: `\d` is `[0-9]`, `\w` is `[0-9A-Za-z_]`, `\s` is `[\t\n\f\r ]`,
//!   `\b` is an ASCII word boundary. Rust's are Unicode-aware, so they are rewritten.
//! - `\Q...\E` literal quoting and octal escapes (`\101`) exist in Go only.
//! - A `{` that does not start a valid repetition is a literal in Go but an error in Rust.
//! - Escaped punctuation such as `\<` is a literal in Go but an assertion in Rust.
//! - Inside classes, `-` may appear anywhere as a literal in Go (`[a-z0-9-_]`); Rust has class set
//!   operators (`--`, `&&`, `~~`) and nested classes, so class items are re-emitted unambiguously.
//!
//! `$` needs no rewriting: without the `m` flag, both Go and Rust match it only at the very end of the
//! text (never before a trailing newline).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;

const CLASS_D: &str = "0-9";
const CLASS_W: &str = "0-9A-Za-z_";
const CLASS_S: &str = "\\t\\n\\f\\r ";

/// Translates a Go RE2 pattern into an equivalent Rust `regex` pattern; `Err` with a reason when Go
/// itself would not accept it (or the construct has no equivalent).
pub fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i += 1;
                let Some(&e) = chars.get(i) else {
                    return Err("trailing backslash at end of expression".into());
                };
                match e {
                    'd' => out.push_str("[0-9]"),
                    'D' => out.push_str("[^0-9]"),
                    'w' => out.push_str("[0-9A-Za-z_]"),
                    'W' => out.push_str("[^0-9A-Za-z_]"),
                    's' => out.push_str("[\\t\\n\\f\\r ]"),
                    'S' => out.push_str("[^\\t\\n\\f\\r ]"),
                    'b' => out.push_str("(?-u:\\b)"),
                    'B' => out.push_str("(?-u:\\B)"),
                    'A' => out.push_str("\\A"),
                    'z' => out.push_str("\\z"),
                    'Q' => {
                        i += 1;
                        let mut lit = String::new();
                        while i < chars.len() {
                            if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                                i += 1;
                                break;
                            }
                            lit.push(chars[i]);
                            i += 1;
                        }
                        for ch in lit.chars() {
                            out.push_str(&literal(ch));
                        }
                    }
                    'p' | 'P' => {
                        i = copy_unicode_class(&chars, i, &mut out)?;
                        continue;
                    }
                    _ => {
                        let (ch, next) = escape_char(&chars, i)?;
                        out.push_str(&literal(ch));
                        i = next;
                        continue;
                    }
                }
                i += 1;
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)?;
            }
            '{' => {
                if let Some(end) = repetition_end(&chars, i) {
                    out.extend(&chars[i..=end]);
                    i = end + 1;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A literal character, escaped for use outside a class.
fn literal(c: char) -> String {
    if c.is_ascii() && !c.is_ascii_alphanumeric() && c != ' ' && c != '_' {
        format!("\\x{{{:X}}}", c as u32)
    } else {
        c.to_string()
    }
}

/// A literal character, escaped for use inside a class.
fn class_literal(c: char) -> String {
    if (c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_') || c.is_control() {
        format!("\\x{{{:X}}}", c as u32)
    } else {
        c.to_string()
    }
}

/// `{n}`, `{n,}` or `{n,m}` starting at `start`: the index of the closing brace.
fn repetition_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let digits_start = i;
    while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if chars.get(i) == Some(&',') {
        i += 1;
        while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    (chars.get(i) == Some(&'}')).then_some(i)
}

/// `\p{Greek}` / `\pL` starting at the `p`: copies it, returns the index after it.
fn copy_unicode_class(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    out.push('\\');
    out.push(chars[i]);
    match chars.get(i + 1) {
        Some('{') => {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '}' {
                out.push(chars[j]);
                j += 1;
            }
            if j >= chars.len() {
                return Err("invalid character class range".into());
            }
            out.push('}');
            Ok(j + 1)
        }
        Some(&c) if c.is_alphabetic() => {
            out.push(c);
            Ok(i + 2)
        }
        _ => Err("invalid character class range".into()),
    }
}

/// One escaped character (the char after the backslash is at `i`): the literal it denotes and the index
/// after the escape. Covers `\x41`, `\x{263a}`, octal, `\a\f\t\n\r\v` and escaped punctuation.
fn escape_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    let Some(&e) = chars.get(i) else {
        return Err("trailing backslash at end of expression".into());
    };
    let simple = match e {
        'a' => Some('\x07'),
        'f' => Some('\x0C'),
        't' => Some('\t'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        'v' => Some('\x0B'),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((c, i + 1));
    }
    if e == 'x' {
        if chars.get(i + 1) == Some(&'{') {
            let mut j = i + 2;
            let mut hex = String::new();
            while j < chars.len() && chars[j] != '}' {
                hex.push(chars[j]);
                j += 1;
            }
            let v = u32::from_str_radix(&hex, 16).map_err(|_| "invalid escape sequence")?;
            let c = char::from_u32(v).ok_or("invalid escape sequence")?;
            return Ok((c, j + 1));
        }
        let hex: String = chars.iter().skip(i + 1).take(2).collect();
        if hex.len() != 2 {
            return Err("invalid escape sequence".into());
        }
        let v = u32::from_str_radix(&hex, 16).map_err(|_| "invalid escape sequence")?;
        let c = char::from_u32(v).ok_or("invalid escape sequence")?;
        return Ok((c, i + 3));
    }
    if ('1'..='7').contains(&e) || e == '0' {
        // Go: octal escapes \0 .. \777 (\1-\7 only when followed by more octal digits is a backreference
        // in Perl; Go treats \1.. as octal only with the leading digit followed by octal digits).
        let mut j = i;
        let mut digits = String::new();
        while j < chars.len() && digits.len() < 3 && ('0'..='7').contains(&chars[j]) {
            digits.push(chars[j]);
            j += 1;
        }
        if e != '0' && digits.len() < 2 {
            return Err("invalid escape sequence".into());
        }
        let v = u32::from_str_radix(&digits, 8).map_err(|_| "invalid escape sequence")?;
        let c = char::from_u32(v).ok_or("invalid escape sequence")?;
        return Ok((c, j));
    }
    if e.is_ascii() && !e.is_ascii_alphanumeric() {
        return Ok((e, i + 1));
    }
    Err(format!("invalid escape sequence: `\\{e}`"))
}

/// Translates a bracket expression starting at `[`; returns the index after the closing `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    let mut body = String::new();
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("missing closing ]".into());
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        // POSIX class [:alpha:] / [:^alpha:]
        if c == '['
            && chars.get(i + 1) == Some(&':')
            && let Some(end) = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ':' && chars.get(j + 1) == Some(&']'))
        {
            body.extend(&chars[i..=end + 1]);
            i = end + 2;
            continue;
        }
        // Perl / Unicode classes inside a bracket expression.
        if c == '\\' {
            match chars.get(i + 1) {
                Some('d') => {
                    body.push_str(CLASS_D);
                    i += 2;
                    continue;
                }
                Some('w') => {
                    body.push_str(CLASS_W);
                    i += 2;
                    continue;
                }
                Some('s') => {
                    body.push_str(CLASS_S);
                    i += 2;
                    continue;
                }
                Some('D') => {
                    body.push_str(&format!("[^{CLASS_D}]"));
                    i += 2;
                    continue;
                }
                Some('W') => {
                    body.push_str(&format!("[^{CLASS_W}]"));
                    i += 2;
                    continue;
                }
                Some('S') => {
                    body.push_str(&format!("[^{CLASS_S}]"));
                    i += 2;
                    continue;
                }
                Some('p') | Some('P') => {
                    i = copy_unicode_class(chars, i + 1, &mut body)?;
                    continue;
                }
                _ => {}
            }
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        // A range `lo-hi`, unless the `-` is followed by the closing `]`.
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let (hi, next) = class_char(chars, i + 1)?;
            if hi < lo {
                return Err("invalid character class range".into());
            }
            i = next;
            body.push_str(&class_literal(lo));
            body.push('-');
            body.push_str(&class_literal(hi));
        } else {
            body.push_str(&class_literal(lo));
        }
    }
    out.push('[');
    if negated {
        out.push('^');
    }
    out.push_str(&body);
    out.push(']');
    Ok(i)
}

/// One (possibly escaped) character in a class.
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("missing closing ]".into()),
        Some('\\') => escape_char(chars, i + 1),
        Some(&c) => Ok((c, i + 1)),
    }
}

type Cache = HashMap<String, Option<Regex>>;
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The compiled regex for a Go pattern; `None` when the pattern is invalid (a CRD with such a pattern
/// would have been refused, so callers skip the check).
pub fn compile(pattern: &str) -> Option<Regex> {
    if let Ok(cache) = CACHE.lock()
        && let Some(hit) = cache.get(pattern)
    {
        return hit.clone();
    }
    let compiled = translate(pattern).ok().and_then(|p| {
        regex::RegexBuilder::new(&p)
            .size_limit(1 << 22)
            .build()
            .ok()
    });
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(pattern.to_string(), compiled.clone());
    }
    compiled
}

/// Whether `text` matches the Go pattern (unanchored search, as Go's `MatchString`). `None` when the
/// pattern does not compile.
pub fn is_match(pattern: &str, text: &str) -> Option<bool> {
    compile(pattern).map(|re| re.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        is_match(p, t).unwrap_or_else(|| panic!("pattern {p:?} should compile: {:?}", translate(p)))
    }

    #[test]
    fn dollar_does_not_match_before_trailing_newline() {
        assert!(m(r"^\d{9}$", "123456789"));
        assert!(!m(r"^\d{9}$", "123456789\n"));
        assert!(!m(r"^[a-z0-9]+$", "abc\n"));
    }

    #[test]
    fn perl_classes_are_ascii_only() {
        // Arabic-Indic digits and full-width digits are Unicode digits but not Go `\d`.
        assert!(!m(r"^\d{9}$", "١٢٣٤٥٦٧٨٩"));
        assert!(!m(r"^\d$", "５"));
        assert!(!m(r"^[\d]$", "٣"));
        assert!(m(r"^[\d]$", "3"));
        assert!(!m(r"^\w+$", "blåbær"));
        assert!(m(r"^\W$", "å"));
        assert!(!m(r"^\s$", "\u{a0}"));
        assert!(!m(r"^\s$", "\x0B"));
        assert!(m(r"^\s$", "\t"));
        assert!(m(r"^\D$", "٣"));
    }

    #[test]
    fn liberator_patterns() {
        let scope = r"^([a-zæøå0-9]+\/?)+(\:[a-zæøå0-9]+)*[a-zæøå0-9]+(\.[a-zæøå0-9]+)*$";
        assert!(m(scope, "a/b:cc.d"));
        assert!(!m(scope, "krr:global/kontaktinformasjon.read"));
        assert!(m(scope, "test2"));
        assert!(!m(scope, "Test"));
        assert!(!m(scope, "abc\n"));
        let uri = r"^(https:\/\/)|(http:\/\/localhost\:).+$";
        assert!(m(uri, "https://x"));
        assert!(m(uri, "http://localhost:8080/cb"));
        assert!(!m(uri, "http://example.com"));
        let perm = r"^[a-z0-9-_./]+$";
        assert!(m(perm, "a-b_c.d/e"));
        assert!(!m(perm, "A"));
        let sep = r"^[\/:.]$";
        assert!(m(sep, "/") && m(sep, ":") && m(sep, "."));
        assert!(!m(sep, "-"));
        let reason = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";
        assert!(m(reason, "Ready"));
        let ctype = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
        assert!(m(ctype, "Ready"));
        assert!(m(ctype, "nais.io/Ready"));
    }

    #[test]
    fn go_only_syntax() {
        assert!(m(r"a{", "a{"));
        assert!(m(r"^x{2}$", "xx"));
        assert!(m(r"^\<$", "<"));
        assert!(m(r"^\Qa.b\E$", "a.b"));
        assert!(!m(r"^\Qa.b\E$", "axb"));
        assert!(m(r"^\101$", "A"));
        assert!(m(r"^[[:alpha:]]+$", "abc"));
        assert!(m(r"^[a-]$", "-"));
        assert!(m(r"^[]a]$", "]"));
        assert!(
            is_match(r"^[a--]$", "-").is_none(),
            "Go: invalid character class range"
        );
        assert!(m(r"^[&&]$", "&"));
        assert!(m(r"^[~~]$", "~"));
        assert!(m(r"^\pL+$", "æøå"));
        assert!(m(r"^\p{Greek}$", "α"));
    }

    #[test]
    fn invalid_patterns_do_not_panic() {
        for p in [
            r"\", r"[a", r"(", r"\p", r"[z-a]", r"\k", r"\x{zz}", r"\8", "[\\",
        ] {
            let _ = is_match(p, "x");
        }
        assert!(is_match(r"(", "x").is_none());
        assert!(is_match(r"\k", "x").is_none());
    }
}
