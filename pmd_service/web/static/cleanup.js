// The "Cleanup" panel: the target's cleanup policies (GET /api/pmd/policies), each with its
// last and next run, and a form that writes one with its live count (POST
// /api/pmd/policies/preview) before it is saved bound to that count, or edits a saved one
// (PATCH with only the fields changed; a change that widens it asks for its new count).
//
// A moderator reads the list and may pause a policy; everything else is the owner's. With the
// site's CLEANUP_POLICIES off every endpoint answers 404 `policies_off` and the panel stays
// hidden.

import { explain } from "./api.js";
import * as fmt from "./format.js";
import { el, timeEl } from "./ui.js";

const POLICIES = "/api/pmd/policies";
// The preview waits for the person to pause typing, so a count is asked once per change.
const PREVIEW_PAUSE_MS = 400;
// The sample's titles shown under the count; the rest are counted.
const SAMPLE_SHOWN = 5;
const MAX_DAYS = 3650;
// The 409s that carry the count (and set) a run would change now, to approve again.
const APPROVAL = new Set(["count_changed", "set_changed", "policy_widens"]);

const VERB = { hide: "hide", delete: "delete" };
const DID = { hide: "hid", delete: "deleted" };
const DOES = { hide: "Hides", delete: "Deletes" };

// Why a run failed, for the codes a run records (docs/errors.md); any other is named as is.
const FAILED = {
  invalid_filter: "its filter names what the site no longer has (a license?)",
  internal: "the server failed; the next run tries again",
  policy_run_timeout: "it took longer than a run may (a post it needed was busy); the next " +
    "run tries again",
  account_banned: "the account is banned; no policy of it runs meanwhile",
  account_deactivated: "the account is deactivated; no policy of it runs meanwhile",
  user_not_found: "the account is gone",
};
const failedWords = (code) => FAILED[code] ?? code ?? "unknown";

// The fields an edit compares with the saved policy: `enabled` is the Pause and Resume buttons'.
const EDITABLE = ["action", "older_than_days", "filter", "keep", "every", "notify"];
// A value as JSON with its keys in order, to compare a saved field with the form's.
const canonical = (value) => JSON.stringify(value, (_, v) => (v && typeof v === "object" &&
  !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
  : v));

// The form's field of each field a problem+json names (`errors[].field`), for its label.
const FIELD_INPUTS = {
  name: "cleanup-name", action: "cleanup-action", older_than_days: "cleanup-days",
  every: "cleanup-every", notify: "cleanup-notify", "filter.hashtag": "cleanup-tags",
  "keep.hashtags": "cleanup-keep-tags", "keep.min_reactions": "cleanup-keep-reactions",
  "keep.min_comments": "cleanup-keep-comments", "keep.min_views": "cleanup-keep-views",
  "keep.has_layers": "cleanup-keep-layers",
};

// A field's name as the form shows it.
const labelOf = (input) => (input.getAttribute("aria-label") ?? input.labels?.[0]?.textContent ?? "")
  .replace(/\s+/g, " ").trim();

// The validator's bounds ("Expected `int` <= 2147483647") in the page's words; any other
// message is the server's own sentence already.
function boundWords(message) {
  if (!message.startsWith("Expected")) return message;
  const unit = /`str`/.test(message) ? " characters" : /`array`/.test(message) ? " of them" : "";
  let m = /<= (\d+)/.exec(message);
  if (m) return `at most ${fmt.count(Number(m[1]))}${unit}`;
  m = />= (\d+)/.exec(message);
  if (m) return `at least ${fmt.count(Number(m[1]))}${unit}`;
  if (/`int`/.test(message)) return "a whole number";
  return "not a value it takes";
}

const tagList = (text) => text.split(",").map((t) => t.trim().replace(/^#/, "")).filter(Boolean);
const reasonOf = (error) => error.problem?.details?.reason;

// "tagged keep or best, with at least 3 reactions": what a policy always keeps.
function keepWords(keep) {
  const parts = [];
  if (keep.hashtags?.length) parts.push(`tagged ${keep.hashtags.join(" or ")}`);
  for (const [key, noun] of [["min_reactions", "reaction"], ["min_comments", "comment"],
    ["min_views", "view"]]) {
    if (keep[key] !== undefined && keep[key] !== null) {
      parts.push(`with at least ${fmt.plural(keep[key], noun)}`);
    }
  }
  if (keep.has_layers === true) parts.push("with a layers file");
  if (keep.has_layers === false) parts.push("without a layers file");
  if (keep.remixable === true) parts.push("open to remixes");
  if (keep.remixable === false) parts.push("closed to remixes");
  return parts.join(" or ");
}

export class Cleanup {
  // `exclusive(work)`: runs a policy now as the page runs a batch and shows the posts as the
  // server holds them after it; `busy()`: a batch is running; `listFilter()`: the posts list's
  // filter, {json, words}; `describeFilter(json)`: a stored filter in the form's words;
  // `onRun()`: a run changed posts ("Recent actions" lists it); `highlightId`: the policy an
  // email links to (`?policy=`), highlighted and scrolled to once the list comes.
  constructor(api, {
    toast, confirmAction, onError, exclusive, busy, listFilter, describeFilter, onRun,
    highlightId = null,
  }) {
    this.api = api;
    this.asModerator = Boolean(api.targetSqid);
    Object.assign(this, {
      toast, confirmAction, onError, exclusive, busy, listFilter, describeFilter, onRun,
      highlightId,
    });
    this.revealed = false;
    this.items = [];
    this.limit = null;
    this.loaded = false;
    this.seq = 0;
    this.previewSeq = 0;
    this.previewTimer = null;
    this.shown = null; // the preview on screen: {key, count, digest}
    this.pendingKey = null; // the fields of the preview on its way
    this.saving = false;
    this.editing = null; // the saved policy the form edits, else it writes a new one
    this.gone = false; // the site has policies off
    const $ = (id) => document.getElementById(id);
    this.$ = $;
    this.section = $("cleanup");
    this.list = $("cleanup-list");
    this.empty = $("cleanup-empty");
    this.form = $("cleanup-form");
    this.count = $("cleanup-count");
    this.sample = $("cleanup-sample");
    this.message = $("cleanup-message");
    this.save = $("cleanup-save");
    this.list.addEventListener("click", (ev) => this.onClick(ev));
    if (this.asModerator) return;
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (this.save.getAttribute("aria-disabled") !== "true") {
        if (this.editing) this.change();
        else this.create();
      }
    });
    $("cleanup-cancel").addEventListener("click", () => this.stopEditing());
    // The name changes nothing a run would do: only the other fields count again.
    const changed = (ev) => {
      if (ev.target.id === "cleanup-name") return;
      if (ev.target.id === "cleanup-tags") this.choose("tags");
      this.previewSoon();
    };
    this.form.addEventListener("input", changed);
    this.form.addEventListener("change", changed);
  }

  async start() {
    if (!(await this.refresh())) return;
    this.section.hidden = false;
    if (this.asModerator) {
      this.$("cleanup-readonly").hidden = false;
      return;
    }
    this.form.hidden = false;
    this.listFilterChanged();
    this.preview();
  }

  // The list again (after a change, a run, posts changed elsewhere); false when the panel is
  // not for this page (turned off on the site, or the sign-in is refused).
  async refresh() {
    if (this.gone) return false;
    // Refreshes may overlap (a run, the stream): only the latest one shows.
    const seq = ++this.seq;
    try {
      const listed = await this.api.get(POLICIES);
      if (seq !== this.seq) return true;
      this.items = listed.items;
      this.limit = listed.limit;
      this.loaded = true;
      // An edit compares with the policy as saved now; one deleted meanwhile ends it.
      if (this.editing) {
        const now = this.items.find((p) => p.id === this.editing.id);
        if (now) this.editing = now;
        else this.stopEditing();
      }
    } catch (error) {
      if (this.off(error) || error.status === 401) return false;
      if (!this.loaded) this.empty.textContent = `Not loaded: ${explain(error)}`;
      return true;
    }
    this.render();
    return true;
  }

  // Turned off on the site meanwhile (or from the start): the panel goes.
  off(error) {
    if (error.status === 401) this.onError(error);
    if (reasonOf(error) !== "policies_off") return false;
    this.gone = true; // not asked again: the setting changes only with a restart
    this.section.hidden = true;
    return true;
  }

  // While a batch runs, no policy runs from here; a button a moderator's pause locks stays so.
  setDisabled(disabled) {
    for (const b of this.list.querySelectorAll("button")) {
      b.disabled = disabled || b.dataset.locked === "true";
    }
  }

  // --- the form ---

  choose(which) {
    const radio = this.form.querySelector(`input[name="cleanup-which"][value="${which}"]`);
    if (!radio.checked) radio.checked = true;
  }

  // The list's filter as the third choice says it; without one that choice is off.
  listFilterChanged() {
    if (this.asModerator) return;
    const { words } = this.listFilter();
    const radio = this.$("cleanup-which-list");
    this.$("cleanup-list-filter").textContent = words
      ? `Posts the list's filter matches (${words})`
      : "Posts the list's filter matches (the list has no filter now)";
    radio.disabled = !words;
    if (!words && radio.checked) this.choose("all");
    if (radio.checked || !words) this.previewSoon();
  }

  // A number field's bounds in its own words: what to fix before anything is sent.
  rangeWords(input) {
    return `“${labelOf(input)}” takes a whole number from ${fmt.count(Number(input.min))} to ` +
      `${fmt.count(Number(input.max))}.`;
  }

  // The policy the form writes, or a sentence saying what to fix first (and its field).
  fields() {
    const $ = this.$;
    const days = $("cleanup-days");
    if (!days.value || !days.checkValidity()) {
      return { problem: `“Older than” takes a whole number of days, 1 to ${fmt.count(MAX_DAYS)}.`,
        input: days };
    }
    const which = this.form.querySelector('input[name="cleanup-which"]:checked').value;
    let filter = {};
    if (which === "tags") {
      const tags = tagList($("cleanup-tags").value);
      if (!tags.length) return { problem: "Write the tags of the posts to tidy." };
      filter = { hashtag: tags };
    } else if (which === "list") {
      filter = this.listFilter().json;
    } else if (which === "saved") {
      filter = this.editing?.filter ?? {};
    }
    // What the form has no field for stays as the edited policy has it.
    const saved = this.editing?.keep ?? {};
    const keep = {};
    if (typeof saved.remixable === "boolean") keep.remixable = saved.remixable;
    if (saved.has_layers === false) keep.has_layers = false;
    const keepTags = tagList($("cleanup-keep-tags").value);
    if (keepTags.length) keep.hashtags = keepTags;
    for (const [id, key] of [["cleanup-keep-reactions", "min_reactions"],
      ["cleanup-keep-comments", "min_comments"], ["cleanup-keep-views", "min_views"]]) {
      const field = $(id);
      if (!field.value) continue;
      if (!field.checkValidity()) return { problem: this.rangeWords(field), input: field };
      keep[key] = Number(field.value);
    }
    if ($("cleanup-keep-layers").checked) keep.has_layers = true;
    return {
      fields: {
        action: $("cleanup-action").value,
        older_than_days: Number(days.value),
        filter,
        keep,
        every: $("cleanup-every").value,
        enabled: true,
        notify: $("cleanup-notify").checked,
      },
    };
  }

  // The field a problem is about is marked invalid (for assistive technology); the others not.
  markInvalid(inputs = []) {
    for (const field of this.form.querySelectorAll("[aria-invalid]")) {
      field.removeAttribute("aria-invalid");
    }
    for (const field of inputs) field.setAttribute("aria-invalid", "true");
  }

  // A refusal naming fields (problem+json `errors`), in the form's words: each field by its
  // label, with its bounds; else the problem's own sentence.
  explainFields(error) {
    const named = (error.errors ?? []).map(({ field, message }) => {
      const input = this.$(FIELD_INPUTS[String(field).replace(/\[\d+\]$/, "")]);
      return { input, words: `“${input ? labelOf(input) : field}”: ${boundWords(String(message))}` };
    });
    this.markInvalid(named.map((n) => n.input).filter(Boolean));
    return named.length ? `${named.map((n) => n.words).join("; ")}.` : explain(error);
  }

  // The fields as a preview counts them (for the policy edited), or null while one needs fixing.
  key() {
    const { fields } = this.fields();
    return fields ? this.keyOf(fields) : null;
  }

  keyOf(fields) {
    return JSON.stringify([this.editing?.id ?? null, fields]);
  }

  // A field left (a `change` as the focus moves to "Save policy") changes nothing to count:
  // the count on screen, or the one on its way, stays.
  previewSoon() {
    const key = this.key();
    if (key !== null && (key === this.shown?.key || key === this.pendingKey)) return;
    clearTimeout(this.previewTimer);
    this.shown = null;
    this.pendingKey = key;
    this.showSave();
    this.previewTimer = setTimeout(() => this.preview(), PREVIEW_PAUSE_MS);
  }

  // The count and the oldest posts a run of the form's policy would change now.
  async preview() {
    clearTimeout(this.previewTimer);
    const seq = ++this.previewSeq;
    const { fields, problem, input } = this.fields();
    this.shown = null;
    this.pendingKey = fields ? this.keyOf(fields) : null;
    this.showSave();
    this.markInvalid(input ? [input] : []);
    if (problem) {
      this.count.textContent = problem;
      this.sample.replaceChildren();
      return;
    }
    this.count.textContent = "Counting…";
    let answer;
    try {
      // The name is the server's to check on saving; any will do for a count. A saved policy
      // is counted as its run counts: without the posts its owner took back from it.
      const saved = this.editing ? { policy_id: this.editing.id } : {};
      answer = await this.api.post(`${POLICIES}/preview`, { ...fields, name: "preview", ...saved });
    } catch (error) {
      if (seq !== this.previewSeq || this.off(error)) return;
      this.pendingKey = null;
      this.count.textContent = this.explainFields(error);
      this.sample.replaceChildren();
      return;
    }
    if (seq !== this.previewSeq) return;
    this.pendingKey = null;
    this.showPreview(fields, answer);
  }

  showPreview(fields, answer) {
    const verb = VERB[fields.action];
    this.shown = { key: this.keyOf(fields), count: answer.count, digest: answer.match_digest };
    this.count.textContent = answer.count
      ? `Would ${verb} ${fmt.plural(answer.count, "post")} now, the oldest first:`
      : `Would ${verb} no post now${this.editing ? "." : ": none matches yet."}`;
    const items = answer.sample.slice(0, SAMPLE_SHOWN).map((post) => {
      const li = el("li", "", `“${post.title}” `);
      li.append(el("span", "muted", "uploaded "), timeEl(post.created_at, fmt.date(post.created_at)));
      return li;
    });
    const more = answer.count - items.length;
    if (items.length && more > 0) items.push(el("li", "muted", `and ${fmt.count(more)} more`));
    this.sample.replaceChildren(...items);
    this.showSave();
  }

  // Saving sends the count on screen: it waits (aria-disabled, the focus stays) for the count
  // of the fields as they are.
  showSave() {
    const ready = this.shown && this.shown.key === this.key();
    if (ready && !this.saving) this.save.removeAttribute("aria-disabled");
    else this.save.setAttribute("aria-disabled", "true");
  }

  say(text, kind = "error") {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
    this.message.hidden = !text;
  }

  async create() {
    const name = this.$("cleanup-name");
    if (!name.value.trim()) {
      this.say("Give the policy a name first (what it does, for you to recognise it).");
      name.focus();
      return;
    }
    if (this.limit !== null && this.items.length >= this.limit) {
      this.say(`An account may have ${fmt.plural(this.limit, "cleanup policy", "cleanup policies")}: ` +
        "delete one to write another.", "info");
      return;
    }
    const { fields } = this.fields();
    const { count, digest } = this.shown;
    if (fields.action === "delete") {
      const sure = await this.confirmAction({
        title: `Save a policy that deletes ${fmt.plural(count, "post")} now?`,
        text: `Its first run, within a minute, deletes them; then every ${fields.every}, what ` +
          `else grows old. Deleted posts can be restored from “Recently deleted” for ` +
          `${fmt.RESTORE_WINDOW_DAYS} days, and each run undone for 24 hours.`,
        ok: "Save policy",
        danger: true,
      });
      if (!sure) return;
    }
    this.say("");
    this.saving = true;
    this.showSave();
    try {
      const made = await this.api.post(POLICIES, {
        ...fields, name: name.value.trim(), expect_count: count, expect_digest: digest,
      });
      const n = made.preview?.count ?? count;
      this.toast(`Saved “${made.name}”. Its first run, within a minute, will ` +
        `${VERB[made.action]} ${fmt.plural(n, "post")}; “Run now” runs it at once.`, "ok");
      this.form.reset();
      this.listFilterChanged();
    } catch (error) {
      this.refused(error, count, fields.action);
    } finally {
      this.saving = false;
    }
    await this.refresh();
    await this.preview();
  }

  // The form takes a saved policy's fields, counted as its runs count them; saving sends only
  // what changed.
  edit(policy) {
    const $ = this.$;
    this.editing = policy;
    this.form.reset();
    $("cleanup-name").value = policy.name;
    $("cleanup-action").value = policy.action;
    $("cleanup-days").value = String(policy.older_than_days);
    $("cleanup-every").value = policy.every;
    $("cleanup-notify").checked = policy.notify;
    const filter = policy.filter ?? {};
    const keys = Object.keys(filter);
    const saved = $("cleanup-which-saved");
    // A filter the form has no field for (written from the list's, or through the API) stays.
    const own = keys.length > 0 && !(keys.length === 1 && Array.isArray(filter.hashtag));
    saved.disabled = !own;
    saved.closest("label").hidden = !own;
    if (own) {
      $("cleanup-saved-filter").textContent = `Posts its filter matches (${this.describeFilter(filter)})`;
      this.choose("saved");
    } else if (keys.length) {
      $("cleanup-tags").value = filter.hashtag.join(", ");
      this.choose("tags");
    }
    const keep = policy.keep ?? {};
    $("cleanup-keep-tags").value = (keep.hashtags ?? []).join(", ");
    for (const [id, key] of [["cleanup-keep-reactions", "min_reactions"],
      ["cleanup-keep-comments", "min_comments"], ["cleanup-keep-views", "min_views"]]) {
      $(id).value = keep[key] ?? "";
    }
    $("cleanup-keep-layers").checked = keep.has_layers === true;
    $("cleanup-new-title").textContent = `Edit “${policy.name}”`;
    this.save.textContent = "Save changes";
    $("cleanup-cancel").hidden = false;
    this.say("");
    this.listFilterChanged();
    this.preview();
    this.form.scrollIntoView({ block: "nearest" });
    $("cleanup-name").focus();
  }

  // Back to writing a new policy.
  stopEditing() {
    const $ = this.$;
    this.editing = null;
    this.form.reset();
    const saved = $("cleanup-which-saved");
    saved.disabled = true;
    saved.closest("label").hidden = true;
    $("cleanup-new-title").textContent = "A new policy";
    this.save.textContent = "Save policy";
    $("cleanup-cancel").hidden = true;
    this.say("");
    this.listFilterChanged();
    this.preview();
  }

  // PATCH with the fields changed; a change that widens the policy (or turns `hide` into
  // `delete`) is saved once its owner approves the count the server names.
  async change() {
    const policy = this.editing;
    const name = this.$("cleanup-name").value.trim();
    if (!name) {
      this.say("Give the policy a name (what it does, for you to recognise it).");
      this.$("cleanup-name").focus();
      return;
    }
    const { fields } = this.fields();
    const changes = {};
    if (name !== policy.name) changes.name = name;
    for (const key of EDITABLE) {
      if (canonical(fields[key]) !== canonical(policy[key])) changes[key] = fields[key];
    }
    if (!Object.keys(changes).length) {
      this.say("Nothing to save: the fields are as saved.", "info");
      return;
    }
    this.say("");
    this.saving = true;
    this.showSave();
    let saved = null;
    let failed = false;
    try {
      saved = await this.withApproval(
        (approval) => this.api.patch(`${POLICIES}/${policy.id}`, { ...changes, ...approval }),
        {
          title: `Save the changes to “${policy.name}”?`,
          text: (n) => `With them, a run would ${VERB[fields.action]} ${fmt.plural(n, "post")} ` +
            "now. Each run can be undone for 24 hours.",
          ok: "Save changes",
          danger: fields.action === "delete",
        },
      );
    } catch (error) {
      failed = true;
      this.refused(error, this.shown?.count, fields.action);
    } finally {
      this.saving = false;
    }
    if (saved) {
      this.toast(`Saved the changes to “${saved.name}”.`, "ok");
      this.stopEditing();
    } else {
      if (!failed) this.say("Nothing was saved: the policy is as it was.", "info");
      this.showSave();
    }
    await this.refresh();
  }

  // `send(approval)`; while the server answers that the posts a run would change are not the
  // approved ones (409), the person is shown their count and may approve it, then it is sent
  // again bound to it. The answer, or null when the person declined.
  async withApproval(send, { title, text, ok, danger }) {
    let approval = {};
    for (;;) {
      try {
        return await send(approval);
      } catch (error) {
        const details = error.problem?.details ?? {};
        if (error.status !== 409 || !APPROVAL.has(details.reason)) throw error;
        const before = approval.expect_count;
        const meanwhile = before === undefined ? ""
          : ` The posts changed meanwhile: not ${fmt.count(before)} any more.`;
        const sure = await this.confirmAction({
          title, text: text(details.count) + meanwhile, ok, danger,
        });
        if (!sure) return null;
        approval = { expect_count: details.count, expect_digest: details.match_digest };
      }
    }
  }

  refused(error, expected, action) {
    const details = error.problem?.details ?? {};
    if (this.off(error) || error.status === 401) return;
    if (error.status === 409 && APPROVAL.has(details.reason)) {
      // Posts changed since the count was shown: the new one is shown, to approve by saving again.
      const now = details.count === expected ? `${fmt.count(details.count)} posts, but others`
        : `${fmt.plural(details.count, "post")}, not ${fmt.count(expected)}`;
      this.say(`The posts changed meanwhile: it would ${VERB[action]} ${now} now. Nothing was ` +
        "saved; check them below and save again.", "info");
    } else if (reasonOf(error) === "too_many_policies") {
      this.say(`An account may have ${fmt.plural(details.limit, "cleanup policy", "cleanup policies")}: ` +
        "delete one to write another.", "info");
    } else {
      this.say(this.explainFields(error));
    }
  }

  // --- the list ---

  render() {
    this.list.replaceChildren(...this.items.map((p) => this.row(p)));
    const linked = this.highlightId
      && this.list.querySelector(`li[data-id="${CSS.escape(this.highlightId)}"]`);
    if (linked) {
      linked.classList.add("highlight");
      if (!this.revealed) {
        this.revealed = true;
        linked.scrollIntoView({ block: "center" });
      }
    }
    this.empty.hidden = this.items.length > 0;
    if (!this.items.length) {
      this.empty.textContent = this.asModerator
        ? "No cleanup policies." : "No cleanup policies yet: write one below.";
    }
    this.setDisabled(this.busy());
  }

  row(policy) {
    const li = el("li", "policy");
    li.dataset.id = policy.id;
    li.dataset.enabled = String(policy.enabled);
    // Fields a server before them does not send are false.
    const byModerator = policy.paused_by_moderator === true;
    li.dataset.pausedByModerator = String(byModerator);
    li.dataset.lastRun = policy.last_run?.status ?? "none";
    const head = el("div", "policy-head");
    const name = el("h3", "policy-name", policy.name);
    name.id = `policy-${policy.id}`;
    head.append(name);
    if (byModerator) head.append(el("span", "badge status-paused", "Paused by a moderator"));
    else if (!policy.enabled) head.append(el("span", "badge status-paused", "Paused"));
    const held = this.awaitsApproval(policy);
    if (held) head.append(el("span", "badge status-held", "Waiting for your approval"));
    if (policy.last_run?.status === "failed") {
      head.append(el("span", "badge status-failed", "Last run failed"));
    }
    const runs = this.runsLine(policy);
    runs.id = `policy-runs-${policy.id}`;
    li.append(head, el("p", "policy-rule", this.ruleWords(policy)), runs);
    const buttons = el("div", "policy-buttons");
    const button = (text, todo, cls = "") => {
      const b = el("button", cls, text);
      b.type = "button";
      b.dataset.do = todo;
      b.setAttribute("aria-describedby", name.id);
      buttons.append(b);
      return b;
    };
    if (held && !this.asModerator) {
      button(`Approve ${fmt.plural(held, "post")}…`, "approve", "primary");
    }
    if (!this.asModerator) button("Run now", "run");
    if (!this.asModerator) button("Edit", "edit");
    if (policy.enabled) button("Pause", "pause");
    else if (this.asModerator && byModerator) button("Lift the pause", "lift");
    else if (!this.asModerator) {
      const resume = button("Resume", "resume");
      if (byModerator) {
        // Only a moderator lifts their pause: the line above says so.
        resume.dataset.locked = "true";
        resume.disabled = true;
        resume.setAttribute("aria-describedby", `${name.id} ${runs.id}`);
      }
    }
    if (!this.asModerator) button("Delete policy…", "delete", "danger");
    if (buttons.children.length) li.append(buttons);
    return li;
  }

  // "Hides posts older than 365 days that match Tags: wip; keeps those tagged keep · every
  // week · emails you".
  ruleWords(policy) {
    const filter = Object.keys(policy.filter ?? {}).length ? this.describeFilter(policy.filter) : "";
    let rule = `${DOES[policy.action]} posts older than ${fmt.plural(policy.older_than_days, "day")}`;
    if (filter) rule += ` that match ${filter}`;
    const keep = keepWords(policy.keep ?? {});
    if (keep) rule += `; keeps those ${keep}`;
    const parts = [rule, `every ${policy.every}`];
    if (policy.notify) parts.push("emails you after a run that changed something");
    return parts.join(" · ");
  }

  // "Last run 2 minutes ago: hid 3 posts. Next run in 7 days." A run that stopped short or
  // failed says so: a policy is never silent about not running.
  runsLine(policy) {
    const p = el("p", "policy-runs");
    const last = policy.last_run;
    if (!last) {
      p.append("Not run yet.");
    } else {
      p.append("Last run ", timeEl(last.at, fmt.ago(last.at)));
      const did = DID[policy.action];
      if (last.status === "failed") {
        p.append(": ", el("span", "status-failed", `failed: ${failedWords(last.error_code)}.`));
      } else if (last.status === "held") {
        const approved = policy.approved_count;
        p.append(`: held, it changed nothing. It would ${VERB[policy.action]} ` +
          `${fmt.plural(last.left_count, "post")}, far more than the ` +
          `${approved === null || approved === undefined ? "" : `${fmt.count(approved)} `}` +
          `you approved; ${this.awaitsApproval(policy) ? "it waits for your approval."
            : "approved since: its next run takes them."}`);
      } else if (last.status === "deferred") {
        p.append(`: ${did} ${fmt.plural(last.changed_count, "post")}; ` +
          `${fmt.count(last.left_count)} left for the next run (the limit of posts changed ` +
          "at a time).");
      } else {
        p.append(last.changed_count
          ? `: ${did} ${fmt.plural(last.changed_count, "post")}.`
          : `: nothing to ${VERB[policy.action]}.`);
      }
    }
    p.append(" ");
    if (policy.paused_by_moderator === true) {
      p.append(this.asModerator
        ? "A moderator paused it: it stays paused until a moderator lifts that."
        : "A moderator paused it: only a moderator can lift that, then you can resume it.");
    } else if (!policy.enabled) {
      p.append("Paused: it does not run until resumed.");
    } else if (!policy.next_run_at || new Date(policy.next_run_at) <= Date.now()) {
      p.append("Next run within a minute.");
    } else {
      p.append("Next run ", timeEl(policy.next_run_at, fmt.relative(policy.next_run_at)), ".");
    }
    return p;
  }

  async onClick(ev) {
    const button = ev.target.closest("button[data-do]");
    if (!button || this.busy()) return;
    const policy = this.items.find((p) => p.id === button.closest("li").dataset.id);
    if (!policy) return;
    button.disabled = true;
    try {
      await this[button.dataset.do](policy);
    } finally {
      button.disabled = false;
    }
    await this.refresh();
  }

  // The posts a held run would change, while its owner has not approved that many; else 0.
  awaitsApproval(policy) {
    const last = policy.last_run;
    if (last?.status !== "held") return 0;
    const approved = policy.approved_count;
    return approved !== null && approved !== undefined && approved >= last.left_count
      ? 0 : last.left_count;
  }

  // A held run goes on once its owner approves the count it would change now.
  async approve(policy) {
    const n = this.awaitsApproval(policy);
    const dialog = {
      title: `Approve what “${policy.name}” would ${VERB[policy.action]}?`,
      text: (count) => `Its next run, within a minute, would ${VERB[policy.action]} ` +
        `${fmt.plural(count, "post")} now, far more than you approved before. Each run can be ` +
        "undone for 24 hours.",
      ok: "Approve",
      danger: policy.action === "delete",
    };
    if (!(await this.confirmAction({ ...dialog, text: dialog.text(n) }))) return;
    try {
      const approved = await this.withApproval(
        (approval) => this.api.patch(`${POLICIES}/${policy.id}`, { expect_count: n, ...approval }),
        dialog,
      );
      if (approved) this.toast(`Approved: “${policy.name}” runs within a minute.`, "ok");
    } catch (error) {
      this.failed(error);
    }
  }

  // A moderator lifts their pause; the owner then turns the policy on, with its count.
  async lift(policy) {
    try {
      await this.api.patch(`${POLICIES}/${policy.id}`, { paused_by_moderator: false });
      this.toast(`Lifted the pause of “${policy.name}”: its owner may resume it.`, "ok");
    } catch (error) {
      this.failed(error);
    }
  }

  async run(policy) {
    let ran = false;
    await this.exclusive(async () => {
      try {
        const { run } = await this.api.post(`${POLICIES}/${policy.id}/run`);
        ran = run.changed_count > 0;
        const kind = { failed: "error", held: "wait" }[run.status] ?? "ok";
        this.toast(this.ranWords(policy, run), kind);
      } catch (error) {
        this.failed(error);
      }
    });
    if (ran) this.onRun();
  }

  ranWords(policy, run) {
    const name = `“${policy.name}”`;
    if (run.status === "failed") return `${name} did not run: ${failedWords(run.error_code)}.`;
    if (run.status === "held") {
      return `${name} changed nothing: it would ${VERB[policy.action]} ` +
        `${fmt.plural(run.left_count, "post")}, far more than you approved. Approve them first.`;
    }
    if (!run.changed_count) return `${name} found nothing to ${VERB[policy.action]} now.`;
    const did = `${name} ${DID[policy.action]} ${fmt.plural(run.changed_count, "post")}`;
    if (run.status === "deferred") {
      return `${did}; ${fmt.count(run.left_count)} wait for its next run. Undo is under ` +
        "“Recent actions”.";
    }
    return `${did}. Undo is under “Recent actions”.`;
  }

  async pause(policy) {
    try {
      await this.api.patch(`${POLICIES}/${policy.id}`, { enabled: false });
      this.toast(`“${policy.name}” is paused: it does not run until resumed.`, "ok");
    } catch (error) {
      this.failed(error);
    }
  }

  // Turning a policy on is bound to the count its next run would change now: the server names
  // it (409), the person confirms it, and a count that changed again meanwhile is asked again.
  async resume(policy) {
    try {
      const resumed = await this.withApproval(
        (approval) => this.api.patch(`${POLICIES}/${policy.id}`, { enabled: true, ...approval }),
        {
          title: `Resume “${policy.name}”?`,
          text: (n) => `Its next run, within a minute, would ${VERB[policy.action]} ` +
            `${fmt.plural(n, "post")} now. Each run can be undone for 24 hours.`,
          ok: "Resume",
          danger: policy.action === "delete",
        },
      );
      if (resumed) this.toast(`“${policy.name}” is on again: its next run is within a minute.`, "ok");
    } catch (error) {
      this.failed(error);
    }
  }

  async delete(policy) {
    const sure = await this.confirmAction({
      title: `Delete the policy “${policy.name}”?`,
      text: "It will not run again. What its runs changed stays as it is, each run's Undo " +
        "under “Recent actions” for 24 hours.",
      ok: "Delete policy",
      danger: true,
    });
    if (!sure) return;
    try {
      await this.api.delete(`${POLICIES}/${policy.id}`);
      this.toast(`Deleted the policy “${policy.name}”.`, "ok");
      if (this.editing?.id === policy.id) this.stopEditing();
    } catch (error) {
      this.failed(error);
    }
  }

  failed(error) {
    if (this.off(error) || error.status === 401) return;
    // Gone meanwhile (deleted in another tab): the list shows it as it is now.
    this.toast(explain(error), "error");
  }
}
