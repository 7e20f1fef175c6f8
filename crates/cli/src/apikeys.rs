//! `mcpsec apikey generate|inspect|hash|verify|new-pepper`.
//!
//! Keys and peppers are secrets: they are read into buffers that are zeroized when
//! dropped, never echoed in output or errors, and input sizes are capped. Only the public
//! parts of a key (its env, id and the four-character hint from the checksum) are ever
//! printed, except by `generate`, whose whole point is to print the new key once.

use crate::tokens::CliError;
use mcpsec_apikeys::{Env, HashMode, KeyHasher, ParsedKey, Pepper, format};
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Most bytes read for a key (from standard input).
pub const MAX_KEY_INPUT: usize = 4096;
pub use mcpsec_apikeys::MAX_PEPPER_FILE;
/// Bytes of randomness in a pepper written by `new-pepper`.
pub const NEW_PEPPER_BYTES: usize = mcpsec_apikeys::MIN_PEPPER_BYTES;

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// The public parts of a key: what `inspect` prints and what `generate --json` adds to the
/// key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// `live` or `test`.
    pub env: &'static str,
    /// The public id.
    pub id: String,
    /// The last four characters (part of the checksum, so they reveal nothing secret).
    pub hint: String,
}

impl KeyInfo {
    /// The public parts of `key`.
    pub fn of(key: &ParsedKey) -> Self {
        Self {
            env: key.env().as_str(),
            id: key.id().to_string(),
            hint: key.hint(),
        }
    }

    /// `env: …`, `id: …`, `hint: …`, one per line.
    pub fn to_text(&self) -> String {
        format!("env: {}\nid: {}\nhint: {}\n", self.env, self.id, self.hint)
    }
}

/// What `generate --json` prints: exactly `key`, `id`, `env`, `hint`.
#[derive(serde::Serialize)]
struct GeneratedJson<'a> {
    key: &'a str,
    id: &'a str,
    env: &'a str,
    hint: &'a str,
}

/// A new key for `env`.
pub fn generate(env: Env) -> Result<ParsedKey, CliError> {
    format::generate(env).map_err(|e| usage(format!("cannot generate a key: {e}")))
}

/// Writes `key` as one JSON object `{key, id, env, hint}` and a newline to `out`.
pub fn write_generated_json(key: &ParsedKey, out: &mut impl Write) -> Result<(), CliError> {
    let info = KeyInfo::of(key);
    let json = GeneratedJson {
        key: key.expose_secret(),
        id: &info.id,
        env: info.env,
        hint: &info.hint,
    };
    serde_json::to_writer(&mut *out, &json)
        .map_err(|e| usage(format!("cannot write the key: {e}")))?;
    writeln!(out).map_err(|e| usage(format!("cannot write the key: {e}")))
}

/// Reads `limit + 1` bytes at most into a buffer zeroized on drop, so that no growth
/// leaves a copy behind; more than `limit` bytes is an input error.
fn read_capped(
    reader: impl Read,
    limit: usize,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let mut buffer = Zeroizing::new(Vec::with_capacity(limit.saturating_add(1)));
    reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buffer)
        .map_err(|e| usage(format!("cannot read {what}: {e}")))?;
    if buffer.len() > limit {
        return Err(usage(format!("{what}: larger than {limit} bytes")));
    }
    Ok(buffer)
}

/// Reads the key argument (`-` reads standard input, at most [`MAX_KEY_INPUT`] bytes) and
/// parses it, ignoring surrounding whitespace. The outer error is an input error (exit 2);
/// the inner one is the library's verdict on the key (malformed or bad checksum).
pub fn read_key(arg: String) -> Result<Result<ParsedKey, mcpsec_apikeys::Error>, CliError> {
    let bytes = if arg == "-" {
        read_capped(std::io::stdin().lock(), MAX_KEY_INPUT, "standard input")?
    } else {
        Zeroizing::new(arg.into_bytes())
    };
    Ok(std::str::from_utf8(&bytes)
        .map_err(|_| mcpsec_apikeys::Error::Malformed)
        .and_then(|text| format::parse(text.trim())))
}

/// The public parts of the key argument. A key that is not well-formed is `Invalid`
/// (exit 1) with the library's reason; the key itself is never repeated.
pub fn inspect(arg: String) -> Result<KeyInfo, CliError> {
    let key = read_key(arg)?.map_err(|e| CliError::Invalid(e.to_string()))?;
    Ok(KeyInfo::of(&key))
}

/// Reads a pepper file ([`Pepper::from_file`]: base64 text of at least 32 bytes, the file
/// at most [`MAX_PEPPER_FILE`] bytes). Errors name the file, never its contents.
pub fn read_pepper(path: &Path, version: u32) -> Result<Pepper, CliError> {
    Pepper::from_file(path, version).map_err(|e| usage(e.to_string()))
}

/// The stored-hash string for the key argument: HMAC-SHA256 under the pepper, or Argon2id
/// with the default parameters when `argon2`. A key that is not well-formed is an input
/// error here (exit 2): there is nothing to hash.
pub fn hash(
    key_arg: String,
    pepper_file: &Path,
    pepper_version: u32,
    argon2: bool,
) -> Result<String, CliError> {
    let key = read_key(key_arg)?.map_err(|e| usage(e.to_string()))?;
    let pepper = read_pepper(pepper_file, pepper_version)?;
    let mode = if argon2 {
        HashMode::Argon2id(mcpsec_apikeys::Argon2Params::default())
    } else {
        HashMode::HmacSha256
    };
    let hasher = KeyHasher::new(pepper, vec![], mode).map_err(|e| usage(e.to_string()))?;
    hasher.hash(&key).map_err(|e| usage(e.to_string()))
}

/// The pepper version a stored hash names: the `v{N}` after the scheme; bcrypt hashes
/// (`$2…`) use no pepper, so any version does (1).
pub fn stored_version(stored: &str) -> Result<u32, CliError> {
    if stored.starts_with("$2") {
        return Ok(1);
    }
    stored
        .split('$')
        .nth(1)
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| usage("--hash: unrecognised stored hash"))
}

/// Whether the key argument matches `stored` under the pepper in `pepper_file` (with the
/// version the hash names). `Ok(false)` when it does not; `Invalid` (exit 1) when the key
/// is not well-formed, so it cannot match; `Usage` (exit 2) when the hash string cannot be
/// understood, whatever the key.
pub fn verify(key_arg: String, pepper_file: &Path, stored: &str) -> Result<bool, CliError> {
    let version = stored_version(stored)?;
    let pepper = read_pepper(pepper_file, version)?;
    let hasher =
        KeyHasher::new(pepper, vec![], HashMode::HmacSha256).map_err(|e| usage(e.to_string()))?;
    let bad_hash = |e: mcpsec_apikeys::Error| usage(format!("--hash: {e}"));
    match read_key(key_arg)? {
        Ok(key) => hasher
            .check(&key, stored)
            .map(|check| check.matched)
            .map_err(bad_hash),
        Err(reason) => {
            // The key cannot match, but an unparsable hash is still a usage error: check
            // the hash string against a throwaway key to tell the two apart.
            let throwaway = generate(Env::Live)?;
            hasher.check(&throwaway, stored).map_err(bad_hash)?;
            Err(CliError::Invalid(reason.to_string()))
        }
    }
}

/// Writes a fresh pepper ([`NEW_PEPPER_BYTES`] random bytes) in the pepper file format
/// ([`Pepper::to_file_text`]) to a new file `path`, mode 0600, refusing to overwrite. If
/// the write fails, nothing is left under `path`.
pub fn new_pepper(path: &Path) -> Result<(), CliError> {
    let pepper =
        Pepper::generate(1).map_err(|e| usage(format!("cannot generate a pepper: {e}")))?;
    crate::tokens::write_private(path, pepper.to_file_text().expose_secret().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_version_reads_the_v_field() {
        assert_eq!(stored_version("hmac-sha256$v7$abc").unwrap(), 7);
        assert_eq!(stored_version("argon2id$v2$m=1,t=1,p=1$a$b").unwrap(), 2);
        assert_eq!(stored_version("$2b$10$abcdef").unwrap(), 1);
        for junk in ["", "garbage", "hmac-sha256$7$abc", "hmac-sha256$vx$abc"] {
            assert!(matches!(stored_version(junk), Err(CliError::Usage(_))));
        }
    }

    #[test]
    fn key_info_holds_only_public_parts() {
        let key = format::generate(Env::Test).unwrap();
        let info = KeyInfo::of(&key);
        assert_eq!(info.env, "test");
        assert_eq!(info.id, key.id().to_string());
        let text = info.to_text();
        assert!(!text.contains(key.expose_secret()));
        assert!(text.starts_with("env: test\nid: "));
    }

    #[test]
    fn generated_json_has_exactly_four_fields() {
        let key = format::generate(Env::Live).unwrap();
        let mut out = Vec::new();
        write_generated_json(&key, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let object = value.as_object().unwrap();
        let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["env", "hint", "id", "key"]);
        assert_eq!(object["key"], key.expose_secret());
    }
}
