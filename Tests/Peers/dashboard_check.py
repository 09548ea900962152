#!/usr/bin/env python3
"""Looks at the SpotGuard dashboard in a real browser: headless Chromium, driven over the
Chrome DevTools Protocol (standard library only). Logs in through the login form with a client
token, visits every page, saves a PNG screenshot and the DOM Chromium rendered for each, and
prints a JSON summary. Optional actions submit forms the way a person would (a click).

  dashboard_check.py --base http://127.0.0.1:35487 --token sgt_... --out DIR
      [--chromium PATH] [--page NAME=/path ...] [--click NAME=/path=CSS-SELECTOR ...]
      [--submit NAME=/path=FORM-SELECTOR=JSON-FIELDS ...] [--width 1280]
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


class WebSocket:
    """The client side of RFC 6455, enough for DevTools: text frames, fragments, pings."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + head.decode(errors="replace"))

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            data += chunk
        return data

    def _frame(self, opcode, payload):
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += n.to_bytes(2, "big")
        else:
            header.append(0x80 | 127)
            header += n.to_bytes(8, "big")
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            mask = self._exact(4) if b1 & 0x80 else None
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            message += payload
            if b0 & 0x80:
                return message.decode()


class DevTools:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == event:
                    del self.events[: i + 1]
                    return e
            self.events.append(json.loads(self.ws.recv()))
        raise RuntimeError(f"no {event} within {timeout} s")

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def load(self, action):
        """Runs `action` (a navigation or a click) and waits until the new page has loaded."""
        self.events.clear()
        action()
        self.wait_for("Page.loadEventFired")


def start_chromium(binary, profile):
    process = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--hide-scrollbars", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise RuntimeError("chromium exited before DevTools listened")
        m = re.search(r"DevTools listening on (ws://[^\s]+)", line)
        if m:
            return process, urllib.parse.urlparse(m.group(1)).port
    raise RuntimeError("chromium's DevTools did not start within 60 s")


def accessibility(tools, axe):
    """axe-core's WCAG 2.0/2.1 A and AA rules over the page as rendered: each violation's rule,
    impact, help text and up to three of the elements it names."""
    tools.evaluate(axe + "\n;0")
    return json.loads(tools.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},"
        " resultTypes: ['violations']}).then(r => JSON.stringify(r.violations.map(v => ({"
        "id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,"
        " targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--page", action="append", default=[], help="NAME=/path")
    ap.add_argument("--click", action="append", default=[], help="NAME=/path=CSS selector of a submit button")
    ap.add_argument("--submit", action="append", default=[],
                    help="NAME=/path=CSS selector of a form=JSON object of its fields' values: filled in, then its submit button pressed")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--mobile", action="append", default=[], help="NAME=/path, also shot at 390 px wide")
    ap.add_argument("--axe", help="axe.min.js (axe-core): each page's WCAG 2 A/AA violations go into the summary")
    ap.add_argument("--live", action="append", default=[],
                    help="NAME=/path of a page that updates itself: loaded under its own content security policy, then"
                         " watched until its figures' time changes without a reload (at most three of its periods)")
    args = ap.parse_args()
    axe = open(args.axe).read() if args.axe else None
    os.makedirs(args.out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="spotguard-chromium-")
    process, port = start_chromium(args.chromium, profile)
    summary = {"pages": [], "live": []}
    try:
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        # the pages forbid scripts; the accessibility rules are injected from outside them
        tools.call("Page.setBypassCSP", enabled=True)
        tools.call("Emulation.setDeviceMetricsOverride", width=args.width, height=900, deviceScaleFactor=1, mobile=False)

        def visit(path):
            tools.load(lambda: tools.call("Page.navigate", url=args.base + path))

        def record(name, requested):
            dom = tools.evaluate("document.documentElement.outerHTML")
            height = tools.evaluate("Math.max(document.documentElement.scrollHeight, 300)")
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": tools.evaluate("document.documentElement.clientWidth"),
                                    "height": min(height, 6000), "scale": 1})
            with open(os.path.join(args.out, f"{name}.html"), "w") as f:
                f.write(dom)
            with open(os.path.join(args.out, f"{name}.png"), "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            summary["pages"].append({
                "name": name, "requested": requested, "url": tools.evaluate("location.href"),
                "title": tools.evaluate("document.title"), "dom": f"{name}.html", "screenshot": f"{name}.png",
                "cookies": [{k: c.get(k) for k in ("name", "httpOnly", "secure", "sameSite")}
                            for c in tools.call("Network.getCookies").get("cookies", [])],
            })
            if axe:
                summary["pages"][-1]["violations"] = accessibility(tools, axe)

        # log in the way a person does: type the token, press the button
        visit("/login")
        record("login", "/login")
        tools.load(lambda: tools.evaluate(
            f"document.querySelector('#token').value = {json.dumps(args.token)};"
            "document.querySelector('form.login button[type=submit]').click()"))
        summary["after_login"] = tools.evaluate("location.pathname")
        for spec in args.page:
            name, path = spec.split("=", 1)
            visit(path)
            record(name, path)
        for spec in args.click:
            name, path, selector = spec.split("=", 2)
            visit(path)
            tools.load(lambda: tools.evaluate(f"document.querySelector({json.dumps(selector)}).click()"))
            record(name, path)
        for spec in args.submit:
            name, path, selector, fields = spec.split("=", 3)
            visit(path)
            tools.load(lambda: tools.evaluate(
                f"(() => {{ const form = document.querySelector({json.dumps(selector)});"
                f" for (const [k, v] of Object.entries({fields})) form.elements[k].value = v;"
                " form.querySelector('button[type=submit]').click(); })()"))
            record(name, path)
        # live updates run under the page's own policy: its script and its fetches must be allowed
        tools.call("Page.setBypassCSP", enabled=False)
        for spec in args.live:
            name, path = spec.split("=", 1)
            visit(path)
            as_of = "(document.querySelector('#live-content > p.hint') || {}).textContent || ''"
            tools.evaluate("window.spotguardLoaded = true; 0")
            before = tools.evaluate(as_of)
            seconds = tools.evaluate("Number(document.getElementById('main').dataset.liveSeconds || 0)")
            after = before
            deadline = time.time() + 3 * seconds + 5
            while after == before and time.time() < deadline:
                time.sleep(0.5)
                after = tools.evaluate(as_of)
            summary["live"].append({
                "name": name, "seconds": seconds, "before": before, "after": after,
                "status": tools.evaluate("(document.getElementById('live-status') || {}).textContent || ''"),
                "reloaded": not tools.evaluate("window.spotguardLoaded === true")})
            record(name, path)
        tools.call("Page.setBypassCSP", enabled=True)
        tools.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)
        for spec in args.mobile:
            name, path = spec.split("=", 1)
            visit(path)
            record(name, path)
            summary["pages"][-1]["overflowing"] = tools.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
