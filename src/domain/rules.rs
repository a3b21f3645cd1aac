//! [`Rules`]: every configured limit, in one value. The owners' state machines take
//! their part of it; recovery needs it to rebuild owners that replayed events create.

use super::catalog::CatalogRules;
use super::date::DateRules;
use super::queue::QueueRules;
use super::wallet::WalletRules;

/// Every limit the owners enforce, from the configuration: what the engine starts its
/// actors with and what replay needs to rebuild them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Concert creation.
    pub catalog: CatalogRules,
    /// Holds.
    pub date: DateRules,
    /// Waiting rooms.
    pub queue: QueueRules,
    /// Wallets.
    pub wallet: WalletRules,
    /// Messages each actor's mailbox holds.
    pub mailbox_len: usize,
    /// Number of wallet shards.
    pub wallet_shards: usize,
}
