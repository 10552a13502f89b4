// The node's local API (docs/api.md), as the page uses it: JSON calls whose
// failures become ApiError with the API's stable code, uploads with
// progress, and the events WebSocket that reconnects by itself.
'use strict';

/** A failed call: `status` 0 means the node could not be reached at all. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Worth trying again later: the node was away or failing, not the request. */
  get transient() {
    return this.status === 0 || this.status >= 500;
  }
}

const UNREACHABLE = 'The node cannot be reached. Is “xchat up” still running?';

async function problem(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a proxy or a dying node. The status says enough.
  }
  const error = body && body.error;
  return new ApiError(
    response.status,
    (error && error.code) || `http_${response.status}`,
    (error && error.message) || `The node answered ${response.status}.`,
  );
}

/** `method` on `/api/v1${path}`; resolves to the JSON answer, or null for 202 and 204. */
export async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'unreachable', UNREACHABLE);
  }
  if (!response.ok) throw await problem(response);
  // 202 (a call signal on its way) and 204 have no body.
  if (response.status === 204 || response.status === 202) return null;
  return response.json();
}

/**
 * Sends `file` to `contact` as the request body (the node streams it to
 * disk). `onProgress(sent, total)` follows the upload. Resolves to
 * `{message, file}`; `abort()` on the returned handle stops it.
 */
export function upload(contact, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    const name = encodeURIComponent(file.name || 'file');
    xhr.open('POST', `/api/v1/conversations/${contact}/files?name=${name}`);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // Handled below by the status.
      }
      if (xhr.status === 201 && body) {
        resolve(body);
      } else {
        const error = body && body.error;
        reject(new ApiError(xhr.status, (error && error.code) || `http_${xhr.status}`,
          (error && error.message) || `The node answered ${xhr.status}.`));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'unreachable', UNREACHABLE)));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'Upload cancelled.')));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

/** Delays between reconnection attempts, in ms; the last one repeats. */
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];

/**
 * The events WebSocket. `onEvent(event)` gets each event; `onState(state)`
 * gets 'open' (after every (re)connection: events may have been missed
 * meanwhile, so the caller reloads), 'closed' and 'unauthorized'.
 */
export class Events {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
  }

  start() {
    clearTimeout(this.timer);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/events`);
    this.socket = socket;
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      this.attempt = 0;
      this.onState('open');
    });
    socket.addEventListener('message', (frame) => {
      let event;
      try {
        event = JSON.parse(frame.data);
      } catch {
        return;
      }
      this.onEvent(event);
    });
    socket.addEventListener('close', async () => {
      if (this.socket !== socket) return;
      this.onState('closed');
      // A refused upgrade shows no status to scripts: ask a plain route
      // whether the session is the reason, so the page can say so.
      if (!opened) {
        try {
          await call('GET', '/identity');
        } catch (error) {
          if (error.status === 401) {
            this.onState('unauthorized');
            return;
          }
        }
      }
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.timer = setTimeout(() => this.start(), delay);
    });
  }

  /** Tries at once (the user asked, or the page became visible). */
  retryNow() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return;
    this.attempt = 0;
    this.start();
  }
}
