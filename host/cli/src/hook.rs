//! `plexus hook`: webhook triggers on the daemon (create, list, show,
//! delete), and `send`, which delivers a signed request as a webhook sender
//! would (to try a hook, or from a script).

use crate::Global;
use crate::client::from_global;
use crate::remote::{table, time};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use plexus_client::{HookSpec, Priority};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum HookCommand {
    /// Create a hook that starts WORKFLOW when a signed request arrives at POST /v1/hooks/ID.
    /// Prints the hook's secret, this once: give it to the sender (it signs with it).
    Add {
        /// The workflow each delivery starts.
        workflow: String,
        /// Hook id, part of its URL [default: a random one].
        #[arg(long)]
        id: Option<String>,
        /// Pass the whole body as this one input (any JSON); without it the body must be a JSON
        /// object whose keys are the inputs.
        #[arg(long, value_name = "NAME")]
        inputs_key: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// The started executions' priority: low, normal (default), high or critical.
        #[arg(long, value_parser = crate::remote::api_enum::<Priority>)]
        priority: Option<Priority>,
        /// Print JSON (with the secret).
        #[arg(long)]
        json: bool,
    },
    /// List the hooks (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a hook and its deliveries of the last day.
    Show {
        /// Hook id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a hook: deliveries to it are refused from now on.
    Rm {
        /// Hook id.
        id: String,
    },
    /// Deliver a signed request to a hook (what a webhook sender does); prints the execution started.
    Send {
        /// Hook id.
        id: String,
        /// The body: JSON text, @FILE, or - for stdin.
        #[arg(long, default_value = "{}")]
        body: String,
        /// A file holding the hook's secret [default: $PLEXUS_HOOK_SECRET].
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The delivery id (never reuse one: a delivery seen before is refused) [default: a random one].
        #[arg(long)]
        delivery: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(global: &Global, command: HookCommand) -> anyhow::Result<ExitCode> {
    // A delivery is signed; it needs no API token.
    let client = match &command {
        HookCommand::Send { .. } => crate::client::without_token(global)?,
        _ => from_global(global)?,
    };
    match command {
        HookCommand::Add { workflow, id, inputs_key, description, priority, json } => {
            let created = client.create_hook(&HookSpec { id, workflow, inputs_key, description, priority })?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                outln!("hook {} created: POST {}", created.hook.id, created.hook.path);
                outln!("secret (shown once; the sender signs with it): {}", created.secret);
            }
        }
        HookCommand::List { json } => {
            let out = client.hooks()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = out
                .hooks
                .iter()
                .map(|h| {
                    let input = h.spec.inputs_key.clone().unwrap_or_else(|| "(the body's keys)".into());
                    vec![h.id.clone(), h.spec.workflow.clone(), input, time(h.created_at_ms)]
                })
                .collect();
            table(&["HOOK", "WORKFLOW", "INPUTS", "CREATED (UTC)"], rows);
        }
        HookCommand::Show { id, json } => {
            let out = client.hook(&id)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!("hook {}: POST {} starts {}", out.hook.id, out.hook.path, out.hook.spec.workflow);
            if let Some(d) = &out.hook.spec.description {
                outln!("{d}");
            }
            let rows = out
                .deliveries
                .iter()
                .map(|d| vec![d.delivery.clone(), time(d.received_at_ms), d.execution_id.clone().unwrap_or("-".into())])
                .collect();
            table(&["DELIVERY", "RECEIVED (UTC)", "EXECUTION"], rows);
        }
        HookCommand::Rm { id } => {
            client.delete_hook(&id)?;
            outln!("hook {id} deleted");
        }
        HookCommand::Send { id, body, secret_file, delivery, json } => {
            let secret = match &secret_file {
                Some(file) => {
                    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
                }
                None => std::env::var("PLEXUS_HOOK_SECRET")
                    .context("the hook's secret: give --secret-file or set $PLEXUS_HOOK_SECRET")?,
            };
            let body = match body.as_str() {
                "-" => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).context("cannot read the body from stdin")?;
                    text
                }
                text => match text.strip_prefix('@') {
                    Some(path) => {
                        std::fs::read_to_string(path).with_context(|| format!("--body: cannot read {path}"))?
                    }
                    None => text.to_owned(),
                },
            };
            if serde_json::from_str::<serde_json::Value>(&body).is_err() {
                bail!("--body: not JSON");
            }
            let delivery = delivery.unwrap_or_else(|| format!("cli-{}", plexus_host::new_execution_id()));
            let started = client.deliver_hook(&id, secret.trim(), &delivery, body.as_bytes())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&started)?);
            } else {
                outln!("delivery {delivery} started execution {}", started.execution_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
