//! `/agent`, `/agent/user-id`, `/announce`, `/agent/card`, `/agent/card/import`,
//! `/agent/sign`, `/agent/verify`.

use axum::extract::{Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use super::extract::{JsonBody, OptionalJson, b64, parse_b64, parse_id32};
use crate::state::{AppState, unix_secs};
use x0x_proto::node::TrustChange;
use x0x_proto::trust::TrustLevel;

/// `GET /agent`.
pub async fn agent(State(s): State<AppState>) -> ApiResult {
    ok(json!({
        "agent_id": s.agent.agent_id().to_hex(),
        "machine_id": s.agent.machine_id().to_hex(),
        "user_id": s.agent.user_id().map(|u| u.to_hex()),
        "kem_public_key_b64": b64(s.agent.kem_public_key().as_bytes()),
    }))
}

/// `GET /agent/user-id`.
pub async fn user_id(State(s): State<AppState>) -> ApiResult {
    ok(json!({ "user_id": s.agent.user_id().map(|u| u.to_hex()) }))
}

/// `POST /announce` body (optional; empty means both false).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AnnounceBody {
    /// Disclose the user id (needs `human_consent`).
    pub include_user_identity: bool,
    /// A human agreed to disclose the user id.
    pub human_consent: bool,
}

/// `POST /announce`.
pub async fn announce(
    State(s): State<AppState>,
    OptionalJson(b): OptionalJson<AnnounceBody>,
) -> ApiResult {
    s.agent
        .announce_identity(b.include_user_identity, b.human_consent)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    ok(json!({ "include_user_identity": b.include_user_identity }))
}

/// An agent card: who an agent is and where to reach it, shared as an `x0x://agent/` link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentCard {
    /// A name for people.
    #[serde(default)]
    pub display_name: String,
    /// 64 hex.
    pub agent_id: String,
    /// 64 hex.
    #[serde(default)]
    pub machine_id: String,
    /// 64 hex, absent when the agent has no user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `ip:port` strings.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
    /// The agent's signed identity and ML-KEM announcements (URL-safe unpadded base64 of one
    /// encoded frame): an importer verifies them and can reach the agent at once. x0x-rs
    /// addition; a card without it (x0x's) still gives the machine and addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
}

/// The `x0x://agent/` prefix.
pub const CARD_PREFIX: &str = "x0x://agent/";

impl AgentCard {
    /// `x0x://agent/` + URL-safe unpadded base64 of the compact JSON.
    pub fn link(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{CARD_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses a link or its bare base64 (whitespace around it is ignored).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let s = s.trim();
        let b = s.strip_prefix(CARD_PREFIX).unwrap_or(s);
        let bytes = URL_SAFE_NO_PAD
            .decode(b)
            .map_err(|_| ApiError::bad_request("invalid card: invalid base64"))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("invalid card: invalid UTF-8"))?;
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("invalid card: invalid card JSON: {e}")))
    }
}

/// `GET /agent/card` query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CardQuery {
    /// The card's display name.
    pub display_name: String,
    /// Accepted for x0x compatibility; this daemon has no groups to include.
    pub include_groups: bool,
}

/// `GET /agent/card`.
pub async fn card(State(s): State<AppState>, Query(q): Query<CardQuery>) -> ApiResult {
    let addresses = crate::api::status::external_addrs(&s).await;
    let records = s.agent.agent_card().await?;
    let card = AgentCard {
        display_name: q.display_name,
        agent_id: s.agent.agent_id().to_hex(),
        machine_id: s.agent.machine_id().to_hex(),
        user_id: s.agent.user_id().map(|u| u.to_hex()),
        addresses,
        created_at: unix_secs(),
        records: Some(URL_SAFE_NO_PAD.encode(&records)),
    };
    let link = card.link();
    ok(json!({ "card": card, "link": link }))
}

/// `POST /agent/card/import` body.
#[derive(Debug, Deserialize)]
pub struct ImportBody {
    /// A link or its bare base64.
    pub card: String,
    /// Trust to give the agent: `blocked`, `unknown`, `known` (default) or `trusted`.
    #[serde(default)]
    pub trust_level: Option<String>,
}

/// `POST /agent/card/import`: verifies the card's signed records when it has them (the
/// agent is then discovered at once), and connects to the card's machine, so
/// `/agents/connect` and `/direct/send` reach the agent without waiting.
pub async fn import_card(
    State(s): State<AppState>,
    JsonBody(b): JsonBody<ImportBody>,
) -> ApiResult {
    let card = AgentCard::parse(&b.card)?;
    let agent = parse_id32(&card.agent_id)
        .map_err(|_| ApiError::bad_request("invalid agent_id in card"))?;
    let level = super::trust::parse_level(b.trust_level.as_deref().unwrap_or("known"))?;
    // As in x0x, the contact is created (or replaced) with the card's name as its label; a
    // blocked card's records are then refused like any of that agent's announcements.
    let agent_id = x0x_proto::AgentId::from_bytes(agent);
    let label = Some(card.display_name.clone());
    super::trust::apply(
        &s,
        TrustChange::Add {
            agent: agent_id,
            level,
            label,
        },
    )
    .await?;
    if let Some(records) = card
        .records
        .as_ref()
        .filter(|_| level != TrustLevel::Blocked)
    {
        let bytes = URL_SAFE_NO_PAD
            .decode(records.trim())
            .map_err(|_| ApiError::bad_request("invalid card: invalid base64 in records"))?;
        let signed = s
            .agent
            .import_agent_card(&bytes)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid card: {e}")))?;
        if *signed.as_bytes() != agent {
            return Err(ApiError::bad_request(
                "invalid card: its records are signed by another agent",
            ));
        }
    }
    let machine = parse_id32(&card.machine_id).ok();
    let addrs: Vec<std::net::SocketAddr> = card
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if let Some(m) = machine
        && !addrs.is_empty()
        && m != *s.agent.machine_id().as_bytes()
    {
        s.agent
            .connect_machine(x0x_proto::MachineId::from_bytes(m), addrs)
            .await?;
    }
    ok(json!({
        "agent_id": hex::encode(agent),
        "display_name": card.display_name,
        "trust_level": level.title(),
        "groups": 0,
        "stores": 0,
    }))
}

/// `POST /agent/sign` body.
#[derive(Debug, Deserialize)]
pub struct SignBody {
    /// Standard base64 of the bytes to sign.
    pub payload: String,
    /// The application's domain string, bound into the signature so a signature made for one
    /// purpose never verifies for another. Default empty.
    #[serde(default)]
    pub context: String,
}

/// `POST /agent/sign`: `{signature, public_key, agent_id, context}` (base64 for bytes).
pub async fn sign(State(s): State<AppState>, JsonBody(b): JsonBody<SignBody>) -> ApiResult {
    let payload = parse_b64("payload", &b.payload)?;
    let signed = s
        .agent
        .sign_application(&b.context, &payload)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    ok(json!({
        "agent_id": s.agent.agent_id().to_hex(),
        "context": b.context,
        "signature": b64(&signed.signature),
        "public_key": b64(&signed.public_key),
    }))
}

/// `POST /agent/verify` body.
#[derive(Debug, Deserialize)]
pub struct VerifyBody {
    /// Standard base64 of the signed bytes.
    pub payload: String,
    /// Standard base64 of the signature.
    pub signature: String,
    /// The domain string it was signed with. Default empty.
    #[serde(default)]
    pub context: String,
    /// The signer, 64 hex. Its key comes from `public_key` or the discovery cache.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Standard base64 of the signer's ML-DSA-65 public key.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `POST /agent/verify`: `{valid, agent_id}`; `valid` false with a `reason` when it fails.
pub async fn verify(State(s): State<AppState>, JsonBody(b): JsonBody<VerifyBody>) -> ApiResult {
    let payload = parse_b64("payload", &b.payload)?;
    let signature = parse_b64("signature", &b.signature)?;
    let agent = b.agent_id.as_deref().map(parse_id32).transpose()?;
    let key = b
        .public_key
        .as_deref()
        .map(|k| parse_b64("public_key", k))
        .transpose()?;
    if agent.is_none() && key.is_none() {
        return Err(ApiError::bad_request("agent_id or public_key is required"));
    }
    let outcome = s
        .agent
        .verify_application(
            agent.map(x0x_proto::AgentId::from_bytes),
            key.as_deref(),
            &b.context,
            &payload,
            &signature,
        )
        .await?;
    match outcome {
        Ok(id) => ok(json!({ "valid": true, "agent_id": id.to_hex() })),
        Err(reason) => ok(json!({
            "valid": false,
            "agent_id": agent.map(hex::encode),
            "reason": reason.to_string(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_link_round_trips_with_or_without_prefix() {
        let c = AgentCard {
            display_name: "ann".into(),
            agent_id: "ab".repeat(32),
            machine_id: "cd".repeat(32),
            user_id: None,
            addresses: vec!["127.0.0.1:1".into()],
            created_at: 5,
            records: None,
        };
        let link = c.link();
        assert!(link.starts_with(CARD_PREFIX));
        assert!(!link.contains('='));
        assert_eq!(AgentCard::parse(&link).unwrap(), c);
        assert_eq!(
            AgentCard::parse(&format!("  {}\n", &link[CARD_PREFIX.len()..])).unwrap(),
            c
        );
        assert!(!link.contains("user_id"));
        assert!(AgentCard::parse("x0x://agent/!!!").is_err());
    }
}
