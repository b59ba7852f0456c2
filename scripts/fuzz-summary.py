"""Usage: fuzz-summary.py OPENAPI_JSON HAR...

Summarises a schemathesis HAR report of the command API: per action route, the answers about
orders the run itself placed (ids from `201` answers to `POST /orders`). Exits 1 when an action
route never got an answer other than 404 about such an order, i.e. the stateful phase did not
reach it with a real order."""

import collections
import json
import re
import sys

ACTION = re.compile(r"^/orders/([^/]+)/([^/?]+)$")


def main(document, paths):
    with open(document, encoding="utf-8") as f:
        documented = [m.group(2) for m in map(ACTION.match, json.load(f)["paths"]) if m]
    entries = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            entries.extend(json.load(f)["log"]["entries"])
    placed = set()
    for e in entries:
        request, response = e["request"], e["response"]
        if request["method"] == "POST" and request["url"].split("?")[0].endswith("/orders") and response["status"] == 201:
            try:
                placed.add(json.loads(response["content"].get("text") or "{}")["order_id"])
            except (ValueError, KeyError, TypeError):
                pass
    answers = collections.defaultdict(collections.Counter)
    for e in entries:
        request = e["request"]
        path = "/" + request["url"].split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
        match = ACTION.match(path)
        if request["method"] == "POST" and match and match.group(1) in placed:
            answers[match.group(2)][e["response"]["status"]] += 1
    actions = sorted(set(documented) | set(answers))
    print(f"orders placed by the run: {len(placed)}")
    print("answers about those orders, per action route (status: count):")
    unreached = []
    for action in actions:
        counts = answers.get(action, collections.Counter())
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())) or "none"
        print(f"  {action:<20} {shown}")
        if not any(s != 404 for s in counts):
            unreached.append(action)
    if unreached:
        print(f"never reached with a placed order: {', '.join(unreached)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
