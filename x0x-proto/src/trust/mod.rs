//! Contacts, trust levels, machine pinning, revocations, and the evaluator that decides what
//! an agent's messages may do.
//!
//! The [`ContactStore`] is pure and bounded: it takes `now` as unix seconds, never grows past
//! its [`TrustConfig`] caps (a counted refusal or eviction instead), and round-trips through
//! [`TrustState`], the shape a driver saves (`contacts.json` in the daemon). The node holds
//! one, applies [`ContactStore::evaluate`] on every path — announcements, pub/sub delivery,
//! direct messages, discovery lists — and reports each change as
//! [`Event::TrustChanged`](crate::Event::TrustChanged) so the driver can persist it.
//!
//! The evaluator's order (x0x's): not a contact → `unknown`; blocked or revoked →
//! `reject_blocked`; pinned identity on an unpinned machine → `reject_machine_mismatch`;
//! pinned on a pinned machine → `accept`; trusted → `accept`; known → `accept_with_flag`;
//! otherwise `unknown`. docs/protocol.md says where each decision is applied.

mod contact;
mod level;
mod store;
#[cfg(test)]
mod tests;

pub use contact::{Contact, MachineRecord, Revocation};
pub use level::{IdentityType, ParseError, TrustDecision, TrustLevel};
pub use store::{ContactStore, TrustConfig, TrustError, TrustState, TrustStateError, TrustStats};
