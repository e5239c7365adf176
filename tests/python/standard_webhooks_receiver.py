"""An app's event endpoint written with the Standard Webhooks reference library for Python
(`standardwebhooks`), to prove that every event the service sends verifies with it.

    serve PORT          receive events on 127.0.0.1:PORT (secret in EVENTS_SECRET); GET /summary
                        tells how many verified, how many did not, and of which types
    flow API FAKE PORT  start a verification through the API at API, read its code from the fake
                        Twilio's inbox at FAKE, check it, and wait until the receiver on PORT
                        verified its delivery updates and its approval
    check PORT N        exit 1 unless the receiver verified at least N events and refused none
"""

import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

API_KEY = os.environ.get("API_KEY", "schemathesis-key-0123456789")


class Receiver(BaseHTTPRequestHandler):
    lock = threading.Lock()
    verified = 0
    refused = []
    types = {}
    approved_ids = set()
    ids = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = Webhook(os.environ["EVENTS_SECRET"]).verify(body, dict(self.headers.items()))
        except WebhookVerificationError as e:
            with Receiver.lock:
                Receiver.refused.append(str(e))
            self.send_response(401)
            self.end_headers()
            return
        with Receiver.lock:
            Receiver.verified += 1
            Receiver.ids.add(self.headers["webhook-id"])
            Receiver.types[event["type"]] = Receiver.types.get(event["type"], 0) + 1
            if event["type"] == "verification.approved":
                Receiver.approved_ids.add(event["data"]["id"])
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        with Receiver.lock:
            summary = {
                "verified": Receiver.verified,
                "distinct_ids": len(Receiver.ids),
                "refused": len(Receiver.refused),
                "refusals": Receiver.refused[:5],
                "types": Receiver.types,
                "approved_ids": sorted(Receiver.approved_ids),
            }
        body = json.dumps(summary).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def get_json(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def post_json(url, payload):
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def until(what, condition, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def flow(api, fake, port):
    number = "+14155552671"
    started = post_json(f"{api}/v1/verifications", {"phone_number": number})
    inbox = until("the SMS", lambda: get_json(f"{fake}/inbox?to=%2B14155552671")["messages"])
    code = "".join(c for c in inbox[0]["body"].split("#")[0] if c.isdigit())
    checked = post_json(f"{api}/v1/verifications/check", {"phone_number": number, "code": code})
    assert checked["status"] == "approved", checked
    summary = until(
        "the approval event",
        lambda: (s := get_json(f"http://127.0.0.1:{port}/summary"))["approved_ids"].count(started["id"]) and s,
    )
    print(f"the receiver verified {summary['verified']} events: {summary['types']}")


def check(port, least):
    summary = get_json(f"http://127.0.0.1:{port}/summary")
    print(json.dumps({k: v for k, v in summary.items() if k != "approved_ids"}))
    if summary["refused"] or summary["verified"] < least:
        sys.exit(f"the receiver refused {summary['refused']} and verified {summary['verified']} (< {least}?)")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "serve":
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Receiver).serve_forever()
    elif command == "flow":
        flow(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif command == "check":
        check(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
