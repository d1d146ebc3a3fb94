//! Replicated KV stores and task lists through the agent ([`x0x_proto::collab`]): each call
//! is one node call on the driver's task.

use bytes::Bytes;
use x0x_proto::collab::{AccessPolicy, CollabError, KvEntry, StoreKind, StoreSnapshot, Task};
use x0x_proto::{AgentId, Node, Time};

use super::Agent;
use crate::driver::{Command, NodeCall};
use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// A store open on this agent, as listed by [`Agent::stores`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// The store's topic (x0x uses it as the id).
    pub topic: String,
    /// KV store or task list.
    pub kind: StoreKind,
    /// Its name.
    pub name: String,
    /// A KV store's owner, once its creation arrived.
    pub owner: Option<AgentId>,
    /// Who may write.
    pub policy: AccessPolicy,
    /// Changes applied.
    pub changes: usize,
    /// Bytes of signed changes held.
    pub bytes: usize,
}

impl<R: Runtime> Agent<R> {
    /// Runs `f` on the node (on the driver's task) and returns its answer.
    async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Time) -> T + Send + 'static,
    ) -> Result<T> {
        self.request(|reply| {
            Command::WithNode(NodeCall(Box::new(move |node, now| {
                reply.send(f(node, now));
            })))
        })
        .await
    }

    async fn collab<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Time) -> std::result::Result<T, CollabError> + Send + 'static,
    ) -> Result<T> {
        self.with_node(f).await?.map_err(Error::Store)
    }

    /// Creates a store on `topic` owned by this agent (a task list is open to every agent;
    /// creating one on a topic others use joins theirs).
    pub async fn create_store(
        &self,
        kind: StoreKind,
        topic: &str,
        name: &str,
        policy: AccessPolicy,
        allow: Vec<AgentId>,
    ) -> Result<()> {
        let (topic, name) = (topic.to_owned(), name.to_owned());
        self.collab(move |n, now| n.create_store(now, kind, &topic, &name, policy, &allow))
            .await
    }

    /// Joins the store on `topic` (catching up from neighbours); `owner` pins a KV store's
    /// owner.
    pub async fn join_store(
        &self,
        kind: StoreKind,
        topic: &str,
        owner: Option<AgentId>,
    ) -> Result<()> {
        let topic = topic.to_owned();
        self.collab(move |n, now| n.join_store(now, kind, &topic, owner))
            .await
    }

    /// Reopens a store saved with [`Agent::store_snapshot`].
    pub async fn restore_store(&self, snapshot: StoreSnapshot) -> Result<()> {
        self.collab(move |n, now| n.restore_store(now, snapshot))
            .await
    }

    /// Closes the store on `topic` here.
    pub async fn leave_store(&self, topic: &str) -> Result<()> {
        let topic = topic.to_owned();
        self.collab(move |n, now| n.leave_store(now, &topic)).await
    }

    /// Every store open here.
    pub async fn stores(&self) -> Result<Vec<StoreInfo>> {
        self.with_node(|n, _| {
            n.stores()
                .map(|r| StoreInfo {
                    topic: r.topic().to_owned(),
                    kind: r.kind(),
                    name: r.name(),
                    owner: r.owner(),
                    policy: r.policy(),
                    changes: r.change_count(),
                    bytes: r.proof_bytes(),
                })
                .collect()
        })
        .await
    }

    /// The store on `topic` as saved across restarts.
    pub async fn store_snapshot(&self, topic: &str) -> Result<Option<StoreSnapshot>> {
        let topic = topic.to_owned();
        self.with_node(move |n, _| n.store_snapshot(&topic)).await
    }

    /// Writes `key` in the KV store on `topic`.
    pub async fn store_put(
        &self,
        topic: &str,
        key: &str,
        value: Bytes,
        content_type: &str,
    ) -> Result<()> {
        let (topic, key, ct) = (topic.to_owned(), key.to_owned(), content_type.to_owned());
        self.collab(move |n, now| n.store_put(now, &topic, &key, value, &ct))
            .await
    }

    /// Removes `key` from the KV store on `topic`.
    pub async fn store_remove(&self, topic: &str, key: &str) -> Result<()> {
        let (topic, key) = (topic.to_owned(), key.to_owned());
        self.collab(move |n, now| n.store_remove(now, &topic, &key))
            .await
    }

    /// Adds `agent` to (or removes it from) a KV store's allowlist (owner only).
    pub async fn store_allow(&self, topic: &str, agent: AgentId, allowed: bool) -> Result<()> {
        let topic = topic.to_owned();
        self.collab(move |n, now| n.store_allow(now, &topic, agent, allowed))
            .await
    }

    /// The entry of `key` in the KV store on `topic`.
    pub async fn store_get(&self, topic: &str, key: &str) -> Result<Option<KvEntry>> {
        let (topic, key) = (topic.to_owned(), key.to_owned());
        self.collab(move |n, _| {
            let r = n.store(&topic).ok_or(CollabError::UnknownStore)?;
            Ok(r.kv_get(&key))
        })
        .await
    }

    /// Every entry of the KV store on `topic`, in key order.
    pub async fn store_entries(&self, topic: &str) -> Result<Vec<(String, KvEntry)>> {
        let topic = topic.to_owned();
        self.collab(move |n, _| {
            let r = n.store(&topic).ok_or(CollabError::UnknownStore)?;
            if r.kind() != StoreKind::Kv {
                return Err(CollabError::UnknownStore);
            }
            Ok(r.kv_entries())
        })
        .await
    }

    /// Adds a task to the task list on `topic`; its id.
    pub async fn task_add(&self, topic: &str, title: &str, description: &str) -> Result<String> {
        let (topic, title, desc) = (topic.to_owned(), title.to_owned(), description.to_owned());
        self.collab(move |n, now| n.task_add(now, &topic, &title, &desc))
            .await
    }

    /// Claims task `id` for this agent.
    pub async fn task_claim(&self, topic: &str, id: &str) -> Result<()> {
        let (topic, id) = (topic.to_owned(), id.to_owned());
        self.collab(move |n, now| n.task_claim(now, &topic, &id))
            .await
    }

    /// Completes task `id` (this agent must hold the claim).
    pub async fn task_complete(&self, topic: &str, id: &str) -> Result<()> {
        let (topic, id) = (topic.to_owned(), id.to_owned());
        self.collab(move |n, now| n.task_complete(now, &topic, &id))
            .await
    }

    /// Moves task `id` to index `to` of its list.
    pub async fn task_move(&self, topic: &str, id: &str, to: usize) -> Result<()> {
        let (topic, id) = (topic.to_owned(), id.to_owned());
        self.collab(move |n, now| n.task_move(now, &topic, &id, to))
            .await
    }

    /// The tasks of the task list on `topic`, in list order.
    pub async fn tasks(&self, topic: &str) -> Result<Vec<Task>> {
        let topic = topic.to_owned();
        self.collab(move |n, _| {
            let r = n.store(&topic).ok_or(CollabError::UnknownStore)?;
            if r.kind() != StoreKind::TaskList {
                return Err(CollabError::UnknownStore);
            }
            Ok(r.tasks())
        })
        .await
    }
}
