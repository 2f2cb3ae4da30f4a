// The JSON API as the page uses it: the Bearer token, `target_sqid`, and problem+json errors.

import { namePosts } from "./format.js";

const TOKEN_KEY = "pmd.token";

export class ApiError extends Error {
  constructor(status, title, detail, { retryAfter = null, errors = [], problem = {} } = {}) {
    super(detail || title);
    this.status = status; // 0: the request never got an answer (network, server down)
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
    this.errors = errors;
    // The whole problem body: some answers carry more (a 409's `export_id`, a 400's bounds).
    this.problem = problem;
  }
}

// The dev link carries the token in the fragment (never sent to a server, never logged);
// it moves into sessionStorage and leaves the address bar at once.
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(history.state, "", location.pathname + location.search);
  }
}

// Where a person puts a fresh token: the sign-in banner's field, which the page shows (and
// scrolls to) at the top whenever a token is refused. Every message about a token says so.
export const TOKEN_FIELD = "the “Access token” field at the top of this page";

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (token) => sessionStorage.setItem(TOKEN_KEY, token.trim());

// The user the token speaks for (its `sub`), without checking it: the server does that.
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub ?? null;
  } catch {
    return null;
  }
}

export class Api {
  constructor({ token, targetSqid, onUnauthorized }) {
    this.token = token;
    this.targetSqid = targetSqid; // set when a moderator opens someone else's page
    this.onUnauthorized = onUnauthorized;
  }

  url(path, query = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query)) {
      // A list is a repeated parameter (`hashtag=a&hashtag=b`).
      if (Array.isArray(v)) for (const one of v) url.searchParams.append(k, String(one));
      else if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    if (this.targetSqid) url.searchParams.set("target_sqid", this.targetSqid);
    return url;
  }

  async request(method, path, { query, json, raw = false } = {}) {
    const headers = { Authorization: `Bearer ${this.token}` };
    const init = { method, headers };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(this.url(path, query), init);
    } catch {
      throw new ApiError(0, "Network error",
        "Could not reach the server. Check your connection; nothing was changed by this request " +
        "unless the list shows it.");
    }
    if (!response.ok) throw await this.problem(response);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  async problem(response) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // a proxy's HTML error page: fall back to the status line
    }
    const retry = Number(response.headers.get("Retry-After"));
    const error = new ApiError(
      response.status,
      body.title || response.statusText || "Error",
      body.detail || `The server answered ${response.status}.`,
      {
        retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null,
        errors: body.errors || [],
        problem: body && typeof body === "object" ? body : {},
      },
    );
    if ((response.status === 401 || accountRefused(error)) && this.onUnauthorized) {
      this.onUnauthorized(error);
    }
    return error;
  }

  get(path, query) { return this.request("GET", path, { query }); }
  post(path, json) { return this.request("POST", path, { json }); }
  patch(path, json) { return this.request("PATCH", path, { json }); }
  delete(path) { return this.request("DELETE", path); }
}

// "5 h 3 min", "12 min": a wait, rounded up to the minute.
export function inWords(seconds) {
  const minutes = Math.ceil(seconds / 60);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (h === 0) return `${m} min`;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}

// The host's refusal of an account that may not sign in (banned, deactivated): the page signs
// out at it, as the host's app does, saying why instead of asking for a new token.
export function accountRefused(error) {
  const reason = error?.problem?.details?.reason;
  return reason === "account_banned" || reason === "account_deactivated";
}

// One sentence a person can act on, for any failure of any request. `titleOf(id)`: the title
// of a post the page holds: an answer about posts then names them by title, not by id.
export function explain(error, titleOf = () => undefined) {
  if (!(error instanceof ApiError)) return `Something went wrong in the page: ${error.message}`;
  if (error.status === 0) return error.detail;
  if (accountRefused(error)) {
    const details = error.problem.details;
    const help = "Ask the site's operators if you think this is a mistake.";
    if (details.reason === "account_deactivated") {
      return `This account is deactivated, so its posts cannot be managed here. ${help}`;
    }
    if (details.permanent) return `This account is banned, so its posts cannot be managed here. ${help}`;
    const until = new Date(details.banned_until).toLocaleString();
    return `This account is banned until ${until}; its posts can be managed here again then. ${help}`;
  }
  if (error.status === 401) {
    return "Your sign-in has expired or is not valid. Sign in on the site again and reopen " +
      `this page, or paste a new access token into ${TOKEN_FIELD}. If this keeps happening, ` +
      "ask the site's operators for help.";
  }
  if (error.status === 429 && error.retryAfter) {
    const at = new Date(Date.now() + error.retryAfter * 1000);
    const when = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    // One countdown: the server's sentence may give its own ("in 5 h 3 min").
    if (/\bin \d+ (h|min)\b/.test(error.detail)) return `${error.detail} That is at ${when} your time.`;
    return `${error.detail} That is at ${when} your time (in ${inWords(error.retryAfter)}).`;
  }
  const about = error.problem.invalid_post_ids;
  // The posts are named once, in the sentence: the field errors would list their ids again.
  if (Array.isArray(about) && about.length) return namePosts(error.detail, about, titleOf);
  const fields = error.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  return fields ? `${error.detail} (${fields})` : error.detail;
}
