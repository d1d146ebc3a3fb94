//! The HTTP surface: x0x's routes, auth, CORS and body limit, served by axum.
//!
//! [`ROUTES`] is the one list of routes: the router is built from it, `/routes` lists it, the
//! CLI's help and docs/daemon.md are checked against it.

pub mod auth;
pub mod collab;
pub mod direct;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod identity;
pub mod network;
pub mod presence;
pub mod pubsub;
pub mod status;
pub mod trust;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::state::AppState;

/// Largest request body: 1 MiB (x0x's). Larger is 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (`/health`).
    Open,
    /// The bearer token in the `Authorization` header.
    Token,
    /// The header, or `?token=` for browsers that cannot set headers on `EventSource` or
    /// `WebSocket` (x0x's four streaming routes).
    TokenOrQuery,
}

/// One route: what `/routes` shows and how the router serves it.
#[derive(Debug)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path in x0x's notation (`:id` for a parameter).
    pub path: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// The `x0x` CLI verb that calls it (`-`: none; a WebSocket needs a WebSocket client).
    pub cli: &'static str,
    /// What it does, in a line.
    pub summary: &'static str,
    /// The handler.
    pub handler: fn() -> MethodRouter<AppState>,
}

macro_rules! route {
    ($m:literal, $p:literal, $auth:ident, $cli:literal, $sum:literal, $h:expr) => {
        Route {
            method: $m,
            path: $p,
            auth: Auth::$auth,
            cli: $cli,
            summary: $sum,
            handler: || $h,
        }
    };
}

/// Every route the daemon serves.
pub static ROUTES: &[Route] = &[
    route!(
        "GET",
        "/health",
        Open,
        "health",
        "liveness: version, peers, uptime (no token)",
        get(status::health)
    ),
    route!(
        "GET",
        "/status",
        Token,
        "status",
        "connected | connecting | isolated | degraded, addresses, agent id",
        get(status::status)
    ),
    route!(
        "POST",
        "/shutdown",
        Token,
        "stop",
        "graceful stop",
        post(status::shutdown)
    ),
    route!(
        "GET",
        "/routes",
        Token,
        "routes",
        "this list",
        get(status::routes)
    ),
    route!(
        "GET",
        "/agent",
        Token,
        "agent",
        "agent, machine and user ids, ML-KEM public key",
        get(identity::agent)
    ),
    route!(
        "GET",
        "/agent/user-id",
        Token,
        "agent user-id",
        "the user id or null",
        get(identity::user_id)
    ),
    route!(
        "POST",
        "/announce",
        Token,
        "announce",
        "re-announce the identity now",
        post(identity::announce)
    ),
    route!(
        "GET",
        "/agent/card",
        Token,
        "agent card",
        "this agent's card and x0x://agent/ link",
        get(identity::card)
    ),
    route!(
        "POST",
        "/agent/card/import",
        Token,
        "agent import",
        "import a card or link",
        post(identity::import_card)
    ),
    route!(
        "POST",
        "/agent/sign",
        Token,
        "agent sign",
        "sign bytes with the agent key (domain-separated)",
        post(identity::sign)
    ),
    route!(
        "POST",
        "/agent/verify",
        Token,
        "agent verify",
        "check an agent signature",
        post(identity::verify)
    ),
    route!(
        "GET",
        "/peers",
        Token,
        "peers",
        "connected peers",
        get(network::peers)
    ),
    route!(
        "GET",
        "/network/status",
        Token,
        "network status",
        "connection counts and addresses",
        get(network::status)
    ),
    route!(
        "GET",
        "/network/bootstrap-cache",
        Token,
        "network cache",
        "the peer cache",
        get(network::bootstrap_cache)
    ),
    route!(
        "GET",
        "/diagnostics/connectivity",
        Token,
        "diagnostics connectivity",
        "transport status",
        get(network::connectivity)
    ),
    route!(
        "GET",
        "/diagnostics/gossip",
        Token,
        "diagnostics gossip",
        "pub/sub counters per stage",
        get(network::gossip)
    ),
    route!(
        "GET",
        "/diagnostics/dm",
        Token,
        "diagnostics dm",
        "direct-message counters",
        get(network::dm)
    ),
    route!(
        "GET",
        "/diagnostics/resources",
        Token,
        "diagnostics resources",
        "memory, descriptors, tasks and every table against its cap",
        get(network::resources)
    ),
    route!(
        "POST",
        "/publish",
        Token,
        "publish",
        "publish base64 payload on a topic",
        post(pubsub::publish)
    ),
    route!(
        "POST",
        "/subscribe",
        Token,
        "subscribe",
        "subscribe to a topic; messages go to /events",
        post(pubsub::subscribe)
    ),
    route!(
        "DELETE",
        "/subscribe/:id",
        Token,
        "unsubscribe",
        "end a subscription (delivery stops at once)",
        delete(pubsub::unsubscribe)
    ),
    route!(
        "GET",
        "/events",
        TokenOrQuery,
        "events",
        "SSE stream of subscribed messages",
        get(pubsub::events)
    ),
    route!(
        "GET",
        "/presence",
        Token,
        "presence",
        "ids of the agents online (beacons and discovery cache)",
        get(presence::ids)
    ),
    route!(
        "GET",
        "/presence/online",
        Token,
        "presence online",
        "agents online, network view (blocked hidden)",
        get(presence::online)
    ),
    route!(
        "GET",
        "/presence/foaf",
        Token,
        "presence foaf",
        "friends-of-friends walk (?ttl=3&timeout_ms=5000), contacts only",
        get(presence::foaf)
    ),
    route!(
        "GET",
        "/presence/find/:id",
        Token,
        "presence find",
        "find one agent's presence record among friends of friends",
        get(presence::find)
    ),
    route!(
        "GET",
        "/presence/status/:id",
        Token,
        "presence status",
        "whether an agent is online here, and its record",
        get(presence::status)
    ),
    route!(
        "GET",
        "/presence/events",
        Token,
        "presence events",
        "SSE stream of online and offline events",
        get(presence::events)
    ),
    route!(
        "GET",
        "/agents/discovered",
        Token,
        "agents list",
        "agents in the discovery cache",
        get(discovery::agents)
    ),
    route!(
        "GET",
        "/agents/discovered/:agent_id",
        Token,
        "agents get",
        "one agent (?wait=true looks it up)",
        get(discovery::agent)
    ),
    route!(
        "GET",
        "/agents/:agent_id/machine",
        Token,
        "agents machine",
        "the machine an agent runs on",
        get(discovery::agent_machine)
    ),
    route!(
        "GET",
        "/machines/discovered",
        Token,
        "machines discovered",
        "machines in the discovery cache",
        get(discovery::machines)
    ),
    route!(
        "GET",
        "/machines/discovered/:machine_id",
        Token,
        "machines get",
        "one machine",
        get(discovery::machine)
    ),
    route!(
        "GET",
        "/users/:user_id/agents",
        Token,
        "agents by-user",
        "agents of a user",
        get(discovery::user_agents)
    ),
    route!(
        "GET",
        "/users/:user_id/machines",
        Token,
        "machines by-user",
        "machines of a user",
        get(discovery::user_machines)
    ),
    route!(
        "POST",
        "/agents/find/:agent_id",
        Token,
        "agents find",
        "find an agent: cache, query, rendezvous",
        post(discovery::find)
    ),
    route!(
        "GET",
        "/agents/reachability/:agent_id",
        Token,
        "agents reachability",
        "how an agent can be reached",
        get(discovery::reachability)
    ),
    route!(
        "POST",
        "/agents/connect",
        Token,
        "direct connect",
        "connect to an agent's machine",
        post(discovery::connect)
    ),
    route!(
        "POST",
        "/direct/send",
        Token,
        "direct send",
        "send a direct message; answers with its receipt",
        post(direct::send)
    ),
    route!(
        "GET",
        "/direct/connections",
        Token,
        "direct connections",
        "agents with a live connection",
        get(direct::connections)
    ),
    route!(
        "GET",
        "/direct/events",
        TokenOrQuery,
        "direct events",
        "SSE stream of direct messages",
        get(direct::events)
    ),
    route!(
        "GET",
        "/contacts",
        Token,
        "contacts list",
        "contacts with their trust levels",
        get(trust::list)
    ),
    route!(
        "POST",
        "/contacts",
        Token,
        "contacts add",
        "add (or replace) a contact",
        post(trust::add)
    ),
    route!(
        "POST",
        "/contacts/trust",
        Token,
        "trust set",
        "set an agent's trust level",
        post(trust::set_trust)
    ),
    route!(
        "PATCH",
        "/contacts/:agent_id",
        Token,
        "contacts update",
        "change a contact's trust level or identity type",
        patch(trust::patch)
    ),
    route!(
        "DELETE",
        "/contacts/:agent_id",
        Token,
        "contacts remove",
        "remove a contact (a revocation stays)",
        delete(trust::remove)
    ),
    route!(
        "POST",
        "/contacts/:agent_id/revoke",
        Token,
        "contacts revoke",
        "revoke an agent for good",
        post(trust::revoke)
    ),
    route!(
        "GET",
        "/contacts/:agent_id/revocations",
        Token,
        "contacts revocations",
        "the agent's revocations",
        get(trust::revocations)
    ),
    route!(
        "GET",
        "/contacts/:agent_id/machines",
        Token,
        "machines list",
        "a contact's machines",
        get(trust::machines)
    ),
    route!(
        "POST",
        "/contacts/:agent_id/machines",
        Token,
        "machines add",
        "record a machine of a contact",
        post(trust::add_machine)
    ),
    route!(
        "DELETE",
        "/contacts/:agent_id/machines/:machine_id",
        Token,
        "machines remove",
        "forget a machine of a contact",
        delete(trust::remove_machine)
    ),
    route!(
        "POST",
        "/contacts/:agent_id/machines/:machine_id/pin",
        Token,
        "machines pin",
        "accept the contact from its pinned machines only",
        post(trust::pin)
    ),
    route!(
        "DELETE",
        "/contacts/:agent_id/machines/:machine_id/pin",
        Token,
        "machines unpin",
        "unpin a machine",
        delete(trust::unpin)
    ),
    route!(
        "POST",
        "/trust/evaluate",
        Token,
        "trust evaluate",
        "the evaluator's decision for an agent on a machine",
        post(trust::evaluate)
    ),
    route!(
        "GET",
        "/stores",
        Token,
        "store list",
        "the KV stores open here",
        get(collab::stores)
    ),
    route!(
        "POST",
        "/stores",
        Token,
        "store create",
        "create a KV store on a topic (policy signed or allowlisted)",
        post(collab::create_store)
    ),
    route!(
        "POST",
        "/stores/:id/join",
        Token,
        "store join",
        "join a KV store and catch up from neighbours",
        post(collab::join_store)
    ),
    route!(
        "GET",
        "/stores/:id/keys",
        Token,
        "store keys",
        "a store's keys with type, hash, size, time",
        get(collab::keys)
    ),
    route!(
        "PUT",
        "/stores/:id/:key",
        Token,
        "store put",
        "write a key (base64 value, up to 64 KiB)",
        put(collab::put)
    ),
    route!(
        "GET",
        "/stores/:id/:key",
        Token,
        "store get",
        "read a key",
        get(collab::get)
    ),
    route!(
        "DELETE",
        "/stores/:id/:key",
        Token,
        "store rm",
        "remove a key",
        delete(collab::remove)
    ),
    route!(
        "GET",
        "/task-lists",
        Token,
        "tasks lists",
        "the task lists open here",
        get(collab::task_lists)
    ),
    route!(
        "POST",
        "/task-lists",
        Token,
        "tasks create",
        "create (or join) the task list on a topic",
        post(collab::create_task_list)
    ),
    route!(
        "GET",
        "/task-lists/:id/tasks",
        Token,
        "tasks list",
        "a list's tasks in order",
        get(collab::tasks)
    ),
    route!(
        "POST",
        "/task-lists/:id/tasks",
        Token,
        "tasks add",
        "add a task",
        post(collab::add_task)
    ),
    route!(
        "PATCH",
        "/task-lists/:id/tasks/:tid",
        Token,
        "tasks claim",
        "claim or complete a task",
        patch(collab::task_action)
    ),
    route!(
        "GET",
        "/ws",
        TokenOrQuery,
        "-",
        "WebSocket: subscribe, publish, send_direct",
        get(ws::general)
    ),
    route!(
        "GET",
        "/ws/direct",
        TokenOrQuery,
        "-",
        "WebSocket that also receives direct messages",
        get(ws::direct)
    ),
    route!(
        "GET",
        "/ws/sessions",
        Token,
        "ws sessions",
        "open WebSocket sessions",
        get(ws::sessions)
    ),
];

/// `:name` → `{name}` (axum's notation).
fn axum_path(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `origin` is exactly a local web origin: `http://localhost`, `http://127.0.0.1` or
/// `http://[::1]`, with an optional port and nothing else (x0x matched prefixes, so
/// `http://localhost.evil` passed).
pub fn is_local_origin(origin: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some(rest) = s.strip_prefix("http://") else {
        return false;
    };
    let port_ok = |p: &str| {
        p.is_empty()
            || (p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok())
    };
    ["localhost", "127.0.0.1", "[::1]"].iter().any(|host| {
        rest.strip_prefix(host).is_some_and(|tail| {
            tail.is_empty()
                || tail
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && port_ok(p))
        })
    })
}

/// The router with every layer: CORS outermost (so a 401 carries CORS headers too), then the
/// body limit, then auth.
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for route in ROUTES {
        r = r.route(&axum_path(route.path), (route.handler)());
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|o: &HeaderValue, _| {
            is_local_origin(o.as_bytes())
        }))
        .allow_methods(AllowMethods::list([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ]))
        .allow_headers(AllowHeaders::mirror_request());
    r.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ))
    .layer(DefaultBodyLimit::max(BODY_LIMIT))
    .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
    .layer(cors)
    .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_origins_match_whole() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "http://127.0.0.1:1",
            "http://[::1]:8080",
        ] {
            assert!(is_local_origin(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "http://localhost.evil",
            "http://localhost:",
            "http://localhost:99999",
            "https://example.com",
            "http://127.0.0.1.nip.io",
            "http://localhost:80/x",
            "http://[::1]x",
        ] {
            assert!(!is_local_origin(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn paths_convert_to_axum_notation() {
        assert_eq!(
            axum_path("/agents/:agent_id/machine"),
            "/agents/{agent_id}/machine"
        );
        assert_eq!(axum_path("/health"), "/health");
    }

    #[test]
    fn routes_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
