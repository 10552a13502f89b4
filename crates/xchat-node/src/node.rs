//! The node's one task that owns the messenger and its store.
//!
//! Inputs come from the local API (commands), the network (envelopes,
//! peers), the node's own network work (sends acknowledged or failed,
//! bundles and mailboxes fetched) and time. They are taken in batches of up
//! to [`GROUP_COMMIT_MAX`]: each input is handled in order, the batch's
//! writes go to the committer thread ([`crate::commit`]), and only once
//! they are committed are envelopes acknowledged to their senders, answers
//! given, the UI told and envelopes sent. While the disk works the node
//! handles the next batches (at most [`MAX_COMMITS_IN_FLIGHT`] wait), whose
//! writes are committed after, in order. A crash before a commit loses
//! nothing that was acknowledged; a crash after it repeats at most some
//! sends, which the recipients' deduplication absorbs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, UnwrapErr};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use xchat_core::Messenger;
use xchat_core::io::{CommandError, Done, Effect, Event, Input};
use xchat_core::time::UnixMillis;
use xchat_crypto::address::Address;
use xchat_crypto::identity::Identity;
use xchat_crypto::presence;
use xchat_net::file::{FileRegistry, ServedFile};
use xchat_net::{InboundDelivery, Multiaddr, Network, NetworkHandle, PeerId};
use xchat_store::{Store, StoreError};

use crate::commit::{Committed, Committer};
use crate::courier::{Courier, MAILBOX_STAMP_BITS};
use crate::profile::{Profile, ProfileError};

/// Most batches handled and not yet committed: past this the node waits
/// for the disk before taking more inputs.
pub const MAX_COMMITS_IN_FLIGHT: usize = 8;
/// Most inputs handled in one batch (the committer may merge several
/// batches into one transaction: `commit::MAX_MERGED_WRITES`).
pub const GROUP_COMMIT_MAX: usize = 256;
/// Commands from the API waiting for the node.
pub const COMMAND_QUEUE_LEN: usize = 1024;
/// Results of the node's own network work waiting for the node.
pub const INTERNAL_QUEUE_LEN: usize = 4096;
/// Events kept for a slow subscriber (the API's WebSocket) before it is
/// told it lagged.
pub const EVENT_QUEUE_LEN: usize = 4096;
/// Network tasks (sends, lookups, fetches) running at once.
pub const MAX_NETWORK_TASKS: usize = 256;
/// How often contacts' devices are looked up and this device's records
/// published again when they are due.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How often this device publishes its presence although nothing changed.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(60 * 60);
/// How long the node waits for a first peer before its timers run anyway
/// (fetching mailboxes with no peer would find nothing).
pub const STARTUP_GRACE: Duration = Duration::from_secs(5);

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The network's configuration.
    pub network: xchat_net::Config,
    /// Proof-of-work bits minted for each mailbox store.
    pub stamp_bits: u8,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { network: xchat_net::Config::default(), stamp_bits: MAILBOX_STAMP_BITS }
    }
}

/// Why a node stopped or refused a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node is not running (stopped, or stopping).
    #[error("the node is not running")]
    Stopped,
    /// The core refused the command.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The store failed: the node stops, and what was not committed is
    /// done again after a restart.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The profile could not be opened.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The network could not start.
    #[error("the network could not start: {0}")]
    Network(String),
    /// A file could not be read, described or written.
    #[error("file: {0}")]
    File(String),
}

/// What the node has told the network about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The addresses the node listens on, as the network reported them
    /// (port 0 replaced by the port picked).
    pub listening: Vec<Multiaddr>,
    /// Its prekey bundle and device list are on other nodes: contacts can
    /// start sessions with it.
    pub prekeys_published: bool,
    /// When its presence was last stored on other nodes, and for which
    /// epoch: contacts can find it.
    pub presence_published: Option<(tokio::time::Instant, u64)>,
}

type Reader = Box<dyn FnOnce(&Messenger, &Store) + Send>;
type Backup = (std::path::PathBuf, oneshot::Sender<Result<xchat_store::BackupSummary, StoreError>>);

enum Command {
    Input { input: Input, reply: oneshot::Sender<Result<Done, CommandError>> },
    Read(Reader),
    Backup(Backup),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle to a running node: commands in, events out.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    address: Address,
    net: NetworkHandle,
    status: watch::Receiver<NodeStatus>,
    files: std::path::PathBuf,
    registry: FileRegistry,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("address", &self.address).finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// The profile's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The network under the node.
    pub fn net(&self) -> &NetworkHandle {
        &self.net
    }

    /// Hands `input` (a user's command) to the messenger; returns its answer
    /// once what it wrote is committed.
    ///
    /// # Errors
    /// [`NodeError::Refused`] with the core's reason, [`NodeError::Stopped`].
    pub async fn command(&self, input: Input) -> Result<Done, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Input { input, reply })
            .await
            .map_err(|_| NodeError::Stopped)?;
        Ok(answer.await.map_err(|_| NodeError::Stopped)??)
    }

    /// Runs `read` on the messenger and the store, between two batches (it
    /// sees every committed input, none half done).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Messenger, &Store) -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        let reader: Reader = Box::new(move |messenger, store| {
            // The asker may have gone away: nothing to do then.
            let _ = reply.send(read(messenger, store));
        });
        self.commands.send(Command::Read(reader)).await.map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Sends the file at `source` to `contact` as `name` of `media_type`:
    /// encrypts it under a new key into the profile's files (off the
    /// runtime), serves the ciphertext, and offers it in the conversation.
    ///
    /// # Errors
    /// [`NodeError::File`] when the file cannot be read or described, and
    /// the core's refusals.
    pub async fn send_file(
        &self,
        contact: xchat_core::contact::ContactId,
        source: std::path::PathBuf,
        name: String,
        media_type: String,
    ) -> Result<Done, NodeError> {
        let files = self.files.clone();
        let descriptor = tokio::task::spawn_blocking(move || {
            crate::files::seal(&files, &source, name, media_type, &mut UnwrapErr(OsRng))
        })
        .await
        .map_err(|_| NodeError::Stopped)?
        .map_err(|e| NodeError::File(e.to_string()))?;
        let id = descriptor.id();
        let served = ServedFile {
            path: crate::files::sealed_path(&self.files, &id),
            token: descriptor.key().fetch_token(),
        };
        self.registry.insert(id, served);
        let sent = self.command(Input::FileSent { contact, descriptor }).await;
        if sent.is_err() {
            self.registry.remove(&id);
            crate::files::delete(&self.files, &id);
        }
        sent
    }

    /// Where the profile keeps files; a received file is at
    /// [`crate::files::received_path`] once complete.
    pub fn files(&self) -> &std::path::Path {
        &self.files
    }

    /// What the node has published so far, and its changes.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Waits until the node listens on at least `count` addresses, and
    /// returns them all (each ending in `/p2p/<peer id>`).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn listening(&self, count: usize) -> Result<Vec<Multiaddr>, NodeError> {
        let mut status = self.status.clone();
        let peer = self.net.local_peer_id();
        let status = status
            .wait_for(|s| s.listening.len() >= count)
            .await
            .map_err(|_| NodeError::Stopped)?;
        Ok(status
            .listening
            .iter()
            .map(|a| a.clone().with(xchat_net::multiaddr::Protocol::P2p(peer)))
            .collect())
    }

    /// Waits until contacts can find this node: its prekeys and presence
    /// are stored on other nodes.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn published(&self) -> Result<(), NodeError> {
        let mut status = self.status.clone();
        status
            .wait_for(|s| s.prekeys_published && s.presence_published.is_some())
            .await
            .map(|_| ())
            .map_err(|_| NodeError::Stopped)
    }

    /// Writes an encrypted backup of the profile to `path` (which must not
    /// exist), between two batches: see `Store::export_backup`.
    ///
    /// # Errors
    /// [`NodeError::Store`] (`AlreadyExists` for an existing path),
    /// [`NodeError::Stopped`].
    pub async fn export_backup(
        &self,
        path: std::path::PathBuf,
    ) -> Result<xchat_store::BackupSummary, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Backup((path, reply))).await.map_err(|_| NodeError::Stopped)?;
        Ok(answer.await.map_err(|_| NodeError::Stopped)??)
    }

    /// The messenger's events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Asks the node to stop after the batch in flight; returns once it has
    /// committed it and closed the store.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// A running node: its handle and its task.
#[derive(Debug)]
pub struct RunningNode {
    /// The handle.
    pub handle: NodeHandle,
    /// The node's task: ends when it stops, with why.
    pub task: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// Starts the node of `profile` on the current tokio runtime: its network
/// (listening as `config` says) and its task.
///
/// # Errors
/// [`NodeError::Network`] when the network cannot be built.
pub fn start(profile: Profile, config: NodeConfig) -> Result<RunningNode, NodeError> {
    let Profile { dir, store, messenger, transport } = profile;
    let identity = store.load_identity()?.ok_or(ProfileError::NoIdentity)?;
    // What the node keeps for others' mailboxes survives its restart.
    let storage = crate::mailboxes::SqliteStorage::open(&dir.mailboxes())
        .map_err(|e| NodeError::Network(format!("mailbox database: {e}")))?;
    let (mut network, net, net_events) =
        Network::with_mailbox_storage(transport, config.network, Box::new(storage))
            .map_err(|e| NodeError::Network(e.to_string()))?;
    let registry = FileRegistry::new();
    network.set_file_source(Arc::new(registry.clone()));
    tokio::spawn(network.run());
    let files = dir.files();
    serve_outgoing(&store, &messenger, &registry, &files)?;
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
    let (internal, internal_rx) = mpsc::channel(INTERNAL_QUEUE_LEN);
    let (events, _) = broadcast::channel(EVENT_QUEUE_LEN);
    let (status, status_rx) = watch::channel(NodeStatus::default());
    let address = messenger.address();
    info!(address = %address, peer = %net.local_peer_id(), "node starting");
    let runtime = Runtime {
        files: files.clone(),
        registry: registry.clone(),
        messenger,
        committer: Committer::start(store, MAX_COMMITS_IN_FLIGHT)
            .map_err(|e| NodeError::File(format!("cannot start the committer: {e}")))?,
        identity,
        courier: Arc::new(Courier::new(net.clone(), config.stamp_bits)),
        internal,
        events: events.clone(),
        tasks: Arc::new(Semaphore::new(MAX_NETWORK_TASKS)),
        listening: Vec::new(),
        status: Arc::new(status),
        ready: false,
    };
    let task = tokio::spawn(runtime.run(command_rx, internal_rx, net_events));
    Ok(RunningNode {
        handle: NodeHandle { commands, events, address, net, status: status_rx, files, registry },
        task,
    })
}

/// Serves the files this profile sent whose ciphertext is still kept.
fn serve_outgoing(
    store: &Store,
    messenger: &Messenger,
    registry: &FileRegistry,
    files: &std::path::Path,
) -> Result<(), NodeError> {
    for contact in messenger.contacts().iter() {
        for transfer in store.transfers(contact.id)? {
            let id = transfer.file();
            let path = crate::files::sealed_path(files, &id);
            if transfer.direction == xchat_core::record::Direction::Outgoing && path.exists() {
                let token = transfer.descriptor.key().fetch_token();
                registry.insert(id, ServedFile { path, token });
            }
        }
    }
    Ok(())
}

/// The current time, by the system clock.
pub fn now() -> UnixMillis {
    UnixMillis(crate::now_ms())
}

/// What one input waits for after the commit.
enum Owed {
    Nothing,
    Answer(oneshot::Sender<Result<Done, CommandError>>),
    Acknowledgement(InboundDelivery),
}

/// One input's due after its batch's commit.
struct Outcome {
    owed: Owed,
    answer: Option<Result<Done, CommandError>>,
    effects: Vec<Effect>,
}

/// A batch handled, waiting for its commit (none when it wrote nothing;
/// it is still released only after the batches before it).
struct Pending {
    committed: Option<Committed>,
    outcomes: Vec<Outcome>,
}

/// Waits for the oldest batch in flight to be committed. Cancel-safe: the
/// receiver is polled by reference and stays in the queue.
async fn first_committed(pending: &mut VecDeque<Pending>) -> Result<(), NodeError> {
    let Some(front) = pending.front_mut() else { return Ok(()) };
    match front.committed.as_mut() {
        None => Ok(()),
        Some(committed) => match committed.await {
            Ok(result) => result.map_err(NodeError::from),
            // The committer stopped after an earlier batch failed.
            Err(_) => Err(NodeError::Stopped),
        },
    }
}

/// One turn's first piece of work.
enum Work {
    Committed(Result<(), NodeError>),
    Command(Command),
    Internal(Input),
    Net(xchat_net::Event),
    Tick,
    Sweep,
    Stop,
}

struct Runtime {
    messenger: Messenger,
    /// The store, behind its committer thread.
    committer: Committer,
    /// The identity's secret, for signing presence records.
    identity: Identity,
    files: std::path::PathBuf,
    registry: FileRegistry,
    courier: Arc<Courier>,
    internal: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    tasks: Arc<Semaphore>,
    listening: Vec<Multiaddr>,
    status: Arc<watch::Sender<NodeStatus>>,
    /// Whether timers run: once a peer is connected or the grace is over.
    ready: bool,
}

impl Runtime {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Input>,
        mut net_events: xchat_net::Events,
    ) -> Result<(), NodeError> {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        let grace = tokio::time::sleep(STARTUP_GRACE);
        tokio::pin!(grace);
        let mut rng = UnwrapErr(OsRng);
        let mut stopping = None;
        // Batches handled, in order, waiting for their commits.
        let mut pending: VecDeque<Pending> = VecDeque::new();
        loop {
            let due = self.deadline();
            // With too many batches in flight, only commits are awaited:
            // the queues in front of the node fill and push back.
            let room = pending.len() < MAX_COMMITS_IN_FLIGHT;
            let work = tokio::select! {
                committed = first_committed(&mut pending), if !pending.is_empty() => {
                    Work::Committed(committed)
                }
                command = commands.recv(), if room => command.map_or(Work::Stop, Work::Command),
                Some(input) = internal.recv(), if room => Work::Internal(input),
                event = net_events.recv(), if room => match event {
                    Some(event) => Work::Net(event),
                    None => return Err(NodeError::Network("the network stopped".into())),
                },
                () = sleep_until(due), if room => Work::Tick,
                () = &mut grace, if !self.ready => {
                    self.ready = true;
                    continue;
                }
                _ = sweep.tick() => Work::Sweep,
            };
            let mut batch: Vec<(Input, Owed)> = Vec::new();
            let mut after: Vec<Command> = Vec::new();
            match work {
                Work::Stop => break,
                Work::Committed(committed) => {
                    committed?;
                    if let Some(front) = pending.pop_front() {
                        self.release(front.outcomes);
                    }
                    continue;
                }
                Work::Tick => batch.push((Input::TimePassed, Owed::Nothing)),
                Work::Sweep => {
                    self.sweep();
                    continue;
                }
                Work::Internal(input) => batch.push((input, Owed::Nothing)),
                Work::Net(event) => self.network_event(event, &mut batch),
                Work::Command(command) => self.command(command, &mut batch, &mut after),
            }
            // Group commit: whatever else is already waiting joins the batch,
            // in the order each source gave it.
            while batch.len() < GROUP_COMMIT_MAX && after.is_empty() {
                if let Ok(input) = internal.try_recv() {
                    batch.push((input, Owed::Nothing));
                } else if let Ok(event) = net_events.try_recv() {
                    self.network_event(event, &mut batch);
                } else if let Ok(command) = commands.try_recv() {
                    self.command(command, &mut batch, &mut after);
                } else {
                    break;
                }
            }
            if !batch.is_empty() {
                let handled = self.handle_batch(batch, &mut rng);
                if handled.committed.is_none() && pending.is_empty() {
                    // Nothing to commit and nothing before it: due now.
                    self.release(handled.outcomes);
                } else {
                    pending.push_back(handled);
                }
            }
            for command in after {
                match command {
                    Command::Read(read) => read(&self.messenger, &self.committer.store()),
                    Command::Backup((path, reply)) => {
                        let _ = reply.send(self.committer.store().export_backup(&path, &mut rng));
                    }
                    Command::Shutdown(done) => stopping = Some(done),
                    Command::Input { .. } => {}
                }
            }
            if stopping.is_some() {
                break;
            }
        }
        info!("node stopping");
        // What was handled is committed and carried out before the end.
        while !pending.is_empty() {
            first_committed(&mut pending).await?;
            if let Some(front) = pending.pop_front() {
                self.release(front.outcomes);
            }
        }
        self.committer.finish();
        self.committer.store().checkpoint()?;
        drop(self.committer);
        if let Some(done) = stopping {
            let _ = done.send(());
        }
        Ok(())
    }

    /// When the next `TimePassed` is due, if the node is ready for timers.
    fn deadline(&self) -> Option<UnixMillis> {
        if self.ready { self.messenger.next_deadline() } else { None }
    }

    fn command(&self, command: Command, batch: &mut Vec<(Input, Owed)>, after: &mut Vec<Command>) {
        match command {
            Command::Input { input, reply } => batch.push((input, Owed::Answer(reply))),
            other => after.push(other),
        }
    }

    fn network_event(&mut self, event: xchat_net::Event, batch: &mut Vec<(Input, Owed)>) {
        match event {
            xchat_net::Event::EnvelopeReceived { envelope, delivery, .. } => {
                let input = Input::EnvelopeReceived { envelope: envelope.encode() };
                batch.push((input, Owed::Acknowledgement(delivery)));
            }
            xchat_net::Event::Listening { address } => {
                debug!(%address, "listening");
                if !self.listening.contains(&address) {
                    self.listening.push(address.clone());
                    self.status.send_modify(|s| {
                        s.presence_published = None;
                        s.listening.push(address);
                    });
                    if self.ready {
                        self.sweep();
                    }
                }
            }
            xchat_net::Event::PeerConnected { peer } => {
                debug!(%peer, device = self.courier.device_of(&peer).is_some(), "peer connected");
                if !self.ready {
                    self.ready = true;
                    self.sweep();
                }
                if let Some((identity, device)) = self.courier.device_of(&peer) {
                    batch.push((
                        Input::DeviceReachable { identity, device, reachable: true },
                        Owed::Nothing,
                    ));
                }
            }
            xchat_net::Event::PeerDisconnected { peer } => {
                debug!(%peer, device = self.courier.device_of(&peer).is_some(), "peer disconnected");
                if let Some((identity, device)) = self.courier.device_of(&peer) {
                    batch.push((
                        Input::DeviceReachable { identity, device, reachable: false },
                        Owed::Nothing,
                    ));
                }
            }
            xchat_net::Event::PeerDiscovered { .. } => {}
        }
    }

    /// Handles `batch` in order and hands its writes to the committer;
    /// what each input owes waits in the returned [`Pending`] for the
    /// commit.
    fn handle_batch(&mut self, batch: Vec<(Input, Owed)>, rng: &mut UnwrapErr<OsRng>) -> Pending {
        let now = now();
        let started = std::time::Instant::now();
        let inputs = batch.len();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut writes = Vec::new();
        for (input, owed) in batch {
            let mut answer = None;
            let mut effects = Vec::new();
            for effect in self.messenger.hold(now, input, rng) {
                match effect {
                    Effect::Write(write) => writes.push(write),
                    Effect::Answer(result) => answer = Some(result),
                    other => effects.push(other),
                }
            }
            outcomes.push(Outcome { owed, answer, effects });
        }
        // The texts of this batch, a few per envelope: their envelopes and
        // outbox entries commit with the batch.
        let mut effects = Vec::new();
        for effect in self.messenger.flush(now, rng) {
            match effect {
                Effect::Write(write) => writes.push(write),
                other => effects.push(other),
            }
        }
        if !effects.is_empty() {
            outcomes.push(Outcome { owed: Owed::Nothing, answer: None, effects });
        }
        tracing::trace!(
            inputs,
            writes = writes.len(),
            handle_us = started.elapsed().as_micros(),
            "batch handled"
        );
        let committed = (!writes.is_empty()).then(|| self.committer.submit(writes));
        Pending { committed, outcomes }
    }

    /// A batch is committed: now what was promised, then the work.
    fn release(&mut self, outcomes: Vec<Outcome>) {
        for Outcome { owed, answer, effects } in outcomes {
            match owed {
                Owed::Nothing => {}
                Owed::Answer(reply) => {
                    let _ = reply.send(answer.unwrap_or(Ok(Done::Ok)));
                }
                Owed::Acknowledgement(delivery) => {
                    let net = self.courier.net().clone();
                    tokio::spawn(async move { net.acknowledge(delivery).await });
                }
            }
            for effect in effects {
                self.carry_out(effect);
            }
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Write(_) | Effect::Answer(_) => {}
            Effect::Notify(event) => {
                // No subscriber is fine: the UI reads history when it opens.
                let _ = self.events.send(event);
            }
            Effect::Send(send) => self.spawn(move |courier| async move {
                let input = match courier.send(&send).await {
                    Ok(()) => Input::SendAcknowledged { entry: send.entry, route: send.route },
                    Err(error) => {
                        debug!(%error, route = ?send.route, "send failed");
                        Input::SendFailed { entry: send.entry, route: send.route }
                    }
                };
                Some(vec![input])
            }),
            Effect::FetchBundles { identity } => self.spawn(move |courier| async move {
                let records = courier.fetch_bundles(&identity).await;
                let mut inputs = vec![Input::BundlesFetched { identity, records }];
                for (device, peer) in reachable_devices(&courier, &identity).await {
                    debug!(%peer, "contact device found");
                    inputs.push(Input::DeviceReachable { identity, device, reachable: true });
                }
                Some(inputs)
            }),
            Effect::PublishPreKeys { record } => self.publish_prekeys(record),
            Effect::FetchMailbox(keys) => self.spawn(move |courier| async move {
                let fetched = courier.fetch_mailboxes(&keys).await;
                Some(
                    fetched
                        .into_iter()
                        .map(|(epoch, items)| Input::MailboxFetched { epoch, items })
                        .collect(),
                )
            }),
            Effect::DeleteFromMailbox { key, items } => self.spawn(move |courier| async move {
                courier.delete_from_mailbox(&key, &items).await;
                // A full page may have left more behind: with these gone,
                // the next page comes now, not at the next poll.
                if items.len() < xchat_proto::mailbox::MAX_FETCH_ITEMS {
                    return None;
                }
                let fetched = courier.fetch_mailboxes(std::slice::from_ref(&key)).await;
                Some(
                    fetched
                        .into_iter()
                        .map(|(epoch, items)| Input::MailboxFetched { epoch, items })
                        .collect(),
                )
            }),
            Effect::DeleteFile { file } => {
                self.registry.remove(&file);
                let files = self.files.clone();
                tokio::task::spawn_blocking(move || crate::files::delete(&files, &file));
            }
            Effect::FetchFile(fetch) => {
                let courier = Arc::clone(&self.courier);
                let internal = self.internal.clone();
                let tasks = Arc::clone(&self.tasks);
                let files = self.files.clone();
                tokio::spawn(async move {
                    let Ok(_permit) = tasks.acquire_owned().await else { return };
                    crate::files::fetch(&courier, *fetch, files, internal).await;
                });
            }
        }
    }

    /// Runs `work` as a network task (at most [`MAX_NETWORK_TASKS`] at
    /// once) and hands the inputs it returns to the node.
    fn spawn<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<Courier>) -> Fut + std::marker::Send + 'static,
        Fut: Future<Output = Option<Vec<Input>>> + std::marker::Send + 'static,
    {
        let courier = Arc::clone(&self.courier);
        let internal = self.internal.clone();
        let tasks = Arc::clone(&self.tasks);
        tokio::spawn(async move {
            let Ok(_permit) = tasks.acquire_owned().await else { return };
            for input in work(courier).await.unwrap_or_default() {
                if internal.send(input).await.is_err() {
                    return;
                }
            }
        });
    }

    fn publish_prekeys(&mut self, record: Vec<u8>) {
        let identity = *self.messenger.identity().signing_key();
        let device = *self.messenger.device();
        let status = Arc::clone(&self.status);
        self.spawn(move |courier| async move {
            match courier.publish_prekeys(&record, &identity, &device).await {
                Ok(()) => status.send_modify(|s| s.prekeys_published = true),
                // The next sweep tries again.
                Err(error) => debug!(%error, "prekeys not published yet"),
            }
            None
        });
    }

    /// Periodic work: publish this device's records when due, and look up
    /// the contacts' devices not known reachable.
    fn sweep(&mut self) {
        let epoch = presence::epoch_of(crate::now_ms());
        let status = self.status.borrow().clone();
        let due = status
            .presence_published
            .is_none_or(|(at, published)| published != epoch || at.elapsed() >= PRESENCE_REFRESH);
        if due && !self.listening.is_empty() {
            let addresses = self.listening.clone();
            let device = self.messenger.device().device_id();
            // The identity's secret stays in the node's task: the record is
            // sealed here, then published by a network task.
            let mut rng = UnwrapErr(OsRng);
            let here =
                xchat_net::record::Presence { peer: self.courier.net().local_peer_id(), addresses };
            match presence::PresenceRecord::seal(
                &self.identity,
                device,
                crate::now_ms(),
                &here.encode(),
                &mut rng,
            ) {
                Ok(sealed) => {
                    let status = Arc::clone(&self.status);
                    self.spawn(move |courier| async move {
                        let key = xchat_net::record::presence_record_key(sealed.key());
                        match courier.net().publish_record(key, sealed.as_bytes().to_vec()).await {
                            Ok(()) => status.send_modify(|s| {
                                s.presence_published = Some((tokio::time::Instant::now(), epoch));
                            }),
                            Err(error) => debug!(%error, "presence not published yet"),
                        }
                        None
                    });
                }
                Err(error) => warn!(%error, "presence record not sealed"),
            }
        }
        if !status.prekeys_published
            && let Ok(record) = self.messenger.prekey_record(now())
        {
            self.publish_prekeys(record);
        }
        let unreachable: Vec<_> = self
            .messenger
            .peer_devices()
            .filter(|(_, _, reachable)| !reachable)
            .map(|(identity, device, _)| (identity, device))
            .collect();
        for (identity, device) in unreachable {
            self.spawn(move |courier| async move {
                let peer = courier.resolve(&identity, device).await?;
                courier.net().dial(peer, Vec::new()).await.ok()?;
                Some(vec![Input::DeviceReachable { identity, device, reachable: true }])
            });
        }
    }
}

/// The devices of `identity` whose presence is found and that answer a dial.
async fn reachable_devices(
    courier: &Courier,
    identity: &xchat_crypto::signature::VerifyingKey,
) -> Vec<(xchat_crypto::device::DeviceId, PeerId)> {
    let Ok(list) = courier.net().find_record(xchat_net::record::device_list_key(identity)).await
    else {
        return Vec::new();
    };
    let Some(list) = xchat_proto::bundle::UnverifiedDeviceList::decode(&list)
        .ok()
        .and_then(|l| l.verify(identity).ok())
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for certificate in list.certificates() {
        let device = certificate.device_id();
        if let Some(peer) = courier.resolve(identity, device).await
            && courier.net().dial(peer, Vec::new()).await.is_ok()
        {
            found.push((device, peer));
        }
    }
    found
}

async fn sleep_until(deadline: Option<UnixMillis>) {
    match deadline {
        Some(at) => {
            let wait = at.0.saturating_sub(crate::now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}
