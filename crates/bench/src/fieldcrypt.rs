//! Benchmark rows for mcpsec-fieldcrypt.
//!
//! Every row's baseline is raw RustCrypto `aes-gcm` (`Aes256Gcm::encrypt` / `decrypt`, key
//! expanded once) on the same plaintext size, with a fresh 96-bit nonce from the OS
//! generator per encryption, as any correct use of random nonces needs. The aws-lc rows
//! keep that same baseline, so their ratio is the speed-up over RustCrypto.

use crate::Row;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use mcpsec_core::{NullSink, SealContext, SecretBytes};
use mcpsec_fieldcrypt::{
    Category, CryptoProvider, Error, FieldCrypt, KeyVersion, KeyringSpec, NonceBudget,
};
use std::hint::black_box;

/// The associated data length fieldcrypt binds for the benchmark's context, so the
/// baseline authenticates as many bytes.
const CONTEXT: (&str, &str, &str, &str) = ("pii", "users", "email", "user-1234567890");

fn crypt(provider: CryptoProvider) -> Result<FieldCrypt, Error> {
    FieldCrypt::builder(NullSink)
        .provider(provider)
        // Benchmarks encrypt far more than a real key version would: no budget limit.
        .nonce_budget(NonceBudget {
            warn_at: 1 << 32,
            refuse_at: 1 << 32,
            reserve_block: 1 << 30,
            first_block: 1 << 30,
        })
        .keyring(KeyringSpec {
            category: Category::new(CONTEXT.0)?,
            primary: 1,
            min_decrypt: 1,
            versions: vec![KeyVersion {
                version: 1,
                key: SecretBytes::random(32)?,
                reserved: 0,
            }],
            index_key: SecretBytes::random(32)?,
        })
        .build()
}

fn context() -> Result<SealContext, Error> {
    Ok(SealContext::new(
        CONTEXT.0, CONTEXT.1, CONTEXT.2, CONTEXT.3,
    )?)
}

fn raw_cipher() -> Result<Aes256Gcm, Error> {
    let key = SecretBytes::random(32)?;
    Aes256Gcm::new_from_slice(key.expose_secret()).map_err(|_| Error::InvalidArgument("key"))
}

fn fresh_nonce() -> [u8; 12] {
    let mut nonce = [0u8; 12];
    let _ = mcpsec_core::fill_random(&mut nonce);
    nonce
}

/// The associated data fieldcrypt builds for this context (domain, header, context), so
/// the baseline hashes as many bytes through GHASH.
fn aad_len() -> Result<usize, Error> {
    let header = 3 + CONTEXT.0.len() + 4;
    Ok(b"mcpsec-fieldcrypt-v1".len() + 4 + header + 4 + context()?.aad().len())
}

fn encrypt_row(name: &'static str, provider: CryptoProvider, size: usize) -> Result<Row, Error> {
    let crypt = crypt(provider)?;
    let context = context()?;
    let raw = raw_cipher()?;
    let aad = vec![7u8; aad_len()?];
    let plaintext = vec![0x42u8; size];
    let raw_plaintext = plaintext.clone();
    Ok(Row {
        name,
        baseline: "aes_gcm_encrypt",
        op: Box::new(move || {
            black_box(
                crypt
                    .encrypt(black_box(&plaintext), &context)
                    .map(|c| c.len())
                    .ok(),
            );
        }),
        base: Box::new(move || {
            let nonce = fresh_nonce();
            let payload = Payload {
                msg: black_box(&raw_plaintext),
                aad: &aad,
            };
            black_box(raw.encrypt(&nonce.into(), payload).map(|c| c.len()).ok());
        }),
    })
}

/// The output of a future that is ready on its first poll: `FieldCrypt::decrypt` with
/// the default (null) event sink never waits, and a benchmark loop has no runtime.
fn ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

fn decrypt_row(name: &'static str, provider: CryptoProvider, size: usize) -> Result<Row, Error> {
    let crypt = crypt(provider)?;
    let context = context()?;
    let plaintext = vec![0x42u8; size];
    let sealed = crypt.encrypt(&plaintext, &context)?;
    let raw = raw_cipher()?;
    let aad = vec![7u8; aad_len()?];
    let nonce = fresh_nonce();
    let raw_sealed = raw
        .encrypt(
            &nonce.into(),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::InvalidArgument("raw encrypt"))?;
    Ok(Row {
        name,
        baseline: "aes_gcm_decrypt",
        op: Box::new(move || {
            black_box(
                ready(crypt.decrypt(black_box(&sealed), &context))
                    .and_then(|opened| opened.map(|p| p.len()).ok()),
            );
        }),
        base: Box::new(move || {
            let payload = Payload {
                msg: black_box(&raw_sealed),
                aad: &aad,
            };
            // Plaintext from a decryption is secret: zeroized as fieldcrypt's is.
            let plaintext = raw
                .decrypt(&nonce.into(), payload)
                .map(zeroize::Zeroizing::new);
            black_box(plaintext.map(|p| p.len()).ok());
        }),
    })
}

/// `fieldcrypt.aead_aws_lc_1k`: the two backends' AEAD alone (1 KiB, one fixed nonce, no
/// header, no nonce generation): the best speed-up aws-lc can give on this machine, to
/// read the `_aws_lc` rows against.
fn raw_backend_row() -> Result<Row, Error> {
    use mcpsec_fieldcrypt::backend::{Aead, AwsLc, RustCrypto};
    let key = SecretBytes::random(32)?;
    let aws = AwsLc.prepare(&key)?;
    let rust = RustCrypto.prepare(&key)?;
    let nonce = [7u8; 12];
    let aad = vec![7u8; aad_len()?];
    let plaintext = vec![0x42u8; 1024];
    let (aad2, plaintext2) = (aad.clone(), plaintext.clone());
    Ok(Row {
        name: "fieldcrypt.aead_aws_lc_1k",
        baseline: "aead_rustcrypto_1k",
        op: Box::new(move || {
            let mut out = plaintext.clone();
            black_box(aws.seal_in_place(&nonce, &aad, &mut out, 0).is_ok());
            black_box(out.len());
        }),
        base: Box::new(move || {
            let mut out = plaintext2.clone();
            black_box(rust.seal_in_place(&nonce, &aad2, &mut out, 0).is_ok());
            black_box(out.len());
        }),
    })
}

/// The fieldcrypt rows: RustCrypto at 64 B, 1 KiB and 64 KiB each way, and aws-lc at
/// 1 KiB each way.
pub(crate) fn rows() -> Result<Vec<Row>, Error> {
    let rust = CryptoProvider::rust_crypto();
    let aws = CryptoProvider::aws_lc();
    Ok(vec![
        encrypt_row("fieldcrypt.encrypt_64", rust, 64)?,
        decrypt_row("fieldcrypt.decrypt_64", rust, 64)?,
        encrypt_row("fieldcrypt.encrypt_1k", rust, 1024)?,
        decrypt_row("fieldcrypt.decrypt_1k", rust, 1024)?,
        encrypt_row("fieldcrypt.encrypt_64k", rust, 64 * 1024)?,
        decrypt_row("fieldcrypt.decrypt_64k", rust, 64 * 1024)?,
        encrypt_row("fieldcrypt.encrypt_1k_aws_lc", aws, 1024)?,
        decrypt_row("fieldcrypt.decrypt_1k_aws_lc", aws, 1024)?,
        raw_backend_row()?,
    ])
}
