//! Cross-crate integration tests for x0x-rs live in `tests/tests/`: real QUIC on loopback
//! through the drivers, and simulator scenarios. This library holds shared test helpers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use x0x_driver_tokio::network::NetworkConfig;
use x0x_driver_tokio::{Agent, AgentEvent, Events};
use x0x_proto::identity::MachineKeypair;

pub mod load;

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A loopback network configuration with the given bootstrap peers.
pub fn loopback(bootstrap: Vec<SocketAddr>) -> NetworkConfig {
    NetworkConfig {
        bind_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        bootstrap_nodes: bootstrap,
        ..Default::default()
    }
}

/// Builds an agent on loopback with in-memory keys, bootstrapping to `bootstrap`, and joins.
pub async fn joined_agent(bootstrap: Vec<SocketAddr>) -> Agent {
    let agent = Agent::builder()
        .with_network_config(loopback(bootstrap))
        .build()
        .await
        .expect("build agent");
    within(agent.join_network()).await.expect("join");
    agent
}

/// The agent's bound address.
pub async fn addr(agent: &Agent) -> SocketAddr {
    agent.bound_addr().await.expect("bound address")
}

/// Runs `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

/// Waits until `events` yields an event matching `pred`.
pub async fn wait_event(events: &mut Events, pred: impl Fn(&AgentEvent) -> bool) -> AgentEvent {
    within(async {
        loop {
            let ev = events.recv().await.expect("event stream ended");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
}

/// A bare quinn endpoint on loopback with its own machine key, speaking x0x-rs TLS: for
/// tests that act as a misbehaving peer.
pub fn raw_endpoint(key: &MachineKeypair) -> quinn::Endpoint {
    let net = NetworkConfig::default();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("endpoint");
    ep.set_default_client_config(
        x0x_driver_tokio::tls::client_config(key, &net).expect("client config"),
    );
    ep
}
