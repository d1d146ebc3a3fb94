//! Presence requests: the views are one node call; a FOAF query keeps its reply until the
//! node's `PresenceQueryFinished` ends it (the node ends every query at its timeout).

use std::time::Duration;

use x0x_proto::AgentId;
use x0x_proto::node::Visibility;
use x0x_proto::presence::{OnlineAgent, PresenceQueryId};

use super::Driver;
use crate::error::{Error, Result};
use crate::runtime::Reply;

/// A presence request from an `Agent` handle.
#[derive(Debug)]
pub(crate) enum PresenceCommand {
    Online {
        visibility: Visibility,
        reply: Reply<Result<Vec<OnlineAgent>>>,
    },
    Status {
        agent: AgentId,
        reply: Reply<Result<Option<OnlineAgent>>>,
    },
    Foaf {
        ttl: u8,
        timeout: Duration,
        visibility: Visibility,
        reply: Reply<Result<Vec<OnlineAgent>>>,
    },
    Find {
        agent: AgentId,
        ttl: u8,
        timeout: Duration,
        reply: Reply<Result<Option<OnlineAgent>>>,
    },
}

/// A FOAF query waiting for its end (bounded by the node's `max_pending_queries`: it
/// refuses more).
#[derive(Debug)]
pub(crate) enum PresenceWaiter {
    Foaf {
        visibility: Visibility,
        reply: Reply<Result<Vec<OnlineAgent>>>,
    },
    Find {
        agent: AgentId,
        reply: Reply<Result<Option<OnlineAgent>>>,
    },
}

impl PresenceWaiter {
    /// Answers with the query's records, seen through the caller's view.
    pub(super) fn finish(self, driver: &Driver, agents: Vec<OnlineAgent>) {
        match self {
            Self::Foaf { visibility, reply } => reply.send(Ok(agents
                .into_iter()
                .filter(|a| driver.node.is_visible(&a.agent_id, visibility))
                .collect())),
            Self::Find { agent, reply } => {
                reply.send(Ok(agents.into_iter().find(|a| a.agent_id == agent)));
            }
        }
    }

    /// The agent shut down first.
    pub(super) fn abort(self) {
        match self {
            Self::Foaf { reply, .. } => reply.send(Err(Error::Shutdown)),
            Self::Find { reply, .. } => reply.send(Err(Error::Shutdown)),
        }
    }
}

impl Driver {
    pub(super) fn on_presence(&mut self, cmd: PresenceCommand) {
        let now = self.clock.now();
        match cmd {
            PresenceCommand::Online { visibility, reply } => {
                reply.send(Ok(self.node.online_agents(now, visibility)));
            }
            PresenceCommand::Status { agent, reply } => {
                reply.send(Ok(self.node.presence_status(now, &agent)));
            }
            PresenceCommand::Foaf {
                ttl,
                timeout,
                visibility,
                reply,
            } => match self.node.discover_agents_foaf(now, ttl, timeout) {
                Ok(q) => self.wait_presence(q, PresenceWaiter::Foaf { visibility, reply }),
                Err(e) => reply.send(Err(e.into())),
            },
            PresenceCommand::Find {
                agent,
                ttl,
                timeout,
                reply,
            } => match self.node.discover_agent_by_id(now, agent, ttl, timeout) {
                Ok(q) => self.wait_presence(q, PresenceWaiter::Find { agent, reply }),
                Err(e) => reply.send(Err(e.into())),
            },
        }
        self.drain();
    }

    /// Parks a query's reply; the node's `PresenceQueryFinished` (perhaps already queued by
    /// the call that started it) answers it in `drain`.
    fn wait_presence(&mut self, q: PresenceQueryId, waiter: PresenceWaiter) {
        self.presence_queries.insert(q, waiter);
    }

    /// A query ended.
    pub(super) fn presence_query_finished(&mut self, q: PresenceQueryId, agents: Vec<OnlineAgent>) {
        if let Some(w) = self.presence_queries.remove(&q) {
            w.finish(self, agents);
        }
    }
}
