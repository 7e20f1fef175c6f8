//! axum extractors: [`Caller`] (the verified principal) and [`Authorize<P>`] (the
//! decision for action `P` in the caller's organization, with step-up), both read from
//! what the authentication layer put into the request, and nothing else.
//!
//! A route that is not behind the layer has no verified caller: the extractors answer
//! 401 there, so a routing mistake fails closed.

use crate::auth::Verified;
use crate::challenge::Challenge;
use crate::error::json_error;
use axum::body::Body;
use axum::extract::FromRequestParts;
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{Response, StatusCode};
use mcpsec_access::{Authorized, Denial, Permission, Principal, Resource};

/// The verified caller of this request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified(parts).map(|v| Caller(v.principal().clone()))
    }
}

/// The proof that the caller may perform `P`'s action in their own organization
/// ([`Resource::of_org`]), decided by the layer's [`Authorizer`](mcpsec_access::Authorizer)
/// at its clock's time (step-up included).
///
/// Denials answer as the MCP authorization specification asks: a missing scope is 403
/// with `WWW-Authenticate: Bearer error="insufficient_scope", scope="<needed>",
/// resource_metadata="…"`; a step-up is 401 with RFC 9470's
/// `error="insufficient_user_authentication"`, `acr_values` and `max_age`; anything else
/// (the role forbids it, an API key for an interactive-only action) is 403 `forbidden`.
/// Each denial is reported to the layer's event sink, and so is each allowed
/// administrative action (`authz_admin`).
#[derive(Debug)]
pub struct Authorize<P>(pub Authorized<P>);

impl<P: Permission + Send, S: Send + Sync> FromRequestParts<S> for Authorize<P> {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verified = verified(parts)?;
        let principal = verified.principal();
        let settings = &verified.authz;
        let now = settings.clock.now();
        let resource = Resource::of_org(principal.org().clone());
        match settings
            .authorizer
            .authorize_as::<P>(principal, &resource, now)
        {
            Ok(proof) => {
                // An administrative action is recorded when it is allowed, not only when
                // it is refused (`authz_admin`).
                if let (Some(sink), Some(event)) = (&settings.sink, proof.admin_event(now)) {
                    let event = match parts.extensions.get::<crate::RequestContext>() {
                        Some(ctx) => ctx.fill(event),
                        None => event,
                    };
                    mcpsec_core::emit(sink.as_ref(), event).await;
                }
                Ok(Authorize(proof))
            }
            Err(denial) => {
                if let Some(sink) = &settings.sink {
                    let mut event = denial.security_event(principal, now);
                    if let Some(ctx) = parts.extensions.get::<crate::RequestContext>() {
                        event = ctx.fill(event);
                    }
                    mcpsec_core::emit(sink.as_ref(), event).await;
                }
                Err(denial_response(&denial, &settings.resource_metadata))
            }
        }
    }
}

/// The response for `denial`, with its challenge where it has one.
pub fn denial_response(denial: &Denial, resource_metadata: &str) -> Response<Body> {
    let (status, code, description, challenge) = match denial {
        Denial::ScopeMissing { required, .. } => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "The credential does not grant the scope this action needs.",
            Some(
                Challenge::new(resource_metadata)
                    .error("insufficient_scope")
                    .scope(&required.to_string()),
            ),
        ),
        Denial::StepUpRequired {
            acr_values,
            max_age,
            action,
        } => (
            StatusCode::UNAUTHORIZED,
            "insufficient_user_authentication",
            "This action needs a recent, stronger authentication.",
            Some(
                // The scope too: a client that knows only the MCP specification's scope
                // step-up still asks for what the action needs; one that speaks RFC 9470
                // adds `acr_values` and `max_age` to its authorization request.
                Challenge::new(resource_metadata)
                    .error("insufficient_user_authentication")
                    .scope(&action.spec().scope.to_string())
                    .acr_values(acr_values)
                    .max_age(*max_age),
            ),
        ),
        Denial::InteractiveOnly { .. } => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "This action needs an interactive session; an API key cannot perform it.",
            None,
        ),
        _ => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "The caller may not perform this action.",
            None,
        ),
    };
    let mut response = json_error(status, code, description);
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, challenge.to_header());
    }
    response
}

fn verified(parts: &Parts) -> Result<&Verified, Response<Body>> {
    parts.extensions.get::<Verified>().ok_or_else(|| {
        json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication is required.",
        )
    })
}
