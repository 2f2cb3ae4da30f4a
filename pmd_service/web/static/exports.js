// The "Export everything" panel: the owner's full exports, in parts, kept live by the stream's
// `export_update` events (downloads.js holds the one EventSource and hands them over).
//
// Exports are the owner's alone: the panel is never shown on a moderator's view of someone
// else's posts, and a 403 on the list keeps it hidden.

import { explain } from "./api.js";
import { saveThroughTicket, skipWhy } from "./downloads.js";
import * as fmt from "./format.js";
import { el, timeEl } from "./ui.js";

const MIB = 2 ** 20;
const GIB = 2 ** 30;
// The part sizes Google Takeout offers. The server's bounds (EXPORT_MIN_PART_BYTES and
// EXPORT_MAX_PART_BYTES) win: a 400 names them, and the choice is rebuilt within them.
const SIZES = [256 * MIB, GIB, 2 * GIB, 4 * GIB, 10 * GIB, 50 * GIB];
const DEFAULT_SIZE = 2 * GIB;

const STATUS = {
  pending: "Queued", processing: "Building", ready: "Ready", failed: "Failed",
  cancelled: "Cancelled", expired: "Expired", removed: "Removed",
};
const PART_STATUS = {
  pending: "Waiting", processing: "Building", ready: "Ready", expired: "Gone",
  cancelled: "Not built", failed: "Not built",
};
// What the screen reader hears when an export changes to this status (ready and failed say more).
const LIVE_STATUS = {
  pending: "is queued", processing: "is being built", cancelled: "was cancelled",
  expired: "was removed",
};
const ACTIVE = new Set(["pending", "processing"]);
// How far along an export can be; `expired` (removed, or past its date) comes last.
const RANK = { pending: 0, processing: 1, ready: 2, failed: 2, cancelled: 2, expired: 3 };
// Progress is said to screen readers at most this often; a ready part or a new status at once.
const ANNOUNCE_EVERY_MS = 15_000;
// While "Start export" waits for the cooldown, its hint ("in 3 minutes") is redone this often.
const WAIT_TICK_MS = 30_000;

const short = (id) => String(id).slice(0, 8);
const readyParts = (item) => item.parts.filter((p) => p.status === "ready" && p.download_url);
const { pastDate } = fmt;

const { sizeLabel } = fmt;

// An incremental export, in words: "Changes since your export of 3 Mar 2025: 1 artwork
// added, 2 changed, 1 removed" (the added and changed counts once its parts are planned).
function changesSince(item) {
  const counts = [];
  if (item.added_count !== null && item.added_count !== undefined) {
    counts.push(`${fmt.plural(item.added_count, "artwork")} added`,
      `${fmt.count(item.changed_count)} changed`);
  }
  counts.push(`${fmt.count(item.removed_count)} removed`);
  return `Changes since your export of ${fmt.date(item.changed_since)}: ${counts.join(", ")}`;
}

// A reply (to a POST or a GET) that raced the stream must not undo what an event already
// showed: it replaces the item only when it is at least as far along. Events come in commit
// order and always replace.
function stage(item) {
  return [RANK[item.status] ?? 0, item.progress.done, item.parts.length, readyParts(item).length];
}
function notBehind(a, b) {
  const x = stage(a);
  const y = stage(b);
  for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] > y[i];
  return true;
}

export class Exports {
  constructor(api, { toast, confirmAction, onError, highlightId }) {
    Object.assign(this, { api, toast, confirmAction, onError, highlightId });
    this.items = new Map();
    this.snapshotIds = null; // exports in the stream's snapshot, until `connected`
    this.bounds = null; // {min, max} once the server named them
    this.expanded = new Set(); // `${id}:${n}`: parts whose SHA-256 is shown in full
    this.announced = new Map(); // id → when its progress was last said
    this.fetching = new Map(); // id → asked again while its item is being fetched
    const $ = (id) => document.getElementById(id);
    this.section = $("exports");
    this.form = $("export-form");
    this.size = $("export-size");
    this.startButton = $("export-start");
    this.hint = $("export-hint");
    this.message = $("export-message");
    this.liveRegion = $("export-live");
    this.list = $("export-list");
    this.empty = $("export-empty");
    this.schedule = $("export-schedule");
    this.scheduleText = $("export-schedule-text");
    $("export-schedule-cancel").addEventListener("click", () => this.cancelSchedule());
    // When the cooldown lets each kind start again (GET /api/pmd/exports, or a 429's wait).
    this.nextAt = { full: null, incremental: null };
    this.sending = false; // a POST is on its way
    this.runningHint = "";
    this.waitTimer = null;
    for (const id of ["export-since", "export-repeat"]) {
      $(id).addEventListener("change", () => this.showStart());
    }
    // An archive carries the artist's own work: others' comments and reactions stay behind.
    $("export-layout").addEventListener("change", () => {
      const archive = $("export-layout").value === "activitypub";
      for (const id of ["export-comments", "export-reactions", "export-upscaled"]) {
        $(id).disabled = archive;
      }
    });
    this.defaultSize = DEFAULT_SIZE; // the server's, once GET /api/pmd/exports said it
    this.fillSizes(DEFAULT_SIZE);
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (this.startButton.getAttribute("aria-disabled") !== "true") this.request();
    });
    this.list.addEventListener("click", (ev) => this.onClick(ev));
  }

  async start() {
    try {
      const listed = await this.api.get("/api/pmd/exports");
      const { items, limits, schedule } = listed;
      this.showSchedule(schedule);
      this.keepNext(listed);
      if (limits) {
        // The server's bounds and default, known before the first request.
        this.bounds = { min: limits.min_part_bytes, max: limits.max_part_bytes };
        this.defaultSize = limits.default_part_bytes;
        this.fillSizes(limits.default_part_bytes);
      }
      for (const item of items) this.merge(item);
    } catch (error) {
      if (error.status !== 403) this.onError(error);
      // 403: not this user's own page. 401: the sign-in banner says what to do, where an empty
      // panel would claim there are no exports. Either way the panel stays hidden.
      if (error.status === 403 || error.status === 401) return;
    }
    this.section.hidden = false;
    if (this.highlightId && !this.items.has(this.highlightId)) {
      try {
        this.merge(await this.api.get(`/api/pmd/exports/${encodeURIComponent(this.highlightId)}`));
      } catch {
        this.toast("The export from your link was not found.", "error");
        this.highlightId = null;
      }
    }
    this.render();
    this.reveal(true);
  }

  // --- the stream (called by downloads.js) ---

  // An event is the item without its lists that grow with the export (every event stays a
  // few KB): `skipped_count`, `parts_count`, and at most 12 parts (those being built, the
  // newest ready ones). Its parts are merged by number into what the panel holds; when that
  // leaves something unknown (the skipped list grew, a part it never saw, a new status of a
  // large export), the whole item is asked for.
  update(event, inSnapshot) {
    if (inSnapshot) (this.snapshotIds ??= new Set()).add(event.id);
    const before = this.items.get(event.id);
    const parts = new Map((before?.parts ?? []).map((p) => [p.number, p]));
    for (const part of event.parts) parts.set(part.number, part);
    const item = {
      ...event,
      skipped: before?.skipped ?? [],
      parts: [...parts.values()].sort((a, b) => a.number - b.number),
      // Counts an event does not carry: the item's, asked for again once its plan is made.
      added_count: before?.added_count ?? null,
      changed_count: before?.changed_count ?? null,
    };
    this.items.set(item.id, item);
    this.announce(before, item);
    this.render();
    const partial = event.parts.length < event.parts_count;
    const uncounted = item.changed_since && item.added_count === null && event.parts_count > 0;
    if (item.skipped.length !== event.skipped_count || item.parts.length !== event.parts_count
        || (partial && before?.status !== event.status)
        || (uncounted && before?.status !== event.status)) this.refresh(event.id);
  }

  // The whole item, once at a time per export (asked again if an event wanted it meanwhile).
  async refresh(id) {
    if (this.fetching.has(id)) {
      this.fetching.set(id, true);
      return;
    }
    try {
      do {
        this.fetching.set(id, false);
        const item = await this.api.get(`/api/pmd/exports/${encodeURIComponent(id)}`);
        this.merge(item);
        this.render();
      } while (this.fetching.get(id));
    } catch {
      // gone, or offline: the next event asks again
    } finally {
      this.fetching.delete(id);
    }
  }

  // After a snapshot (a first connection, or `reset`), exports gone from it leave the list,
  // except the one a link asked to show.
  connected(afterSnapshot) {
    if (afterSnapshot) {
      const keep = this.snapshotIds ?? new Set();
      for (const id of [...this.items.keys()]) {
        if (!keep.has(id) && id !== this.highlightId) this.items.delete(id);
      }
      this.render();
    }
    this.snapshotIds = null;
  }

  // --- replies ---

  merge(item) {
    const before = this.items.get(item.id);
    if (before && !notBehind(item, before)) return;
    this.items.set(item.id, item);
    if (before) this.announce(before, item);
  }

  // The recurring export's schedule, or none (null).
  showSchedule(schedule) {
    this.schedule.hidden = !schedule;
    if (!schedule) return;
    const next = new Date(schedule.next_at);
    this.scheduleText.textContent = `Repeats every ${fmt.plural(schedule.every_days, "day")}: ` +
      `the next export starts on ${fmt.dateTime(next)} (${fmt.relative(next)}), ` +
      `${fmt.plural(schedule.remaining, "export")} to come, each only what changed since the one before.`;
  }

  async reloadSchedule() {
    try {
      const listed = await this.api.get("/api/pmd/exports");
      this.showSchedule(listed.schedule);
      this.keepNext(listed);
    } catch {
      // the next load says it
    }
  }

  // --- when "Start export" can be used next ---

  // The kind of export the form asks for: a repeating one starts with a full export.
  kind() {
    const $ = (id) => document.getElementById(id);
    return !$("export-repeat").value && $("export-since").checked ? "incremental" : "full";
  }

  keepNext(listed) {
    const at = (iso) => (iso ? new Date(iso) : null);
    this.nextAt = {
      full: at(listed.next_export_at),
      incremental: at(listed.next_incremental_export_at),
    };
    this.showStart();
  }

  // Disabled (aria-disabled: the focus stays) while a POST is on its way or until the cooldown
  // of the kind chosen ends, the hint saying when; enabled again by itself then.
  showStart() {
    clearTimeout(this.waitTimer);
    const at = this.nextAt[this.kind()];
    const wait = at ? at.getTime() - Date.now() : 0;
    const waiting = wait > 0;
    const what = this.kind() === "incremental" ? "export of what changed" : "export";
    const cooldown = waiting
      ? `You can start the next ${what} on ${fmt.dateTime(at)} (${fmt.relative(at)}).`
      : "";
    this.hint.textContent = [this.runningHint, cooldown].filter(Boolean).join(" ");
    if (waiting) this.startButton.dataset.until = at.toISOString();
    else delete this.startButton.dataset.until;
    if (waiting || this.sending) this.startButton.setAttribute("aria-disabled", "true");
    else this.startButton.removeAttribute("aria-disabled");
    if (waiting) this.waitTimer = setTimeout(() => this.showStart(), Math.min(wait, WAIT_TICK_MS));
  }

  async cancelSchedule() {
    try {
      await this.api.delete("/api/pmd/exports/schedule");
      this.toast("The export will not repeat any more; the exports made stay.", "ok");
    } catch (error) {
      if (error.status !== 404) this.say(explain(error));
    }
    await this.reloadSchedule();
  }

  async request() {
    const $ = (id) => document.getElementById(id);
    const body = {
      part_bytes: Number(this.size.value),
      include_comments: $("export-comments").checked,
      include_reactions: $("export-reactions").checked,
      include_upscaled: $("export-upscaled").checked,
      send_email: $("export-email").checked,
      layout: $("export-layout").value,
    };
    if ($("export-repeat").value) {
      const [every, times] = $("export-repeat").value.split(":").map(Number);
      body.repeat_every_days = every;
      body.repeat_times = times;
    } else if ($("export-since").checked) {
      body.since = "last";
    }
    this.say("");
    this.sending = true;
    this.showStart();
    let started = false;
    try {
      const item = await this.api.post("/api/pmd/exports", body);
      if (item.nothing_changed) {
        this.say(item.message, "info");
        return;
      }
      started = true;
      this.merge(item);
      this.render();
      this.toast(`Export ${short(item.id)} started. Each part can be downloaded as soon as it is ` +
        "ready; you can leave this page meanwhile.", "ok");
    } catch (error) {
      this.refused(error);
    } finally {
      this.sending = false;
      this.showStart();
    }
    // Its schedule, and when the next export can start.
    if (started) await this.reloadSchedule();
  }

  refused(error) {
    const problem = error.problem ?? {};
    if (error.status === 401) {
      this.onError(error);
    } else if (error.status === 409 && problem.export_id) {
      const { done = 0, total = 0 } = problem.progress ?? {};
      const where = total
        ? `${fmt.count(done)} of ${fmt.plural(total, "artwork")} added`
        : "its parts are being planned";
      this.say(`Export ${short(problem.export_id)} is still running (${where}). Wait for it ` +
        "to finish, or cancel it below, before starting another.", "info");
      this.point(problem.export_id);
    } else if (error.status === 422) {
      this.say("There is nothing to export yet: you have no artworks. Deleted posts and " +
        "playlists are not exported.", "info");
    } else if (error.status === 429) {
      const wait = Number(problem.retry_after_seconds ?? error.retryAfter);
      if (Number.isFinite(wait) && wait > 0) {
        const at = new Date(Date.now() + wait * 1000);
        this.nextAt[this.kind()] = at;
        this.say(`You can export again on ${fmt.dateTime(at)} (${fmt.relative(at)}). The ` +
          "parts of your last export stay downloadable until they expire.", "info");
      } else {
        this.say(explain(error));
      }
    } else if (error.status === 400 && problem.min_part_bytes && problem.max_part_bytes) {
      const chosen = Number(this.size.value);
      this.bounds = { min: problem.min_part_bytes, max: problem.max_part_bytes };
      this.fillSizes(chosen);
      this.say(`This site makes parts of ${sizeLabel(this.bounds.min)} to ` +
        `${sizeLabel(this.bounds.max)}, so ${sizeLabel(chosen)} cannot be used. The part size ` +
        "now lists only sizes within that: choose one and start the export again.");
      this.size.focus();
    } else {
      this.say(explain(error));
    }
  }

  // Marks the export `id` in the list (fetched if the list does not hold it yet).
  async point(id) {
    this.highlightId = id;
    if (!this.items.has(id)) {
      try {
        this.merge(await this.api.get(`/api/pmd/exports/${encodeURIComponent(id)}`));
      } catch {
        // the message names it already
      }
    }
    this.render();
    this.reveal(false);
  }

  // `info`: nothing went wrong, the answer is just not yet (running, cooldown, nothing).
  say(text, kind = "error") {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
    this.message.hidden = !text;
  }

  // The sizes to choose from: Takeout's within the server's bounds (once known), plus the
  // bounds themselves; the nearest to `chosen` is selected.
  fillSizes(chosen) {
    const { min, max } = this.bounds ?? { min: 0, max: Infinity };
    const sizes = SIZES.filter((s) => s >= min && s <= max);
    if (this.bounds) {
      if (!sizes.includes(min)) sizes.unshift(min);
      if (!sizes.includes(max)) sizes.push(max);
    }
    const fallback = this.defaultSize ?? DEFAULT_SIZE;
    if (fallback >= min && fallback <= max && !sizes.includes(fallback)) {
      sizes.push(fallback);
      sizes.sort((a, b) => a - b);
    }
    const distance = (s) => Math.abs(Math.log(s) - Math.log(chosen));
    const pick = sizes.reduce((a, b) => (distance(b) < distance(a) ? b : a));
    this.size.replaceChildren(...sizes.map((s) => {
      let label = sizeLabel(s);
      if (s === (this.defaultSize ?? DEFAULT_SIZE)) label += " (default)";
      else if (this.bounds && s === min && !SIZES.includes(s)) label += " (smallest allowed)";
      else if (this.bounds && s === max && !SIZES.includes(s)) label += " (largest allowed)";
      const option = el("option", "", label);
      option.value = String(s);
      option.selected = s === pick;
      return option;
    }));
  }

  // --- what the screen reader hears ---

  announce(before, item) {
    if (!before) return;
    const name = `Export ${short(item.id)}`;
    const said = [];
    const parts = readyParts(item);
    if (before.status !== item.status) {
      if (!ACTIVE.has(item.status)) this.reloadSchedule();
      const reason = item.error_message ?? "no reason given";
      if (item.status === "ready") {
        said.push(`${name} is ready: ${fmt.plural(parts.length, "part")} to download.`);
        this.toast(`Your export is ready: ${fmt.plural(parts.length, "part")} to download.`, "ok");
      } else if (item.status === "failed") {
        const kept = parts.length
          ? ` The ${fmt.plural(parts.length, "part")} built before it stopped stay downloadable.`
          : "";
        said.push(`${name} failed: ${reason}${kept}`);
        this.toast(`Your export failed: ${reason}${kept}`, "error");
      } else {
        const what = item.status === "expired" && !fmt.removed(item)
          ? "has expired"
          : LIVE_STATUS[item.status] ?? item.status;
        said.push(`${name} ${what}.`);
      }
    }
    if (ACTIVE.has(item.status)) {
      const was = new Set(readyParts(before).map((p) => p.number));
      const fresh = parts.filter((p) => !was.has(p.number)).map((p) => p.number);
      const { done, total } = item.progress;
      if (fresh.length) {
        const which = `${fresh.length === 1 ? "part" : "parts"} ${fresh.join(", ")} of ` +
          `${item.parts.length} ready to download.`;
        said.push(said.length ? which[0].toUpperCase() + which.slice(1) : `${name}: ${which}`);
      } else if (!said.length && total &&
        Date.now() - (this.announced.get(item.id) ?? 0) >= ANNOUNCE_EVERY_MS) {
        said.push(`${name}: ${fmt.count(done)} of ${fmt.plural(total, "artwork")} added.`);
      }
    }
    if (said.length) {
      this.announced.set(item.id, Date.now());
      this.liveRegion.textContent = said.join(" ");
    }
  }

  // --- the list ---

  reveal(focus) {
    if (!this.highlightId) return;
    const li = this.list.querySelector(`li[data-id="${CSS.escape(this.highlightId)}"]`);
    if (!li) return;
    // From a link: to the middle, focused. After a refusal: only as far as needed, so the
    // message above the list stays in view.
    li.scrollIntoView({ block: focus ? "center" : "nearest" });
    if (focus) li.focus({ preventScroll: true });
  }

  // Cards are rebuilt on every update (a few per second while building); the keyboard focus
  // stays on the same control (or its card), and open details stay open.
  render() {
    const items = [...this.items.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const active = document.activeElement;
    const inList = this.list.contains(active);
    const focusKey = inList ? active.dataset.key : null;
    const focusCard = inList ? active.closest("li[data-id]")?.dataset.id : null;
    const open = new Set(
      [...this.list.querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.id),
    );
    this.list.replaceChildren(...items.map((item) => this.card(item, open.has(item.id))));
    this.empty.hidden = items.length > 0;
    const running = items.find((i) => ACTIVE.has(i.status));
    this.runningHint = running
      ? `Export ${short(running.id)} is running: a new one can start once it ends.`
      : "";
    this.showStart();
    if (inList) this.refocus(focusKey, focusCard);
  }

  refocus(key, cardId) {
    const target = key && this.list.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (target) {
      target.focus();
      return;
    }
    const card = cardId && this.list.querySelector(`li[data-id="${CSS.escape(cardId)}"]`);
    if (card) card.focus();
  }

  card(item, skippedOpen) {
    const id = short(item.id);
    const expired = item.status === "expired" || (item.status !== "cancelled" && pastDate(item));
    const li = el("li", "export");
    li.dataset.id = item.id;
    li.dataset.status = item.status;
    li.tabIndex = -1; // the focus lands here when the focused control goes away
    if (item.id === this.highlightId) li.classList.add("highlight");

    const head = el("div", "export-head");
    const name = el("h3", "export-name",
      item.changed_since ? `Export ${id} of changes` : `Export ${id}`);
    const status = expired ? (fmt.removed(item) ? "removed" : "expired") : item.status;
    head.append(
      name,
      el("span", `badge status-${status}`, STATUS[status] ?? status),
      timeEl(item.created_at, `requested ${fmt.relative(item.created_at)}`),
    );
    li.append(head);

    const archive = item.layout === "activitypub";
    const extras = archive ? [] : [
      item.include_comments && "comments", item.include_reactions && "reactions",
    ].filter(Boolean);
    const opts = [
      archive ? "an archive other sites import" : "checked bags",
      extras.length ? `with ${extras.join(" and ")}` : "artworks only",
      `parts of at most ${sizeLabel(item.part_bytes)}`,
    ];
    if (item.include_upscaled && !archive) opts.push("upscaled copies");
    if (item.send_email) opts.push("email when done");
    if (item.changed_since) li.append(el("p", "export-changes", changesSince(item)));
    li.append(el("p", "export-opts", opts.join(" · ")));

    const ready = readyParts(item);
    if (ACTIVE.has(item.status)) {
      const { done, total } = item.progress;
      const bar = el("progress", "");
      bar.max = Math.max(total, 1);
      bar.value = done;
      bar.setAttribute("aria-label", `Export ${id}: artworks added`);
      let text;
      if (item.status === "pending") text = "Waiting for a worker…";
      else if (!item.parts.length) text = "Planning the parts…";
      else {
        text = `${fmt.count(done)} of ${fmt.plural(total, "artwork")} added · ` +
          `${fmt.count(ready.length)} of ${fmt.plural(item.parts.length, "part")} ready`;
      }
      li.append(bar, el("p", "export-progress", text));
    } else if (item.status === "ready" && !expired) {
      const bits = [
        `${fmt.plural(item.artwork_count, "artwork")} in ${fmt.plural(item.parts.length, "part")}`,
        fmt.bytes(item.total_bytes),
      ];
      if (item.expires_at) bits.push(`parts expire ${fmt.relative(item.expires_at)}`);
      const p = el("p", "export-summary", bits.join(" · "));
      if (item.expires_at) p.title = `The parts expire ${fmt.dateTime(item.expires_at)}`;
      li.append(p);
    } else if (expired) {
      const p = el("p", "export-summary", fmt.removed(item)
        ? `Its parts were removed ${fmt.ago(item.removed_at)}.`
        : pastDate(item)
          ? `Its parts expired ${fmt.dateTime(item.expires_at)}.`
          : "Its parts are no longer available.");
      if (fmt.removed(item)) p.title = `Removed ${fmt.dateTime(item.removed_at)}`;
      li.append(p);
    }
    if (item.status === "failed") {
      const kept = ready.length && !expired
        ? ` The ${fmt.plural(ready.length, "part")} built before it stopped stay downloadable.`
        : "";
      li.append(el("p", "export-error",
        `The export failed: ${item.error_message ?? "no reason given"}${kept}`));
    }
    if (item.skipped.length) {
      const details = el("details", "bdr-skipped");
      details.open = skippedOpen;
      // An entry naming a `file` (a palette) left that file out: its artwork is in the export.
      const artworks = item.skipped.filter((s) => !s.file).length;
      const palettes = item.skipped.length - artworks;
      const summary = [
        artworks && `${fmt.plural(artworks, "artwork")} left out`,
        palettes && `${fmt.plural(palettes, "palette")} left out`,
      ].filter(Boolean).join(", ");
      details.append(el("summary", "", summary));
      const ul = el("ul", "");
      for (const s of item.skipped) {
        ul.append(el("li", "", `${s.public_sqid ?? `#${s.post_id}`}: ${skipWhy(s)}`));
      }
      details.append(ul);
      li.append(details);
    }
    if (item.parts.length && !expired && item.status !== "cancelled") li.append(this.partsTable(item));

    const buttons = el("div", "bdr-buttons");
    if (ready.length && !expired) {
      const sums = button("sums", "Save SHA256SUMS", `${item.id}:sums`);
      sums.title = "Every ready part's SHA-256 and file name: run sha256sum -c on this file " +
        "where the parts are saved to check them all";
      buttons.append(sums);
    }
    if (ACTIVE.has(item.status)) buttons.append(button("cancel", "Cancel export…", `${item.id}:end`));
    else if ((item.status === "ready" || item.status === "failed") && !expired) {
      buttons.append(button("remove", "Remove…", `${item.id}:end`));
    }
    if (buttons.childElementCount) li.append(buttons);
    return li;
  }

  partsTable(item) {
    const id = short(item.id);
    const count = item.parts.length;
    const wrap = el("div", "parts-wrap");
    const table = el("table", "parts");
    const caption = el("caption", "visually-hidden", `The parts of export ${id}`);
    const head = el("tr", "");
    for (const [text, cls] of [
      ["Part", ""], ["Status", "wide-only"], ["Artworks", "num wide-only"], ["Size", "num"],
      ["File", ""],
      ["SHA-256", ""],
    ]) {
      const th = el("th", cls, text);
      th.scope = "col";
      head.append(th);
    }
    const thead = el("thead", "");
    thead.append(head);
    const tbody = el("tbody", "");
    for (const part of item.parts) {
      const n = part.number;
      const tr = el("tr", "");
      tr.dataset.number = String(n);
      tr.dataset.status = part.status;
      const label = el("th", "", `${n} of ${count}`);
      label.scope = "row";
      label.title = fmt.plural(part.artwork_count, "artwork");
      const state = PART_STATUS[part.status] ?? part.status;
      const file = el("td", "");
      if (part.status === "ready" && part.download_url) {
        const b = button("download", "Download", `${item.id}:download:${n}`);
        b.dataset.part = String(n);
        b.setAttribute("aria-label", `Download part ${n} of ${count}`);
        file.append(b);
      } else {
        // On a phone the status column is left out: the file column says it instead.
        file.append(el("span", "muted wide-only", "—"), el("span", "muted narrow-only", state));
      }
      const sha = el("td", "sha");
      const rowId = `sha-${id}-${n}`;
      const shown = this.expanded.has(`${item.id}:${n}`);
      if (part.sha256) {
        const code = el("code", "sha-short wide-only", `${part.sha256.slice(0, 12)}…`);
        const toggle = button("sha", shown ? "Hide" : "Show", `${item.id}:sha:${n}`);
        toggle.dataset.part = String(n);
        toggle.setAttribute("aria-expanded", String(shown));
        toggle.setAttribute("aria-controls", rowId);
        toggle.setAttribute("aria-label", `${shown ? "Hide" : "Show"} the SHA-256 of part ${n}`);
        const cell = el("span", "sha-cell");
        cell.append(code, toggle);
        sha.append(cell);
      } else sha.append(el("span", "muted", "—"));
      tr.append(
        label,
        tdText(el("span", `part-status status-${part.status}`, state), "wide-only"),
        el("td", "num wide-only", fmt.count(part.artwork_count)),
        el("td", "num", part.file_size_bytes === null ? "—" : fmt.bytes(part.file_size_bytes)),
        file,
        sha,
      );
      tbody.append(tr);
      if (part.sha256) {
        const full = el("tr", "sha-row");
        full.id = rowId;
        full.hidden = !shown;
        const td = el("td", "");
        td.colSpan = 6;
        const code = el("code", "sha-full", part.sha256);
        const copy = button("copy", "Copy", `${item.id}:copy:${n}`);
        copy.dataset.part = String(n);
        copy.setAttribute("aria-label", `Copy the SHA-256 of part ${n}`);
        td.append(code, copy);
        full.append(td);
        tbody.append(full);
      }
    }
    table.append(caption, thead, tbody);
    wrap.append(table);
    return wrap;
  }

  // --- actions ---

  async onClick(ev) {
    const b = ev.target.closest("button[data-do]");
    if (!b || b.getAttribute("aria-disabled") === "true") return;
    const item = this.items.get(b.closest("li[data-id]").dataset.id);
    if (!item) return;
    const part = b.dataset.part ? item.parts.find((p) => p.number === Number(b.dataset.part)) : null;
    const action = b.dataset.do;
    if (action === "sha") {
      const key = `${item.id}:${part.number}`;
      if (this.expanded.has(key)) this.expanded.delete(key);
      else this.expanded.add(key);
      this.render();
      return;
    }
    if (action === "copy") {
      await this.copy(part, b);
      return;
    }
    if (action === "cancel" || action === "remove") {
      if (!(await this.confirmEnd(item, action))) {
        this.refocus(b.dataset.key, item.id);
        return;
      }
    }
    // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    b.setAttribute("aria-disabled", "true");
    try {
      if (action === "download") {
        await saveThroughTicket(this.api, part.download_url, { export_id: item.id });
      } else if (action === "sums") {
        await this.saveSums(item);
      } else {
        await this.api.delete(`/api/pmd/exports/${item.id}`);
        // The stream brings the change too; this shows it even while it reconnects.
        this.merge(await this.api.get(`/api/pmd/exports/${item.id}`));
        this.render();
        this.refocus(null, item.id);
      }
    } catch (error) {
      if (error.status === 401) this.onError(error);
      else this.toast(explain(error), "error");
    } finally {
      b.removeAttribute("aria-disabled");
    }
  }

  confirmEnd(item, action) {
    const ready = readyParts(item).length;
    if (action === "cancel") {
      return this.confirmAction({
        title: `Cancel export ${short(item.id)}?`,
        text: "It stops at the next artwork and the parts built so far are deleted. You can " +
          "start a new export right away: a cancelled one does not count toward the wait " +
          "between exports.",
        ok: "Cancel the export",
        danger: true,
        cancel: "Keep it running",
      });
    }
    return this.confirmAction({
      title: `Remove export ${short(item.id)}?`,
      text: `Its ${fmt.plural(ready, "part")} ${ready === 1 ? "is" : "are"} deleted from the ` +
        "site now; files you already saved are not touched. The wait before the next export " +
        "still counts from this one.",
      ok: "Remove the parts",
      danger: true,
      cancel: "Keep them",
    });
  }

  async copy(part, b) {
    try {
      await navigator.clipboard.writeText(part.sha256);
      this.toast(`SHA-256 of part ${part.number} copied.`, "ok");
    } catch {
      // No clipboard here (a page not served over https): select the text to copy by hand.
      const code = b.closest("td").querySelector("code");
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      this.toast("The SHA-256 is selected: press Ctrl+C (⌘C on a Mac) to copy it.", "info");
    }
  }

  // SHA256SUMS needs the Bearer header, so the page reads it (a few lines) and saves it.
  async saveSums(item) {
    const response = await this.api.request("GET", item.sha256sums_url, { raw: true });
    const text = await response.text();
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `makapix-export-${short(item.id)}.SHA256SUMS`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

function tdText(child, cls) {
  const td = el("td", cls);
  td.append(child);
  return td;
}

function button(action, text, key) {
  const b = el("button", "", text);
  b.type = "button";
  b.dataset.do = action;
  b.dataset.key = key;
  return b;
}
