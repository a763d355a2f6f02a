//! The per-terminal hash chain: `hash_n = SHA-256(hash_{n-1} ‖ canonical bytes of receipt n)`,
//! starting from 32 zero bytes, with receipt numbers 1, 2, 3, … without gaps.

use sha2::{Digest, Sha256};

use crate::keys;

/// The `hash_0` every chain starts from.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of the next link.
pub fn link(previous: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// One stored receipt as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct StoredLink<'a> {
    pub number: u64,
    pub previous_hash: &'a [u8],
    pub hash: &'a [u8],
    pub document: &'a [u8],
    pub signature: &'a [u8],
    /// The public key named by the receipt's key id, if the key is known.
    pub public_key: Option<&'a [u8]>,
}

/// What is wrong with a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The stored hash is not the hash of the previous link and this document.
    HashMismatch,
    /// The signature does not verify with the receipt's key.
    SignatureInvalid,
    /// The number is not the one after the previous receipt's.
    NumberGap,
    /// The stored previous hash is not the previous receipt's hash.
    LinkBroken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub number: u64,
    pub problem: Problem,
    pub message: String,
}

/// Walks a chain in number order and stops at the first broken link.
#[derive(Debug, Clone)]
pub struct Verifier {
    next_number: u64,
    previous_hash: [u8; 32],
    checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier for a chain read from its first receipt.
    pub fn new() -> Self {
        Self::resume(1, GENESIS)
    }

    /// A verifier that starts at receipt `next_number`, whose predecessor's hash is `previous_hash`.
    pub fn resume(next_number: u64, previous_hash: [u8; 32]) -> Self {
        Self {
            next_number,
            previous_hash,
            checked: 0,
        }
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }

    pub fn head_hash(&self) -> [u8; 32] {
        self.previous_hash
    }

    /// Checks the next stored link.
    pub fn check(&mut self, entry: StoredLink<'_>) -> Result<(), Break> {
        let fail = |problem, message: String| Break {
            number: entry.number,
            problem,
            message,
        };
        if entry.number != self.next_number {
            return Err(fail(
                Problem::NumberGap,
                format!(
                    "expected receipt number {}, found {}",
                    self.next_number, entry.number
                ),
            ));
        }
        if entry.previous_hash != self.previous_hash {
            return Err(fail(
                Problem::LinkBroken,
                format!(
                    "previous hash {} is not the hash of receipt {} ({})",
                    hex(entry.previous_hash),
                    entry.number.saturating_sub(1),
                    hex(&self.previous_hash)
                ),
            ));
        }
        let expected = link(&self.previous_hash, entry.document);
        if entry.hash != expected {
            return Err(fail(
                Problem::HashMismatch,
                format!(
                    "stored hash {} differs from the hash of the stored content {}",
                    hex(entry.hash),
                    hex(&expected)
                ),
            ));
        }
        let valid = entry
            .public_key
            .is_some_and(|key| keys::verify(key, &expected, entry.signature));
        if !valid {
            let why = if entry.public_key.is_some() {
                "the signature does not verify with the receipt's key"
            } else {
                "the receipt's signing key is unknown"
            };
            return Err(fail(Problem::SignatureInvalid, why.to_owned()));
        }
        self.previous_hash = expected;
        // A chain of 2^64 receipts is not a case to check.
        self.next_number = self.next_number.saturating_add(1);
        self.checked = self.checked.saturating_add(1);
        Ok(())
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ReceiptSigner;

    struct Row {
        number: u64,
        previous: [u8; 32],
        hash: [u8; 32],
        document: Vec<u8>,
        signature: [u8; 64],
    }

    fn chain(signer: &ReceiptSigner, n: u64) -> Vec<Row> {
        let mut previous = GENESIS;
        (1..=n)
            .map(|number| {
                let document = format!("{{\"number\":{number}}}").into_bytes();
                let hash = link(&previous, &document);
                let row = Row {
                    number,
                    previous,
                    hash,
                    document,
                    signature: signer.sign(&hash),
                };
                previous = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[Row], key: &[u8]) -> Result<u64, Break> {
        let mut verifier = Verifier::new();
        for row in rows {
            verifier.check(StoredLink {
                number: row.number,
                previous_hash: &row.previous,
                hash: &row.hash,
                document: &row.document,
                signature: &row.signature,
                public_key: Some(key),
            })?;
        }
        Ok(verifier.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let signer = ReceiptSigner::from_seed([7; 32]);
        assert_eq!(verify(&chain(&signer, 5), &signer.public_key()), Ok(5));
    }

    #[test]
    fn each_kind_of_damage_is_named_at_its_receipt() {
        let signer = ReceiptSigner::from_seed([7; 32]);
        let key = signer.public_key();

        let mut edited = chain(&signer, 5);
        edited[2].document = b"{\"number\":3,\"total\":\"999.00\"}".to_vec();
        let err = verify(&edited, &key).unwrap_err();
        assert_eq!((err.number, err.problem), (3, Problem::HashMismatch));

        let mut deleted = chain(&signer, 5);
        deleted.remove(3);
        let err = verify(&deleted, &key).unwrap_err();
        assert_eq!((err.number, err.problem), (5, Problem::NumberGap));

        let mut forged = chain(&signer, 5);
        forged[1].signature[0] ^= 1;
        let err = verify(&forged, &key).unwrap_err();
        assert_eq!((err.number, err.problem), (2, Problem::SignatureInvalid));

        let mut relinked = chain(&signer, 5);
        relinked[4].previous = GENESIS;
        let err = verify(&relinked, &key).unwrap_err();
        assert_eq!((err.number, err.problem), (5, Problem::LinkBroken));

        let other = ReceiptSigner::from_seed([8; 32]);
        let err = verify(&chain(&signer, 2), &other.public_key()).unwrap_err();
        assert_eq!((err.number, err.problem), (1, Problem::SignatureInvalid));
    }
}
