//! `mcpsec keys generate` and `mcpsec token issue|verify|inspect`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_access::{AuthMethods, Role, Scope, ScopeSet};
use mcpsec_core::secret_file::{Existing, write_secret_file};
use mcpsec_core::{KeyId, NullSink, OrgId, SystemClock, UserId};
use mcpsec_tokens::{
    AccessGrant, Algorithm, KeyDir, KeySource, RsaBits, SigningKey, SigningKeyring, TokenIssuer,
    TokenVerifier,
};
use serde_json::{Value, json};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// A failure, split by exit code: `Invalid` (1) when the input was read and the answer is
/// no, `Usage` (2) for bad input or an environment problem.
#[derive(Debug)]
pub enum CliError {
    /// Exit 1.
    Invalid(String),
    /// Exit 2.
    Usage(String),
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// What `keys generate` wrote.
pub type Generated = mcpsec_tokens::GeneratedKey;

/// Generates a key into `dir/kid.pem` (mode 0600, never overwritten) and adds its public
/// half to `dir/jwks.json`, keeping the keys already there: [`KeyDir::generate`], which
/// holds the directory's lock file and leaves the directory as it was on failure.
pub fn generate(
    alg: Algorithm,
    kid: &str,
    dir: &Path,
    rsa_bits: RsaBits,
) -> Result<Generated, CliError> {
    let kid = KeyId::new(kid).map_err(|e| usage(format!("--kid: {e}")))?;
    KeyDir::new(dir)
        .generate(alg, &kid, rsa_bits)
        .map_err(|e| usage(e.to_string()))
}

/// Creates `path` with mode 0600 (refusing to overwrite) and writes `bytes` atomically
/// ([`write_secret_file`]): on failure nothing is left under `path`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    write_secret_file(path, bytes, Existing::Refuse).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists | ErrorKind::NotFound | ErrorKind::PermissionDenied => usage(
            format!("cannot create {} (it must not exist): {e}", path.display()),
        ),
        _ => usage(format!("cannot write {}: {e}", path.display())),
    })
}

/// Reads a file, or standard input for `-`, up to `max` bytes.
pub fn read_input(path: &str, max: usize) -> Result<String, CliError> {
    use std::io::Read;
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin()
            .take(max as u64 + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max as u64 + 1).read_to_string(&mut text))
    };
    read.map_err(|e| usage(format!("cannot read {path}: {e}")))?;
    if text.len() > max {
        return Err(usage(format!("{path}: larger than {max} bytes")));
    }
    Ok(text)
}

/// The options of `token issue`.
#[derive(Debug)]
pub struct IssueOptions<'a> {
    /// PKCS#8 PEM text of the signing key.
    pub key_pem: &'a str,
    /// Its algorithm, when given; otherwise tried in order RS256, ES256, EdDSA.
    pub alg: Option<Algorithm>,
    /// `kid`.
    pub kid: &'a str,
    /// `iss`.
    pub iss: &'a str,
    /// `aud`.
    pub aud: &'a str,
    /// `sub`.
    pub sub: &'a str,
    /// `org`.
    pub org: Option<&'a str>,
    /// `role`.
    pub role: Option<Role>,
    /// Scopes (strictly parsed by the caller).
    pub scopes: ScopeSet,
    /// Lifetime.
    pub ttl: Duration,
    /// `amr` values.
    pub amr: &'a [String],
}

/// Signs a token as `token issue` does.
pub fn issue(options: &IssueOptions<'_>) -> Result<String, CliError> {
    let kid = KeyId::new(options.kid).map_err(|e| usage(format!("--kid: {e}")))?;
    let algs = options.alg.map_or(
        vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        |a| vec![a],
    );
    let key = algs
        .into_iter()
        .find_map(|alg| SigningKey::from_pkcs8_pem(kid.clone(), alg, options.key_pem).ok())
        .ok_or_else(|| usage("--key: not a PKCS#8 PEM private key for RS256, ES256 or EdDSA"))?;
    let mut unknown = options
        .amr
        .iter()
        .filter(|m| mcpsec_access::AuthMethod::from_amr(m).is_none());
    if let Some(m) = unknown.next() {
        return Err(usage(format!("--amr: unknown method {m:?}")));
    }
    let mut grant = AccessGrant::new(
        UserId::new(options.sub).map_err(|e| usage(format!("--sub: {e}")))?,
        options.scopes,
    );
    grant.org = options
        .org
        .map(OrgId::new)
        .transpose()
        .map_err(|e| usage(format!("--org: {e}")))?;
    grant.role = options.role;
    grant.amr = AuthMethods::from_amr(options.amr.iter().map(String::as_str));
    if grant.amr.iter().next().is_some() {
        grant.auth_time = Some(SystemTime::now());
    }
    let issuer = TokenIssuer::builder(Arc::new(RwLock::new(SigningKeyring::new(key))))
        .issuer(options.iss)
        .audience(options.aud)
        .ttl(options.ttl)
        .clock(Arc::new(SystemClock))
        .build()
        .map_err(|e| usage(e.to_string()))?;
    issuer.issue(&grant).map_err(|e| usage(e.to_string()))
}

/// Verifies as `token verify` does; returns the verified payload.
pub fn verify(
    jwks: &str,
    iss: &str,
    aud: &str,
    require: Option<Scope>,
    token: &str,
) -> Result<Value, CliError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(usage(
            "no token given (pass it as an argument or on standard input)",
        ));
    }
    let claims = if jwks.starts_with("https://") || jwks.starts_with("http://") {
        verify_remote(jwks, iss, aud, token)?
    } else {
        // A one-shot diagnostic prints its answer; it has no audit log to report to.
        let verifier = TokenVerifier::builder(KeySource::File(PathBuf::from(jwks)), NullSink)
            .issuer(iss)
            .audience(aud)
            .build()
            .map_err(|e| usage(format!("--jwks: {e}")))?;
        runtime()?.block_on(verifier.verify(token))
    };
    let claims = claims.map_err(|e| CliError::Invalid(e.to_string()))?;
    if let Some(scope) = require
        && !claims.scopes().allows(scope)
    {
        return Err(CliError::Invalid(
            mcpsec_tokens::Error::InsufficientScope.to_string(),
        ));
    }
    Ok(Value::Object(claims.payload().clone()))
}

type Verified = Result<mcpsec_tokens::VerifiedClaims, mcpsec_tokens::Error>;

/// Fetches the JWKS from `url` (HTTPS; plain HTTP only to loopback) and verifies. A fetch
/// failure is an input error (exit 2); a bad token an invalid one (exit 1).
fn verify_remote(url: &str, iss: &str, aud: &str, token: &str) -> Result<Verified, CliError> {
    runtime()?.block_on(async {
        let remote = Arc::new(
            mcpsec_tokens::RemoteJwks::builder(url)
                .build()
                .map_err(|e| usage(format!("--jwks: {e}")))?,
        );
        remote
            .keys()
            .await
            .map_err(|e| usage(format!("--jwks: {e}")))?;
        let verifier = TokenVerifier::builder(KeySource::Remote(Arc::clone(&remote)), NullSink)
            .issuer(iss)
            .audience(aud)
            .build()
            .map_err(|e| usage(format!("--jwks: {e}")))?;
        Ok(mcpsec_tokens::verify_with_remote(&verifier, &remote, token).await)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the runtime: {e}")))
}

/// Decodes header and claims without verifying anything, for `token inspect`.
pub fn inspect(token: &str) -> Result<Value, CliError> {
    let token = token.trim();
    if token.len() > mcpsec_tokens::DEFAULT_MAX_TOKEN_LEN {
        return Err(usage("token larger than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(usage("not a compact JWS (three dot-separated parts)"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, CliError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| usage(format!("{what} is not base64url")))?;
        serde_json::from_slice(&bytes).map_err(|_| usage(format!("{what} is not JSON")))
    };
    Ok(json!({
        "verified": false,
        "warning": "UNVERIFIED: neither the signature nor any claim was checked",
        "header": decode(header, "header")?,
        "claims": decode(claims, "claims")?,
    }))
}
