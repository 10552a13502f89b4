// 1:1 audio and video calls with the browser's WebRTC.
//
// The offer, the answer, the ICE candidates and the end of a call travel as
// end-to-end-encrypted xchat messages: this page posts them to its node
// (`POST /api/v1/conversations/{contact}/call`), the node encrypts them to
// the contact's devices, and the contact's page gets them as `call_signal`
// events. The DTLS fingerprints in the SDP therefore reach the other side
// authenticated by the contacts' identities, and the media (DTLS-SRTP) flow
// directly between the two browsers. No ICE server is used unless the user
// sets one (kept in localStorage). A call from a contact that is not
// verified, or whose key changed, carries a warning.
//
// One call at a time; a second offer is answered "busy". Signals of a call
// are posted in order (one chain per call), and ICE candidates that arrive
// before their description is set wait for it: the network may reorder them.
'use strict';

import { call } from './api.js';

/** The caller gives up after this long without an answer ("no answer"). */
const RING_MS = 45000;
/** Candidates kept for calls this page has not seen the offer of yet. */
const MAX_EARLY_CALLS = 8;
const MAX_EARLY_CANDIDATES = 64;
/** Entries of the call log kept per contact. */
const MAX_LOG = 20;
const LOG_KEY = 'xchat.calls';
const ICE_KEY = 'xchat.iceServers';

const $ = (id) => document.getElementById(id);

let hooks = null;
/** The call in progress, or null. */
let active = null;
/** call id -> candidates that came before the call's offer or answer. */
const early = new Map();
/** Offers that reached this page since it loaded: how many, and the latest (for diagnostics and the tests). */
const MAX_SEEN_OFFERS = 16;
const seenOffers = { count: 0, latest: [] };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

// ---------- settings: optional STUN/TURN servers ----------

/**
 * The ICE servers the user set: one per line or comma, `url` or
 * `url username credential` (TURN). None by default: on a LAN or loopback
 * host candidates are enough, and no third party learns of the call.
 */
export function iceServers() {
  const text = localStorage.getItem(ICE_KEY) || '';
  return text.split(/[\n,]/).map((line) => line.trim()).filter(Boolean).map((line) => {
    const [urls, username, credential] = line.split(/\s+/);
    return username ? { urls, username, credential: credential || '' } : { urls };
  });
}

function saveIceServers() {
  const value = $('ice-servers').value.trim();
  if (value) localStorage.setItem(ICE_KEY, value); else localStorage.removeItem(ICE_KEY);
}

// ---------- the call log (shown in the conversation) ----------

function loadLog() {
  try {
    const log = JSON.parse(localStorage.getItem(LOG_KEY) || '{}');
    return log && typeof log === 'object' ? log : {};
  } catch {
    return {};
  }
}

/**
 * Adds an entry to a conversation's call log: `kind` is `declined` (by
 * us), `rejected` (by them), `busy`, `ended`, `unanswered` or `failed`.
 * Kept in this page's localStorage, per node: the node sees a call's
 * signals, not how it went. A missed call is the node's: an entry of the
 * history (docs/web.md).
 */
function logCall(contact, callId, kind, video, durationMs) {
  const log = loadLog();
  const entries = (log[contact] || []).filter((e) => e.call_id !== callId || e.kind !== kind);
  entries.push({ call_id: callId, kind, video: !!video, at: Date.now(), duration_ms: durationMs || 0 });
  log[contact] = entries.slice(-MAX_LOG);
  localStorage.setItem(LOG_KEY, JSON.stringify(log));
  if (hooks.current() === contact) renderLog(contact);
}

const LOG_TEXT = {
  missed: 'Missed call',
  declined: 'You declined a call',
  rejected: 'Call declined',
  busy: 'Busy: they are in another call',
  ended: 'Call',
  unanswered: 'No answer',
  failed: 'Call failed',
};

/** Draws the open conversation's call log. */
export function renderLog(contact) {
  const list = $('call-log');
  const entries = contact ? (loadLog()[contact] || []) : [];
  list.replaceChildren(...entries.slice(-3).map((entry) => {
    const li = el('li', `call-entry call-${entry.kind}`);
    li.dataset.kind = entry.kind;
    const kind = entry.video ? 'Video' : 'Audio';
    let text = `${LOG_TEXT[entry.kind] || 'Call'} · ${kind}`;
    if (entry.kind === 'ended' && entry.duration_ms) text += ` · ${formatDuration(entry.duration_ms)}`;
    li.append(el('span', 'call-text', text));
    li.append(el('time', 'when', new Date(entry.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    return li;
  }));
  list.hidden = entries.length === 0;
}

// ---------- signalling ----------

/** Posts a signal of the active call, in order after the ones before it. */
function send(current, signal) {
  const post = () => call('POST', `/conversations/${current.contact}/call`,
    { call_id: current.id, signal });
  current.chain = current.chain.then(post, post);
  return current.chain;
}

function newPeer(current) {
  const pc = new RTCPeerConnection({ iceServers: iceServers() });
  pc.addEventListener('icecandidate', (event) => {
    // The end of candidates needs no message: both sides gather on their own.
    if (!event.candidate || !event.candidate.candidate) return;
    send(current, {
      type: 'ice_candidate',
      candidate: event.candidate.candidate,
      sdp_mid: event.candidate.sdpMid || null,
      sdp_m_line_index: event.candidate.sdpMLineIndex ?? null,
    }).catch(() => {});
  });
  pc.addEventListener('track', (event) => {
    const video = $('remote-video');
    if (video.srcObject !== event.streams[0]) video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {});
  });
  pc.addEventListener('connectionstatechange', () => {
    // States only: never an address or a key.
    console.info(`call: connection ${pc.connectionState}`);
    if (active !== current) return;
    if (pc.connectionState === 'connected' && !current.connectedAt) {
      current.connectedAt = Date.now();
      render();
    } else if (pc.connectionState === 'failed') {
      hangUp('connection_failed');
    }
  });
  return pc;
}

async function addCandidates(current, candidates) {
  for (const c of candidates) {
    try {
      await current.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdp_mid, sdpMLineIndex: c.sdp_m_line_index });
    } catch {
      // A candidate for a transport that no longer exists: harmless.
    }
  }
}

async function media(video) {
  return navigator.mediaDevices.getUserMedia({ audio: true, video: video ? { width: 640, height: 480 } : false });
}

function attachLocal(current) {
  const preview = $('local-video');
  preview.srcObject = current.local;
  preview.hidden = !current.video;
  for (const track of current.local.getTracks()) current.pc.addTrack(track, current.local);
}

/** Starts a call to `contact` (from the conversation header). */
export async function startCall(contact, video) {
  if (active) {
    hooks.toast('You are already in a call.');
    return;
  }
  const current = {
    id: randomId(), contact, video, role: 'caller', state: 'calling', chain: Promise.resolve(),
    pc: null, local: null, remoteSet: false, pending: [], connectedAt: 0, timers: [],
    verified: true, keyChanged: false,
  };
  active = current;
  render();
  try {
    current.local = await media(video);
    if (active !== current) return stopTracks(current);
    current.pc = newPeer(current);
    attachLocal(current);
    const offer = await current.pc.createOffer();
    await current.pc.setLocalDescription(offer);
    await send(current, { type: 'offer', sdp: current.pc.localDescription.sdp });
    current.state = 'ringing';
    current.timers.push(setTimeout(() => {
      if (active === current && !current.remoteSet) hangUp('no_answer');
    }, RING_MS));
    render();
  } catch (error) {
    if (active === current) finish(current, 'failed');
    hooks.showError(error);
  }
}

async function accept() {
  const current = active;
  if (!current || current.role !== 'callee' || current.state !== 'incoming') return;
  current.state = 'connecting';
  render();
  try {
    current.local = await media(current.video);
    if (active !== current) return stopTracks(current);
    current.pc = newPeer(current);
    await current.pc.setRemoteDescription({ type: 'offer', sdp: current.offer });
    current.remoteSet = true;
    attachLocal(current);
    const answer = await current.pc.createAnswer();
    await current.pc.setLocalDescription(answer);
    await send(current, { type: 'answer', sdp: current.pc.localDescription.sdp });
    await addCandidates(current, current.pending.splice(0));
  } catch (error) {
    if (active === current) {
      // Tell the caller, so their phone stops ringing.
      send(current, { type: 'hang_up', reason: 'connection_failed' }).catch(() => {});
      finish(current, 'failed');
    }
    hooks.showError(error);
  }
}

function decline() {
  const current = active;
  if (!current || current.role !== 'callee') return;
  send(current, { type: 'reject', reason: 'declined' }).catch(hooks.quietError);
  finish(current, 'declined');
}

/** Ends the active call, telling the other side why. */
function hangUp(reason = 'normal') {
  const current = active;
  if (!current) return;
  if (current.role === 'callee' && current.state === 'incoming') return decline();
  send(current, { type: 'hang_up', reason }).catch(hooks.quietError);
  let kind = reason === 'connection_failed' ? 'failed' : 'ended';
  // Given up before an answer: the callee's node counts it missed.
  if (current.role === 'caller' && !current.remoteSet) kind = 'unanswered';
  finish(current, kind);
}

function stopTracks(current) {
  if (current.local) for (const track of current.local.getTracks()) track.stop();
}

/** The call is over: closes it, logs it, and says so on the call screen. */
function finish(current, kind) {
  if (active !== current) return;
  console.info(`call: finished (${kind})`);
  active = null;
  for (const timer of current.timers) clearTimeout(timer);
  if (current.pc) current.pc.close();
  stopTracks(current);
  const duration = current.connectedAt ? Date.now() - current.connectedAt : 0;
  // A missed call is in the history: the node wrote it.
  if (kind !== 'missed') logCall(current.contact, current.id, kind, current.video, duration);
  $('remote-video').srcObject = null;
  $('local-video').srcObject = null;
  $('local-video').hidden = true;
  const screen = $('call-screen');
  screen.dataset.state = 'ended';
  $('call-status').textContent = kind === 'ended' ? `Call ended · ${formatDuration(duration)}` : LOG_TEXT[kind] || 'Call ended';
  $('call-warning').hidden = true;
  for (const id of ['call-accept', 'call-decline', 'call-mute', 'call-camera', 'call-hangup']) $(id).hidden = true;
  $('call-close').hidden = false;
  document.body.classList.remove('ringing');
  // The ended screen stays a moment, then gives the conversation back.
  setTimeout(() => {
    if (!active && screen.dataset.state === 'ended') screen.hidden = true;
  }, 4000);
}

/** Handles the node's call events; false for other events. */
export function onCallEvent(event) {
  switch (event.type) {
    case 'call_signal':
      onSignal(event).catch(hooks.quietError);
      return true;
    case 'call_missed':
      // It rang out here (the caller vanished): stop ringing. The entry in
      // the history comes as a message_received.
      if (active && active.id === event.call_id && active.state === 'incoming') finish(active, 'missed');
      if (hooks.current() !== event.contact) hooks.toast(`Missed call from ${hooks.name(event.contact)}.`);
      return true;
    case 'call_signal_failed':
      if (active && active.id === event.call_id) {
        hooks.toast(`${hooks.name(event.contact)} cannot be reached.`);
        finish(active, 'failed');
      }
      return true;
    default:
      return false;
  }
}

async function onSignal(event) {
  const { signal } = event;
  console.info(`call: ${signal.type} received`);
  const current = active && active.id === event.call_id && active.contact === event.contact ? active : null;
  switch (signal.type) {
    case 'offer': {
      seenOffers.count += 1;
      if (seenOffers.latest.length >= MAX_SEEN_OFFERS) seenOffers.latest.shift();
      seenOffers.latest.push({ callId: event.call_id, contact: event.contact });
      if (current) return;
      if (active) {
        // In another call: say so; the node makes it a missed call.
        send({ id: event.call_id, contact: event.contact, chain: Promise.resolve() },
          { type: 'reject', reason: 'busy' }).catch(() => {});
        return;
      }
      const incoming = {
        id: event.call_id, contact: event.contact, role: 'callee', state: 'incoming',
        video: /^m=video /m.test(signal.sdp), offer: signal.sdp, chain: Promise.resolve(),
        pc: null, local: null, remoteSet: false, pending: early.get(event.call_id) || [],
        connectedAt: 0, timers: [], verified: event.verified, keyChanged: event.key_changed,
      };
      early.delete(event.call_id);
      active = incoming;
      render();
      $('call-accept').focus();
      return;
    }
    case 'answer': {
      if (!current || current.role !== 'caller' || current.remoteSet) return;
      current.verified = event.verified;
      current.keyChanged = event.key_changed;
      await current.pc.setRemoteDescription({ type: 'answer', sdp: signal.sdp });
      current.remoteSet = true;
      current.state = 'connecting';
      render();
      await addCandidates(current, current.pending.splice(0));
      return;
    }
    case 'ice_candidate': {
      if (current && current.remoteSet) {
        await addCandidates(current, [signal]);
      } else if (current) {
        if (current.pending.length < MAX_EARLY_CANDIDATES) current.pending.push(signal);
      } else {
        // Perhaps ahead of its offer: kept a little while, bounded.
        if (!early.has(event.call_id)) {
          if (early.size >= MAX_EARLY_CALLS) early.delete(early.keys().next().value);
          early.set(event.call_id, []);
        }
        const list = early.get(event.call_id);
        if (list.length < MAX_EARLY_CANDIDATES) list.push(signal);
      }
      return;
    }
    case 'reject':
      if (current && current.role === 'caller') finish(current, signal.reason === 'busy' ? 'busy' : 'rejected');
      return;
    case 'hang_up':
      early.delete(event.call_id);
      if (!current) return;
      // Hung up while it rang here: the node reports it missed.
      if (current.role === 'callee' && current.state === 'incoming') return finish(current, 'missed');
      finish(current, current.connectedAt ? 'ended' : 'failed');
      return;
    default:
  }
}

// ---------- the call screen ----------

function render() {
  const current = active;
  const screen = $('call-screen');
  if (!current) return;
  screen.hidden = false;
  screen.dataset.state = current.state === 'connecting' && current.connectedAt ? 'connected' : current.state;
  if (current.connectedAt) screen.dataset.state = 'connected';
  const name = hooks.name(current.contact);
  $('call-peer').textContent = name;
  const kind = current.video ? 'video' : 'audio';
  const status = {
    calling: `Starting a ${kind} call…`,
    ringing: `Calling… (${kind})`,
    incoming: `Incoming ${kind} call`,
    connecting: 'Connecting…',
  }[current.state];
  $('call-status').textContent = current.connectedAt ? formatDuration(Date.now() - current.connectedAt) : status;
  const warn = current.keyChanged || !current.verified;
  $('call-warning').hidden = !warn;
  if (warn) {
    $('call-warning').textContent = current.keyChanged
      ? `${name}'s safety number changed and you have not acknowledged it: this may not be ${name}. `
        + 'Compare safety numbers before you trust this call (you cannot answer until you acknowledge or verify).'
      : `You have not verified ${name}'s safety number: compare it to be sure no one is in the middle.`;
  }
  const incoming = current.state === 'incoming';
  document.body.classList.toggle('ringing', incoming);
  $('call-accept').hidden = !incoming;
  $('call-decline').hidden = !incoming;
  $('call-mute').hidden = incoming;
  $('call-camera').hidden = incoming || !current.video;
  $('call-hangup').hidden = incoming;
  $('call-close').hidden = true;
  $('call-video').hidden = !current.video;
}

function toggleTracks(kind, button, onText, offText) {
  const current = active;
  if (!current || !current.local) return;
  const tracks = current.local.getTracks().filter((t) => t.kind === kind);
  const enabled = !tracks.every((t) => t.enabled);
  for (const track of tracks) track.enabled = enabled;
  button.setAttribute('aria-pressed', String(!enabled));
  button.textContent = enabled ? onText : offText;
}

/**
 * What `getStats()` says of the active call's received media, for the
 * browser tests and for diagnostics: decoded video frames, received audio
 * packets, the connection's state.
 */
async function stats() {
  const current = active;
  if (!current || !current.pc) return null;
  const report = await current.pc.getStats();
  const pc = current.pc;
  const out = {
    state: pc.connectionState, ice: pc.iceConnectionState, signaling: pc.signalingState,
    framesDecoded: 0, audioPackets: 0, localCandidates: 0, remoteCandidates: 0,
  };
  report.forEach((s) => {
    if (s.type === 'local-candidate') out.localCandidates += 1;
    if (s.type === 'remote-candidate') out.remoteCandidates += 1;
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
    if (s.kind === 'audio') out.audioPackets += s.packetsReceived || 0;
  });
  return out;
}

/** Wires the call buttons and settings; `h` gives the app's state and helpers. */
export function initCalls(h) {
  hooks = h;
  $('call-audio-button').addEventListener('click', () => startCall(hooks.current(), false));
  $('call-video-button').addEventListener('click', () => startCall(hooks.current(), true));
  $('call-accept').addEventListener('click', accept);
  $('call-decline').addEventListener('click', decline);
  $('call-hangup').addEventListener('click', () => hangUp('normal'));
  $('call-close').addEventListener('click', () => { $('call-screen').hidden = true; });
  $('call-mute').addEventListener('click', (e) => toggleTracks('audio', e.currentTarget, 'Mute', 'Unmute'));
  $('call-camera').addEventListener('click', (e) => toggleTracks('video', e.currentTarget, 'Camera off', 'Camera on'));
  $('ice-servers').value = localStorage.getItem(ICE_KEY) || '';
  $('ice-servers').addEventListener('change', saveIceServers);
  // The call timer, once a second.
  setInterval(() => {
    if (active && active.connectedAt) $('call-status').textContent = formatDuration(Date.now() - active.connectedAt);
  }, 1000);
  window.addEventListener('pagehide', () => { if (active) hangUp('normal'); });
  const offers = () => ({ count: seenOffers.count, latest: seenOffers.latest.map((o) => ({ ...o })) });
  Object.defineProperty(window, 'xchatCall', { value: Object.freeze({ stats, offers }) });
}
