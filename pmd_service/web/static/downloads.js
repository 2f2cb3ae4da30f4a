// The download requests panel: the user's BDRs, kept live over Server-Sent Events. The stream
// also carries the owner's exports, handed on to the exports panel (exports.js), and the changes
// of the user's posts, handed on to the posts table (app.js).
//
// EventSource cannot send an Authorization header, so each connection uses a single-use ticket
// (POST /api/pmd/bdr/sse-ticket). EventSource's own retry would reuse the spent ticket, so on
// any error the page closes it and opens a new one with a fresh ticket and `last_event_id`: the
// server then sends only what was missed (or `reset` and a new snapshot). The server's own
// `retry:` is for clients that let EventSource reconnect; this page keeps its own pace.

import { ApiError, explain, tokenSubject } from "./api.js";
import * as fmt from "./format.js";
import { el, timeEl } from "./ui.js";

const STATUS = {
  pending: "Queued", processing: "Building", ready: "Ready", failed: "Failed",
  expired: "Expired", removed: "Removed", cancelled: "Cancelled",
};
export const REASON = {
  deleted: "deleted since the request", not_owner: "no longer yours", playlist: "now a playlist",
  file_missing: "file missing", fetch_failed: "file could not be fetched",
  too_many_colours: "no palette: more than 256 colours", undecodable: "no palette: unreadable image",
};
// An entry naming a `file` left only that file out (a layers file the site declares but does
// not have, a palette of too many colours): its artwork is in the ZIP.
const FILE = { layers: "layers file (.mkpx)", upscaled: "upscaled copy", palette: "palette" };
const FILE_REASON = {
  file_missing: "missing", fetch_failed: "could not be fetched",
  too_many_colours: "left out: more than 256 colours", undecodable: "left out: unreadable image",
};
export const skipWhy = (s) => (s.file
  ? `${FILE[s.file] ?? s.file} ${FILE_REASON[s.reason] ?? s.reason}`
  : REASON[s.reason] ?? s.reason);
const ACTIVE = new Set(["pending", "processing"]);
// Attempts to reach a server that is away come further apart, with jitter (a restarted
// server is not met by every page at once), but at most this far apart while the page is in
// view: the stream resumes within a few seconds of the server's return. A hidden page backs
// off further and tries again as soon as it is shown.
const BACKOFF_SHOWN_MAX_MS = 3000;
const BACKOFF_MAX_MS = 30_000;

// The server counts a day's download requests per UTC day (its limit resets at midnight UTC).
const DAY_MS = 86_400_000;
const utcDayStart = (now) => now - (now % DAY_MS);
// The day's limit, as the list or a refusal named it (the server's, the same for everyone):
// kept for the tab, so a reload still knows it.
const DAILY_LIMIT_KEY = "pmd.bdrDailyLimit";

// The browser saves the file itself, streaming it to disk: never read into a blob (a ZIP may
// be gigabytes). A link cannot carry the Bearer header, so it carries a single-use ticket bound
// to one request (`{bdr_id}`) or export (`{export_id}`): a copied link opens nothing else. The
// server answers with the file, or (ZIPs in object storage) a redirect to a signed URL.
export async function saveThroughTicket(api, url, bindTo) {
  const { ticket } = await api.request("POST", "/api/pmd/bdr/sse-ticket", { query: bindTo });
  const a = document.createElement("a");
  a.href = api.url(url, { ticket });
  a.download = ""; // the name comes from Content-Disposition
  document.body.append(a);
  a.click();
  a.remove();
}

export class Downloads {
  // `exportsFeed`: who takes the stream's `export_update` events ({update(item, inSnapshot),
  // connected(afterSnapshot)}); the owner's stream carries them, a moderator's never does.
  // `postsFeed`: who takes the stream's `posts_changed` events ({changed(data)}; data null when
  // the stream lost track and every post may have changed).
  // `onChange`: called when whether a download may be requested today may have changed.
  constructor(api, {
    toast, confirmAction, onError, highlightId, exportsFeed = null, postsFeed = null,
    onChange = () => {},
  }) {
    this.api = api;
    // A user cannot cancel or delete what a moderator asked for on their behalf.
    this.asModerator = Boolean(api.targetSqid);
    // On a moderator's page every download is the artist's, and says so ("@demo's download").
    this.owner = this.asModerator ? "the artist" : null;
    Object.assign(this, {
      toast, confirmAction, onError, highlightId, exportsFeed, postsFeed, onChange,
    });
    this.dailyLimit = Number(sessionStorage.getItem(DAILY_LIMIT_KEY)) || null;
    // Refused for the day until then (ms): kept per caller, whose count the limit is.
    this.refusedKey = `pmd.bdrRefusedUntil.${tokenSubject(api.token) ?? ""}`;
    this.refusedUntil = Number(sessionStorage.getItem(this.refusedKey)) || 0;
    this.limitTimer = null;
    // What the server counted of the caller's requests today as the list loaded, plus those
    // made here since: {used, dayStart} (ms).
    this.day = null;
    this.items = new Map();
    // Requested from this page, and announced (toasted) as ready or failed: a request whose
    // stream events all came before the POST's answer is announced once all the same.
    this.requested = new Set();
    this.announced = new Set();
    this.lastEventId = null;
    this.source = null;
    this.backoff = 1000;
    this.nextAttempt = null; // {timer, at}: the reconnect scheduled
    this.stopped = false;
    this.snapshot = null; // a full snapshot being received: it replaces the list at `connected`
    this.list = document.getElementById("bdr-list");
    this.empty = document.getElementById("bdr-empty");
    this.live = document.getElementById("live");
    this.liveText = document.getElementById("live-text");
    this.list.addEventListener("click", (ev) => this.onClick(ev));
    document.addEventListener("visibilitychange", () => {
      const next = this.nextAttempt;
      if (document.visibilityState !== "visible" || !next) return;
      if (next.at - Date.now() > BACKOFF_SHOWN_MAX_MS) this.later(Math.random() * 1000);
    });
  }

  // The artist's handle ("@demo"), once the page knows it.
  setOwner(owner) {
    this.owner = owner;
    this.render();
  }

  // "Your download" or "@demo's download".
  whose(capital = true) {
    if (!this.owner) return capital ? "Your" : "your";
    return this.owner === "the artist" && capital ? "The artist's" : `${this.owner}'s`;
  }

  async start() {
    try {
      const { items, daily_limit: day } = await this.api.get("/api/pmd/bdr");
      for (const item of items) this.items.set(item.id, item);
      if (day?.limit > 0) this.knowDay(day);
    } catch (error) {
      // A refused token: the list is unknown, not empty.
      if (error.status === 401) this.empty.textContent = "Not loaded: the access token was not accepted.";
      this.onError(error);
    }
    if (this.highlightId && !this.items.has(this.highlightId)) {
      try {
        const item = await this.api.get(`/api/pmd/bdr/${encodeURIComponent(this.highlightId)}`);
        this.items.set(item.id, item);
      } catch {
        this.toast(`The download request from your link was not found.`, "error");
        this.highlightId = null;
      }
    }
    this.render();
    this.reveal();
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.nextAttempt?.timer);
    this.nextAttempt = null;
    this.source?.close();
    this.setLive("off", "Live updates off");
  }

  setLive(state, text) {
    this.live.dataset.state = state;
    this.liveText.textContent = text;
  }

  async connect() {
    if (this.stopped) return;
    this.setLive("connecting", "Connecting…");
    let ticket;
    try {
      ({ ticket } = await this.api.post("/api/pmd/bdr/sse-ticket"));
    } catch (error) {
      // 401/403 (token expired, banned, not a moderator) will not heal by retrying.
      if (error.status === 401 || error.status === 403) {
        this.stop();
        if (error.status === 403) this.onError(error);
        return;
      }
      return this.retry();
    }
    if (this.stopped) return;
    // Without a last event id the stream opens with the snapshot of the 20 newest.
    this.snapshot = this.lastEventId ? null : new Map();
    const query = { ticket };
    if (this.lastEventId) query.last_event_id = this.lastEventId;
    const source = new EventSource(this.api.url("/api/pmd/bdr/sse", query));
    this.source = source;
    source.addEventListener("bdr_update", (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      const item = JSON.parse(ev.data);
      if (this.snapshot) this.snapshot.set(item.id, item);
      else this.update(item);
    });
    // Exports share the stream and its event ids: a resume with the last id skips neither kind.
    source.addEventListener("export_update", (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      this.exportsFeed?.update(JSON.parse(ev.data), this.snapshot !== null);
    });
    // Posts share the stream and its event ids too: a resume replays the changes missed.
    source.addEventListener("posts_changed", (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      this.postsFeed?.changed(JSON.parse(ev.data));
    });
    // Our last event id was too old: what follows is a full snapshot, not the missed events,
    // and posts may have changed meanwhile.
    source.addEventListener("reset", () => {
      this.snapshot = new Map();
      this.postsFeed?.changed(null);
    });
    source.addEventListener("connected", (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      this.exportsFeed?.connected(this.snapshot !== null);
      if (this.snapshot) this.replaceAll(this.snapshot);
      this.snapshot = null;
      this.backoff = 1000;
      this.setLive("live", "Live");
    });
    source.addEventListener("timeout", () => {
      source.close();
      this.stop();
      this.onError({ status: 401 });
    });
    // Banned, deactivated or no longer a moderator since the stream opened: reconnecting
    // would only be refused, so stop and say why.
    source.addEventListener("access_revoked", (ev) => {
      source.close();
      this.stop();
      const { status, detail } = JSON.parse(ev.data);
      this.onError(new ApiError(status, "Access withdrawn", detail));
    });
    // The server is stopping (a deploy): come back after the pause it asks for, resuming
    // from the last event on another server. Not a failure, so the backoff does not grow.
    source.addEventListener("reconnect", (ev) => {
      if (this.source !== source) return;
      source.close();
      this.source = null;
      const { retry_ms: wait } = JSON.parse(ev.data);
      this.setLive("reconnecting", "Reconnecting…");
      this.later(wait);
    });
    source.onerror = () => {
      if (this.source !== source) return;
      source.close();
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    const most = document.visibilityState === "hidden" ? BACKOFF_MAX_MS : BACKOFF_SHOWN_MAX_MS;
    const ceiling = Math.min(this.backoff, most);
    const wait = ceiling / 2 + Math.random() * (ceiling / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.setLive("reconnecting", "Reconnecting…");
    this.live.title = `Next attempt in ${Math.ceil(wait / 1000)} s`;
    this.later(wait);
  }

  // The next connection attempt, in `wait` ms (replacing one scheduled already).
  later(wait) {
    clearTimeout(this.nextAttempt?.timer);
    const timer = setTimeout(() => {
      this.nextAttempt = null;
      this.connect();
    }, wait);
    this.nextAttempt = { timer, at: Date.now() + wait };
  }

  // The snapshot is the truth for the newest 20: a request gone from it (purged, or pushed
  // out by newer ones) leaves the list, except the one a link asked to show.
  replaceAll(snapshot) {
    for (const id of [...this.items.keys()]) {
      if (!snapshot.has(id) && id !== this.highlightId) this.items.delete(id);
    }
    for (const item of snapshot.values()) this.update(item, false);
    this.render();
  }

  update(item, render = true) {
    const before = this.items.get(item.id);
    this.items.set(item.id, item);
    if ((before && before.status !== item.status) || this.requested.has(item.id)) {
      this.announce(item);
    }
    if (render) this.render();
  }

  announce(item) {
    if (this.announced.has(item.id)) return;
    if (item.status === "ready") {
      this.toast(`${this.whose()} download of ${fmt.plural(item.artwork_count, "artwork")} ` +
        "is ready.", "ok");
    } else if (item.status === "failed") {
      this.toast(`A download failed: ${item.error_message ?? "no reason given"}`, "error");
    } else {
      return;
    }
    this.announced.add(item.id);
  }

  // The day's limit and what the caller used of it, as the server counts it: the button
  // knows the limit before a refusal, in any tab, a moderator's too.
  knowDay({ limit, used, resets_at: resetsAt }) {
    this.dailyLimit = limit;
    sessionStorage.setItem(DAILY_LIMIT_KEY, String(limit));
    this.day = { used: Number(used) || 0, dayStart: Date.parse(resetsAt) - DAY_MS };
  }

  async request(postIds, options) {
    const item = await this.api.post("/api/pmd/bdr", { post_ids: postIds, ...options });
    if (this.day?.dayStart === utcDayStart(Date.now())) this.day.used += 1;
    this.requested.add(item.id);
    const seen = this.items.get(item.id);
    if (seen) this.announce(seen);
    else this.items.set(item.id, item);
    this.render();
    return item;
  }

  async onClick(ev) {
    const button = ev.target.closest("button[data-do]");
    if (!button || button.getAttribute("aria-disabled") === "true") return;
    const item = this.items.get(button.closest("li").dataset.id);
    if (!item) return;
    if (button.dataset.do === "delete") {
      const sure = await this.confirmAction({
        title: this.owner ? `Delete ${this.whose(false)} ZIP?` : "Delete this ZIP?",
        text: `The file of ${fmt.plural(item.artwork_count, "artwork")} is removed now; ` +
          "you can request a new download later.",
        ok: "Delete the file",
        danger: true,
      });
      if (!sure) return;
    }
    // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    button.setAttribute("aria-disabled", "true");
    try {
      if (button.dataset.do === "download") await this.download(item, button);
      else {
        await this.api.delete(`/api/pmd/bdr/${item.id}`);
        // The stream brings the change too; this shows it even while it reconnects.
        this.update(await this.api.get(`/api/pmd/bdr/${item.id}`));
      }
    } catch (error) {
      this.toast(explain(error), "error");
    } finally {
      button.removeAttribute("aria-disabled");
    }
  }

  async download(item, button) {
    const label = button.textContent;
    button.textContent = "Starting download…";
    try {
      await saveThroughTicket(this.api, item.download_url, { bdr_id: item.id });
    } finally {
      button.textContent = label;
    }
  }

  // The server refused a request for the day (429 `bdr_daily_limit`): none is asked for
  // again before the day's count starts over.
  refusedForToday(error) {
    const { limit, retry_after_seconds: wait } = error.problem?.details ?? {};
    if (limit > 0) {
      this.dailyLimit = limit;
      sessionStorage.setItem(DAILY_LIMIT_KEY, String(limit));
    }
    const seconds = Number(wait ?? error.retryAfter);
    if (seconds > 0) {
      this.refusedUntil = Date.now() + seconds * 1000;
      sessionStorage.setItem(this.refusedKey, String(this.refusedUntil));
    }
    this.limitChanged();
  }

  // The requests that count against today's limit: the server's count at load (a moderator's
  // own spans every artist), and those the list shows of the owner's own since (another tab's).
  usedToday(now) {
    const start = utcDayStart(now);
    const counted = this.day?.dayStart === start ? this.day.used : null;
    if (this.asModerator) return counted;
    const listed = [...this.items.values()]
      .filter((i) => !i.requested_by_moderator && Date.parse(i.created_at) >= start).length;
    return Math.max(counted ?? 0, listed);
  }

  // `{limit, resetAt}` (ms) while today's download requests are used up, else null.
  limitReached(now = Date.now()) {
    if (this.refusedUntil > now) return { limit: this.dailyLimit, resetAt: this.refusedUntil };
    const used = this.usedToday(now);
    if (this.dailyLimit && used !== null && used >= this.dailyLimit) {
      return { limit: this.dailyLimit, resetAt: utcDayStart(now) + DAY_MS };
    }
    return null;
  }

  // Tells the page, and again each minute while the limit holds (the wait is said in
  // minutes) and at the reset.
  limitChanged() {
    clearTimeout(this.limitTimer);
    const reached = this.limitReached();
    if (reached) {
      const wait = Math.min(60_000, Math.max(1000, reached.resetAt - Date.now() + 500));
      this.limitTimer = setTimeout(() => this.limitChanged(), wait);
    }
    this.onChange();
  }

  // A download named by the server (a repeated request): highlighted and scrolled to.
  async show(id) {
    if (!this.items.has(id)) {
      try {
        this.items.set(id, await this.api.get(`/api/pmd/bdr/${encodeURIComponent(id)}`));
      } catch {
        return; // gone meanwhile: the confirmation still says what to do
      }
    }
    this.highlightId = id;
    this.render();
    this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest" });
  }

  reveal() {
    if (!this.highlightId) return;
    const li = this.list.querySelector(`li[data-id="${CSS.escape(this.highlightId)}"]`);
    if (!li) return;
    li.classList.add("highlight");
    li.tabIndex = -1;
    li.scrollIntoView({ block: "center" });
    li.focus({ preventScroll: true });
  }

  // Cards are rebuilt on every update (a few per second while building); keep the keyboard
  // focus and the open "skipped" lists where the person left them.
  render() {
    const items = [...this.items.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const active = document.activeElement;
    const focusedCard = active?.closest?.("#bdr-list li")?.dataset.id;
    const focusedButton = active?.dataset?.do;
    const open = new Set(
      [...this.list.querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.id),
    );
    this.list.replaceChildren(...items.map((item) => this.card(item, open.has(item.id))));
    this.empty.hidden = items.length > 0;
    this.limitChanged(); // a new request may have used up the day's
    if (!focusedCard) return;
    const card = this.list.querySelector(`li[data-id="${CSS.escape(focusedCard)}"]`);
    const button = focusedButton && card?.querySelector(`button[data-do="${focusedButton}"]`);
    if (button) button.focus();
    else if (card) {
      card.tabIndex = -1;
      card.focus();
    }
  }

  card(item, skippedOpen = false) {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.dataset.status = item.status;
    li.className = "bdr";
    if (item.id === this.highlightId) {
      li.classList.add("highlight");
      li.tabIndex = -1;
    }
    // What the person sees: a ready file past its date is expired, a removed one says so
    // (format.js).
    const shown = fmt.removed(item)
      ? "removed"
      : item.status === "ready" && fmt.pastDate(item) ? "expired" : item.status;
    // Badge and count on one line; the time goes with the options, which may wrap as prose.
    const head = el("div", "bdr-head");
    head.append(
      el("span", `badge status-${shown}`, STATUS[shown] ?? shown),
      el("span", "bdr-count", this.owner
        ? `${this.whose()} download of ${fmt.plural(item.artwork_count, "artwork")}`
        : fmt.plural(item.artwork_count, "artwork")),
    );
    li.append(head);
    const extras = [
      item.include_comments && "comments", item.include_reactions && "reactions",
    ].filter(Boolean);
    const opts = [extras.length ? `with ${extras.join(" and ")}` : "artworks only"];
    if (item.send_email) opts.push("email when done");
    if (item.requested_by_moderator) opts.push("requested by a moderator");
    const line = el("p", "bdr-opts");
    line.append(timeEl(item.created_at, `Requested ${fmt.relative(item.created_at)}`),
      ` · ${opts.join(" · ")}`);
    li.append(line);

    if (ACTIVE.has(item.status)) {
      const { done, total } = item.progress;
      const bar = el("progress", "");
      bar.max = total;
      bar.value = done;
      bar.setAttribute("aria-label", `Progress: ${done} of ${total}`);
      li.append(bar, el("p", "bdr-progress",
        item.status === "pending" ? "Waiting for a worker…" : `${done} of ${total} added`));
    }
    if (shown === "ready") {
      const bits = [fmt.bytes(item.file_size_bytes)];
      if (item.expires_at) bits.push(`expires ${fmt.relative(item.expires_at)}`);
      const p = el("p", "bdr-ready", bits.join(" · "));
      if (item.expires_at) p.title = `Expires ${fmt.dateTime(item.expires_at)}`;
      li.append(p);
    }
    if (shown === "removed") {
      const p = el("p", "bdr-ended", `The file was removed ${fmt.ago(item.removed_at)}.`);
      p.title = `Removed ${fmt.dateTime(item.removed_at)}`;
      li.append(p);
    } else if (shown === "expired" && fmt.pastDate(item)) {
      const p = el("p", "bdr-ended", `The file expired ${fmt.relative(item.expires_at)}.`);
      p.title = `Expired ${fmt.dateTime(item.expires_at)}`;
      li.append(p);
    } else if (shown === "expired") {
      // Neither removed nor past its date: its file was lost (a download answered 410).
      li.append(el("p", "bdr-ended", "The file is no longer available."));
    }
    if (item.error_message) li.append(el("p", "bdr-error", item.error_message));
    if (item.skipped.length) {
      const details = el("details", "bdr-skipped");
      details.open = skippedOpen;
      const artworks = item.skipped.filter((s) => !s.file).length;
      const files = item.skipped.length - artworks;
      const summary = [
        artworks && `${fmt.plural(artworks, "artwork")} skipped`,
        files && `${fmt.plural(files, "file")} left out`,
      ].filter(Boolean).join(", ");
      details.append(el("summary", "", summary));
      const ul = el("ul", "");
      for (const s of item.skipped) {
        ul.append(el("li", "", `${s.public_sqid ?? `#${s.post_id}`}: ${skipWhy(s)}`));
      }
      details.append(ul);
      li.append(details);
    }
    const buttons = el("div", "bdr-buttons");
    const mayRemove = this.asModerator || !item.requested_by_moderator;
    if (shown === "ready" && item.download_url) {
      // A moderator's buttons name whose file they act on.
      const of = this.owner ? `${this.whose(false)} ` : "";
      buttons.append(button("download", `Download ${of}ZIP`, "primary"));
      if (mayRemove) buttons.append(button("delete", `Delete ${of}file`));
    } else if (ACTIVE.has(item.status) && mayRemove) {
      buttons.append(button("cancel", "Cancel"));
    }
    if (buttons.childElementCount) li.append(buttons);
    return li;
  }
}

function button(action, text, cls = "") {
  const b = el("button", cls, text);
  b.type = "button";
  b.dataset.do = action;
  return b;
}
