//! The password hash formats the store may hold (docs/http-api.md §7.5): argon2 PHC strings (what
//! authgate writes), and what a Flask app wrote — bcrypt (`$2a$`, `$2b$`, `$2y$`, as
//! flask-bcrypt writes) and werkzeug's `pbkdf2:sha256:ITER$SALT$HEX` and `scrypt:N:r:p$SALT$HEX`.
//!
//! Owns parsing them (at import and at a password check), verifying a password against each
//! with the RustCrypto crates (digests compared in constant time), the memory a verification
//! takes (so the bounded hashing queue can count scrypt's), and whether a hash should be
//! replaced by argon2id with the configured parameters. Pure CPU work: callers run it on the
//! blocking pool. Bounds on the parameters refuse a stored hash that would take minutes or
//! gigabytes to check.

use argon2::password_hash::PasswordVerifier as _;
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use subtle::ConstantTimeEq;

/// Highest bcrypt cost accepted (2^20 rounds: seconds per check already).
const MAX_BCRYPT_COST: u32 = 20;
/// Most PBKDF2 iterations accepted (werkzeug 3.1 writes 1,000,000).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Most memory one scrypt check may take, in KiB (werkzeug's default takes 32 MiB).
const MAX_SCRYPT_KIB: u64 = 1024 * 1024;
/// Length of werkzeug's scrypt output (hashlib's default `dklen`).
const SCRYPT_LEN: usize = 64;

/// A stored password hash, parsed.
#[derive(Debug, Clone)]
pub enum StoredHash {
    /// A PHC string: argon2 (any variant and parameters), or another algorithm that fails to
    /// verify. Boxed: it is by far the largest variant.
    Argon2(Box<PasswordHash>),
    /// A bcrypt string, verified by the `bcrypt` crate.
    Bcrypt(String),
    /// werkzeug `pbkdf2:HASH:ITER$SALT$HEX`.
    Pbkdf2 {
        /// SHA-256 or SHA-512.
        digest: Pbkdf2Digest,
        /// PBKDF2 rounds.
        iterations: u32,
        /// The salt as written (werkzeug uses the text's bytes).
        salt: String,
        /// The derived key.
        expected: Vec<u8>,
    },
    /// werkzeug `scrypt:N:r:p$SALT$HEX`.
    Scrypt {
        /// The scrypt parameters (N as its base-2 logarithm).
        params: scrypt::Params,
        /// N·r·128 bytes, in KiB: the memory one check takes.
        memory_kib: u64,
        /// The salt as written.
        salt: String,
        /// The derived key (64 bytes).
        expected: Vec<u8>,
    },
}

/// The HMAC digest of a werkzeug PBKDF2 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf2Digest {
    /// `pbkdf2:sha256`.
    Sha256,
    /// `pbkdf2:sha512`.
    Sha512,
}

impl StoredHash {
    /// Parses a stored hash; the error says what is wrong, never quoting the hash.
    pub fn parse(text: &str) -> Result<StoredHash, &'static str> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            let cost = text
                .get(4..6)
                .and_then(|c| c.parse::<u32>().ok())
                .ok_or("not a valid bcrypt string")?;
            if !(4..=MAX_BCRYPT_COST).contains(&cost) || text.len() != 60 {
                return Err("not a valid bcrypt string (cost 4-20, 60 characters)");
            }
            return Ok(StoredHash::Bcrypt(text.to_owned()));
        }
        if text.starts_with('$') {
            // A PHC string: argon2 verifies it, refusing (as a failure to verify, not a
            // mismatch) one of another algorithm. `authgate user import` takes argon2 only.
            return PasswordHash::new(text)
                .map(|phc| StoredHash::Argon2(Box::new(phc)))
                .map_err(|_| "not a valid PHC string");
        }
        let (method, rest) = text
            .split_once('$')
            .ok_or("not a known password hash format")?;
        let (salt, hex_digest) = rest
            .split_once('$')
            .ok_or("a werkzeug hash needs METHOD$SALT$HEX")?;
        if salt.is_empty() {
            return Err("a werkzeug hash needs a salt");
        }
        let expected = hex::decode(hex_digest).map_err(|_| "the digest is not hex")?;
        let mut fields = method.split(':');
        match fields.next() {
            Some("pbkdf2") => {
                let digest = match fields.next() {
                    Some("sha256") => Pbkdf2Digest::Sha256,
                    Some("sha512") => Pbkdf2Digest::Sha512,
                    _ => return Err("pbkdf2 needs sha256 or sha512"),
                };
                let iterations = fields
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n))
                    .ok_or("pbkdf2 needs an iteration count of 1 to 10000000")?;
                let len = match digest {
                    Pbkdf2Digest::Sha256 => 32,
                    Pbkdf2Digest::Sha512 => 64,
                };
                if fields.next().is_some() || expected.len() != len {
                    return Err("not a werkzeug pbkdf2 hash");
                }
                Ok(StoredHash::Pbkdf2 {
                    digest,
                    iterations,
                    salt: salt.to_owned(),
                    expected,
                })
            }
            Some("scrypt") => {
                let mut number = || fields.next().and_then(|n| n.parse::<u64>().ok());
                let (Some(n), Some(r), Some(p)) = (number(), number(), number()) else {
                    return Err("scrypt needs N:r:p");
                };
                if !n.is_power_of_two() || n < 2 || expected.len() != SCRYPT_LEN {
                    return Err("not a werkzeug scrypt hash (N a power of two, 64-byte digest)");
                }
                let memory_kib = n
                    .checked_mul(r)
                    .and_then(|nr| nr.checked_mul(128))
                    .map(|bytes| bytes / 1024)
                    .filter(|kib| *kib <= MAX_SCRYPT_KIB)
                    .ok_or("scrypt parameters need more than 1 GiB")?;
                let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| "scrypt N too large")?;
                let (r, p) = (
                    u32::try_from(r).map_err(|_| "scrypt r too large")?,
                    u32::try_from(p).map_err(|_| "scrypt p too large")?,
                );
                if p > 16 {
                    return Err("scrypt p above 16");
                }
                let params =
                    scrypt::Params::new(log_n, r, p).map_err(|_| "invalid scrypt parameters")?;
                Ok(StoredHash::Scrypt {
                    params,
                    memory_kib,
                    salt: salt.to_owned(),
                    expected,
                })
            }
            _ => Err("not a known password hash format"),
        }
    }

    /// Whether `password` matches. A mismatch is `Ok(false)`; `Err` means the hash could
    /// not be checked at all (its text says why, without the hash).
    pub fn verify(&self, password: &[u8]) -> Result<bool, String> {
        match self {
            StoredHash::Argon2(phc) => {
                // The parameters come from the hash itself.
                match Argon2::default().verify_password(password, phc.as_ref()) {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                    Err(e) => Err(format!("argon2 verify: {e}")),
                }
            }
            // Truncating at 72 bytes, as bcrypt always has: a hash written by an older
            // flask-bcrypt from a longer password still matches what its owner types.
            StoredHash::Bcrypt(text) => {
                bcrypt::verify(password, text).map_err(|e| format!("bcrypt verify: {e}"))
            }
            StoredHash::Pbkdf2 {
                digest,
                iterations,
                salt,
                expected,
            } => {
                let mut out = vec![0u8; expected.len()];
                match digest {
                    Pbkdf2Digest::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                        password,
                        salt.as_bytes(),
                        *iterations,
                        &mut out,
                    ),
                    Pbkdf2Digest::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
                        password,
                        salt.as_bytes(),
                        *iterations,
                        &mut out,
                    ),
                }
                Ok(out.ct_eq(expected).into())
            }
            StoredHash::Scrypt {
                params,
                salt,
                expected,
                ..
            } => {
                let mut out = vec![0u8; expected.len()];
                scrypt::scrypt(password, salt.as_bytes(), params, &mut out)
                    .map_err(|e| format!("scrypt: {e}"))?;
                Ok(out.ct_eq(expected).into())
            }
        }
    }

    /// The memory one check takes, in KiB (what counts against the hashing queue).
    pub fn memory_kib(&self) -> u64 {
        match self {
            StoredHash::Argon2(phc) => phc.params.get_decimal("m").map_or(0, u64::from),
            StoredHash::Scrypt { memory_kib, .. } => *memory_kib,
            StoredHash::Bcrypt(_) | StoredHash::Pbkdf2 { .. } => 4,
        }
    }

    /// Whether this is a scheme authgate verifies: argon2, bcrypt, werkzeug PBKDF2 or scrypt
    /// (a PHC string of another algorithm parses, but never verifies).
    pub fn is_supported(&self) -> bool {
        match self {
            StoredHash::Argon2(phc) => phc.algorithm.as_str().starts_with("argon2"),
            _ => true,
        }
    }

    /// Whether the hash is anything but argon2id (v1.3) with exactly `params`: such a hash is
    /// replaced at the owner's next successful password check.
    pub fn needs_rehash(&self, params: &Params) -> bool {
        let StoredHash::Argon2(phc) = self else {
            return true;
        };
        let same = phc.algorithm.as_str() == Algorithm::Argon2id.as_str()
            && phc.version == Some(Version::V0x13.into())
            && Params::try_from(phc.as_ref()).is_ok_and(|p| {
                p.m_cost() == params.m_cost()
                    && p.t_cost() == params.t_cost()
                    && p.p_cost() == params.p_cost()
            });
        !same
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Written by werkzeug 3.1's `generate_password_hash("correct horse", "pbkdf2:sha256:1000")`
    /// and `("correct horse", "scrypt:1024:8:1")`, with salt `saltsalt`, computed here the
    /// same way (hashlib's pbkdf2_hmac and scrypt, dklen = digest size and 64).
    fn werkzeug(method: &str) -> String {
        let salt = "saltsalt";
        let mut out = vec![0u8; 64];
        let digest = match method {
            "pbkdf2:sha256:1000" => {
                out.truncate(32);
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                    b"correct horse",
                    salt.as_bytes(),
                    1000,
                    &mut out,
                );
                hex::encode(&out)
            }
            _ => {
                let params = scrypt::Params::new(10, 8, 1).unwrap();
                scrypt::scrypt(b"correct horse", salt.as_bytes(), &params, &mut out).unwrap();
                hex::encode(&out)
            }
        };
        format!("{method}${salt}${digest}")
    }

    #[test]
    fn werkzeug_hashes_verify_and_need_a_rehash() {
        let params = Params::default();
        for method in ["pbkdf2:sha256:1000", "scrypt:1024:8:1"] {
            let stored = StoredHash::parse(&werkzeug(method)).unwrap();
            assert!(stored.verify(b"correct horse").unwrap(), "{method}");
            assert!(!stored.verify(b"correct horsE").unwrap(), "{method}");
            assert!(stored.needs_rehash(&params));
        }
        let scrypt = StoredHash::parse(&werkzeug("scrypt:1024:8:1")).unwrap();
        assert_eq!(scrypt.memory_kib(), 1024);
    }

    #[test]
    fn bcrypt_hashes_of_every_prefix_verify() {
        let hash = bcrypt::hash_with_result("pw-pw-pw", 4).unwrap();
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let text = hash.format_for_version(version);
            let stored = StoredHash::parse(&text).unwrap();
            assert!(stored.verify(b"pw-pw-pw").unwrap());
            assert!(!stored.verify(b"pw-pw-pX").unwrap());
        }
    }

    #[test]
    fn argon2id_with_the_configured_parameters_needs_no_rehash() {
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(1024, 1, 1, None).unwrap();
        let ours = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let phc = ours.hash_password(b"pw").unwrap().to_string();
        let stored = StoredHash::parse(&phc).unwrap();
        assert!(stored.verify(b"pw").unwrap());
        assert!(!stored.needs_rehash(&params));
        let stronger = Params::new(2048, 1, 1, None).unwrap();
        assert!(
            stored.needs_rehash(&stronger),
            "older parameters are upgraded"
        );
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params.clone());
        let phc = argon2i.hash_password(b"pw").unwrap().to_string();
        assert!(StoredHash::parse(&phc).unwrap().needs_rehash(&params));
    }

    #[test]
    fn malformed_and_oversized_hashes_are_refused() {
        for bad in [
            "",
            "plaintext",
            "pbkdf2:sha256$salt$00",
            "pbkdf2:md5:1000$salt$00",
            "pbkdf2:sha256:1000$salt$zz",
            "scrypt:1000:8:1$salt$00",
            "scrypt:1073741824:8:1$salt$00",
            "$2b$31$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            "$argon2id$nonsense",
        ] {
            assert!(StoredHash::parse(bad).is_err(), "{bad:?}");
        }
        let other_phc =
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(!StoredHash::parse(other_phc).unwrap().is_supported());
    }
}
