// "Recent actions": the bulk actions of the undo window on the page's posts (GET
// /api/pmd/actions), from this tab, another tab or device, or a moderator, each with Undo while
// the person may still undo it. The server decides who may undo what (its `undo` link).

import { ACTION_WORDS } from "./action_words.js";
import { explain } from "./api.js";
import { alreadySo } from "./bulk.js";
import * as fmt from "./format.js";
import { el, timeEl } from "./ui.js";

// How many the list shows before "Show older actions" (the API's pages are of 50).
const FIRST = 5;
const PAGE = 50;

export class RecentActions {
  // `exclusive(work)`: runs an undo as the page runs a batch (nothing else acts meanwhile) and
  // shows the posts as the server holds them after it; `busy()`: a batch is running;
  // `titleOf(id)`: a post's title, for an answer that names posts; `highlightId`: the action a
  // link names (`?action=`, a cleanup policy's email), shown highlighted and scrolled to.
  constructor(api, { toast, onError, exclusive, busy, titleOf, highlightId = null }) {
    this.api = api;
    this.highlightId = highlightId;
    this.scrolled = false;
    this.titleOf = titleOf;
    this.asModerator = Boolean(api.targetSqid);
    Object.assign(this, { toast, onError, exclusive, busy });
    this.items = [];
    this.cursor = null;
    this.expanded = false;
    this.loaded = false;
    this.seq = 0;
    this.list = document.getElementById("recent-list");
    this.empty = document.getElementById("recent-empty");
    this.more = document.getElementById("recent-more");
    this.list.addEventListener("click", (ev) => this.onClick(ev));
    this.more.addEventListener("click", () => this.showOlder());
    // Another tab or device may have acted meanwhile: a tab coming back shows it.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.loaded) this.refresh();
    });
  }

  // The newest actions again (after an action, an undo, a reload).
  async refresh() {
    // Refreshes may overlap (an action, the tab coming back): only the latest one shows.
    const seq = ++this.seq;
    try {
      const page = await this.api.get("/api/pmd/actions", { limit: this.expanded ? PAGE : FIRST });
      if (seq !== this.seq) return;
      this.items = page.items;
      this.cursor = page.next_cursor;
      this.loaded = true;
    } catch (error) {
      if (!this.loaded) this.empty.textContent = `Not loaded: ${explain(error)}`;
      if (error.status === 401) this.onError(error);
      return;
    }
    this.render();
    await this.showLinked();
  }

  // The action the page's link names, once: older pages loaded until it is shown (the list
  // holds a day of actions), then scrolled to.
  async showLinked() {
    if (!this.highlightId || this.scrolled) return;
    const shown = () => this.items.some((a) => a.id === this.highlightId);
    while (!shown() && this.cursor) {
      const before = this.cursor;
      await this.showOlder();
      if (this.cursor === before) return; // not loaded: showOlder said why
    }
    const row = this.list.querySelector(`li[data-id="${CSS.escape(this.highlightId)}"]`);
    if (!row) return;
    this.scrolled = true;
    row.scrollIntoView({ block: "center" });
  }

  async showOlder() {
    if (!this.cursor) return;
    this.more.disabled = true;
    try {
      const page = await this.api.get("/api/pmd/actions", { limit: PAGE, cursor: this.cursor });
      const known = new Set(this.items.map((a) => a.id));
      this.items.push(...page.items.filter((a) => !known.has(a.id)));
      this.cursor = page.next_cursor;
      this.expanded = true;
    } catch (error) {
      this.onError(error);
    } finally {
      this.more.disabled = false;
    }
    this.render();
  }

  // While a batch runs, nothing is undone.
  setDisabled(disabled) {
    for (const b of this.list.querySelectorAll("button")) b.disabled = disabled;
  }

  async onClick(ev) {
    const button = ev.target.closest("button[data-undo]");
    if (!button || this.busy()) return;
    const link = button.dataset.undo;
    // What an undo puts back, as its toast says it.
    const what = ACTION_WORDS[button.closest("li").dataset.action]?.undone ?? "action";
    await this.exclusive(async () => {
      try {
        // The API adds `target_sqid` itself (a moderator's link carries it too).
        const answer = await this.api.post(link.split("?")[0]);
        this.toast(this.undoSaid(answer, what), answer.left_post_ids.length ? "error" : "ok");
      } catch (error) {
        // Undone elsewhere meanwhile, past its 24 hours, its history dropped: the server says
        // which, and the list shows it as it is now.
        if (error.status === 401) this.onError(error);
        else this.toast(explain(error, this.titleOf), "error");
      }
    });
    await this.refresh();
  }

  // The toast after an undo, its count as every count on the page: what it put back, then the
  // server's words for the posts it left (after its first "; "), named by title. One that put
  // back nothing says so, and whether it stays offered.
  undoSaid(answer, what) {
    const left = answer.left_post_ids;
    const why = answer.message.split("; ").slice(1).join("; ");
    const named = why ? fmt.namePosts(why, left, this.titleOf) : "";
    if (answer.affected_count === 0 && left.length) {
      return `Nothing to undo: all ${fmt.plural(left.length, "post")} this ${what} changed ` +
        `${left.length === 1 ? "was" : "were"} changed since (${named}).` +
        (answer.undone ? "" : " Its Undo stays, should they be as it left them again.");
    }
    return `Undid the ${what} of ${fmt.plural(answer.affected_count, "post")}` +
      (named ? `; ${named}.` : ".");
  }

  who(action) {
    // A run of the owner's cleanup policy is the owner's own action, named by its rule.
    if (action.policy_id) {
      return action.policy_name ? `by policy “${action.policy_name}”` : "by a cleanup policy";
    }
    if (action.by_you) return this.asModerator ? "by you" : "";
    return action.by_moderator ? "by a moderator" : "by the artist";
  }

  render() {
    this.list.replaceChildren(...this.items.map((a) => this.row(a)));
    this.empty.hidden = this.items.length > 0;
    if (this.loaded && !this.items.length) {
      this.empty.textContent = "No bulk actions in the last 24 hours.";
    }
    this.more.hidden = !this.cursor;
    this.setDisabled(this.busy());
  }

  row(action) {
    const li = el("li", action.id === this.highlightId ? "recent-action highlight" : "recent-action");
    li.dataset.action = action.action;
    li.dataset.id = action.id;
    if (action.by_moderator) li.dataset.byModerator = "true";
    if (action.policy_id) li.dataset.policy = action.policy_id;
    const what = el("p", "recent-what");
    what.id = `recent-${action.id}`;
    const who = this.who(action);
    what.append(
      `${ACTION_WORDS[action.action]?.did ?? action.action} ${fmt.plural(action.changed_count, "post")}` +
        (who ? ` ${who}` : "") + alreadySo(action.action, action.unchanged_count) + " · ",
      timeEl(action.created_at, fmt.ago(action.created_at)),
    );
    const named = namedPosts(action);
    if (named) what.append(el("span", "recent-posts", named));
    li.append(what);
    if (action.undone_at) {
      li.append(el("span", "recent-state", "Undone"));
    } else if (action.undo) {
      const undo = el("button", "", "Undo");
      undo.type = "button";
      undo.dataset.undo = action.undo;
      undo.setAttribute("aria-describedby", what.id);
      li.append(undo);
    } else if (action.by_you) {
      // Its history was dropped to make room for newer actions (the undo would say so).
      li.append(el("span", "recent-state", "Can no longer be undone"));
    }
    return li;
  }
}

// The posts an action changed, by title: the first few the list gives, then how many more.
function namedPosts(action) {
  const titles = (action.posts ?? []).map((p) => `“${p.title}”`);
  if (!titles.length) return "";
  const more = action.changed_count - titles.length;
  if (more > 0) return `${titles.join(", ")} and ${fmt.count(more)} more`;
  return titles.length === 1 ? titles[0] : `${titles.slice(0, -1).join(", ")} and ${titles.at(-1)}`;
}
