#!/usr/bin/env bash
# A plain curl session against a running monkey, one request of each kind.
#   nightmare-monkey --config examples/fast-demo.ron &     # a dry run: nothing is killed
#   examples/clients/curl-session.sh [http://127.0.0.1:8080]
# With a token in the monkey's config: NIGHTMARE_MONKEY_TOKEN=s3cret examples/clients/curl-session.sh
set -u
base=${1:-http://127.0.0.1:8080}
auth=()
if [ -n "${NIGHTMARE_MONKEY_TOKEN:-}" ]; then
    auth=(-H "Authorization: Bearer ${NIGHTMARE_MONKEY_TOKEN}")
fi
show() { printf '\n$ %s\n' "$*"; "$@"; echo; }

show curl -s "$base/healthz"
show curl -s "${auth[@]}" "$base/api/plugins"
# The article's request, exactly: curl -d sends a form type, the body is JSON all the same.
show curl -s "${auth[@]}" "$base/api/kill" -X POST -d '{"desc":"I like kill!"}'
show curl -s "${auth[@]}" "$base/api/faults/process-kill" -X POST -H 'Content-Type: application/json' -d '{"desc":"by name"}'
# What a mistake looks like: desc is required.
show curl -s -i "${auth[@]}" "$base/api/kill" -X POST -d '{}'
