//! Webhook triggers: `POST /v1/hooks/{id}` starts the hook's workflow with
//! the request's body as its inputs, when the request is signed with the
//! hook's secret (see [`plexus_client::hooks`] for the signature).
//!
//! A delivery is accepted only if, in this order: the hook exists (404);
//! the three headers are there and well formed (401); its timestamp is
//! within ±[`WINDOW_SECS`] of the daemon's clock (401); the signature
//! verifies in constant time (401); the body is JSON (an object, unless the
//! hook has an `inputs_key`; 400); its delivery id was not seen in the last
//! [`REMEMBER`] (409: a replay — a replayed request is either outside the
//! timestamp window or inside the memory of delivery ids). Then the
//! execution starts (202 with its id); if it cannot (the workflow was
//! deleted), the delivery id is forgotten so that the sender may retry.
//!
//! Hook secrets are 32 random bytes (hex), shown once when the hook is
//! created and kept sealed with the daemon's secrets key, like secrets
//! (`crate::secrets`): a daemon without a key cannot have hooks.

use crate::core::{Daemon, Origin};
use crate::error::{DaemonError, DaemonResult, ErrorCode};
use crate::store::HookRow;
use plexus_client::hooks::{MAX_DELIVERY_ID, WINDOW_SECS, verify};
use plexus_client::{HookCreated, HookDetails, HookSpec, HookView, Started};
use plexus_workflow::status::epoch_ms;
use serde_json::{Map, Value};
use std::time::Duration;

/// How long delivery ids are remembered (and shown): a day, well past the
/// timestamp window.
pub const REMEMBER: Duration = Duration::from_secs(24 * 3600);

/// The most hooks a daemon keeps.
pub const MAX_HOOKS: usize = 1000;

/// The most deliveries `GET /v1/hooks/{id}` shows.
const SHOWN_DELIVERIES: u32 = 100;

/// The longest hook id.
const MAX_HOOK_ID: usize = 128;

fn label(id: &str) -> String {
    format!("hook:{id}")
}

fn view(row: &HookRow) -> DaemonResult<HookView> {
    let spec: HookSpec = serde_json::from_value(row.spec.clone())
        .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("hook {}: stored spec: {e}", row.id)))?;
    Ok(HookView { id: row.id.clone(), path: format!("/v1/hooks/{}", row.id), spec, created_at_ms: row.created_at_ms })
}

fn unauthorized(message: impl Into<String>) -> DaemonError {
    DaemonError::new(ErrorCode::Unauthorized, message)
}

impl Daemon {
    /// Create a hook that starts `spec.workflow`; the answer holds its
    /// secret (this once).
    ///
    /// # Errors
    /// `InvalidConfiguration` (a bad id or input key, [`MAX_HOOKS`] reached),
    /// `NotFound` (no such workflow), `AlreadyExists` (the id is taken),
    /// `InvalidState` (no secrets key).
    pub async fn create_hook(&self, mut spec: HookSpec) -> DaemonResult<HookCreated> {
        let id = match &spec.id {
            Some(id) => id.clone(),
            None => format!("hook-{:016x}", fastrand::u64(..)),
        };
        if !plexus_workflow::definition::is_valid_id(&id, MAX_HOOK_ID) {
            let rule = plexus_workflow::definition::ID_RULE;
            return Err(DaemonError::invalid(format!("hook id `{id}`: {rule}, at most {MAX_HOOK_ID}")));
        }
        if let Some(key) = &spec.inputs_key
            && !plexus_workflow::definition::is_valid_id(key, MAX_HOOK_ID)
        {
            return Err(DaemonError::invalid(format!("inputs_key `{key}`: not a valid input name")));
        }
        if spec.description.as_ref().is_some_and(|d| d.len() > 4096) {
            return Err(DaemonError::invalid("description: at most 4096 bytes"));
        }
        self.workflow(&spec.workflow, None).await?;
        let secrets = self.secrets()?;
        if self.store().hooks().await?.len() >= MAX_HOOKS {
            return Err(DaemonError::invalid(format!("at most {MAX_HOOKS} hooks are kept; delete one first")));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("random source: {e}")))?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let (sealed, key_id) = secrets.seal(&label(&id), &secret)?;
        spec.id = Some(id.clone());
        let row = HookRow {
            id: id.clone(),
            spec: serde_json::to_value(&spec).unwrap_or_default(),
            sealed,
            key_id,
            created_at_ms: epoch_ms(self.clock().now()),
        };
        if !self.store().insert_hook(&row).await? {
            return Err(DaemonError::new(ErrorCode::AlreadyExists, format!("hook `{id}` exists")));
        }
        tracing::info!(hook = %id, workflow = %spec.workflow, "hook created");
        Ok(HookCreated { hook: view(&row)?, secret })
    }

    /// Every hook.
    ///
    /// # Errors
    /// The store failed.
    pub async fn hooks(&self) -> DaemonResult<Vec<HookView>> {
        self.store().hooks().await?.iter().map(view).collect()
    }

    async fn hook_row(&self, id: &str) -> DaemonResult<HookRow> {
        self.store().hook(id).await?.ok_or_else(|| DaemonError::not_found(format!("hook `{id}`")))
    }

    /// Hook `id` with its recent deliveries.
    ///
    /// # Errors
    /// `NotFound`; the store failed.
    pub async fn hook(&self, id: &str) -> DaemonResult<HookDetails> {
        let row = self.hook_row(id).await?;
        let deliveries = self.store().deliveries(id, SHOWN_DELIVERIES).await?;
        Ok(HookDetails { hook: view(&row)?, deliveries })
    }

    /// Delete hook `id` (deliveries signed for it are refused from now on).
    ///
    /// # Errors
    /// `NotFound`; the store failed.
    pub async fn delete_hook(&self, id: &str) -> DaemonResult<()> {
        if !self.store().delete_hook(id).await? {
            return Err(DaemonError::not_found(format!("hook `{id}`")));
        }
        tracing::info!(hook = %id, "hook deleted");
        Ok(())
    }

    /// Accept a delivery to hook `id` (see the module's documentation for
    /// the checks, in order) and start its workflow.
    ///
    /// # Errors
    /// `NotFound`, `Unauthorized`, `InvalidConfiguration` (the body),
    /// `AlreadyExists` (a replay), and whatever starting the workflow gives.
    pub async fn deliver(&self, id: &str, headers: &DeliveryHeaders<'_>, body: &[u8]) -> DaemonResult<Started> {
        // Claimed, started, finished: to its end even if the sender hangs up.
        let (this, id, body) = (self.clone(), id.to_owned(), body.to_vec());
        let owned = |v: Option<&str>| v.map(str::to_owned);
        let (timestamp, delivery, signature) =
            (owned(headers.timestamp), owned(headers.delivery), owned(headers.signature));
        self.detached(async move {
            let headers = DeliveryHeaders {
                timestamp: timestamp.as_deref(),
                delivery: delivery.as_deref(),
                signature: signature.as_deref(),
            };
            this.deliver_here(&id, &headers, &body).await
        })
        .await
    }

    async fn deliver_here(&self, id: &str, headers: &DeliveryHeaders<'_>, body: &[u8]) -> DaemonResult<Started> {
        self.check_accepting()?;
        let row = self.hook_row(id).await?;
        let hook = view(&row)?;
        fn header<'v>(name: &str, value: Option<&'v str>) -> DaemonResult<&'v str> {
            value.map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| unauthorized(format!("missing header {name}")))
        }
        let timestamp = header(plexus_client::hooks::TIMESTAMP_HEADER, headers.timestamp)?;
        let delivery = header(plexus_client::hooks::DELIVERY_HEADER, headers.delivery)?;
        let signature = header(plexus_client::hooks::SIGNATURE_HEADER, headers.signature)?;
        let timestamp: u64 = timestamp
            .parse()
            .map_err(|_| unauthorized(format!("{}: Unix seconds", plexus_client::hooks::TIMESTAMP_HEADER)))?;
        let well_formed = delivery.len() <= MAX_DELIVERY_ID
            && delivery.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !well_formed {
            // No `.`: it separates the signed parts ("{timestamp}.{delivery}." + body).
            return Err(unauthorized(format!(
                "{}: 1 to {MAX_DELIVERY_ID} of A-Z a-z 0-9 _ -",
                plexus_client::hooks::DELIVERY_HEADER
            )));
        }
        let now_ms = epoch_ms(self.clock().now());
        let now = now_ms / 1000;
        if now.abs_diff(timestamp) > WINDOW_SECS {
            return Err(unauthorized(format!(
                "the delivery's timestamp is {} s from the daemon's clock (at most {WINDOW_SECS})",
                now.abs_diff(timestamp)
            )));
        }
        let secret = self.secrets()?.open(&label(id), &row.sealed, &row.key_id)?;
        if !verify(&secret, timestamp, delivery, body, signature) {
            return Err(unauthorized("the signature does not verify with this hook's secret"));
        }
        let body: Value = serde_json::from_slice(body).map_err(|e| DaemonError::invalid(format!("body: {e}")))?;
        let inputs = match (&hook.spec.inputs_key, body) {
            (Some(key), body) => Map::from_iter([(key.clone(), body)]),
            (None, Value::Object(map)) => map,
            (None, _) => {
                return Err(DaemonError::invalid(
                    "body: a JSON object (its keys are the inputs), as this hook has no inputs_key",
                ));
            }
        };
        let forget_before = now_ms.saturating_sub(REMEMBER.as_millis() as u64);
        if !self.store().claim_delivery(id, delivery, now_ms, forget_before).await? {
            return Err(DaemonError::new(
                ErrorCode::AlreadyExists,
                format!("delivery `{delivery}` of hook `{id}` was received before: a replay is refused"),
            ));
        }
        let origin = Origin { priority: hook.spec.priority.unwrap_or_default(), ..Origin::default() };
        let exec = match self.start(&hook.spec.workflow, inputs, origin).await {
            Ok(exec) => exec,
            Err(e) => {
                self.store().finish_delivery(id, delivery, None).await?;
                return Err(e);
            }
        };
        self.store().finish_delivery(id, delivery, Some(exec.id())).await?;
        let (status, meta) = self.status(exec.id()).await?;
        tracing::info!(hook = %id, delivery, execution = %exec.id(), "hook delivery started an execution");
        Ok(Started {
            execution_id: exec.id().to_owned(),
            workflow_id: status.workflow_id,
            workflow_version: meta.workflow_version,
            status: status.status,
        })
    }
}

/// The signature headers of a delivery, as received.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeliveryHeaders<'a> {
    /// [`plexus_client::hooks::TIMESTAMP_HEADER`].
    pub timestamp: Option<&'a str>,
    /// [`plexus_client::hooks::DELIVERY_HEADER`].
    pub delivery: Option<&'a str>,
    /// [`plexus_client::hooks::SIGNATURE_HEADER`].
    pub signature: Option<&'a str>,
}
