//! A directory of signing keys, as `mcpsec keys generate` writes it and a server's
//! `--keys DIR` reads it:
//!
//! - `<kid>.pem`: one PKCS#8 PEM private key per `kid`, mode 0600, never overwritten;
//! - `jwks.json`: the public halves of every key in the directory, as a JWK set;
//! - `.jwks.lock`: present while a generation runs, so concurrent runs on one directory
//!   do not lose each other's public keys. A crashed run leaves it behind; it is removed
//!   by hand after checking no run is in progress.
//!
//! A generation either completes (private key written and its public key in `jwks.json`)
//! or leaves the directory as it was: if the JWK set cannot be updated, the new private
//! key is removed again, so a retry starts clean.

use crate::jwk::{JwkSet, MAX_JWKS_LEN};
use crate::keys::{RsaBits, SigningKey, generate_pem};
use crate::{Algorithm, Error};
use mcpsec_core::KeyId;
use mcpsec_core::secret_file::{Existing, write_secret_file};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The JWK set file's name inside a key directory.
pub const JWKS_FILE: &str = "jwks.json";
/// The lock file's name inside a key directory.
pub const LOCK_FILE: &str = ".jwks.lock";
/// Largest private key file read (a 4096-bit RSA PKCS#8 key is about 3.3 KiB).
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Why a key directory operation failed. Paths are shown; key material never is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDirError {
    /// The directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another generation holds the lock (or one crashed and left it).
    #[error("{} exists: another `keys generate` is running (or crashed; remove it)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The JWK set file or a private key file is not valid.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: Error,
    },
    /// The `kid` is already in the JWK set.
    #[error("kid {kid} is already in {}", path.display())]
    KidTaken {
        /// The `kid`.
        kid: KeyId,
        /// The JWK set file.
        path: PathBuf,
    },
    /// Generating or encoding the key failed.
    #[error("{0}")]
    Key(Error),
    /// The private key file exists already (or its directory cannot hold a new file).
    #[error("cannot create {} (it must not exist): {source}", path.display())]
    CreateKey {
        /// The private key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written; nothing was left half-written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What [`KeyDir::generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GeneratedKey {
    /// The key id.
    pub kid: String,
    /// The algorithm.
    pub alg: &'static str,
    /// The private key file (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The JWK set file the public key was added to.
    pub jwks: PathBuf,
}

/// A key directory (see the module documentation for its layout).
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory at `dir` (not touched until used).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The JWK set file.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    /// The private key file of `kid`.
    pub fn key_path(&self, kid: &KeyId) -> PathBuf {
        self.dir.join(format!("{kid}.pem"))
    }

    /// Generates a key for `alg` (RSA of `rsa_bits` for RS256) into `<kid>.pem` and adds its
    /// public half to `jwks.json`, keeping the keys already there. Creates the directory
    /// if needed; holds the lock file while it runs.
    pub fn generate(
        &self,
        alg: Algorithm,
        kid: &KeyId,
        rsa_bits: RsaBits,
    ) -> Result<GeneratedKey, KeyDirError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| KeyDirError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        let lock = self.dir.join(LOCK_FILE);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .map_err(|_| KeyDirError::Locked { path: lock.clone() })?;
        let result = self.generate_locked(alg, kid, rsa_bits);
        let _ = std::fs::remove_file(&lock);
        result
    }

    fn generate_locked(
        &self,
        alg: Algorithm,
        kid: &KeyId,
        rsa_bits: RsaBits,
    ) -> Result<GeneratedKey, KeyDirError> {
        let jwks_path = self.jwks_path();
        let mut jwks = if jwks_path.exists() {
            self.read_jwks()?
        } else {
            JwkSet::default()
        };
        if jwks
            .keys
            .iter()
            .any(|k| k.kid.as_deref() == Some(kid.as_str()))
        {
            return Err(KeyDirError::KidTaken {
                kid: kid.clone(),
                path: jwks_path,
            });
        }
        let pem = generate_pem(alg, rsa_bits).map_err(KeyDirError::Key)?;
        let key = SigningKey::from_pkcs8_pem(kid.clone(), alg, pem.expose_secret())
            .map_err(KeyDirError::Key)?;
        let key_path = self.key_path(kid);
        write_secret_file(&key_path, pem.expose_secret().as_bytes(), Existing::Refuse).map_err(
            |source| match source.kind() {
                ErrorKind::AlreadyExists | ErrorKind::NotFound | ErrorKind::PermissionDenied => {
                    KeyDirError::CreateKey {
                        path: key_path.clone(),
                        source,
                    }
                }
                _ => KeyDirError::Write {
                    path: key_path.clone(),
                    source,
                },
            },
        )?;
        jwks.keys.push(key.public_jwk());
        // The JWK set is public: an ordinary file, replaced whole by a rename.
        let tmp = self
            .dir
            .join(format!(".{JWKS_FILE}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, format!("{}\n", jwks.to_json()))
            .and_then(|()| std::fs::rename(&tmp, &jwks_path));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&key_path);
            return Err(KeyDirError::Write {
                path: jwks_path,
                source,
            });
        }
        Ok(GeneratedKey {
            kid: kid.to_string(),
            alg: alg.as_str(),
            private_key: key_path,
            jwks: jwks_path,
        })
    }

    /// Reads and strictly parses `jwks.json`.
    pub fn read_jwks(&self) -> Result<JwkSet, KeyDirError> {
        let path = self.jwks_path();
        let bytes = read_capped(
            &path,
            MAX_JWKS_LEN as u64,
            Error::Key(crate::KeyError::InvalidSet("larger than 64 KiB")),
        )?;
        JwkSet::parse(&bytes).map_err(|source| KeyDirError::Invalid { path, source })
    }

    /// Reads the private key of `kid` for `alg`, as a server signing with this directory
    /// does.
    pub fn signing_key(&self, kid: &KeyId, alg: Algorithm) -> Result<SigningKey, KeyDirError> {
        let path = self.key_path(kid);
        let bytes = Zeroizing::new(read_capped(
            &path,
            MAX_KEY_FILE,
            Error::Key(crate::KeyError::Invalid("PEM larger than 16 KiB")),
        )?);
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyDirError::Invalid {
            path: path.clone(),
            source: Error::Key(crate::KeyError::Invalid("the key file is not text")),
        })?;
        SigningKey::from_pkcs8_pem(kid.clone(), alg, text)
            .map_err(|source| KeyDirError::Invalid { path, source })
    }
}

/// Reads at most `cap` bytes of `path`; a longer file is refused as too large.
fn read_capped(path: &Path, cap: u64, too_large: Error) -> Result<Vec<u8>, KeyDirError> {
    use std::io::Read;
    let read_error = |source| KeyDirError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > cap {
        return Err(KeyDirError::Invalid {
            path: path.to_owned(),
            source: too_large,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let mut suffix = [0u8; 8];
        mcpsec_core::fill_random(&mut suffix).unwrap();
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("mcpsec-keydir-{name}-{hex}"))
    }

    #[test]
    fn generate_writes_a_0600_key_and_its_public_half() {
        let dir = KeyDir::new(scratch("gen"));
        let kid = KeyId::new("k1").unwrap();
        let generated = dir
            .generate(Algorithm::ES256, &kid, RsaBits::B2048)
            .unwrap();
        assert_eq!(generated.private_key, dir.key_path(&kid));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&generated.private_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = dir.signing_key(&kid, Algorithm::ES256).unwrap();
        let jwks = dir.read_jwks().unwrap();
        assert_eq!(jwks.keys, vec![key.public_jwk()]);
        assert!(!dir.dir.join(LOCK_FILE).exists(), "the lock is released");

        let second = KeyId::new("k2").unwrap();
        dir.generate(Algorithm::EdDSA, &second, RsaBits::B2048)
            .unwrap();
        assert_eq!(
            dir.read_jwks().unwrap().keys.len(),
            2,
            "earlier keys are kept"
        );
        std::fs::remove_dir_all(&dir.dir).unwrap();
    }

    #[test]
    fn a_taken_kid_or_a_held_lock_changes_nothing() {
        let dir = KeyDir::new(scratch("taken"));
        let kid = KeyId::new("k1").unwrap();
        dir.generate(Algorithm::EdDSA, &kid, RsaBits::B2048)
            .unwrap();
        let before = std::fs::read(dir.key_path(&kid)).unwrap();
        let jwks_before = std::fs::read(dir.jwks_path()).unwrap();
        assert!(matches!(
            dir.generate(Algorithm::EdDSA, &kid, RsaBits::B2048),
            Err(KeyDirError::KidTaken { .. })
        ));
        std::fs::write(dir.dir.join(LOCK_FILE), b"").unwrap();
        let other = KeyId::new("k2").unwrap();
        let locked = dir.generate(Algorithm::EdDSA, &other, RsaBits::B2048);
        assert!(matches!(locked, Err(KeyDirError::Locked { .. })));
        assert!(!dir.key_path(&other).exists());
        assert!(
            dir.dir.join(LOCK_FILE).exists(),
            "another run's lock is not removed"
        );
        assert_eq!(std::fs::read(dir.key_path(&kid)).unwrap(), before);
        assert_eq!(std::fs::read(dir.jwks_path()).unwrap(), jwks_before);
        std::fs::remove_dir_all(&dir.dir).unwrap();
    }

    #[test]
    fn a_failed_jwks_update_removes_the_new_private_key() {
        let dir = KeyDir::new(scratch("fail"));
        std::fs::create_dir_all(&dir.dir).unwrap();
        // The JWK set's temporary file is taken by a directory: the update fails after the
        // private key was written.
        let tmp = dir
            .dir
            .join(format!(".{JWKS_FILE}.{}.tmp", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        let kid = KeyId::new("k1").unwrap();
        let err = dir
            .generate(Algorithm::EdDSA, &kid, RsaBits::B2048)
            .unwrap_err();
        assert!(matches!(err, KeyDirError::Write { .. }), "{err}");
        assert!(!dir.jwks_path().exists());
        assert!(!dir.key_path(&kid).exists(), "no orphan private key");
        std::fs::remove_dir_all(&dir.dir).unwrap();
    }

    #[test]
    fn errors_name_paths_never_keys() {
        let dir = KeyDir::new(scratch("err"));
        let kid = KeyId::new("k1").unwrap();
        let err = dir.signing_key(&kid, Algorithm::EdDSA).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "));
        std::fs::create_dir_all(&dir.dir).unwrap();
        std::fs::write(
            dir.key_path(&kid),
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = dir.signing_key(&kid, Algorithm::EdDSA).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        std::fs::remove_dir_all(&dir.dir).unwrap();
    }
}
