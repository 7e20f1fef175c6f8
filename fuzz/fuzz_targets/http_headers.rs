//! The HTTP layer's parsers of outside input on arbitrary bytes: the credential headers
//! (`Authorization`, `X-API-Key`) with the query string, the `Origin` allow-list, the
//! `X-Forwarded-For` rule, the refresh and CSRF cookies, and strict JSON bodies. None may
//! panic, and what they accept must hold:
//! - a presented credential is a substring of the header it came from, an access token
//!   is a non-empty `Bearer` value that is not a key, an API key starts with `mcp_sk_`;
//! - nothing is presented when the query string has a parameter named `access_token`;
//! - a forwarded-for source is the peer or an address written in the header;
//! - an allowed `Origin` is, without case, one of the list.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcpsec_http::context::SourceRule;
use mcpsec_http::credential::{self, Presented};
use mcpsec_http::AllowedOrigins;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    // Four fields split by 0xFF: Authorization, X-API-Key, query, the rest.
    let mut fields = data.split(|b| *b == 0xff);
    let auth = fields.next().unwrap_or_default();
    let key = fields.next().unwrap_or_default();
    let query = fields.next().map(String::from_utf8_lossy);
    let rest = fields.next().unwrap_or_default();

    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        headers.insert("authorization", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(key) {
        headers.insert("x-api-key", v);
    }
    if let Ok(Some(presented)) = credential::read(&headers, query.as_deref()) {
        let (text, source) = match presented {
            Presented::AccessToken(t) => {
                assert!(!t.is_empty() && !t.starts_with(credential::API_KEY_PREFIX));
                (t, auth)
            }
            Presented::ApiKey(k) => {
                assert!(k.starts_with(credential::API_KEY_PREFIX));
                (k, if headers.contains_key("authorization") { auth } else { key })
            }
        };
        assert!(source.windows(text.len()).any(|w| w == text.as_bytes()));
        if let Some(q) = query.as_deref() {
            for pair in q.split('&') {
                let name = pair.split('=').next().unwrap_or_default();
                assert!(!name.eq_ignore_ascii_case("access_token"));
            }
        }
    }

    let mut other = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(rest) {
        other.insert("x-forwarded-for", v.clone());
        other.insert("origin", v.clone());
        other.insert("cookie", v);
    }
    let peer: IpAddr = [10, 0, 0, 1].into();
    let rule = SourceRule::TrustedProxies(vec!["10.0.0.0/8".parse().expect("a CIDR")]);
    if let Some(ip) = rule.source(Some(peer), &other) {
        let text = String::from_utf8_lossy(rest);
        assert!(ip == peer || text.split(',').any(|hop| hop.trim().parse::<IpAddr>() == Ok(ip)));
    }
    let allowed = AllowedOrigins::none().allow("https://app.example");
    if allowed.permits(other.get_all("origin").iter()) {
        if let Some(origin) = other.get("origin") {
            assert!(origin.as_bytes().eq_ignore_ascii_case(b"https://app.example"));
        }
    }
    let _ = mcpsec_tokens::read_cookie(&other, mcpsec_tokens::REFRESH_COOKIE);
    let _ = mcpsec_http::limits::parse_strict::<serde_json::Value>(rest, 16);
});
