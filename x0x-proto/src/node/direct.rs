//! The node's side of direct messages: path choice, sending, receiving, acks and retries.
//! The types, envelope checks and the state live in [`crate::direct`].

use std::time::Duration;

use bytes::Bytes;
use rand_core::Rng;

use super::discovery::OwnBinding;
use super::{Event, Node, Timer};
use crate::announce::{KemAnnouncement, RejectReason};
use crate::broadcast::PubSubBody;
use crate::direct::{
    DirectEnvelope, DirectError, DirectFailure, DirectMessage, DirectOptions, DirectOutcome,
    DirectPath, DirectReceipt, DirectReject, InboxItem, Outgoing, PathPreference, RejectCode,
    RequestId, RttKey, SealedEnvelope,
};
use crate::identity::{AgentId, Domain, MachineId, SignerId};
use crate::time::Time;
use crate::wire::{self, Frame, RecordKind};

impl Node {
    /// Sends `payload` to agent `to`, choosing the path automatically. Returns the request id
    /// at once; the outcome comes later as [`Event::DirectReceipt`] or [`Event::DirectFailed`].
    pub fn send_direct(
        &mut self,
        now: Time,
        to: AgentId,
        payload: Bytes,
    ) -> Result<RequestId, DirectError> {
        self.send_direct_with(now, to, payload, DirectOptions::default())
    }

    /// [`Node::send_direct`] with explicit options (path preference, lifetime).
    pub fn send_direct_with(
        &mut self,
        now: Time,
        to: AgentId,
        payload: Bytes,
        opts: DirectOptions,
    ) -> Result<RequestId, DirectError> {
        self.start(now);
        let cfg = &self.direct.config;
        if payload.len() > cfg.max_payload_len {
            return Err(DirectError::PayloadTooLarge {
                len: payload.len(),
                max: cfg.max_payload_len,
            });
        }
        let lifetime = opts.lifetime.unwrap_or(cfg.default_lifetime);
        if lifetime.is_zero() || lifetime > cfg.max_lifetime {
            return Err(DirectError::BadLifetime);
        }
        if self.direct.outgoing.len() >= cfg.max_outstanding {
            return Err(DirectError::TooManyOutstanding);
        }
        if self.trust.is_blocked(&to) {
            self.trust_refused.direct_to_blocked += 1;
            return Err(DirectError::Blocked(to));
        }
        let mut raw = [0u8; 16];
        self.rng.fill_bytes(&mut raw);
        let id = RequestId(raw);
        let created_at_ms = now.as_millis();
        let expires_at_ms = (now + lifetime).as_millis();
        if to == self.agent_id() {
            // A message to oneself short-circuits (as in x0x): no network, delivered and
            // receipted now.
            self.direct.stats.sent += 1;
            self.direct.stats.attempts.count(&DirectPath::Local);
            self.direct.stats.delivered += 1;
            self.direct.stats.receipts += 1;
            self.emit(Event::DirectMessage(DirectMessage {
                request_id: id,
                sender: to,
                sender_machine: self.machine_id(),
                path: DirectPath::Local,
                trust: crate::trust::TrustDecision::Accept,
                created_at_ms,
                payload,
            }));
            self.emit(Event::DirectReceipt(DirectReceipt {
                request_id: id,
                recipient: to,
                path: DirectPath::Local,
                retries: 0,
                elapsed: Duration::ZERO,
            }));
            return Ok(id);
        }
        let Some(known) = self.discovery.agent(now, &to) else {
            return Err(DirectError::RecipientUnknown(to));
        };
        if opts.path == PathPreference::Sealed && known.kem_public_key.is_none() {
            return Err(DirectError::RecipientKeyUnknown(to));
        }
        self.direct.stats.sent += 1;
        self.direct.outgoing.insert(
            id,
            Outgoing {
                recipient: to,
                payload,
                created_at_ms,
                expires_at_ms,
                pref: opts.path,
                started: now,
                sent: Vec::new(),
                deadline: now,
                machine: None,
            },
        );
        self.direct_attempt(now, id);
        self.drain_layers(now);
        Ok(id)
    }

    /// Direct messages in flight from this node.
    pub fn direct_in_flight(&self) -> usize {
        self.direct.outgoing.len()
    }

    /// The smoothed RTT measured by direct-message acks over the connection to `machine`.
    pub fn direct_rtt(&self, machine: &MachineId) -> Option<Duration> {
        self.direct.srtt(RttKey::Machine(*machine))
    }

    /// This agent's card: its signed identity and KEM announcements (signing fresh ones if
    /// none was published yet). Another node imports it with [`Node::import_agent_card`] to
    /// reach this agent without waiting for discovery.
    pub fn agent_card(&mut self, now: Time) -> Vec<wire::Record> {
        let binding = self.own_binding(now);
        vec![
            wire::Record {
                kind: RecordKind::Announcement,
                signed: binding.identity,
            },
            wire::Record {
                kind: RecordKind::KemKey,
                signed: binding.kem,
            },
        ]
    }

    /// Verifies and caches the records of another agent's card (as if they arrived by gossip).
    pub fn import_agent_card(
        &mut self,
        now: Time,
        records: &[wire::Record],
    ) -> Result<(), RejectReason> {
        self.start(now);
        let mut result = Ok(());
        for r in records {
            if let Err(e) = self.accept_record(now, r.kind, &r.signed)
                && e != RejectReason::NotNewer
            {
                result = Err(e);
            }
        }
        self.drain_layers(now);
        result
    }

    pub(super) fn kem_record(&self, announced_at: u64) -> wire::Signed {
        let ann = KemAnnouncement {
            kem_key: self.direct.kem.public_key().clone(),
            announced_at,
        };
        wire::Signed::sign(&self.identity.agent, Domain::KemAnnouncement, &ann, false)
    }

    /// Our newest signed identity + KEM announcements; signs new ones when there are none or
    /// they are older than half the identity TTL (so receivers still accept them).
    fn own_binding(&mut self, now: Time) -> OwnBinding {
        let half_ttl = self.discovery.config().identity_ttl.as_secs() / 2;
        if let Some(b) = &self.own_binding
            && b.announced_at + half_ttl > now.as_secs()
        {
            return b.clone();
        }
        let announced_at = now.as_secs();
        let identity = self.identity_announcement(announced_at, self.announceable_addrs());
        let identity = wire::Signed::sign(
            &self.identity.agent,
            Domain::IdentityAnnouncement,
            &identity,
            true,
        );
        let kem = self.kem_record(announced_at);
        let _ = self.accept_record(now, RecordKind::Announcement, &identity);
        let _ = self.accept_record(now, RecordKind::KemKey, &kem);
        let binding = OwnBinding {
            announced_at,
            identity,
            kem,
        };
        self.own_binding = Some(binding.clone());
        binding
    }

    /// Sends the next attempt of `id` and arms its timeout.
    fn direct_attempt(&mut self, now: Time, id: RequestId) {
        let Some(o) = self.direct.outgoing.get(&id) else {
            return;
        };
        let attempt = o.sent.len() as u8 + 1;
        let known = self.discovery.agent(now, &o.recipient);
        let machine = known.as_ref().map(|a| a.machine_id);
        let connected = machine.is_some_and(|m| self.hello_done(&m));
        let kem = known.as_ref().and_then(|a| a.kem_public_key.clone());
        let addrs = known
            .as_ref()
            .map(|a| a.addresses.clone())
            .unwrap_or_default();
        let path = match o.pref {
            PathPreference::Sealed => DirectPath::Sealed,
            PathPreference::Connected => DirectPath::Connected,
            // Connected when up; else dial, unless a dial to that machine failed recently (NAT,
            // offline) or no address is known: then the sealed path through the mesh.
            PathPreference::Auto => {
                let dialable =
                    !addrs.is_empty() && !machine.is_some_and(|m| self.direct.undialable(now, &m));
                if connected || dialable || kem.is_none() {
                    DirectPath::Connected
                } else {
                    DirectPath::Sealed
                }
            }
        };
        let (recipient, created, expires, payload) = (
            o.recipient,
            o.created_at_ms,
            o.expires_at_ms,
            o.payload.clone(),
        );
        let mut dialing = false;
        let key = match (path, machine) {
            (DirectPath::Connected, Some(m)) => {
                let binding = (!self.direct.is_bound(&m)).then(|| self.own_binding(now).identity);
                let frame: Frame = wire::Direct {
                    envelope: DirectEnvelope {
                        request_id: id,
                        sender: self.agent_id(),
                        recipient,
                        created_at_ms: created,
                        expires_at_ms: expires,
                        attempt,
                        payload,
                    },
                    binding,
                }
                .into();
                if connected {
                    self.send(m, frame);
                } else {
                    // Connect first (the membership layer dials, sends once the Hello exchange
                    // is done, and closes the connection again after its linger time).
                    dialing = true;
                    if let Some(first) = addrs.first() {
                        self.direct.dialing(*first, m);
                    }
                    let addrs = addrs.into_iter().take(wire::MAX_ADDRS_PER_PEER).collect();
                    self.membership
                        .send_frame(wire::PeerAddr { id: m, addrs }, frame);
                }
                Some(RttKey::Machine(m))
            }
            (DirectPath::Sealed, _) => match kem {
                Some(kem) => {
                    let me = self.agent_id();
                    let mm = self.machine_id();
                    let aad = crate::direct::aad(&id, &me, &mm, &recipient, created, expires);
                    match crate::kem::seal(&mut self.rng, &kem, &aad, &payload) {
                        Ok(sealed) => {
                            let item = InboxItem::Sealed(SealedEnvelope {
                                request_id: id,
                                sender: me,
                                sender_machine: mm,
                                recipient,
                                created_at_ms: created,
                                expires_at_ms: expires,
                                attempt,
                                sealed,
                            });
                            self.publish_inbox(now, &item);
                            Some(RttKey::Sealed(recipient))
                        }
                        Err(_) => None,
                    }
                }
                None => None,
            },
            _ => None,
        };
        let timeout = match key {
            Some(k) => {
                self.direct.stats.attempts.count(&path);
                if attempt > 1 {
                    self.direct.stats.retries += 1;
                }
                self.direct.timeout(k, attempt, dialing)
            }
            // Nothing could be sent (recipient no longer cached): try again after the initial
            // timeout; expiry ends it if it never becomes reachable.
            None => self.direct.config.initial_timeout,
        };
        let expiry = Time::from_millis(expires);
        let deadline = (now + timeout)
            .min(expiry)
            .max(now + Duration::from_micros(1));
        if let Some(o) = self.direct.outgoing.get_mut(&id) {
            o.sent.push((now, path));
            o.deadline = deadline;
            if path == DirectPath::Connected {
                o.machine = machine;
            }
        }
        self.timers.set(deadline, Timer::DirectRetry(id));
    }

    fn publish_inbox(&mut self, now: Time, item: &InboxItem) {
        let payload = postcard::to_allocvec(item)
            .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data"));
        let topic = self.topics.inbox;
        let body = PubSubBody {
            topic,
            nonce: self.rng.next_u64(),
            published_at_ms: now.as_millis(),
            payload: Bytes::from(payload),
        };
        let signed = wire::Signed::sign(&self.identity.agent, Domain::PubSubMessage, &body, true);
        self.broadcast.publish(now, topic, signed);
    }

    pub(super) fn direct_timer(&mut self, now: Time, id: RequestId) {
        let Some(o) = self.direct.outgoing.get(&id) else {
            return;
        };
        if now < o.deadline {
            return; // a stale timer: the attempt was replaced
        }
        if now.as_millis() >= o.expires_at_ms {
            self.direct_fail(id, DirectFailure::Expired);
        } else if o.sent.len() >= usize::from(self.direct.config.max_attempts) {
            self.direct_fail(id, DirectFailure::RetriesExhausted);
        } else {
            self.direct_attempt(now, id);
        }
    }

    fn direct_fail(&mut self, id: RequestId, reason: DirectFailure) {
        if let Some(o) = self.direct.outgoing.remove(&id) {
            self.direct.stats.failures.count(&reason);
            self.emit(Event::DirectFailed {
                request_id: id,
                recipient: o.recipient,
                reason,
            });
        }
    }

    fn reject_direct(&mut self, r: DirectReject) {
        self.direct.stats.rejected.count(&r);
    }

    /// Counts a direct message the trust policy refused (the caller acks `Policy`).
    fn refuse_by_policy(&mut self) {
        self.reject_direct(DirectReject::Policy);
        self.trust_refused.direct_refused += 1;
    }

    fn direct_ack_frame(
        &mut self,
        peer: MachineId,
        env_sender: AgentId,
        id: RequestId,
        attempt: u8,
        outcome: DirectOutcome,
    ) {
        self.direct.stats.acks_sent += 1;
        let ack = wire::DirectAck {
            request_id: id,
            sender: env_sender,
            recipient: self.agent_id(),
            attempt,
            outcome,
        };
        self.send(peer, ack.into());
    }

    /// A direct message over a connection.
    pub(super) fn on_direct(&mut self, now: Time, peer: MachineId, d: wire::Direct) {
        let env = d.envelope;
        if let Some(b) = &d.binding
            && b.signer == SignerId::Agent(env.sender)
        {
            // Verifies and caches the sender's announcement; a stale or bad one is counted by
            // discovery and simply does not bind.
            let _ = self.accept_record(now, RecordKind::Announcement, b);
        }
        let checked = if env.recipient != self.agent_id() {
            Err(DirectReject::WrongRecipient)
        } else if env.payload.len() > self.direct.config.max_payload_len {
            Err(DirectReject::TooLarge)
        } else {
            crate::direct::check_window(
                &self.direct.config,
                now,
                env.created_at_ms,
                env.expires_at_ms,
            )
            .and_then(|()| match self.discovery.agent(now, &env.sender) {
                None => Err(DirectReject::UnboundSender),
                Some(a) if a.machine_id != peer => Err(DirectReject::ForgedSender),
                Some(_) => Ok(()),
            })
        };
        if let Err(r) = checked {
            self.reject_direct(r);
            let code = match r {
                DirectReject::UnboundSender => Some(RejectCode::UnknownSender),
                DirectReject::TooLarge => Some(RejectCode::TooLarge),
                _ => None,
            };
            if let Some(code) = code {
                self.direct_ack_frame(
                    peer,
                    env.sender,
                    env.request_id,
                    env.attempt,
                    DirectOutcome::Rejected(code),
                );
            }
            return;
        }
        let trust = self.trust.evaluate(&env.sender, &peer);
        if trust.is_reject() {
            self.refuse_by_policy();
            self.direct_ack_frame(
                peer,
                env.sender,
                env.request_id,
                env.attempt,
                DirectOutcome::Rejected(RejectCode::Policy),
            );
            return;
        }
        let key = (env.sender, env.request_id);
        if let Some(outcome) = self.direct.dedup.get(&key) {
            self.direct.stats.duplicates += 1;
            self.reject_direct(DirectReject::Replay);
            self.direct_ack_frame(peer, env.sender, env.request_id, env.attempt, outcome);
            return;
        }
        self.direct.remember(now, key, DirectOutcome::Accepted);
        self.direct.stats.delivered += 1;
        self.trust.touch(&env.sender, now.as_secs());
        self.emit(Event::DirectMessage(DirectMessage {
            request_id: env.request_id,
            sender: env.sender,
            sender_machine: peer,
            trust,
            path: DirectPath::Connected,
            created_at_ms: env.created_at_ms,
            payload: env.payload,
        }));
        self.direct_ack_frame(
            peer,
            env.sender,
            env.request_id,
            env.attempt,
            DirectOutcome::Accepted,
        );
    }

    /// An ack over a connection: valid only from the recipient's bound machine.
    pub(super) fn on_direct_ack(&mut self, now: Time, peer: MachineId, ack: wire::DirectAck) {
        let Some(o) = self.direct.outgoing.get(&ack.request_id) else {
            self.reject_direct(DirectReject::UnmatchedAck);
            return;
        };
        let bound = o.machine == Some(peer)
            || self
                .discovery
                .agent(now, &o.recipient)
                .is_some_and(|a| a.machine_id == peer);
        if ack.sender != self.agent_id() || ack.recipient != o.recipient || !bound {
            self.reject_direct(DirectReject::ForgedSender);
            return;
        }
        self.direct.set_bound(peer, true);
        self.direct_complete(now, ack, Some(peer));
    }

    /// A verified ack for one of our messages.
    fn direct_complete(&mut self, now: Time, ack: wire::DirectAck, via: Option<MachineId>) {
        let id = ack.request_id;
        let Some(o) = self.direct.outgoing.get(&id) else {
            return;
        };
        // The ack names the attempt it answers, so the sample is unambiguous.
        let attempt_path = o
            .sent
            .get(usize::from(ack.attempt).wrapping_sub(1))
            .copied();
        let (machine, recipient, attempts) = (o.machine, o.recipient, o.sent.len());
        if let Some((sent_at, path)) = attempt_path {
            let key = match (path, machine) {
                (DirectPath::Connected, Some(m)) => Some(RttKey::Machine(m)),
                (DirectPath::Sealed, _) => Some(RttKey::Sealed(recipient)),
                _ => None,
            };
            if let Some(k) = key {
                self.direct.rtt_sample(k, now.saturating_since(sent_at));
            }
        }
        match ack.outcome {
            DirectOutcome::Accepted => {
                let Some(o) = self.direct.outgoing.remove(&id) else {
                    return;
                };
                self.direct.stats.receipts += 1;
                let path = attempt_path
                    .map(|(_, p)| p)
                    .or(o.sent.last().map(|(_, p)| *p))
                    .unwrap_or(DirectPath::Connected);
                self.emit(Event::DirectReceipt(DirectReceipt {
                    request_id: id,
                    recipient: o.recipient,
                    path,
                    retries: o.sent.len().saturating_sub(1) as u8,
                    elapsed: now.saturating_since(o.started),
                }));
            }
            DirectOutcome::Rejected(RejectCode::UnknownSender) => {
                // The receiver lacks our binding: attach it and resend at once (bounded by
                // max_attempts like any retry).
                if let Some(peer) = via {
                    self.direct.set_bound(peer, false);
                }
                let exhausted = attempts >= usize::from(self.direct.config.max_attempts);
                if exhausted {
                    self.direct_fail(id, DirectFailure::RetriesExhausted);
                } else {
                    self.direct_attempt(now, id);
                }
            }
            DirectOutcome::Rejected(code) => {
                self.direct_fail(id, DirectFailure::RejectedByRecipient(code));
            }
        }
    }

    /// An item on the inbox topic (already verified as pub/sub message signed by `author`).
    pub(super) fn on_inbox(&mut self, now: Time, author: AgentId, payload: &[u8]) {
        let item: InboxItem = match postcard::take_from_bytes(payload) {
            Ok((item, [])) => item,
            _ => {
                self.reject_direct(DirectReject::Malformed);
                return;
            }
        };
        let me = self.agent_id();
        match item {
            InboxItem::Sealed(env) => {
                if env.recipient != me {
                    self.direct.stats.inbox_not_for_us += 1;
                    return;
                }
                let key = (env.sender, env.request_id);
                // Replays are answered from the dedup window only once the signer is the
                // claimed sender and the window is valid, so a forged copy learns nothing.
                if env.sender == author
                    && crate::direct::check_window(
                        &self.direct.config,
                        now,
                        env.created_at_ms,
                        env.expires_at_ms,
                    )
                    .is_ok()
                    && let Some(outcome) = self.direct.dedup.get(&key)
                {
                    self.direct.stats.duplicates += 1;
                    self.reject_direct(DirectReject::Replay);
                    self.sealed_ack(now, env.sender, env.request_id, env.attempt, outcome);
                    return;
                }
                let opened = crate::direct::open_sealed(
                    &self.direct.config,
                    now,
                    &me,
                    &self.direct.kem,
                    &author,
                    &env,
                );
                let trust = self.trust.evaluate(&env.sender, &env.sender_machine);
                if opened.is_ok() && trust.is_reject() {
                    self.refuse_by_policy();
                    let outcome = DirectOutcome::Rejected(RejectCode::Policy);
                    self.sealed_ack(now, env.sender, env.request_id, env.attempt, outcome);
                    return;
                }
                match opened {
                    Ok(payload) => {
                        self.direct.remember(now, key, DirectOutcome::Accepted);
                        self.direct.stats.delivered += 1;
                        self.trust.touch(&env.sender, now.as_secs());
                        self.emit(Event::DirectMessage(DirectMessage {
                            request_id: env.request_id,
                            sender: env.sender,
                            sender_machine: env.sender_machine,
                            trust,
                            path: DirectPath::Sealed,
                            created_at_ms: env.created_at_ms,
                            payload,
                        }));
                        self.sealed_ack(
                            now,
                            env.sender,
                            env.request_id,
                            env.attempt,
                            DirectOutcome::Accepted,
                        );
                    }
                    Err(r) => self.reject_direct(r),
                }
            }
            InboxItem::Ack(ack) => {
                if ack.sender != me {
                    self.direct.stats.inbox_not_for_us += 1;
                    return;
                }
                if ack.recipient != author {
                    self.reject_direct(DirectReject::ForgedSender);
                    return;
                }
                match self.direct.outgoing.get(&ack.request_id) {
                    Some(o) if o.recipient == ack.recipient => {
                        self.direct_complete(now, ack, None);
                    }
                    _ => self.reject_direct(DirectReject::UnmatchedAck),
                }
            }
        }
    }

    /// Acks a sealed message on the inbox topic (signed by us as pub/sub author).
    fn sealed_ack(
        &mut self,
        now: Time,
        sender: AgentId,
        id: RequestId,
        attempt: u8,
        outcome: DirectOutcome,
    ) {
        let ack = wire::DirectAck {
            request_id: id,
            sender,
            recipient: self.agent_id(),
            attempt,
            outcome,
        };
        self.direct.stats.acks_sent += 1;
        self.publish_inbox(now, &InboxItem::Ack(ack));
    }
}
