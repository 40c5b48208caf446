//! The string `format`s the API server checks for custom resources (kube-openapi's strfmt registry, as
//! far as CRDs use it). Formats not listed here (`int32`, `int64`, `double`, `password`, ...) are not
//! checked, as in Kubernetes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// `Some(true/false)` for a checked format, `None` when the format is not checked.
pub fn check(format: &str, s: &str) -> Option<bool> {
    Some(match format {
        "date-time" | "datetime" => date_time(s),
        "date" => jiff::civil::Date::from_str(s).is_ok() && s.len() == 10,
        "byte" => byte(s),
        "uuid" => uuid(s, None),
        "uuid3" => uuid(s, Some('3')),
        "uuid4" => uuid(s, Some('4')),
        "uuid5" => uuid(s, Some('5')),
        "ipv4" => Ipv4Addr::from_str(s).is_ok(),
        "ipv6" => Ipv6Addr::from_str(s).is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "hostname" => hostname(s),
        "email" => email(s),
        "uri" => url::Url::parse(s).is_ok() || (s.starts_with('/') && !s.contains(' ')),
        _ => return None,
    })
}

fn date_time(s: &str) -> bool {
    // RFC 3339 with an offset, or the local form without one (strfmt's ISO8601LocalTime).
    jiff::Timestamp::from_str(s).is_ok()
        || (s.len() >= 19
            && !s.contains(['+', 'Z', 'z'])
            && jiff::civil::DateTime::from_str(s).is_ok())
}

fn byte(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

fn uuid(s: &str, version: Option<char>) -> bool {
    let b: Vec<char> = s.chars().collect();
    if b.len() != 36 {
        return false;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = if [8, 13, 18, 23].contains(&i) {
            *c == '-'
        } else {
            c.is_ascii_hexdigit()
        };
        if !ok {
            return false;
        }
    }
    match version {
        None => true,
        Some(v) => {
            b[14] == v
                && (v == '3'
                    || v == '5'
                    || matches!(b[19].to_ascii_lowercase(), '8' | '9' | 'a' | 'b'))
        }
    }
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match IpAddr::from_str(ip) {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn mac(s: &str) -> bool {
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if (parts.len() == 6 || parts.len() == 8 || parts.len() == 20)
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    (parts.len() == 3 || parts.len() == 4 || parts.len() == 10)
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    s.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

fn email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !local.contains(' ') && hostname(domain),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn formats() {
        assert_eq!(check("date-time", "2024-05-01T10:00:00Z"), Some(true));
        assert_eq!(
            check("date-time", "2024-05-01T10:00:00.123+02:00"),
            Some(true)
        );
        assert_eq!(check("date-time", "yesterday"), Some(false));
        assert_eq!(check("date", "2024-05-01"), Some(true));
        assert_eq!(check("date", "2024-13-01"), Some(false));
        assert_eq!(
            check("uuid", "2720e397-081d-4d9b-852e-0d81f45a304f"),
            Some(true)
        );
        assert_eq!(check("uuid", "2720e397"), Some(false));
        assert_eq!(check("byte", "aGVsbG8="), Some(true));
        assert_eq!(check("byte", "!!"), Some(false));
        assert_eq!(check("ipv4", "10.0.0.1"), Some(true));
        assert_eq!(check("cidr", "10.0.0.0/8"), Some(true));
        assert_eq!(check("cidr", "10.0.0.0/33"), Some(false));
        assert_eq!(check("int64", "x"), None);
    }
}
