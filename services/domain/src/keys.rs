//! Receipt signing keys (Ed25519) and their encryption at rest under the master key
//! (ChaCha20-Poly1305, the key id bound as associated data).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
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

/// The SubjectPublicKeyInfo (RFC 8410) DER encoding of an Ed25519 public key.
pub fn public_key_der(public_key: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(public_key);
    der
}

/// PEM armour (RFC 7468) around DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
