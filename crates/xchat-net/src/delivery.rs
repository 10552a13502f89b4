//! `/xchat/delivery/2`: sealed [`Envelope`]s from one device to a connected
//! device, each acknowledged once the receiver has taken it, pipelined on
//! one long-lived stream per peer and direction (a *link*).
//!
//! A stream per envelope cost a stream set-up (Yamux or QUIC, and
//! multistream-select) and a round of task hand-offs through the network
//! task for every envelope. A link is opened once, on the first delivery
//! to a peer, and carries envelope frames one way and answers the other,
//! as many on the wire at once as the window allows; writes and answers are
//! batched while more are waiting. The network never looks inside an
//! envelope: it checks the frame's length before it allocates, decodes the
//! [`Envelope`] (version and length, no cryptography) and hands it up.
//!
//! # Frames (`docs/network.md`)
//!
//! Sender to receiver: [`frame`](crate::frame)s of [`ID_BYTES`] + 1 to
//! [`MAX_FRAME_BYTES`] bytes: the delivery's id (`u64` big-endian, chosen
//! by the sender, unique on the link), then the encoded [`Envelope`].
//!
//! Receiver to sender: [`ANSWER_BYTES`]-byte answers, in any order: the id,
//! then one [`Answer`] byte. The receiver answers once its consumer
//! acknowledged ([`Answer::Accepted`]) or dropped ([`Answer::NotTaken`])
//! the delivery, at once for an undecodable envelope ([`Answer::Malformed`]).
//!
//! # Limits
//!
//! A sender has at most its window ([`crate::Limits::max_deliveries_in_flight_per_peer`])
//! unanswered on a link; a receiver reads no further frame while that many
//! of a link's deliveries are unanswered, so a peer that ignores the window
//! stalls only its own link. A frame, once its first byte arrived, must
//! arrive whole within the delivery timeout (a slow drip is cut); a link
//! with nothing on it for [`LINK_IDLE_TIMEOUT`] is closed. A length over
//! [`MAX_FRAME_BYTES`] or under [`ID_BYTES`] + 1, an unknown answer byte or
//! bytes over the inbound budget ([`crate::config::MAX_INBOUND_DELIVERY_BYTES`])
//! end the link. A peer has at most [`MAX_INBOUND_LINKS_PER_PEER`] links
//! open to this node, all peers at most [`MAX_INBOUND_LINKS`]; streams
//! beyond are dropped unread.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::{BufReader, BufWriter, ReadHalf, WriteHalf};
use futures::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use xchat_proto::envelope::{Envelope, MAX_ENVELOPE_BYTES};

use crate::frame::{FrameError, InboundBudget, LENGTH_PREFIX_BYTES, READ_CHUNK_BYTES, Reservation};
use crate::network::{DeliverError, DialError, Dialer, Event};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/xchat/delivery/2");

/// Bytes of a delivery's id, at the start of its frame and of its answer.
pub const ID_BYTES: usize = 8;

/// Most bytes of a frame: the id and xchat-proto's [`MAX_ENVELOPE_BYTES`]
/// (263 547), checked before allocation.
pub const MAX_FRAME_BYTES: usize = ID_BYTES + MAX_ENVELOPE_BYTES;

/// Bytes of one answer: the id and the [`Answer`] byte.
pub const ANSWER_BYTES: usize = ID_BYTES + 1;

/// A link with nothing on its way and nothing arriving for this long is
/// closed; the next delivery opens a new one.
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most delivery links one peer may have open to this node at once (one,
/// and room for its replacement while the old one closes).
pub const MAX_INBOUND_LINKS_PER_PEER: usize = 2;

/// Most delivery links open to this node at once, all peers together.
pub const MAX_INBOUND_LINKS: usize = 256;

/// Most links this node has open to others at once; a delivery to one more
/// peer is refused as busy.
pub const MAX_OUTBOUND_LINKS: usize = 256;

/// Times a link that ended before any answer came back is opened again.
const FRESH_LINK_RETRIES: u32 = 3;

/// Wait before opening a fresh link again, times the retry's number.
const FRESH_LINK_BACKOFF: Duration = Duration::from_millis(50);

/// Buffered bytes after which a sender's batch of frames is flushed even
/// while more deliveries wait.
const FLUSH_BYTES: usize = 64 * 1024;

/// Bytes a link reads from its stream at once.
const READ_BUFFER_BYTES: usize = 32 * 1024;

/// The receiver's answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The receiver's consumer took the envelope (`0x00`).
    Accepted,
    /// The frame held no valid [`Envelope`] (`0x01`); sending it again will
    /// not help.
    Malformed,
    /// The receiver read the envelope and did not take it (`0x02`): its
    /// consumer refused it or is gone. Try again later.
    NotTaken,
}

impl Answer {
    /// The answer's byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Accepted => 0x00,
            Self::Malformed => 0x01,
            Self::NotTaken => 0x02,
        }
    }

    /// The answer of a byte from the wire.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::Accepted),
            0x01 => Some(Self::Malformed),
            0x02 => Some(Self::NotTaken),
            _ => None,
        }
    }
}

/// The limits a link works within (from [`crate::Limits`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkLimits {
    /// Longest a delivery waits for its answer, and a begun frame for its
    /// last byte.
    pub(crate) timeout: Duration,
    /// Most unanswered deliveries on one link.
    pub(crate) window: usize,
}

type Reply = oneshot::Sender<Result<(), DeliverError>>;

/// One delivery queued for a link.
struct Outgoing {
    envelope: Vec<u8>,
    reply: Waiting,
}

/// A delivery's caller, waiting for its answer.
struct Waiting {
    reply: Reply,
    /// Its place among the node's pending deliveries, until answered.
    _pending: OwnedSemaphorePermit,
}

impl Waiting {
    fn send(self, result: Result<(), DeliverError>) {
        let _ = self.reply.send(result);
    }
}

/// Where [`Links::queue`] put a delivery.
enum Picked {
    /// A new link was started with it.
    Started,
    /// The peer's link runs: send it there.
    Running(mpsc::Sender<Outgoing>, Outgoing),
}

/// A link's queue, and which link it is.
struct LinkQueue {
    serial: u64,
    queue: mpsc::Sender<Outgoing>,
}

/// The sending side: one link per peer, opened on demand.
#[derive(Clone)]
pub(crate) struct Links {
    links: Arc<Mutex<HashMap<PeerId, LinkQueue>>>,
    dialer: Dialer,
    control: Control,
    limits: LinkLimits,
    /// The node's pending deliveries, queued or unanswered, all peers.
    pending: Arc<Semaphore>,
    serials: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Links {
    pub(crate) fn new(
        dialer: Dialer,
        control: Control,
        limits: LinkLimits,
        max_pending: usize,
    ) -> Self {
        Self {
            links: Arc::new(Mutex::new(HashMap::new())),
            dialer,
            control,
            limits,
            pending: Arc::new(Semaphore::new(max_pending)),
            serials: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Sends `envelope` to `peer` on its link (opened if needed) and waits
    /// for the answer.
    pub(crate) async fn deliver(
        &self,
        peer: PeerId,
        envelope: &Envelope,
    ) -> Result<(), DeliverError> {
        let pending =
            Arc::clone(&self.pending).try_acquire_owned().map_err(|_| DeliverError::Busy)?;
        let (reply, answer) = oneshot::channel();
        let reply = Waiting { reply, _pending: pending };
        let mut outgoing = Outgoing { envelope: envelope.encode(), reply };
        // A link closing just as it is picked refuses the delivery: one more
        // try on a fresh link.
        for _ in 0..2 {
            let queue = match self.queue(peer, outgoing)? {
                Picked::Started => {
                    return answer.await.unwrap_or(Err(DeliverError::ConnectionLost));
                }
                Picked::Running(queue, back) => {
                    outgoing = back;
                    queue
                }
            };
            match queue.send(outgoing).await {
                Ok(()) => return answer.await.unwrap_or(Err(DeliverError::ConnectionLost)),
                Err(mpsc::error::SendError(back)) => {
                    self.forget(peer, &queue);
                    outgoing = back;
                }
            }
        }
        Err(DeliverError::ConnectionLost)
    }

    /// `peer`'s running link, or a new link started with `outgoing` as its
    /// first delivery (queued before the link runs, so a link that fails at
    /// once fails it with its own error).
    fn queue(&self, peer: PeerId, outgoing: Outgoing) -> Result<Picked, DeliverError> {
        let mut links = self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(link) = links.get(&peer)
            && !link.queue.is_closed()
        {
            return Ok(Picked::Running(link.queue.clone(), outgoing));
        }
        links.retain(|_, link| !link.queue.is_closed());
        if links.len() >= MAX_OUTBOUND_LINKS {
            return Err(DeliverError::Busy);
        }
        let serial = self.serials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(self.limits.window);
        // Room for it: the channel is new and holds the window (at least 1).
        let _ = queue.try_send(outgoing);
        links.insert(peer, LinkQueue { serial, queue });
        tokio::spawn(run_link(self.clone(), peer, serial, receiver));
        Ok(Picked::Started)
    }

    /// Forgets `peer`'s link if it is still the one given.
    fn forget(&self, peer: PeerId, queue: &mpsc::Sender<Outgoing>) {
        let mut links = self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if links.get(&peer).is_some_and(|link| link.queue.same_channel(queue)) {
            links.remove(&peer);
        }
    }

    fn forget_serial(&self, peer: PeerId, serial: u64) {
        let mut links = self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if links.get(&peer).is_some_and(|link| link.serial == serial) {
            links.remove(&peer);
        }
    }
}

/// Fails every delivery still queued on a link that ends.
fn fail_queued(mut queue: mpsc::Receiver<Outgoing>, error: &DeliverError) {
    queue.close();
    while let Ok(outgoing) = queue.try_recv() {
        outgoing.reply.send(Err(error.clone()));
    }
}

/// Opens `peer`'s link stream, dialing first through the network task
/// (so an address handed to it before this delivery is known to the dial).
async fn open(links: &Links, control: &mut Control, peer: PeerId) -> Result<Stream, DeliverError> {
    let limits = links.limits;
    links.dialer.dial(peer).await.map_err(|error| match error {
        DialError::Unreachable { .. } => DeliverError::Unreachable,
        DialError::Busy => DeliverError::Busy,
        DialError::Stopped => DeliverError::Stopped,
    })?;
    match timeout(limits.timeout, control.open_stream(peer, PROTOCOL)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(OpenStreamError::UnsupportedProtocol(_))) => Err(DeliverError::UnsupportedProtocol),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "delivery link not opened");
            Err(DeliverError::Unreachable)
        }
        Err(_) => Err(DeliverError::Unreachable),
    }
}

/// One outbound link: opens the stream, then writes the queued deliveries
/// and matches the answers until the link fails or idles out.
///
/// A stream that ends before any answer came back is opened again, up to
/// [`FRESH_LINK_RETRIES`] times, with what it carried: a receiver drops an
/// inbound stream it cannot take at once (busy accepting others, as under
/// a flood of streams), and nothing on such a stream was read.
async fn run_link(links: Links, peer: PeerId, serial: u64, mut queue: mpsc::Receiver<Outgoing>) {
    let limits = links.limits;
    let mut control = links.control.clone();
    let mut carried = Vec::new();
    let mut retries = 0;
    let error = loop {
        let stream = match open(&links, &mut control, peer).await {
            Ok(stream) => stream,
            Err(error) => break error,
        };
        let (reader, writer) = stream.split();
        let mut sender = LinkSender {
            writer: BufWriter::with_capacity(FLUSH_BYTES + MAX_FRAME_BYTES, writer),
            reader,
            answers: vec![0; ANSWER_BYTES * 512],
            filled: 0,
            waiting: BTreeMap::new(),
            deadlines: VecDeque::new(),
            next_id: 0,
            answered_any: false,
        };
        let error = sender.run(&mut queue, std::mem::take(&mut carried), limits).await;
        let _ = sender.writer.close().await;
        let Some(error) = error else {
            // Idle: nothing waits.
            links.forget_serial(peer, serial);
            return fail_queued(queue, &DeliverError::ConnectionLost);
        };
        tracing::debug!(%peer, %error, "delivery link ended");
        if error == DeliverError::ConnectionLost
            && !sender.answered_any
            && retries < FRESH_LINK_RETRIES
        {
            retries += 1;
            carried = std::mem::take(&mut sender.waiting).into_values().collect();
            sleep(FRESH_LINK_BACKOFF * retries).await;
            continue;
        }
        for (_, outgoing) in std::mem::take(&mut sender.waiting) {
            outgoing.reply.send(Err(error.clone()));
        }
        break error;
    };
    links.forget_serial(peer, serial);
    for outgoing in carried {
        outgoing.reply.send(Err(error.clone()));
    }
    fail_queued(queue, &error);
}

struct LinkSender {
    writer: BufWriter<WriteHalf<Stream>>,
    reader: ReadHalf<Stream>,
    /// Answer bytes read, `filled` of them not parsed yet.
    answers: Vec<u8>,
    filled: usize,
    /// Deliveries on the wire, by id (in the order they were written).
    waiting: BTreeMap<u64, Outgoing>,
    /// When each delivery on the wire times out, oldest first.
    deadlines: VecDeque<(Instant, u64)>,
    next_id: u64,
    /// Whether any answer came on this link.
    answered_any: bool,
}

impl LinkSender {
    /// Writes `carried` (from a link that failed fresh), then runs until
    /// the link fails (its error) or idles out (`None`).
    async fn run(
        &mut self,
        queue: &mut mpsc::Receiver<Outgoing>,
        carried: Vec<Outgoing>,
        limits: LinkLimits,
    ) -> Option<DeliverError> {
        if !carried.is_empty() {
            let deadline = Instant::now() + limits.timeout;
            for outgoing in carried {
                if let Err(error) = self.write(outgoing, deadline).await {
                    return Some(error);
                }
            }
            if self.writer.flush().await.is_err() {
                return Some(DeliverError::ConnectionLost);
            }
        }
        loop {
            self.expire(Instant::now());
            let room = self.waiting.len() < limits.window;
            let deadline = self.deadlines.front().map(|(at, _)| *at);
            let idle = self.waiting.is_empty();
            tokio::select! {
                outgoing = queue.recv(), if room => {
                    // Every handle is gone: nothing more will come.
                    let outgoing = outgoing?;
                    if let Err(error) = self.write_batch(outgoing, queue, limits).await {
                        return Some(error);
                    }
                }
                read = self.reader.read(&mut self.answers[self.filled..]) => match read {
                    Ok(0) | Err(_) => return Some(DeliverError::ConnectionLost),
                    Ok(read) => {
                        if let Err(error) = self.answered(read) {
                            return Some(error);
                        }
                    }
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                () = sleep(LINK_IDLE_TIMEOUT), if idle => return None,
            }
        }
    }

    /// Writes `first` and whatever else is queued (within the window and
    /// [`FLUSH_BYTES`]), then flushes once.
    async fn write_batch(
        &mut self,
        first: Outgoing,
        queue: &mut mpsc::Receiver<Outgoing>,
        limits: LinkLimits,
    ) -> Result<(), DeliverError> {
        let deadline = Instant::now() + limits.timeout;
        let mut next = Some(first);
        while let Some(outgoing) = next.take() {
            self.write(outgoing, deadline).await?;
            if self.waiting.len() < limits.window && self.writer.buffer().len() < FLUSH_BYTES {
                next = queue.try_recv().ok();
            }
        }
        self.writer.flush().await.map_err(|_| DeliverError::ConnectionLost)
    }

    /// Writes one frame (unflushed), unless its caller stopped waiting.
    async fn write(&mut self, outgoing: Outgoing, deadline: Instant) -> Result<(), DeliverError> {
        if outgoing.reply.reply.is_closed() {
            return Ok(());
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let len = u32::try_from(ID_BYTES + outgoing.envelope.len())
            .map_err(|_| DeliverError::Malformed)?;
        let written = async {
            self.writer.write_all(&len.to_be_bytes()).await?;
            self.writer.write_all(&id.to_be_bytes()).await?;
            self.writer.write_all(&outgoing.envelope).await
        };
        written.await.map_err(|_| DeliverError::ConnectionLost)?;
        self.waiting.insert(id, outgoing);
        self.deadlines.push_back((deadline, id));
        Ok(())
    }

    /// Matches the complete answers among `read` new bytes.
    fn answered(&mut self, read: usize) -> Result<(), DeliverError> {
        self.filled += read;
        let complete = self.filled - self.filled % ANSWER_BYTES;
        for answer in self.answers[..complete].chunks_exact(ANSWER_BYTES) {
            let (id, byte) = answer.split_at(ID_BYTES);
            let id = u64::from_be_bytes(id.try_into().map_err(|_| DeliverError::ConnectionLost)?);
            let answer = byte
                .first()
                .and_then(|byte| Answer::from_byte(*byte))
                .ok_or(DeliverError::ConnectionLost)?;
            self.answered_any = true;
            // An id not waiting timed out already (or the peer made it up).
            if let Some(outgoing) = self.waiting.remove(&id) {
                outgoing.reply.send(match answer {
                    Answer::Accepted => Ok(()),
                    Answer::Malformed => Err(DeliverError::Malformed),
                    Answer::NotTaken => Err(DeliverError::NotTaken),
                });
            }
        }
        self.answers.copy_within(complete..self.filled, 0);
        self.filled -= complete;
        Ok(())
    }

    /// Fails the deliveries whose answer is overdue at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.front() {
            if at > now && self.waiting.contains_key(&id) {
                break;
            }
            self.deadlines.pop_front();
            if at <= now
                && let Some(outgoing) = self.waiting.remove(&id)
            {
                outgoing.reply.send(Err(DeliverError::Timeout));
            }
        }
    }
}

/// A received envelope's acknowledgement, owed to its sender. Hand it back
/// to [`NetworkHandle::acknowledge`](crate::NetworkHandle::acknowledge);
/// dropping it tells the sender the envelope was not taken.
pub struct InboundDelivery {
    id: u64,
    answers: mpsc::Sender<Answered>,
    /// Its place in the link's window, until its answer is written.
    permit: Option<OwnedSemaphorePermit>,
    /// The envelope's bytes in the node's inbound budget, until answered.
    _reservation: Reservation,
}

impl std::fmt::Debug for InboundDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundDelivery").field("open", &!self.answers.is_closed()).finish()
    }
}

impl InboundDelivery {
    /// Sends `answer` to the sender (nothing if the link is gone: the
    /// sender then sees the link fail and retries).
    pub(crate) fn answer(mut self, answer: Answer) {
        self.send(answer);
    }

    fn send(&mut self, answer: Answer) {
        if let Some(permit) = self.permit.take() {
            // Never full: the channel holds the link's window, and each
            // delivery holds one of the window's permits until written.
            let _ = self.answers.try_send(Answered { id: self.id, answer, _permit: permit });
        }
    }
}

impl Drop for InboundDelivery {
    fn drop(&mut self) {
        self.send(Answer::NotTaken);
    }
}

/// An answer on its way to the link's writer.
struct Answered {
    id: u64,
    answer: Answer,
    _permit: OwnedSemaphorePermit,
}

/// What the receiving side shares between its links.
#[derive(Clone)]
pub(crate) struct Receiving {
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) budget: Arc<InboundBudget>,
    pub(crate) limits: LinkLimits,
}

/// Links open to this node: per peer and in all.
#[derive(Default)]
struct OpenLinks {
    per_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// Takes the inbound links' streams and serves each, within
/// [`MAX_INBOUND_LINKS_PER_PEER`] and [`MAX_INBOUND_LINKS`].
pub(crate) async fn accept(mut incoming: IncomingStreams, receiving: Receiving) {
    let open = Arc::new(Mutex::new(OpenLinks::default()));
    while let Some((peer, stream)) = incoming.next().await {
        {
            let mut open = open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = open.per_peer.get(&peer).copied().unwrap_or(0);
            if count >= MAX_INBOUND_LINKS_PER_PEER || open.total >= MAX_INBOUND_LINKS {
                tracing::debug!(%peer, "delivery link refused: too many open");
                continue;
            }
            open.per_peer.insert(peer, count + 1);
            open.total += 1;
        }
        let guard = LinkGuard { open: Arc::clone(&open), peer };
        tokio::spawn(serve(peer, stream, receiving.clone(), guard));
    }
}

/// Counts an inbound link as open until dropped.
struct LinkGuard {
    open: Arc<Mutex<OpenLinks>>,
    peer: PeerId,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
    }
}

/// One inbound link: reads frames and hands their envelopes up; its writer
/// task sends the answers.
async fn serve(peer: PeerId, stream: Stream, receiving: Receiving, guard: LinkGuard) {
    let Receiving { events, budget, limits } = receiving;
    let (reader, writer) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let (answers, answer_queue) = mpsc::channel(limits.window);
    let window = Arc::new(Semaphore::new(limits.window));
    let writing = tokio::spawn(write_answers(writer, answer_queue, guard));
    loop {
        let Ok(permit) = Arc::clone(&window).acquire_owned().await else { break };
        // Between frames the link may idle; a frame once begun must arrive
        // whole within the timeout.
        match timeout(LINK_IDLE_TIMEOUT, reader.fill_buf()).await {
            Ok(Ok(buffered)) if !buffered.is_empty() => {}
            _ => break,
        }
        let (id, body, reservation) =
            match timeout(limits.timeout, read_delivery(&mut reader, &budget)).await {
                Ok(Ok(read)) => read,
                // A peer that breaks the rules loses the link at once, both
                // ways: the whole stream is dropped, not closed.
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "delivery link cut: bad frame");
                    writing.abort();
                    break;
                }
                Err(_) => {
                    tracing::debug!(%peer, "delivery link cut: frame too slow");
                    writing.abort();
                    break;
                }
            };
        let delivery = InboundDelivery {
            id,
            answers: answers.clone(),
            permit: Some(permit),
            _reservation: reservation,
        };
        // Over the inbound budget: read and dropped, for the sender to retry.
        let Some(body) = body else {
            tracing::debug!(%peer, "envelope not taken: inbound budget full");
            delivery.answer(Answer::NotTaken);
            continue;
        };
        match Envelope::decode(&body) {
            Ok(envelope) => {
                let event = Event::EnvelopeReceived { from: peer, envelope, delivery };
                if events.send(event).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "malformed envelope refused");
                delivery.answer(Answer::Malformed);
            }
        }
    }
}

/// Reads one frame of a link: its id, and its body with the bytes it holds
/// in the inbound budget, or no body when the budget could not hold it (its
/// bytes are then read and dropped, so the link goes on). The length is
/// checked before any buffer exists, and the body's buffer grows with the
/// bytes that arrive.
async fn read_delivery<R>(
    reader: &mut R,
    budget: &Arc<InboundBudget>,
) -> io::Result<(u64, Option<Vec<u8>>, Reservation)>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    reader.read_exact(&mut prefix).await?;
    let announced = u32::from_be_bytes(prefix);
    let len = usize::try_from(announced)
        .ok()
        .filter(|len| (ID_BYTES + 1..=MAX_FRAME_BYTES).contains(len))
        .ok_or(FrameError::BadLength { len: announced.into(), max: MAX_FRAME_BYTES })?;
    let mut id = [0u8; ID_BYTES];
    reader.read_exact(&mut id).await?;
    let mut reservation = Reservation::empty(budget);
    let mut body = Some(Vec::new());
    let mut remaining = len - ID_BYTES;
    const SCRATCH: usize = 4096;
    let mut scratch = [0u8; SCRATCH];
    while remaining > 0 {
        let step = remaining.min(READ_CHUNK_BYTES);
        if body.is_some() && reservation.grow(step).is_err() {
            body = None;
            reservation = Reservation::empty(budget);
        }
        let read = match body.as_mut() {
            Some(body) => {
                let start = body.len();
                body.resize(start + step, 0);
                let read = reader.read(body.get_mut(start..).unwrap_or_default()).await?;
                reservation.shrink(step - read);
                body.truncate(start + read);
                read
            }
            None => reader.read(scratch.get_mut(..step.min(SCRATCH)).unwrap_or_default()).await?,
        };
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        remaining -= read;
    }
    Ok((u64::from_be_bytes(id), body, reservation))
}

/// Writes a link's answers, batched while more are waiting, until every
/// delivery of the link is answered and its reader stopped.
async fn write_answers(
    writer: WriteHalf<Stream>,
    mut queue: mpsc::Receiver<Answered>,
    _guard: LinkGuard,
) {
    let mut writer = BufWriter::with_capacity(ANSWER_BYTES * 512, writer);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut written = Ok(());
        while let Some(answered) = next.take() {
            let mut bytes = [0u8; ANSWER_BYTES];
            bytes[..ID_BYTES].copy_from_slice(&answered.id.to_be_bytes());
            bytes[ID_BYTES] = answered.answer.to_byte();
            written = writer.write_all(&bytes).await;
            if written.is_err() {
                break;
            }
            next = queue.try_recv().ok();
        }
        if written.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_unknown_bytes_are_refused() {
        for answer in [Answer::Accepted, Answer::Malformed, Answer::NotTaken] {
            assert_eq!(Answer::from_byte(answer.to_byte()), Some(answer));
        }
        assert_eq!(Answer::from_byte(0x03), None);
    }
}
