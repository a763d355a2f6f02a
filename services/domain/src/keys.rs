//! Receipt signing keys (Ed25519) and their encryption at rest under the master key
//! (ChaCha20-Poly1305, the key id bound as associated data).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The algorithm name recorded with every signature.
pub const ALGORITHM: &str = "ED25519";

/// A merchant's signing key.
pub struct ReceiptSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// A signer from 32 secret bytes (drawn from the OS by the caller).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(key.verifying_key().as_bytes());
        Self { key, key_id }
    }

    /// `ed25519:` and the first 16 hex digits of SHA-256 of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs a chain hash.
    pub fn sign(&self, hash: &[u8; 32]) -> [u8; 64] {
        self.key.sign(hash).to_bytes()
    }

    /// The key as PKCS#8 DER (RFC 8410), the form jsonwebtoken signs EdDSA tokens with.
    ///
    /// Version 1, the seed alone: what OpenSSL writes and what jsonwebtoken's
    /// `Jwk::from_encoding_key` reads. `SigningKey::to_pkcs8_der` would add the public key
    /// (version 2).
    pub fn to_pkcs8_der(&self) -> Result<ed25519_dalek::pkcs8::SecretDocument, KeyError> {
        KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|e| KeyError::Encoding(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("an Ed25519 public key is 32 bytes, not {0}")]
    Length(usize),
    #[error("the bytes are not an Ed25519 public key")]
    Malformed,
    #[error("encoding an Ed25519 key: {0}")]
    Encoding(String),
}

/// A public key as the key tables store it (32 raw bytes).
fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, KeyError> {
    let bytes = <[u8; 32]>::try_from(public_key).map_err(|_| KeyError::Length(public_key.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed)
}

/// The key id of a public key.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    format!("ed25519:{}", crate::chain::hex(&digest[..8]))
}

/// Whether `signature` is a valid signature of `hash` by `public_key`.
pub fn verify(public_key: &[u8], hash: &[u8], signature: &[u8]) -> bool {
    let Ok(public_key) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public_key) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify(hash, &signature).is_ok()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed key is malformed")]
    Malformed,
    #[error("sealed key does not open with this master key (wrong key, or the data was altered)")]
    Rejected,
}

/// Encrypts `secret` under `master` with a fresh `nonce`; answers `nonce ‖ ciphertext`.
/// `context` (e.g. the key id) must be given again to open it.
pub fn seal(master: &[u8; 32], nonce: [u8; 12], secret: &[u8], context: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*master));
    let mut sealed = nonce.to_vec();
    // Encryption with a valid key and nonce cannot fail for in-memory buffers.
    if let Ok(ciphertext) = cipher.encrypt(
        &Nonce::from(nonce),
        Payload {
            msg: secret,
            aad: context,
        },
    ) {
        sealed.extend_from_slice(&ciphertext);
    }
    sealed
}

/// Decrypts what [`seal`] made.
pub fn open(master: &[u8; 32], sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < 12 + 16 {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    ChaCha20Poly1305::new(&Key::from(*master))
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: context,
            },
        )
        .map_err(|_| SealError::Rejected)
}

/// The SubjectPublicKeyInfo (RFC 8410) DER encoding of a stored Ed25519 public key.
pub fn public_key_der(public_key: &[u8]) -> Result<Vec<u8>, KeyError> {
    verifying_key(public_key)?
        .to_public_key_der()
        .map(|document| document.into_vec())
        .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// The same SubjectPublicKeyInfo in PEM (`-----BEGIN PUBLIC KEY-----`, RFC 7468).
pub fn public_key_pem(public_key: &[u8]) -> Result<String, KeyError> {
    verifying_key(public_key)?
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encoding(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};

    // RFC 8032 section 7.1, test 1. The encodings were computed by OpenSSL and by Python's
    // `cryptography`, not by this code, so that no library bump changes them unseen.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const KEY_ID: &str = "ed25519:21fe31dfa154a261";
    const SPKI_DER: &str =
        "302a300506032b6570032100d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
        -----END PUBLIC KEY-----\n";
    const PKCS8_DER: &str = "302e020100300506032b6570042204209d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";
    /// SEED sealed as the key tables hold it: master key [3; 32], nonce [4; 12], the key id as
    /// associated data (ChaCha20-Poly1305 by Python's `cryptography`).
    const SEALED: &str = "040404040404040404040404eea169e8201ab457888e09fc3da8cee5e716f5e2\
        fa531e3c8c778ef515193c5648bd04e9246a81e4cf82c5d72cacf765";

    fn unhex(hex: &str) -> Vec<u8> {
        hex.as_bytes()
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn seed() -> [u8; 32] {
        unhex(SEED).try_into().unwrap()
    }

    #[test]
    fn a_fixed_seed_has_the_known_public_key_encodings() {
        let signer = ReceiptSigner::from_seed(seed());
        assert_eq!(crate::chain::hex(&signer.public_key()), PUBLIC);
        assert_eq!(signer.key_id(), KEY_ID);
        let der = public_key_der(&signer.public_key()).unwrap();
        assert_eq!(crate::chain::hex(&der), SPKI_DER);
        assert_eq!(public_key_pem(&signer.public_key()).unwrap(), SPKI_PEM);

        let verifying = signer.key.verifying_key();
        assert_eq!(VerifyingKey::from_public_key_der(&der).unwrap(), verifying);
        assert_eq!(
            VerifyingKey::from_public_key_pem(SPKI_PEM).unwrap(),
            verifying
        );
    }

    #[test]
    fn a_fixed_seed_has_the_known_pkcs8_encoding() {
        let signer = ReceiptSigner::from_seed(seed());
        let der = signer.to_pkcs8_der().unwrap();
        assert_eq!(crate::chain::hex(der.as_bytes()), PKCS8_DER);
        assert_eq!(
            SigningKey::from_pkcs8_pem(PKCS8_PEM).unwrap().to_bytes(),
            seed()
        );
        assert_eq!(
            SigningKey::from_pkcs8_der(der.as_bytes())
                .unwrap()
                .to_bytes(),
            seed()
        );
    }

    #[test]
    fn keys_sealed_before_still_open_and_sign() {
        let (master, sealed) = ([3u8; 32], unhex(SEALED));
        assert_eq!(seal(&master, [4; 12], &seed(), KEY_ID.as_bytes()), sealed);
        let opened: [u8; 32] = open(&master, &sealed, KEY_ID.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let signer = ReceiptSigner::from_seed(opened);
        assert_eq!(signer.key_id(), KEY_ID);
        let hash = [9u8; 32];
        assert!(verify(&unhex(PUBLIC), &hash, &signer.sign(&hash)));
    }

    #[test]
    fn only_stored_public_keys_of_32_bytes_on_the_curve_are_encoded() {
        assert_eq!(public_key_der(&[0; 5]), Err(KeyError::Length(5)));
        assert_eq!(public_key_pem(&[0; 33]), Err(KeyError::Length(33)));
        assert_eq!(public_key_der(&[2; 32]), Err(KeyError::Malformed));
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_hash() {
        let signer = ReceiptSigner::from_seed([1; 32]);
        let hash = [9u8; 32];
        let signature = signer.sign(&hash);
        assert!(verify(&signer.public_key(), &hash, &signature));
        assert!(!verify(&signer.public_key(), &[8u8; 32], &signature));
        assert!(!verify(
            &ReceiptSigner::from_seed([2; 32]).public_key(),
            &hash,
            &signature
        ));
        assert!(!verify(&[0; 5], &hash, &signature));
        assert!(signer.key_id().starts_with("ed25519:") && signer.key_id().len() == 8 + 16);
    }

    #[test]
    fn sealed_keys_open_only_with_the_master_key_and_context() {
        let master = [3u8; 32];
        let sealed = seal(&master, [4; 12], b"seed bytes", b"kid-1");
        assert_eq!(open(&master, &sealed, b"kid-1").unwrap(), b"seed bytes");
        assert_eq!(open(&[5; 32], &sealed, b"kid-1"), Err(SealError::Rejected));
        assert_eq!(open(&master, &sealed, b"kid-2"), Err(SealError::Rejected));
        assert_eq!(
            open(&master, &sealed[..10], b"kid-1"),
            Err(SealError::Malformed)
        );
    }
}
