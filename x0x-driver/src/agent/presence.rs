//! Presence through the agent: who is online, friends of friends, online and offline events.

use std::time::Duration;

use x0x_proto::AgentId;
use x0x_proto::node::Visibility;
use x0x_proto::presence::OnlineAgent;

use super::{Agent, AgentEvent, Events};
use crate::driver::{Command, PresenceCommand};
use crate::error::Result;
use crate::runtime::Runtime;

impl<R: Runtime> Agent<R> {
    async fn presence<T>(
        &self,
        make: impl FnOnce(crate::runtime::Reply<Result<T>>) -> PresenceCommand,
    ) -> Result<T> {
        self.request(|reply| Command::Presence(make(reply))).await?
    }

    /// The agents online here — their beacons reach this node and they have not gone
    /// offline since — seen through `visibility`, in agent order.
    pub async fn online_agents(&self, visibility: Visibility) -> Result<Vec<OnlineAgent>> {
        self.presence(|reply| PresenceCommand::Online { visibility, reply })
            .await
    }

    /// One agent's live presence record held here, online or not (`None` if there is none,
    /// or the agent is blocked).
    pub async fn presence_status(&self, agent: AgentId) -> Result<Option<OnlineAgent>> {
        self.presence(|reply| PresenceCommand::Status { agent, reply })
            .await
    }

    /// Browses friends of friends: asks a few connected peers, which forward with `ttl − 1`
    /// (clamped to the node's `foaf_max_ttl`), and returns the live records gathered within
    /// `timeout` (or once enough peers answered), seen through `visibility`.
    pub async fn discover_agents_foaf(
        &self,
        ttl: u8,
        timeout: Duration,
        visibility: Visibility,
    ) -> Result<Vec<OnlineAgent>> {
        self.presence(|reply| PresenceCommand::Foaf {
            ttl,
            timeout,
            visibility,
            reply,
        })
        .await
    }

    /// Looks for one agent's live record among friends of friends (every connected peer is
    /// asked); returns it as soon as it arrives, `None` after `timeout` or if the agent is
    /// blocked.
    pub async fn discover_agent_by_id(
        &self,
        agent: AgentId,
        ttl: u8,
        timeout: Duration,
    ) -> Result<Option<OnlineAgent>> {
        self.presence(|reply| PresenceCommand::Find {
            agent,
            ttl,
            timeout,
            reply,
        })
        .await
    }

    /// The presence events from now on: [`AgentEvent::AgentOnline`] and
    /// [`AgentEvent::AgentOffline`] only (blocked agents never appear). A watcher that falls
    /// behind is dropped, as with [`Agent::events`].
    pub async fn presence_events(&self) -> Result<PresenceEvents> {
        Ok(PresenceEvents {
            inner: self.events().await?,
        })
    }
}

/// The stream returned by [`Agent::presence_events`].
#[derive(Debug)]
pub struct PresenceEvents {
    inner: Events,
}

impl PresenceEvents {
    /// The next online or offline event, or `None` once the agent shut down (or this watcher
    /// was dropped).
    pub async fn recv(&mut self) -> Option<AgentEvent> {
        loop {
            let ev = self.inner.recv().await?;
            if matches!(
                ev,
                AgentEvent::AgentOnline { .. } | AgentEvent::AgentOffline { .. }
            ) {
                return Some(ev);
            }
        }
    }
}
