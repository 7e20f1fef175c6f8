//! The pepper file format: base64 text (standard alphabet, `=` padding optional,
//! surrounding whitespace ignored) of at least 32 bytes, the file at most
//! [`MAX_PEPPER_FILE`] bytes. `mcpsec apikey new-pepper` writes it (mode 0600); a service
//! reads it with [`Pepper::from_file`].
//!
//! The text is read into buffers zeroized on drop, and no error repeats any of it.

use crate::Pepper;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use mcpsec_core::{SecretBytes, SecretString};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Most bytes read from a pepper file.
pub const MAX_PEPPER_FILE: usize = 4096;
/// Least bytes a pepper decodes to.
pub const MIN_PEPPER_BYTES: usize = 32;

/// Standard alphabet; `=` padding optional.
const PEPPER_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why pepper text was refused. Never carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperTextError {
    /// Not UTF-8 base64 text.
    #[error("the pepper is not base64 text")]
    NotBase64,
    /// Decodes to fewer than [`MIN_PEPPER_BYTES`] bytes.
    #[error("a pepper is at least 32 bytes (this one has {0})")]
    TooShort(usize),
}

/// Why a pepper file could not be read. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PepperFileError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PEPPER_FILE`].
    #[error("{}: larger than {MAX_PEPPER_FILE} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file's text is not a pepper.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: PepperTextError,
    },
}

impl Pepper {
    /// Reads the pepper of `version` from a pepper file.
    pub fn from_file(path: &Path, version: u32) -> Result<Pepper, PepperFileError> {
        let read_error = |source| PepperFileError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // Reserved up front so that no growth leaves a copy of the text behind.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PEPPER_FILE + 1));
        file.take(MAX_PEPPER_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() > MAX_PEPPER_FILE {
            return Err(PepperFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| PepperFileError::Invalid {
            path: path.to_owned(),
            reason: PepperTextError::NotBase64,
        })?;
        Self::from_base64(version, text).map_err(|reason| PepperFileError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Decodes pepper text (the contents of a pepper file) for `version`.
    pub fn from_base64(version: u32, text: &str) -> Result<Pepper, PepperTextError> {
        let text = text.trim();
        let mut decoded = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
        let len = PEPPER_B64
            .decode_slice(text, &mut decoded)
            .map_err(|_| PepperTextError::NotBase64)?;
        decoded.truncate(len);
        if decoded.len() < MIN_PEPPER_BYTES {
            return Err(PepperTextError::TooShort(decoded.len()));
        }
        Pepper::new(version, SecretBytes::from_slice(&decoded))
            .map_err(|_| PepperTextError::TooShort(decoded.len()))
    }

    /// The pepper as the text of a pepper file: base64 and a newline. A secret: write it
    /// with mode 0600 (`mcpsec_core::secret_file`) and never print it.
    pub fn to_file_text(&self) -> SecretString {
        let mut text = String::with_capacity(self.key.len().div_ceil(3) * 4 + 1);
        STANDARD.encode_string(self.key.expose_secret(), &mut text);
        text.push('\n');
        SecretString::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(contents: &[u8]) -> PathBuf {
        let mut suffix = [0u8; 8];
        mcpsec_core::fill_random(&mut suffix).unwrap();
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("mcpsec-pepper-{hex}"));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn file_text_round_trips() {
        let pepper = Pepper::generate(3).unwrap();
        let text = pepper.to_file_text();
        assert!(text.expose_secret().ends_with('\n'));
        let path = scratch(text.expose_secret().as_bytes());
        let back = Pepper::from_file(&path, 3).unwrap();
        assert_eq!(back.version(), 3);
        assert_eq!(back.key, pepper.key);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn padding_and_whitespace_are_optional() {
        let key = [7u8; 32];
        let padded = STANDARD.encode(key);
        let bare = padded.trim_end_matches('=');
        for text in [padded.clone(), bare.to_owned(), format!("  {padded}\r\n")] {
            assert_eq!(
                Pepper::from_base64(1, &text).unwrap().key.expose_secret(),
                &key
            );
        }
    }

    #[test]
    fn refusals_never_echo_the_text() {
        assert_eq!(
            Pepper::from_base64(1, "not base64 at all!!").unwrap_err(),
            PepperTextError::NotBase64
        );
        assert_eq!(
            Pepper::from_base64(1, &STANDARD.encode([1u8; 31])).unwrap_err(),
            PepperTextError::TooShort(31)
        );
        let path = scratch(b"c2VjcmV0 is not a pepper");
        let err = Pepper::from_file(&path, 1).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(err.to_string().ends_with(": the pepper is not base64 text"));
        std::fs::remove_file(&path).unwrap();
        let path = scratch(&vec![b'A'; MAX_PEPPER_FILE + 1]);
        assert!(matches!(
            Pepper::from_file(&path, 1),
            Err(PepperFileError::TooLarge { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        let missing = std::env::temp_dir().join("mcpsec-pepper-missing-file");
        assert!(matches!(
            Pepper::from_file(&missing, 1),
            Err(PepperFileError::Read { .. })
        ));
    }
}
