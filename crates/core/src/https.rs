//! The outbound HTTPS policy (feature `https-client`): one place that decides how mcpsec
//! talks to other servers (a JWKS endpoint, an alert webhook).
//!
//! An [`HttpsEndpoint`] is one URL and a client configured for it:
//!
//! - `https://` only; plain `http://` only to a loopback host (`127.0.0.0/8`, `[::1]`,
//!   `localhost`), for tests and local relays, and then never through a proxy;
//! - no user name or password in the URL;
//! - redirects are not followed: a 3xx is an error like any other non-2xx answer;
//! - one deadline for the whole exchange, connect to last body byte;
//! - answers larger than the body cap are refused, counted as they arrive rather than
//!   trusted from `Content-Length`.
//!
//! Errors are coarse and never carry the URL (its path or query may hold a token).
//! `Debug` shows the scheme, host and path only.

use reqwest::Url;
use std::net::IpAddr;
use std::time::Duration;

/// The default whole-exchange deadline (5 seconds).
pub const DEFAULT_HTTPS_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on an answer's body (64 KiB).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Why an endpoint could not be built or a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsError {
    /// The URL or a setting breaks the policy; nothing was sent.
    #[error("outbound HTTPS: {0}")]
    Config(&'static str),
    /// The server could not be reached, the exchange timed out, or the connection broke.
    #[error("the endpoint could not be reached")]
    Transport,
    /// The server answered with a status other than 2xx (redirects included).
    #[error("the endpoint answered with status {0}")]
    Status(u16),
    /// The answer's body was larger than the cap.
    #[error("the answer is larger than the body cap")]
    TooLarge,
}

/// One outbound endpoint under the policy. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct HttpsEndpoint {
    url: Url,
    client: reqwest::Client,
    max_body: usize,
}

impl std::fmt::Debug for HttpsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsEndpoint")
            .field("url", &self.redacted_url())
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpsEndpoint`]; [`build`](HttpsEndpointBuilder::build) checks the policy.
#[derive(Debug)]
pub struct HttpsEndpointBuilder {
    url: String,
    timeout: Duration,
    max_body: usize,
}

impl HttpsEndpointBuilder {
    /// The whole-exchange deadline (default [`DEFAULT_HTTPS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest answer body accepted (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Checks the URL and settings and builds the client; sends nothing.
    ///
    /// Fails with [`HttpsError::Config`] when the URL does not parse, has no host,
    /// carries credentials, is not `https://` (or `http://` to loopback), or when the
    /// timeout or body cap is zero.
    pub fn build(self) -> Result<HttpsEndpoint, HttpsError> {
        let url =
            Url::parse(&self.url).map_err(|_| HttpsError::Config("the URL does not parse"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpsError::Config("the URL must not carry credentials"));
        }
        let host = url
            .host_str()
            .ok_or(HttpsError::Config("the URL has no host"))?;
        let loopback = is_loopback(host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(HttpsError::Config(
                    "the URL must be https (plain http only to loopback)",
                ));
            }
        }
        if self.timeout.is_zero() || self.max_body == 0 {
            return Err(HttpsError::Config(
                "the timeout and the body cap must be positive",
            ));
        }
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .https_only(url.scheme() == "https");
        if loopback {
            // A loopback URL means this machine; an environment proxy must not reroute it.
            client = client.no_proxy();
        }
        let client = client
            .build()
            .map_err(|_| HttpsError::Config("cannot build the HTTP client"))?;
        Ok(HttpsEndpoint {
            url,
            client,
            max_body: self.max_body,
        })
    }
}

/// `127.0.0.0/8`, `::1` or `localhost` (the URL parser has already lowercased names and
/// normalized IPv4 spellings such as `0x7f.1`).
fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl HttpsEndpoint {
    /// Starts a builder for `url` (checked by [`build`](HttpsEndpointBuilder::build)).
    pub fn builder(url: &str) -> HttpsEndpointBuilder {
        HttpsEndpointBuilder {
            url: url.to_owned(),
            timeout: DEFAULT_HTTPS_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The full URL. It may hold a token in its path or query: do not log it; use
    /// [`HttpsEndpoint::redacted_url`].
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The URL without its query and fragment, for logs and `Debug`.
    pub fn redacted_url(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.into()
    }

    /// The host name or address.
    pub fn host(&self) -> Option<&str> {
        self.url.host_str()
    }

    /// The body cap.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// GETs the URL with an `Accept` header and returns the 2xx answer's body.
    pub async fn get(&self, accept: &str) -> Result<Vec<u8>, HttpsError> {
        let request = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, accept);
        self.exchange(request).await
    }

    /// POSTs `body` as `content_type` with extra `headers`; returns the 2xx answer's body.
    pub async fn post(
        &self,
        content_type: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, HttpsError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.exchange(request.body(body)).await
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, HttpsError> {
        let mut response = request.send().await.map_err(|_| HttpsError::Transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpsError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(HttpsError::TooLarge);
        }
        // Content-Length may be absent or wrong: count what actually arrives.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| HttpsError::Transport)? {
            if body.len().saturating_add(chunk.len()) > self.max_body {
                return Err(HttpsError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection-at-a-time HTTP/1.1 server on 127.0.0.1 that answers every request
    /// with `answer` and counts requests.
    async fn serve(answer: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = socket.read(&mut buf).await else {
                        break;
                    };
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}"), hits)
    }

    fn ok(body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn refuses_http_to_a_non_loopback_host_and_credentials() {
        for url in [
            "http://example.com/jwks",
            "http://10.0.0.1/",
            "http://127.0.0.1.example.com/",
            "ftp://127.0.0.1/",
            "https://user:pass@example.com/",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(
                    HttpsEndpoint::builder(url).build(),
                    Err(HttpsError::Config(_))
                ),
                "{url}"
            );
        }
        for url in [
            "https://example.com/jwks",
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/",
            "http://[::1]/",
            "http://localhost/",
        ] {
            assert!(HttpsEndpoint::builder(url).build().is_ok(), "{url}");
        }
        assert!(
            HttpsEndpoint::builder("https://example.com/")
                .timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            HttpsEndpoint::builder("https://example.com/")
                .max_body(0)
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_and_errors_never_show_the_query() {
        let endpoint = HttpsEndpoint::builder("https://example.com/hook?token=s3cret#x")
            .build()
            .unwrap();
        assert!(!format!("{endpoint:?}").contains("s3cret"));
        assert_eq!(endpoint.redacted_url(), "https://example.com/hook");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn returns_the_body_of_a_2xx_answer() {
        let (url, hits) = serve(ok(b"{\"keys\":[]}")).await;
        let endpoint = HttpsEndpoint::builder(&url).build().unwrap();
        assert_eq!(
            endpoint.get("application/json").await.unwrap(),
            b"{\"keys\":[]}"
        );
        assert_eq!(
            endpoint
                .post(
                    "application/json",
                    &[("x-test", "1".into())],
                    b"{}".to_vec()
                )
                .await
                .unwrap(),
            b"{\"keys\":[]}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn does_not_follow_redirects() {
        // The redirect points back at this server: following it would be a second request.
        let (url, hits) = serve(
            b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec(),
        )
        .await;
        let endpoint = HttpsEndpoint::builder(&url).build().unwrap();
        assert_eq!(endpoint.get("*/*").await, Err(HttpsError::Status(302)));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the redirect was not followed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_an_oversize_body_by_length_and_by_count() {
        let big = vec![b'a'; 1025];
        let (url, _) = serve(ok(&big)).await;
        let endpoint = HttpsEndpoint::builder(&url).max_body(1024).build().unwrap();
        assert_eq!(endpoint.get("*/*").await, Err(HttpsError::TooLarge));
        // No Content-Length: the body is counted as it arrives.
        let mut unannounced = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        unannounced.extend_from_slice(&big);
        let (url, _) = serve(unannounced).await;
        let endpoint = HttpsEndpoint::builder(&url).max_body(1024).build().unwrap();
        assert_eq!(endpoint.get("*/*").await, Err(HttpsError::TooLarge));
        // Exactly at the cap is fine.
        let (url, _) = serve(ok(&big[..1024])).await;
        let endpoint = HttpsEndpoint::builder(&url).max_body(1024).build().unwrap();
        assert_eq!(endpoint.get("*/*").await.unwrap().len(), 1024);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_non_2xx_answer_is_an_error() {
        let (url, _) = serve(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec(),
        )
        .await;
        let endpoint = HttpsEndpoint::builder(&url).build().unwrap();
        assert_eq!(endpoint.get("*/*").await, Err(HttpsError::Status(500)));
    }
}
