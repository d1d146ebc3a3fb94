//! `stores/`: the replicated KV stores and task lists, one file per store
//! (`<topic id hex>.store`, the postcard encoding of [`StoreSnapshot`]: the store's topic,
//! kind and pinned owner and the signed batches it holds). Loaded at start, so a restart keeps
//! every store and its subscription; written after every local change and, for changes that
//! arrive from others, at most once per [`SAVE_INTERVAL`].
//!
//! A file that does not decode, or that the agent refuses, is moved aside to
//! `<name>.corrupt-<unix seconds>` and logged; the store is then missing until joined again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{error, warn};
use x0x_driver_tokio::{Agent, AgentEvent, StoreSnapshot};
use x0x_proto::wire::TopicId;

use crate::files;
use crate::state::{AppState, unix_secs};

/// The directory in the data dir.
pub const STORES_DIR: &str = "stores";

/// How often changes that arrived from others are written.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

fn path_of(dir: &Path, topic: &str) -> PathBuf {
    let id = TopicId::from_name(topic);
    dir.join(STORES_DIR)
        .join(format!("{}.store", hex::encode(id.as_bytes())))
}

/// Reopens every saved store on `agent`; the topics reopened.
pub async fn load_all(agent: &Agent, data_dir: &Path) -> Vec<String> {
    let dir = data_dir.join(STORES_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "store"))
        .collect();
    paths.sort();
    let mut opened = Vec::new();
    for p in paths {
        let result = match std::fs::read(&p) {
            Ok(bytes) => match postcard::from_bytes::<StoreSnapshot>(&bytes) {
                Ok(snap) => {
                    let topic = snap.topic.clone();
                    agent
                        .restore_store(snap)
                        .await
                        .map(|()| topic)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("does not decode: {e}")),
            },
            Err(e) => Err(format!("unreadable: {e}")),
        };
        match result {
            Ok(topic) => opened.push(topic),
            Err(reason) => {
                let aside = p.with_extension(format!("store.corrupt-{}", unix_secs()));
                let _ = std::fs::rename(&p, &aside);
                error!(file = %p.display(), kept_at = %aside.display(), %reason,
                    "a saved store is unusable: kept aside");
            }
        }
    }
    opened
}

/// Writes the store on `topic` (temporary file and rename).
pub async fn save(agent: &Agent, data_dir: &Path, topic: &str) {
    let Ok(Some(snap)) = agent.store_snapshot(topic).await else {
        return;
    };
    let bytes = match postcard::to_allocvec(&snap) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, topic, "cannot encode a store");
            return;
        }
    };
    let path = path_of(data_dir, topic);
    if let Some(parent) = path.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        warn!(error = %e, "cannot create the stores directory");
        return;
    }
    if let Err(e) = files::write_atomic(&path, &bytes, true) {
        warn!(error = %e, topic, "cannot write a store");
    }
}

/// Removes the saved file of the store on `topic`.
pub fn forget(data_dir: &Path, topic: &str) {
    let _ = std::fs::remove_file(path_of(data_dir, topic));
}

/// Saves the stores that changed, at most once per [`SAVE_INTERVAL`], until shutdown.
pub async fn saver(s: AppState) {
    let mut dirty: BTreeSet<TopicId> = BTreeSet::new();
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    loop {
        let Ok(mut events) = s.agent.events().await else {
            return;
        };
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(AgentEvent::StoreChanged { topic }) => { dirty.insert(topic); }
                    Some(_) => {}
                    // Fell behind and was dropped: resubscribe and save everything once.
                    None => {
                        if s.is_shutting_down() {
                            return;
                        }
                        if let Ok(all) = s.agent.stores().await {
                            dirty.extend(all.iter().map(|i| TopicId::from_name(&i.topic)));
                        }
                        break;
                    }
                },
                _ = tick.tick() => flush(&s, &mut dirty).await,
            }
        }
    }
}

/// Writes the dirty stores.
pub async fn flush(s: &AppState, dirty: &mut BTreeSet<TopicId>) {
    if dirty.is_empty() {
        return;
    }
    let Ok(all) = s.agent.stores().await else {
        return;
    };
    for info in all {
        if dirty.remove(&TopicId::from_name(&info.topic)) {
            save(&s.agent, &s.settings.data_dir, &info.topic).await;
        }
    }
    dirty.clear();
}

/// Writes every store (at shutdown).
pub async fn save_all(s: &AppState) {
    if let Ok(all) = s.agent.stores().await {
        for info in all {
            save(&s.agent, &s.settings.data_dir, &info.topic).await;
        }
    }
}
