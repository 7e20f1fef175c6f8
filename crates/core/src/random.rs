//! Randomness from the operating system's CSPRNG, and nothing else.

use crate::Error;
use rand::TryRng;
use rand::rngs::SysRng;

/// Fills `dest` from the operating system's CSPRNG (`getrandom`).
///
/// mcpsec never uses a user-space generator for secrets: a forked process or a restored VM
/// snapshot cannot make two hosts share a stream.
pub fn fill_random(dest: &mut [u8]) -> Result<(), Error> {
    SysRng
        .try_fill_bytes(dest)
        .map_err(|_| Error::RandomUnavailable)
}

/// `len` characters drawn uniformly from `alphabet` by rejection sampling (no modulo bias).
///
/// The alphabet must hold between 2 and 256 distinct-or-not bytes; callers pass constants.
pub(crate) fn random_from_alphabet(len: usize, alphabet: &[u8]) -> Result<Vec<u8>, Error> {
    let n = alphabet.len();
    if !(2..=256).contains(&n) {
        return Err(Error::InvalidArgument(
            "alphabet must hold 2 to 256 symbols",
        ));
    }
    // Accept bytes below the largest multiple of n that fits in a byte; reject the rest.
    let limit = 256 - (256 % n);
    let mut out = Vec::with_capacity(len);
    let mut pool = zeroize::Zeroizing::new([0u8; 64]);
    while out.len() < len {
        fill_random(pool.as_mut_slice())?;
        for &b in pool.iter() {
            if usize::from(b) < limit {
                if let Some(&symbol) = alphabet.get(usize::from(b) % n) {
                    out.push(symbol);
                }
                if out.len() == len {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn alphabet_sampling_is_roughly_uniform() {
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let sample = random_from_alphabet(62_000, alphabet).unwrap();
        let mut counts = [0u32; 256];
        for b in &sample {
            counts[usize::from(*b)] += 1;
        }
        for &c in alphabet {
            let count = counts[usize::from(c)];
            // Expected 1000 each; 6 standard deviations (~190) is far outside chance.
            assert!(
                (800..1200).contains(&count),
                "{} drawn {count} times",
                c as char
            );
        }
    }

    #[test]
    fn rejects_bad_alphabets() {
        assert!(random_from_alphabet(4, b"a").is_err());
        assert!(random_from_alphabet(4, &[0u8; 257]).is_err());
        assert_eq!(random_from_alphabet(0, b"ab").unwrap(), Vec::<u8>::new());
    }
}
