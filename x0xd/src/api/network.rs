//! `/peers`, `/network/status`, `/network/bootstrap-cache`, `/diagnostics/*`.
//!
//! `/diagnostics/resources` is what the soak harness (`tests/soak.py`) samples.

use axum::extract::State;
use serde_json::json;

use super::error::{ApiResult, ok};
use super::status::connection_state;
use crate::bus::MAX_CLIENTS;
use crate::state::{AppState, Daemon, get};

/// `GET /peers`: `{peers: [{id, agent_id, addr, direction, key_exchange}]}` (x0x gives `id`
/// only).
pub async fn peers(State(s): State<AppState>) -> ApiResult {
    let peers = s.agent.peers().await?;
    let list: Vec<_> = peers
        .iter()
        .map(|p| {
            json!({
                "id": p.machine_id.to_hex(),
                "agent_id": p.agent_id.map(|a| a.to_hex()),
                "addr": p.addr.map(|a| a.to_string()),
                "direction": match p.outbound {
                    Some(true) => "outbound",
                    Some(false) => "inbound",
                    None => "unknown",
                },
                "key_exchange": p.key_exchange,
            })
        })
        .collect();
    ok(json!({ "peers": list }))
}

/// `GET /network/status`.
pub async fn status(State(s): State<AppState>) -> ApiResult {
    let (state, peers, _) = connection_state(&s).await;
    let local = s.agent.bound_addr().await;
    ok(json!({
        "status": state,
        "local_addr": local.map(|a| a.to_string()),
        "external_addrs": super::status::external_addrs(&s).await,
        "nat_type": "Unknown",
        "has_global_address": local.is_some_and(|a| is_global(a.ip())),
        "can_receive_direct": local.is_some(),
        "connected_peers": peers,
        "direct_connections": peers,
        "relayed_connections": 0,
        "hole_punch_success_rate": 0.0,
        "is_relaying": false,
        "relay_sessions": 0,
        "is_coordinating": false,
        "coordination_sessions": 0,
        "avg_rtt_ms": 0,
        "uptime_secs": s.uptime_secs(),
    }))
}

fn is_global(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            !(v.is_private() || v.is_loopback() || v.is_link_local() || v.is_unspecified())
        }
        std::net::IpAddr::V6(v) => !(v.is_loopback() || v.is_unspecified()),
    }
}

/// `GET /network/bootstrap-cache`: x0x's two fields, and the cached entries themselves.
pub async fn bootstrap_cache(State(s): State<AppState>) -> ApiResult {
    let peers = s.agent.peers().await?;
    let cache = s.agent.peer_cache().await?;
    let stats = s.agent.stats().await?.node.peer_cache;
    ok(json!({
        "connection_count": peers.len(),
        "connected_peers": peers.iter().map(|p| format!("PeerId({:?})", *p.machine_id.as_bytes())).collect::<Vec<_>>(),
        "capacity": s.settings.peer_cache_capacity,
        "evictions": stats.evictions,
        "refused": stats.refused,
        "peers": cache.iter().map(crate::peer_cache::FilePeer::of).collect::<Vec<_>>(),
    }))
}

/// `GET /diagnostics/connectivity`.
pub async fn connectivity(State(s): State<AppState>) -> ApiResult {
    let peers = s.agent.peers().await?;
    let local = s.agent.bound_addr().await;
    let stats = s.agent.stats().await?;
    ok(json!({
        "peer_id": s.agent.machine_id().to_hex(),
        "local_addr": local.map(|a| a.to_string()),
        "external_addrs": super::status::external_addrs(&s).await,
        "nat_type": "Unknown",
        "can_receive_direct": local.is_some(),
        "direct_reachability_scope": "None",
        "has_global_address": local.is_some_and(|a| is_global(a.ip())),
        "port_mapping": { "active": false, "external_addr": null },
        "mdns": {
            "browsing": s.settings.lan_discovery,
            "advertising": s.settings.lan_discovery,
            "discovered_peers": 0,
        },
        "services": { "relay_enabled": false, "coordinator_enabled": false, "bootstrap_enabled": true },
        "connections": {
            "connected_peers": peers.len(),
            "active": stats.connections,
            "direct": peers.len(),
            "relayed": 0,
            "hole_punch_success_rate": 0.0,
        },
        // x0x-rs addition: every connection's key-exchange group (always X25519MLKEM768: a
        // classical-only peer is refused, `classical_key_exchange_refused` counts them).
        "quic_connections": peers
            .iter()
            .map(|p| json!({
                "peer": p.machine_id.to_hex(),
                "agent_id": p.agent_id.map(|a| a.to_hex()),
                "addr": p.addr.map(|a| a.to_string()),
                "key_exchange": p.key_exchange,
            }))
            .collect::<Vec<_>>(),
        "classical_key_exchange_refused": stats.driver.classical_key_exchange_refused,
        "relay": { "is_relaying": false, "sessions": 0, "bytes_forwarded": 0 },
        "coordinator": { "is_coordinating": false, "sessions": 0 },
        "avg_rtt_ms": 0,
        "uptime_s": s.uptime_secs(),
    }))
}

/// `GET /diagnostics/gossip`: one counter per stage (x0x's names), so the difference
/// between two stages says where messages were lost.
pub async fn gossip(State(s): State<AppState>) -> ApiResult {
    let g = &s.gossip;
    let stats = s.agent.stats().await?;
    let m = &stats.node.messages_rejected;
    let rejected = m.reason.total() + m.topic_mismatch;
    let incoming = get(&g.incoming_total);
    let decoded = get(&g.incoming_decoded);
    let delivered = get(&g.delivered_to_subscriber);
    let closed = get(&g.subscriber_channel_closed);
    let slow = s
        .events
        .slow_dropped
        .load(std::sync::atomic::Ordering::Relaxed)
        + get(&g.ws_slow_dropped)
        + stats.driver.subscribers_dropped;
    ok(json!({
        "stats": {
            "publish_total": get(&g.publish_total),
            "publish_failed": get(&g.publish_failed) + stats.driver.publishes_refused,
            "incoming_total": incoming + rejected,
            "incoming_decoded": decoded,
            "incoming_decode_failed": rejected,
            "delivered_to_subscriber": delivered,
            "slow_subscriber_dropped": slow,
            "subscriber_channel_closed": closed,
            "in_flight_decode": incoming as i64 - decoded as i64,
            "decode_to_delivery_drops": decoded as i64 - delivered as i64 - closed as i64,
        },
        "dispatcher": null,
        "streams": {
            "events_clients": s.events.clients(),
            "subscriptions": Daemon::lock(&s.subscriptions).len(),
        },
        "node": stats.node,
        "driver": {
            "subscribers_dropped": stats.driver.subscribers_dropped,
            "publishes_refused": stats.driver.publishes_refused,
            "publish_batches": stats.driver.publish_batches,
            "send_queue_full_drops": stats.driver.send_queue_full_drops,
        },
    }))
}

/// `GET /diagnostics/dm`: direct messages through the API and the node's own counters.
pub async fn dm(State(s): State<AppState>) -> ApiResult {
    let stats = s.agent.stats().await?;
    let d = &s.dm;
    ok(json!({
        "api": {
            "send_requests": get(&d.send_requests),
            "acknowledged": get(&d.acknowledged),
            "failed": get(&d.failed),
            "refused": get(&d.refused),
            "received": get(&d.received),
            "stream_clients": s.direct.clients(),
            "slow_clients_dropped": s.direct.slow_dropped.load(std::sync::atomic::Ordering::Relaxed),
        },
        "driver": { "dropped_unread": stats.driver.direct_dropped },
    }))
}

/// `GET /diagnostics/resources`: the process's memory, descriptors and tasks, and every
/// bounded table with its cap (x0x-rs addition), so growth over days shows where it is.
pub async fn resources(State(s): State<AppState>) -> ApiResult {
    let stats = s.agent.stats().await?;
    let mut tables: Vec<_> = s
        .agent
        .table_sizes()
        .await?
        .into_iter()
        .map(|t| json!({ "table": t.table, "len": t.len, "cap": t.cap }))
        .collect();
    let daemon_tables = [
        (
            "daemon subscriptions",
            Daemon::lock(&s.subscriptions).len(),
            crate::state::MAX_SUBSCRIPTIONS,
        ),
        ("events clients", s.events.clients(), MAX_CLIENTS),
        ("direct clients", s.direct.clients(), MAX_CLIENTS),
        ("presence clients", s.presence.clients(), MAX_CLIENTS),
        (
            "websocket sessions",
            Daemon::lock(&s.ws_sessions).len(),
            // Each session is one client of the direct or events bus at most twice.
            2 * MAX_CLIENTS,
        ),
    ];
    tables.extend(
        daemon_tables
            .iter()
            .map(|(table, len, cap)| json!({ "table": table, "len": len, "cap": cap })),
    );
    let metrics = tokio::runtime::Handle::current().metrics();
    ok(json!({
        "rss_bytes": proc_rss_bytes(),
        "open_fds": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok(),
        "tasks": {
            "runtime_alive": metrics.num_alive_tasks(),
            "driver": stats.tasks,
        },
        "connections": stats.connections,
        "tables": tables,
        "uptime_s": s.uptime_secs(),
    }))
}

/// Resident set size from `/proc/self/statm` (Linux; `None` elsewhere).
fn proc_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every Linux target this daemon is built for.
    Some(pages * 4096)
}
