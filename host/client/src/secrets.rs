//! `/v1/secrets`: the daemon's secrets store. Values are set and deleted,
//! never read back: every answer carries names and times only.

use serde::{Deserialize, Serialize};

/// `PUT /v1/secrets/{name}`: the value to store (4 bytes to 64 KiB of
/// text). The request's body is the only place the value travels.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretSet {
    /// The value.
    pub value: String,
}

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSet { value: *** }")
    }
}

/// A stored secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    /// Its name (`[A-Za-z_][A-Za-z0-9_]{0,63}`), as `${{ secrets.NAME }}` names it.
    pub name: String,
    /// When it was last set, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// Whether this daemon can use it: `false` when it has no secrets key,
    /// or the value was sealed with another key (set it again).
    pub usable: bool,
}

/// `GET /v1/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretList {
    /// Every secret, by name.
    pub secrets: Vec<SecretInfo>,
}
