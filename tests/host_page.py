"""The host's own dashboard page logic, in a plain HTML page a browser runs against the service.

What decides how many download cards the host's page shows is a few functions of the host
repository (at the pinned commit): `usePMDSSE` (web/src/hooks/usePMDSSE.ts: the stream read
with fetch and a reader, split on blank lines, `bdr_update` handed on), and in
web/src/pages/u/[sqid]/posts.tsx `handleBDRUpdate` (replace the card with the event's id, or
prepend one) and `handleRequestDownload` (POST /api/pmd/bdr, then prepend the reply's card).
They are transcribed below from TypeScript to JavaScript line for line, with
`authenticatedFetch` reduced to what it does with a valid token (the Bearer header and
`credentials: "include"`) and React's `setBdrs(updater)` applied in call order (what React
does with queued updaters). React's re-render after `setActionLoading(true)` is stood in for by
keeping the main thread busy as long as a render takes: while it is busy, the reply and the
first event both arrive, and which is read first is up to the browser. The only additions are the records `harness` keeps: when the reply
was prepended and when each event was dispatched, in the page's own clock.

The page is served from its own origin (as a site whose API is another origin, the service
answering with CORS), so nothing in the test proxies or intercepts the two connections.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web

_PAGE = r"""<!doctype html>
<meta charset="utf-8">
<title>host page logic</title>
<script>
const API_BASE_URL = __API__;
const TOKEN = __TOKEN__;

// --- instrumentation (not the host's) ---
const harness = { replies: {}, events: {}, connected: 0 };
window.harness = harness;

// --- React state, as useState's setter applies queued updaters: in call order ---
let bdrs = [];
const setBdrs = (update) => { bdrs = typeof update === "function" ? update(bdrs) : update; };
harness.cards = () => bdrs.map((b) => ({ id: b.id, status: b.status }));

// --- lib/api.ts authenticatedFetch, with a token that is valid ---
async function authenticatedFetch(url, options = {}) {
  const makeRequest = async (token) => {
    const headers = { ...options.headers };
    if (token) headers["Authorization"] = `Bearer ${token}`;
    return fetch(url, { ...options, credentials: "include", headers });
  };
  return makeRequest(TOKEN);
}

// --- pages/u/[sqid]/posts.tsx handleBDRUpdate ---
const handleBDRUpdate = (updatedBdr) => {
  (harness.events[updatedBdr.id] ||= []).push([performance.now(), updatedBdr.status]);
  setBdrs((prev) => {
    const index = prev.findIndex((b) => b.id === updatedBdr.id);
    if (index >= 0) {
      const newBdrs = [...prev];
      newBdrs[index] = updatedBdr;
      return newBdrs;
    }
    return [updatedBdr, ...prev];
  });
};

// --- hooks/usePMDSSE.ts, the effect's body (targetSqid null: the user's own page) ---
const callbacksRef = { current: { onBDRUpdate: handleBDRUpdate,
                                  onConnect: () => { harness.connected += 1; } } };
function usePMDSSE() {
  const maxReconnectAttempts = 5;
  const baseReconnectDelay = 1000; // 1 second
  let reconnectAttempts = 0;
  let reconnectTimeout = null;
  let controller = null;
  let stopped = false;

  const scheduleReconnect = (immediate) => {
    if (stopped) return;
    if (immediate) {
      reconnectTimeout = setTimeout(connect, 0);
      return;
    }
    if (reconnectAttempts >= maxReconnectAttempts) {
      callbacksRef.current.onError?.(new Error('SSE connection failed after max retries'));
      return;
    }
    const delay = baseReconnectDelay * Math.pow(2, reconnectAttempts);
    reconnectAttempts += 1;
    reconnectTimeout = setTimeout(connect, delay);
  };

  const dispatchEvent = (rawEvent) => {
    let eventType = 'message';
    const dataLines = [];
    for (const line of rawEvent.split('\n')) {
      if (line.startsWith(':')) continue; // keepalive comment
      if (line.startsWith('event:')) {
        eventType = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        dataLines.push(line.slice(5).trim());
      }
    }

    if (eventType === 'bdr_update' && dataLines.length > 0) {
      try {
        const bdr = JSON.parse(dataLines.join('\n'));
        callbacksRef.current.onBDRUpdate(bdr);
      } catch (e) {
        console.error('[SSE] Failed to parse BDR update:', e);
      }
    } else if (eventType === 'connected') {
      console.log('[SSE] Connected');
    }
    return eventType;
  };

  const connect = async () => {
    if (stopped) return;

    controller = new AbortController();
    let sawServerTimeout = false;

    try {
      let url = `${API_BASE_URL}/api/pmd/bdr/sse`;

      const response = await authenticatedFetch(url, {
        signal: controller.signal,
        headers: { Accept: 'text/event-stream' },
      });

      if (!response.ok || !response.body) {
        throw new Error(`SSE request failed with status ${response.status}`);
      }

      reconnectAttempts = 0;
      callbacksRef.current.onConnect?.();

      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';

      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });

        let sepIndex;
        while ((sepIndex = buffer.indexOf('\n\n')) >= 0) {
          const rawEvent = buffer.slice(0, sepIndex);
          buffer = buffer.slice(sepIndex + 2);
          if (dispatchEvent(rawEvent) === 'timeout') {
            sawServerTimeout = true;
          }
        }
      }

      if (stopped) return;
      callbacksRef.current.onDisconnect?.();
      scheduleReconnect(sawServerTimeout);
    } catch (error) {
      if (stopped || error.name === 'AbortError') return;
      console.error('[SSE] Connection error:', error);
      callbacksRef.current.onDisconnect?.();
      scheduleReconnect(false);
    }
  };

  connect();
}
usePMDSSE();

// --- React re-rendering the page: setActionLoading(true) re-renders the whole post table
// once the click handler yields (the POST is then in flight); this stand-in keeps the main
// thread busy as long, so the reply and the event can both arrive before either is read ---
const RENDER_MS = __RENDER_MS__;
const setActionLoading = (loading) => {
  if (!loading || RENDER_MS <= 0) return;
  queueMicrotask(() => { const end = performance.now() + RENDER_MS; while (performance.now() < end); });
};

// --- pages/u/[sqid]/posts.tsx handleRequestDownload (targetSqid null) ---
const handleRequestDownload = async (postIds, includeCommentsAndReactions, sendEmail) => {
  setActionLoading(true);

  try {
    const url = `${API_BASE_URL}/api/pmd/bdr`;
    const response = await authenticatedFetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        post_ids: postIds,
        include_comments: includeCommentsAndReactions,
        include_reactions: includeCommentsAndReactions,
        send_email: sendEmail,
      }),
    });

    if (!response.ok) {
      const errorData = await response.json();
      throw new Error(errorData.detail || 'Request failed');
    }

    const result = await response.json();
    harness.replies[result.id] = performance.now();
    harness.last = result.id;

    // Add to local BDR list
    setBdrs((prev) => [
      {
        id: result.id,
        status: result.status,
        artwork_count: result.artwork_count,
        created_at: result.created_at,
        completed_at: null,
        expires_at: null,
        error_message: null,
        download_url: null,
      },
      ...prev,
    ]);
  } catch (err) {
    console.error('BDR request error:', err);
    harness.error = err instanceof Error ? err.message : 'Request failed';
  } finally {
    setActionLoading(false);
  }
};
harness.request = async (postIds) => {
  harness.last = null;
  await handleRequestDownload(postIds, false, false);
  return harness.last;
};
</script>
"""


def page_html(api_base: str, token: str, render_ms: float) -> str:
    """The page calling `api_base` with `token`; `render_ms`: how long the main thread is busy
    re-rendering after the click (0: not at all)."""
    return (
        _PAGE.replace("__API__", json.dumps(api_base))
        .replace("__TOKEN__", json.dumps(token))
        .replace("__RENDER_MS__", json.dumps(render_ms))
    )


@contextlib.asynccontextmanager
async def serving_page(html: str, port: int) -> AsyncIterator[str]:
    """The page at http://127.0.0.1:{port}/ (its own origin); yields that URL."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()
