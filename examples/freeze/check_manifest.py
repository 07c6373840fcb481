"""Check what a run's manifest.json says it computed and reused (used by the Makefile).

    python check_manifest.py OUT/manifest.json [--computed NAME ...] [--computed-at-most N]

Exits 1, saying why, when a named endpoint was reused or more than N were computed.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("--computed", action="append", default=[], help="an endpoint that must be computed")
    parser.add_argument("--computed-at-most", type=int, help="how many endpoints may be computed")
    args = parser.parse_args()
    with open(args.manifest, encoding="utf-8") as file:
        manifest = json.load(file)
    status = {name: record["status"] for name, record in manifest["endpoints"].items()}
    computed = sorted(name for name, s in status.items() if s == "computed")
    print(f"{args.manifest}: {len(computed)} of {len(status)} endpoint(s) computed"
          + (f" ({', '.join(computed)})" if computed else "") + ", the rest reused")
    problems = [f"{name} was not computed" for name in args.computed if status.get(name) != "computed"]
    if args.computed_at_most is not None and len(computed) > args.computed_at_most:
        problems.append(f"{len(computed)} computed, expected at most {args.computed_at_most}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
