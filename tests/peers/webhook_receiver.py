"""A real HTTP receiver for the station's webhook tests (Python's http.server).

Usage: webhook_receiver.py SECRET FAIL_FIRST. It listens on 127.0.0.1 on a free port, prints `PORT <n>` once it
listens, answers the first FAIL_FIRST POST requests with 503 and the rest with 204, and prints one JSON line per
request: {"status": the answer, "id": the X-Station-Message-Id header, "kind": X-Station-Kind, "valid": whether
X-Station-Signature is the HMAC-SHA256 of the body keyed by SECRET, "body": the body as JSON}. It stops when stdin
closes (the test ended).
"""

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = sys.argv[1].encode()
FAIL_FIRST = int(sys.argv[2])
lock = threading.Lock()
seen = 0


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, self.headers.get("X-Station-Signature", ""))
        with lock:
            seen += 1
            status = 503 if seen <= FAIL_FIRST else 204
            print(json.dumps({"status": status, "id": self.headers.get("X-Station-Message-Id"),
                              "kind": self.headers.get("X-Station-Kind"), "valid": valid,
                              "body": json.loads(body)}), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(f"PORT {server.server_address[1]}", flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
