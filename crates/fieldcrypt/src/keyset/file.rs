//! The keyset file on disk: its JSON shape, its MAC, reading and atomic writing, and the
//! generation watermark beside it (see the parent module's "Rollback").

use crate::provider::{KeyPurpose, WrapContext};
use crate::{Category, Error};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcpsec_core::SecretBytes;
use mcpsec_core::hmac::{Domain, MacInput, MacKey};
use mcpsec_core::secret_file::{Existing, write_secret_file};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) const FORMAT: &str = "mcpsec-keyset-v1";
/// The largest keyset file read.
pub const MAX_KEYSET_FILE: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysetFile {
    pub(super) format: String,
    pub(super) key_provider: String,
    /// The key of `mac`, wrapped by the provider.
    pub(super) integrity_key: String,
    pub(super) categories: BTreeMap<String, CategoryFile>,
    /// Raised by every write; a file older than one already seen is refused. Absent (0)
    /// in files written before generations existed, so their MAC still verifies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) generation: u64,
    /// HMAC-SHA256 over the rest of the file: edits made without the master key (rolling
    /// back a primary or minimum version, resetting counts) are refused.
    pub(super) mac: String,
}

const MAC_DOMAIN: Domain = Domain::new("mcpsec-keyset-mac-v1");

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl KeysetFile {
    /// The file with what changes on every reservation (counts, generation, tag) cleared:
    /// two files equal under this hold the same keys, versions and provider.
    pub(super) fn keys_only(&self) -> Self {
        let mut copy = self.clone();
        copy.generation = 0;
        copy.mac = String::new();
        for category in copy.categories.values_mut() {
            for version in &mut category.versions {
                version.reserved = 0;
            }
        }
        copy
    }
}

pub(super) fn integrity_context() -> Result<WrapContext, Error> {
    Ok(WrapContext {
        category: Category::new("keyset")?,
        version: 0,
        purpose: KeyPurpose::Integrity,
    })
}

/// The MAC input: the file without its tag, as JSON (the one and last field, unframed).
fn compute_mac(file: &KeysetFile, key: &SecretBytes) -> Result<MacInput, Error> {
    let mut unsigned = file.clone();
    unsigned.mac = String::new();
    let bytes = serde_json::to_vec(&unsigned).map_err(|_| Error::Keyset("encoding"))?;
    let mac = MacKey::new(key.expose_secret()).map_err(|_| Error::Keyset("integrity key"))?;
    Ok(mac.input(MAC_DOMAIN).raw(&bytes))
}

pub(super) fn sign(file: &mut KeysetFile, key: &SecretBytes) -> Result<(), Error> {
    let tag = compute_mac(file, key)?.tag();
    file.mac = STANDARD.encode(tag);
    Ok(())
}

pub(super) fn check_mac(file: &KeysetFile, key: &SecretBytes) -> Result<(), Error> {
    let tag = STANDARD
        .decode(&file.mac)
        .map_err(|_| Error::Keyset("the integrity tag is not base64"))?;
    // Compared in constant time.
    if compute_mac(file, key)?.verify(&tag) {
        Ok(())
    } else {
        Err(Error::Keyset(
            "the file was changed without the master key (integrity check failed)",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CategoryFile {
    pub(super) primary: u32,
    pub(super) min_decrypt: u32,
    pub(super) index_key: String,
    pub(super) versions: Vec<VersionFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionFile {
    pub(super) version: u32,
    pub(super) created: u64,
    /// Empty once the version is destroyed.
    pub(super) wrapped: String,
    pub(super) reserved: u64,
    /// When the key was destroyed ([`LocalKeyset::destroy_version`]): the record stays so
    /// the version number is never handed out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) destroyed: Option<u64>,
}

/// Parses and checks the structure of a keyset document (not its MAC).
pub(super) fn parse_keyset(bytes: &[u8]) -> Result<KeysetFile, Error> {
    if bytes.len() as u64 > MAX_KEYSET_FILE {
        return Err(Error::TooLarge("keyset file"));
    }
    let file: KeysetFile =
        serde_json::from_slice(bytes).map_err(|_| Error::Keyset("not a keyset file"))?;
    if file.format != FORMAT {
        return Err(Error::Keyset("unknown keyset format"));
    }
    if file.categories.is_empty() {
        return Err(Error::Keyset("no categories"));
    }
    for (name, category) in &file.categories {
        Category::new(name).map_err(|_| Error::Keyset("category name"))?;
        if category.min_decrypt == 0
            || category
                .versions
                .iter()
                .any(|v| v.destroyed.is_some() && v.version >= category.min_decrypt)
            || category.min_decrypt > category.primary
            || !category
                .versions
                .iter()
                .any(|v| v.version == category.primary)
        {
            return Err(Error::Keyset("inconsistent versions"));
        }
    }
    Ok(file)
}

/// The document as stored: pretty JSON and a final newline.
pub(super) fn encode_keyset(file: &KeysetFile) -> Result<Vec<u8>, Error> {
    let mut bytes = serde_json::to_vec_pretty(file).map_err(|_| Error::Keyset("encoding"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn watermark_path(keyset: &Path) -> PathBuf {
    let mut name = keyset.as_os_str().to_owned();
    name.push(".generation");
    PathBuf::from(name)
}

/// The newest generation written to the keyset, as recorded beside it; 0 when there is
/// no watermark (a keyset from before watermarks, or one whose watermark was deleted).
pub(super) fn read_watermark(keyset: &Path) -> Result<u64, Error> {
    use std::io::Read;
    let mut text = String::new();
    match std::fs::File::open(watermark_path(keyset)) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error.into()),
        Ok(file) => {
            file.take(32)
                .read_to_string(&mut text)
                .map_err(|_| Error::Keyset("the generation watermark is not a number"))?;
        }
    }
    // Unreadable is not "absent": refuse rather than skip the rollback check.
    text.trim()
        .parse()
        .map_err(|_| Error::Keyset("the generation watermark is not a number"))
}

pub(super) fn write_watermark(keyset: &Path, generation: u64) -> Result<(), Error> {
    write_bytes_private(
        &watermark_path(keyset),
        format!("{generation}\n").as_bytes(),
        false,
    )
}

pub(super) fn check_generation(found: u64, seen: u64) -> Result<(), Error> {
    if found < seen {
        return Err(Error::Rollback { seen, found });
    }
    Ok(())
}

/// The workspace's one atomic 0600 writer (temporary file, fsync, link or rename, fsync of
/// the directory).
pub(super) fn write_bytes_private(
    path: &Path,
    bytes: &[u8],
    create_only: bool,
) -> Result<(), Error> {
    let existing = if create_only {
        Existing::Refuse
    } else {
        Existing::Replace
    };
    write_secret_file(path, bytes, existing)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_from_before_generations_keep_their_mac() {
        // A file written before the `generation` field existed has none; it must parse as
        // generation 0 and serialise (for the MAC) exactly as it was written.
        let key = SecretBytes::new(vec![7; 32]);
        let mut file = KeysetFile {
            format: FORMAT.to_owned(),
            key_provider: "local:0011".to_owned(),
            integrity_key: String::new(),
            categories: BTreeMap::new(),
            generation: 0,
            mac: String::new(),
        };
        sign(&mut file, &key).unwrap();
        let text = serde_json::to_string(&file).unwrap();
        assert!(!text.contains("generation"), "{text}");
        let read: KeysetFile = serde_json::from_str(&text).unwrap();
        assert_eq!(read.generation, 0);
        check_mac(&read, &key).unwrap();
        // And once written with a generation, it is covered.
        let mut newer = read.clone();
        newer.generation = 3;
        sign(&mut newer, &key).unwrap();
        let mut rolled = newer.clone();
        rolled.generation = 2;
        assert!(check_mac(&rolled, &key).is_err());
    }
}
