//! The three vocabularies of trust: how much an agent is trusted ([`TrustLevel`]), how its
//! identity is bound ([`IdentityType`]), and what the evaluator decided ([`TrustDecision`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much an agent is trusted, ordered `blocked < unknown < known < trusted`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    /// Nothing from it reaches the application, and nothing is sent to it.
    Blocked,
    /// No opinion (every agent that is not a contact).
    #[default]
    Unknown,
    /// Known: accepted, flagged as not fully trusted.
    Known,
    /// Trusted: accepted.
    Trusted,
}

impl TrustLevel {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::Blocked, Self::Unknown, Self::Known, Self::Trusted];

    /// The lowercase name (`blocked`, …): x0x's JSON and display form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Unknown => "unknown",
            Self::Known => "known",
            Self::Trusted => "trusted",
        }
    }

    /// The capitalised name (`Blocked`, …), the form x0x's card import answers with.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Blocked => "Blocked",
            Self::Unknown => "Unknown",
            Self::Known => "Known",
            Self::Trusted => "Trusted",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trust level, identity type or decision name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not one of the four trust levels.
    #[error("invalid trust level: {0} (valid values: blocked, unknown, known, trusted)")]
    TrustLevel(String),
    /// Not one of the four identity types.
    #[error("invalid identity type: {0} (valid values: anonymous, known, trusted, pinned)")]
    IdentityType(String),
}

impl FromStr for TrustLevel {
    type Err = ParseError;

    /// Case-insensitive, as x0x's daemon reads it.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseError::TrustLevel(s.to_string()))
    }
}

/// How an agent's identity is bound to machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityType {
    /// Nothing known beyond the key.
    #[default]
    Anonymous,
    /// Known to the user.
    Known,
    /// Trusted by the user.
    Trusted,
    /// Accepted only from its pinned machines.
    Pinned,
}

impl IdentityType {
    /// Every type.
    pub const ALL: [Self; 4] = [Self::Anonymous, Self::Known, Self::Trusted, Self::Pinned];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Known => "known",
            Self::Trusted => "trusted",
            Self::Pinned => "pinned",
        }
    }
}

impl fmt::Display for IdentityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityType {
    type Err = ParseError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseError::IdentityType(s.to_string()))
    }
}

/// What the evaluator decided for an (agent, machine) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustDecision {
    /// Trusted, or pinned and on a pinned machine.
    Accept,
    /// Known: accepted, flagged.
    AcceptWithFlag,
    /// Pinned, and this machine is not one of its pinned machines.
    RejectMachineMismatch,
    /// Blocked (or revoked).
    RejectBlocked,
    /// Not a contact, or a contact of level `unknown`.
    Unknown,
}

impl TrustDecision {
    /// The snake_case name (`accept_with_flag`, …): x0x's stream form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::AcceptWithFlag => "accept_with_flag",
            Self::RejectMachineMismatch => "reject_machine_mismatch",
            Self::RejectBlocked => "reject_blocked",
            Self::Unknown => "unknown",
        }
    }

    /// The CamelCase name (`AcceptWithFlag`, …): x0x's `/trust/evaluate` form.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Accept => "Accept",
            Self::AcceptWithFlag => "AcceptWithFlag",
            Self::RejectMachineMismatch => "RejectMachineMismatch",
            Self::RejectBlocked => "RejectBlocked",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether the decision refuses (blocked or a machine mismatch).
    pub const fn is_reject(self) -> bool {
        matches!(self, Self::RejectBlocked | Self::RejectMachineMismatch)
    }
}

impl fmt::Display for TrustDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
