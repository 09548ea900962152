#!/usr/bin/env python3
"""A webhook receiver for the notifier's tests: records every request (path, headers, body)
as a JSON line in LOG and answers by path:
  /flaky/N     fails (HTTP 500) the first N requests
  /down        always 503
  /trickle...  answers one byte a second, for ever
  /huge        200 with a 1 GiB body
  /redirect    302 to the URL in the query (?to=...)
  anything else 200.
Listens on ADDRESS (default 127.0.0.1); prints its port on the first line of stdout.

  webhook_receiver.py LOG [ADDRESS]
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

log_path = sys.argv[1]
address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
lock = threading.Lock()
seen = {}


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        path = urlparse(self.path).path
        with lock:
            seen[path] = seen.get(path, 0) + 1
            count = seen[path]
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "n": count, "headers": dict(self.headers.items()),
                                    "body": body.decode(), "at": time.time()}) + "\n")
        try:
            if path.startswith("/trickle"):
                for _ in range(3600):
                    self.wfile.write(b"H")
                    self.wfile.flush()
                    time.sleep(1)
                return
            if path == "/huge":
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 30))
                self.end_headers()
                chunk = b"x" * 65536
                for _ in range((1 << 30) // 65536):
                    self.wfile.write(chunk)
                return
            if path == "/redirect":
                self.send_response(302)
                self.send_header("Location", parse_qs(urlparse(self.path).query)["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        except (BrokenPipeError, ConnectionResetError):
            return
        status = 200
        if path.startswith("/flaky/") and count <= int(path.split("/")[2]):
            status = 500
        elif path == "/down":
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((address, 0), Receiver)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
