// The xchat web UI: a conversation list and a conversation view over the
// node's local API. State comes from REST calls; the events WebSocket keeps
// it live, and on every (re)connection or `lagged` the page loads it again.
// Peer-controlled text only ever reaches the DOM through textContent.
'use strict';

import { ApiError, Events, call, upload } from './api.js';
import { Timeline } from './timeline.js';
import { initCalls, onCallEvent, renderLog } from './calls.js';

/** Messages per history page (the API takes up to 1000). */
const PAGE = 100;
/** Images this size or smaller are fetched as soon as they are offered. */
const AUTO_ACCEPT_IMAGE_BYTES = 10 * 1024 * 1024;
/** Kinds shown inline; the node checks the bytes again before serving them. */
const INLINE_IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const OUTBOX_KEY = 'xchat.outbox';

const $ = (id) => document.getElementById(id);

const state = {
  identity: null,
  contacts: new Map(),
  conversations: [],
  current: null,
  /** file id -> Transfer of the open conversation. */
  transfers: new Map(),
  /** Statuses that arrived before the POST that made the message answered. */
  earlyStatus: new Map(),
  /** file id -> object URL of an image this page sent. */
  localImages: new Map(),
  /** Texts not accepted by the node yet: [{key, contact, text, error}]. */
  outbox: loadOutbox(),
  online: false,
};

const timeline = new Timeline($('timeline'), $('messages'), renderMessage, loadOlder,
  (text) => { $('history-status').textContent = text; }, PAGE, onPosition);

/** The "jump to the newest" button: shown whenever the newest message is out of view. */
function onPosition(atBottom, missed) {
  const jump = $('jump-button');
  if (atBottom) {
    jump.hidden = true;
    jump.textContent = '↓ Newest';
  } else {
    jump.hidden = false;
    if (missed) jump.textContent = '↓ New messages';
  }
}

// ---------- small helpers ----------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

let toastTimer = null;
function toast(text) {
  $('toast-text').textContent = text;
  $('toast').hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $('toast').hidden = true; }, 8000);
}

function showError(error) {
  if (error instanceof ApiError && error.status === 401) {
    showLogin('The node no longer knows this session (it was restarted, or the session ended).');
    return;
  }
  toast(error instanceof Error ? error.message : String(error));
}

/** For work the user did not ask for: an unreachable node is already said by the banner. */
function quietError(error) {
  if (error instanceof ApiError && error.status === 0) return;
  showError(error);
}

// Made once: building a formatter per message costs more than drawing it.
const TIME = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
const DAY = new Intl.DateTimeFormat([], { month: 'short', day: 'numeric' });
const FULL = new Intl.DateTimeFormat([], { dateStyle: 'medium', timeStyle: 'medium' });

function formatTime(ms) {
  const date = new Date(ms);
  const now = new Date();
  const today = date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth()
    && date.getDate() === now.getDate();
  return today ? TIME.format(date) : DAY.format(date);
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

function formatLeft(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.ceil(s / 60)}m`;
  if (s < 86400) return `${Math.ceil(s / 3600)}h`;
  return `${Math.ceil(s / 86400)}d`;
}

function formatTimer(seconds) {
  const option = [...$('timer').options].find((o) => Number(o.value) === seconds);
  return option ? option.textContent : `${seconds} seconds`;
}

// ---------- screens ----------

function showLogin(detail) {
  $('loading').hidden = true;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-detail').textContent = detail || '';
  document.title = 'xchat: log in';
}

function showApp() {
  $('loading').hidden = true;
  $('login').hidden = true;
  $('app').hidden = false;
}

function setConnection(text) {
  $('connection').hidden = !text;
  $('connection').textContent = text || '';
}

// ---------- conversation list ----------

async function reloadList() {
  const [contacts, conversations] = await Promise.all([
    call('GET', '/contacts'), call('GET', '/conversations')]);
  state.contacts = new Map(contacts.map((c) => [c.id, c]));
  state.conversations = conversations;
  renderList();
  if (state.current) renderHeader();
}

let listReload = null;
/** Reloads the list soon, once for a burst of events. */
function reloadListSoon() {
  if (listReload) return;
  listReload = setTimeout(() => {
    listReload = null;
    reloadList().catch(quietError);
  }, 150);
}

/** What the history says of a call entry (written by the node, never sent). */
function callText(call) {
  return call.video ? 'Missed video call' : 'Missed voice call';
}

function preview(message) {
  if (!message) return 'No messages yet';
  if (message.call) return callText(message.call);
  const prefix = message.direction === 'out' ? 'You: ' : '';
  return prefix + (message.file ? `File: ${message.text}` : message.text);
}

function renderList() {
  const list = $('conversations');
  // The list is drawn anew on every change: a keyboard user's focus stays
  // on the same conversation.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.contact : null;
  const items = state.conversations.map((conversation) => {
    const contact = state.contacts.get(conversation.contact);
    const li = el('li');
    const button = el('button', 'conversation');
    button.type = 'button';
    button.dataset.contact = conversation.contact;
    if (conversation.contact === state.current) {
      button.classList.add('selected');
      button.setAttribute('aria-current', 'true');
    }
    const top = el('span', 'row');
    const name = el('span', 'name', conversation.name);
    top.append(name);
    if (contact && contact.verified) top.append(el('span', 'verified-mark', '✓'));
    if (contact && contact.key_changed) top.append(el('span', 'warn-mark', '⚠'));
    if (conversation.last) top.append(el('time', 'when', formatTime(conversation.last.sent_at)));
    const bottom = el('span', 'row');
    bottom.append(el('span', 'last', preview(conversation.last)));
    if (conversation.unread > 0) {
      const badge = el('span', 'unread', String(conversation.unread));
      badge.setAttribute('aria-label', `${conversation.unread} unread`);
      bottom.append(badge);
    }
    button.append(top, bottom);
    button.addEventListener('click', () => openConversation(conversation.contact));
    li.append(button);
    return li;
  });
  list.replaceChildren(...items);
  if (focused) list.querySelector(`[data-contact="${CSS.escape(focused)}"]`)?.focus();
  $('no-conversations').hidden = items.length > 0;
  const unread = state.conversations.reduce((n, c) => n + c.unread, 0);
  document.title = unread > 0 ? `(${unread}) xchat` : 'xchat';
}

// ---------- conversation view ----------

function currentConversation() {
  return state.conversations.find((c) => c.contact === state.current) || null;
}

function renderHeader() {
  const contact = state.contacts.get(state.current);
  const conversation = currentConversation();
  if (!contact) return;
  $('peer-name').textContent = contact.name;
  $('peer-verified').hidden = !contact.verified;
  const seconds = conversation && conversation.timer_seconds ? conversation.timer_seconds : 0;
  const select = $('timer');
  if (![...select.options].some((o) => Number(o.value) === seconds)) {
    select.append(new Option(`${seconds} seconds`, String(seconds)));
  }
  select.value = String(seconds);
  $('key-banner').hidden = !contact.key_changed;
  if (contact.key_changed) {
    $('key-banner-text').textContent = `${contact.name}'s safety number changed. They may have `
      + 'reinstalled xchat, or someone may be in the middle. Nothing is sent to them until you '
      + 'compare safety numbers and verify, or acknowledge the change.';
  }
}

async function openConversation(contact) {
  // For the benchmark: from here to the newest page drawn (`xchat-open`).
  performance.mark('xchat-open-start');
  state.current = contact;
  state.transfers = new Map();
  state.earlyStatus.clear();
  document.body.classList.add('chat-open');
  $('chat').hidden = false;
  $('no-chat').hidden = true;
  timeline.clear();
  onPosition(true, false);
  renderHeader();
  renderList();
  renderOutbox();
  renderLog(contact);
  $('uploads').replaceChildren();
  try {
    await loadConversation();
  } catch (error) {
    showError(error);
  }
  $('text').focus();
}

function closeConversation() {
  state.current = null;
  document.body.classList.remove('chat-open');
  $('chat').hidden = true;
  $('no-chat').hidden = false;
  renderList();
  const first = $('conversations').querySelector('button');
  if (first) first.focus();
}

/** Loads the open conversation's newest page and its files. */
async function loadConversation() {
  const contact = state.current;
  const [page, transfers] = await Promise.all([
    call('GET', `/conversations/${contact}/messages?limit=${PAGE}`),
    call('GET', `/conversations/${contact}/files`)]);
  if (contact !== state.current) return;
  state.transfers = new Map(transfers.map((t) => [t.file, t]));
  timeline.reset(page, page.length < PAGE);
  performance.measure('xchat-open', 'xchat-open-start');
  autoAccept();
  markRead();
}

/** After a reconnection: merges the newest page into what is shown. */
async function refreshConversation() {
  const contact = state.current;
  if (!contact) return;
  const [page, transfers] = await Promise.all([
    call('GET', `/conversations/${contact}/messages?limit=${PAGE}`),
    call('GET', `/conversations/${contact}/files`)]);
  if (contact !== state.current) return;
  state.transfers = new Map(transfers.map((t) => [t.file, t]));
  if (page.length === 0) {
    timeline.reset(page, true);
    return;
  }
  // Whatever was shown within the page's span but is not in it vanished.
  const fresh = new Set(page.map((m) => m.id));
  const oldest = page[page.length - 1];
  for (const message of timeline.loaded().slice()) {
    if (!fresh.has(message.id) && message.sent_at >= oldest.sent_at) timeline.remove(message.id);
  }
  for (const message of page.slice().reverse()) timeline.upsert(message);
  autoAccept();
  markRead();
}

async function loadOlder(oldest) {
  try {
    return await call('GET',
      `/conversations/${state.current}/messages?limit=${PAGE}&before=${oldest.id}`);
  } catch (error) {
    showError(error);
    throw error;
  }
}

const STATUS_TEXT = {
  pending: ['◷', 'Sending'],
  sent: ['✓', 'Sent'],
  in_mailbox: ['✉', 'In their mailbox'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['⚠', 'Not delivered'],
};

function renderMessage(message) {
  if (message.call) return renderCallEntry(message);
  const li = el('li', `message ${message.direction}`);
  li.dataset.id = message.id;
  li.dataset.status = message.status;
  const bubble = el('div', 'bubble');
  if (message.file) {
    bubble.append(renderFile(message));
  } else {
    bubble.append(el('p', 'text', message.text));
  }
  const meta = el('div', 'meta');
  const time = el('time', '', formatTime(message.sent_at));
  time.dateTime = new Date(message.sent_at).toISOString();
  time.title = FULL.format(message.sent_at);
  meta.append(time);
  if (message.expires_at) {
    const left = el('span', 'expiry', `vanishes in ${formatLeft(message.expires_at - Date.now())}`);
    left.dataset.expiresAt = String(message.expires_at);
    left.title = `Vanishes at ${FULL.format(message.expires_at)}`;
    meta.append(left);
    li.classList.add('vanishing');
  }
  if (message.direction === 'out') {
    const [icon, label] = STATUS_TEXT[message.status] || ['', message.status];
    const status = el('span', `status status-${message.status}`, icon);
    status.title = label;
    status.setAttribute('role', 'img');
    status.setAttribute('aria-label', label);
    meta.append(status);
  }
  bubble.append(meta);
  li.append(bubble);
  return li;
}

/** A call in the history: a line across the conversation, not a bubble. */
function renderCallEntry(message) {
  const li = el('li', `message call-entry call-${message.call.outcome}`);
  li.dataset.id = message.id;
  li.dataset.status = message.status;
  li.dataset.call = message.call.outcome;
  li.append(el('span', 'call-text', callText(message.call)));
  const time = el('time', 'when', formatTime(message.sent_at));
  time.dateTime = new Date(message.sent_at).toISOString();
  time.title = FULL.format(message.sent_at);
  li.append(time);
  if (message.expires_at) {
    const left = el('span', 'expiry', `vanishes in ${formatLeft(message.expires_at - Date.now())}`);
    left.dataset.expiresAt = String(message.expires_at);
    li.append(left);
    li.classList.add('vanishing');
  }
  return li;
}

function renderFile(message) {
  const box = el('div', 'file');
  const transfer = state.transfers.get(message.file);
  const local = state.localImages.get(message.file);
  const isImage = transfer && INLINE_IMAGE_TYPES.includes(transfer.media_type);
  if (local) {
    const img = el('img', 'inline-image');
    img.src = local;
    img.alt = message.text;
    box.append(img);
  } else if (isImage && transfer.direction === 'in' && transfer.state === 'complete') {
    const img = el('img', 'inline-image');
    const url = `/api/v1/files/${message.file}/preview`;
    img.src = url;
    img.alt = message.text;
    // Once more a moment later (the node may still be moving the file in
    // place); then the file card alone, with Save, remains.
    img.addEventListener('error', () => {
      if (img.dataset.retried) {
        img.remove();
        return;
      }
      img.dataset.retried = 'true';
      setTimeout(() => { img.src = `${url}?again`; }, 1000);
    });
    box.append(img);
  }
  const row = el('div', 'file-row');
  const icon = el('img', 'file-icon');
  icon.src = '/assets/clip.svg';
  icon.alt = '';
  row.append(icon);
  const info = el('div', 'file-info');
  info.append(el('span', 'file-name', message.text));
  if (transfer) info.append(el('span', 'file-size muted', formatSize(transfer.size)));
  row.append(info);
  box.append(row);
  if (!transfer) return box;
  const done = transfer.state === 'complete';
  if (transfer.state === 'transferring' || transfer.state === 'accepted') {
    const progress = el('progress', 'transfer-progress');
    progress.max = Math.max(1, transfer.chunks_total);
    progress.value = transfer.chunks_done;
    progress.setAttribute('aria-label', `Transfer of ${message.text}`);
    box.append(progress);
  }
  const actions = el('div', 'file-actions');
  if (transfer.direction === 'in') {
    if (transfer.state === 'offered' || transfer.state === 'failed') {
      const accept = el('button', 'accept', transfer.state === 'failed' ? 'Retry download' : 'Accept');
      accept.type = 'button';
      accept.addEventListener('click', () => acceptFile(transfer.file));
      actions.append(accept);
    } else if (done) {
      const link = el('a', 'button download', 'Save');
      link.href = `/api/v1/files/${message.file}`;
      link.download = message.text;
      actions.append(link);
    }
  }
  const stateText = {
    offered: transfer.direction === 'in' ? 'Offered' : 'Waiting for them to accept',
    accepted: 'Starting…',
    transferring: `${Math.floor((100 * transfer.chunks_done) / Math.max(1, transfer.chunks_total))}%`,
    complete: transfer.direction === 'in' ? 'Received' : 'Delivered',
    failed: 'Transfer failed',
  }[transfer.state];
  actions.append(el('span', 'file-state muted', stateText));
  box.append(actions);
  return box;
}

async function acceptFile(file) {
  try {
    await call('POST', `/files/${file}/accept`);
  } catch (error) {
    showError(error);
  }
}

/** Fetches small images as soon as they are offered, as Signal does. */
function autoAccept() {
  for (const transfer of state.transfers.values()) {
    if (transfer.direction === 'in' && transfer.state === 'offered'
      && INLINE_IMAGE_TYPES.includes(transfer.media_type)
      && transfer.size <= AUTO_ACCEPT_IMAGE_BYTES) {
      transfer.state = 'accepted';
      acceptFile(transfer.file);
    }
  }
}

let reading = false;
/** Marks the open conversation's unread messages read while the page is seen. */
async function markRead() {
  if (!state.current || document.visibilityState !== 'visible' || reading) return;
  const unread = timeline.loaded().filter((m) => m.direction === 'in' && m.status === 'unread');
  if (unread.length === 0) return;
  const contact = state.current;
  reading = true;
  try {
    for (let i = 0; i < unread.length; i += 1000) {
      const chunk = unread.slice(i, i + 1000);
      await call('POST', `/conversations/${contact}/read`, { ids: chunk.map((m) => m.id) });
      if (contact !== state.current) break;
      // The node starts their timers when read: the next load shows them.
      for (const message of chunk) {
        // Unless it vanished meanwhile.
        const shown = timeline.get(message.id);
        if (shown) timeline.upsert({ ...shown, status: 'seen' });
      }
    }
    reloadListSoon();
    if (unread.some((m) => m.expires_at === null)) refreshSoon();
  } catch (error) {
    quietError(error);
    return;
  } finally {
    reading = false;
  }
  // Messages that arrived during the request are marked now.
  if (timeline.loaded().some((m) => m.direction === 'in' && m.status === 'unread')) markRead();
}

let refreshTimer = null;
function refreshSoon() {
  if (!state.current || refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshConversation().catch(quietError);
  }, 300);
}

// ---------- sending ----------

function loadOutbox() {
  try {
    const saved = JSON.parse(localStorage.getItem(OUTBOX_KEY) || '[]');
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

function saveOutbox() {
  try {
    localStorage.setItem(OUTBOX_KEY, JSON.stringify(state.outbox));
  } catch {
    // Storage full or off: the outbox still lives on this page.
  }
}

function renderOutbox() {
  const items = state.outbox.filter((o) => o.contact === state.current).map((entry) => {
    const li = el('li', 'outbox-entry');
    li.append(el('p', 'text', entry.text));
    li.append(el('p', 'muted', entry.error || 'Sending…'));
    const retry = el('button', '', 'Retry now');
    retry.type = 'button';
    retry.addEventListener('click', () => flushOutbox());
    const discard = el('button', '', 'Discard');
    discard.type = 'button';
    discard.addEventListener('click', () => {
      state.outbox = state.outbox.filter((o) => o !== entry);
      saveOutbox();
      renderOutbox();
    });
    li.append(retry, discard);
    return li;
  });
  $('outbox').replaceChildren(...items);
}

/** Hands one outbox entry to the node. True when it took it (or refused it for good). */
async function deliver(entry) {
  try {
    const { id } = await call('POST', `/conversations/${entry.contact}/messages`, { text: entry.text });
    state.outbox = state.outbox.filter((o) => o !== entry);
    saveOutbox();
    if (entry.contact === state.current && !timeline.get(id)) {
      const status = state.earlyStatus.get(id) || 'pending';
      state.earlyStatus.delete(id);
      const now = Date.now();
      timeline.upsert({ id, contact: entry.contact, direction: 'out', sent_at: now,
        received_at: now, text: entry.text, file: null, status, expires_at: null });
      timeline.scrollToBottom();
      // Its expiry, if the conversation has a timer, is the node's to say.
      const conversation = currentConversation();
      if (conversation && conversation.timer_seconds) refreshSoon();
    }
    reloadListSoon();
    return true;
  } catch (error) {
    if (error.transient) {
      entry.error = 'Not sent yet: the node cannot be reached. It will be sent when it is back.';
      saveOutbox();
      return false;
    }
    // Refused for good (a key change, a text too long...): back to the
    // box, so nothing typed is lost, with the reason.
    state.outbox = state.outbox.filter((o) => o !== entry);
    saveOutbox();
    if (entry.contact === state.current) {
      const box = $('text');
      box.value = box.value ? `${entry.text}\n${box.value}` : entry.text;
    }
    showError(error);
    return true;
  }
}

let flushing = false;
let outboxRetry = null;
let outboxDelay = 1000;
/** Hands the outbox to the node in order; what it cannot take is retried later. */
async function flushOutbox() {
  if (flushing) return;
  flushing = true;
  clearTimeout(outboxRetry);
  outboxRetry = null;
  try {
    for (const entry of state.outbox.slice()) {
      if (!(await deliver(entry))) {
        // The node is away: again later, less and less often.
        outboxRetry = setTimeout(flushOutbox, outboxDelay);
        outboxDelay = Math.min(outboxDelay * 2, 30000);
        return;
      }
    }
    outboxDelay = 1000;
  } finally {
    flushing = false;
    renderOutbox();
  }
}

async function sendText() {
  const box = $('text');
  const text = box.value;
  if (!text.trim() || !state.current) return;
  const entry = { contact: state.current, text, error: null };
  state.outbox.push(entry);
  saveOutbox();
  box.value = '';
  autosize();
  renderOutbox();
  // Queued behind anything not sent yet, so the order is kept.
  await flushOutbox();
}

function sendFiles(files) {
  const contact = state.current;
  if (!contact) return;
  for (const file of files) {
    const li = el('li', 'upload');
    const name = el('span', 'file-name', file.name);
    const progress = el('progress');
    progress.max = Math.max(1, file.size);
    progress.value = 0;
    progress.setAttribute('aria-label', `Upload of ${file.name}`);
    const cancel = el('button', '', 'Cancel');
    cancel.type = 'button';
    li.append(name, progress, cancel);
    $('uploads').append(li);
    const sending = upload(contact, file, (sent, total) => {
      progress.max = Math.max(1, total);
      progress.value = sent;
    });
    cancel.addEventListener('click', () => sending.abort());
    sending.done.then(async (queued) => {
      li.remove();
      if (INLINE_IMAGE_TYPES.includes(file.type)) {
        state.localImages.set(queued.file, URL.createObjectURL(file));
      }
      if (contact === state.current) await refreshConversation();
      timeline.scrollToBottom();
      reloadListSoon();
    }, (error) => {
      li.remove();
      if (error.code !== 'aborted') showError(error);
    });
  }
}

// ---------- events ----------

function onEvent(event) {
  switch (event.type) {
    case 'message_received': {
      const message = event.message;
      if (message.contact === state.current) {
        timeline.upsert(message);
        if (message.file) refreshSoon();
        markRead();
      }
      reloadListSoon();
      break;
    }
    case 'status_changed': {
      if (event.contact === state.current) {
        const message = timeline.get(event.id);
        if (message) {
          timeline.upsert({ ...message, status: event.status });
          if (event.status === 'read' || event.status === 'seen') refreshSoon();
        } else {
          state.earlyStatus.set(event.id, event.status);
        }
      }
      reloadListSoon();
      break;
    }
    case 'message_expired':
      timeline.remove(event.id);
      reloadListSoon();
      break;
    case 'timer_changed':
      reloadListSoon();
      if (event.contact === state.current) {
        const name = state.contacts.get(event.contact)?.name || 'They';
        toast(event.timer_seconds
          ? `${name} set vanishing messages to ${formatTimer(event.timer_seconds)}.`
          : `${name} turned vanishing messages off.`);
      }
      break;
    case 'contact_key_changed':
      reloadListSoon();
      break;
    case 'transfer_changed': {
      const transfer = state.transfers.get(event.file);
      if (event.contact !== state.current) break;
      if (!transfer) {
        refreshSoon();
        break;
      }
      transfer.state = event.state;
      transfer.chunks_done = event.chunks_done;
      timeline.rerender(transfer.message);
      break;
    }
    case 'unsupported':
      if (event.contact === state.current) {
        toast(`${state.contacts.get(event.contact)?.name || 'The contact'} sent something this `
          + `version cannot show (${event.what}).`);
      }
      break;
    case 'lagged':
      reloadAll();
      break;
    default:
      // Calls (calls.js); anything newer is ignored.
      onCallEvent(event);
      break;
  }
}

let firstConnection = true;
function onConnection(status) {
  if (status === 'open') {
    state.online = true;
    setConnection('');
    if (!firstConnection) reloadAll();
    firstConnection = false;
    flushOutbox();
  } else if (status === 'closed') {
    state.online = false;
    setConnection('Connection to the node lost. Reconnecting…');
  } else if (status === 'unauthorized') {
    showLogin('The node no longer knows this session (it was restarted, or the session ended).');
  }
}

async function reloadAll() {
  try {
    await reloadList();
    await refreshConversation();
  } catch (error) {
    quietError(error);
  }
}

// ---------- dialogs ----------

function openAddDialog() {
  $('add-error').textContent = '';
  $('add-form').reset();
  $('add-dialog').showModal();
  $('add-address').focus();
}

function nameFromLink() {
  const value = $('add-address').value.trim();
  if (!value.startsWith('xchat:') || $('add-name').value) return;
  const query = value.indexOf('?');
  if (query < 0) return;
  const name = new URLSearchParams(value.slice(query + 1)).get('name');
  if (name) $('add-name').value = name.slice(0, 64);
}

async function addContact(event) {
  event.preventDefault();
  $('add-error').textContent = '';
  try {
    const added = await call('POST', '/contacts', {
      name: $('add-name').value.trim(), address: $('add-address').value.trim() });
    $('add-dialog').close();
    await reloadList();
    await openConversation(added.id);
    if (added.outcome === 'unchanged') toast('You already had this contact.');
  } catch (error) {
    if (error.status === 401) return showError(error);
    $('add-error').textContent = error.message;
  }
}

async function openMeDialog() {
  try {
    const identity = state.identity || await call('GET', '/identity');
    state.identity = identity;
    $('me-address').textContent = identity.address;
    // The image changes with the profile only; loaded with the session cookie.
    $('me-qr').src = '/api/v1/identity/qr.svg';
    $('me-copied').textContent = '';
    $('me-dialog').showModal();
    $('me-copy').focus();
  } catch (error) {
    showError(error);
  }
}

async function copyAddress() {
  try {
    await navigator.clipboard.writeText(state.identity.address);
    $('me-copied').textContent = 'Copied.';
  } catch {
    const range = document.createRange();
    range.selectNodeContents($('me-address'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $('me-copied').textContent = 'Selected: press Ctrl+C to copy.';
  }
}

async function openSafetyDialog() {
  const contact = state.contacts.get(state.current);
  if (!contact) return;
  const dialog = $('safety-dialog');
  dialog.dataset.contact = contact.id;
  $('safety-peer').textContent = contact.name;
  $('safety-groups').replaceChildren();
  $('safety-state').textContent = 'Computing…';
  renderSafetyState(contact);
  dialog.showModal();
  try {
    const number = await call('GET', `/contacts/${contact.id}/safety-number`);
    $('safety-groups').replaceChildren(...number.groups.map((g) => el('li', '', g)));
    $('safety-groups').dataset.digits = number.digits;
    renderSafetyState(contact);
  } catch (error) {
    $('safety-state').textContent = error.message;
  }
}

function renderSafetyState(contact) {
  $('safety-state').textContent = contact.verified
    ? `You verified ${contact.name}.` : `${contact.name} is not verified yet.`;
  $('safety-verify').hidden = contact.verified && !contact.key_changed;
}

async function verifyContact() {
  const id = $('safety-dialog').dataset.contact;
  try {
    await call('POST', `/contacts/${id}/verify`);
    await reloadList();
    const contact = state.contacts.get(id);
    if (contact) renderSafetyState(contact);
    $('safety-close').focus();
  } catch (error) {
    $('safety-state').textContent = error.message;
  }
}

async function acknowledgeKeyChange() {
  try {
    await call('POST', `/contacts/${state.current}/acknowledge-key-change`);
    await reloadList();
  } catch (error) {
    showError(error);
  }
}

async function setTimer() {
  const contact = state.current;
  const seconds = Number($('timer').value);
  try {
    await call('PUT', `/conversations/${contact}/timer`, { seconds });
    await reloadList();
  } catch (error) {
    renderHeader();
    showError(error);
  }
}

// ---------- composer ----------

function autosize() {
  const box = $('text');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

function wire() {
  $('add-button').addEventListener('click', openAddDialog);
  $('add-cancel').addEventListener('click', () => $('add-dialog').close());
  $('add-form').addEventListener('submit', addContact);
  $('add-address').addEventListener('input', nameFromLink);
  $('me-button').addEventListener('click', openMeDialog);
  $('me-close').addEventListener('click', () => $('me-dialog').close());
  $('me-copy').addEventListener('click', copyAddress);
  $('safety-button').addEventListener('click', openSafetyDialog);
  $('key-compare').addEventListener('click', openSafetyDialog);
  $('key-acknowledge').addEventListener('click', acknowledgeKeyChange);
  $('safety-close').addEventListener('click', () => $('safety-dialog').close());
  $('safety-verify').addEventListener('click', verifyContact);
  $('back-button').addEventListener('click', closeConversation);
  $('timer').addEventListener('change', setTimer);
  $('toast-close').addEventListener('click', () => { $('toast').hidden = true; });
  $('jump-button').addEventListener('click', () => {
    timeline.scrollToBottom();
    onPosition(true, false);
    $('text').focus();
  });

  initCalls({
    current: () => state.current,
    name: (contact) => state.contacts.get(contact)?.name || 'Your contact',
    toast,
    showError,
    quietError,
  });

  const box = $('text');
  box.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    }
  });
  box.addEventListener('input', autosize);
  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    sendText();
  });
  $('file-input').addEventListener('change', (event) => {
    sendFiles([...event.target.files]);
    event.target.value = '';
  });

  const chat = $('chat');
  let depth = 0;
  chat.addEventListener('dragenter', (event) => {
    if (![...event.dataTransfer.types].includes('Files')) return;
    depth += 1;
    $('drop-zone').hidden = false;
  });
  chat.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) $('drop-zone').hidden = true;
  });
  chat.addEventListener('dragover', (event) => event.preventDefault());
  chat.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    $('drop-zone').hidden = true;
    sendFiles([...event.dataTransfer.files]);
  });

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.current && !document.querySelector('dialog[open]')
      && document.body.classList.contains('chat-open') && matchMedia('(max-width: 700px)').matches) {
      closeConversation();
    }
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      markRead();
      events.retryNow();
    }
  });
  window.addEventListener('online', () => events.retryNow());

  // Remaining time of vanishing messages, once a second, for what is drawn.
  setInterval(() => {
    const now = Date.now();
    for (const node of document.querySelectorAll('.expiry[data-expires-at]')) {
      node.textContent = `vanishes in ${formatLeft(Number(node.dataset.expiresAt) - now)}`;
    }
  }, 1000);
}

const events = new Events(onEvent, onConnection);

async function main() {
  wire();
  try {
    // In parallel: a first load is one round trip, not two.
    [state.identity] = await Promise.all([call('GET', '/identity'), reloadList()]);
  } catch (error) {
    const failed = new URLSearchParams(location.search).get('login') === 'failed';
    showLogin(error.status !== 401 ? error.message
      : failed ? 'That login link was already used, or has expired.' : '');
    return;
  }
  // Logged in after all (an older session): the address bar forgets the failure.
  if (location.search) history.replaceState(null, '', '/');
  showApp();
  events.start();
  document.body.dataset.ready = 'true';
  // Time to interactive, for the benchmark: ms since navigation began.
  performance.mark('xchat-ready');
}

main();
