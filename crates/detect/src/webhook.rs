//! Alerts POSTed as JSON to a webhook (feature `webhook`).
//!
//! HTTPS only (plain HTTP only to a loopback address, for tests and local relays), no
//! redirects, a whole-request timeout, and optionally an HMAC-SHA256 of the body in
//! `X-Mcpsec-Signature: sha256=<hex>` so the receiver can check where it came from.

use crate::{Alert, AlertSink};
use crate::Error;
use mcpsec_core::SecretBytes;
use reqwest::Url;
use std::net::IpAddr;
use std::time::Duration;

/// Sends each alert as one JSON POST.
pub struct WebhookAlertSink {
    url: Url,
    client: reqwest::Client,
    signing_key: Option<aws_lc_rs::hmac::Key>,
}

impl std::fmt::Debug for WebhookAlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token in its path or query: show only the host.
        f.debug_struct("WebhookAlertSink")
            .field("host", &self.url.host_str())
            .field("signed", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookAlertSink {
    /// A sink posting to `url` with a `timeout` per request.
    pub fn new(url: &str, timeout: Duration) -> Result<WebhookAlertSink, Error> {
        let url = Url::parse(url).map_err(|_| Error::Config("the webhook URL does not parse"))?;
        let loopback = match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => return Err(Error::Config("the webhook URL has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(Error::Config(
                    "the webhook URL must be https (plain http only to loopback)",
                ));
            }
        }
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .https_only(url.scheme() == "https");
        if loopback {
            client = client.no_proxy();
        }
        let client = client
            .build()
            .map_err(|_| Error::Config("cannot build the HTTP client"))?;
        Ok(WebhookAlertSink {
            url,
            client,
            signing_key: None,
        })
    }

    /// Signs each body with HMAC-SHA256 under `key` (at least 32 bytes).
    pub fn with_signing_key(mut self, key: &SecretBytes) -> Result<Self, Error> {
        if key.len() < 32 {
            return Err(Error::Config(
                "the webhook signing key must be at least 32 bytes",
            ));
        }
        self.signing_key = Some(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key.expose_secret(),
        ));
        Ok(self)
    }
}

#[async_trait::async_trait]
impl AlertSink for WebhookAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), Error> {
        let body = serde_json::to_vec(alert).map_err(|_| Error::Config("alert encoding"))?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.signing_key {
            let tag = aws_lc_rs::hmac::sign(key, &body);
            request = request.header(
                "X-Mcpsec-Signature",
                format!("sha256={}", hex(tag.as_ref())),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|_| Error::Unavailable("the webhook could not be reached"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::Unavailable("the webhook answered with an error"))
        }
    }
}

/// Lower-case hex, as receivers compare the signature header.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
