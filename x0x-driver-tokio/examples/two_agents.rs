//! Two agents on loopback: B bootstraps to A, both subscribe to a topic, they exchange a few
//! messages, then both shut down. Exits non-zero if a message does not arrive in time.
//!
//! ```sh
//! cargo run --release -p x0x-driver-tokio --example two_agents
//! RUST_LOG=x0x_driver_tokio=info cargo run --release -p x0x-driver-tokio --example two_agents
//! ```

use std::process::ExitCode;
use std::time::Duration;

use x0x_driver_tokio::network::NetworkConfig;
use x0x_driver_tokio::{Agent, AgentEvent, Subscription};

const TOPIC: &str = "x0x-rs/example/chat";
const ROUNDS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(10);

fn loopback(bootstrap: Vec<std::net::SocketAddr>) -> NetworkConfig {
    NetworkConfig {
        bind_addr: Some("127.0.0.1:0".parse().expect("valid address")),
        bootstrap_nodes: bootstrap,
        ..Default::default()
    }
}

/// Waits for one message and prints it; false if none arrives before the deadline.
async fn expect_message(name: &str, sub: &mut Subscription) -> bool {
    match tokio::time::timeout(DEADLINE, sub.recv()).await {
        Ok(Some(m)) => {
            println!(
                "{name} received {:?} from agent {} (via machine {}, {} hop(s))",
                String::from_utf8_lossy(&m.payload),
                m.sender,
                m.via,
                m.hops
            );
            true
        }
        Ok(None) => {
            eprintln!("{name}: subscription ended");
            false
        }
        Err(_) => {
            eprintln!("{name}: no message within {DEADLINE:?}");
            false
        }
    }
}

async fn run() -> Result<bool, x0x_driver_tokio::Error> {
    let a = Agent::builder()
        .with_network_config(loopback(vec![]))
        .build()
        .await?;
    a.join_network().await?;
    let a_addr = a.bound_addr().await.expect("bound");
    println!(
        "A: agent {} machine {} at {a_addr}",
        a.agent_id(),
        a.machine_id()
    );
    let mut a_events = a.events().await?;

    let b = Agent::builder()
        .with_network_config(loopback(vec![a_addr]))
        .build()
        .await?;
    println!(
        "B: agent {} machine {} at {}",
        b.agent_id(),
        b.machine_id(),
        b.bound_addr().await.expect("bound")
    );
    b.join_network().await?;
    println!("B joined through A");
    // Wait until A has B as a neighbour, so both directions are ready.
    let neighbour = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = a_events.recv().await {
            if let AgentEvent::PeerUp {
                machine_id,
                agent_id,
            } = &ev
            {
                println!("A: peer up: machine {machine_id} agent {agent_id}");
            }
            if ev
                == (AgentEvent::NeighborUp {
                    machine_id: b.machine_id(),
                })
            {
                return true;
            }
        }
        false
    })
    .await;
    if neighbour != Ok(true) {
        eprintln!("A never saw B as a neighbour");
        return Ok(false);
    }

    let mut sub_a = a.subscribe(TOPIC).await?;
    let mut sub_b = b.subscribe(TOPIC).await?;
    let mut ok = true;
    for i in 0..ROUNDS {
        a.publish(TOPIC, format!("ping {i} from A").into_bytes())
            .await?;
        ok &= expect_message("B", &mut sub_b).await;
        b.publish(TOPIC, format!("pong {i} from B").into_bytes())
            .await?;
        ok &= expect_message("A", &mut sub_a).await;
        if !ok {
            break;
        }
    }
    for (name, agent) in [("A", &a), ("B", &b)] {
        let s = agent.stats().await?;
        println!(
            "{name}: {} frame(s) in, {} out, {} connection(s)",
            s.node.frames_received, s.node.frames_sent, s.connections
        );
    }
    drop((sub_a, sub_b));
    let started = std::time::Instant::now();
    b.shutdown().await?;
    a.shutdown().await?;
    println!("both agents shut down in {:?}", started.elapsed());
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run().await {
        Ok(true) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
