//! Checks of names the API server will judge, made before anything is written anywhere, so a spec the
//! server would refuse fails the pass before any provider call (the CRDs must stay liberator's
//! superset, so they carry no pattern for these fields).

/// A Kubernetes object name that must be a DNS-1123 subdomain (Secrets): lower case alphanumerics,
/// `-` and `.`, starting and ending with an alphanumeric, at most 253 characters. The message follows
/// the API server's wording; `field` names the spec field it came from.
pub fn dns1123_subdomain(field: &str, value: &str) -> Result<(), (String, String)> {
    let err = |m: String| Err((field.to_string(), m));
    if value.is_empty() {
        return err("must not be empty: it names the Secret portvakt writes".into());
    }
    if value.len() > 253 {
        return err(format!(
            "{:?}…: must be no more than 253 characters (it is {})",
            value.chars().take(40).collect::<String>(),
            value.len()
        ));
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    };
    if !value.split('.').all(label_ok) {
        return err(format!(
            "{value:?} is not a valid Secret name: a lowercase RFC 1123 subdomain must consist of lower \
             case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character (e.g. 'example.com')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_the_api_servers_rule() {
        for ok in ["app", "app-secret", "a.b-c", "0", &"a".repeat(253)] {
            assert!(dns1123_subdomain("spec.secretName", ok).is_ok(), "{ok}");
        }
        for (bad, fragment) in [
            ("", "must not be empty"),
            ("Bad_Name", "lowercase RFC 1123"),
            ("-app", "lowercase RFC 1123"),
            ("app-", "lowercase RFC 1123"),
            ("a..b", "lowercase RFC 1123"),
            ("app/x", "lowercase RFC 1123"),
        ] {
            let (field, msg) = dns1123_subdomain("spec.secretName", bad).unwrap_err();
            assert_eq!(field, "spec.secretName");
            assert!(msg.contains(fragment), "{bad}: {msg}");
        }
        let (_, msg) = dns1123_subdomain("spec.secretName", &"a".repeat(300)).unwrap_err();
        assert!(msg.contains("253") && msg.contains("300"), "{msg}");
    }
}
