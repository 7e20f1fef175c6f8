//! The refresh cookie, signed double-submit CSRF tokens and the origin check.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use http::header::{COOKIE, HeaderMap, HeaderValue};
use mcpsec_core::SecretString;
use mcpsec_tokens::{
    CSRF_HEADER, CsrfKey, Error, check_origin, clear_refresh_cookie, csrf_cookie, read_cookie,
    refresh_cookie,
};
use std::time::Duration;

fn refresh_token() -> SecretString {
    SecretString::new(format!("mcp_rt_{}", "a".repeat(43)))
}

fn request(refresh: &str, csrf_cookie_value: &str, csrf_header: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cookie =
        format!("theme=dark; __Host-mcp_refresh={refresh}; __Host-mcp_csrf={csrf_cookie_value}");
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
    if let Some(h) = csrf_header {
        headers.insert(CSRF_HEADER, HeaderValue::from_str(h).unwrap());
    }
    headers
}

#[test]
fn refresh_cookie_has_every_protective_attribute() {
    let value = refresh_cookie(&refresh_token(), Duration::from_secs(3600)).unwrap();
    let text = value.to_str().unwrap();
    assert!(text.starts_with("__Host-mcp_refresh=mcp_rt_"));
    for attribute in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=3600",
    ] {
        assert!(text.contains(attribute), "{attribute} in {text}");
    }
    assert!(!text.contains("Domain"), "__Host- cookies carry no Domain");
    assert!(value.is_sensitive());
    assert!(!format!("{value:?}").contains("mcp_rt_"), "Debug hides it");
    assert!(
        clear_refresh_cookie()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        !csrf_cookie("x", Duration::from_secs(1))
            .unwrap()
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
}

#[test]
fn cookie_tossing_duplicates_are_refused() {
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, HeaderValue::from_static("__Host-mcp_refresh=one"));
    headers.append(COOKIE, HeaderValue::from_static("__Host-mcp_refresh=two"));
    assert!(read_cookie(&headers, "__Host-mcp_refresh").is_none());
    let mut single = HeaderMap::new();
    single.insert(
        COOKIE,
        HeaderValue::from_static("a=1; __Host-mcp_refresh=one"),
    );
    assert_eq!(
        read_cookie(&single, "__Host-mcp_refresh")
            .unwrap()
            .expose_secret(),
        "one"
    );
}

#[test]
fn csrf_token_round_trips_and_binds_to_the_refresh_token() {
    let key = CsrfKey::generate().unwrap();
    let refresh = refresh_token();
    let csrf = key.issue(&refresh).unwrap();
    assert!(
        key.check(&request(refresh.expose_secret(), &csrf, Some(&csrf)))
            .is_ok()
    );
    // Another session's refresh token with this CSRF token: refused.
    let other = format!("mcp_rt_{}", "b".repeat(43));
    assert_eq!(
        key.check(&request(&other, &csrf, Some(&csrf))).unwrap_err(),
        Error::Csrf
    );
    // Another key (another deployment): refused.
    let stranger = CsrfKey::generate().unwrap();
    assert_eq!(
        stranger
            .check(&request(refresh.expose_secret(), &csrf, Some(&csrf)))
            .unwrap_err(),
        Error::Csrf
    );
}

#[test]
fn csrf_requires_header_equal_to_cookie() {
    let key = CsrfKey::generate().unwrap();
    let refresh = refresh_token();
    let csrf = key.issue(&refresh).unwrap();
    let forged = key.issue(&refresh).unwrap();
    for headers in [
        request(refresh.expose_secret(), &csrf, None),
        request(refresh.expose_secret(), &csrf, Some(&forged)),
        request(refresh.expose_secret(), &csrf, Some("")),
        request(refresh.expose_secret(), &csrf, Some(&"A".repeat(500))),
    ] {
        assert_eq!(key.check(&headers).unwrap_err(), Error::Csrf);
    }
    let mut tampered = csrf.clone();
    tampered.replace_range(0..1, if csrf.starts_with('A') { "B" } else { "A" });
    assert_eq!(
        key.check(&request(
            refresh.expose_secret(),
            &tampered,
            Some(&tampered)
        ))
        .unwrap_err(),
        Error::Csrf
    );
}

#[test]
fn short_csrf_keys_are_refused() {
    assert!(CsrfKey::from_secret(mcpsec_core::SecretBytes::from_slice(&[7; 16])).is_err());
    assert!(CsrfKey::from_secret(mcpsec_core::SecretBytes::from_slice(&[7; 32])).is_ok());
}

#[test]
fn origin_check() {
    let allowed = ["https://app.example"];
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    };
    assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")]), &allowed).is_ok());
    assert!(check_origin(&headers(&[("origin", "https://app.example")]), &allowed).is_ok());
    assert!(
        check_origin(
            &headers(&[
                ("origin", "https://APP.example"),
                ("sec-fetch-site", "same-origin")
            ]),
            &allowed
        )
        .is_ok()
    );
    for bad in [
        headers(&[]),
        headers(&[("sec-fetch-site", "cross-site")]),
        headers(&[("sec-fetch-site", "same-site")]),
        headers(&[("origin", "https://evil.example")]),
        headers(&[("origin", "null")]),
        headers(&[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ]),
    ] {
        assert_eq!(check_origin(&bad, &allowed).unwrap_err(), Error::Csrf);
    }
}

/// Item 9 of issue 12: the refresh cookie helper only writes a refresh token, never a
/// value that could add cookie attributes.
#[test]
fn refresh_cookie_refuses_a_malformed_value() {
    for bad in [
        "mcp_rt_short",
        "x; Domain=evil.example",
        &format!("mcp_rt_{}; Domain=evil.example", "a".repeat(43)),
        &format!("mcp_rt_{}", "a".repeat(42) + ";"),
        "",
    ] {
        assert!(
            refresh_cookie(&SecretString::new(bad.to_owned()), Duration::from_secs(60)).is_err(),
            "{bad}"
        );
    }
}

/// CSRF tokens issued before an upgrade must still check after it: the tag is
/// `HMAC(key, "mcpsec-csrf-v1" ‖ SHA-256(refresh token) ‖ nonce)`, computed here
/// independently with aws-lc.
#[test]
fn csrf_tag_layout_is_unchanged() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = CsrfKey::from_secret(mcpsec_core::SecretBytes::from_slice(&[6; 32])).unwrap();
    let refresh = refresh_token();
    let token = key.issue(&refresh).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let (nonce, tag) = raw.split_at(16);
    let mut message = b"mcpsec-csrf-v1".to_vec();
    message.extend_from_slice(
        aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            refresh.expose_secret().as_bytes(),
        )
        .as_ref(),
    );
    message.extend_from_slice(nonce);
    let expected = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[6; 32]),
        &message,
    );
    assert_eq!(tag, expected.as_ref());
}
