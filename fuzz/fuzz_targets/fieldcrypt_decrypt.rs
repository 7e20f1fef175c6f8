//! Ciphertext parsing and decryption of arbitrary input (binary and text forms), through
//! both backends: never panics; a header that parses names a valid category and a
//! non-zero version; nothing but a real ciphertext decrypts; and a ciphertext made from
//! the input's bytes round-trips, with the two backends agreeing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_core::{NullSink, SealContext, SecretBytes};
use mcpsec_fieldcrypt::format::{self, Category};
use mcpsec_fieldcrypt::{CryptoProvider, FieldCrypt, KeyVersion, KeyringSpec};
use std::sync::OnceLock;

fn crypt(provider: CryptoProvider) -> FieldCrypt {
    FieldCrypt::builder(NullSink)
        .provider(provider)
        .keyring(KeyringSpec {
            category: Category::new("pii").unwrap(),
            primary: 2,
            min_decrypt: 1,
            versions: vec![
                KeyVersion {
                    version: 1,
                    key: SecretBytes::new(vec![1; 32]),
                    reserved: 0,
                },
                KeyVersion {
                    version: 2,
                    key: SecretBytes::new(vec![2; 32]),
                    reserved: 0,
                },
            ],
            index_key: SecretBytes::new(vec![3; 32]),
        })
        .build()
        .unwrap()
}

/// `decrypt` is async (a failure is recorded as an event); with the default null sink it is
/// ready on its first poll, so no runtime is needed.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the null sink waited"),
    }
}

fn crypts() -> &'static (FieldCrypt, FieldCrypt) {
    static CRYPTS: OnceLock<(FieldCrypt, FieldCrypt)> = OnceLock::new();
    CRYPTS.get_or_init(|| {
        (
            crypt(CryptoProvider::rust_crypto()),
            crypt(CryptoProvider::aws_lc()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > mcpsec_fieldcrypt::format::MAX_CIPHERTEXT {
        return;
    }
    let (rust, aws) = crypts();
    let context = SealContext::new("pii", "users", "email", "1").unwrap();
    if let Ok(header) = format::inspect(data) {
        assert!(header.key_version >= 1);
        assert!(Category::new(header.category.as_str()).is_ok());
    }
    // Arbitrary bytes never decrypt (forging a GCM tag is not something a fuzzer does).
    assert!(ready(rust.decrypt(data, &context)).is_err());
    assert!(ready(aws.decrypt(data, &context)).is_err());
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(ready(rust.decrypt_text(text, &context)).is_err());
    }
    // The input as a plaintext round-trips through either backend, both ways.
    if data.len() > mcpsec_fieldcrypt::format::MAX_PLAINTEXT {
        return;
    }
    let sealed = rust.encrypt(data, &context).unwrap();
    assert_eq!(
        ready(aws.decrypt(&sealed, &context))
            .unwrap()
            .expose_secret(),
        data
    );
    let text = aws.encrypt_text(data, &context).unwrap();
    assert_eq!(
        ready(rust.decrypt_text(&text, &context))
            .unwrap()
            .expose_secret(),
        data
    );
});
