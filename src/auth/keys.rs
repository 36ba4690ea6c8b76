//! Key material for signing and verifying tokens, loaded once at start.
//!
//! Owns: reading the HS256 secret (from `AUTHGATE_JWT_SECRET` or `secret_file`, creating the file
//! with 64 random bytes and mode 0600 when allowed), parsing the private key and the rotation
//! public keys of the asymmetric algorithms, deriving each key's `kid` and public JWK.
//!
//! Key files are read and checked by ed25519-dalek, p256 and rsa (with pkcs8 and sec1), the
//! crates jsonwebtoken's `rust_crypto` backend signs and verifies with: no DER is parsed here.
//!
//! Invariants: every key in a [`Keys`] belongs to the configured algorithm and passed a parse of
//! its own; secrets never reach `Debug` output or error messages; `kid` is the RFC 7638 SHA-256
//! thumbprint for public keys and the first 16 hex digits of SHA-256 of the secret for HS256.
//! Keys never come from a token: the only lookup is `kid` into the in-memory list built here.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use sec1::DecodeEcPrivateKey;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, TokenAlgorithm, TokensConfig};

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Size of a secret file created on first start.
pub const CREATED_SECRET_BYTES: usize = 64;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Whether [`load_keys`] may create a missing HS256 secret file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLoad {
    /// `check-config`: read and check what exists, never create files.
    CheckOnly,
    /// A real start: create the secret file (and its folder) when it is missing.
    CreateMissing,
}

/// A verification key with its id and, for public keys, its JWK.
pub struct PublicKey {
    kid: String,
    decoding: DecodingKey,
    jwk: Option<Jwk>,
}

impl PublicKey {
    /// The key id carried in the `kid` header of tokens this key verifies.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key for `jsonwebtoken::decode`.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public JWK (with `kid`, `alg` and `use`), `None` for an HS256 secret.
    pub fn jwk(&self) -> Option<&Jwk> {
        self.jwk.as_ref()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An HS256 "public" key is the secret itself: print only the id.
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The signing key and its verification half.
pub struct SigningKey {
    encoding: EncodingKey,
    public: PublicKey,
}

impl SigningKey {
    /// The key for `jsonwebtoken::encode`.
    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The verification half (for HS256 the same secret).
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Everything [`load_keys`] found for `[tokens]`.
#[derive(Debug)]
pub struct Keys {
    algorithm: TokenAlgorithm,
    signing: Option<SigningKey>,
    verify_only: Vec<PublicKey>,
}

impl Keys {
    /// The algorithm these keys belong to.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// The signing key; `None` only after [`KeyLoad::CheckOnly`] found no HS256 secret file
    /// (valid for `check-config`: the first start creates it).
    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// True when a signing key is loaded and a `TokenService` can be built.
    pub fn is_loaded(&self) -> bool {
        self.signing.is_some()
    }

    /// The `verify_keys` of a rotation, in config order.
    pub fn verify_only(&self) -> &[PublicKey] {
        &self.verify_only
    }

    /// Splits into the signing key and the rotation keys.
    pub(crate) fn into_parts(self) -> (TokenAlgorithm, Option<SigningKey>, Vec<PublicKey>) {
        (self.algorithm, self.signing, self.verify_only)
    }
}

/// The jsonwebtoken algorithm for a configured one.
pub fn jwt_algorithm(algorithm: TokenAlgorithm) -> Algorithm {
    match algorithm {
        TokenAlgorithm::Hs256 => Algorithm::HS256,
        TokenAlgorithm::EdDsa => Algorithm::EdDSA,
        TokenAlgorithm::Es256 => Algorithm::ES256,
        TokenAlgorithm::Rs256 => Algorithm::RS256,
    }
}

/// Loads the keys of `[tokens]`.
///
/// HS256: `env_secret` (the raw bytes of `AUTHGATE_JWT_SECRET`, read by the caller) wins over
/// `secret_file`. A missing file is created under [`KeyLoad::CreateMissing`] and reported as
/// `Keys::signing() == None` under [`KeyLoad::CheckOnly`]. Asymmetric algorithms read
/// `private_key_file` and every `verify_keys` entry; nothing is ever created for them.
pub fn load_keys(
    cfg: &TokensConfig,
    config_file: &Path,
    env_secret: Option<Vec<u8>>,
    mode: KeyLoad,
) -> Result<Keys, ConfigError> {
    let signing = match cfg.algorithm {
        TokenAlgorithm::Hs256 => {
            if let Some(first) = cfg.verify_keys.first() {
                return Err(ConfigError::new(
                    config_file,
                    "tokens.verify_keys[0]",
                    Some(quoted(first)),
                    "is only for EdDSA, ES256 and RS256; HS256 has one shared secret",
                ));
            }
            load_secret(cfg, config_file, env_secret, mode)?
        }
        algorithm => Some(load_private_key(cfg, config_file, algorithm)?),
    };
    let verify_only = cfg
        .verify_keys
        .iter()
        .enumerate()
        .map(|(i, path)| load_verify_key(cfg.algorithm, config_file, i, path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keys {
        algorithm: cfg.algorithm,
        signing,
        verify_only,
    })
}

/// HS256: the secret from the environment or the file, `None` when check-only found no file.
fn load_secret(
    cfg: &TokensConfig,
    config_file: &Path,
    env_secret: Option<Vec<u8>>,
    mode: KeyLoad,
) -> Result<Option<SigningKey>, ConfigError> {
    if let Some(secret) = env_secret {
        let err =
            |reason: String| ConfigError::new(config_file, "AUTHGATE_JWT_SECRET", None, reason);
        check_secret_len(&secret).map_err(err)?;
        return Ok(Some(hmac_key(&secret)));
    }
    let path = &cfg.secret_file;
    let err = |reason: String| {
        ConfigError::new(
            config_file,
            "tokens.secret_file",
            Some(quoted(path)),
            reason,
        )
    };
    let secret = match std::fs::read(path) {
        Ok(secret) => secret,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match mode {
            KeyLoad::CheckOnly => return Ok(None),
            KeyLoad::CreateMissing => create_secret_file(path).map_err(err)?,
        },
        Err(e) => return Err(err(format!("cannot be read: {e}"))),
    };
    check_secret_len(&secret).map_err(err)?;
    Ok(Some(hmac_key(&secret)))
}

fn check_secret_len(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "holds a secret of {} bytes; HS256 needs at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    Ok(())
}

/// Creates `path` (and its folder) holding fresh random bytes, readable by the owner only.
fn create_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("folder cannot be created: {e}"))?;
    }
    let mut secret = vec![0u8; CREATED_SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| format!("no random bytes for a new secret: {e}"))?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Another process created it between our read and now: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return std::fs::read(path).map_err(|e| format!("cannot be read: {e}"));
        }
        Err(e) => return Err(format!("cannot be created: {e}")),
    };
    if let Err(e) = file.write_all(&secret).and_then(|()| file.sync_all()) {
        // A truncated secret would be refused at the next start with a confusing length.
        let _ = std::fs::remove_file(path);
        return Err(format!("cannot be written: {e}"));
    }
    Ok(secret)
}

fn hmac_key(secret: &[u8]) -> SigningKey {
    let digest = Sha256::digest(secret);
    let kid: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    SigningKey {
        encoding: EncodingKey::from_secret(secret),
        public: PublicKey {
            kid,
            decoding: DecodingKey::from_secret(secret),
            jwk: None,
        },
    }
}

/// EdDSA / ES256 / RS256: the private key file, its public half, JWK and thumbprint.
fn load_private_key(
    cfg: &TokensConfig,
    config_file: &Path,
    algorithm: TokenAlgorithm,
) -> Result<SigningKey, ConfigError> {
    let Some(path) = cfg.private_key_file.as_deref() else {
        return Err(ConfigError::new(
            config_file,
            "tokens.private_key_file",
            None,
            format!("is required for algorithm {}", algorithm.as_str()),
        ));
    };
    let err = |reason: String| {
        ConfigError::new(
            config_file,
            "tokens.private_key_file",
            Some(quoted(path)),
            reason,
        )
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let key = ParsedPrivateKey::from_pem(algorithm, &pem).map_err(err)?;
    let encoding = key.encoding().map_err(err)?;
    let alg = jwt_algorithm(algorithm);
    let public = finish_public_key(key.public(), alg).map_err(err)?;
    self_test(&encoding, &public.decoding, alg).map_err(err)?;
    Ok(SigningKey { encoding, public })
}

/// One `verify_keys` entry: an SPKI public key PEM of the configured algorithm.
fn load_verify_key(
    algorithm: TokenAlgorithm,
    config_file: &Path,
    index: usize,
    path: &Path,
) -> Result<PublicKey, ConfigError> {
    let key = format!("tokens.verify_keys[{index}]");
    let err =
        |reason: String| ConfigError::new(config_file, key.clone(), Some(quoted(path)), reason);
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let public = ParsedPublicKey::from_pem(algorithm, &pem).map_err(err)?;
    finish_public_key(public, jwt_algorithm(algorithm)).map_err(err)
}

/// Finishes a public key: refuses a short RSA modulus, adds `kid`, `alg` and `use` to its JWK.
fn finish_public_key(key: ParsedPublicKey, alg: Algorithm) -> Result<PublicKey, String> {
    let decoding = key.decoding()?;
    let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg))
        .map_err(|_| "has unusable public key parameters".to_string())?;
    let kid = thumbprint(&jwk)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(alg.into());
    Ok(PublicKey {
        kid,
        decoding,
        jwk: Some(jwk),
    })
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of a public JWK.
pub fn thumbprint(jwk: &Jwk) -> Result<String, String> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| format!("has no computable key thumbprint: {e}"))
}

/// Signs and verifies one message, so a key jsonwebtoken cannot use is refused at start.
fn self_test(encoding: &EncodingKey, decoding: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    const MESSAGE: &[u8] = b"authgate key self-test";
    let fail = || "cannot sign and verify a test message with this key".to_string();
    let signature = jsonwebtoken::crypto::sign(MESSAGE, encoding, alg).map_err(|_| fail())?;
    match jsonwebtoken::crypto::verify(&signature, MESSAGE, decoding, alg) {
        Ok(true) => Ok(()),
        _ => Err(fail()),
    }
}

fn key_kind(algorithm: TokenAlgorithm) -> &'static str {
    // With its article, so messages read "is not an Ed25519 (EdDSA) private key".
    match algorithm {
        TokenAlgorithm::Hs256 => "an HS256",
        TokenAlgorithm::EdDsa => "an Ed25519 (EdDSA)",
        TokenAlgorithm::Es256 => "a P-256 (ES256)",
        TokenAlgorithm::Rs256 => "an RSA (RS256)",
    }
}

/// A private key read and checked by its algorithm's own crate (the crates jsonwebtoken signs
/// with): algorithm and curve identifiers, the key's own consistency, an embedded public key.
enum ParsedPrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
    Rsa(rsa::RsaPrivateKey),
}

impl ParsedPrivateKey {
    /// Reads the PEM forms each algorithm accepts; anything else is refused by naming them.
    fn from_pem(algorithm: TokenAlgorithm, pem: &[u8]) -> Result<Self, String> {
        let wrong = || {
            let forms = match algorithm {
                TokenAlgorithm::EdDsa => "PKCS#8 (BEGIN PRIVATE KEY)",
                TokenAlgorithm::Es256 => {
                    "PKCS#8 (BEGIN PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY)"
                }
                _ => "PKCS#8 (BEGIN PRIVATE KEY) or PKCS#1 (BEGIN RSA PRIVATE KEY)",
            };
            format!("is not {} private key in {forms} PEM", key_kind(algorithm))
        };
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| wrong())?;
        let key = match (algorithm, &der) {
            (TokenAlgorithm::EdDsa, PrivateKeyDer::Pkcs8(d)) => {
                ed25519_dalek::SigningKey::from_pkcs8_der(d.secret_pkcs8_der())
                    .ok()
                    .map(Self::Ed25519)
            }
            (TokenAlgorithm::Es256, PrivateKeyDer::Pkcs8(d)) => {
                p256::SecretKey::from_pkcs8_der(d.secret_pkcs8_der())
                    .ok()
                    .map(Self::P256)
            }
            // sec1's reader, not `SecretKey::from_sec1_der`: that one ignores the curve named in
            // the key and would take a secp256k1 key (same scalar size) for a P-256 one.
            (TokenAlgorithm::Es256, PrivateKeyDer::Sec1(d)) => {
                <p256::SecretKey as DecodeEcPrivateKey>::from_sec1_der(d.secret_sec1_der())
                    .ok()
                    .map(Self::P256)
            }
            (TokenAlgorithm::Rs256, PrivateKeyDer::Pkcs8(d)) => {
                rsa::RsaPrivateKey::from_pkcs8_der(d.secret_pkcs8_der())
                    .ok()
                    .map(Self::Rsa)
            }
            (TokenAlgorithm::Rs256, PrivateKeyDer::Pkcs1(d)) => {
                rsa::RsaPrivateKey::from_pkcs1_der(d.secret_pkcs1_der())
                    .ok()
                    .map(Self::Rsa)
            }
            _ => None,
        };
        key.ok_or_else(wrong)
    }

    /// The key as jsonwebtoken signs with it: PKCS#8 for Ed25519 and P-256, PKCS#1 for RSA,
    /// written by the same crate that reads it back (so a SEC1 or PKCS#8 RSA file works too).
    fn encoding(&self) -> Result<EncodingKey, String> {
        let fail = || "cannot be re-encoded for signing".to_string();
        Ok(match self {
            Self::Ed25519(key) => {
                EncodingKey::from_ed_der(key.to_pkcs8_der().map_err(|_| fail())?.as_bytes())
            }
            Self::P256(key) => {
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|_| fail())?.as_bytes())
            }
            Self::Rsa(key) => {
                EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|_| fail())?.as_bytes())
            }
        })
    }

    /// The public half.
    fn public(&self) -> ParsedPublicKey {
        match self {
            Self::Ed25519(key) => ParsedPublicKey::Ed25519(key.verifying_key()),
            Self::P256(key) => ParsedPublicKey::P256(key.public_key()),
            Self::Rsa(key) => ParsedPublicKey::Rsa(key.to_public_key()),
        }
    }
}

/// A public key read and checked by its algorithm's own crate: a valid Ed25519 or P-256 point,
/// a well-formed RSA modulus and exponent.
enum ParsedPublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::PublicKey),
    Rsa(rsa::RsaPublicKey),
}

impl ParsedPublicKey {
    /// Reads an SPKI (`BEGIN PUBLIC KEY`) PEM of the configured algorithm.
    fn from_pem(algorithm: TokenAlgorithm, pem: &[u8]) -> Result<Self, String> {
        let wrong = || {
            format!(
                "is not {} public key in SPKI (BEGIN PUBLIC KEY) PEM",
                key_kind(algorithm)
            )
        };
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| wrong())?;
        let key = match algorithm {
            TokenAlgorithm::EdDsa => ed25519_dalek::VerifyingKey::from_public_key_der(&spki)
                .ok()
                .map(Self::Ed25519),
            TokenAlgorithm::Es256 => p256::PublicKey::from_public_key_der(&spki)
                .ok()
                .map(Self::P256),
            TokenAlgorithm::Rs256 => rsa::RsaPublicKey::from_public_key_der(&spki)
                .ok()
                .map(Self::Rsa),
            TokenAlgorithm::Hs256 => None,
        };
        key.ok_or_else(wrong)
    }

    /// The key as jsonwebtoken verifies with it (raw point, or modulus and exponent); an RSA
    /// modulus under [`MIN_RSA_BITS`] is refused here, for private and public keys alike.
    fn decoding(&self) -> Result<DecodingKey, String> {
        Ok(match self {
            Self::Ed25519(key) => DecodingKey::from_ed_der(key.as_bytes()),
            Self::P256(key) => DecodingKey::from_ec_der(key.to_encoded_point(false).as_bytes()),
            Self::Rsa(key) => {
                let bits = key.n().bits();
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "is a {bits}-bit RSA key; RS256 needs at least {MIN_RSA_BITS} bits"
                    ));
                }
                DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be())
            }
        })
    }
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod test_keys {
    //! Throwaway keys and `[tokens]` sections for unit tests.

    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::{TokenAlgorithm, TokensConfig};

    /// The committed fixture `name` under tests/fixtures/keys.
    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    /// A fresh key pair written to `dir` as `name.pem` (PKCS#8) and `name.pub.pem` (SPKI).
    pub(crate) fn generate(
        dir: &Path,
        name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (PathBuf, PathBuf) {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        (private, public)
    }

    /// A `[tokens]` section with defaults close to the documented ones.
    pub(crate) fn config(algorithm: TokenAlgorithm, dir: &Path) -> TokensConfig {
        TokensConfig {
            algorithm,
            secret_file: dir.join("data/jwt-secret"),
            private_key_file: None,
            verify_keys: Vec::new(),
            issuer: "authgate".into(),
            audience: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::test_keys::{config, fixture, generate};
    use super::*;

    fn cfg_file() -> &'static Path {
        Path::new("authgate.toml")
    }

    fn load(cfg: &TokensConfig) -> Result<Keys, ConfigError> {
        load_keys(cfg, cfg_file(), None, KeyLoad::CreateMissing)
    }

    fn asym(algorithm: TokenAlgorithm, private: PathBuf, verify: Vec<PathBuf>) -> TokensConfig {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(algorithm, dir.path());
        cfg.private_key_file = Some(private);
        cfg.verify_keys = verify;
        cfg
    }

    #[test]
    fn missing_secret_file_is_created_with_64_bytes_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let keys = load(&cfg).unwrap();
        assert!(keys.is_loaded());
        let meta = std::fs::metadata(&cfg.secret_file).unwrap();
        assert_eq!(meta.len(), 64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A second load reads the same secret: same kid.
        let again = load(&cfg).unwrap();
        assert_eq!(
            keys.signing().unwrap().public().kid(),
            again.signing().unwrap().public().kid()
        );
    }

    #[test]
    fn check_only_creates_nothing_and_reports_no_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let keys = load_keys(&cfg, cfg_file(), None, KeyLoad::CheckOnly).unwrap();
        assert!(!keys.is_loaded());
        assert!(!cfg.secret_file.exists());
        assert!(!cfg.secret_file.parent().unwrap().exists());
    }

    #[test]
    fn env_secret_of_31_bytes_is_refused_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let err = load_keys(&cfg, cfg_file(), Some(vec![7; 31]), KeyLoad::CheckOnly).unwrap_err();
        assert_eq!(err.key, "AUTHGATE_JWT_SECRET");
        assert!(err.reason.contains("31 bytes"), "{err}");
        assert!(!err.to_string().contains('\u{7}'));
    }

    #[test]
    fn env_secret_overrides_the_file_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let keys = load_keys(&cfg, cfg_file(), Some(vec![1; 32]), KeyLoad::CreateMissing).unwrap();
        assert!(keys.is_loaded());
        assert!(!cfg.secret_file.exists());
    }

    #[test]
    fn short_secret_file_is_refused_naming_key_path_and_length() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        std::fs::create_dir_all(cfg.secret_file.parent().unwrap()).unwrap();
        std::fs::write(&cfg.secret_file, [9u8; 20]).unwrap();
        let err = load(&cfg).unwrap_err();
        assert_eq!(err.key, "tokens.secret_file");
        assert!(err.value.as_deref().unwrap().contains("jwt-secret"));
        assert!(err.reason.contains("20 bytes"), "{err}");
    }

    #[test]
    fn hs256_kid_is_first_16_hex_digits_of_sha256_of_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let keys = load_keys(&cfg, cfg_file(), Some(secret.clone()), KeyLoad::CheckOnly).unwrap();
        let digest = Sha256::digest(&secret);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(keys.signing().unwrap().public().kid(), &hex[..16]);
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let secret = b"SUPERSECRETSUPERSECRETSUPERSECRET".to_vec();
        let keys = load_keys(&cfg, cfg_file(), Some(secret), KeyLoad::CheckOnly).unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains("SUPERSECRET"), "{shown}");
        assert!(!shown.contains("83, 85, 80"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn rfc7638_example_key_has_the_published_thumbprint() {
        // RFC 7638 §3.1.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc8037_ed25519_example_key_has_the_published_thumbprint() {
        // RFC 8037 Appendix A.3.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn eddsa_pkcs8_v1_and_v2_keys_load_and_match_their_public_pem() {
        let dir = tempfile::tempdir().unwrap();
        // v2 (with public key) as ring writes it; v1 as openssl writes it.
        let (v2, v2_pub) = generate(dir.path(), "ed", &rcgen::PKCS_ED25519);
        for (private, public) in [
            (v2, v2_pub),
            (fixture("ed25519.pem"), fixture("ed25519.pub.pem")),
        ] {
            let cfg = asym(TokenAlgorithm::EdDsa, private, vec![public]);
            let keys = load(&cfg).unwrap();
            let signing = keys.signing().unwrap().public();
            assert_eq!(signing.kid(), keys.verify_only()[0].kid());
            assert_eq!(signing.kid().len(), 43);
        }
    }

    #[test]
    fn es256_pkcs8_and_sec1_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let (pkcs8, pkcs8_pub) = generate(dir.path(), "p256", &rcgen::PKCS_ECDSA_P256_SHA256);
        for (private, public) in [
            (pkcs8, pkcs8_pub),
            (fixture("p256.sec1.pem"), fixture("p256.sec1.pub.pem")),
        ] {
            let keys = load(&asym(TokenAlgorithm::Es256, private, vec![public])).unwrap();
            assert_eq!(
                keys.signing().unwrap().public().kid(),
                keys.verify_only()[0].kid()
            );
        }
    }

    #[test]
    fn rs256_pkcs8_and_pkcs1_keys_load_with_the_same_kid() {
        let a = load(&asym(
            TokenAlgorithm::Rs256,
            fixture("rsa2048.pem"),
            vec![fixture("rsa2048.pub.pem")],
        ))
        .unwrap();
        let b = load(&asym(
            TokenAlgorithm::Rs256,
            fixture("rsa2048.pkcs1.pem"),
            vec![],
        ))
        .unwrap();
        let kid = a.signing().unwrap().public().kid();
        assert_eq!(kid, b.signing().unwrap().public().kid());
        assert_eq!(kid, a.verify_only()[0].kid());
    }

    #[test]
    fn rsa_key_under_2048_bits_is_refused() {
        let err = load(&asym(TokenAlgorithm::Rs256, fixture("rsa1024.pem"), vec![])).unwrap_err();
        assert_eq!(err.key, "tokens.private_key_file");
        assert!(err.reason.contains("1024-bit"), "{err}");
    }

    #[test]
    fn wrong_key_type_for_the_algorithm_is_refused_naming_key_and_path() {
        let cases = [
            (TokenAlgorithm::EdDsa, "rsa2048.pem"),
            (TokenAlgorithm::EdDsa, "p256.sec1.pem"),
            (TokenAlgorithm::Es256, "ed25519.pem"),
            (TokenAlgorithm::Es256, "p384.pem"),
            (TokenAlgorithm::Es256, "rsa2048.pem"),
            (TokenAlgorithm::Rs256, "ed25519.pem"),
            (TokenAlgorithm::Rs256, "p256.sec1.pem"),
            (TokenAlgorithm::Rs256, "rsa2048.pub.pem"),
        ];
        for (algorithm, name) in cases {
            let err = load(&asym(algorithm, fixture(name), vec![])).unwrap_err();
            assert_eq!(err.key, "tokens.private_key_file", "{name}");
            assert!(err.value.as_deref().unwrap().contains(name), "{err}");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn unreadable_private_key_file_is_refused_with_the_os_reason() {
        let err = load(&asym(
            TokenAlgorithm::EdDsa,
            fixture("does-not-exist.pem"),
            vec![],
        ))
        .unwrap_err();
        assert_eq!(err.key, "tokens.private_key_file");
        assert!(err.reason.starts_with("cannot be read"), "{err}");
    }

    #[test]
    fn verify_key_of_another_algorithm_is_refused_naming_its_index() {
        let err = load(&asym(
            TokenAlgorithm::EdDsa,
            fixture("ed25519.pem"),
            vec![fixture("ed25519.pub.pem"), fixture("rsa2048.pub.pem")],
        ))
        .unwrap_err();
        assert_eq!(err.key, "tokens.verify_keys[1]");
        assert!(err.value.as_deref().unwrap().contains("rsa2048.pub.pem"));
    }

    #[test]
    fn private_key_given_as_verify_key_is_refused() {
        let err = load(&asym(
            TokenAlgorithm::EdDsa,
            fixture("ed25519.pem"),
            vec![fixture("ed25519.pem")],
        ))
        .unwrap_err();
        assert_eq!(err.key, "tokens.verify_keys[0]");
    }

    #[test]
    fn verify_keys_under_hs256_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(TokenAlgorithm::Hs256, dir.path());
        cfg.verify_keys = vec![fixture("ed25519.pub.pem")];
        let err = load(&cfg).unwrap_err();
        assert_eq!(err.key, "tokens.verify_keys[0]");
    }

    #[test]
    fn fixture_keys_keep_their_rfc7638_kids() {
        // Thumbprints computed outside authgate (Python `cryptography`, RFC 7638 §3): a change
        // in how keys are read must not change a published kid.
        let cases = [
            (
                TokenAlgorithm::EdDsa,
                "ed25519.pem",
                "ed25519.pub.pem",
                "q4RHoQEll-YWPoqAKe_ookku5glOaOH3NGDnS1kBmaI",
            ),
            (
                TokenAlgorithm::Es256,
                "p256.sec1.pem",
                "p256.sec1.pub.pem",
                "kLeJDmUwD95v5czPtQNnwAJeXJppZKZ4BNZLizeMx_Y",
            ),
            (
                TokenAlgorithm::Rs256,
                "rsa2048.pem",
                "rsa2048.pub.pem",
                "JCkc05E9ueHwFjcHlNdLI12IzcfxDHx3mEIMO51Nn_I",
            ),
            (
                TokenAlgorithm::Rs256,
                "rsa2048.pkcs1.pem",
                "rsa2048.pub.pem",
                "JCkc05E9ueHwFjcHlNdLI12IzcfxDHx3mEIMO51Nn_I",
            ),
        ];
        for (algorithm, private, public, kid) in cases {
            let keys = load(&asym(algorithm, fixture(private), vec![fixture(public)])).unwrap();
            let signing = keys.signing().unwrap().public();
            assert_eq!(signing.kid(), kid, "{private}");
            assert_eq!(keys.verify_only()[0].kid(), kid, "{public}");
            let jwk = signing.jwk().unwrap();
            assert_eq!(jwk.common.key_id.as_deref(), Some(kid));
            assert_eq!(thumbprint(jwk).unwrap(), kid);
        }
    }

    #[test]
    fn sec1_key_of_another_curve_is_refused_even_without_its_public_key() {
        // A secp256k1 scalar has P-256's size: only the curve named in the key tells them apart.
        let err = load(&asym(
            TokenAlgorithm::Es256,
            fixture("secp256k1.sec1.pem"),
            vec![],
        ))
        .unwrap_err();
        assert_eq!(err.key, "tokens.private_key_file");
        assert!(
            err.reason.contains("is not a P-256 (ES256) private key"),
            "{err}"
        );
    }

    #[test]
    fn compressed_p256_public_key_has_the_uncompressed_keys_kid() {
        let keys = load(&asym(
            TokenAlgorithm::Es256,
            fixture("p256.sec1.pem"),
            vec![fixture("p256.sec1.compressed.pub.pem")],
        ))
        .unwrap();
        assert_eq!(
            keys.signing().unwrap().public().kid(),
            keys.verify_only()[0].kid()
        );
    }

    #[test]
    fn ed25519_pkcs8_v2_key_whose_public_key_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate(dir.path(), "ed", &rcgen::PKCS_ED25519);
        let (_, other_public) = generate(dir.path(), "other", &rcgen::PKCS_ED25519);
        // v2 ends with the 32-byte public key; put another valid key's there.
        let mut der = PrivateKeyDer::from_pem_file(&private)
            .unwrap()
            .secret_der()
            .to_vec();
        let other = SubjectPublicKeyInfoDer::from_pem_file(&other_public).unwrap();
        let split = der.len() - 32;
        der[split..].copy_from_slice(&other[other.len() - 32..]);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
        );
        std::fs::write(&private, pem).unwrap();
        let err = load(&asym(TokenAlgorithm::EdDsa, private, vec![])).unwrap_err();
        assert_eq!(err.key, "tokens.private_key_file");
        assert!(
            err.reason.contains("is not an Ed25519 (EdDSA) private key"),
            "{err}"
        );
    }

    #[test]
    fn garbage_key_files_are_refused_naming_the_key_and_the_expected_forms() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("empty.pem", String::new()),
            ("text.pem", "not a key\n".to_string()),
            (
                "junk.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n".into(),
            ),
            (
                "junk-sec1.pem",
                "-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----\n".into(),
            ),
            (
                "junk-pub.pem",
                "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n".into(),
            ),
        ];
        let algorithms = [
            (TokenAlgorithm::EdDsa, "ed25519.pem", "an Ed25519 (EdDSA)"),
            (TokenAlgorithm::Es256, "p256.sec1.pem", "a P-256 (ES256)"),
            (TokenAlgorithm::Rs256, "rsa2048.pem", "an RSA (RS256)"),
        ];
        for (name, contents) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            for (algorithm, good, kind) in algorithms {
                let err = load(&asym(algorithm, path.clone(), vec![])).unwrap_err();
                assert_eq!(err.key, "tokens.private_key_file", "{name}");
                assert!(err.value.as_deref().unwrap().contains(name), "{err}");
                let expected = format!("is not {kind} private key in PKCS#8 (BEGIN PRIVATE KEY)");
                assert!(err.reason.starts_with(&expected), "{err}");

                let err = load(&asym(algorithm, fixture(good), vec![path.clone()])).unwrap_err();
                assert_eq!(err.key, "tokens.verify_keys[0]", "{name}");
                let expected = format!("is not {kind} public key in SPKI (BEGIN PUBLIC KEY) PEM");
                assert_eq!(err.reason, expected, "{name}");
            }
        }
    }
}
