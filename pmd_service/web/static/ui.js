// Page-wide feedback: toasts, the confirmation dialog, the notice and sign-in banners; and the
// small DOM builders the panels share.

import * as fmt from "./format.js";

const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function timeEl(iso, text) {
  const t = el("time", "bdr-time", text);
  t.dateTime = iso;
  t.title = fmt.dateTime(iso);
  return t;
}

// One column: the toasts leave the side column, far below the posts, for the dock under the
// page's scrolling view (styles.css); beside the posts they are back at the side's top.
const ONE_COLUMN = matchMedia("(max-width: 900px)");

function placeToasts() {
  const box = $("toasts");
  const home = ONE_COLUMN.matches ? $("toast-dock") : document.querySelector(".side");
  if (box && home && box.parentElement !== home) home.prepend(box);
}
placeToasts();
ONE_COLUMN.addEventListener("change", placeToasts);

// At most this many toasts at once: past it the oldest goes, so they never pile up over the
// panels; the same words again replace the earlier toast instead of stacking under it.
const MAX_TOASTS = 3;

export function toast(message, kind = "info") {
  const box = $("toasts");
  for (const old of box.querySelectorAll(".toast")) {
    if (old.dataset.text === message) old.remove();
  }
  const node = document.createElement("div");
  node.className = `toast ${kind}`;
  node.dataset.text = message;
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  const text = document.createElement("span");
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => node.remove());
  node.append(text, close);
  box.append(node);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  const linger = kind === "error" ? 15_000 : 8_000;
  const expire = () => {
    // Not while someone is reading it (pointer over it) or about to dismiss it (focus in it).
    if (node.matches(":hover") || node.contains(document.activeElement)) setTimeout(expire, 2000);
    else node.remove();
  };
  setTimeout(expire, linger);
}

// `cancel`: the name of the button that changes nothing, where "Cancel" would be ambiguous
// (cancelling an export). `danger`: the action deletes something, the only one shown in red.
// `keep`: the button that changes nothing is the one advised (using a download already made
// rather than spending a request), so it is the primary one; it always has the focus, and
// Escape and Enter choose it.
export function confirmAction({ title, text, ok, cancel = "Cancel", danger = false, keep = false }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok;
  $("confirm-ok").className = danger ? "danger" : keep ? "" : "primary";
  $("confirm-cancel").textContent = cancel;
  $("confirm-cancel").className = keep ? "primary" : "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

export function showNotice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

// The banner at the top of the page, in view, its token field focused: every message about a
// refused token points there (api.js TOKEN_FIELD), wherever the person was on the page.
export function askSignIn(reason) {
  $("signin-reason").textContent = reason;
  $("signin").hidden = false;
  $("signin").scrollIntoView({ block: "nearest" });
  $("signin-token").focus({ preventScroll: true });
}
