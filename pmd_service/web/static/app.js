// The dashboard page: wires the posts table, the batch actions, the downloads panel and (on
// the user's own page) the exports panel.

import {
  Api, ApiError, explain, getToken, setToken, takeTokenFromFragment, TOKEN_FIELD, tokenSubject,
} from "./api.js";
import { MAX_BATCH, runBatches } from "./bulk.js";
import { Downloads } from "./downloads.js";
import { Exports } from "./exports.js";
import { count, plural, RESTORE_WINDOW_DAYS } from "./format.js";
import { PostTable } from "./posts.js";
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
  const signInAgain = () => {
    downloads?.stop();
    askSignIn(explain(new ApiError(401, "Unauthorized", "")));
  };
  const api = new Api({ token, targetSqid, onUnauthorized: signInAgain });
  const onError = (error) => (error.status === 401 ? signInAgain() : showNotice(explain(error)));
  if (targetSqid) {
    $("who").textContent = `Moderating the posts of ${targetSqid}`;
    $("who").hidden = false;
  }
  $("main").hidden = false;

  let busy = false; // a batch is running: actions and view switches wait
  const table = new PostTable(api, { onChange: () => refreshControls(), onError });
  // Exports are the owner's alone: a moderator looking at someone's posts never sees them.
  const exportsPanel = targetSqid
    ? null
    : new Exports(api, { toast, confirmAction, onError, highlightId: params.get("export") });
  downloads = new Downloads(api, {
    toast, confirmAction, onError, highlightId, exportsFeed: exportsPanel,
  });

  function refreshControls() {
    const n = table.selected.size;
    $("selected-count").textContent = count(n);
    for (const b of document.querySelectorAll("[data-needs-selection]")) b.disabled = n === 0 || busy;
    $("view-live").disabled = busy;
    $("view-deleted").disabled = busy;
    const why = $("bdr-why");
    const request = $("bdr-request");
    request.disabled = busy || n === 0 || n > MAX_BATCH || table.view !== "live";
    request.textContent = n ? `Request download of ${plural(n, "post")}` : "Request download";
    if (table.view !== "live") why.textContent = "Switch to Posts to download.";
    else if (n === 0) why.textContent = "Select the posts to put in the ZIP.";
    else if (n > MAX_BATCH) {
      why.textContent = `A download holds at most ${MAX_BATCH} posts; ${count(n)} are selected. ` +
        `Unselect ${count(n - MAX_BATCH)}, or request several downloads.`;
    } else why.textContent = "";
  }

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
      const result = await runBatches(action, ids, send, (part) => {
        if (table.generation === generation) table.applied(action, part, options);
      });
      toast(result.message, result.ok ? "ok" : "error");
      if (!result.ok && result.error?.status === 401) onError(result.error);
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
      refreshControls();
    }
  }

  const act = (action) => (part) => api.post("/api/pmd/action", { action, post_ids: part });
  $("act-hide").addEventListener("click", () =>
    batch("hide", act("hide"), { asModerator: Boolean(targetSqid) }));
  $("act-unhide").addEventListener("click", () =>
    batch("unhide", act("unhide"), { asModerator: Boolean(targetSqid) }));
  $("act-restore").addEventListener("click", () => batch("restore", act("restore")));
  $("act-delete").addEventListener("click", async () => {
    const n = table.selected.size;
    const sure = await confirmAction({
      title: `Delete ${plural(n, "post")}?`,
      text: "They disappear from your profile at once. You can restore them from " +
        `“Recently deleted” for ${RESTORE_WINDOW_DAYS} days.`,
      ok: `Delete ${plural(n, "post")}`,
    });
    if (sure) await batch("delete", act("delete"));
  });
  $("act-license").addEventListener("click", () => {
    const select = $("license-select");
    const id = select.value ? Number(select.value) : null;
    const identifier = id ? select.selectedOptions[0].dataset.identifier || null : null;
    batch("license", (part) => api.post("/api/pmd/license", { post_ids: part, license_id: id }),
      { license: identifier });
  });

  $("select-page").addEventListener("click", () => table.selectPage());
  $("select-loaded").addEventListener("click", () => table.selectLoaded());
  $("select-clear").addEventListener("click", () => table.clearSelection());
  $("page-first").addEventListener("click", () => table.goTo(0));
  $("page-prev").addEventListener("click", () => table.goTo(table.page - 1));
  $("page-next").addEventListener("click", () => table.goTo(table.page + 1));
  $("page-last").addEventListener("click", () => table.goTo(table.pageCount - 1));
  $("page-go").addEventListener("submit", (ev) => {
    ev.preventDefault();
    table.goTo(Number($("page-input").value) - 1);
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
    document.querySelector(".live-actions").hidden = view !== "live";
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
    try {
      await downloads.request(ids, {
        include_comments: $("bdr-comments").checked,
        include_reactions: $("bdr-reactions").checked,
        include_layers: $("bdr-layers").checked,
        send_email: $("bdr-email").checked,
      });
      toast(`Download of ${plural(ids.length, "post")} requested; follow it in the panel.`, "ok");
    } catch (error) {
      if (error.status === 401) onError(error);
      else toast(explain(error), "error");
    } finally {
      refreshControls();
    }
  });

  api.get("/api/pmd/licenses").then(({ items }) => {
    const select = $("license-select");
    for (const l of items) {
      const option = document.createElement("option");
      option.value = String(l.id);
      option.dataset.identifier = l.identifier || "";
      // The identifier first: the choice is cut to fit the toolbar, and the table shows it.
      option.textContent = l.title && l.title !== l.identifier
        ? `${l.identifier} · ${l.title}`
        : l.identifier;
      select.append(option);
    }
  }, onError);

  table.load("live");
  exportsPanel?.start();
  downloads.start();
}

boot();
