//! A profile: one user's identity, device and history on this machine, in
//! one directory.
//!
//! ```text
//! <profile>/
//!   store/        the SQLCipher database and its key header (xchat-store)
//!   store.key     the database key, mode 0600, for a profile made without a passphrase
//!   api.token     the local API's bearer token, mode 0600, new at each start
//!   api.url       the running node's API URL, mode 0600, while `xchat up` runs
//!   files/        encrypted files being sent, and files received
//!   mailboxes.db  sealed envelopes this node keeps for other devices' mailboxes
//! ```
//!
//! The device's transport key (its libp2p peer id) is kept inside the
//! encrypted database, like every other secret.

use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use xchat_core::Messenger;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_net::identity::Keypair;
use xchat_store::{DatabaseKey, KdfParams, KeyKind, Store, StoreError};

/// One-time prekeys a new device publishes.
pub const ONE_TIME_PREKEYS: usize = 100;
/// The setting holding the device's transport key (libp2p protobuf encoding).
const TRANSPORT_KEY_SETTING: &str = "node.transport_key";

/// Why a profile could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The store refused (wrong passphrase, damaged, busy, disk full...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the profile could not be read or written.
    #[error("profile file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The profile holds no identity (made by another program, or damaged).
    #[error("the profile holds no identity")]
    NoIdentity,
    /// The stored transport key does not decode.
    #[error("the profile's transport key is damaged")]
    TransportKey,
    /// The profile needs its passphrase and none was given.
    #[error("this profile is protected by a passphrase")]
    PassphraseNeeded,
    /// The messenger's stored state is inconsistent.
    #[error("the profile's contacts do not load: {0}")]
    State(#[from] xchat_core::contact::ContactError),
    /// A key could not be made (should not happen).
    #[error("key generation failed")]
    Keys,
}

/// How the database key of a profile is kept.
#[derive(Clone)]
pub enum Unlock {
    /// A random key in `store.key` (mode 0600): no passphrase to type.
    KeyFile,
    /// A passphrase, stretched by Argon2id.
    Passphrase(zeroize::Zeroizing<String>),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyFile => f.write_str("KeyFile"),
            Self::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

/// A profile's directory and the paths in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDir {
    root: PathBuf,
}

impl ProfileDir {
    /// The profile at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The profile's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database's directory.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The key file of a profile without passphrase.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("store.key")
    }

    /// The local API's token file.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// The envelopes this node keeps for other devices' mailboxes.
    pub fn mailboxes(&self) -> PathBuf {
        self.root.join("mailboxes.db")
    }

    /// The running node's API URL (`http://127.0.0.1:<port>`), written by
    /// `xchat up` beside the token and removed when it stops cleanly.
    pub fn api_url_file(&self) -> PathBuf {
        self.root.join("api.url")
    }

    /// Where files sent and received are kept.
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Whether a profile exists here.
    pub fn exists(&self) -> bool {
        self.store().join(xchat_store::HEADER_FILE).exists()
    }

    /// How the profile is unlocked, or `None` when there is none.
    ///
    /// # Errors
    /// [`ProfileError::Store`] for a damaged header.
    pub fn key_kind(&self) -> Result<Option<KeyKind>, ProfileError> {
        match Store::key_kind(&self.store()) {
            Ok(kind) => Ok(Some(kind)),
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The database key of a new profile here, kept as `unlock` says.
    fn new_key(
        &self,
        unlock: &Unlock,
        rng: &mut impl CryptoRng,
    ) -> Result<DatabaseKey, ProfileError> {
        Ok(match unlock {
            Unlock::KeyFile => {
                let path = self.key_file();
                // A key file left by a create that stopped before the store.
                if path.exists() {
                    std::fs::remove_file(&path)
                        .map_err(|source| ProfileError::Io { path: path.clone(), source })?;
                }
                DatabaseKey::create_key_file(&path, rng)?
            }
            Unlock::Passphrase(passphrase) => {
                DatabaseKey::new_from_passphrase(passphrase, KdfParams::DESKTOP, rng)?
            }
        })
    }

    fn create_dir(&self) -> Result<(), ProfileError> {
        let io = |source| ProfileError::Io { path: self.root.clone(), source };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        }
        Ok(())
    }
}

/// A new device transport key, and its encoding to keep in the store.
fn new_transport_key() -> Result<(Keypair, zeroize::Zeroizing<Vec<u8>>), ProfileError> {
    let transport = Keypair::generate_ed25519();
    let bytes = transport.to_protobuf_encoding().map_err(|_| ProfileError::TransportKey)?;
    Ok((transport, zeroize::Zeroizing::new(bytes)))
}

/// An open profile: the store and everything the messenger is made of.
pub struct Profile {
    /// Its directory.
    pub dir: ProfileDir,
    /// The open store.
    pub store: Store,
    /// The messenger, restored from the store.
    pub messenger: Messenger,
    /// The device's transport key: its libp2p peer id.
    pub transport: Keypair,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("dir", &self.dir)
            .field("messenger", &self.messenger)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// Makes a new profile in `dir` for the identity of `phrase` (a new one
    /// or one being restored), with a new device and its prekeys, unlocked
    /// as `unlock` says.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when `dir` holds a profile, and
    /// [`ProfileError`].
    pub fn create(
        dir: ProfileDir,
        phrase: &RecoveryPhrase,
        unlock: &Unlock,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, ProfileError> {
        if dir.exists() {
            return Err(StoreError::AlreadyExists.into());
        }
        dir.create_dir()?;
        let identity = Identity::from_seed(&phrase.to_seed("")).map_err(|_| ProfileError::Keys)?;
        let key = dir.new_key(unlock, rng)?;
        let mut store = Store::create(&dir.store(), &key)?;
        let device = Device::new(&identity, now_ms, rng);
        let mut prekeys = PreKeys::new(&device, now_ms, rng);
        prekeys
            .generate_one_time_prekeys(&device, ONE_TIME_PREKEYS, rng)
            .map_err(|_| ProfileError::Keys)?;
        let (transport, transport_bytes) = new_transport_key()?;
        store.apply(|batch| {
            batch.put_identity(&identity)?;
            batch.put_device(&device)?;
            batch.put_prekeys(&prekeys)?;
            batch.put_setting(TRANSPORT_KEY_SETTING, &transport_bytes)
        })?;
        let state = store.load_state()?;
        let messenger = Messenger::new(identity, device, prekeys, state)?;
        Ok(Self { dir, store, messenger, transport })
    }

    /// Makes a profile in `dir` from the encrypted backup at `backup`,
    /// readable only with the identity of `phrase`: contacts, history,
    /// sessions and files' keys come back. The restored node gets a new
    /// transport key (a new peer id on the network).
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when `dir` holds a profile,
    /// [`StoreError::Backup`] for a file that is not a backup of this
    /// phrase's identity, [`StoreError::BackupOfAnotherIdentity`], and
    /// [`ProfileError`]. On an error `dir` holds no usable profile: delete it
    /// before trying again.
    pub fn restore(
        dir: ProfileDir,
        phrase: &RecoveryPhrase,
        unlock: &Unlock,
        backup: &Path,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, ProfileError> {
        if dir.exists() {
            return Err(StoreError::AlreadyExists.into());
        }
        let file = std::fs::File::open(backup)
            .map_err(|source| ProfileError::Io { path: backup.to_path_buf(), source })?;
        dir.create_dir()?;
        let identity = Identity::from_seed(&phrase.to_seed("")).map_err(|_| ProfileError::Keys)?;
        let key = dir.new_key(unlock, rng)?;
        let mut store =
            Store::import_backup(&dir.store(), &key, &identity, std::io::BufReader::new(file))?;
        let (_, transport_bytes) = new_transport_key()?;
        store.apply(|batch| batch.put_setting(TRANSPORT_KEY_SETTING, &transport_bytes))?;
        drop(store);
        let passphrase = match unlock {
            Unlock::KeyFile => None,
            Unlock::Passphrase(passphrase) => Some(passphrase.as_str()),
        };
        Self::open(dir, passphrase)
    }

    /// Opens the profile in `dir`: with its key file, or with `passphrase`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without a profile,
    /// [`ProfileError::PassphraseNeeded`], [`StoreError::WrongKey`], and
    /// [`ProfileError`].
    pub fn open(dir: ProfileDir, passphrase: Option<&str>) -> Result<Self, ProfileError> {
        let store = match (dir.key_kind()?, passphrase) {
            (None, _) => return Err(StoreError::NotFound.into()),
            (Some(KeyKind::KeyFile), _) => {
                Store::open(&dir.store(), &DatabaseKey::from_key_file(&dir.key_file())?)?
            }
            (Some(KeyKind::Passphrase), Some(passphrase)) => {
                Store::open_with_passphrase(&dir.store(), passphrase)?
            }
            (Some(KeyKind::Passphrase), None) => return Err(ProfileError::PassphraseNeeded),
        };
        let identity = store.load_identity()?.ok_or(ProfileError::NoIdentity)?;
        let device = store
            .load_device(&identity.signing_key().verifying_key())?
            .ok_or(ProfileError::NoIdentity)?;
        let prekeys = store.load_prekeys()?.ok_or(ProfileError::NoIdentity)?;
        let transport = store
            .load_setting(TRANSPORT_KEY_SETTING)?
            .ok_or(ProfileError::TransportKey)
            .and_then(|bytes| {
                let bytes = zeroize::Zeroizing::new(bytes);
                Keypair::from_protobuf_encoding(&bytes).map_err(|_| ProfileError::TransportKey)
            })?;
        let state = store.load_state()?;
        let messenger = Messenger::new(identity, device, prekeys, state)?;
        Ok(Self { dir, store, messenger, transport })
    }
}
