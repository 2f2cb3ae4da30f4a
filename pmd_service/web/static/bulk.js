// Batch actions on any number of posts: the API takes at most 128 ids per request, each request
// all or nothing, so the page sends them in order and stops at the first that fails.

import { ACTION_WORDS, MOVING, RESTORING } from "./action_words.js";
import { explain } from "./api.js";
import { count, plural } from "./format.js";

export const MAX_BATCH = 128;
// What one action by filter changes at most: the server's BULK_MAX_POSTS as it ships. A server
// set otherwise names its own in a refusal (`too_many_posts`, details.limit), which app.js keeps.
export const BULK_MAX_POSTS = 10_000;

export function chunks(ids, size = MAX_BATCH) {
  const out = [];
  for (let i = 0; i < ids.length; i += size) out.push(ids.slice(i, i + size));
  return out;
}

// One count per action, as the toast, the batch line and "Recent actions" all say it: the
// posts it changed, then how many it found already so. `changed`, `acted`: the server's
// `changed_count` and `affected_count`, summed over the batches.
export function outcome(action, changed, acted) {
  return `${plural(changed, "post")} ${ACTION_WORDS[action].done}${alreadySo(action, acted - changed)}`;
}

// "; 557 already hidden", or nothing when it found none (or the history did not count them):
// the posts an action found already so (sent, but not changed: the server's `affected_count`
// less its `changed_count`).
export function alreadySo(action, already) {
  return already > 0 ? `; ${count(already)} ${ACTION_WORDS[action]?.already}` : "";
}

// Where the posts are after a successful batch: still selected, so a download of the same
// posts is one click; a delete or restore moves them to the other view, unselected (a
// selection out of sight would go into the next action unseen).
export function whereNow(action) {
  if (!MOVING.includes(action)) return "They stay selected.";
  return RESTORING.includes(action)
    ? "They are under “Posts” again."
    : "They are under “Recently deleted”, should you want them back.";
}

// The server paces bulk actions per person (429 with Retry-After): a batch it asked to wait
// is sent again once the wait is over, a few times at most.
const PACED_TRIES = 5;

async function paced(part, send, waiting) {
  for (let tries = 1; ; tries++) {
    try {
      return await send(part);
    } catch (error) {
      if (error.status !== 429 || !error.retryAfter || tries >= PACED_TRIES) throw error;
      waiting(error.retryAfter);
      await new Promise((resolve) => setTimeout(resolve, error.retryAfter * 1000));
    }
  }
}

// The batch line, started over for a new batch: its text, an empty progress bar (`of`
// steps; none: a bar that only says it is under way), no error left from the last batch.
export function startBatchLine(message, of = null) {
  const box = document.getElementById("batch");
  const bar = document.getElementById("batch-progress");
  document.getElementById("batch-error").hidden = true;
  document.getElementById("batch-text").textContent = message;
  if (of === null) {
    bar.removeAttribute("value");
  } else {
    bar.max = of;
    bar.value = 0;
  }
  box.hidden = false;
  return bar;
}

// A new click's id (a version 4 uuid), which each of its batches names: the server keeps the
// batches of one click as one action in its history, with one Undo for all of them.
// crypto.randomUUID is for secure contexts only; getRandomValues is everywhere.
export function newClickId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-` +
    hex.slice(20);
}

// Runs `send(chunk, clickId)` for each chunk of `ids`, every chunk naming the one click they
// all belong to; `done(chunk)` after each success. `titleOf(id)`: a post's title, for a
// refusal that names posts.
// Returns {ok, doneIds, leftIds, message, undos}: `undos`, the click's undo link once some
// batch changed posts (its batches all answer the same one).
export async function runBatches(action, ids, send, done, titleOf = () => undefined) {
  const box = document.getElementById("batch");
  const text = document.getElementById("batch-text");
  const errorEl = document.getElementById("batch-error");
  const parts = chunks(ids);
  const click = newClickId();
  const doneIds = [];
  const undos = [];
  let changed = 0;
  const { doing, done: past } = ACTION_WORDS[action];
  const bar = startBatchLine(`${doing} ${plural(ids.length, "post")}…`, parts.length);
  try {
    for (const [i, part] of parts.entries()) {
      text.textContent = `${doing} ${plural(ids.length, "post")}: batch ${i + 1} of ${parts.length}`;
      bar.value = i;
      try {
        const answer = await paced(part, (p) => send(p, click), (wait) => {
          text.textContent = `${doing} ${plural(ids.length, "post")}: batch ${i + 1} of ` +
            `${parts.length}, waiting ${wait} s (at most so many actions a minute)`;
        });
        if (answer?.undo && !undos.includes(answer.undo)) undos.push(answer.undo);
        changed += answer?.changed_count ?? part.length;
      } catch (error) {
        box.hidden = true;
        const left = ids.length - doneIds.length;
        // No answer (or a server error): the batch may have committed before the answer was
        // lost. Say so; the caller reloads the list to show what the server holds.
        const unknown = error.status === 0 || error.status >= 500;
        const why = explain(error, titleOf);
        const message = unknown
          ? `Batch ${i + 1} of ${parts.length} got no answer: ${why} ` +
            (doneIds.length
              ? `${outcome(action, changed, doneIds.length)}; `
              : "") +
            `whether the ${plural(part.length, "post")} of this batch ${part.length === 1 ? "was" : "were"} ` +
            `${past} is not known, and ${plural(left - part.length, "more post was", "more posts were")} ` +
            `not tried. The list is reloaded to show what the server has.`
          : parts.length === 1
            // One request: the server's sentence says what happened, and why.
            ? `${why} ${left === 1 ? "The post is" : `The ${plural(left, "post")} are`} still selected.`
            : `Batch ${i + 1} of ${parts.length} failed: ` +
              (doneIds.length ? `${outcome(action, changed, doneIds.length)}; ` : "") +
              `${plural(left, "post was", "posts were")} not ${past} and ` +
              `${left === 1 ? "is" : "are"} still selected. Why: ${why}`;
        errorEl.textContent = message;
        errorEl.hidden = false;
        return {
          ok: false, unknown, doneIds, leftIds: ids.slice(doneIds.length), message, error, undos,
          changed,
        };
      }
      doneIds.push(...part);
      done(part);
    }
    bar.value = parts.length;
    const message = outcome(action, changed, ids.length) +
      (parts.length > 1 ? ` in ${count(parts.length)} batches. ` : ". ") + whereNow(action);
    text.textContent = message;
    return { ok: true, doneIds, leftIds: [], message, undos, changed };
  } catch (error) {
    box.hidden = true;
    throw error;
  }
}
