//! Starting and stopping a daemon: the agent, the API listener, the background tasks.
//!
//! Start-up order matters to clients: the data dir and keys, the agent (bound, not yet
//! joined), the token, the API listener, `api.port` — then `/health` answers while the
//! network is joined in the background. Shutdown (SIGINT, SIGTERM or `POST /shutdown`) ends
//! every stream, stops the listener, shuts the agent down (its writers flush queued frames),
//! writes the peer cache and removes `api.port`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};
use x0x_driver_tokio::Agent;
use x0x_driver_tokio::network::NetworkConfig;

use crate::config::Settings;
use crate::files;
use crate::peer_cache::PeerCacheFile;
use crate::state::{AppState, Daemon, unix_secs};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The agent could not be built (keys, QUIC socket, TLS).
    #[error("agent: {0}")]
    Agent(#[from] x0x_driver_tokio::Error),
    /// The API address could not be bound.
    #[error("cannot bind the API on {addr}: {source}")]
    ApiBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How often connected peers are copied into the peer cache, and the cache written.
const PEER_CACHE_INTERVAL: Duration = Duration::from_secs(2);

/// A daemon that is serving: its state, and the task that ends when it has stopped.
#[derive(Debug)]
pub struct Running {
    /// The shared state.
    pub state: AppState,
    /// The bound API address.
    pub api_address: SocketAddr,
    /// Ends once the daemon has shut down completely.
    pub done: tokio::task::JoinHandle<()>,
}

/// Builds the agent and starts serving. Returns once `/health` answers.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let dir = settings.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let (peer_cache, saved_peers) = PeerCacheFile::load(&files::in_dir(&dir, files::PEER_CACHE));
    let bootstrap = settings.bootstrap_peers.clone();
    let mut builder = Agent::builder()
        .with_machine_key(files::in_dir(&dir, files::MACHINE_KEY))
        .with_agent_key_path(files::in_dir(&dir, files::AGENT_KEY))
        .with_heartbeat_interval(settings.heartbeat_interval_secs)
        .with_protocol_config(protocol_config(&settings))
        .with_peer_cache(saved_peers)
        .with_network_config(NetworkConfig {
            bind_addr: Some(settings.bind_address),
            bootstrap_nodes: bootstrap,
            lan_discovery: settings.lan_discovery,
            ..Default::default()
        });
    if let Some(user) = &settings.user_key_path {
        builder = builder.with_user_key_path(user);
    }
    match crate::contacts::load(&dir, unix_secs()) {
        crate::contacts::Loaded::Missing => {}
        crate::contacts::Loaded::State(state) => builder = builder.with_contacts(state),
        crate::contacts::Loaded::MovedAside { moved_to, reason } => {
            tracing::error!(kept_at = %moved_to.display(), %reason,
                "contacts.json is unusable: kept aside, starting with no contacts");
        }
    }
    let agent = builder.build().await?;
    let token = files::load_or_create_token(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let listener = TcpListener::bind(settings.api_address)
        .await
        .map_err(|source| StartError::ApiBind {
            addr: settings.api_address,
            source,
        })?;
    let api_address = listener
        .local_addr()
        .map_err(|source| StartError::ApiBind {
            addr: settings.api_address,
            source,
        })?;
    let reopened = crate::stores::load_all(&agent, &dir).await;
    if !reopened.is_empty() {
        info!(stores = reopened.len(), "stores and task lists reopened");
    }
    let state: AppState = Arc::new(Daemon::new(agent, settings, token, peer_cache));
    *Daemon::lock(&state.api_address) = Some(api_address);
    files::write_api_port(&dir, api_address).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    info!(api = %api_address, agent = %state.agent.agent_id(), "x0xd serving");

    let app = crate::api::router(state.clone());
    let mut stop = state.shutdown.subscribe();
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
        {
            warn!(error = %e, "API server ended with an error");
        }
    });
    let background = vec![
        tokio::spawn(crate::api::direct::pump(state.clone())),
        tokio::spawn(crate::api::presence::pump(state.clone())),
        tokio::spawn(join(state.clone())),
        tokio::spawn(remember_peers(state.clone())),
        tokio::spawn(crate::stores::saver(state.clone())),
    ];
    let st = state.clone();
    let done = tokio::spawn(async move {
        let mut stop = st.shutdown.subscribe();
        let _ = stop.wait_for(|s| *s).await;
        // The listener stops accepting; open streams were ended by `begin_shutdown`.
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        for t in &background {
            t.abort();
        }
        for (_, sub) in std::mem::take(&mut *Daemon::lock(&st.subscriptions)) {
            sub.forwarder.abort();
        }
        save_peer_cache(&st).await;
        crate::stores::save_all(&st).await;
        if let Err(e) = st.agent.shutdown().await {
            warn!(error = %e, "agent shutdown");
        }
        files::remove_api_port(&st.settings.data_dir);
        info!("x0xd stopped");
    });
    Ok(Running {
        state,
        api_address,
        done,
    })
}

/// The protocol settings the config file sets (`[gossip]`, `identity_ttl_secs`); the rest
/// are the core's defaults.
pub fn protocol_config(s: &Settings) -> x0x_proto::Config {
    let mut c = x0x_proto::Config::default();
    let g = &s.gossip;
    let m = &mut c.membership;
    if let Some(v) = g.active_view_size {
        m.active_view_capacity = v;
    }
    if let Some(v) = g.passive_view_size {
        m.passive_view_capacity = v;
    }
    if let Some(v) = g.arwl {
        m.active_random_walk_length = v;
    }
    if let Some(v) = g.prwl {
        m.passive_random_walk_length = v;
    }
    c.announce.identity_ttl = Duration::from_secs(s.identity_ttl_secs.max(1));
    c.peer_cache.capacity = s.peer_cache_capacity;
    if let Some(secs) = s.presence_beacon_interval_secs {
        c.presence.beacon_interval = Duration::from_secs(secs);
    }
    c
}

/// Joins the network (bootstrap list and peer cache), then keeps the rendezvous record fresh.
async fn join(s: AppState) {
    if let Err(e) = s.agent.join_network().await {
        warn!(error = %e, "joining the network");
    }
    if s.settings.rendezvous_enabled {
        let validity = s.settings.rendezvous_validity_ms;
        // x0x re-advertises every max(validity/2, 60 s).
        let period = Duration::from_millis((validity / 2).max(60_000));
        loop {
            if let Err(e) = s.agent.advertise_identity(validity).await {
                warn!(error = %e, "rendezvous advertisement");
            }
            tokio::time::sleep(period).await;
        }
    }
}

/// Writes the agent's peer cache to `peers.json` every [`PEER_CACHE_INTERVAL`] when it
/// changed (the node scores and caps it; the daemon only keeps it across restarts).
async fn remember_peers(s: AppState) {
    loop {
        tokio::time::sleep(PEER_CACHE_INTERVAL).await;
        save_peer_cache(&s).await;
    }
}

/// Saves the peer cache if it changed; a failure is logged.
async fn save_peer_cache(s: &Daemon) {
    let Ok(scored) = s.agent.peer_cache().await else {
        return;
    };
    if let Err(e) = Daemon::lock(&s.peer_cache).save(&scored) {
        warn!(error = %e, "cannot write the peer cache");
    }
}
