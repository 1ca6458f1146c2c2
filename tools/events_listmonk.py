#!/usr/bin/env python3
"""Forward ringmail's delivery events to listmonk's bounce webhook.

ringmail POSTs batches of events (a JSON array, docs/OPERATIONS.md
"Delivery events and webhooks") to this adapter; for each `bounced`,
`expired` or `complaint` event it posts one bounce to listmonk's
`POST /webhooks/bounce` (HTTP basic auth of an API user with the
`webhooks:post_bounce` permission). It answers ringmail 200 only once every
bounce of the batch is recorded (else 502, and ringmail sends the batch
again), and keeps the ids of the events it forwarded in the --seen file so
a batch sent again does not count a bounce twice.

Environment: LISTMONK_URL (e.g. http://127.0.0.1:9000), LISTMONK_USER,
LISTMONK_TOKEN (the API user's token, used as the basic-auth password),
RINGMAIL_TOKEN (optional: the [events] webhook_token to require).

Python 3 standard library only.
"""

import argparse
import base64
import json
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

TYPES = {"bounced": "hard", "expired": "soft", "complaint": "complaint"}


class Seen:
    """Event ids already forwarded, one per line in a file."""

    def __init__(self, path):
        self.path = path
        self.ids = set()
        if path and os.path.exists(path):
            with open(path) as f:
                self.ids = {line.strip() for line in f if line.strip()}

    def add(self, event_id):
        self.ids.add(event_id)
        if self.path:
            with open(self.path, "a") as f:
                f.write(event_id + "\n")
                f.flush()
                os.fsync(f.fileno())


def bounce_for(event):
    """The listmonk bounce for a ringmail event, or None."""
    kind = TYPES.get(event.get("kind"))
    if kind is None or not event.get("recipient"):
        return None
    meta = {k: event[k] for k in ("id", "queue_id", "reply", "site", "campaign") if k in event}
    return {
        "email": event["recipient"],
        "source": "ringmail",
        "type": kind,
        "meta": json.dumps(meta),
    }


def post_bounce(bounce):
    url = os.environ["LISTMONK_URL"].rstrip("/") + "/webhooks/bounce"
    auth = base64.b64encode(
        (os.environ["LISTMONK_USER"] + ":" + os.environ["LISTMONK_TOKEN"]).encode()
    ).decode()
    req = urllib.request.Request(
        url,
        data=json.dumps(bounce).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Basic " + auth},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def handler(seen):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            want = os.environ.get("RINGMAIL_TOKEN")
            if want and self.headers.get("Authorization") != "Bearer " + want:
                return self.answer(401, "bad token")
            length = int(self.headers.get("Content-Length", "0"))
            try:
                events = json.loads(self.rfile.read(length))
            except ValueError:
                return self.answer(400, "not JSON")
            try:
                for event in events:
                    bounce = bounce_for(event)
                    if bounce is None or event.get("id") in seen.ids:
                        continue
                    post_bounce(bounce)
                    seen.add(event["id"])
            except Exception as e:  # listmonk down or refusing: ringmail retries
                return self.answer(502, "listmonk: %s" % e)
            self.answer(200, "ok")

        def answer(self, code, text):
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:9100", help="HOST:PORT to serve ringmail's webhook on")
    p.add_argument("--seen", default="", help="file of the event ids already forwarded")
    args = p.parse_args()
    for var in ("LISTMONK_URL", "LISTMONK_USER", "LISTMONK_TOKEN"):
        if var not in os.environ:
            sys.exit("events_listmonk: set %s" % var)
    host, port = args.listen.rsplit(":", 1)
    HTTPServer((host, int(port)), handler(Seen(args.seen))).serve_forever()


if __name__ == "__main__":
    main()
