//! `/v1/hooks`: webhook triggers. A hook starts a workflow when a request
//! signed with the hook's secret arrives at `POST /v1/hooks/{id}` — no API
//! token needed there, the signature is the credential (as GitHub's and
//! Stripe's webhooks): an HMAC-SHA256, keyed by the hook's secret, of
//! `"{timestamp}.{delivery}." + body`, where `timestamp` (Unix seconds,
//! [`TIMESTAMP_HEADER`]) must be within [`WINDOW_SECS`] of the daemon's
//! clock and `delivery` ([`DELIVERY_HEADER`]) is an id the sender never
//! reuses: a delivery seen before is refused as a replay.

use crate::Priority;
use serde::{Deserialize, Serialize};

/// Unix time of the request, seconds.
pub const TIMESTAMP_HEADER: &str = "x-plexus-timestamp";
/// The delivery's id: 1 to 128 of `A-Z a-z 0-9 _ -` (no `.`: it separates
/// the signed parts), never reused by the sender.
pub const DELIVERY_HEADER: &str = "x-plexus-delivery";
/// `sha256=<hex>`: see [`signature`].
pub const SIGNATURE_HEADER: &str = "x-plexus-signature";
/// How far a delivery's timestamp may be from the daemon's clock, seconds (5 min).
pub const WINDOW_SECS: u64 = 300;
/// The longest delivery id.
pub const MAX_DELIVERY_ID: usize = 128;

/// The [`SIGNATURE_HEADER`] value of a delivery: `sha256=` and the hex
/// HMAC-SHA256 of `"{timestamp}.{delivery}." + body` keyed by `secret` (the
/// text the daemon answered when the hook was created).
pub fn signature(secret: &str, timestamp: u64, delivery: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let tag = mac(secret, timestamp, delivery, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `given` (a [`SIGNATURE_HEADER`] value) signs this delivery,
/// compared in constant time.
pub fn verify(secret: &str, timestamp: u64, delivery: &str, body: &[u8], given: &str) -> bool {
    use hmac::Mac;
    let Some(hex) = given.trim().strip_prefix("sha256=") else { return false };
    let bytes: Option<Vec<u8>> = (hex.len() == 64)
        .then(|| (0..32).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect())
        .flatten();
    let Some(bytes) = bytes else { return false };
    mac(secret, timestamp, delivery, body).verify_slice(&bytes).is_ok()
}

/// The HMAC-SHA256 state keyed by `secret` over `"{timestamp}.{delivery}." + body`.
fn mac(secret: &str, timestamp: u64, delivery: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{delivery}.").as_bytes());
    mac.update(body);
    mac
}

/// `POST /v1/hooks`: a webhook that starts `workflow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Hook id (default: a new random one); part of its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The workflow each delivery starts (its current version then).
    pub workflow: String,
    /// Without it, the body must be a JSON object: its keys are the
    /// execution's inputs. With it, the whole body (any JSON) is the one
    /// input of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_key: Option<String>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The started executions' priority (default normal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// A hook, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookView {
    /// Hook id.
    pub id: String,
    /// Where deliveries go: `/v1/hooks/{id}`.
    pub path: String,
    /// What it was created with.
    pub spec: HookSpec,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// `POST /v1/hooks` answer: the hook and its signing secret, shown this
/// once (it is kept encrypted and never answered again).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookCreated {
    /// The hook.
    pub hook: HookView,
    /// Its secret: 64 hex digits, the HMAC key of [`signature`].
    pub secret: String,
}

impl std::fmt::Debug for HookCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookCreated").field("hook", &self.hook).field("secret", &"***").finish()
    }
}

/// `GET /v1/hooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookList {
    /// Every hook, by id.
    pub hooks: Vec<HookView>,
}

/// One accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookDelivery {
    /// The sender's delivery id.
    pub delivery: String,
    /// When it arrived, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// The execution it started (`None` while it is being started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// `GET /v1/hooks/{id}`: a hook and its deliveries of the last day, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookDetails {
    /// The hook.
    pub hook: HookView,
    /// Its deliveries of the last 24 h, newest first (at most 100).
    pub deliveries: Vec<HookDelivery>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_delivery_only() {
        let s = signature("k", 1_700_000_000, "d-1", b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 71, "{s}");
        assert!(verify("k", 1_700_000_000, "d-1", b"{\"a\":1}", &s));
        for (key, ts, delivery, body) in [
            ("other", 1_700_000_000, "d-1", &b"{\"a\":1}"[..]),
            ("k", 1_700_000_001, "d-1", b"{\"a\":1}"),
            ("k", 1_700_000_000, "d-2", b"{\"a\":1}"),
            ("k", 1_700_000_000, "d-1", b"{\"a\":2}"),
        ] {
            assert!(!verify(key, ts, delivery, body, &s));
        }
        assert!(!verify("k", 1_700_000_000, "d-1", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify("k", 1_700_000_000, "d-1", b"{\"a\":1}", &s.replace("sha256=", "md5=")));
    }
}
