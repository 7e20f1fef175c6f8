//! `WWW-Authenticate: Bearer …` challenges as the MCP authorization specification asks:
//! `resource_metadata` (RFC 9728 §5.1) on every one, `error` and `scope` (RFC 6750 §3),
//! and the step-up challenge of RFC 9470 (`insufficient_user_authentication`,
//! `acr_values`, `max_age`).

use http::HeaderValue;
use std::time::Duration;

/// One `Bearer` challenge, built up parameter by parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    params: Vec<(&'static str, String)>,
}

impl Challenge {
    /// A challenge naming the resource's metadata document (its absolute URL).
    pub fn new(resource_metadata: &str) -> Self {
        Self {
            params: vec![("resource_metadata", resource_metadata.to_owned())],
        }
    }

    /// Adds `error="…"` (`invalid_token`, `insufficient_scope`,
    /// `insufficient_user_authentication`, `invalid_request`).
    #[must_use]
    pub fn error(mut self, code: &str) -> Self {
        self.params.push(("error", code.to_owned()));
        self
    }

    /// Adds `error_description="…"` (fixed text; never request data).
    #[must_use]
    pub fn description(mut self, text: &str) -> Self {
        self.params.push(("error_description", text.to_owned()));
        self
    }

    /// Adds `scope="…"`, the scopes the resource needs (space-separated). Empty adds
    /// nothing.
    #[must_use]
    pub fn scope(mut self, scope: &str) -> Self {
        if !scope.is_empty() {
            self.params.push(("scope", scope.to_owned()));
        }
        self
    }

    /// Adds RFC 9470's `acr_values="…"`. Empty adds nothing.
    #[must_use]
    pub fn acr_values(mut self, acr: &str) -> Self {
        if !acr.is_empty() {
            self.params.push(("acr_values", acr.to_owned()));
        }
        self
    }

    /// Adds RFC 9470's `max_age="<seconds>"`.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.params.push(("max_age", max_age.as_secs().to_string()));
        self
    }

    /// The header value: `Bearer name="value", …` with `"` and `\` escaped and any
    /// character that a header cannot hold dropped.
    pub fn to_header(&self) -> HeaderValue {
        let mut out = String::from("Bearer ");
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars().filter(|c| (' '..='~').contains(c)) {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        // Only visible ASCII and spaces were written, which a header value always holds.
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_6750_and_9470_parameters_quoted() {
        let value = Challenge::new("https://mcp.example/.well-known/oauth-protected-resource/mcp")
            .error("insufficient_user_authentication")
            .acr_values("urn:mcpsec:acr:mfa")
            .max_age(Duration::from_secs(300))
            .to_header();
        assert_eq!(
            value.to_str().unwrap(),
            "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\", \
             error=\"insufficient_user_authentication\", acr_values=\"urn:mcpsec:acr:mfa\", max_age=\"300\""
        );
        let escaped = Challenge::new("a\"b\\c\r\nd").to_header();
        assert_eq!(
            escaped.to_str().unwrap(),
            "Bearer resource_metadata=\"a\\\"b\\\\cd\""
        );
    }
}
