//! `/stores…` and `/task-lists…`: replicated KV stores and task lists with x0x's paths and
//! shapes (the store id is its topic). Every local change is saved to `stores/` before the
//! answer, so a restart keeps it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use x0x_driver_tokio::{AccessPolicy, Error, KvEntry, StoreKind, Task, TaskState};
use x0x_proto::AgentId;
use x0x_proto::collab::{CollabError, Refusal};

use super::error::{ApiError, ApiResult, ok, ok_empty, ok_with};
use super::extract::{JsonBody, OptionalJson, b64, parse_b64, parse_id32};
use crate::state::{AppState, Daemon};

/// The status and message for a store error.
fn store_error(e: Error, what: &str) -> ApiError {
    let Error::Store(e) = e else {
        return e.into();
    };
    let status = match &e {
        CollabError::UnknownStore => return ApiError::not_found(format!("{what} not found")),
        CollabError::UnknownKey | CollabError::UnknownTask => StatusCode::NOT_FOUND,
        CollabError::ValueTooLarge { .. } | CollabError::StoreFull { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        CollabError::Invalid { .. } | CollabError::WrongKind { .. } => StatusCode::BAD_REQUEST,
        CollabError::NotPermitted(Refusal::NotAWriter | Refusal::OwnerOnly) => {
            StatusCode::FORBIDDEN
        }
        CollabError::NotPermitted(_) | CollabError::AlreadyOpen => StatusCode::CONFLICT,
        CollabError::NotSynced => StatusCode::SERVICE_UNAVAILABLE,
        CollabError::TooManyStores { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// `POST /stores` and `POST /task-lists`.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    /// The store's name.
    pub name: String,
    /// Its topic (and id).
    pub topic: String,
    /// KV stores: `signed` (owner-only writes, the default) or `allowlisted`.
    #[serde(default)]
    pub policy: Option<String>,
    /// KV stores: agents (64 hex) that may write under `allowlisted`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `POST /stores/:id/join` (the body is optional: x0x sends none).
#[derive(Debug, Default, Deserialize)]
pub struct JoinBody {
    /// The topic; defaults to the path's id.
    #[serde(default)]
    pub topic: Option<String>,
    /// The owner to expect (64 hex); without it the first creation that arrives is taken.
    #[serde(default)]
    pub owner: Option<String>,
}

fn agents(ids: &[String]) -> Result<Vec<AgentId>, ApiError> {
    ids.iter()
        .map(|s| parse_id32(s).map(AgentId::from_bytes))
        .collect()
}

async fn list(s: &Daemon, kind: StoreKind) -> Result<Vec<Value>, ApiError> {
    let all = s.agent.stores().await?;
    Ok(all
        .into_iter()
        .filter(|i| i.kind == kind)
        .map(|i| {
            json!({
                "id": i.topic,
                "topic": i.topic,
                "name": i.name,
                "owner": i.owner.map(|o| o.to_hex()),
                "policy": i.policy.as_str(),
                "changes": i.changes,
            })
        })
        .collect())
}

/// `GET /stores`.
pub async fn stores(State(s): State<AppState>) -> ApiResult {
    ok(json!({ "stores": list(&s, StoreKind::Kv).await? }))
}

/// `POST /stores`: 201 `{id, store_id}`; the same topic again answers 200.
pub async fn create_store(
    State(s): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult {
    if b.topic.is_empty() {
        return Err(ApiError::bad_request("topic must not be empty"));
    }
    let policy = match b.policy.as_deref() {
        None | Some("signed") => AccessPolicy::Signed,
        Some("allowlisted") => AccessPolicy::Allowlisted,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "policy must be 'signed' or 'allowlisted', not {other:?}"
            )));
        }
    };
    let allow = agents(&b.allow)?;
    let status = match s
        .agent
        .create_store(StoreKind::Kv, &b.topic, &b.name, policy, allow)
        .await
    {
        Ok(()) => StatusCode::CREATED,
        Err(Error::Store(CollabError::AlreadyOpen)) => StatusCode::OK,
        Err(e) => return Err(store_error(e, "store")),
    };
    crate::stores::save(&s.agent, &s.settings.data_dir, &b.topic).await;
    Ok(ok_with(status, json!({"id": b.topic, "store_id": b.topic})))
}

/// `POST /stores/:id/join`.
pub async fn join_store(
    State(s): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<JoinBody>,
) -> ApiResult {
    join(&s, StoreKind::Kv, b.topic.unwrap_or(id), b.owner).await
}

async fn join(s: &Daemon, kind: StoreKind, topic: String, owner: Option<String>) -> ApiResult {
    let owner = owner
        .map(|o| parse_id32(&o).map(AgentId::from_bytes))
        .transpose()?;
    match s.agent.join_store(kind, &topic, owner).await {
        Ok(()) | Err(Error::Store(CollabError::AlreadyOpen)) => {}
        Err(e) => return Err(store_error(e, "store")),
    }
    crate::stores::save(&s.agent, &s.settings.data_dir, &topic).await;
    ok(json!({"id": topic}))
}

fn content_hash(e: &KvEntry) -> String {
    blake3::hash(&e.value).to_hex().to_string()
}

/// `GET /stores/:id/keys`.
pub async fn keys(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let entries = s
        .agent
        .store_entries(&id)
        .await
        .map_err(|e| store_error(e, "store"))?;
    let keys: Vec<Value> = entries
        .iter()
        .map(|(k, e)| {
            json!({
                "key": k,
                "content_type": e.content_type,
                "content_hash": content_hash(e),
                "size": e.value.len(),
                "updated_at": e.updated_at_ms,
            })
        })
        .collect();
    ok(json!({ "keys": keys }))
}

/// `PUT /stores/:id/:key`.
#[derive(Debug, Deserialize)]
pub struct PutBody {
    /// Standard base64.
    pub value: String,
    /// Media type; default `application/octet-stream`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `PUT /stores/:id/:key`.
pub async fn put(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody<PutBody>,
) -> ApiResult {
    let value = parse_b64("value", &b.value)?;
    let ct = b
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    s.agent
        .store_put(&id, &key, value.into(), &ct)
        .await
        .map_err(|e| store_error(e, "store"))?;
    crate::stores::save(&s.agent, &s.settings.data_dir, &id).await;
    ok_empty()
}

/// `GET /stores/:id/:key`.
pub async fn get(State(s): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult {
    let e = s
        .agent
        .store_get(&id, &key)
        .await
        .map_err(|e| store_error(e, "store"))?
        .ok_or_else(|| ApiError::not_found("key not found"))?;
    ok(json!({
        "key": key,
        "value": b64(&e.value),
        "content_type": e.content_type,
        "content_hash": content_hash(&e),
        "metadata": {},
        "created_at": e.created_at_ms,
        "updated_at": e.updated_at_ms,
    }))
}

/// `DELETE /stores/:id/:key` (a missing key is 404, not x0x's 500).
pub async fn remove(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult {
    s.agent
        .store_remove(&id, &key)
        .await
        .map_err(|e| store_error(e, "store"))?;
    crate::stores::save(&s.agent, &s.settings.data_dir, &id).await;
    ok_empty()
}

/// `GET /task-lists`.
pub async fn task_lists(State(s): State<AppState>) -> ApiResult {
    ok(json!({ "task_lists": list(&s, StoreKind::TaskList).await? }))
}

/// `POST /task-lists`: 201 `{id, list_id}`; a topic others use joins their list.
pub async fn create_task_list(
    State(s): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult {
    if b.topic.is_empty() {
        return Err(ApiError::bad_request("topic must not be empty"));
    }
    match s
        .agent
        .create_store(
            StoreKind::TaskList,
            &b.topic,
            &b.name,
            AccessPolicy::Open,
            Vec::new(),
        )
        .await
    {
        Ok(()) | Err(Error::Store(CollabError::AlreadyOpen)) => {}
        Err(e) => return Err(store_error(e, "task list")),
    }
    crate::stores::save(&s.agent, &s.settings.data_dir, &b.topic).await;
    Ok(ok_with(
        StatusCode::CREATED,
        json!({"id": b.topic, "list_id": b.topic}),
    ))
}

/// x0x's task object, plus the full assignee id.
fn task_json(t: &Task) -> Value {
    let assignee = t.state.agent();
    json!({
        "id": t.id,
        "title": t.title,
        "description": t.description,
        "state": t.state.display(),
        "assignee": assignee.map(|a| format!("AgentId(0x{})", &a.to_hex()[..16])),
        "assignee_id": assignee.map(|a| a.to_hex()),
        "done": matches!(t.state, TaskState::Done(_)),
        "priority": 0,
        "created_by": t.created_by.to_hex(),
        "created_at": t.created_at_ms,
    })
}

/// `GET /task-lists/:id/tasks`, in list order.
pub async fn tasks(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let tasks = s
        .agent
        .tasks(&id)
        .await
        .map_err(|e| store_error(e, "task list"))?;
    ok(json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>() }))
}

/// `POST /task-lists/:id/tasks`.
#[derive(Debug, Deserialize)]
pub struct AddTaskBody {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// `POST /task-lists/:id/tasks`: 201 `{task_id, id}`.
pub async fn add_task(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<AddTaskBody>,
) -> ApiResult {
    let task = s
        .agent
        .task_add(&id, &b.title, &b.description)
        .await
        .map_err(|e| store_error(e, "task list"))?;
    crate::stores::save(&s.agent, &s.settings.data_dir, &id).await;
    Ok(ok_with(
        StatusCode::CREATED,
        json!({"task_id": task, "id": task}),
    ))
}

/// `PATCH /task-lists/:id/tasks/:tid`.
#[derive(Debug, Deserialize)]
pub struct TaskActionBody {
    /// `claim` or `complete`.
    pub action: String,
}

/// `PATCH /task-lists/:id/tasks/:tid`: claim or complete.
pub async fn task_action(
    State(s): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
    JsonBody(b): JsonBody<TaskActionBody>,
) -> ApiResult {
    if parse_id32(&tid).is_err() {
        return Err(ApiError::bad_request(
            "invalid task ID (expected 64 hex chars)",
        ));
    }
    let tid = tid.to_ascii_lowercase();
    let r = match b.action.as_str() {
        "claim" => s.agent.task_claim(&id, &tid).await,
        "complete" => s.agent.task_complete(&id, &tid).await,
        _ => {
            return Err(ApiError::bad_request(
                "action must be 'claim' or 'complete'",
            ));
        }
    };
    r.map_err(|e| store_error(e, "task list"))?;
    crate::stores::save(&s.agent, &s.settings.data_dir, &id).await;
    ok_empty()
}
