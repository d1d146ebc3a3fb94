//! [`Subscription`]: one subscriber's queue of a topic's [`Message`]s.

use std::fmt;

use x0x_proto::node::Delivery;
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{AgentId, MachineId};

use crate::driver::{Command, SubId};

/// A live subscription to one topic.
pub struct Subscription {
    pub(super) topic: String,
    pub(super) topic_id: TopicId,
    pub(super) id: SubId,
    pub(super) rx: async_channel::Receiver<Delivery>,
    /// Where the unsubscribe goes on drop; weak, so a subscription does not keep the agent up.
    pub(super) commands: async_channel::WeakSender<Command>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message, or `None` once the agent shut down or this subscriber was dropped
    /// for falling [`NetworkConfig::subscription_buffer`](crate::network::NetworkConfig::subscription_buffer) messages behind.
    pub async fn recv(&mut self) -> Option<Message> {
        let d = self.rx.recv().await.ok()?;
        Some(Message {
            topic: self.topic.clone(),
            payload: d.payload.to_vec(),
            sender: d.author,
            id: d.id,
            via: d.via,
            hops: d.hops,
            published_at_ms: d.published_at_ms,
            trust_level: d.trust_level,
        })
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.upgrade() {
            let _ = commands.try_send(Command::Unsubscribe {
                topic: self.topic_id,
                id: self.id,
            });
        }
    }
}

/// A pub/sub message delivered to a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic name it was subscribed under.
    pub topic: String,
    /// The application payload.
    pub payload: Vec<u8>,
    /// The publishing agent, proven by its signature.
    pub sender: AgentId,
    /// The message id.
    pub id: MessageId,
    /// The machine it arrived from (the last hop).
    pub via: MachineId,
    /// Hops travelled (1 = straight from the publisher).
    pub hops: u8,
    /// The publisher's clock at publish time, unix milliseconds.
    pub published_at_ms: u64,
    /// The publisher's trust level here (a blocked publisher's messages never arrive).
    pub trust_level: x0x_proto::trust::TrustLevel,
}
