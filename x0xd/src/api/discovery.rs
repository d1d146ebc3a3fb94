//! `/agents/…`, `/machines/…`, `/users/…`: the discovery cache, lookups and connecting.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use x0x_driver_tokio::DiscoveredAgent;
use x0x_proto::{AgentId, UserId};

use super::error::{ApiError, ApiResult, ok};
use super::extract::{JsonBody, parse_id32};
use crate::state::{AppState, Daemon, unix_secs};

/// How long `?wait=true` and `/agents/find` may look (x0x's budget is about 10 s).
const FIND_BUDGET: Duration = Duration::from_secs(10);

/// x0x's DiscoveredAgent object.
pub fn agent_json(a: &DiscoveredAgent) -> Value {
    json!({
        "agent_id": a.agent_id.to_hex(),
        "machine_id": a.machine_id.to_hex(),
        "user_id": a.user_id.map(|u| u.to_hex()),
        "addresses": a.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "announced_at": a.announced_at,
        "last_seen": a.last_seen,
    })
}

/// Machines, from the agents that run on them (one record per machine id).
pub fn machines_of(agents: &[DiscoveredAgent]) -> BTreeMap<[u8; 32], Value> {
    let mut out: BTreeMap<[u8; 32], (Vec<&DiscoveredAgent>,)> = BTreeMap::new();
    for a in agents {
        out.entry(*a.machine_id.as_bytes())
            .or_insert_with(|| (Vec::new(),))
            .0
            .push(a);
    }
    out.into_iter()
        .map(|(m, (list,))| {
            let newest = list.iter().max_by_key(|a| a.announced_at).expect("non-empty group");
            let mut users: Vec<String> = list
                .iter()
                .filter_map(|a| a.user_id.map(|u| u.to_hex()))
                .collect();
            users.sort();
            users.dedup();
            (
                m,
                json!({
                    "machine_id": hex::encode(m),
                    "addresses": newest.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "announced_at": newest.announced_at,
                    "last_seen": list.iter().map(|a| a.last_seen).max(),
                    "nat_type": null,
                    "can_receive_direct": null,
                    "is_relay": null,
                    "is_coordinator": null,
                    "agent_ids": list.iter().map(|a| a.agent_id.to_hex()).collect::<Vec<_>>(),
                    "user_ids": users,
                }),
            )
        })
        .collect()
}

/// `?unfiltered=` and `?wait=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Include entries older than `identity_ttl_secs`.
    pub unfiltered: bool,
    /// Look the id up actively when it is not cached.
    pub wait: bool,
}

/// The cache, TTL-filtered unless `unfiltered`, sorted by agent id.
/// Blocked agents are hidden unless `unfiltered`.
async fn cached_agents(s: &Daemon, unfiltered: bool) -> Result<Vec<DiscoveredAgent>, ApiError> {
    let mut list = if unfiltered {
        s.agent.discovered_agents_all().await?
    } else {
        s.agent.discovered_agents().await?
    };
    if !unfiltered {
        let cutoff = unix_secs().saturating_sub(s.settings.identity_ttl_secs);
        list.retain(|a| a.last_seen >= cutoff);
    }
    list.sort_by_key(|a| *a.agent_id.as_bytes());
    Ok(list)
}

/// `GET /agents/discovered`.
pub async fn agents(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let list = cached_agents(&s, q.unfiltered).await?;
    ok(json!({ "agents": list.iter().map(agent_json).collect::<Vec<_>>() }))
}

/// `GET /agents/discovered/:agent_id` (`?wait=true` looks it up).
pub async fn agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let agent = AgentId::from_bytes(parse_id32(&id)?);
    let find = |list: Vec<DiscoveredAgent>| list.into_iter().find(|a| a.agent_id == agent);
    if let Some(a) = find(s.agent.discovered_agents().await?) {
        return ok(json!({ "agent": agent_json(&a) }));
    }
    if !q.wait {
        return Err(ApiError::not_found("agent not found"));
    }
    let addrs = tokio::time::timeout(FIND_BUDGET, s.agent.find_agent(agent))
        .await
        .ok()
        .transpose()?
        .flatten();
    if let Some(a) = find(s.agent.discovered_agents().await?) {
        return ok(json!({ "agent": agent_json(&a) }));
    }
    match addrs {
        Some(addrs) => ok(json!({ "agent": {
            "agent_id": id,
            "addresses": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }})),
        None => Err(ApiError::not_found("agent not found within timeout")),
    }
}

/// `GET /agents/:agent_id/machine`.
pub async fn agent_machine(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = AgentId::from_bytes(parse_id32(&id)?);
    let list = s.agent.discovered_agents().await?;
    let Some(a) = list.iter().find(|a| a.agent_id == agent) else {
        return Err(ApiError::not_found("agent machine not found"));
    };
    let machines = machines_of(&list);
    let machine = machines.get(a.machine_id.as_bytes()).cloned();
    ok(json!({ "agent_id": id, "machine": machine }))
}

/// `GET /machines/discovered`.
pub async fn machines(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let list = cached_agents(&s, q.unfiltered).await?;
    ok(json!({ "machines": machines_of(&list).into_values().collect::<Vec<_>>() }))
}

/// `GET /machines/discovered/:machine_id`.
pub async fn machine(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let m = parse_id32(&id)?;
    let list = s.agent.discovered_agents().await?;
    match machines_of(&list).remove(&m) {
        Some(machine) => ok(json!({ "machine": machine })),
        None => Err(ApiError::not_found("machine not found")),
    }
}

fn parse_user(id: &str) -> Result<UserId, ApiError> {
    parse_id32(id)
        .map(UserId::from_bytes)
        .map_err(|_| ApiError::bad_request("invalid user_id: expected 64 hex characters"))
}

/// `GET /users/:user_id/agents`.
pub async fn user_agents(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let user = parse_user(&id)?;
    let list = s.agent.find_agents_by_user(user).await?;
    ok(json!({ "user_id": id, "agents": list.iter().map(agent_json).collect::<Vec<_>>() }))
}

/// `GET /users/:user_id/machines`.
pub async fn user_machines(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let user = parse_user(&id)?;
    let list = s.agent.find_agents_by_user(user).await?;
    ok(json!({ "user_id": id, "machines": machines_of(&list).into_values().collect::<Vec<_>>() }))
}

/// `POST /agents/find/:agent_id`: cache, then a query on the agent's shard, then its
/// rendezvous record.
pub async fn find(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = AgentId::from_bytes(parse_id32(&id)?);
    let found = tokio::time::timeout(FIND_BUDGET, s.agent.find_agent(agent))
        .await
        .ok()
        .transpose()
        .map_err(|_| ApiError::internal("search failed"))?
        .flatten();
    match found {
        Some(addrs) => ok(json!({
            "found": true,
            "addresses": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
        None => ok(json!({ "found": false })),
    }
}

/// `GET /agents/reachability/:agent_id`.
pub async fn reachability(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = AgentId::from_bytes(parse_id32(&id)?);
    let list = s.agent.discovered_agents().await?;
    let Some(a) = list.iter().find(|a| a.agent_id == agent) else {
        return Err(ApiError::not_found("agent not in discovery cache"));
    };
    let has = !a.addresses.is_empty();
    ok(json!({
        "likely_direct": has,
        "needs_coordination": false,
        "is_relay": false,
        "is_coordinator": false,
        "addresses": a.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// `POST /agents/connect` body.
#[derive(Debug, Deserialize)]
pub struct ConnectBody {
    /// 64 hex.
    pub agent_id: String,
}

/// `POST /agents/connect`: `{outcome, addr}` with x0x's outcome names.
pub async fn connect(State(s): State<AppState>, JsonBody(b): JsonBody<ConnectBody>) -> ApiResult {
    let agent = AgentId::from_bytes(parse_id32(&b.agent_id)?);
    let outcome = s.agent.connect_agent(agent).await?;
    ok(json!({
        "outcome": outcome.name(),
        "addr": outcome.addr().map(|a| a.to_string()),
        "path": outcome.path(),
    }))
}
