#!/usr/bin/env bash
# Screenshots and rendered DOM of every dashboard page, taken by headless Chromium from the
# running `make up` stack, logged in as the simulated fleet's client. Writes .spotguard/screenshots/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f .spotguard/env ] || { echo "run make up first" >&2; exit 1; }
# shellcheck disable=SC1091
. .spotguard/env
chromium="$(deploy/stack.sh browser-bin)"
client="$SPOTGUARD_STACK_DIR/sim/client.json"
token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$client")"
client_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$client")"
agent="$(curl -fsS -H "Authorization: Bearer $token" "$SPOTGUARD_CONSOLE_URL/api/client/$client_id/agents" |
    python3 -c 'import json,sys; items=json.load(sys.stdin)["items"]; print(items[0]["id"] if items else "")')"
out="$ROOT/.spotguard/screenshots"
rm -rf "$out"
pages=(--page overview=/overview --page agents=/agents --page switches=/switches --page prices=/prices --page notifications=/notifications
    --mobile overview-mobile=/overview --mobile agents-mobile=/agents --mobile switches-mobile=/switches --mobile prices-mobile=/prices)
[ -n "$agent" ] && pages+=(--page agent=/agents/"$agent")
# each page also checked by axe-core (WCAG 2 A and AA): the count of its violations, by impact
python3 Tests/Peers/dashboard_check.py --chromium "$chromium" --base "$SPOTGUARD_CONSOLE_URL" --token "$token" --out "$out" \
    --axe "$(deploy/stack.sh axe-js)" "${pages[@]}" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["pages"]:
    found = {}
    for v in p["violations"]:
        found[v["impact"]] = found.get(v["impact"], 0) + 1
        print("    %s: %s (%s) %s" % (p["name"], v["id"], v["impact"], v["targets"]), file=sys.stderr)
    print("  %-18s %-50s %-22s accessibility: %s" % (p["name"], p["url"], p["screenshot"],
          ", ".join("%d %s" % (n, k) for k, n in sorted(found.items())) or "no violation"))'
echo "screenshots and DOM in $out"
