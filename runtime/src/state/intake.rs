//! Taking in a grant in one step: the user check, the contract claim, the
//! reference's `updateGrant`, the new transfer generation and the
//! transfer's access capability, which the gateway otherwise does in five
//! or more calls. The Redis store does it in one script (one round trip,
//! atomic); the default (the in-process store) runs the typed stores'
//! operations in the same order, each atomic as before. The keys touched
//! are those of [`super::UserStore`], [`super::TransferStore`] and
//! [`super::WebStore`]; nothing new is stored.

use super::{
    Begin, FileRecord, NewTransfer, StateError, Transfer, TransferStore, UserStore, WebKey,
    WebStore,
};
use std::time::Duration;

/// A verified grant to take in.
#[derive(Debug, Clone)]
pub struct GrantIntake<'a> {
    /// The user (signer, URL-safe base64).
    pub user: &'a str,
    /// The contract hash.
    pub contract_hash: &'a str,
    /// The grant's signature date (ms).
    pub date_ms: f64,
    /// The grant token as stored.
    pub token: &'a str,
    /// Bind the contract to the user first ([`UserStore::claim_contract`]),
    /// refusing a contract another user holds (contract-hash push ids).
    pub claim_contract: bool,
    /// When the grant is stored (it is the effective one): begin its
    /// transfer generation.
    pub begin: Option<TransferIntake<'a>>,
}

/// The transfer a stored grant begins.
#[derive(Debug, Clone)]
pub struct TransferIntake<'a> {
    /// The transfer id.
    pub id: &'a str,
    /// The new generation's record.
    pub transfer: NewTransfer<'a>,
    /// A value to store in the web store's key space ([`WebStore::kv_set`])
    /// once the generation is begun or joined (not for a foreign transfer):
    /// the access capability of the transfer.
    pub capability: Option<KvEntry<'a>>,
}

/// One [`WebStore`] key-value entry.
#[derive(Debug, Clone)]
pub struct KvEntry<'a> {
    /// The key.
    pub key: WebKey<'a>,
    /// The value.
    pub value: &'a str,
    /// Its lifetime.
    pub ttl: Duration,
}

/// What became of a grant taken in.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// The user is neither bound here nor holds dumps: nothing changed.
    UnknownUser,
    /// Another user holds the contract: nothing changed.
    ContractBound {
        /// The user who holds it.
        owner: String,
    },
    /// A stored grant of the same user and contract is as new or newer and
    /// stays the effective one; nothing changed (no transfer begun).
    Kept {
        /// The effective (stored) token.
        effective: String,
    },
    /// The grant was stored; no transfer was asked for.
    Stored,
    /// The grant was stored and its transfer begun (or joined, or found
    /// foreign: see [`Begin`]).
    Begun {
        /// The outcome of [`TransferStore::begin_transfer`].
        begin: Begin,
        /// The transfer as it is after the change (unless foreign).
        transfer: Option<Box<Transfer>>,
        /// The files of its generation (none unless it was joined).
        files: Vec<FileRecord>,
    },
}

/// Taking in grants in one step; implemented by every store.
#[async_trait::async_trait]
pub trait GrantStore: UserStore + TransferStore + WebStore {
    /// Takes in a verified grant: [`UserStore::is_known_user`], then
    /// [`UserStore::claim_contract`] when asked, [`UserStore::update_grant`],
    /// and when the grant is stored and a transfer is asked for,
    /// [`TransferStore::begin_transfer`] (which tells the subscribers), the
    /// capability and the transfer's status. The state afterwards is the
    /// one those calls leave, key for key.
    async fn take_grant(&self, intake: &GrantIntake<'_>) -> Result<Intake, StateError> {
        if !self.is_known_user(intake.user).await? {
            return Ok(Intake::UnknownUser);
        }
        if intake.claim_contract {
            let owner = self
                .claim_contract(intake.contract_hash, intake.user)
                .await?;
            if owner != intake.user {
                return Ok(Intake::ContractBound { owner });
            }
        }
        let (effective, stored) = self
            .update_grant(
                intake.user,
                intake.contract_hash,
                intake.date_ms,
                intake.token,
            )
            .await?;
        if !stored {
            return Ok(Intake::Kept { effective });
        }
        let Some(begin_with) = &intake.begin else {
            return Ok(Intake::Stored);
        };
        let begin = self
            .begin_transfer(begin_with.id, &begin_with.transfer)
            .await?;
        if begin.foreign {
            return Ok(Intake::Begun {
                begin,
                transfer: None,
                files: Vec::new(),
            });
        }
        if let Some(kv) = &begin_with.capability {
            self.kv_set(&kv.key, kv.value, Some(kv.ttl)).await?;
        }
        let transfer = self.transfer(begin_with.id).await?.map(Box::new);
        let files = match &transfer {
            Some(t) => self.files(begin_with.id, t.generation).await?,
            None => Vec::new(),
        };
        Ok(Intake::Begun {
            begin,
            transfer,
            files,
        })
    }
}
