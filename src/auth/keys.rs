//! Key material for signing and verifying tokens, loaded once at start.
//!
//! Owns: reading the HS256 secret (from `AUTHGATE_JWT_SECRET` or `secret_file`, creating the file
//! with 64 random bytes and mode 0600 when allowed), parsing the private key and the rotation
//! public keys of the asymmetric algorithms, deriving each key's `kid` and public JWK.
//!
//! Invariants: every key in a [`Keys`] belongs to the configured algorithm and passed a parse of
//! its own; secrets never reach `Debug` output or error messages; `kid` is the RFC 7638 SHA-256
//! thumbprint for public keys and the first 16 hex digits of SHA-256 of the secret for HS256.
//! Keys never come from a token: the only lookup is `kid` into the in-memory list built here.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
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
    let encoding = parse_private_key(algorithm, &pem).map_err(err)?;
    let alg = jwt_algorithm(algorithm);
    let jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|_| {
        err(format!(
            "is not a valid {} private key",
            key_kind(algorithm)
        ))
    })?;
    check_rsa_size(&jwk).map_err(err)?;
    let public = public_key_from_jwk(jwk, alg).map_err(err)?;
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
    let decoding = parse_public_key(algorithm, &pem).map_err(err)?;
    let alg = jwt_algorithm(algorithm);
    let jwk = Jwk::from_decoding_key(&decoding, Some(alg))
        .map_err(|_| err(format!("is not a valid {} public key", key_kind(algorithm))))?;
    check_rsa_size(&jwk).map_err(err)?;
    public_key_from_jwk(jwk, alg).map_err(err)
}

/// Finishes a public key: checks the point/modulus is usable, adds `kid`, `alg` and `use`.
fn public_key_from_jwk(mut jwk: Jwk, alg: Algorithm) -> Result<PublicKey, String> {
    let kid = thumbprint(&jwk)?;
    let decoding = DecodingKey::from_jwk(&jwk)
        .map_err(|_| "has unusable public key parameters".to_string())?;
    // Builds the verifier once: rejects points off the curve before any token arrives.
    if jsonwebtoken::crypto::verify("", b"", &decoding, alg).is_err() {
        return Err("holds a public key that is not a valid point or modulus".into());
    }
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

/// Signs and verifies one message, so a key pair that does not match is refused at start.
fn self_test(encoding: &EncodingKey, decoding: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    const MESSAGE: &[u8] = b"authgate key self-test";
    let fail = || "cannot sign and verify a test message with this key".to_string();
    let signature = jsonwebtoken::crypto::sign(MESSAGE, encoding, alg).map_err(|_| fail())?;
    match jsonwebtoken::crypto::verify(&signature, MESSAGE, decoding, alg) {
        Ok(true) => Ok(()),
        _ => Err(fail()),
    }
}

fn check_rsa_size(jwk: &Jwk) -> Result<(), String> {
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return Ok(());
    };
    let n = URL_SAFE_NO_PAD
        .decode(&rsa.n)
        .map_err(|_| "holds an unreadable RSA modulus".to_string())?;
    let bits = match n.iter().position(|b| *b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "is a {bits}-bit RSA key; RS256 needs at least {MIN_RSA_BITS} bits"
        ));
    }
    Ok(())
}

fn key_kind(algorithm: TokenAlgorithm) -> &'static str {
    match algorithm {
        TokenAlgorithm::Hs256 => "HS256",
        TokenAlgorithm::EdDsa => "Ed25519 (EdDSA)",
        TokenAlgorithm::Es256 => "P-256 (ES256)",
        TokenAlgorithm::Rs256 => "RSA (RS256)",
    }
}

/// Parses a private key PEM into the DER form jsonwebtoken signs with.
fn parse_private_key(algorithm: TokenAlgorithm, pem: &[u8]) -> Result<EncodingKey, String> {
    let wrong = || {
        let forms = match algorithm {
            TokenAlgorithm::EdDsa => "PKCS#8 (BEGIN PRIVATE KEY)",
            TokenAlgorithm::Es256 => "PKCS#8 (BEGIN PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY)",
            _ => "PKCS#8 (BEGIN PRIVATE KEY) or PKCS#1 (BEGIN RSA PRIVATE KEY)",
        };
        format!(
            "is not a {} private key in {forms} PEM",
            key_kind(algorithm)
        )
    };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| wrong())?;
    let key = match (algorithm, der) {
        (TokenAlgorithm::EdDsa, PrivateKeyDer::Pkcs8(d)) => {
            der::ed25519_pkcs8_v1(d.secret_pkcs8_der()).map(|v1| EncodingKey::from_ed_der(&v1))
        }
        (TokenAlgorithm::Es256, PrivateKeyDer::Pkcs8(d)) => der::p256_pkcs8(d.secret_pkcs8_der())
            .then(|| EncodingKey::from_ec_der(d.secret_pkcs8_der())),
        (TokenAlgorithm::Es256, PrivateKeyDer::Sec1(d)) => Some(EncodingKey::from_ec_der(
            &der::p256_sec1_to_pkcs8(d.secret_sec1_der()),
        )),
        (TokenAlgorithm::Rs256, PrivateKeyDer::Pkcs1(d)) => {
            Some(EncodingKey::from_rsa_der(d.secret_pkcs1_der()))
        }
        (TokenAlgorithm::Rs256, PrivateKeyDer::Pkcs8(d)) => {
            der::rsa_pkcs8_inner(d.secret_pkcs8_der()).map(EncodingKey::from_rsa_der)
        }
        _ => None,
    };
    key.ok_or_else(wrong)
}

/// Parses an SPKI public key PEM into the raw form jsonwebtoken verifies with.
fn parse_public_key(algorithm: TokenAlgorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let wrong = || {
        format!(
            "is not a {} public key in SPKI (BEGIN PUBLIC KEY) PEM",
            key_kind(algorithm)
        )
    };
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| wrong())?;
    let (oid, param, key) = der::spki(&spki).ok_or_else(wrong)?;
    let key = match algorithm {
        TokenAlgorithm::EdDsa if oid == der::OID_ED25519 && key.len() == 32 => {
            DecodingKey::from_ed_der(key)
        }
        TokenAlgorithm::Es256
            if oid == der::OID_EC_PUBLIC_KEY
                && param == Some(der::OID_P256)
                && key.len() == 65
                && key.first() == Some(&4) =>
        {
            DecodingKey::from_ec_der(key)
        }
        TokenAlgorithm::Rs256 if oid == der::OID_RSA => DecodingKey::from_rsa_der(key),
        _ => return Err(wrong()),
    };
    Ok(key)
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Just enough DER to tell key types apart and rewrap them (no general ASN.1 parsing).
mod der {
    /// OID 1.3.101.112, id-Ed25519.
    pub(super) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// OID 1.2.840.10045.2.1, id-ecPublicKey.
    pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// OID 1.2.840.10045.3.1.7, prime256v1 (P-256).
    pub(super) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// OID 1.2.840.113549.1.1.1, rsaEncryption.
    pub(super) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// An algorithm OID, its OID parameter if any, and the key octets/bits that follow.
    pub(super) type KeyInfo<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const OCTET_STRING: u8 = 0x04;
    const NULL: u8 = 0x05;
    const OID: u8 = 0x06;

    /// Splits one element off `input`: its tag, its content and what follows.
    fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, content, rest))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (found, content, rest) = next(input)?;
        (found == tag).then_some((content, rest))
    }

    /// Encodes one element.
    fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// AlgorithmIdentifier: the OID and, when the parameter is an OID, that one.
    fn algorithm_identifier(content: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
        let (oid, rest) = expect(content, OID)?;
        let param = match next(rest) {
            Some((OID, param, _)) => Some(param),
            Some((NULL, _, _)) | None => None,
            Some(_) => return None,
        };
        Some((oid, param))
    }

    /// PKCS#8 PrivateKeyInfo: algorithm OID, its OID parameter, and the privateKey octets.
    pub(super) fn pkcs8(der: &[u8]) -> Option<KeyInfo<'_>> {
        let (seq, _) = expect(der, SEQUENCE)?;
        let (_version, rest) = expect(seq, INTEGER)?;
        let (alg, rest) = expect(rest, SEQUENCE)?;
        let (private_key, _) = expect(rest, OCTET_STRING)?;
        let (oid, param) = algorithm_identifier(alg)?;
        Some((oid, param, private_key))
    }

    /// SubjectPublicKeyInfo: algorithm OID, its OID parameter, and the key bits.
    pub(super) fn spki(der: &[u8]) -> Option<KeyInfo<'_>> {
        let (seq, _) = expect(der, SEQUENCE)?;
        let (alg, rest) = expect(seq, SEQUENCE)?;
        let (bits, _) = expect(rest, BIT_STRING)?;
        let (&unused_bits, key) = bits.split_first()?;
        if unused_bits != 0 {
            return None;
        }
        let (oid, param) = algorithm_identifier(alg)?;
        Some((oid, param, key))
    }

    /// An Ed25519 PKCS#8 key (v1, or v2 with its public key as ring writes it) rewritten as
    /// the 48-byte v1 form that jsonwebtoken's JWK derivation expects.
    pub(super) fn ed25519_pkcs8_v1(der: &[u8]) -> Option<Vec<u8>> {
        let (oid, _, private_key) = pkcs8(der)?;
        if oid != OID_ED25519 {
            return None;
        }
        let (seed, _) = expect(private_key, OCTET_STRING)?;
        if seed.len() != 32 {
            return None;
        }
        let alg = encode(SEQUENCE, &encode(OID, OID_ED25519));
        let mut body = encode(INTEGER, &[0]);
        body.extend(alg);
        body.extend(encode(OCTET_STRING, &encode(OCTET_STRING, seed)));
        Some(encode(SEQUENCE, &body))
    }

    /// True for a PKCS#8 key labelled as P-256 (the curve is checked again when parsed).
    pub(super) fn p256_pkcs8(der: &[u8]) -> bool {
        matches!(pkcs8(der), Some((oid, Some(curve), _)) if oid == OID_EC_PUBLIC_KEY && curve == OID_P256)
    }

    /// Wraps a SEC1 `EC PRIVATE KEY` into PKCS#8 for P-256 (a key of another curve then
    /// fails to parse).
    pub(super) fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
        let mut alg = encode(OID, OID_EC_PUBLIC_KEY);
        alg.extend(encode(OID, OID_P256));
        let mut body = encode(INTEGER, &[0]);
        body.extend(encode(SEQUENCE, &alg));
        body.extend(encode(OCTET_STRING, sec1));
        encode(SEQUENCE, &body)
    }

    /// The PKCS#1 RSAPrivateKey inside an RSA PKCS#8 key.
    pub(super) fn rsa_pkcs8_inner(der: &[u8]) -> Option<&[u8]> {
        let (oid, _, private_key) = pkcs8(der)?;
        (oid == OID_RSA).then_some(private_key)
    }
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

    /// A `[tokens]` section with defaults close to CONFIG.md.
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
    fn der_long_lengths_encode_and_parse_back() {
        let long = vec![0xabu8; 300];
        let pkcs8 = der::p256_sec1_to_pkcs8(&long);
        assert_eq!(&pkcs8[..2], &[0x30, 0x82]);
        let (oid, curve, inner) = der::pkcs8(&pkcs8).unwrap();
        assert_eq!(oid, der::OID_EC_PUBLIC_KEY);
        assert_eq!(curve, Some(der::OID_P256));
        assert_eq!(inner, &long[..]);
    }
}
