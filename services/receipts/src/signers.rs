//! Merchants' signing keys: made on first use, sealed under the master key in the database,
//! and kept opened in memory once loaded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use fiscus_domain::keys::{self, ReceiptSigner};
use fiscus_kit::config::MasterKey;
use fiscus_kit::db::Database;

use crate::store::{self, StoredKey};

pub struct Signers {
    db: Database,
    master: MasterKey,
    opened: RwLock<HashMap<String, Arc<ReceiptSigner>>>,
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes)
}

impl Signers {
    pub fn new(db: Database, master: MasterKey) -> Self {
        Self {
            db,
            master,
            opened: RwLock::default(),
        }
    }

    /// The merchant's active signer, made and stored on first use.
    pub async fn for_merchant(&self, merchant_tin: &str) -> anyhow::Result<Arc<ReceiptSigner>> {
        if let Some(signer) = self
            .opened
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(merchant_tin)
        {
            return Ok(signer.clone());
        }
        // Boxed: the first call per merchant reads the database, and its future is large.
        Box::pin(self.open(merchant_tin)).await
    }

    /// Opens the merchant's active key, making and storing one if it has none, and keeps it.
    #[tracing::instrument(skip(self))]
    async fn open(&self, merchant_tin: &str) -> anyhow::Result<Arc<ReceiptSigner>> {
        let stored = match store::active_key(&self.db, merchant_tin).await? {
            Some(stored) => stored,
            None => {
                let signer = ReceiptSigner::from_seed(random()?);
                let key = StoredKey {
                    key_id: signer.key_id().to_owned(),
                    merchant_tin: merchant_tin.to_owned(),
                    algorithm: keys::ALGORITHM.to_owned(),
                    public_key: signer.public_key().to_vec(),
                    sealed_secret: keys::seal(
                        self.master.bytes(),
                        random()?,
                        &signer.seed(),
                        signer.key_id().as_bytes(),
                    ),
                    active: true,
                    created_at_us: chrono::Utc::now().timestamp_micros(),
                };
                store::insert_key_if_none(&self.db, &key).await?;
                tracing::info!(key_id = %key.key_id, "signing key created");
                // Another replica may have stored its key first: the stored one wins.
                store::active_key(&self.db, merchant_tin)
                    .await?
                    .context("the signing key just stored is not there")?
            }
        };
        let seed = keys::open(
            self.master.bytes(),
            &stored.sealed_secret,
            stored.key_id.as_bytes(),
        )
        .with_context(|| format!("opening signing key {}", stored.key_id))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| anyhow::anyhow!("signing key {} has a malformed secret", stored.key_id))?;
        let signer = Arc::new(ReceiptSigner::from_seed(seed));
        self.opened
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(merchant_tin.to_owned(), signer.clone());
        Ok(signer)
    }
}
