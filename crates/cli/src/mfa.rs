//! `mcpsec totp enroll|code|verify` and `mcpsec recovery generate`.
//!
//! TOTP secrets and codes are secrets: they are read into buffers that are zeroized when
//! dropped, input sizes are capped, and errors never repeat them. They are printed only by
//! the commands whose purpose is to print them (`totp enroll`, `totp code`,
//! `recovery generate`).

use crate::tokens::{self, CliError};
use mcpsec_core::{Clock, SecretString, SystemClock};
use mcpsec_mfa::{CODES_PER_SET, EnrollmentQr, TotpConfig, TotpSecret};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// Most bytes read for a TOTP secret (from standard input).
pub const MAX_SECRET_INPUT: usize = 1024;
/// The latest time `--at` accepts: 9999-12-31T23:59:59Z.
pub const MAX_UNIX_SECONDS: u64 = 253_402_300_799;
/// Pixels per module in the `--qr-png` image.
pub const QR_PNG_SCALE: u32 = 8;

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// A fresh TOTP enrollment: the base32 secret and its `otpauth://` URI, shown once.
#[derive(Debug)]
pub struct Enrollment {
    secret: SecretString,
    uri: SecretString,
}

/// What `totp enroll --json` prints: exactly `secret` and `uri`.
#[derive(serde::Serialize)]
struct EnrollmentJson<'a> {
    secret: &'a str,
    uri: &'a str,
}

impl Enrollment {
    /// The base32 secret, for manual entry.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The `otpauth://totp/…` URI (it contains the secret).
    pub fn uri(&self) -> &SecretString {
        &self.uri
    }

    /// `secret: …` and `uri: …`, one per line.
    pub fn write_text(&self, out: &mut impl Write) -> Result<(), CliError> {
        writeln!(
            out,
            "secret: {}\nuri: {}",
            self.secret.expose_secret(),
            self.uri.expose_secret()
        )
        .map_err(|e| usage(format!("cannot write the secret: {e}")))
    }

    /// The URI as a QR code for the terminal (black on white, with its quiet zone).
    pub fn write_qr(&self, out: &mut impl Write) -> Result<(), CliError> {
        let qr = EnrollmentQr::encode(&self.uri)
            .map_err(|e| usage(format!("cannot render the QR code: {e}")))?;
        out.write_all(qr.to_terminal().expose_secret().as_bytes())
            .map_err(|e| usage(format!("cannot write the QR code: {e}")))
    }

    /// Writes the URI as a PNG QR code ([`QR_PNG_SCALE`] pixels per module) to a new
    /// file `path` with mode 0600; an existing file is never overwritten.
    pub fn write_qr_png(&self, path: &Path) -> Result<(), CliError> {
        let png = EnrollmentQr::encode(&self.uri)
            .and_then(|qr| qr.to_png(QR_PNG_SCALE))
            .map_err(|e| usage(format!("cannot render the QR code: {e}")))?;
        tokens::write_private(path, png.expose_secret())
    }

    /// One JSON object `{secret, uri}` and a newline.
    pub fn write_json(&self, out: &mut impl Write) -> Result<(), CliError> {
        let json = EnrollmentJson {
            secret: self.secret.expose_secret(),
            uri: self.uri.expose_secret(),
        };
        serde_json::to_writer(&mut *out, &json)
            .map_err(|e| usage(format!("cannot write the secret: {e}")))?;
        writeln!(out).map_err(|e| usage(format!("cannot write the secret: {e}")))
    }
}

/// Prints `enrollment` to `out`: JSON, or text (with the terminal QR code when `qr`), then
/// flushes, so a failed write (a closed pipe, a full disk) is reported here.
pub fn print_enrollment(
    enrollment: &Enrollment,
    json: bool,
    qr: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if json {
        enrollment.write_json(out)?;
    } else {
        enrollment.write_text(out)?;
        if qr {
            enrollment.write_qr(out)?;
        }
    }
    out.flush()
        .map_err(|e| usage(format!("cannot write the secret: {e}")))
}

/// A new 160-bit secret and its URI for `account` at `issuer` (default parameters:
/// SHA-1, 6 digits, 30 s).
pub fn enroll(account: &str, issuer: &str) -> Result<Enrollment, CliError> {
    let secret =
        TotpSecret::generate().map_err(|e| usage(format!("cannot generate a secret: {e}")))?;
    let uri = secret
        .otpauth_uri(TotpConfig::default(), issuer, account)
        .map_err(|e| usage(format!("cannot build the otpauth URI: {e}")))?;
    Ok(Enrollment {
        secret: secret.to_base32(),
        uri,
    })
}

/// Reads the `--secret` argument (`-` reads standard input, at most
/// [`MAX_SECRET_INPUT`] bytes) and parses it as base32 (padding, spaces and case ignored).
/// A secret that cannot be read or parsed is an input error (exit 2); it is never
/// repeated.
pub fn read_secret(arg: String) -> Result<TotpSecret, CliError> {
    let text = Zeroizing::new(if arg == "-" {
        tokens::read_input("-", MAX_SECRET_INPUT)?
    } else {
        arg
    });
    TotpSecret::from_base32(&text).map_err(|_| {
        usage("--secret: not a TOTP secret (base32 text of 16 to 128 bytes)".to_owned())
    })
}

/// `at`, or the current time in Unix seconds.
fn time_or_now(at: Option<u64>) -> u64 {
    at.unwrap_or_else(|| SystemClock.unix_seconds())
}

/// The code for the step containing `at` (default: now).
pub fn code(secret: &TotpSecret, at: Option<u64>) -> Result<SecretString, CliError> {
    secret
        .code_at(TotpConfig::default(), time_or_now(at))
        .map_err(|e| usage(format!("cannot compute the code: {e}")))
}

/// Checks `code` at `at` (default: now) within ±1 step, without replay protection.
/// `Invalid` (exit 1) when it is wrong or malformed, with the reason but never the code.
pub fn verify(secret: &TotpSecret, code: &str, at: Option<u64>) -> Result<(), CliError> {
    let code = Zeroizing::new(code.to_owned());
    match secret.check_at(TotpConfig::default(), &code, time_or_now(at)) {
        Ok(_) => Ok(()),
        Err(
            e @ (mcpsec_mfa::Error::Malformed
            | mcpsec_mfa::Error::WrongLength { .. }
            | mcpsec_mfa::Error::WrongCode),
        ) => Err(CliError::Invalid(e.to_string())),
        Err(e) => Err(usage(format!("cannot check the code: {e}"))),
    }
}

/// `count` fresh recovery codes (1 to [`CODES_PER_SET`]), each `xxxxx-xxxxx-xxxxx-xxxxx`
/// in Crockford base32, from the library's generator ([`mcpsec_mfa::generate_codes`]), so
/// the format is exactly the library's; nothing is stored.
pub fn recovery_codes(count: usize) -> Result<Vec<SecretString>, CliError> {
    if !(1..=CODES_PER_SET).contains(&count) {
        return Err(usage(format!(
            "--count: between 1 and {CODES_PER_SET} (a set is {CODES_PER_SET} codes)"
        )));
    }
    mcpsec_mfa::generate_codes(count)
        .map_err(|e| usage(format!("cannot generate recovery codes: {e}")))
}

/// Writes `codes` one per line, or as one JSON array of strings (and a newline).
pub fn write_codes(
    codes: &[SecretString],
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let failed = |e: &dyn std::fmt::Display| usage(format!("cannot write the codes: {e}"));
    if json {
        let texts: Vec<&str> = codes.iter().map(SecretString::expose_secret).collect();
        serde_json::to_writer(&mut *out, &texts).map_err(|e| failed(&e))?;
        writeln!(out).map_err(|e| failed(&e))
    } else {
        codes
            .iter()
            .try_for_each(|c| writeln!(out, "{}", c.expose_secret()))
            .map_err(|e| failed(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc_6238_vector_at_59() {
        let secret = read_secret(RFC_SECRET.to_owned()).unwrap();
        assert_eq!(code(&secret, Some(59)).unwrap().expose_secret(), "287082");
        assert!(verify(&secret, "287082", Some(59)).is_ok());
        assert!(matches!(
            verify(&secret, "287082", Some(59 + 90)),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(
            verify(&secret, "12a456", Some(59)),
            Err(CliError::Invalid(_))
        ));
        // Issue 18: an 8-digit code is invalid input (exit 1) that names the length.
        assert!(matches!(
            verify(&secret, "94287082", Some(59)),
            Err(CliError::Invalid(message)) if message == "the code must be 6 digits"
        ));
    }

    #[test]
    fn errors_never_hold_the_secret() {
        for bad in ["not base32!", "GEZDGNBV", ""] {
            match read_secret(bad.to_owned()) {
                Err(CliError::Usage(message)) => {
                    assert!(bad.is_empty() || !message.contains(bad));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn enrollment_json_has_exactly_two_fields() {
        let enrollment = enroll("ada@example.com", "mcpsec").unwrap();
        let mut out = Vec::new();
        enrollment.write_json(&mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let object = value.as_object().unwrap();
        let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["secret", "uri"]);
        assert_eq!(object["secret"], enrollment.secret().expose_secret());
    }

    #[test]
    fn recovery_counts() {
        assert_eq!(recovery_codes(1).unwrap().len(), 1);
        assert_eq!(recovery_codes(CODES_PER_SET).unwrap().len(), CODES_PER_SET);
        assert!(recovery_codes(0).is_err());
        assert!(recovery_codes(CODES_PER_SET + 1).is_err());
    }
}
