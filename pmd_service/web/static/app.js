// The dashboard page: wires the posts table, the batch actions, the downloads panel, the
// cleanup policies and (on the user's own page) the exports panel.

import { ACTION_WORDS, ENDPOINTS, MOVING, RESTORING } from "./action_words.js";
import {
  accountRefused, Api, ApiError, explain, getToken, inWords, setToken, takeTokenFromFragment,
  TOKEN_FIELD,
  tokenSubject,
} from "./api.js";
import {
  BULK_MAX_POSTS, MAX_BATCH, outcome, runBatches, startBatchLine, whereNow,
} from "./bulk.js";
import { Cleanup } from "./cleanup.js";
import { Downloads } from "./downloads.js";
import { Exports } from "./exports.js";
import { FILTER_KEYS, FLAG_KEYS, LIST_KEYS, NUMBER_KEYS } from "./filter_keys.js";
import { count, plural, RESTORE_WINDOW_DAYS } from "./format.js";
import { PAGE_SIZE, PostTable } from "./posts.js";
import { RecentActions } from "./recent.js";
import { askSignIn, confirmAction, showNotice, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

// Said to a person of the site, who knows nothing of how the service is run.
const SIGNED_OUT = "You are not signed in here. Sign in on the site and open this page from there, " +
  `or paste an access token into ${TOKEN_FIELD}. ` +
  "If it keeps asking, ask the site's operators for help.";

function boot() {
  takeTokenFromFragment();
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("signin-token").value);
    location.reload();
  });
  const token = getToken();
  if (!token) {
    askSignIn(SIGNED_OUT);
    return;
  }
  const pageSqid = location.pathname.split("/")[2];
  const subject = tokenSubject(token);
  const targetSqid = subject && subject !== pageSqid ? pageSqid : null;
  const params = new URLSearchParams(location.search);
  const highlightId = params.get("bdr");

  let downloads = null;
  const signInAgain = (error) => {
    downloads?.stop();
    askSignIn(explain(accountRefused(error) ? error : new ApiError(401, "Unauthorized", "")));
  };
  const api = new Api({ token, targetSqid, onUnauthorized: signInAgain });
  const onError = (error) =>
    error.status === 401 || accountRefused(error) ? signInAgain(error) : showNotice(explain(error));
  if (targetSqid) {
    $("who").textContent = "You are moderating another artist's posts.";
    $("who").hidden = false;
  }
  // A moderator's page names the artist by handle once the list says whose posts they are.
  let owner = null;
  function namedTarget(target) {
    if (!targetSqid || owner === `@${target.handle}`) return;
    owner = `@${target.handle}`;
    $("page-title").textContent = `${owner}'s posts`;
    document.title = `${owner}'s posts · Post Management Dashboard`;
    $("who").textContent = `You are moderating ${owner}'s posts (${target.public_sqid ?? targetSqid}).`;
    $("downloads-title").textContent = `${owner}'s downloads`;
    downloads?.setOwner(owner);
  }
  $("main").hidden = false;

  let busy = false; // a batch is running: actions and view switches wait
  const table = new PostTable(api, {
    onChange: () => refreshControls(), onError, describeFilter: (filter) => filterWords(filter),
    onTarget: namedTarget,
  });
  const titleOf = (id) => table.titleOf(id);
  // An undo or a policy's run: nothing else acts meanwhile, and the list shows the posts as
  // the server holds them afterwards.
  async function exclusive(work) {
    busy = true;
    refreshControls();
    // The last batch's result line no longer says how the posts are.
    $("batch").hidden = true;
    $("batch-error").hidden = true;
    try {
      await work();
    } finally {
      busy = false;
      await table.load(table.view);
    }
  }
  // Undo: each action's Undo is in "Recent actions", which every action refreshes.
  const recent = new RecentActions(api, {
    toast, onError, titleOf, busy: () => busy, exclusive, highlightId: params.get("action"),
  });
  // A policy writes its filter as the list's, in the same words.
  const cleanup = new Cleanup(api, {
    toast, confirmAction, onError, exclusive, busy: () => busy,
    listFilter: () => ({ json: filterJson(table.filter), words: filterWords(table.filter) }),
    describeFilter: (json) => filterWords(Object.fromEntries(Object.entries(json)
      .filter(([key]) => FORM_KEYS.includes(key))
      .map(([key, value]) => [key, Array.isArray(value) ? value : String(value)]))),
    onRun: () => recent.refresh(), highlightId: params.get("policy"),
  });
  // Exports are the owner's alone: a moderator looking at someone's posts never sees them.
  const exportsPanel = targetSqid
    ? null
    : new Exports(api, { toast, confirmAction, onError, highlightId: params.get("export") });
  // Posts changed elsewhere reach the table over the downloads' stream; while a batch of this
  // page runs they wait for its end (a batch by filter reloads the list then anyway).
  let heldChanges = [];
  // A change made elsewhere (another device, a moderator) is an action "Recent actions" lists.
  const postsFeed = {
    changed(change) {
      if (busy) heldChanges.push(change);
      else table.changed(change);
      if (!busy) recent.refresh();
      // A scheduled run is such a change: its policy's last run is new.
      if (!busy) cleanup.refresh();
    },
  };
  function release() {
    const held = heldChanges;
    heldChanges = [];
    for (const change of held) table.changed(change);
  }
  downloads = new Downloads(api, {
    toast, confirmAction, onError, highlightId, exportsFeed: exportsPanel, postsFeed,
    onChange: () => refreshControls(),
  });

  function refreshControls() {
    const n = table.allMatching ? table.total : table.selected.size;
    $("selected-count").textContent = table.allMatching ? `All ${count(n)} matching` : count(n);
    const matching = $("select-matching");
    // Without a filter, once everything is loaded, "Select all loaded" is the same set.
    const unfiltered = Object.keys(table.filter).length === 0;
    matching.hidden = !table.total || table.allMatching || (table.done && unfiltered);
    matching.textContent = `Select all ${count(table.total)} matching`;
    matching.disabled = busy;
    for (const b of document.querySelectorAll("[data-needs-selection]")) b.disabled = n === 0 || busy;
    $("view-live").disabled = busy;
    $("view-deleted").disabled = busy;
    recent.setDisabled(busy);
    cleanup.setDisabled(busy);
    const why = $("bdr-why");
    const request = $("bdr-request");
    // Today's requests used up: the button waits for the reset, and says when it is.
    const reached = downloads?.limitReached();
    request.disabled = busy || n === 0 || n > MAX_BATCH || table.view !== "live" ||
      (table.allMatching && table.posts.length < table.total) || Boolean(reached);
    request.textContent = n ? `Request download of ${plural(n, "post")}` : "Request download";
    if (reached) why.textContent = limitWords(reached);
    else if (table.view !== "live") why.textContent = "Switch to Posts to download.";
    else if (n === 0) why.textContent = "Select the posts to put in the ZIP.";
    else if (n > MAX_BATCH) {
      why.textContent = `A download holds at most ${MAX_BATCH} posts; ${count(n)} are selected. ` +
        `Unselect ${count(n - MAX_BATCH)}, or request several downloads.`;
    } else why.textContent = "";
  }

  function limitWords({ limit, resetAt }) {
    const when = new Date(resetAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const made = limit
      ? `You have made the ${plural(limit, "download request")} a day allows.`
      : "You have made as many download requests as a day allows.";
    return `${made} The next can be requested at ${when} your time ` +
      `(in ${inWords((resetAt - Date.now()) / 1000)}), when the day's count starts over.`;
  }

  // --- the filter, kept in the page's URL: the server's keys that the form has a field for ---
  const FORM_KEYS = FILTER_KEYS.filter((key) => $(`f-${key}`));
  const LISTS = new Set(LIST_KEYS);
  function filterFromForm() {
    const out = {};
    for (const key of FORM_KEYS) {
      const value = $(`f-${key}`).value.trim();
      if (!value) continue;
      out[key] = LISTS.has(key)
        ? value.split(",").map((t) => t.trim()).filter(Boolean)
        : value;
    }
    return out;
  }
  function showFilter(filter) {
    for (const key of FORM_KEYS) {
      const value = filter[key];
      $(`f-${key}`).value = Array.isArray(value) ? value.join(", ") : value ?? "";
    }
  }
  function filterFromUrl() {
    const out = {};
    for (const key of FORM_KEYS) {
      const values = params.getAll(key).filter(Boolean);
      if (values.length) out[key] = LISTS.has(key) ? values : values[0];
    }
    return out;
  }
  function keepInUrl(filter) {
    const url = new URL(location.href);
    for (const key of FORM_KEYS) url.searchParams.delete(key);
    for (const [key, value] of Object.entries(filter)) {
      for (const one of Array.isArray(value) ? value : [value]) url.searchParams.append(key, one);
    }
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    cleanup.listFilterChanged();
  }
  // As an action's body wants it: flags as booleans, counts as numbers, tags as a list.
  const FLAGS = new Set(FLAG_KEYS);
  const NUMBERS = new Set(NUMBER_KEYS);
  function filterJson(filter) {
    const out = {};
    for (const [key, value] of Object.entries(filter)) {
      out[key] = FLAGS.has(key) ? value === "true" : NUMBERS.has(key) ? Number(value) : value;
    }
    return out;
  }
  // The filter in the form's own words: "Tags: wip, Hidden: Visible".
  function filterWords(filter) {
    return Object.entries(filter).map(([key, value]) => {
      const field = $(`f-${key}`);
      const label = field.closest("label").firstChild.textContent.trim();
      const shown = field.tagName === "SELECT"
        ? [...field.options].find((o) => o.value === value)?.textContent ?? value
        : Array.isArray(value) ? value.join(", ") : value;
      return `${label}: ${shown}`;
    }).join(", ");
  }
  // The form's filter becomes the list's. One list request at a time: a change made while the
  // previous filter's request is out waits for it, and only the latest change is then applied.
  let applying = false;
  let applyAgain = false;
  let applyTimer = null;
  async function applyFilter({ always = true } = {}) {
    clearTimeout(applyTimer);
    applyTimer = null;
    if (busy) return;
    if (applying) {
      applyAgain = true;
      return;
    }
    applying = true;
    try {
      do {
        applyAgain = false;
        const filter = filterFromForm();
        // A choice set back to what the list shows changes nothing to fetch.
        if (!always && JSON.stringify(filter) === JSON.stringify(table.filter)) continue;
        await table.settle();
        if (busy) return;
        table.filter = applyAgain ? filterFromForm() : filter;
        keepInUrl(table.filter);
        table.load(table.view);
        always = false;
      } while (applyAgain);
    } finally {
      applying = false;
    }
  }
  // Choices (menus, dates) apply as they change, once the person pauses; during a batch they
  // wait for its end. Typed fields (search, tags, counts) wait for "Filter" or Enter.
  const CHOICE_PAUSE_MS = 300;
  function applySoon() {
    clearTimeout(applyTimer);
    applyTimer = setTimeout(() => (busy ? applySoon() : applyFilter({ always: false })),
      CHOICE_PAUSE_MS);
  }
  for (const field of $("filters").querySelectorAll("select, input[type=date], input[type=checkbox]")) {
    field.addEventListener("change", applySoon);
  }
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyFilter();
  });
  function resetFilter() {
    if (busy) return;
    showFilter({});
    applyFilter();
  }
  $("f-reset").addEventListener("click", resetFilter);
  $("empty-reset").addEventListener("click", () => {
    resetFilter();
    $("f-q").focus(); // the button is gone with the empty list
  });

  // Everything the filter matches, in one request the server runs only on the count approved.
  // Afterwards the selection is still "all matching" when the filter matches the very same
  // posts (a hide by tag): a second action is one click, as after a batch of selected posts. When
  // the action took them out of the filter (a delete, a hide under "Visible"), nothing is
  // selected: the posts the filter matches then are others, never acted on by surprise.
  async function batchMatching(action, body) {
    const { view, digest, total } = table;
    busy = true;
    refreshControls();
    showNotice("");
    startBatchLine(`${ACTION_WORDS[action].doing} ${plural(total, "post")}…`);
    $("batch").focus();
    let message = null;
    let stayed = "";
    let actedOn = 0;
    try {
      const answer = await api.post(ENDPOINTS[action], {
        ...body, filter: filterJson(table.filter), expect_count: total,
        expect_digest: digest ?? undefined,
      });
      actedOn = answer.affected_count;
      message = `${outcome(action, answer.changed_count, answer.affected_count)}.`;
      if (answer.left_count) stayed = ` ${stayedOut(answer.left_count, answer.left)}`;
    } catch (error) {
      // 409: the posts that match are not the ones approved (their number, or with the same
      // number other posts); the list shows them again.
      const { reason, limit } = error.problem?.details ?? {};
      if (reason === "too_many_posts" && limit > 0) keepBulkMax(limit);
      $("batch").hidden = true;
      $("batch-error").textContent = explain(error, titleOf);
      $("batch-error").hidden = false;
      if (error.status === 401 || accountRefused(error)) onError(error);
    }
    try {
      // The list again, as the server holds it now; changes told meanwhile wait for it (a
      // reload in place then, which keeps the selection).
      heldChanges = [];
      await table.load(view);
      if (message === null) return;
      const same = view === table.view && table.digest === digest && table.total === total;
      const moving = MOVING.includes(action);
      if (same && !moving) {
        table.selectMatching();
        message += ` ${whereNow(action)}`;
      } else if (RESTORING.includes(action)) {
        if (actedOn) message += ` ${whereNow(action)}`;
        message += stayed;
      } else if (moving) message += ` ${whereNow(action)}`;
      else message += " They no longer match the filter.";
      $("batch-progress").max = 1;
      $("batch-progress").value = 1;
      $("batch-text").textContent = message;
    } finally {
      busy = false;
      release();
      refreshControls();
      recent.refresh();
    }
  }

  // What a restore of everything matching left in "Recently deleted", and why: the rows stay
  // in the list, each saying why it can't be restored here.
  const STAYED_WHY = {
    "deleted-by-moderator": "deleted by a moderator (only a moderator can restore it)",
    "artwork-reuploaded": "the same artwork is now another post",
    "same-artwork": "the same artwork as another deleted post (select one of them to restore it)",
  };
  function stayedOut(n, groups) {
    const why = groups.map((g) => `${count(g.count)} ${STAYED_WHY[g.reason] ?? g.reason}`);
    return `${plural(n, "post")} stayed in “Recently deleted”: ${why.join("; ")}.`;
  }

  // The server refuses an action by filter on more posts than its limit, after the person
  // confirmed it: the page says the limit first, and how to get under it, instead of asking.
  const BULK_MAX_KEY = "pmd.bulkMaxPosts";
  let bulkMax = Number(sessionStorage.getItem(BULK_MAX_KEY)) || BULK_MAX_POSTS;
  function keepBulkMax(limit) {
    bulkMax = limit;
    sessionStorage.setItem(BULK_MAX_KEY, String(limit));
  }
  function overTheLimit() {
    if (!table.allMatching || table.total <= bulkMax) return false;
    const narrow = Object.keys(table.filter).length ? "Narrow the filter" : "Filter the posts";
    showNotice("");
    $("batch").hidden = true;
    $("batch-error").textContent = `${count(table.total)} posts match, and one action changes ` +
      `at most ${count(bulkMax)}. ${narrow} (a tag, a license, a date range) to ` +
      `${count(bulkMax)} or fewer and act on each part in turn. Nothing was changed.`;
    $("batch-error").hidden = false;
    return true;
  }

  // Any action on more than one page of posts says how many first.
  async function confirmCount(verb, n) {
    if (n <= PAGE_SIZE) return true;
    return confirmAction({
      title: `${verb} ${plural(n, "post")}?`,
      text: table.allMatching
        ? "Every post that matches the filter, loaded or not. You can undo it for 24 hours."
        : "You can undo it for 24 hours.",
      ok: `${verb} ${plural(n, "post")}`,
    });
  }
  const effective = () => (table.allMatching ? table.total : table.selected.size);

  async function batch(action, send, options = {}) {
    const ids = [...table.selected];
    if (!ids.length) return;
    const { generation, view } = table;
    busy = true;
    refreshControls();
    showNotice("");
    // The clicked button is disabled while the batch runs; the status takes the focus.
    $("batch").hidden = false;
    $("batch").focus();
    try {
      // The batch line says how it went (and the error line what failed), once: no toast.
      const result = await runBatches(action, ids, send, (part) => {
        if (table.generation === generation) table.applied(action, part, options);
      }, titleOf);
      const signedOut = result.error?.status === 401 || accountRefused(result.error);
      if (!result.ok && signedOut) onError(result.error);
      if (!result.ok && !result.unknown && table.generation === generation) {
        // What failed stays selected, alone, to try again; what was done is done.
        table.deselect(result.doneIds);
      }
      if (result.unknown && table.generation === generation) {
        // Show what the server holds, and keep selected what is still there to retry.
        await table.load(view, result.leftIds);
      }
    } finally {
      busy = false;
      release();
      refreshControls();
      recent.refresh();
    }
  }

  // `click_id`: the click the batch belongs to (runBatches makes it), one Undo for all of it.
  const act = (action) => (part, click_id) =>
    api.post("/api/pmd/action", { action, post_ids: part, click_id });
  // A restore of picked posts leaves out the rows the listing marks as not restorable (an
  // artwork uploaded again, a moderator's delete): the server would refuse the whole batch for
  // them. "All matching" goes as it is: the server restores what may be restored and says what
  // stayed, loaded or not.
  function leaveOutUnrestorable() {
    if (table.view !== "deleted" || table.allMatching) return true;
    const blocked = table.posts.filter((p) => p.restorable === false && table.selected.has(p.id));
    if (!blocked.length) return true;
    table.deselect(blocked.map((p) => p.id));
    toast(`${plural(blocked.length, "post")} can't be restored (see why in the list) and ` +
      `${blocked.length === 1 ? "was" : "were"} left out.`, "error");
    return table.selected.size > 0;
  }
  for (const action of ["hide", "unhide", "restore"]) {
    $(`act-${action}`).addEventListener("click", async () => {
      if (overTheLimit()) return;
      if (action === "restore" && !leaveOutUnrestorable()) return;
      if (!(await confirmCount(ACTION_WORDS[action].verb, effective()))) return;
      if (table.allMatching) await batchMatching(action, { action });
      else await batch(action, act(action), { asModerator: Boolean(targetSqid) });
    });
  }
  $("act-delete").addEventListener("click", async () => {
    if (overTheLimit()) return;
    const n = effective();
    const sure = await confirmAction({
      title: `Delete ${plural(n, "post")}?`,
      text: "They disappear from your profile at once. You can restore them from " +
        `“Recently deleted” for ${RESTORE_WINDOW_DAYS} days.`,
      ok: `Delete ${plural(n, "post")}`,
      danger: true,
    });
    if (!sure) return;
    if (table.allMatching) await batchMatching("delete", { action: "delete" });
    else await batch("delete", act("delete"));
  });
  $("act-license").addEventListener("click", async () => {
    if (overTheLimit()) return;
    const select = $("license-select");
    const id = select.value ? Number(select.value) : null;
    const identifier = id ? select.selectedOptions[0].dataset.identifier || null : null;
    const n = effective();
    if (id === null) {
      // Removing a license is a choice of the same menu: it asks first.
      const sure = await confirmAction({
        title: `Remove the license of ${plural(n, "post")}?`,
        text: "They will show no license until you set one again. You can undo it for 24 hours.",
        ok: `Remove the license of ${plural(n, "post")}`,
      });
      if (!sure) return;
    } else if (!(await confirmCount(ACTION_WORDS.license.verb, n))) return;
    if (table.allMatching) await batchMatching("license", { license_id: id });
    else {
      await batch("license", (part, click_id) =>
        api.post("/api/pmd/license", { post_ids: part, license_id: id, click_id }),
      { license: identifier });
    }
  });

  const tagList = (id) => $(id).value.split(",").map((t) => t.trim()).filter(Boolean);
  $("act-tags").addEventListener("click", async () => {
    const add = tagList("tags-add");
    const remove = tagList("tags-remove");
    if (!add.length && !remove.length) {
      toast("Write the tags to add or to remove first (separated by commas).", "error");
      return;
    }
    if (overTheLimit()) return;
    if (!(await confirmCount(ACTION_WORDS.tags.verb, effective()))) return;
    // Both fields empty once the retag is sent: a later "remove" alone must not add these
    // tags again (the batch line says what was done).
    $("tags-add").value = "";
    $("tags-remove").value = "";
    const body = { action: "tags", add, remove };
    if (table.allMatching) await batchMatching("tags", body);
    else {
      await batch("tags", (part, click_id) =>
        api.post("/api/pmd/action", { ...body, post_ids: part, click_id }));
    }
  });
  for (const [id, value] of [["act-remix-on", true], ["act-remix-off", false]]) {
    $(id).addEventListener("click", async () => {
      if (overTheLimit()) return;
      if (!(await confirmCount(value ? "Allow remixes of" : "Forbid remixes of", effective()))) {
        return;
      }
      const body = { action: "remixable", value };
      if (table.allMatching) await batchMatching("remixable", body);
      else {
        await batch("remixable", (part, click_id) =>
          api.post("/api/pmd/action", { ...body, post_ids: part, click_id }),
        { remixable: value });
      }
    });
  }

  $("select-page").addEventListener("click", () => table.selectPage());
  $("select-loaded").addEventListener("click", () => table.selectLoaded());
  $("select-matching").addEventListener("click", () => table.selectMatching());
  $("select-clear").addEventListener("click", () => table.clearSelection());
  $("page-first").addEventListener("click", () => table.goTo(0));
  $("page-prev").addEventListener("click", () => table.goTo(table.page - 1));
  $("page-next").addEventListener("click", () => table.goTo(table.page + 1));
  $("page-last").addEventListener("click", () => table.goTo(table.pageCount - 1));
  $("page-go").addEventListener("submit", (ev) => {
    ev.preventDefault();
    table.goTo(Number($("page-input").value) - 1);
  });

  $("license-select").addEventListener("change", (ev) => {
    ev.target.title = ev.target.selectedOptions[0]?.title ?? "";
  });
  $("sort-select").addEventListener("change", (ev) => {
    const [key, dir] = ev.target.value.split(":");
    table.sortTo(key, dir);
  });

  function switchView(view) {
    if (view === table.view || busy) return; // the same view: keep the selection
    $("view-live").setAttribute("aria-pressed", String(view === "live"));
    $("view-deleted").setAttribute("aria-pressed", String(view === "deleted"));
    $("view-title").textContent = view === "live" ? "Posts" : "Recently deleted";
    for (const part of document.querySelectorAll(".live-actions")) part.hidden = view !== "live";
    document.querySelector(".deleted-actions").hidden = view !== "deleted";
    $("batch").hidden = true;
    $("batch-error").hidden = true;
    table.load(view);
  }
  $("view-live").addEventListener("click", () => switchView("live"));
  $("view-deleted").addEventListener("click", () => switchView("deleted"));

  $("bdr-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const ids = [...table.selected];
    if (!ids.length || ids.length > MAX_BATCH) return;
    const request = $("bdr-request");
    request.disabled = true;
    const options = {
      include_comments: $("bdr-comments").checked,
      include_reactions: $("bdr-reactions").checked,
      include_layers: $("bdr-layers").checked,
      send_email: $("bdr-email").checked,
    };
    try {
      try {
        // A download of exactly these posts that still serves is named, not built again.
        await downloads.request(ids, { ...options, repeat: false });
      } catch (error) {
        if (error.problem?.details?.reason !== "bdr_repeated") throw error;
        const { bdr_id: id, status } = error.problem.details;
        downloads.show(id);
        // Using the one made already is the default: a new one spends a request of the day's.
        const insist = await confirmAction({
          title: "You asked for these posts already",
          text: `A download of exactly ${ids.length === 1 ? "this post" : `these ${plural(ids.length, "post")}`} ` +
            `${status === "ready" ? "is ready" : "is on its way"}: it is highlighted under ` +
            "“Downloads”. A new one counts against today's limit.",
          ok: "Request a new one anyway",
          cancel: "Use that one",
          keep: true,
        });
        if (!insist) return;
        await downloads.request(ids, { ...options, repeat: true });
      }
      toast(`Download of ${plural(ids.length, "post")} requested; follow it in the panel.`, "ok");
    } catch (error) {
      if (error.problem?.details?.reason === "bdr_daily_limit") downloads.refusedForToday(error);
      if (error.status === 401 || accountRefused(error)) onError(error);
      // A daily limit is a wait, not a failure: no red (red is for deleting).
      else toast(explain(error), error.status === 429 ? "wait" : "error");
    } finally {
      refreshControls();
    }
  });

  api.get("/api/pmd/licenses").then(({ items }) => {
    const select = $("license-select");
    for (const l of items) {
      if (l.identifier) {
        const choice = document.createElement("option");
        choice.value = l.identifier;
        choice.textContent = l.identifier;
        if (l.title && l.title !== l.identifier) choice.title = l.title;
        $("f-license").append(choice);
      }
      // The identifier, as the table shows it, keeps the menu narrow enough for the toolbar
      // on any screen; the license's full name is its tooltip.
      const option = document.createElement("option");
      option.value = String(l.id);
      option.dataset.identifier = l.identifier || "";
      option.textContent = l.identifier || l.title;
      if (l.title && l.title !== l.identifier) option.title = l.title;
      select.append(option);
    }
    table.setLicenseNames(new Map(items.filter((l) => l.identifier && l.title)
      .map((l) => [l.identifier, l.title])));
    select.title = select.selectedOptions[0]?.title ?? "";
    // A filter from the page's URL names its license before the menu holds it.
    $("f-license").value = table.filter.license ?? "";
  }, onError);

  table.filter = filterFromUrl();
  showFilter(table.filter);
  table.load("live");
  recent.refresh();
  cleanup.start();
  exportsPanel?.start();
  downloads.start();
}

boot();
