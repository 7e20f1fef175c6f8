//! PKCS#8 private keys as PEM text (`-----BEGIN PRIVATE KEY-----`), one codec for every
//! crate that stores a private key in a file.
//!
//! Every intermediate buffer that holds key material (the base64 body, the DER bytes) is
//! zeroized when dropped, and both directions return secret types, so a key is never left
//! behind in a plain `String` or `Vec`.

use crate::{SecretBytes, SecretString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Largest PEM document accepted (a 4096-bit RSA PKCS#8 key is about 3.3 KiB).
pub const MAX_PEM_LEN: usize = 16 * 1024;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why PEM text was refused. Never carries any of the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// Longer than [`MAX_PEM_LEN`].
    #[error("PEM larger than 16 KiB")]
    TooLarge,
    /// No `-----BEGIN PRIVATE KEY-----` line (another PEM type, or not PEM at all).
    #[error("expected a PKCS#8 PRIVATE KEY PEM")]
    NotPkcs8,
    /// A BEGIN line without its END line.
    #[error("PEM has no END line")]
    NoEnd,
    /// The body between the lines is not base64, or is empty.
    #[error("PEM body is not base64")]
    BadBody,
}

/// Encodes PKCS#8 DER as PEM: the BEGIN line, base64 in 64-column lines, the END line,
/// each ending in `\n`. The result is a secret: write it with mode 0600 and never print it.
pub fn encode_pkcs8_pem(der: &[u8]) -> SecretString {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    let mut rest: &str = &body;
    while !rest.is_empty() {
        // base64 output is ASCII, so every byte offset is a char boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(PEM_END);
    out.push('\n');
    SecretString::new(out)
}

/// Decodes the first PKCS#8 `PRIVATE KEY` block of `pem` to its DER bytes.
///
/// Text before the BEGIN line and after the END line is ignored (as OpenSSL does), and
/// whitespace inside the body is skipped. The DER is not parsed here: the caller's key
/// parser decides whether it is a key of the kind it wants.
pub fn decode_pkcs8_pem(pem: &str) -> Result<SecretBytes, PemError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(PemError::TooLarge);
    }
    let start = pem.find(PEM_BEGIN).ok_or(PemError::NotPkcs8)?;
    let rest = pem.get(start + PEM_BEGIN.len()..).unwrap_or_default();
    let end = rest.find(PEM_END).ok_or(PemError::NoEnd)?;
    let body: Zeroizing<String> = Zeroizing::new(
        rest.get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    if body.is_empty() {
        return Err(PemError::BadBody);
    }
    STANDARD
        .decode(body.as_bytes())
        .map(SecretBytes::new)
        .map_err(|_| PemError::BadBody)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_bytes_and_wraps_at_64() {
        for len in [0usize, 1, 47, 48, 49, 1218] {
            let der: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let pem = encode_pkcs8_pem(&der);
            let text = pem.expose_secret();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(text.ends_with("-----END PRIVATE KEY-----\n"));
            assert!(text.lines().all(|l| l.len() <= 64));
            if len > 0 {
                assert_eq!(decode_pkcs8_pem(text).unwrap().expose_secret(), &der[..]);
            }
        }
    }

    #[test]
    fn known_answer_ed25519_pkcs8() {
        // RFC 8410 section 10.3: an Ed25519 private key in PKCS#8 v1.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let der = decode_pkcs8_pem(pem).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der.expose_secret()[..2], [0x30, 0x2e]);
        assert_eq!(encode_pkcs8_pem(der.expose_secret()).expose_secret(), pem);
    }

    #[test]
    fn surrounding_text_and_inner_whitespace_are_tolerated() {
        let pem = "Bag Attributes\n-----BEGIN PRIVATE KEY-----\r\n AAEC\r\nAw==\n-----END PRIVATE KEY-----\ntrailer";
        assert_eq!(
            decode_pkcs8_pem(pem).unwrap().expose_secret(),
            &[0, 1, 2, 3]
        );
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(
            decode_pkcs8_pem(&"A".repeat(MAX_PEM_LEN + 1)).unwrap_err(),
            PemError::TooLarge
        );
        assert_eq!(
            decode_pkcs8_pem(
                "-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----"
            )
            .unwrap_err(),
            PemError::NotPkcs8
        );
        assert_eq!(
            decode_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err(),
            PemError::NoEnd
        );
        assert_eq!(
            decode_pkcs8_pem("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            PemError::BadBody
        );
        assert_eq!(
            decode_pkcs8_pem("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----").unwrap_err(),
            PemError::BadBody
        );
    }

    #[test]
    fn errors_never_echo_the_body() {
        let err =
            decode_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0!\n-----END PRIVATE KEY-----")
                .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("c2VjcmV0"));
    }
}
