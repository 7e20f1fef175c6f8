//! OAuth 2.0 Protected Resource Metadata (RFC 9728), which MCP clients read to find the
//! authorization server: served at `/.well-known/oauth-protected-resource` and at its
//! path-aware form, the well-known prefix followed by the resource's path
//! (`/.well-known/oauth-protected-resource/mcp` for a resource at `/mcp`).

use axum::Router;
use axum::routing::get;
use serde::Serialize;

/// The well-known path prefix (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    /// The resource's identifier: its absolute URL (the audience its tokens must name).
    pub resource: String,
    /// The issuers of tokens this resource accepts.
    pub authorization_servers: Vec<String>,
    /// The scopes the resource understands (left out when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How a token may be presented: `header` only (never the body or the query).
    pub bearer_methods_supported: Vec<String>,
    /// Human-readable documentation, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

impl ProtectedResourceMetadata {
    /// The document for `resource` (an absolute URL) issued to by `authorization_server`.
    pub fn new(resource: impl Into<String>, authorization_server: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: vec![authorization_server.into()],
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_documentation: None,
        }
    }

    /// Sets the scopes supported; `offline_access` is left out, as the MCP specification
    /// asks (a refresh token is the authorization server's business).
    #[must_use]
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes_supported = scopes
            .iter()
            .filter(|s| **s != "offline_access")
            .map(|s| (*s).to_owned())
            .collect();
        self
    }

    /// Sets the documentation URL.
    #[must_use]
    pub fn documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The path of the resource's URL (`/mcp`), empty for a resource at the root.
    pub fn resource_path(&self) -> &str {
        let after_scheme = self
            .resource
            .split_once("://")
            .map_or(self.resource.as_str(), |(_, rest)| rest);
        match after_scheme.find('/') {
            Some(i) => after_scheme.get(i..).unwrap_or("").trim_end_matches('/'),
            None => "",
        }
    }

    /// The absolute URL of the path-aware document (the one to name in challenges).
    pub fn url(&self) -> String {
        let path = self.resource_path();
        let origin = self
            .resource
            .strip_suffix(path)
            .unwrap_or(&self.resource)
            .trim_end_matches('/');
        format!("{origin}{WELL_KNOWN}{path}")
    }

    /// A router serving the document at both paths (mount it outside the
    /// authentication layer: the document is public).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let body = serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned());
        let path_aware = format!("{WELL_KNOWN}{}", self.resource_path());
        let serve = move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        };
        let mut router = Router::new().route(WELL_KNOWN, get(serve.clone()));
        if path_aware != WELL_KNOWN {
            router = router.route(&path_aware, get(serve));
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_aware_url_appends_the_resource_path() {
        let m = ProtectedResourceMetadata::new("https://mcp.example/mcp", "https://auth.example");
        assert_eq!(m.resource_path(), "/mcp");
        assert_eq!(
            m.url(),
            "https://mcp.example/.well-known/oauth-protected-resource/mcp"
        );
        let root = ProtectedResourceMetadata::new("https://mcp.example", "https://auth.example");
        assert_eq!(
            root.url(),
            "https://mcp.example/.well-known/oauth-protected-resource"
        );
    }
}
