"""A slow HTTP client: prints how many seconds the server kept the connection open.

usage: slow_client.py http://HOST:PORT MODE LIMIT_SECONDS
  silent        connects and sends nothing
  trickle-head  sends a request head one byte a second
  trickle-body  sends a whole head announcing 10,000 body bytes, then one byte a second
Exits 1 if the server still holds the connection after LIMIT_SECONDS.
"""
import socket
import sys
import time
from urllib.parse import urlparse

url, mode, limit = urlparse(sys.argv[1]), sys.argv[2], float(sys.argv[3])
head = (b"POST /api/agents/00000000-0000-0000-0000-000000000000/heartbeat HTTP/1.1\r\n"
        b"Host: spotguard\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n")
s = socket.create_connection((url.hostname, url.port))
s.settimeout(0.2)
started = time.monotonic()
if mode == "trickle-body":
    s.sendall(head)
pending = head if mode == "trickle-head" else (b"x" * 10000 if mode == "trickle-body" else b"")
while time.monotonic() - started < limit:
    try:
        if s.recv(65536) == b"":
            print(round(time.monotonic() - started, 2))
            sys.exit(0)
    except socket.timeout:
        pass
    except ConnectionResetError:
        print(round(time.monotonic() - started, 2))
        sys.exit(0)
    if pending and int((time.monotonic() - started) * 5) % 5 == 0:
        try:
            s.send(pending[:1])
        except (BrokenPipeError, ConnectionResetError):
            print(round(time.monotonic() - started, 2))
            sys.exit(0)
        pending = pending[1:]
        time.sleep(0.2)
print(-1)
sys.exit(1)
