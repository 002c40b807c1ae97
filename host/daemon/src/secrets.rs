//! The daemon's secrets store: values set and deleted over the API and the
//! CLI (`plexus secret set|list|delete`), never read back; encrypted at rest.
//!
//! * **Key**: 32 bytes, 64 hex digits, from `$PLEXUS_SECRETS_KEY` or the
//!   file `secrets_key_file` (`--secrets-key-file`; readable by its owner
//!   only, like an SSH key); `plexus secret keygen` prints a new one. Every
//!   daemon of a cluster needs the same key. Without one, secrets cannot be
//!   set and stored ones cannot be used (their names are still listed).
//! * **At rest**: each value sealed with ChaCha20-Poly1305 (`ring`), a fresh
//!   random 96-bit nonce per write, the secret's name as associated data (a
//!   value cannot be moved to another name); stored as nonce ‖ ciphertext ‖
//!   tag with the key's id (the first 8 bytes of its SHA-256, hex), so a
//!   daemon started with another key says so instead of failing to decrypt.
//! * **In use**: values are kept decrypted in the daemon's memory
//!   ([`Secrets`] is the host's and the engine's
//!   [`SecretSource`]), loaded at start, changed by this daemon's writes and,
//!   in a cluster, re-read at every heartbeat; each is added to the process's
//!   [`plexus_host::secrets::redactor`].
//!
//! Ceilings: [`MAX_SECRETS`] secrets, names as
//! [`plexus_host::secrets::check_name`], values as
//! [`plexus_host::secrets::check_value`] (4 bytes to 64 KiB).

use crate::error::{DaemonError, DaemonResult, ErrorCode};
use crate::store::{SecretRow, Store};
use plexus_host::secrets::{SecretSource, SecretValue, check_name, check_value, redactor};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

/// The environment variable holding the key (64 hex digits); wins over `secrets_key_file`.
pub const KEY_ENV: &str = "PLEXUS_SECRETS_KEY";

/// The most secrets a daemon keeps.
pub const MAX_SECRETS: usize = 1000;

/// The key secrets are sealed with.
pub struct Keyring {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.id)
    }
}

impl Keyring {
    /// A key from its text: 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Not 64 hex digits (the text is never quoted).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (text.len() == 64)
            .then(|| (0..32).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect())
            .flatten();
        let bytes = bytes.ok_or("a secrets key is 64 hex digits (32 bytes); `plexus secret keygen` makes one")?;
        let id = sha2_hex(&bytes)[..16].to_owned();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| "the secrets key was refused")?;
        Ok(Self { key: LessSafeKey::new(key), id })
    }

    /// The key from `$PLEXUS_SECRETS_KEY`, else from `file`; `None` when
    /// neither is given.
    ///
    /// # Errors
    /// The file cannot be read, is readable by others than its owner, or
    /// does not hold a key (each naming the file or the variable).
    pub fn load(file: Option<&Path>) -> Result<Option<Self>, String> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Self::from_hex(&text).map(Some).map_err(|e| format!("${KEY_ENV}: {e}"));
        }
        let Some(file) = file else { return Ok(None) };
        let text = std::fs::read_to_string(file).map_err(|e| format!("secrets key file {}: {e}", file.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).map_err(|e| format!("secrets key file {}: {e}", file.display()))?;
            if mode.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "secrets key file {} can be read by others than its owner: `chmod 600` it",
                    file.display()
                ));
            }
        }
        Self::from_hex(&text).map(Some).map_err(|e| format!("secrets key file {}: {e}", file.display()))
    }

    /// A new random key, as 64 hex digits.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn generate() -> Result<String, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_owned())?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key's id: the first 8 bytes of its SHA-256, hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `value` sealed for secret `name`: nonce ‖ ciphertext ‖ tag.
    ///
    /// # Errors
    /// The random source or the cipher failed.
    pub fn seal(&self, name: &str, value: &str) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| "the system's random source failed".to_owned())?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut sealed)
            .map_err(|_| "sealing the secret failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The value of secret `name` from `sealed` (what [`Self::seal`] made).
    ///
    /// # Errors
    /// It was sealed with another key or for another name, or was changed.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<String, String> {
        let refused =
            || format!("secret `{name}` does not decrypt with this key (changed, or sealed for another name)");
        if sealed.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut buffer = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut buffer).map_err(|_| refused())?;
        String::from_utf8(plain.to_vec()).map_err(|_| refused())
    }
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The daemon's secrets: the store's sealed values, decrypted in memory.
pub struct Secrets {
    keyring: Option<Keyring>,
    store: Arc<dyn Store>,
    /// name → (the stored row's time and key id, the value, if it decrypted).
    values: RwLock<BTreeMap<String, Loaded>>,
}

#[derive(Clone)]
struct Loaded {
    updated_at_ms: u64,
    key_id: String,
    sealed_len: usize,
    value: Option<SecretValue>,
}

impl Secrets {
    /// The secrets of `store`, opened with `keyring` (none: listed, not
    /// usable). Values that do not decrypt are logged (by name) and left out.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn load(store: Arc<dyn Store>, keyring: Option<Keyring>) -> DaemonResult<Arc<Self>> {
        let secrets = Arc::new(Self { keyring, store, values: RwLock::default() });
        secrets.refresh().await?;
        Ok(secrets)
    }

    /// Re-read the store (another node of a cluster may have changed it):
    /// only rows that changed are decrypted again. Returns whether anything
    /// changed.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn refresh(&self) -> DaemonResult<bool> {
        let rows = self.store.secrets().await?;
        let current = self.values.read().unwrap_or_else(PoisonError::into_inner).clone();
        let mut next = BTreeMap::new();
        for row in rows {
            let same = current.get(&row.name).filter(|l| {
                l.updated_at_ms == row.updated_at_ms && l.key_id == row.key_id && l.sealed_len == row.sealed.len()
            });
            let loaded = match same {
                Some(l) => l.clone(),
                None => self.open_row(&row),
            };
            next.insert(row.name, loaded);
        }
        let changed = next.len() != current.len()
            || next.iter().any(|(name, l)| {
                current.get(name).is_none_or(|c| c.updated_at_ms != l.updated_at_ms || c.key_id != l.key_id)
            });
        *self.values.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(changed)
    }

    fn open_row(&self, row: &SecretRow) -> Loaded {
        let value = match &self.keyring {
            None => None,
            Some(k) if k.id() != row.key_id => {
                tracing::warn!(
                    secret = %row.name,
                    "secret was sealed with key {}, this daemon has key {}: it cannot be used until set again",
                    row.key_id,
                    k.id()
                );
                None
            }
            Some(k) => match k.open(&row.name, &row.sealed) {
                Ok(v) => {
                    let v = SecretValue::new(v);
                    match redactor().add(&v) {
                        Ok(()) => Some(v),
                        Err(e) => {
                            tracing::error!(secret = %row.name, "not usable: {e}");
                            None
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(secret = %row.name, "{e}");
                    None
                }
            },
        };
        Loaded { updated_at_ms: row.updated_at_ms, key_id: row.key_id.clone(), sealed_len: row.sealed.len(), value }
    }

    fn keyring(&self) -> DaemonResult<&Keyring> {
        self.keyring.as_ref().ok_or_else(|| {
            DaemonError::new(
                ErrorCode::InvalidState,
                format!(
                    "this daemon has no secrets key: set ${KEY_ENV} or `secrets_key_file` \
                     (`plexus secret keygen` makes one) and restart it"
                ),
            )
        })
    }

    /// Set secret `name` to `value` (replacing it).
    ///
    /// # Errors
    /// `InvalidConfiguration` for a bad name or value, or when
    /// [`MAX_SECRETS`] are stored; `InvalidState` without a key; the store failed.
    pub async fn set(&self, name: &str, value: &str) -> DaemonResult<plexus_client::SecretInfo> {
        let invalid = |m: String| DaemonError::new(ErrorCode::InvalidConfiguration, m);
        check_name(name).map_err(invalid)?;
        check_value(value).map_err(|e| invalid(format!("secret `{name}`: {e}")))?;
        let keyring = self.keyring()?;
        let rows = self.store.secrets().await?;
        if rows.len() >= MAX_SECRETS && !rows.iter().any(|r| r.name == name) {
            return Err(invalid(format!("at most {MAX_SECRETS} secrets are kept; delete one first")));
        }
        // Redacted from now on, or not kept at all.
        let value = SecretValue::new(value);
        redactor().add(&value).map_err(|e| DaemonError::new(ErrorCode::InvalidState, e))?;
        let sealed = keyring.seal(name, value.expose()).map_err(|e| DaemonError::new(ErrorCode::Internal, e))?;
        let sealed_len = sealed.len();
        let updated_at_ms = self.store.put_secret(name, sealed, keyring.id()).await?;
        let loaded = Loaded { updated_at_ms, key_id: keyring.id().to_owned(), sealed_len, value: Some(value) };
        self.values.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), loaded);
        tracing::info!(secret = %name, "secret set");
        Ok(plexus_client::SecretInfo { name: name.to_owned(), updated_at_ms, usable: true })
    }

    /// `value` sealed under `label` (e.g. `hook:<id>`, bound as associated
    /// data, like a secret's name) with this daemon's key; returns the
    /// sealed bytes and the key's id. For other values kept encrypted (a
    /// webhook's signing secret).
    ///
    /// # Errors
    /// `InvalidState` without a key.
    pub fn seal(&self, label: &str, value: &str) -> DaemonResult<(Vec<u8>, String)> {
        let keyring = self.keyring()?;
        let sealed = keyring.seal(label, value).map_err(|e| DaemonError::new(ErrorCode::Internal, e))?;
        Ok((sealed, keyring.id().to_owned()))
    }

    /// The value [`Self::seal`] sealed under `label` with key `key_id`.
    ///
    /// # Errors
    /// `InvalidState` without a key, or when it was sealed with another key;
    /// `Internal` when it does not decrypt (changed).
    pub fn open(&self, label: &str, sealed: &[u8], key_id: &str) -> DaemonResult<String> {
        let keyring = self.keyring()?;
        if keyring.id() != key_id {
            return Err(DaemonError::new(
                ErrorCode::InvalidState,
                format!("{label} was sealed with key {key_id}; this daemon has key {}", keyring.id()),
            ));
        }
        keyring.open(label, sealed).map_err(|e| DaemonError::new(ErrorCode::Internal, e))
    }

    /// Delete secret `name`.
    ///
    /// # Errors
    /// `NotFound`; the store failed.
    pub async fn delete(&self, name: &str) -> DaemonResult<()> {
        let existed = self.store.delete_secret(name).await?;
        self.values.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        if !existed {
            return Err(DaemonError::new(ErrorCode::NotFound, format!("no secret `{name}`")));
        }
        tracing::info!(secret = %name, "secret deleted");
        Ok(())
    }

    /// Every secret's name and time, never its value.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn list(&self) -> DaemonResult<Vec<plexus_client::SecretInfo>> {
        self.refresh().await?;
        let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
        Ok(values
            .iter()
            .map(|(name, l)| plexus_client::SecretInfo {
                name: name.clone(),
                updated_at_ms: l.updated_at_ms,
                usable: l.value.is_some(),
            })
            .collect())
    }
}

impl SecretSource for Secrets {
    fn secret(&self, name: &str) -> Option<SecretValue> {
        self.values.read().unwrap_or_else(PoisonError::into_inner).get(name).and_then(|l| l.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let k = Keyring::from_hex(KEY).unwrap();
        let sealed = k.seal("DB", "hunter22").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"hunter22"));
        assert_eq!(k.open("DB", &sealed).unwrap(), "hunter22");
        assert!(k.open("OTHER", &sealed).is_err(), "the name is bound");
        let mut changed = sealed.clone();
        changed[NONCE_LEN] ^= 1;
        assert!(k.open("DB", &changed).is_err(), "tampering is detected");
        let other = Keyring::from_hex(&Keyring::generate().unwrap()).unwrap();
        assert!(other.open("DB", &sealed).is_err());
        assert_ne!(other.id(), k.id());
        assert_ne!(k.seal("DB", "hunter22").unwrap(), sealed, "a fresh nonce per write");
        assert!(Keyring::from_hex("00").is_err());
        assert!(Keyring::from_hex(&KEY.replace('0', "g")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, KEY).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        if std::env::var_os(KEY_ENV).is_some() {
            return; // the environment wins; nothing to check here
        }
        let e = Keyring::load(Some(&file)).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Keyring::load(Some(&file)).unwrap().is_some());
        assert!(Keyring::load(None).unwrap().is_none());
    }
}
