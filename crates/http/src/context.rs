//! The request a security event belongs to: its id and the client's address, carried to
//! the verifiers' event sinks without threading them through every call.
//!
//! The authentication layer runs each request's verification inside a task-local
//! [`RequestContext`]; [`RequestScopedSink`] wraps the host's sink (the audit log) and
//! fills `request_id` and `source` into every event recorded while one is set and the
//! emitter left them empty. Give the wrapped sink to the token verifier and the API-key
//! service, and every `authn_*` event they record for a request names it.
//!
//! The client's address is the connection's peer unless [`SourceRule::TrustedProxies`]
//! says otherwise: then, when the peer is one of the trusted proxies, the rightmost
//! address of `X-Forwarded-For` that is not a trusted proxy (the first hop a trusted proxy
//! saw). Off by default: a forwarded-for header from an untrusted peer is anybody's text.

use axum::extract::ConnectInfo;
use http::HeaderMap;
use ipnet::IpNet;
use mcpsec_core::{EventSink, RequestId, SecurityEvent};
use std::net::{IpAddr, SocketAddr};

/// Longest `X-Forwarded-For` header read, in bytes; a longer one is ignored (the peer is
/// the source).
pub const MAX_FORWARDED_FOR_LEN: usize = 2048;

/// The `X-Request-Id` header: echoed when it is a valid request id, else generated.
pub const X_REQUEST_ID: &str = "x-request-id";

/// Which address is the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SourceRule {
    /// The connection's peer (axum's `ConnectInfo<SocketAddr>`); proxy headers ignored.
    #[default]
    Peer,
    /// Behind these proxies: when the peer is in one of the ranges, the rightmost
    /// `X-Forwarded-For` address outside them.
    TrustedProxies(Vec<IpNet>),
}

impl SourceRule {
    /// The client's address for a request from `peer` with `headers`.
    pub fn source(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        let Self::TrustedProxies(trusted) = self else {
            return Some(peer);
        };
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return Some(peer);
        }
        let mut values = headers.get_all("x-forwarded-for").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Some(peer);
        };
        if value.len() > MAX_FORWARDED_FOR_LEN {
            return Some(peer);
        }
        let Ok(text) = value.to_str() else {
            return Some(peer);
        };
        let mut hops = Vec::new();
        for hop in text.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // One unreadable hop: the chain cannot be trusted past it.
                Err(_) => return Some(peer),
            }
        }
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !is_trusted(ip))
                .unwrap_or(peer),
        )
    }
}

/// The peer address axum recorded for the connection, when served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub(crate) fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The request a piece of work belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The request's id (echoed in `X-Request-Id`).
    pub request_id: RequestId,
    /// The client's address, by the [`SourceRule`].
    pub source: Option<IpAddr>,
}

impl RequestContext {
    /// The id from a valid `X-Request-Id` header, else a fresh one; `None` only when the
    /// operating system's generator fails.
    pub fn for_request(headers: &HeaderMap, source: Option<IpAddr>) -> Option<Self> {
        let request_id = headers
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RequestId::new(v).ok())
            .or_else(crate::errors::next_request_id)?;
        Some(Self { request_id, source })
    }

    /// The context of the request being served on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context current.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// `event` with this request's id and source where it has none.
    pub fn fill(&self, mut event: SecurityEvent) -> SecurityEvent {
        if event.request_id.is_none() {
            event.request_id = Some(self.request_id.clone());
        }
        if event.source.is_none() {
            event.source = self.source;
        }
        event
    }
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// An [`EventSink`] that stamps each event with the current [`RequestContext`] (request
/// id, source) where the emitter left them empty, then hands it to the inner sink.
#[derive(Debug, Clone)]
pub struct RequestScopedSink<S> {
    inner: S,
}

impl<S> RequestScopedSink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

#[async_trait::async_trait]
impl<S: EventSink> EventSink for RequestScopedSink<S> {
    async fn record(&self, event: SecurityEvent) -> Result<(), mcpsec_core::Error> {
        let event = match RequestContext::current() {
            Some(context) => context.fill(event),
            None => event,
        };
        self.inner.record(event).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let peer_rule = SourceRule::Peer;
        assert_eq!(
            peer_rule.source(Some(ip("10.0.0.5")), &xff("1.2.3.4")),
            Some(ip("10.0.0.5"))
        );
        let rule = SourceRule::TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        // From the proxy: the rightmost untrusted hop, not the client-chosen leftmost.
        assert_eq!(
            rule.source(Some(ip("10.0.0.5")), &xff("6.6.6.6, 1.2.3.4, 10.1.1.1")),
            Some(ip("1.2.3.4"))
        );
        // From elsewhere: the header is anybody's text.
        assert_eq!(
            rule.source(Some(ip("8.8.8.8")), &xff("1.2.3.4")),
            Some(ip("8.8.8.8"))
        );
        // Unreadable: the peer.
        assert_eq!(
            rule.source(Some(ip("10.0.0.5")), &xff("1.2.3.4, junk")),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            rule.source(Some(ip("10.0.0.5")), &HeaderMap::new()),
            Some(ip("10.0.0.5"))
        );
    }
}
