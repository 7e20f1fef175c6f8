//! Keyed pseudonyms for source addresses.
//!
//! Events are typed and cannot carry a secret, but a source address is personal data in
//! many jurisdictions. With a [`Pseudonymizer`] configured, a sink removes `source` from
//! each event and records `source_pseudonym` = the first 128 bits of
//! HMAC-SHA256(key, `"mcpsec-audit-source-v1"` ‖ family ‖ address bytes), in hex. The same
//! address gives the same pseudonym under one key, so detection rules and investigations
//! still correlate; without the key, the address cannot be recovered by trying all 2³²
//! IPv4 addresses, as it could from a plain hash.
//!
//! [`SecurityEvent`] has no user-agent field, so there is nothing else to pseudonymise.

use crate::Error;
use crate::record::Pseudonym;
use mcpsec_core::hmac::{Domain, MacKey};
use mcpsec_core::{SecretBytes, SecurityEvent};
use std::net::IpAddr;

/// Replaces source addresses by keyed pseudonyms. `Debug` never shows the key.
pub struct Pseudonymizer {
    key: MacKey,
}

/// A version tag, then the address family (4 or 6) and the address's octets (both fixed
/// length per family, so unframed).
const SOURCE_DOMAIN: Domain = Domain::new("mcpsec-audit-source-v1");

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer([REDACTED])")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer under `key`, which must be at least 32 bytes from a CSPRNG and
    /// kept secret (rotate it to unlink old pseudonyms from new ones).
    pub fn new(key: &SecretBytes) -> Result<Pseudonymizer, Error> {
        let key = MacKey::new(key.expose_secret())
            .map_err(|_| Error::Config("the pseudonymisation key must be at least 32 bytes"))?;
        Ok(Pseudonymizer { key })
    }

    /// The pseudonym of `address`.
    pub fn pseudonym(&self, address: IpAddr) -> Pseudonym {
        let input = self.key.input(SOURCE_DOMAIN);
        let input = match address {
            IpAddr::V4(a) => input.raw(&[4]).raw(&a.octets()),
            IpAddr::V6(a) => input.raw(&[6]).raw(&a.octets()),
        };
        Pseudonym::from_mac(&input.tag())
    }

    /// Takes the source out of `event` and returns its pseudonym.
    pub fn apply(&self, event: &mut SecurityEvent) -> Option<Pseudonym> {
        event.source.take().map(|a| self.pseudonym(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{EventKind, Outcome};
    use std::time::UNIX_EPOCH;

    /// Pseudonyms already in logs must keep matching new ones for the same address: this
    /// is the layout from before mcpsec-core's MacKey, computed independently with aws-lc.
    #[test]
    fn pseudonym_layout_is_unchanged() {
        let p = Pseudonymizer::new(&SecretBytes::from_slice(&[4; 32])).unwrap();
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[4; 32]);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let old = |family: u8, octets: &[u8]| {
            let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
            ctx.update(b"mcpsec-audit-source-v1");
            ctx.update(&[family]);
            ctx.update(octets);
            Pseudonym::from_mac(ctx.sign().as_ref())
        };
        assert_eq!(p.pseudonym(v4), old(4, &[192, 0, 2, 7]));
        let IpAddr::V6(a) = v6 else { unreachable!() };
        assert_eq!(p.pseudonym(v6), old(6, &a.octets()));
    }

    #[test]
    fn same_address_same_pseudonym_other_key_other_pseudonym() {
        let a = Pseudonymizer::new(&SecretBytes::random(32).unwrap()).unwrap();
        let b = Pseudonymizer::new(&SecretBytes::random(32).unwrap()).unwrap();
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(a.pseudonym(ip), a.pseudonym(ip));
        assert_ne!(a.pseudonym(ip), b.pseudonym(ip));
        assert_ne!(
            a.pseudonym(ip),
            a.pseudonym("198.51.100.5".parse().unwrap())
        );
        assert_eq!(a.pseudonym(ip).as_str().len(), Pseudonym::LEN);
        assert_eq!(format!("{a:?}"), "Pseudonymizer([REDACTED])");
    }

    #[test]
    fn apply_removes_the_address() {
        let p = Pseudonymizer::new(&SecretBytes::random(32).unwrap()).unwrap();
        let mut event = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, UNIX_EPOCH)
            .with_source("203.0.113.9".parse().unwrap());
        assert!(p.apply(&mut event).is_some());
        assert_eq!(event.source, None);
        assert!(Pseudonymizer::new(&SecretBytes::random(16).unwrap()).is_err());
    }
}
