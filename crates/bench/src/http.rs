//! Benchmark rows for mcpsec-http: throughput of an authenticated route against the same
//! route without authentication, in one run, on loopback.
//!
//! One axum server (a multi-thread runtime of its own, one worker) serves `/open/ping`
//! and `/mcp/ping` behind the same `JsonErrors` and `SecurityHeaders` layers; only
//! `/mcp/ping` is behind the authentication layer. The client (reqwest, keep-alive, on a
//! current-thread runtime) sends a batch of [`CONCURRENCY`] requests at once per
//! operation, so a row's ns/op is the time to serve a batch and the ratio is the inverse
//! of the throughput ratio (≤ 1.18 keeps ≥ 85 % of the unauthenticated throughput).
//!
//! - `http.auth_overhead`: a cached RS256 access token (the verifier's cache hit, the
//!   membership read from memory) against the open route.
//! - `http.auth_overhead_apikey`: an HMAC-hashed API key (memory store) against the open
//!   route.

use crate::Row;
use axum::Router;
use axum::routing::get;
use mcpsec_access::{MemoryMemberships, Role, Scope, ScopeSet};
use mcpsec_apikeys::{ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper};
use mcpsec_core::{Error, KeyId, NullSink, OrgId, SecretBytes, UserId};
use mcpsec_http::{AuthConfig, Caller, JsonErrors, ProtectedResourceMetadata, SecurityHeaders};
use mcpsec_tokens::{
    AccessGrant, Algorithm, KeySource, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::hint::black_box;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

/// Requests in flight per operation.
pub const CONCURRENCY: usize = 8;

const TOKEN_ROW: &str = "http.auth_overhead";
const KEY_ROW: &str = "http.auth_overhead_apikey";
const LAYER_ROW: &str = "http.auth_layer_in_process";

/// The HTTP rows whose name contains `filter` (all when `None`); the server starts only
/// when one is wanted.
pub(crate) fn rows(filter: Option<&str>) -> Result<Vec<Row>, Error> {
    let wanted: Vec<&str> = [TOKEN_ROW, KEY_ROW, LAYER_ROW]
        .into_iter()
        .filter(|name| filter.is_none_or(|f| name.contains(f)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let setup = |_| Error::InvalidArgument("HTTP benchmark setup");
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(setup)?;
    let client_rt = Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(setup)?,
    );
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(setup)?;
    let addr = listener.local_addr().map_err(setup)?;
    let base = format!("http://{addr}");
    let resource = format!("{base}/mcp");

    let members = Arc::new(MemoryMemberships::new());
    let (user, org) = (UserId::new("bench")?, OrgId::new("acme")?);
    members.set(user.clone(), org.clone(), Role::Developer);
    let ring = SigningKeyring::new(
        SigningKey::generate(KeyId::new("bench")?, Algorithm::RS256)
            .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: signing key"))?,
    );
    let jwks = ring.jwks();
    let issuer = TokenIssuer::builder(Arc::new(RwLock::new(ring)))
        .issuer("https://auth.example")
        .audience(resource.clone())
        .build()
        .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: issuer"))?;
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), NullSink)
        .issuer("https://auth.example")
        .audience(resource.clone())
        .memberships(members.clone())
        .build()
        .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: verifier"))?;
    let mut grant = AccessGrant::new(user.clone(), ScopeSet::of(&[Scope::McpRead]));
    grant.org = Some(org.clone());
    let token = issuer
        .issue(&grant)
        .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: token"))?;

    let hasher = KeyHasher::new(
        Pepper::new(1, SecretBytes::from_slice(&[7u8; 32]))
            .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: pepper"))?,
        vec![],
        HashMode::HmacSha256,
    )
    .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: hasher"))?;
    let keys = ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        members,
        hasher,
        NullSink,
    )
    .quota_per_minute(u32::MAX)
    .build()
    .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: API keys"))?;
    let owner = mcpsec_access::danger::principal(
        user.clone(),
        org.clone(),
        Role::Developer,
        ScopeSet::of(&[Scope::UserToken, Scope::McpRead]),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: mcpsec_access::AuthMethods::EMPTY,
        },
    );
    let proof = mcpsec_access::authorize_as::<mcpsec_access::perm::UserManageTokens>(
        &owner,
        &mcpsec_access::Resource::own(&owner),
    )
    .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: proof"))?;
    let new = NewKey {
        owner: user,
        org,
        scopes: "mcp:read".into(),
        env: Env::Live,
        name: "bench".into(),
        expires_at: None,
    };
    let (api_key, _) = client_rt
        .block_on(keys.create(&proof, new))
        .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: key"))?;

    let metadata = ProtectedResourceMetadata::new(resource, "https://auth.example");
    let auth = AuthConfig::new(metadata.url())
        .tokens(Arc::new(verifier))
        .api_keys(Arc::new(keys));
    let app = Router::new()
        .route("/open/ping", get(|| async { "pong" }))
        .merge(
            Router::new()
                .route("/mcp/ping", get(|_: Caller| async { "pong" }))
                .layer(auth.layer()),
        )
        .layer(JsonErrors::default().layer())
        .layer(SecurityHeaders::default().layer());
    let in_process = app.clone();
    server.spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let server = Rc::new(server);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|_| Error::InvalidArgument("HTTP benchmark setup: client"))?;

    let batch = {
        let client = client.clone();
        let rt = Rc::clone(&client_rt);
        move |url: &str, credential: Option<(&'static str, String)>| {
            let requests = (0..CONCURRENCY).map(|_| {
                let mut request = client.get(url);
                if let Some((name, value)) = &credential {
                    request = request.header(*name, value.as_str());
                }
                async move { matches!(request.send().await, Ok(r) if r.status().is_success()) }
            });
            let all: Vec<_> = requests.collect();
            rt.block_on(join_all(all))
        }
    };
    // Each probe once, so a broken setup fails here rather than inside the timing loop.
    let open = format!("{base}/open/ping");
    let authed = format!("{base}/mcp/ping");
    let bearer = ("authorization", format!("Bearer {token}"));
    let key = ("x-api-key", api_key.expose_secret().to_owned());
    if !(batch(&open, None)
        && batch(&authed, Some(bearer.clone()))
        && batch(&authed, Some(key.clone())))
    {
        return Err(Error::InvalidArgument(
            "HTTP benchmark setup: a probe request was refused",
        ));
    }

    let mut rows = Vec::new();
    if wanted.contains(&LAYER_ROW) {
        rows.push(layer_row(
            in_process,
            Rc::clone(&client_rt),
            bearer.1.clone(),
        ));
    }
    for name in wanted.into_iter().filter(|n| *n != LAYER_ROW) {
        let credential = if name == TOKEN_ROW {
            bearer.clone()
        } else {
            key.clone()
        };
        let (op_batch, base_batch) = (batch.clone(), batch.clone());
        let (authed, open) = (authed.clone(), open.clone());
        let keep = Rc::clone(&server);
        rows.push(Row {
            name,
            baseline: "same_route_without_auth",
            op: Box::new(move || {
                let _server = &keep;
                black_box(op_batch(black_box(&authed), Some(credential.clone())));
            }),
            base: Box::new(move || {
                black_box(base_batch(black_box(&open), None));
            }),
        });
    }
    Ok(rows)
}

/// `http.auth_layer_in_process`: one request through the app's router in process (no
/// socket, no client), to `/mcp/ping` with the bearer token against `/open/ping`: the
/// layer's own cost, apart from the network and the client.
fn layer_row(app: Router, rt: Rc<tokio::runtime::Runtime>, bearer: String) -> Row {
    use tower::ServiceExt;
    let peer = axum::extract::ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)));
    // The header value built once: cloning it shares its bytes, as a server's parsed
    // request does, so the row does not time a copy of the token.
    let bearer = http::HeaderValue::from_str(&bearer).ok();
    let request = move |path: &str, auth: Option<&http::HeaderValue>| {
        let mut builder = http::Request::get(path).extension(peer);
        if let Some(value) = auth {
            builder = builder.header("authorization", value.clone());
        }
        builder.body(axum::body::Body::empty())
    };
    let (op_app, base_app, op_rt) = (app.clone(), app, Rc::clone(&rt));
    let op_request = request;
    Row {
        name: LAYER_ROW,
        baseline: "same_route_without_auth",
        op: Box::new(move || {
            if let Ok(req) = op_request("/mcp/ping", bearer.as_ref()) {
                let served = op_rt.block_on(op_app.clone().oneshot(req));
                black_box(served.map(|r| r.status()).ok());
            }
        }),
        base: Box::new(move || {
            if let Ok(req) = request("/open/ping", None) {
                let served = rt.block_on(base_app.clone().oneshot(req));
                black_box(served.map(|r| r.status()).ok());
            }
        }),
    }
}

/// Awaits every future concurrently on the current task; whether all were `true`.
async fn join_all<F: std::future::Future<Output = bool>>(futures: Vec<F>) -> bool {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    let mut all_ok = true;
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut pinned {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(ok) => {
                        all_ok &= ok;
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    all_ok
}
