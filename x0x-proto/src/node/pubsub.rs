//! Pub/sub: subscriptions, publishing (one signature per batch), and the path of a GOSSIP
//! frame through the node: dedup, verification (discovery records are merged before they are
//! relayed), the age check, the broadcast layer, delivery.

use bytes::Bytes;
use rand_core::Rng;

use super::{Delivery, Event, Node};
use crate::announce::RejectReason;
use crate::broadcast::{BroadcastCacheSizes, PubSubBody, TopicPeers};
use crate::identity::{AgentId, Domain, MachineId};
use crate::time::Time;
use crate::wire::{self, MessageId, RecordKind, TopicId};

/// Why [`Node::publish`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is larger than [`Config::max_payload_len`](super::Config::max_payload_len).
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl Node {
    // ----- commands -----

    // ----- pub/sub (filled in by the broadcast layer) -----

    /// Subscribes to `topic`: messages published on it are delivered as [`Event::Message`].
    pub fn subscribe(&mut self, now: Time, topic: TopicId) {
        self.start(now);
        if self.publish_joined.remove(&topic).is_none() {
            self.broadcast.subscribe(topic);
        }
        self.drain_layers(now);
    }

    /// Unsubscribes from `topic`. A store's topic stays carried while the store is open.
    pub fn unsubscribe(&mut self, now: Time, topic: TopicId) {
        self.start(now);
        self.publish_joined.remove(&topic);
        if self.collab.contains_key(&topic) {
            return;
        }
        self.broadcast.unsubscribe(topic);
        self.drain_layers(now);
    }

    /// Whether the application subscribes to `topic` (not only carries it to publish).
    fn app_subscribed(&self, topic: &TopicId) -> bool {
        self.broadcast.is_subscribed(topic) && !self.publish_joined.contains_key(topic)
    }

    /// Joins `topic` to publish on it, if the node does not carry it: PlumTree paths run
    /// between a topic's carriers only, so a publisher needs a place in the topic's tree.
    /// `false` when the topic cap refuses it.
    fn carry_to_publish(&mut self, now: Time, topic: TopicId) -> bool {
        if let Some(last) = self.publish_joined.get_mut(&topic) {
            *last = now;
            return true;
        }
        if self.broadcast.is_subscribed(&topic) {
            return true;
        }
        if self.broadcast.subscribe(topic) {
            self.publish_joined.insert(topic, now);
            true
        } else {
            false
        }
    }

    /// Leaves the topics joined only to publish whose last publish is older than
    /// [`Config::publish_carry`](super::Config::publish_carry).
    pub(super) fn leave_publish_topics(&mut self, now: Time) {
        let carry = self.config.publish_carry;
        let idle: Vec<TopicId> = self
            .publish_joined
            .iter()
            .filter(|(_, last)| now.saturating_since(**last) >= carry)
            .map(|(t, _)| *t)
            .collect();
        for t in idle {
            self.publish_joined.remove(&t);
            self.broadcast.unsubscribe(t);
        }
        self.drain_layers(now);
    }

    /// Publishes `payload` on `topic`, signed once by this node's agent key. Returns the
    /// message id. Publishing the same bytes twice makes two messages.
    pub fn publish(
        &mut self,
        now: Time,
        topic: TopicId,
        payload: Bytes,
    ) -> Result<MessageId, PublishError> {
        self.publish_batch(now, vec![(topic, payload)])
            .pop()
            .unwrap_or_else(|| unreachable!("one result per item"))
    }

    /// Publishes several messages (on one topic or many) under **one signature** per
    /// [`wire::MAX_BATCH`] of them ([`wire::BatchProof`]): what a driver calls with the
    /// publishes that queued up while it was busy, so a busy publisher signs about once per
    /// batch instead of once per message. Each message still travels, verifies and is
    /// delivered on its own, with the same id it would have alone. Results are in input order;
    /// a refused item (payload too large) does not stop the others.
    ///
    /// A message on a topic this node subscribes to is also delivered here, once, as an
    /// [`Event::Message`] with `hops` 0 and `via` this machine: an application's own
    /// publishes reach its own subscribers (the network never brings them back: the id is
    /// already known).
    pub fn publish_batch(
        &mut self,
        now: Time,
        items: Vec<(TopicId, Bytes)>,
    ) -> Vec<Result<MessageId, PublishError>> {
        self.start(now);
        let mut results = Vec::with_capacity(items.len());
        let mut accepted = Vec::with_capacity(items.len());
        let mut own = Vec::new();
        for (topic, payload) in items {
            if payload.len() > self.config.max_payload_len {
                results.push(Err(PublishError::PayloadTooLarge {
                    len: payload.len(),
                    max: self.config.max_payload_len,
                }));
                continue;
            }
            let (body, bytes) = self.pubsub_body(now, topic, payload);
            let id = MessageId::of_body(&bytes);
            results.push(Ok(id));
            accepted.push((topic, bytes));
            if self.app_subscribed(&topic) {
                own.push(Delivery {
                    topic,
                    id,
                    author: self.agent_id(),
                    hops: 0,
                    via: self.machine_id(),
                    trust_level: self.trust.level(&self.agent_id()),
                    published_at_ms: body.published_at_ms,
                    payload: body.payload,
                });
            }
        }
        let (topics, bodies): (Vec<TopicId>, Vec<Bytes>) = accepted.into_iter().unzip();
        for t in &topics {
            // At the topic cap the message still goes out to what the node knows of the
            // topic (nothing, if it carries nothing of it); the refusal is counted.
            self.carry_to_publish(now, *t);
        }
        self.stats.publish_signatures += bodies.len().div_ceil(wire::MAX_BATCH) as u64;
        let signed =
            wire::Signed::sign_batch(&self.identity.agent, Domain::PubSubMessage, bodies, true);
        for (topic, signed) in topics.into_iter().zip(signed) {
            self.broadcast.publish(now, topic, signed);
        }
        for d in own {
            self.emit(Event::Message(d));
        }
        self.drain_layers(now);
        results
    }

    /// Signs `payload` as one pub/sub message on `topic`, sends it down the topic's tree and
    /// returns it: the replicated stores publish their changes this way and keep the signed
    /// message as the proof of authorship. No `max_payload_len` check: the caller bounds it.
    pub(super) fn publish_signed(
        &mut self,
        now: Time,
        topic: TopicId,
        payload: Bytes,
    ) -> wire::Signed {
        let (_, bytes) = self.pubsub_body(now, topic, payload);
        self.carry_to_publish(now, topic);
        self.stats.publish_signatures += 1;
        let signed = wire::Signed::sign_batch(
            &self.identity.agent,
            Domain::PubSubMessage,
            vec![bytes],
            true,
        )
        .pop()
        .unwrap_or_else(|| unreachable!("one body, one signed message"));
        self.broadcast.publish(now, topic, signed.clone());
        self.drain_layers(now);
        signed
    }

    /// A new pub/sub body for `payload` on `topic` (a fresh nonce, stamped `now`) and its
    /// encoding, the bytes that get signed.
    fn pubsub_body(&mut self, now: Time, topic: TopicId, payload: Bytes) -> (PubSubBody, Bytes) {
        let body = PubSubBody {
            topic,
            nonce: self.rng.next_u64(),
            published_at_ms: now.as_millis(),
            payload,
        };
        let bytes = postcard::to_allocvec(&body)
            .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data"));
        (body, Bytes::from(bytes))
    }

    // ----- queries -----

    /// Eager and lazy peers of a topic, if this node carries it.
    pub fn topic_peers(&self, topic: &TopicId) -> Option<TopicPeers> {
        self.broadcast.topic_peers(topic)
    }

    /// How full the broadcast caches are.
    pub fn broadcast_cache_sizes(&self) -> BroadcastCacheSizes {
        self.broadcast.sizes()
    }

    // ----- the GOSSIP path -----

    /// A GOSSIP frame from `peer`.
    pub(super) fn on_gossip(&mut self, now: Time, peer: MachineId, mut g: wire::Gossip) {
        if !self.membership.is_active(&peer) {
            self.stats.frames_from_non_neighbor += 1;
        }
        let id = g.message.id();
        if self.broadcast.is_known(&id) {
            self.broadcast.on_duplicate(now, peer, g.topic, &id);
            self.broadcast
                .on_depth(now, peer, g.topic, g.root, g.depth, false);
            return;
        }
        // Verify (and, for discovery records, merge) before relaying: a forged, stale or
        // superseded record is not forwarded.
        if let Some(kind) = self.record_kind(&g.topic) {
            if self.accept_record(now, kind, &g.message).is_ok() {
                self.verifier.share_key(&mut g.message);
                self.broadcast
                    .on_depth(now, peer, g.topic, g.root, g.depth, true);
                self.broadcast
                    .on_gossip_verified(now, now, peer, g.topic, id, g.hops, g.message);
            }
            return;
        }
        match self.open_pubsub(&g.message) {
            Ok((author, body)) if body.topic == g.topic => {
                // A store's changes stay valid at any age (anti-entropy relays old ones, and a
                // replay is a duplicate the store drops), so its topic skips the age check.
                let store = self.collab.contains_key(&g.topic);
                let published = Time::from_millis(body.published_at_ms);
                if !store && let Some(why) = self.too_old(now, &body) {
                    self.stats.messages_rejected.reason.count(&why);
                    // Remembered so a repeat costs a lookup, not another verification; stamped
                    // no later than the skew allows, so a far-future stamp cannot pin its id
                    // in the window for good.
                    let latest = now.saturating_add(self.config.broadcast.max_clock_skew);
                    self.broadcast.mark_seen(published.min(latest), id);
                    return;
                }
                // Young enough, unknown, but older than an id the window forgot under a flood:
                // it may be a replay of it (broadcast/seen.rs).
                if !store && self.broadcast.refuse_below_floor(id, published) {
                    return;
                }
                // A store's message is stamped by its arrival: it has no age limit.
                let stamp = if store { now } else { published };
                self.verifier.share_key(&mut g.message);
                self.broadcast
                    .on_depth(now, peer, g.topic, g.root, g.depth, true);
                let deliver = self.broadcast.on_gossip_verified(
                    now,
                    stamp,
                    peer,
                    g.topic,
                    id,
                    g.hops,
                    g.message.clone(),
                );
                if deliver && store {
                    self.on_store_message(now, author, g.topic, g.message, &body.payload);
                } else if deliver && g.topic == self.topics.inbox {
                    self.on_inbox(now, author, &body.payload);
                } else if deliver && !self.publish_joined.contains_key(&g.topic) {
                    // A blocked author's message is relayed (others may not block it) but
                    // never delivered here.
                    let trust_level = self.trust.level(&author);
                    if trust_level == crate::trust::TrustLevel::Blocked {
                        self.trust_refused.messages_blocked += 1;
                    } else {
                        self.trust.touch(&author, now.as_secs());
                        self.emit(Event::Message(Delivery {
                            topic: g.topic,
                            id,
                            author,
                            hops: g.hops,
                            via: peer,
                            trust_level,
                            published_at_ms: body.published_at_ms,
                            payload: body.payload,
                        }));
                    }
                }
            }
            Ok(_) => self.stats.messages_rejected.topic_mismatch += 1,
            Err(why) => self.stats.messages_rejected.reason.count(&why),
        }
    }

    /// The kind of discovery record a topic carries, if it is a discovery topic.
    fn record_kind(&self, topic: &TopicId) -> Option<RecordKind> {
        if *topic == self.topics.announce {
            Some(RecordKind::Announcement)
        } else if *topic == self.topics.rendezvous {
            Some(RecordKind::Rendezvous)
        } else if *topic == self.topics.kem {
            Some(RecordKind::KemKey)
        } else {
            None
        }
    }

    /// Why a verified pub/sub message is refused for its age: published longer ago than
    /// `max_message_age` (a replay after the dedup window would be), or further ahead than
    /// `max_clock_skew`.
    fn too_old(&self, now: Time, body: &PubSubBody) -> Option<RejectReason> {
        let cfg = &self.config.broadcast;
        let now_ms = now.as_millis();
        let age_ms = u64::try_from(cfg.max_message_age.as_millis()).unwrap_or(u64::MAX);
        let skew_ms = u64::try_from(cfg.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if body.published_at_ms > now_ms.saturating_add(skew_ms) {
            Some(RejectReason::FutureTimestamp)
        } else if now_ms.saturating_sub(body.published_at_ms) > age_ms {
            Some(RejectReason::Stale)
        } else {
            None
        }
    }

    /// Verifies a pub/sub message: agent-signed, valid signature, well-formed body.
    pub(super) fn open_pubsub(
        &mut self,
        signed: &wire::Signed,
    ) -> Result<(AgentId, PubSubBody), RejectReason> {
        let author = signed.agent().ok_or(RejectReason::WrongSigner)?;
        self.verify(signed, Domain::PubSubMessage)?;
        let body = signed.decode_body().map_err(|_| RejectReason::Malformed)?;
        Ok((author, body))
    }
}
