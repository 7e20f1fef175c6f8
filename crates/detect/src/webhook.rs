//! Alerts POSTed as JSON to a webhook (feature `webhook`).
//!
//! HTTPS only (plain HTTP only to a loopback address, for tests and local relays), no
//! redirects, a whole-request timeout (mcpsec-core's outbound policy), and optionally an HMAC-SHA256 of the body in
//! `X-Mcpsec-Signature: sha256=<hex>` so the receiver can check where it came from.

use crate::Error;
use crate::{Alert, AlertSink};
use mcpsec_core::SecretBytes;
use mcpsec_core::hmac::MacKey;
use mcpsec_core::https::{HttpsEndpoint, HttpsError};
use std::time::Duration;

/// Sends each alert as one JSON POST.
pub struct WebhookAlertSink {
    endpoint: HttpsEndpoint,
    signing_key: Option<MacKey>,
}

impl std::fmt::Debug for WebhookAlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token in its path or query: show only the host.
        f.debug_struct("WebhookAlertSink")
            .field("host", &self.endpoint.host())
            .field("signed", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookAlertSink {
    /// A sink posting to `url` with a `timeout` per request, under the workspace's outbound
    /// HTTPS policy ([`mcpsec_core::https`]).
    pub fn new(url: &str, timeout: Duration) -> Result<WebhookAlertSink, Error> {
        let endpoint = HttpsEndpoint::builder(url)
            .timeout(timeout)
            // The receiver's answer is not used; a small cap bounds what is read of it.
            .max_body(MAX_ANSWER)
            .build()
            .map_err(|e| match e {
                HttpsError::Config(reason) => Error::Config(reason),
                _ => Error::Config("cannot build the HTTP client"),
            })?;
        Ok(WebhookAlertSink {
            endpoint,
            signing_key: None,
        })
    }

    /// Signs each body with HMAC-SHA256 under `key` (at least 32 bytes).
    pub fn with_signing_key(mut self, key: &SecretBytes) -> Result<Self, Error> {
        let key = MacKey::new(key.expose_secret())
            .map_err(|_| Error::Config("the webhook signing key must be at least 32 bytes"))?;
        self.signing_key = Some(key);
        Ok(self)
    }
}

/// How much of a receiver's answer is read (it is discarded).
const MAX_ANSWER: usize = 16 * 1024;

#[async_trait::async_trait]
impl AlertSink for WebhookAlertSink {
    async fn send(&self, alert: &Alert) -> Result<(), Error> {
        let body = serde_json::to_vec(alert).map_err(|_| Error::Config("alert encoding"))?;
        let mut headers = Vec::new();
        if let Some(key) = &self.signing_key {
            // `HMAC(key, body)`, unframed: the format receivers already check.
            let tag = key.tag_unframed(&body);
            headers.push(("X-Mcpsec-Signature", format!("sha256={}", hex(&tag))));
        }
        match self.endpoint.post("application/json", &headers, body).await {
            // A 2xx whose answer is longer than we read was still accepted.
            Ok(_) | Err(HttpsError::TooLarge) => Ok(()),
            Err(HttpsError::Status(_)) => {
                Err(Error::Unavailable("the webhook answered with an error"))
            }
            Err(_) => Err(Error::Unavailable("the webhook could not be reached")),
        }
    }
}

/// Lower-case hex, as receivers compare the signature header.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
