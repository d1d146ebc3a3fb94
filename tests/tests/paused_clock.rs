//! The agent reads tokio's clock: with the clock paused, its timers fire when tokio's time
//! is advanced, without waiting in real time.

use std::time::{Duration, Instant};

use x0x_driver_tokio::Agent;
use x0x_tests::loopback;

/// The identity heartbeat: a timer of the node, re-publishing the agent's announcements.
const HEARTBEAT_SECS: u64 = 60;

#[tokio::test(start_paused = true)]
async fn heartbeat_fires_on_a_paused_clock() {
    let agent = Agent::builder()
        .with_network_config(loopback(vec![]))
        .with_heartbeat_interval(HEARTBEAT_SECS)
        .build()
        .await
        .unwrap();
    // Joining alone announces the agent once and arms the heartbeat.
    agent.join_network().await.unwrap();
    let announced = agent.stats().await.unwrap().node.broadcast.published;
    assert!(announced > 0);

    let real = Instant::now();
    tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS + 1)).await;
    let after = agent.stats().await.unwrap().node.broadcast.published;
    assert_eq!(
        after,
        2 * announced,
        "one heartbeat re-announces as much as the join"
    );
    // A simulated minute passed in a fraction of a real one: nothing waited on the wall
    // clock (an agent on the system clock would sit here for the full minute).
    assert!(real.elapsed() < Duration::from_secs(20));

    agent.shutdown().await.unwrap();
}
