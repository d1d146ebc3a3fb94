//! KV store operations on a [`Replica`]: entries under `k/<key>`, last writer wins per key.

use automerge::transaction::Transactable;
use automerge::{Change, ROOT, ReadDoc, ScalarValue};
use bytes::Bytes;

use super::error::CollabError;
use super::layout::{self, KvEntry};
use super::{CollabConfig, Replica, StoreKind};
use crate::identity::AgentId;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

impl Replica {
    fn expect_kind(&self, kind: StoreKind) -> Result<(), CollabError> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(CollabError::WrongKind {
                topic: self.topic().to_owned(),
                actual: self.kind().as_str(),
                wanted: kind.as_str(),
            })
        }
    }

    /// Writes `key`; the change to sign and publish.
    pub(crate) fn kv_put(
        &mut self,
        now_ms: u64,
        key: &str,
        value: Bytes,
        content_type: &str,
        config: &CollabConfig,
    ) -> Result<Option<Change>, CollabError> {
        self.expect_kind(StoreKind::Kv)?;
        check_key(key)?;
        if value.len() > config.max_value_len {
            return Err(CollabError::ValueTooLarge {
                len: value.len(),
                max: config.max_value_len,
            });
        }
        if content_type.len() > 256 {
            return Err(CollabError::Invalid {
                what: "content_type",
                why: "longer than 256 bytes".into(),
            });
        }
        self.may_write()?;
        let created_at_ms = self.kv_get(key).map_or(now_ms, |e| e.created_at_ms);
        let entry = KvEntry {
            content_type: content_type.to_owned(),
            created_at_ms,
            updated_at_ms: now_ms,
            value,
        };
        let bytes = layout::encode(&entry);
        self.commit(now_ms, |tx| {
            tx.put(ROOT, layout::entry_key(key), ScalarValue::Bytes(bytes))
        })
    }

    /// Removes `key`.
    pub(crate) fn kv_remove(
        &mut self,
        now_ms: u64,
        key: &str,
    ) -> Result<Option<Change>, CollabError> {
        self.expect_kind(StoreKind::Kv)?;
        if self.kv_get(key).is_none() {
            return Err(CollabError::UnknownKey);
        }
        self.may_write()?;
        self.commit(now_ms, |tx| tx.delete(ROOT, layout::entry_key(key)))
    }

    /// Adds (`true`) or removes an agent from the allowlist (owner only).
    pub(crate) fn kv_allow(
        &mut self,
        now_ms: u64,
        agent: &AgentId,
        allowed: bool,
    ) -> Result<Option<Change>, CollabError> {
        self.expect_kind(StoreKind::Kv)?;
        if self.owner() != Some(self.author) {
            return Err(CollabError::NotPermitted(super::Refusal::OwnerOnly));
        }
        let k = layout::allow_key(agent);
        self.commit(now_ms, |tx| {
            if allowed {
                tx.put(ROOT, k, ScalarValue::Boolean(true))
            } else {
                tx.delete(ROOT, k)
            }
        })
    }

    /// A write of `key` with no permission check (a misbehaving node's), made on a copy of
    /// the document under a throwaway actor of this agent: the replica itself stays as the
    /// policy says, and judges the forgery like every other replica when it comes back.
    #[cfg(feature = "adversary")]
    pub(crate) fn kv_put_unchecked(
        &self,
        now_ms: u64,
        key: &str,
        value: Bytes,
        incarnation: u64,
    ) -> Result<Change, CollabError> {
        let entry = KvEntry {
            content_type: "application/octet-stream".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            value,
        };
        let bytes = layout::encode(&entry);
        let mut fork = self
            .doc
            .fork()
            .with_actor(layout::actor_for(&self.author, incarnation));
        let mut tx = fork.transaction();
        tx.put(ROOT, layout::entry_key(key), ScalarValue::Bytes(bytes))
            .map_err(|e| CollabError::Invalid {
                what: "change",
                why: e.to_string(),
            })?;
        let (hash, _) = tx.commit();
        hash.and_then(|h| fork.get_change_by_hash(&h))
            .ok_or(CollabError::Invalid {
                what: "change",
                why: "nothing written".into(),
            })
    }

    /// The value of `key`.
    pub fn kv_get(&self, key: &str) -> Option<KvEntry> {
        match self.doc.get(ROOT, layout::entry_key(key)) {
            Ok(Some((v, _))) => match v.as_scalar() {
                Some(ScalarValue::Bytes(b)) => layout::decode(b),
                _ => None,
            },
            _ => None,
        }
    }

    /// Every key and its entry, in key order.
    pub fn kv_entries(&self) -> Vec<(String, KvEntry)> {
        self.doc
            .map_range(ROOT, "k/".to_owned().."k0".to_owned())
            .filter_map(|item| {
                let key = item.key.strip_prefix("k/")?.to_owned();
                let v = automerge::Value::from(item.value);
                match v.as_scalar() {
                    Some(ScalarValue::Bytes(b)) => layout::decode(b).map(|e| (key, e)),
                    _ => None,
                }
            })
            .collect()
    }
}

fn check_key(key: &str) -> Result<(), CollabError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(CollabError::Invalid {
            what: "key",
            why: format!("must be 1..={MAX_KEY_LEN} bytes"),
        });
    }
    Ok(())
}
