//! `plexus secret`: the daemon's secrets store (set, list, delete: values
//! are never read back) and `keygen`, which makes the store's key.

use crate::Global;
use crate::client::from_global;
use crate::remote::{table, time};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Set a secret on the daemon (replacing it). The value is read from stdin (pipe it in, or type
    /// it and press Ctrl-D) or from --from-file, never from the command line; one trailing newline
    /// is dropped. Steps and plugin configs name it as ${{ secrets.NAME }}.
    Set {
        /// Secret name: letters, digits and `_`, not starting with a digit, at most 64.
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the secrets' names and when they were set (values are never shown).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Rm {
        /// Secret name.
        name: String,
    },
    /// Make a new secrets key (64 hex digits) for the daemon's `secrets_key_file` or
    /// $PLEXUS_SECRETS_KEY; every daemon of a cluster needs the same one.
    Keygen {
        /// Write it to this new file (mode 600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn run(global: &Global, command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Keygen { out } => {
            let key = plexus_daemon::secrets::Keyring::generate().map_err(anyhow::Error::msg)?;
            match out {
                Some(file) => {
                    write_private(&file, &format!("{key}\n"))?;
                    outln!("secrets key written to {} (mode 600)", file.display());
                }
                None => outln!("{key}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        SecretCommand::Set { name, from_file, json } => {
            let mut value = match &from_file {
                Some(file) => {
                    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
                }
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).context("cannot read the value from stdin")?;
                    text
                }
            };
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                bail!("no value: pipe it into `plexus secret set {name}` or give --from-file");
            }
            let out = from_global(global)?.set_secret(&name, &value)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                outln!("secret {} set", out.name);
            }
        }
        SecretCommand::List { json } => {
            let out = from_global(global)?.secrets()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = out
                .secrets
                .iter()
                .map(|s| {
                    let usable = if s.usable { "yes" } else { "no (no key, or another key)" };
                    vec![s.name.clone(), time(s.updated_at_ms), usable.into()]
                })
                .collect();
            table(&["SECRET", "SET (UTC)", "USABLE"], rows);
        }
        SecretCommand::Rm { name } => {
            from_global(global)?.delete_secret(&name)?;
            outln!("secret {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Create `file` (it must not exist) readable by its owner only, holding `text`.
fn write_private(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(file).with_context(|| format!("cannot create {}", file.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
