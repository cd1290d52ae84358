#!/usr/bin/env python3
"""Manage the feed's API keys through the Worker's admin routes.

  keys.py create NAME [--games a,b] [--types x,y] [--origins https://a.example,…]
                      [--expires-at 2027-01-01T00:00:00Z] [--max-streams N]
                      [--connects-per-minute N] [--requests-per-minute N] [--test]
  keys.py list
  keys.py revoke KEY_ID
  keys.py usage KEY_ID [--days N]

Environment: FEED_URL (default http://127.0.0.1:8787) and ADMIN_TOKEN (required).
Prints the Worker's JSON answer. The plaintext key is shown once, by `create`.
Standard library only, so it runs wherever Python 3 does.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: following one would send the admin token (and
    the request body) to wherever the answer points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(
            req.full_url, code,
            f"redirected to {newurl}; not followed (set FEED_URL to the Worker itself)",
            headers, fp)


OPENER = urllib.request.build_opener(NoRedirects)


def call(method, path, body=None):
    base = os.environ.get("FEED_URL", "http://127.0.0.1:8787").rstrip("/")
    token = os.environ.get("ADMIN_TOKEN")
    if not token:
        sys.exit("keys.py: set ADMIN_TOKEN (the Worker's admin secret)")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("authorization", "Bearer " + token)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with OPENER.open(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace") if err.fp else ""
        sys.exit(f"keys.py: {method} {path} answered {err.code}: {err.msg} {detail}".rstrip())
    except urllib.error.URLError as err:
        sys.exit(f"keys.py: cannot reach {base}: {err.reason}")


def csv(value):
    return [part.strip() for part in value.split(",") if part.strip()]


def main():
    parser = argparse.ArgumentParser(description="Manage the feed's API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("name")
    create.add_argument("--games", type=csv, help="game slugs it may read (comma-separated)")
    create.add_argument("--types", type=csv, help="game types it may read (comma-separated)")
    create.add_argument("--origins", type=csv, help="allowed browser origins (comma-separated)")
    create.add_argument("--expires-at", help="RFC 3339 expiry")
    create.add_argument("--max-streams", type=int)
    create.add_argument("--connects-per-minute", type=int)
    create.add_argument("--requests-per-minute", type=int)
    create.add_argument("--test", action="store_true", help="sk_test_ instead of sk_live_")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    usage = sub.add_parser("usage", help="a key's usage per UTC day, newest first")
    usage.add_argument("id")
    usage.add_argument("--days", type=int, default=7, help="how many days back (1-90, default 7)")
    args = parser.parse_args()

    if args.command == "create":
        body = {"name": args.name, "test": args.test}
        for field in ("games", "types", "origins", "expires_at", "max_streams", "connects_per_minute",
                      "requests_per_minute"):
            value = getattr(args, field)
            if value is not None:
                body[field] = value
        answer = call("POST", "/admin/keys", body)
    elif args.command == "list":
        answer = call("GET", "/admin/keys")
    elif args.command == "usage":
        path = "/admin/keys/" + urllib.request.quote(args.id, safe="") + "/usage?days=" + str(args.days)
        answer = call("GET", path)
    else:
        answer = call("DELETE", "/admin/keys/" + urllib.request.quote(args.id, safe=""))
    json.dump(answer, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
