//! The SMS text.

/// The message body: `template` with `{code}` replaced, and, when `webotp_domain` is set, the
/// origin-bound last line that browsers' WebOTP API and phones' code autofill read
/// (`@example.com #123456`, alone on the last line, after a blank line).
pub fn compose(template: &str, code: &str, webotp_domain: Option<&str>) -> String {
    let body = template.replace("{code}", code);
    match webotp_domain {
        Some(domain) => format!("{body}\n\n@{domain} #{code}"),
        None => body,
    }
}

/// Whether `domain` can stand in the WebOTP line: a host name, optionally with a port.
pub fn is_webotp_domain(domain: &str) -> bool {
    let (host, port) = domain.split_once(':').unwrap_or((domain, ""));
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    host_ok && (port.is_empty() || port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_replaces_its_placeholder() {
        assert_eq!(compose("Your code is {code}.", "042042", None), "Your code is 042042.");
    }

    #[test]
    fn the_webotp_line_comes_last_after_a_blank_line() {
        let body = compose("Your code is {code}", "123456", Some("example.com"));
        assert_eq!(body, "Your code is 123456\n\n@example.com #123456");
        assert_eq!(body.lines().last(), Some("@example.com #123456"));
    }

    #[test]
    fn only_host_names_are_webotp_domains() {
        assert!(is_webotp_domain("example.com"));
        assert!(is_webotp_domain("login.example.co.uk:8443"));
        for bad in [
            "",
            "https://example.com",
            "exa mple.com",
            "-x.com",
            "example.com/path",
            "x.com:99999",
        ] {
            assert!(!is_webotp_domain(bad), "{bad:?}");
        }
    }
}
