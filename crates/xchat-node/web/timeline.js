// A conversation's messages, windowed: every message loaded is kept in
// memory (oldest first), but only a window of at most MAX_RENDERED of them
// is in the DOM. Scrolling near an edge slides the window, loading older
// pages from the API when the window reaches the oldest message loaded.
// A 10,000-message conversation thus opens with one page and keeps a
// bounded DOM however far the user scrolls.
'use strict';

/** Most messages in the DOM at once. */
export const MAX_RENDERED = 150;
/** Messages added or dropped when the window slides. */
const STEP = 50;
/** How close to an edge (px) the window starts sliding. */
const EDGE_PX = 400;

export class Timeline {
  /**
   * `scroller` scrolls, `list` holds the message elements; `render(message)`
   * makes one element; `loadOlder(oldest)` resolves to the page before the
   * message `oldest` (newest first), of at most `pageSize` messages;
   * `onPosition(atBottom, missed)` says whether the newest message is in
   * view, and whether one arrived out of view.
   */
  constructor(scroller, list, render, loadOlder, onStatus, pageSize, onPosition) {
    this.pageSize = pageSize;
    this.onPosition = onPosition;
    this.scroller = scroller;
    this.list = list;
    this.render = render;
    this.loadOlder = loadOlder;
    this.onStatus = onStatus;
    this.items = [];
    this.start = 0;
    this.end = 0;
    this.complete = false;
    this.loading = false;
    this.generation = 0;
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
  }

  /** Shows a new conversation: `page` is its newest messages, newest first. */
  reset(page, complete) {
    this.generation += 1;
    this.items = page.slice().reverse();
    this.complete = complete;
    this.loading = false;
    this.end = this.items.length;
    this.start = Math.max(0, this.end - STEP * 2);
    this.list.replaceChildren(...this.items.slice(this.start, this.end).map((m) => this.render(m)));
    this.status();
    this.scrollToBottom();
  }

  clear() {
    this.generation += 1;
    this.items = [];
    this.start = this.end = 0;
    this.list.replaceChildren();
  }

  /** Whether the newest message is in the window and scrolled into view. */
  atBottom() {
    const s = this.scroller;
    return this.end === this.items.length && s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  scrollToBottom() {
    if (this.end < this.items.length) {
      this.end = this.items.length;
      this.start = Math.max(0, this.end - STEP * 2);
      this.list.replaceChildren(...this.items.slice(this.start, this.end).map((m) => this.render(m)));
    }
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  index(id) {
    for (let i = this.items.length - 1; i >= 0; i -= 1) {
      if (this.items[i].id === id) return i;
    }
    return -1;
  }

  get(id) {
    const i = this.index(id);
    return i < 0 ? null : this.items[i];
  }

  /** The messages in memory, oldest first (read-only). */
  loaded() {
    return this.items;
  }

  /** Adds a new message at the end, or updates a known one. */
  upsert(message) {
    const i = this.index(message.id);
    if (i >= 0) {
      this.items[i] = message;
      this.rerender(message.id);
      return;
    }
    const follow = this.atBottom();
    const showing = this.end === this.items.length;
    this.items.push(message);
    if (!follow) this.onPosition(false, true);
    if (!showing) return;
    this.list.append(this.render(message));
    this.end = this.items.length;
    if (follow) {
      this.trimTop();
      this.scroller.scrollTop = this.scroller.scrollHeight;
    } else {
      this.keepAnchor(() => this.trimTop());
    }
  }

  /** Draws a message again after its state (or its file's) changed. */
  rerender(id) {
    const i = this.index(id);
    if (i < this.start || i >= this.end) return;
    const old = this.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (old) old.replaceWith(this.render(this.items[i]));
  }

  remove(id) {
    const i = this.index(id);
    if (i < 0) return;
    this.items.splice(i, 1);
    if (i < this.start) this.start -= 1;
    if (i < this.end) this.end -= 1;
    const node = this.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (node) node.remove();
  }

  trimTop() {
    while (this.end - this.start > MAX_RENDERED) {
      this.list.firstElementChild?.remove();
      this.start += 1;
    }
  }

  trimBottom() {
    while (this.end - this.start > MAX_RENDERED) {
      this.list.lastElementChild?.remove();
      this.end -= 1;
    }
  }

  /** Runs `change` keeping the first visible message where it is on screen. */
  keepAnchor(change) {
    const top = this.scroller.scrollTop;
    let anchor = null;
    for (const child of this.list.children) {
      if (child.offsetTop + child.offsetHeight > top) {
        anchor = child;
        break;
      }
    }
    const before = anchor ? anchor.offsetTop : 0;
    change();
    if (anchor && anchor.isConnected) {
      this.scroller.scrollTop = top + (anchor.offsetTop - before);
    }
  }

  onScroll() {
    const s = this.scroller;
    const bottom = this.atBottom();
    if (bottom !== this.wasAtBottom) {
      this.wasAtBottom = bottom;
      this.onPosition(bottom, false);
    }
    if (s.scrollTop < EDGE_PX) {
      if (this.start > 0) {
        this.slideUp();
      } else if (!this.complete && !this.loading) {
        this.fetchOlder();
      }
    } else if (s.scrollHeight - s.scrollTop - s.clientHeight < EDGE_PX && this.end < this.items.length) {
      this.slideDown();
    }
  }

  slideUp() {
    const from = Math.max(0, this.start - STEP);
    const nodes = this.items.slice(from, this.start).map((m) => this.render(m));
    this.keepAnchor(() => {
      this.list.prepend(...nodes);
      this.start = from;
      this.trimBottom();
    });
    this.status();
  }

  slideDown() {
    const to = Math.min(this.items.length, this.end + STEP);
    const nodes = this.items.slice(this.end, to).map((m) => this.render(m));
    this.keepAnchor(() => {
      this.list.append(...nodes);
      this.end = to;
      this.trimTop();
    });
  }

  async fetchOlder() {
    if (this.items.length === 0) {
      this.complete = true;
      return;
    }
    const generation = this.generation;
    this.loading = true;
    this.status();
    let page;
    try {
      page = await this.loadOlder(this.items[0]);
    } catch {
      // The caller showed why; scrolling up again retries.
      this.loading = false;
      this.status();
      return;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    const known = new Set(this.items.map((m) => m.id));
    const older = page.filter((m) => !known.has(m.id)).reverse();
    // A short page is the last one: no request just to learn there is none.
    if (page.length < this.pageSize || older.length === 0) this.complete = true;
    this.items.unshift(...older);
    this.start += older.length;
    this.end += older.length;
    this.status();
    if (older.length > 0) this.slideUp();
  }

  status() {
    this.onStatus(this.loading ? 'Loading older messages…'
      : this.complete && this.start === 0 ? (this.items.length ? 'The beginning of the conversation.' : '')
        : '');
  }
}
