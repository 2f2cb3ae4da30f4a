#!/usr/bin/env bash
# Fresh-clone smoke test of the README's first command: `make run` must reach /readyz, print a
# token that works, a dashboard link that loads (the banner's first URL) and the API reference's,
# and leave no postgres/redis/server/worker process behind after Ctrl-C.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
leader=""
cleanup() {
    # Whatever happened, stop what `make run` started before removing its data directory.
    if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
        kill -INT -- "-$leader" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$leader" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$leader" 2>/dev/null || true
    fi
    pkill -f "$work/pmd" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
git clone -q "$src" "$work/pmd"
cd "$work/pmd"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

PORT=$port setsid make run >"$work/run.log" 2>&1 &
leader=$!
ok=""
for _ in $(seq 1 300); do
    if grep -q "Press Ctrl-C" "$work/run.log" 2>/dev/null; then ok=1; break; fi
    if ! kill -0 "$leader" 2>/dev/null; then break; fi
    sleep 1
done
if [ -z "$ok" ]; then cat "$work/run.log"; echo "smoke: make run did not come up"; exit 1; fi

token=$(grep -E '^eyJ' "$work/run.log" | head -n 1)
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null
count=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/pmd/posts?limit=5" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["total_count"])')
[ "$count" -ge 30 ] || { echo "smoke: demo data missing (total_count=$count)"; exit 1; }

# The printed dashboard link: the page loads, and its token (in the fragment) is the demo's.
link=$(grep -oE 'Open the dashboard: \S+' "$work/run.log" | head -n 1 | cut -d' ' -f4)
[ "${link#*#token=}" = "$token" ] || { echo "smoke: dashboard link lacks the token"; exit 1; }
# Read whole, then searched: `curl | grep -q` fails under pipefail when grep stops reading early.
page=$(curl -fsS "${link%%#*}")
grep -q '/static/pmd/app.js' <<<"$page" || { echo "smoke: no page at $link"; exit 1; }
root=$(curl -fsS -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$port/")
[ "$root" = "302 ${link%%#*}" ] || { echo "smoke: / answered '$root'"; exit 1; }
# The banner's first URL is that signed-in link; it names the API reference, which loads.
first=$(sed -n '/^pmd-service is running/,$p' "$work/run.log" | grep -oE 'https?://\S+' | head -n 1)
[ "$first" = "$link" ] || { echo "smoke: the banner's first URL is $first"; exit 1; }
docs=$(grep -oE 'API reference: \S+' "$work/run.log" | head -n 1 | cut -d' ' -f3)
[ "$docs" = "http://127.0.0.1:$port/docs" ] || { echo "smoke: API reference at '$docs'"; exit 1; }
reference=$(curl -fsS "$docs")
grep -q 'swagger-ui-bundle.js' <<<"$reference" || { echo "smoke: no reference at $docs"; exit 1; }

kill -INT -- "-$leader"   # Ctrl-C reaches the whole foreground group, as in a terminal
for _ in $(seq 1 30); do kill -0 "$leader" 2>/dev/null || break; sleep 1; done
sleep 1
if pgrep -f "$work/pmd" >/dev/null; then
    pgrep -af "$work/pmd"; echo "smoke: processes left behind after Ctrl-C"; exit 1
fi
echo "smoke: make run served $count demo artworks, the dashboard page and the API reference, and stopped cleanly"
