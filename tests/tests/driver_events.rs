//! The membership events an agent streams: a neighbour's departure with its reason, and
//! SWIM's suspicion of a neighbour that stopped answering.

use x0x_driver_tokio::{AgentEvent, DownReason};
use x0x_tests::{addr, joined_agent, wait_event, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbor_down_carries_the_reason() {
    let a = joined_agent(vec![]).await;
    let mut a_events = a.events().await.unwrap();
    let b = joined_agent(vec![addr(&a).await]).await;
    let mut b_events = b.events().await.unwrap();
    let (ma, mb) = (a.machine_id(), b.machine_id());
    wait_event(&mut a_events, |e| {
        *e == AgentEvent::NeighborUp { machine_id: mb }
    })
    .await;

    // B leaves: it drops A for its own shutdown, and tells A, which sees B leave.
    within(b.shutdown()).await.unwrap();
    let left = |me| move |e: &AgentEvent| matches!(e, AgentEvent::NeighborDown { machine_id, .. } if *machine_id == me);
    let at_b = wait_event(&mut b_events, left(ma)).await;
    assert_eq!(
        at_b,
        AgentEvent::NeighborDown {
            machine_id: ma,
            reason: DownReason::Shutdown
        }
    );
    let at_a = wait_event(&mut a_events, left(mb)).await;
    assert_eq!(
        at_a,
        AgentEvent::NeighborDown {
            machine_id: mb,
            reason: DownReason::Left
        }
    );
    within(a.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_neighbor_is_suspected_then_declared_dead() {
    let a = joined_agent(vec![]).await;
    let mut a_events = a.events().await.unwrap();
    let a_addr = addr(&a).await;

    // B runs on a runtime of its own with one thread, which the test then blocks: B stops
    // answering anything, as a hung process would, while its connection to A stays open.
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = tokio::sync::oneshot::channel::<()>();
    let (thaw_tx, thaw_rx) = std::sync::mpsc::channel::<()>();
    let b_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("B's runtime");
        rt.block_on(async move {
            let b = joined_agent(vec![a_addr]).await;
            id_tx.send(b.machine_id()).expect("test waits for B");
            freeze_rx.await.expect("test freezes B");
            // Blocks B's only thread: its driver, connections and endpoint all stop.
            thaw_rx.recv().expect("test thaws B");
            within(b.shutdown()).await.unwrap();
        });
    });

    let mb = within(id_rx).await.expect("B joined");
    wait_event(&mut a_events, |e| {
        *e == AgentEvent::NeighborUp { machine_id: mb }
    })
    .await;
    freeze_tx.send(()).expect("B waits");
    wait_event(&mut a_events, |e| {
        *e == AgentEvent::NeighborSuspected { machine_id: mb }
    })
    .await;
    let down = wait_event(
        &mut a_events,
        |e| matches!(e, AgentEvent::NeighborDown { machine_id, .. } if *machine_id == mb),
    )
    .await;
    assert_eq!(
        down,
        AgentEvent::NeighborDown {
            machine_id: mb,
            reason: DownReason::Dead
        }
    );

    thaw_tx.send(()).expect("B is frozen");
    within(tokio::task::spawn_blocking(move || b_thread.join()))
        .await
        .unwrap()
        .expect("B's thread ends cleanly");
    within(a.shutdown()).await.unwrap();
}
