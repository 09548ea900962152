#!/usr/bin/env python3
"""A webhook receiver for the notifier's tests: records every request (path, headers, body)
as a JSON line in LOG and answers by path: /flaky/N fails (HTTP 500) the first N requests,
/down always answers 503, anything else 200. Prints its port on the first line of stdout.

  webhook_receiver.py LOG
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log_path = sys.argv[1]
lock = threading.Lock()
seen = {}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            seen[self.path] = seen.get(self.path, 0) + 1
            count = seen[self.path]
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "n": count, "headers": dict(self.headers.items()),
                                    "body": body.decode()}) + "\n")
        status = 200
        if self.path.startswith("/flaky/") and count <= int(self.path.split("/")[2]):
            status = 500
        elif self.path == "/down":
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
