// The posts table: posts loaded progressively through the cursor in the order the server sorts
// them (up to a window ahead of what is shown), paged in the page, with a selection that survives
// sorting, paging, loading and batch actions, and holds only rows of the list shown.

import { ACTION_WORDS, MOVING } from "./action_words.js";
import { TOKEN_FIELD } from "./api.js";
import * as fmt from "./format.js";

export const PAGE_SIZE = 16;
const FIRST_LIMIT = 64; // a quick first paint, then large pages
const NEXT_LIMIT = 512;
// The posts held ahead of what the table shows: past it, more load as the person pages on, so
// the page's memory does not grow with the account. Every column is sorted by the server (its
// header's `data-sort` is GET /api/pmd/posts `sort`), so no order needs every post loaded.
const WINDOW = 2048;

// The host's NoDerivatives licenses (its rule L5: never remixable).
const ND_LICENSES = new Set(["CC-BY-ND-4.0", "CC-BY-NC-ND-4.0"]);

// How the page applies an action's change to a loaded row itself (`applied`), as the server
// does; a delete or a restore (MOVING) takes the rows out of the list. The stream's event of this
// page's own batch then changes nothing shown; that of an action not here (tags, which the server
// normalises) reloads the rows.
const APPLY = {
  hide: (p, { asModerator }) => { p[asModerator ? "hidden_by_mod" : "hidden_by_user"] = true; },
  unhide: (p, { asModerator }) => { p[asModerator ? "hidden_by_mod" : "hidden_by_user"] = false; },
  license: (p, { license }) => {
    p.license_identifier = license;
    // A NoDerivatives license turns remixes off on the server, in the same statement.
    if (ND_LICENSES.has(license)) p.remixable = false;
  },
  remixable: (p, { remixable }) => { p.remixable = remixable; },
};
const appliedHere = (action) => MOVING.includes(action) || Object.hasOwn(APPLY, action);
// Actions that change posts in place: naming only posts that are not loaded, with no filter,
// they change nothing the list shows (a delete, a restore or an undo may add a post to it).
const inPlace = (action) => Object.hasOwn(ACTION_WORDS, action) && !MOVING.includes(action);
const OWN_BATCH_MS = 60_000;

const nativeFile = (post) => post.files.find((f) => f.is_native) ?? post.files[0] ?? null;
// The orders whose first click goes A to Z; every other column's goes from the most.
const ASCENDING_FIRST = new Set(["title", "license", "format"]);

export class PostTable {
  // `describeFilter(filter)`: the filter in words, for the list that it leaves empty.
  constructor(api, { onChange, onError, describeFilter, onTarget = () => {} }) {
    this.api = api;
    this.onChange = onChange; // selection, page or contents changed
    this.onTarget = onTarget; // whose posts these are ({public_sqid, handle}), from each page
    this.onError = onError;
    this.describeFilter = describeFilter;
    this.licenseNames = new Map(); // identifier → the license's full name, for its cells' tooltip
    this.view = "live";
    this.posts = []; // in server order: newest (or most recently deleted) first
    this.total = 0;
    // The server's digest of the whole matching set (first page): "select all N matching"
    // sends it, so the action runs on the very posts the person saw, or not at all.
    this.digest = null;
    this.done = false;
    this.selected = new Set();
    // The filter the list shows (the keys of GET /api/pmd/posts), and whether the selection is
    // "everything that matches it", however much of it is loaded: actions then go by filter.
    this.filter = {};
    this.allMatching = false;
    this.sort = { key: "created_at", dir: "descending" };
    this.order = "created_at:desc"; // the server's order the loaded posts came in
    this.wantAll = false; // load past the window: the last page was asked for
    this.running = null; // the generation whose loading is under way
    this.page = 0;
    this.generation = 0; // a view switch abandons the loading still under way
    this.version = 0; // bumped when rows may show other data: the table is rebuilt then
    this.own = []; // this page's batches lately ({action, ids, at}), told from others' changes
    this.refreshing = null; // a reload in place under way, and whether another must follow it
    this.refreshAgain = false;
    this.inFlight = new Set(); // the list requests under way (settle() waits for them)
    this.shown = ""; // what the table body shows: version and row ids
    this.el = {
      body: document.getElementById("posts-body"),
      empty: document.getElementById("empty"),
      emptyText: document.getElementById("empty-text"),
      emptyReset: document.getElementById("empty-reset"),
      loading: document.getElementById("loading"),
      retry: document.getElementById("load-retry"),
      info: document.getElementById("page-info"),
      input: document.getElementById("page-input"),
      heads: [...document.querySelectorAll("#posts-table th[data-sort]")],
    };
    this.el.retry.addEventListener("click", () => this.loadRest());
    for (const th of this.el.heads) {
      th.querySelector("button").addEventListener("click", () => this.sortBy(th.dataset.sort));
    }
    this.el.body.addEventListener("change", (ev) => {
      const box = ev.target.closest("input[data-id]");
      if (!box) return;
      this.allMatching = false; // a hand-picked selection again
      const id = Number(box.dataset.id);
      if (box.checked) this.selected.add(id);
      else this.selected.delete(id);
      box.closest("tr").classList.toggle("selected", box.checked);
      this.onChange();
    });
  }

  get pageCount() {
    const rows = this.done ? this.posts.length : Math.max(this.total, this.posts.length);
    return Math.max(1, Math.ceil(rows / PAGE_SIZE));
  }
  get pageRows() { return this.posts.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE); }
  byId(id) { return this.posts.find((p) => p.id === id); }
  titleOf(id) { return this.byId(id)?.title; }

  // The full names of the licenses, once the page has them (GET /api/pmd/licenses).
  setLicenseNames(names) {
    this.licenseNames = names;
    this.version += 1; // the rows are drawn again with them
    this.render();
  }

  // Starts the view over: every post through the cursor, rendering as pages arrive.
  // `keep`: ids to select again once everything is loaded (what a failed batch left).
  // Nothing else is carried over: a selection the person cannot see would be acted on unseen.
  load(view = this.view, keep = []) {
    this.keep = [...keep];
    this.view = view;
    this.selected.clear();
    this.allMatching = false;
    return this.restart();
  }

  // The server's order for the current sort.
  serverOrder() {
    const { key, dir } = this.sort;
    return `${key}:${dir === "ascending" ? "asc" : "desc"}`;
  }

  // Loads the view again from its first page, in the server's order; the selection stays.
  restart() {
    this.generation += 1;
    this.order = this.serverOrder();
    this.wantAll = false;
    this.posts = [];
    this.total = 0;
    this.digest = null;
    this.cursor = null;
    this.done = false;
    this.failed = false;
    this.page = 0;
    this.resort();
    this.render();
    return this.loadRest();
  }

  // Whether the loading goes on past this page: everything wanted, or the rows of the page
  // shown (and the window ahead of it) not all here yet.
  wanted(arriving = 0) {
    const held = this.posts.length + arriving;
    return this.wantAll || held < Math.max(WINDOW, (this.page + 2) * PAGE_SIZE);
  }

  // Goes on from the last cursor (also after a failed request: "Retry"). The next request
  // leaves as soon as a page's cursor is known, before that page is merged and drawn, so the
  // page's own work overlaps the network instead of adding to it.
  async loadRest() {
    const generation = this.generation;
    if (this.running === generation || this.done) return;
    this.running = generation;
    try {
      await this.walk(generation);
    } finally {
      if (this.running === generation) {
        this.running = null;
        this.render(); // what stopped the loading is said
      }
    }
  }

  // One page of the list as it is shown now (view, filter, order), counted as in flight.
  fetchPage(cursor, limit) {
    const [sort, order] = this.order.split(":");
    const request = this.api.get("/api/pmd/posts", {
      ...this.filter, limit, cursor, deleted: this.view === "deleted" ? "true" : undefined,
      ...(this.order === "created_at:desc" ? {} : { sort, order }),
    });
    const settled = request.then(() => {}, () => {});
    this.inFlight.add(settled);
    settled.then(() => this.inFlight.delete(settled));
    return request;
  }

  // Abandons the loading under way (no further request leaves for it) and waits for its
  // requests in flight: a new filter's first request then goes alone, never beside them.
  async settle() {
    this.generation += 1;
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  async walk(generation) {
    this.failed = false;
    this.render();
    const fetchPage = (cursor, limit) => this.fetchPage(cursor, limit);
    let pending = fetchPage(this.cursor, this.posts.length ? NEXT_LIMIT : FIRST_LIMIT);
    for (;;) {
      let page;
      try {
        page = await pending;
      } catch (error) {
        if (generation !== this.generation) return;
        // A refused token is not a loading failure that Retry could mend: a new token is.
        this.failed = error.status === 401 ? "token" : true;
        this.render();
        this.onError(error);
        return;
      }
      if (generation !== this.generation) return;
      if (page.target) this.onTarget(page.target);
      this.cursor = page.next_cursor;
      this.done = this.cursor === null;
      if (page.match_digest) this.digest = page.match_digest;
      const more = !this.done && this.wanted(page.items.length);
      if (more) {
        pending = fetchPage(this.cursor, NEXT_LIMIT);
        pending.catch(() => {}); // handled when awaited; a view switch may never await it
      }
      this.posts.push(...page.items);
      // "All matching" takes in the posts that load after it was chosen.
      if (this.allMatching) for (const p of page.items) this.selected.add(p.id);
      // Once all are here the rows are the truth: a batch may have changed the count since
      // the server counted.
      this.total = this.done ? this.posts.length : page.total_count;
      this.render();
      if (this.done) {
        if (this.keep.length) this.reselect(this.keep);
        this.keep = [];
        return;
      }
      if (!more) return; // the window is full: paging on loads more
    }
  }

  // Every order is asked of the server: only what is shown (and a window) loads.
  sortTo(key, dir) {
    this.sort = { key, dir };
    this.page = 0;
    if (this.serverOrder() !== this.order) {
      this.restart();
      return;
    }
    this.render();
  }

  sortBy(key) {
    const dir = this.sort.key === key && this.sort.dir === "ascending" ? "descending" : "ascending";
    this.sortTo(key, key === this.sort.key ? dir : ASCENDING_FIRST.has(key) ? "ascending" : "descending");
  }

  // The rows may show other data: the table is drawn again. The server's order is kept as it
  // came (a row an action changed stays where it is until the list is loaded again).
  resort() {
    this.version += 1;
    this.page = Math.min(this.page, this.pageCount - 1);
  }

  goTo(page) {
    this.page = Math.max(0, Math.min(this.pageCount - 1, page));
    if (this.page === this.pageCount - 1) this.wantAll = true; // the last page: the walk's end
    if (!this.done && this.wanted()) this.loadRest();
    this.render();
  }

  reselect(ids) {
    const loaded = new Set(this.posts.map((p) => p.id));
    for (const id of ids) if (loaded.has(id)) this.selected.add(id);
    this.render();
  }

  selectPage() { for (const p of this.pageRows) this.selected.add(p.id); this.render(); }
  selectLoaded() { for (const p of this.posts) this.selected.add(p.id); this.render(); }
  // Every post the filter matches, loaded or not: the count is the server's.
  selectMatching() {
    this.selectLoaded();
    this.allMatching = true;
    this.render();
  }
  clearSelection() { this.selected.clear(); this.allMatching = false; this.render(); }
  deselect(ids) { for (const id of ids) this.selected.delete(id); this.render(); }

  // What a successful batch did, applied to the rows already loaded (no reload needed). The
  // posts stay selected (a download of the same posts is then one click), except those a delete
  // or restore moved to the other view: they leave the selection, selected nowhere.
  applied(action, ids, { asModerator = false, license = null, remixable = null } = {}) {
    const set = new Set(ids);
    const now = Date.now();
    this.own = this.own.filter((b) => now - b.at < OWN_BATCH_MS);
    this.own.push({ action, ids: set, at: now });
    if (MOVING.includes(action)) {
      this.posts = this.posts.filter((p) => !set.has(p.id));
      this.total -= ids.length;
      for (const id of ids) this.selected.delete(id);
    }
    for (const p of this.posts) {
      if (set.has(p.id)) APPLY[action]?.(p, { asModerator, license, remixable });
    }
    this.resort();
    this.render();
  }

  // Posts changed outside this page's own batches (another tab or device, a moderator, an
  // undo) or added (action `new`): the stream's `posts_changed`, or null after a gap in the
  // stream. The rows are fetched again, keeping the selection and the page.
  changed(change) {
    const ids = change?.post_ids;
    if (ids) {
      const mine = this.own.find((b) => b.action === change.action &&
        appliedHere(b.action) && ids.every((id) => b.ids.has(id)));
      if (mine) return; // applied already, as the server did
      const unfiltered = Object.keys(this.filter).length === 0;
      if (unfiltered && inPlace(change.action) && !ids.some((id) => this.byId(id))) return;
    }
    this.refresh();
  }

  // One reload in place at a time; changes that come meanwhile make one more after it.
  refresh() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = this.reloadInPlace().finally(() => {
      this.refreshing = null;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.refresh();
      }
    });
  }

  // The rows held now fetched again in the same order and swapped in whole once here, so the
  // rows never empty meanwhile; a view switch or a new filter (a new generation) abandons it.
  async reloadInPlace() {
    if (this.running === this.generation) {
      await this.load(this.view, [...this.selected]); // still loading: start over
      return;
    }
    const generation = this.generation;
    const want = Math.max(this.posts.length, FIRST_LIMIT);
    const posts = [];
    let cursor = null;
    let digest = null;
    let total = this.total;
    do {
      let page;
      try {
        page = await this.fetchPage(cursor, NEXT_LIMIT);
      } catch {
        return; // the rows stay as they were; the next change or a reload fetches them
      }
      if (generation !== this.generation) return;
      if (page.match_digest) digest = page.match_digest;
      if (cursor === null) total = page.total_count;
      posts.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && posts.length < want);
    this.posts = posts;
    this.cursor = cursor;
    this.done = cursor === null;
    this.total = this.done ? posts.length : total;
    if (digest) this.digest = digest;
    // A selected post no longer among the rows (gone from the view or the filter, or pushed
    // past the loaded window) is unselected: the selection is only what the list shows.
    const here = new Set(posts.map((p) => p.id));
    for (const id of [...this.selected]) if (!here.has(id)) this.selected.delete(id);
    this.resort();
    this.render();
  }

  render() {
    const { body, empty, loading, info, input, heads } = this.el;
    for (const th of heads) {
      th.setAttribute("aria-sort", th.dataset.sort === this.sort.key ? this.sort.dir : "none");
    }
    const menu = document.getElementById("sort-select");
    const choice = `${this.sort.key}:${this.sort.dir}`;
    if ([...menu.options].some((o) => o.value === choice)) menu.value = choice;
    const rows = this.pageRows;
    const shown = `${this.version}:${rows.map((p) => p.id).join(",")}`;
    if (shown === this.shown) {
      // Same rows (more posts arrived further down, or the selection changed): only ticks.
      for (const box of body.querySelectorAll("input[data-id]")) {
        box.checked = this.selected.has(Number(box.dataset.id));
        box.closest("tr").classList.toggle("selected", box.checked);
      }
    } else {
      // The focused checkbox keeps the focus through a rebuild.
      const focused = document.activeElement?.closest?.("#posts-body input[data-id]")?.dataset.id;
      body.replaceChildren(...rows.map((p) => this.row(p)));
      if (focused) body.querySelector(`input[data-id="${focused}"]`)?.focus();
      this.shown = shown;
    }
    const none = this.done && this.posts.length === 0;
    empty.hidden = !none;
    this.el.emptyText.textContent = this.emptyText();
    // With a filter, the list is empty because of it: one click shows every post again.
    this.el.emptyReset.hidden = !Object.keys(this.filter).length;
    const of = this.total ? fmt.count(this.total) : "?";
    if (this.done) loading.textContent = none ? "" : `All ${fmt.plural(this.total, "post")} loaded.`;
    else if (this.failed === "token") {
      loading.textContent = (this.posts.length
        ? `Loading stopped after ${fmt.count(this.posts.length)} of ${of} posts: `
        : "Your posts were not loaded: ") +
        `the access token was not accepted. Sign in on the site again and reopen this page, or ` +
        `paste a new token into ${TOKEN_FIELD}.`;
    } else if (this.failed) {
      loading.textContent = `Loading stopped after ${fmt.count(this.posts.length)} of ${of} posts.`;
    } else if (this.running !== this.generation && this.posts.length) {
      loading.textContent = `${fmt.count(this.posts.length)} of ${of} posts loaded; more load as you page on.`;
    } else loading.textContent = `Loading more… ${fmt.count(this.posts.length)} of ${of}`;
    loading.classList.toggle("busy", !this.done && !this.failed && this.running === this.generation);
    this.el.retry.hidden = !this.failed || this.failed === "token";
    info.textContent = `Page ${this.page + 1} of ${this.pageCount}`;
    input.max = String(this.pageCount);
    input.value = String(this.page + 1);
    const atStart = this.page === 0;
    const atEnd = this.page >= this.pageCount - 1;
    const active = document.activeElement;
    for (const [id, off, instead] of [
      ["page-first", atStart, "page-next"], ["page-prev", atStart, "page-next"],
      ["page-next", atEnd, "page-prev"], ["page-last", atEnd, "page-prev"],
    ]) {
      const button = document.getElementById(id);
      button.disabled = off;
      // A disabled button drops the focus to <body>; hand it to one that still works.
      if (off && active === button) document.getElementById(instead).focus();
    }
    this.onChange();
  }

  // Why the list is empty: the filter (named), the trash, or no posts at all.
  emptyText() {
    const deleted = this.view === "deleted";
    if (Object.keys(this.filter).length) {
      const what = deleted ? "No deleted posts match" : "No posts match";
      return `${what} these filters (${this.describeFilter(this.filter)}).`;
    }
    return deleted
      ? `Nothing was deleted in the last ${fmt.RESTORE_WINDOW_DAYS} days.`
      : "You have no artworks yet. Posts you upload appear here.";
  }

  row(p) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(p.id);
    const chosen = this.selected.has(p.id);
    tr.classList.toggle("selected", chosen);
    const file = nativeFile(p);
    const license = cell("license", p.license_identifier || "—", "license");
    const name = this.licenseNames.get(p.license_identifier);
    if (name) license.title = name;
    const cells = [
      cell("check", checkbox(p, chosen)),
      cell("thumb", thumbnail(p)),
      cell("title", titleBlock(p, this.view, file)),
      cell("date", time(p.created_at)),
      cell("file", fileBlock(file, p.layers_bytes), "file_bytes"),
      cell("num", fmt.count(p.reaction_count), "reaction_count"),
      cell("num", fmt.count(p.comment_count), "comment_count"),
      cell("num", fmt.count(p.view_count), "view_count"),
      license,
      cell("remix", p.remixable ? "Yes" : "No", "remixable"),
      cell(p.hidden_by_mod || p.hidden_by_user ? "hidden is-hidden" : "hidden",
        p.hidden_by_mod ? "By moderator" : p.hidden_by_user ? "Hidden" : "—"),
    ];
    tr.append(...cells);
    return tr;
  }
}

// `col`: a column that folds into the title's cell where the table is narrow (styles.css).
function cell(cls, content, col = null) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (col) td.dataset.col = col;
  if (typeof content === "string") td.textContent = content;
  else td.append(content);
  return td;
}

function checkbox(p, checked) {
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = checked;
  box.dataset.id = String(p.id);
  box.setAttribute("aria-label", `Select “${p.title}”`);
  return box;
}

function thumbnail(p) {
  if (!p.art_url) return document.createTextNode("");
  const img = document.createElement("img");
  img.src = p.art_url;
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  img.width = 40;
  img.height = 40;
  return img;
}

function titleBlock(p, view, file) {
  const frag = document.createDocumentFragment();
  const span = document.createElement("span");
  span.className = "title-text";
  span.textContent = p.title;
  frag.append(span);
  // On a phone the date and hidden state leave their columns for this line, under the title,
  // which then has the row's width to show whole (styles.css).
  const meta = document.createElement("small");
  meta.className = "line meta";
  meta.append("Uploaded ", time(p.created_at));
  if (p.hidden_by_mod || p.hidden_by_user) {
    const state = document.createElement("span");
    state.className = "is-hidden";
    state.textContent = p.hidden_by_mod ? "Hidden by moderator" : "Hidden";
    meta.append(" · ", state);
  }
  frag.append(meta);
  if (view === "deleted" && p.deleted_by_user_date) {
    const note = document.createElement("small");
    const until = new Date(new Date(p.deleted_by_user_date).getTime() +
      fmt.RESTORE_WINDOW_DAYS * 86400e3);
    note.className = "line days-left";
    note.textContent = `Deleted ${fmt.ago(p.deleted_by_user_date)} · ` +
      `${fmt.plural(fmt.daysLeft(p.deleted_by_user_date), "day")} left`;
    note.title = `Can be restored until ${fmt.dateTime(until)}`;
    frag.append(note);
  }
  if (view === "deleted" && p.restorable === false) frag.append(whyNotRestorable(p));
  if (p.hashtags.length) frag.append(tagList(p));
  // What the foldable columns hold, each shown here only while its column is folded away
  // (styles.css decides by the table's width); the whole line is its tooltip.
  const fold = document.createElement("small");
  fold.className = "line fold";
  const parts = [
    ["view_count", fmt.plural(p.view_count, "view")],
    ["license", p.license_identifier || "no license"],
    ["file_bytes", [file ? `${file.format.toUpperCase()} ${fmt.bytes(file.file_bytes)}` : null,
      p.layers_bytes === null ? null : `layers ${fmt.bytes(p.layers_bytes)}`]
      .filter(Boolean).join(", ") || "no file"],
    ["reaction_count", fmt.plural(p.reaction_count, "reaction")],
    ["comment_count", fmt.plural(p.comment_count, "comment")],
    ["remixable", p.remixable ? "remixes allowed" : "no remixes"],
  ];
  for (const [col, text] of parts) {
    const part = document.createElement("span");
    part.dataset.col = col;
    part.textContent = text;
    fold.append(part, " ");
  }
  fold.title = parts.map(([, text]) => text).join(" · ");
  frag.append(fold);
  return frag;
}

// At most so many tags under a title; the rest are counted (all of them in its tooltip).
const TAGS_SHOWN = 6;

// The post's tags, the artist's own first, then a moderator's (marked: only a moderator
// removes them). `hashtags` holds both.
function tagList(p) {
  const mod = new Set(p.mod_hashtags);
  const ordered = [...p.hashtags.filter((t) => !mod.has(t)), ...p.hashtags.filter((t) => mod.has(t))];
  const list = document.createElement("small");
  list.className = "line tags";
  list.title = ordered.map((t) => `#${t}${mod.has(t) ? " (moderator)" : ""}`).join(" ");
  for (const tag of ordered.slice(0, TAGS_SHOWN)) {
    const chip = document.createElement("span");
    chip.className = mod.has(tag) ? "tag mod-tag" : "tag";
    chip.textContent = `#${tag}`;
    if (mod.has(tag)) {
      const who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = " (a moderator's tag)";
      chip.append(who);
    }
    list.append(chip, " ");
  }
  if (ordered.length > TAGS_SHOWN) list.append(`+${ordered.length - TAGS_SHOWN} more`);
  return list;
}

// The artwork's format and size, and the layers file's when there is one.
function fileBlock(file, layersBytes) {
  const frag = document.createDocumentFragment();
  const main = document.createElement("span");
  main.textContent = file ? `${file.format.toUpperCase()} · ${fmt.bytes(file.file_bytes)}` : "—";
  frag.append(main);
  if (layersBytes !== null && layersBytes !== undefined) {
    const layers = document.createElement("small");
    layers.className = "line layers";
    layers.textContent = `Layers · ${fmt.bytes(layersBytes)}`;
    frag.append(layers);
  }
  return frag;
}

// Said instead of a Restore that would fail (the host's own words for a re-upload).
function whyNotRestorable(p) {
  const note = document.createElement("small");
  note.className = "line blocked";
  if (p.restore_refusal === "artwork-reuploaded" && p.held_by) {
    note.append("Can't be restored: you have since uploaded this artwork again as ");
    const link = document.createElement("a");
    link.href = `/p/${encodeURIComponent(p.held_by.public_sqid ?? "")}`;
    link.textContent = `post ${p.held_by.public_sqid ?? p.held_by.post_id}`;
    note.append(link, ".");
  } else if (p.restore_refusal === "artwork-reuploaded") {
    // Another user's post: the server does not name it.
    note.textContent = "Can't be restored: the same artwork is now another post.";
  } else if (p.restore_refusal === "deleted-by-moderator") {
    note.textContent = "Can't be restored here: a moderator deleted it.";
  } else note.textContent = "Can't be restored.";
  return note;
}

function time(iso) {
  const t = document.createElement("time");
  t.dateTime = iso;
  t.textContent = fmt.date(iso);
  t.title = fmt.dateTime(iso);
  return t;
}
