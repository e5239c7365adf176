//! Twilio's `X-Twilio-Signature`: HMAC-SHA1 with the auth token over the URL Twilio called
//! followed by every POST parameter (sorted by name, then value; duplicates removed),
//! base64-encoded. The API checks it on status callbacks; the fake Twilio makes it.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The signature Twilio would send for a POST of `params` to `url`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is right for `url` and `params`, compared in constant time. Like
/// Twilio's own libraries, the URL is also tried with its default port added and with its
/// port removed, since proxies differ in what they pass on.
pub fn is_valid(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    url_variants(url)
        .iter()
        .any(|u| mac(auth_token, u, params).verify_slice(&given).is_ok())
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    let sorted: BTreeSet<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The URL as given, with any port removed, and with the scheme's default port added.
fn url_variants(raw: &str) -> Vec<String> {
    let mut variants = vec![raw.to_owned()];
    let Ok(mut url) = url::Url::parse(raw) else {
        return variants;
    };
    let Some(host) = url.host_str().map(str::to_owned) else {
        return variants;
    };
    // `Url` never prints a port equal to the scheme's default, so after removing any other
    // port its text is the port-less form; the default port is then inserted by hand.
    if url.set_port(None).is_ok() {
        let Some(default_port) = url.port_or_known_default() else {
            return variants;
        };
        let without_port = url.to_string();
        let with_port = without_port.replacen(&host, &format!("{host}:{default_port}"), 1);
        variants.push(without_port);
        variants.push(with_port);
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn call_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn vector_one_url_without_port() {
        assert_eq!(sign("12345", URL, &call_params()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn vector_two_url_with_default_port() {
        let url = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &call_params()), "kvajT1Ptam85bY51eRf/AJRuM3w=");
        // A request signed with the port validates against the URL without it, and back.
        assert!(is_valid("12345", URL, &call_params(), "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(is_valid("12345", url, &call_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn vector_three_repeated_parameters_are_sorted_and_deduplicated() {
        let p = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(sign("12345", URL, &p), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn a_wrong_token_a_changed_parameter_or_garbage_is_refused() {
        let good = sign("12345", URL, &call_params());
        assert!(is_valid("12345", URL, &call_params(), &good));
        assert!(!is_valid("54321", URL, &call_params(), &good));
        let mut changed = call_params();
        changed[2].1 = "9999".into();
        assert!(!is_valid("12345", URL, &changed, &good));
        assert!(!is_valid(
            "12345",
            "https://other.com/myapp.php?foo=1&bar=2",
            &call_params(),
            &good
        ));
        assert!(!is_valid("12345", URL, &call_params(), "not base64 at all!"));
        assert!(!is_valid("12345", URL, &call_params(), ""));
    }
}
