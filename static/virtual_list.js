// @ts-check
/// <reference lib="dom" />
/**
 * A virtualized list: of a long array of items only those in and near the viewport are in
 * the DOM (two spacers stand in for the rest), so the page stays fast and its node count
 * bounded however long the run. Heights are measured as items are drawn and estimated (the
 * average so far) for the others. The item at the top of the viewport stays in place when
 * items are added, measured or paged in above it.
 *
 * @example
 * ```js
 * import { VirtualList } from "./virtual_list.js";
 * const list = new VirtualList(scroller, ol, {
 *   render: (item) => { const li = document.createElement("li"); li.textContent = item.text; return li; },
 *   version: (item) => item.rev,
 * });
 * list.setItems(items);
 * list.scrollToBottom();
 * ```
 *
 * @module
 */

/**
 * @template T
 * @typedef {object} VirtualListOptions
 * @property {(item: T) => HTMLElement} render builds an item's element
 * @property {(item: T) => string | number} version redraw an element when this changes
 * @property {(item: T) => string} [key] identity (default `item.key`)
 * @property {number} [overscan] pixels drawn beyond each edge of the viewport (default 800)
 * @property {number} [estimate] height assumed before any item was measured (default 44)
 * @property {() => void} [onScroll] called after every redraw caused by scrolling
 */

/** @typedef {{key: string, delta: number}[] | null} Anchor */

/** How many items at the top of the viewport can anchor it. */
const ANCHOR_CANDIDATES = 8;

/** @template T */
export class VirtualList {
  /** @type {HTMLElement} */
  #scroller;
  /** @type {HTMLElement} */
  #list;
  /** @type {Required<Omit<VirtualListOptions<T>, "onScroll">> & VirtualListOptions<T>} */
  #options;
  /** @type {T[]} */
  #items = [];
  /** @type {Map<string, number>} */
  #index = new Map();
  /** @type {Map<string, number>} */
  #heights = new Map();
  #measuredTotal = 0;
  /** @type {Float64Array} */
  #offsets = new Float64Array(1);
  #offsetsValid = false;
  /** @type {Map<string, {node: HTMLElement, version: string | number}>} */
  #drawn = new Map();
  /** @type {HTMLElement} */
  #topSpacer;
  /** @type {HTMLElement} */
  #bottomSpacer;
  #frame = 0;
  #stickToBottom = false;

  /**
   * @param {HTMLElement} scroller the scrolling element
   * @param {HTMLElement} list the element that holds the items (inside `scroller`)
   * @param {VirtualListOptions<T>} options
   */
  constructor(scroller, list, options) {
    this.#scroller = scroller;
    this.#list = list;
    this.#options = {
      key: (item) => /** @type {any} */ (item).key,
      overscan: 800,
      estimate: 44,
      ...options,
    };
    this.#topSpacer = spacer();
    this.#bottomSpacer = spacer();
    list.replaceChildren(this.#topSpacer, this.#bottomSpacer);
    scroller.style.overflowAnchor = "none"; // this list keeps its own anchor
    scroller.addEventListener("scroll", () => {
      // Scrolling to the end follows it again; scrolling away stops following at once,
      // before the next redraw could pull the viewport back down.
      this.#stickToBottom = this.atBottom;
      this.#schedule(true);
    });
    new ResizeObserver(() => this.#schedule(false)).observe(scroller);
  }

  /** The items, in order. */
  get items() {
    return this.#items;
  }

  /** How many item elements are in the DOM now. */
  get drawnCount() {
    return this.#drawn.size;
  }

  /** Whether the viewport shows the end of the list. */
  get atBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 24;
  }

  /**
   * Replaces the items (the same array grown at its end is cheap) and redraws, keeping the
   * top visible item where it is, or the end in view after {@link scrollToBottom}.
   *
   * @param {T[]} items
   */
  setItems(items) {
    const anchor = this.#anchor();
    const key = this.#options.key;
    if (items !== this.#items || items.length < this.#index.size) this.#index.clear();
    for (let i = this.#index.size; i < items.length; i++) this.#index.set(key(items[i]), i);
    this.#items = items;
    this.#offsetsValid = false;
    this.#draw(anchor);
  }

  /** Redraws the elements whose version changed. */
  refresh() {
    this.#draw(this.#anchor());
  }

  /** Shows the end of the list, and keeps it in view through later changes until a scroll. */
  scrollToBottom() {
    this.#stickToBottom = true;
    this.#draw(null);
  }

  /** Whether the list keeps the end in view (until the user scrolls away from it). */
  get following() {
    return this.#stickToBottom;
  }

  /** @param {boolean} byScroll */
  #schedule(byScroll) {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#draw(this.#anchor());
      if (byScroll) this.#options.onScroll?.();
    });
  }

  /**
   * The items at the top of the viewport and their offsets from it: the first of them that
   * is still there after a change is put back in place (several, as the very first item may
   * be replaced when older items are paged in).
   *
   * @returns {Anchor}
   */
  #anchor() {
    if (this.#stickToBottom || this.#items.length === 0) return null;
    this.#ensureOffsets();
    const top = this.#scroller.scrollTop;
    const first = Math.min(this.#find(top), this.#items.length - 1);
    const last = Math.min(first + ANCHOR_CANDIDATES, this.#items.length);
    const anchor = [];
    for (let i = first; i < last; i++) {
      anchor.push({ key: this.#options.key(this.#items[i]), delta: top - this.#offsets[i] });
    }
    return anchor;
  }

  /** @param {Anchor} anchor */
  #draw(anchor) {
    // Measuring can change heights above the viewport; two passes settle it.
    for (let pass = 0; pass < 3; pass++) {
      this.#ensureOffsets();
      this.#restore(anchor);
      if (!this.#drawRange()) break;
    }
    this.#restore(anchor);
  }

  /** @param {Anchor} anchor */
  #restore(anchor) {
    const s = this.#scroller;
    if (this.#stickToBottom) {
      s.scrollTop = s.scrollHeight;
      return;
    }
    for (const { key, delta } of anchor ?? []) {
      const i = this.#index.get(key);
      if (i === undefined) continue;
      const wanted = this.#offsets[i] + delta;
      if (Math.abs(s.scrollTop - wanted) > 1) s.scrollTop = wanted;
      return;
    }
  }

  /** Draws the items near the viewport. @returns {boolean} whether a height changed */
  #drawRange() {
    const { overscan, key, render, version } = this.#options;
    const top = Math.max(0, this.#scroller.scrollTop - overscan);
    const bottom = this.#scroller.scrollTop + this.#scroller.clientHeight + overscan;
    const start = this.#find(top);
    const end = Math.min(this.#items.length, this.#find(bottom) + 1);
    /** @type {HTMLElement[]} */
    const nodes = [];
    const keep = new Set();
    for (let i = start; i < end; i++) {
      const item = this.#items[i];
      const k = key(item);
      const v = version(item);
      let drawn = this.#drawn.get(k);
      if (!drawn || drawn.version !== v) {
        drawn = { node: render(item), version: v };
        this.#drawn.set(k, drawn);
      }
      keep.add(k);
      nodes.push(drawn.node);
    }
    for (const k of [...this.#drawn.keys()]) if (!keep.has(k)) this.#drawn.delete(k);
    this.#placeNodes(nodes);
    this.#topSpacer.style.height = `${this.#offsets[start]}px`;
    this.#bottomSpacer.style.height = `${this.#offsets[this.#items.length] - this.#offsets[end]}px`;
    return this.#measure(start, end);
  }

  /** @param {HTMLElement[]} nodes */
  #placeNodes(nodes) {
    const current = this.#list.children;
    const same = current.length === nodes.length + 2 &&
      nodes.every((node, i) => current[i + 1] === node);
    if (!same) this.#list.replaceChildren(this.#topSpacer, ...nodes, this.#bottomSpacer);
  }

  /**
   * @param {number} start
   * @param {number} end
   * @returns {boolean} whether a height changed
   */
  #measure(start, end) {
    const { key } = this.#options;
    let changed = false;
    for (let i = start; i < end; i++) {
      const k = key(this.#items[i]);
      const height = this.#drawn.get(k)?.node.offsetHeight ?? 0;
      const before = this.#heights.get(k);
      if (before === height) continue;
      this.#measuredTotal += height - (before ?? 0);
      this.#heights.set(k, height);
      changed = true;
    }
    if (changed) this.#offsetsValid = false;
    return changed;
  }

  #ensureOffsets() {
    if (this.#offsetsValid) return;
    const n = this.#items.length;
    if (this.#offsets.length < n + 1) this.#offsets = new Float64Array(Math.max(n + 1, 1024) * 2);
    const guess = this.#heights.size > 0
      ? this.#measuredTotal / this.#heights.size
      : this.#options.estimate;
    const key = this.#options.key;
    this.#offsets[0] = 0;
    for (let i = 0; i < n; i++) {
      this.#offsets[i + 1] = this.#offsets[i] + (this.#heights.get(key(this.#items[i])) ?? guess);
    }
    this.#offsetsValid = true;
  }

  /**
   * The index of the item at vertical position `y` (binary search on the offsets).
   *
   * @param {number} y
   * @returns {number}
   */
  #find(y) {
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#offsets[mid + 1] <= y) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** @returns {HTMLElement} */
function spacer() {
  const node = document.createElement("li");
  node.className = "spacer";
  node.setAttribute("aria-hidden", "true");
  return node;
}
