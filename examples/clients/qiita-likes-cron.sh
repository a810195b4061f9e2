#!/usr/bin/env bash
# The article's cron job, kept for those who want it outside the daemon: read a Qiita
# article's likes and ask the monkey for one fault each time the count passes the next
# multiple of 3.
#
# You do not need it: the daemon's Qiita poller does the same, and more safely (it keeps
# its threshold in a state file written atomically, retries a refused fault instead of
# losing it, and backs off on errors). See examples/qiita-likes.ron.
#
# Run it every 10 minutes (Qiita allows 60 requests an hour without a token):
#   */10 * * * * QIITA_ITEM=c31be8235354a3e21945 /path/to/qiita-likes-cron.sh
# Needs curl and jq. Optional: QIITA_TOKEN, NIGHTMARE_MONKEY_URL, NIGHTMARE_MONKEY_TOKEN,
# STATE (default /var/tmp/nightmare-monkey.next), STEP (default 3), QIITA_API (a stand-in).
set -euo pipefail
item=${QIITA_ITEM:?set QIITA_ITEM to the article id, the last part of its URL}
monkey=${NIGHTMARE_MONKEY_URL:-http://127.0.0.1:8080}
state=${STATE:-/var/tmp/nightmare-monkey.next}
step=${STEP:-3}

qiita_auth=()
[ -n "${QIITA_TOKEN:-}" ] && qiita_auth=(-H "Authorization: Bearer ${QIITA_TOKEN}")
monkey_auth=()
[ -n "${NIGHTMARE_MONKEY_TOKEN:-}" ] && monkey_auth=(-H "Authorization: Bearer ${NIGHTMARE_MONKEY_TOKEN}")

next=$step
[ -f "$state" ] && next=$(cat "$state")

likes=$(curl -fsS "${qiita_auth[@]}" "${QIITA_API:-https://qiita.com}/api/v2/items/${item}" | jq -e '.likes_count') || exit 0
[ "$likes" -ge "$next" ] || exit 0

# Unlike the original, the threshold only moves once the monkey said yes (a refused or
# failed request is retried on the next run), and it is written atomically.
desc="Congraturations you have got ${likes} like"
if curl -fsS "${monkey_auth[@]}" "$monkey/api/kill" -X POST -d "{\"desc\":\"${desc}\"}" >/dev/null; then
    echo "$((next + step))" > "$state.tmp" && mv "$state.tmp" "$state"
fi
