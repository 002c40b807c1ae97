//! Which daemon the remote commands talk to, and with which token; the
//! transport is [`plexus_client::Client`].

use crate::Global;
use anyhow::anyhow;
use plexus_client::{Client, ClientError, Listen};
use plexus_daemon::config::{DEFAULT_LISTEN, RawConfig, data_dir};
use std::path::PathBuf;

/// Exit code: the daemon refused the request (its error code is printed).
pub const REFUSED: u8 = 1;
/// Exit code: the daemon could not be reached.
pub const UNREACHABLE: u8 = 10;
/// Exit code: the token was refused.
pub const UNAUTHORIZED: u8 = 11;

/// The daemon named by `--url`, `$PLEXUS_URL`, or the config file's `listen`
/// (default 127.0.0.1:7070), with the token from `$PLEXUS_TOKEN`,
/// `--token-file`, `$PLEXUS_TOKEN_FILE`, the config's `token_file`, or the
/// data directory's `token`.
pub fn from_global(global: &Global) -> anyhow::Result<Client> {
    connect(global, true)
}

/// [`from_global`] for a request that needs no token (a hook delivery,
/// signed instead): the token is sent when one is found, and none is needed.
///
/// # Errors
/// As [`from_global`], but for the token.
pub fn without_token(global: &Global) -> anyhow::Result<Client> {
    connect(global, false)
}

fn connect(global: &Global, token_required: bool) -> anyhow::Result<Client> {
    let config = match crate::config_path(global) {
        Some(path) => RawConfig::load(&path)?,
        None => RawConfig::default(),
    };
    let url = global.url.clone().or_else(|| std::env::var("PLEXUS_URL").ok());
    let listen = match url {
        Some(url) => {
            let trimmed = url.trim_start_matches("http://").trim_end_matches('/');
            Listen::parse(trimmed).map_err(|e| anyhow!("--url {url}: {e}"))?
        }
        None => Listen::parse(config.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?,
    };
    let token = match std::env::var("PLEXUS_TOKEN") {
        Ok(token) => token,
        Err(_) => {
            let file: PathBuf = global
                .token_file
                .clone()
                .or_else(|| std::env::var_os("PLEXUS_TOKEN_FILE").map(PathBuf::from))
                .or(config.token_file)
                .unwrap_or_else(|| data_dir().join("token"));
            match std::fs::read_to_string(&file) {
                Ok(token) => token.trim().to_owned(),
                Err(_) if !token_required => String::new(),
                Err(e) => {
                    return Err(anyhow!(e).context(format!("cannot read the daemon's token from {}", file.display())));
                }
            }
        }
    };
    Ok(Client::new(listen, token)?)
}

/// The exit code for an error from a remote command.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    match error.downcast_ref::<ClientError>()? {
        ClientError::Unreachable { .. } => Some(UNREACHABLE),
        ClientError::Refused { status: 401, .. } => Some(UNAUTHORIZED),
        ClientError::Refused { .. } => Some(REFUSED),
        ClientError::Address(_) | ClientError::Request(_) | ClientError::Answer { .. } => None,
    }
}
