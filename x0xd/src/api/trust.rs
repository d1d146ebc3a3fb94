//! `/contacts…` and `/trust/evaluate`: the contact store, machine pinning, revocations and
//! the trust evaluator, with x0x's paths and shapes. Every change is saved to
//! `contacts.json` before the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use x0x_driver_tokio::Error;
use x0x_proto::node::{TrustApplied, TrustChange};
use x0x_proto::trust::{Contact, IdentityType, MachineRecord, Revocation, TrustError, TrustLevel};
use x0x_proto::{AgentId, MachineId};

use super::error::{ApiError, ApiResult, ok, ok_with};
use super::extract::{JsonBody, parse_id32};
use crate::state::{AppState, Daemon};

/// x0x's contact object (the list omits the machines).
pub fn contact_json(c: &Contact) -> Value {
    json!({
        "agent_id": c.agent_id.to_hex(),
        "trust_level": c.trust_level.as_str(),
        "label": c.label,
        "added_at": c.added_at,
        "last_seen": c.last_seen,
        "identity_type": c.identity_type.as_str(),
    })
}

/// x0x's machine object.
pub fn machine_json(m: &MachineRecord) -> Value {
    json!({
        "machine_id": m.machine_id.to_hex(),
        "label": m.label,
        "first_seen": m.first_seen,
        "last_seen": m.last_seen,
        "pinned": m.pinned,
    })
}

fn revocation_json(r: &Revocation) -> Value {
    json!({
        "agent_id": r.agent_id.to_hex(),
        "reason": r.reason,
        "timestamp": r.timestamp,
        "revoker_id": r.revoker_id.map(|a| a.to_hex()),
    })
}

fn agent(id: &str) -> Result<AgentId, ApiError> {
    parse_id32(id).map(AgentId::from_bytes)
}

fn machine(id: &str) -> Result<MachineId, ApiError> {
    parse_id32(id)
        .map(MachineId::from_bytes)
        .map_err(|_| ApiError::bad_request("machine_id must be a 64-character hex string"))
}

/// Parses a trust level the way x0x does (case-insensitive, x0x's error text).
pub fn parse_level(s: &str) -> Result<TrustLevel, ApiError> {
    s.parse()
        .map_err(|e: x0x_proto::trust::ParseError| ApiError::bad_request(e.to_string()))
}

fn parse_identity_type(s: &str) -> Result<IdentityType, ApiError> {
    s.parse()
        .map_err(|e: x0x_proto::trust::ParseError| ApiError::bad_request(e.to_string()))
}

/// Applies a change and saves the store.
pub async fn apply(s: &Daemon, change: TrustChange) -> Result<TrustApplied, ApiError> {
    let applied = s.agent.change_trust(change).await.map_err(|e| match e {
        Error::Trust(t) => trust_error(t),
        other => ApiError::from(other),
    })?;
    save(s).await?;
    Ok(applied)
}

/// Writes `contacts.json` with the agent's store.
pub async fn save(s: &Daemon) -> Result<(), ApiError> {
    let state = s.agent.trust_state().await?;
    crate::contacts::save(&s.settings.data_dir, &state).map_err(|e| {
        tracing::error!(error = %e, "cannot write contacts.json");
        ApiError::internal(format!(
            "the change is applied but contacts.json could not be written: {e}"
        ))
    })
}

fn trust_error(e: TrustError) -> ApiError {
    match e {
        TrustError::ContactNotFound => ApiError::not_found("contact not found"),
        TrustError::MachineNotFound => ApiError::not_found("machine not found"),
        TrustError::TooLong { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    }
}

/// `GET /contacts`.
pub async fn list(State(s): State<AppState>) -> ApiResult {
    let state = s.agent.trust_state().await?;
    ok(json!({ "contacts": state.contacts.iter().map(contact_json).collect::<Vec<_>>() }))
}

/// `POST /contacts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// 64 hex.
    pub agent_id: String,
    /// Default `known`.
    #[serde(default)]
    pub trust_level: Option<String>,
    /// A name for people.
    #[serde(default)]
    pub label: Option<String>,
}

/// `POST /contacts`: adds (or replaces) a contact; 201.
pub async fn add(State(s): State<AppState>, JsonBody(b): JsonBody<AddBody>) -> ApiResult {
    let agent = agent(&b.agent_id)?;
    let level = parse_level(b.trust_level.as_deref().unwrap_or("known"))?;
    apply(
        &s,
        TrustChange::Add {
            agent,
            level,
            label: b.label,
        },
    )
    .await?;
    Ok(ok_with(
        StatusCode::CREATED,
        json!({ "agent_id": agent.to_hex() }),
    ))
}

/// `POST /contacts/trust` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBody {
    /// 64 hex.
    pub agent_id: String,
    /// The new level.
    pub level: String,
}

/// `POST /contacts/trust`: sets a trust level (creating the contact).
pub async fn set_trust(State(s): State<AppState>, JsonBody(b): JsonBody<TrustBody>) -> ApiResult {
    let agent = agent(&b.agent_id)?;
    let level = parse_level(&b.level)?;
    apply(&s, TrustChange::SetLevel { agent, level }).await?;
    ok(json!({}))
}

/// `PATCH /contacts/:agent_id` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// A new trust level.
    #[serde(default)]
    pub trust_level: Option<String>,
    /// A new identity type.
    #[serde(default)]
    pub identity_type: Option<String>,
}

/// `PATCH /contacts/:agent_id`.
pub async fn patch(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<PatchBody>,
) -> ApiResult {
    let agent = agent(&id)?;
    // Both parse before anything changes (x0x applied the level even when the type failed).
    let level = b.trust_level.as_deref().map(parse_level).transpose()?;
    let ty = b
        .identity_type
        .as_deref()
        .map(parse_identity_type)
        .transpose()?;
    if let Some(level) = level {
        apply(&s, TrustChange::SetLevel { agent, level }).await?;
    }
    if let Some(identity_type) = ty {
        apply(
            &s,
            TrustChange::SetIdentityType {
                agent,
                identity_type,
            },
        )
        .await?;
    }
    ok(json!({}))
}

/// `DELETE /contacts/:agent_id`.
pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = agent(&id)?;
    apply(&s, TrustChange::Remove { agent }).await?;
    ok(json!({}))
}

/// `POST /contacts/:agent_id/revoke` body.
#[derive(Debug, Deserialize)]
pub struct RevokeBody {
    /// Why.
    pub reason: String,
}

/// `POST /contacts/:agent_id/revoke`: permanent.
pub async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RevokeBody>,
) -> ApiResult {
    let agent = agent(&id)?;
    apply(
        &s,
        TrustChange::Revoke {
            agent,
            reason: b.reason,
        },
    )
    .await?;
    ok(json!({}))
}

/// `GET /contacts/:agent_id/revocations`: that agent's revocations (x0x returned every
/// agent's).
pub async fn revocations(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = agent(&id)?;
    let state = s.agent.trust_state().await?;
    let list: Vec<Value> = state
        .revocations
        .iter()
        .filter(|r| r.agent_id == agent)
        .map(revocation_json)
        .collect();
    ok(json!({ "revocations": list }))
}

/// `GET /contacts/:agent_id/machines`.
pub async fn machines(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = agent(&id)?;
    let state = s.agent.trust_state().await?;
    let list: Vec<Value> = state
        .contacts
        .iter()
        .find(|c| c.agent_id == agent)
        .map(|c| c.machines.iter().map(machine_json).collect())
        .unwrap_or_default();
    ok(json!({ "machines": list }))
}

/// `POST /contacts/:agent_id/machines` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineBody {
    /// 64 hex.
    pub machine_id: String,
    /// A name for people.
    #[serde(default)]
    pub label: Option<String>,
    /// Pin it.
    #[serde(default)]
    pub pinned: Option<bool>,
}

/// `POST /contacts/:agent_id/machines`: 201 when the record is new.
pub async fn add_machine(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MachineBody>,
) -> ApiResult {
    let agent = agent(&id)?;
    let m = machine(&b.machine_id)?;
    let pinned = b.pinned;
    let applied = apply(
        &s,
        TrustChange::AddMachine {
            agent,
            machine: m,
            label: b.label,
            pinned,
        },
    )
    .await?;
    if pinned == Some(true) {
        // Pinning through the record also makes the contact `pinned`, as the pin route does.
        apply(&s, TrustChange::Pin { agent, machine: m }).await?;
    }
    let TrustApplied::Machine { record, created } = applied else {
        return Err(ApiError::internal(
            "unexpected answer from the contact store",
        ));
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ok_with(status, json!({ "machine": machine_json(&record) })))
}

/// `DELETE /contacts/:agent_id/machines/:machine_id`: 204.
pub async fn remove_machine(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let agent = agent(&id)?;
    let m = machine(&mid)?;
    apply(&s, TrustChange::RemoveMachine { agent, machine: m }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /contacts/:agent_id/machines/:machine_id/pin`.
pub async fn pin(State(s): State<AppState>, Path((id, mid)): Path<(String, String)>) -> ApiResult {
    let agent = agent(&id)?;
    let m = machine(&mid)?;
    let found = matches!(
        apply(&s, TrustChange::Pin { agent, machine: m }).await?,
        TrustApplied::Pinned(true)
    );
    ok(json!({ "pinned": found }))
}

/// `DELETE /contacts/:agent_id/machines/:machine_id/pin`.
pub async fn unpin(
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
) -> ApiResult {
    let agent = agent(&id)?;
    let m = machine(&mid)?;
    let found = matches!(
        apply(&s, TrustChange::Unpin { agent, machine: m }).await?,
        TrustApplied::Pinned(true)
    );
    ok(json!({ "unpinned": found }))
}

/// `POST /trust/evaluate` body.
#[derive(Debug, Deserialize)]
pub struct EvaluateBody {
    /// 64 hex.
    pub agent_id: String,
    /// 64 hex.
    pub machine_id: String,
}

/// `POST /trust/evaluate`: `{decision}` in x0x's CamelCase form (`AcceptWithFlag`, …).
pub async fn evaluate(State(s): State<AppState>, JsonBody(b): JsonBody<EvaluateBody>) -> ApiResult {
    let agent = agent(&b.agent_id)?;
    let m = parse_id32(&b.machine_id)
        .map(MachineId::from_bytes)
        .map_err(|_| ApiError::bad_request("invalid machine_id hex"))?;
    let d = s.agent.evaluate_trust(agent, m).await?;
    ok(json!({ "decision": d.title() }))
}
