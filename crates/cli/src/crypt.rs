//! `mcpsec crypt keygen|encrypt|decrypt|rotate|info`: field encryption from the shell.
//!
//! Every command that touches keys takes the master key from `MCPSEC_MASTER_KEY` (base64
//! of 32 bytes) or `--master-key-file FILE`, and refuses to run without one. The master
//! key file may not sit in the keyset's directory.

use crate::tokens::CliError;
use mcpsec_core::{NullSink, SealContext, SealContextSyntaxError, SystemClock};
use mcpsec_fieldcrypt::format::{self, Header, MAX_TEXT};
use mcpsec_fieldcrypt::{
    Category, CategoryInfo, FieldCrypt, KeyProvider, LocalKeyset, LocalMasterKey, NonceBudget,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The categories `crypt keygen` creates when none is named.
pub const DEFAULT_CATEGORIES: [&str; 3] = ["oauth_tokens", "totp_secrets", "pii"];

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| usage(format!("cannot start the runtime: {e}")))
}

/// The master key: `--master-key-file` if given, else `MCPSEC_MASTER_KEY`; an error if
/// neither, or if the file sits beside the keyset.
pub fn master_key(file: Option<&Path>, keyset: &Path) -> Result<Arc<dyn KeyProvider>, CliError> {
    let key = match file {
        Some(file) => {
            mcpsec_fieldcrypt::check_master_key_location(keyset, file)
                .map_err(|e| usage(e.to_string()))?;
            LocalMasterKey::from_file(file).map_err(|e| usage(format!("master key file: {e}")))?
        }
        None => {
            if std::env::var_os(mcpsec_fieldcrypt::MASTER_KEY_ENV).is_none() {
                return Err(usage(
                    "no master key: set MCPSEC_MASTER_KEY (base64 of 32 bytes) or pass \
                     --master-key-file FILE",
                ));
            }
            LocalMasterKey::from_env().map_err(|e| usage(e.to_string()))?
        }
    };
    Ok(Arc::new(key))
}

/// `crypt info` reads no key, but like every `crypt` command it refuses to run without a
/// valid master key, so scripts behave the same whichever command they call.
pub fn require_master_key(file: Option<&Path>) -> Result<(), CliError> {
    match file {
        Some(file) => LocalMasterKey::from_file(file)
            .map(drop)
            .map_err(|e| usage(format!("master key file: {e}"))),
        None => master_key(None, Path::new(".")).map(drop),
    }
}

/// Parses `table=T,column=C,row=R[,tenant=X]` for `category` ([`SealContext::parse`]).
pub fn parse_context(category: &str, text: &str) -> Result<SealContext, CliError> {
    SealContext::parse(category, text).map_err(|e| match e {
        SealContextSyntaxError::Missing => usage("--context needs table=, column= and row="),
        other => usage(format!("--context: {other}")),
    })
}

fn category(name: &str) -> Result<Category, CliError> {
    Category::new(name).map_err(|e| usage(format!("--category: {e}")))
}

/// `crypt keygen`: a new keyset file (mode 0600) with version 1 of each category.
pub fn keygen(
    out: &Path,
    categories: &[String],
    master_key_file: Option<&Path>,
) -> Result<Vec<CategoryInfo>, CliError> {
    let provider = master_key(master_key_file, out)?;
    let names: Vec<&str> = if categories.is_empty() {
        DEFAULT_CATEGORIES.to_vec()
    } else {
        categories.iter().map(String::as_str).collect()
    };
    let categories = names
        .into_iter()
        .map(category)
        .collect::<Result<Vec<_>, _>>()?;
    let keyset = runtime()?
        .block_on(LocalKeyset::create(
            out.to_path_buf(),
            provider,
            &categories,
            Arc::new(SystemClock),
        ))
        .map_err(|e| usage(format!("{}: {e}", out.display())))?;
    Ok(keyset.info())
}

/// Opens a keyset and its [`FieldCrypt`]. The CLI reserves nonces one at a time, so each
/// invocation counts exactly what it used.
fn open(
    keyset: &Path,
    master_key_file: Option<&Path>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Arc<LocalKeyset>, FieldCrypt), CliError> {
    let provider = master_key(master_key_file, keyset)?;
    let set = Arc::new(
        runtime
            .block_on(LocalKeyset::open(
                PathBuf::from(keyset),
                provider,
                Arc::new(SystemClock),
            ))
            .map_err(|e| usage(format!("{}: {e}", keyset.display())))?,
    );
    let budget = NonceBudget {
        reserve_block: 1,
        ..NonceBudget::default()
    };
    // An operator's one-off command has no audit log to write to: no events, by name.
    let builder = FieldCrypt::builder(NullSink).nonce_budget(budget);
    let crypt = runtime
        .block_on(set.field_crypt(builder))
        .map_err(|e| usage(format!("{}: {e}", keyset.display())))?;
    Ok((set, crypt))
}

/// Reads all of standard input, up to `cap` bytes.
pub fn read_stdin(cap: usize) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let mut buffer = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buffer)
        .map_err(|e| usage(format!("reading standard input: {e}")))?;
    if buffer.len() > cap {
        return Err(usage(format!("standard input is larger than {cap} bytes")));
    }
    Ok(buffer)
}

/// `crypt encrypt`: the text form of `plaintext` for the category and context.
pub fn encrypt(
    keyset: &Path,
    master_key_file: Option<&Path>,
    category_name: &str,
    context: &str,
    plaintext: &[u8],
) -> Result<String, CliError> {
    let context = parse_context(category(category_name)?.as_str(), context)?;
    let runtime = runtime()?;
    let (_set, crypt) = open(keyset, master_key_file, &runtime)?;
    crypt
        .encrypt_text(plaintext, &context)
        .map_err(|e| usage(e.to_string()))
}

/// `crypt decrypt`: the plaintext of a text-form (or binary) ciphertext. Every failure is
/// [`CliError::Invalid`] (exit 1): nothing is written.
pub fn decrypt(
    keyset: &Path,
    master_key_file: Option<&Path>,
    context: &str,
    input: &[u8],
) -> Result<mcpsec_core::SecretBytes, CliError> {
    let invalid = |e: CliError| match e {
        CliError::Usage(reason) | CliError::Invalid(reason) => CliError::Invalid(reason),
    };
    // The keys first: without them nothing about the input is worth reporting.
    let runtime = runtime().map_err(invalid)?;
    let (_set, crypt) = open(keyset, master_key_file, &runtime).map_err(invalid)?;
    let ciphertext = binary_form(input).map_err(invalid)?;
    let header = format::inspect(&ciphertext).map_err(|e| CliError::Invalid(e.to_string()))?;
    let context = parse_context(header.category.as_str(), context).map_err(invalid)?;
    runtime
        .block_on(crypt.decrypt(&ciphertext, &context))
        .map_err(|e| CliError::Invalid(e.to_string()))
}

fn binary_form(input: &[u8]) -> Result<Vec<u8>, CliError> {
    let trimmed = input.trim_ascii();
    if trimmed.starts_with(format::TEXT_PREFIX.as_bytes()) {
        let text = std::str::from_utf8(trimmed).map_err(|_| usage("the text form is ASCII"))?;
        format::from_text(text).map_err(|e| CliError::Invalid(e.to_string()))
    } else {
        Ok(input.to_vec())
    }
}

/// `crypt rotate`: adds a version to the category and makes it primary. Returns the new
/// version.
pub fn rotate(
    keyset: &Path,
    master_key_file: Option<&Path>,
    category_name: &str,
) -> Result<u32, CliError> {
    let category = category(category_name)?;
    let provider = master_key(master_key_file, keyset)?;
    let runtime = runtime()?;
    let set = runtime
        .block_on(LocalKeyset::open(
            PathBuf::from(keyset),
            provider,
            Arc::new(SystemClock),
        ))
        .map_err(|e| usage(format!("{}: {e}", keyset.display())))?;
    let (version, _event) = runtime
        .block_on(set.rotate(&category, None))
        .map_err(|e| usage(e.to_string()))?;
    Ok(version)
}

/// `crypt rekey`: re-wraps every key of the keyset under the master key in
/// `new_master_key_file`. Returns the new key id (`local:<fingerprint>`).
pub fn rekey(
    keyset: &Path,
    master_key_file: Option<&Path>,
    new_master_key_file: &Path,
) -> Result<String, CliError> {
    let provider = master_key(master_key_file, keyset)?;
    let new_provider = master_key(Some(new_master_key_file), keyset)?;
    if new_provider.key_id() == provider.key_id() {
        return Err(usage("the new master key is the current one"));
    }
    let runtime = runtime()?;
    let set = runtime
        .block_on(LocalKeyset::open(
            PathBuf::from(keyset),
            provider,
            Arc::new(SystemClock),
        ))
        .map_err(|e| usage(format!("{}: {e}", keyset.display())))?;
    let id = new_provider.key_id();
    runtime
        .block_on(set.rekey(new_provider))
        .map_err(|e| usage(e.to_string()))?;
    Ok(id)
}

/// `crypt info`: the header of a ciphertext (text or binary form), without any key.
pub fn info(input: &[u8]) -> Result<Header, CliError> {
    if input.len() > MAX_TEXT {
        return Err(CliError::Invalid(
            "input is larger than any ciphertext".into(),
        ));
    }
    let ciphertext = binary_form(input)?;
    format::inspect(&ciphertext).map_err(|e| CliError::Invalid(e.to_string()))
}

/// Writes `crypt info`'s answer, one `name: value` per line or one JSON object.
pub fn write_info(header: &Header, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let io = |e: std::io::Error| usage(format!("writing the answer: {e}"));
    // The key id tells two keys that were given the same version number apart.
    let key_id = header.key_id.map(|id| {
        id.iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    });
    if json {
        let value = serde_json::json!({
            "format_version": header.version,
            "category": header.category.as_str(),
            "key_version": header.key_version,
            "subject_keyed": header.subject_keyed,
            "key_id": key_id,
        });
        writeln!(out, "{value}").map_err(io)
    } else {
        writeln!(
            out,
            "format_version: {}\ncategory: {}\nkey_version: {}\nsubject_keyed: {}\nkey_id: {}",
            header.version,
            header.category,
            header.key_version,
            header.subject_keyed,
            key_id.as_deref().unwrap_or("none")
        )
        .map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_parse_strictly() {
        let context = parse_context("pii", "table=users,column=email,row=42,tenant=acme").unwrap();
        assert_eq!(context.tenant(), Some("acme"));
        for bad in [
            "",
            "table=users",
            "table=users,column=email",
            "table=users,column=email,row=1,row=2",
            "table=users,column=email,row=1,colour=red",
            "table=users,column=email,row=",
            "table users",
        ] {
            assert!(parse_context("pii", bad).is_err(), "{bad:?}");
        }
    }
}
