#!/usr/bin/env python3
"""Drives headless Chromium for tests/http_api.rs, with the standard
library only: the DevTools protocol over a pipe (--remote-debugging-pipe:
NUL-terminated JSON, commands in on the browser's fd 3, answers and
events out on its fd 4), so no websocket client is needed.

    cdp.py CHROMIUM load URL [PNG]   prints the text of the page at URL
    cdp.py CHROMIUM click URL [PNG]  loads URL, clicks its first button with
                                     real mouse events, waits for the page
                                     the click leads to, prints its text

PNG, when given, gets a screenshot of the last page. Exits 0 when the
steps were done (what the page says is for the caller to judge), 2 on a
protocol error, 3 on a timeout.
"""

import base64
import json
import os
import select
import subprocess
import sys
import tempfile
import time

TIMEOUT = 30.0


class Timeout(Exception):
    pass


class Browser:
    def __init__(self, chromium):
        self.profile = tempfile.TemporaryDirectory(prefix="ringmail-chromium-")
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        args = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--user-data-dir=" + self.profile.name,
            "about:blank",
        ]
        # The shell puts the pipes on fds 3 and 4, where Chromium wants them.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'] + args,
            stdin=cmd_r,
            stdout=out_w,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(out_w)
        self.buf = b""
        self.next_id = 0
        self.session = None
        self.deadline = time.monotonic() + TIMEOUT

    def _read_message(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            ready, _, _ = select.select([self.out_r], [], [], left)
            if not ready:
                raise Timeout()
            chunk = os.read(self.out_r, 65536)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def evaluate(self, expression):
        r = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression):
        while not self.evaluate(expression):
            if time.monotonic() > self.deadline:
                raise Timeout()
            time.sleep(0.05)

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"}, False)
        attached = self.call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            False,
        )
        self.session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )

    def click_first_button(self):
        # A mark on this document: the page the click leads to has none.
        self.evaluate("window.__before_click = true")
        box = self.evaluate(
            "(() => { const r = document.querySelector('button').getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {
                    "type": kind,
                    "x": box["x"],
                    "y": box["y"],
                    "button": "left",
                    "clickCount": 1,
                },
            )
        self.wait_for(
            "typeof window.__before_click === 'undefined' && document.readyState === 'complete'"
        )

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.out_r)
        self.profile.cleanup()


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[2] not in ("load", "click"):
        print(__doc__, file=sys.stderr)
        return 64
    chromium, action, url = sys.argv[1:4]
    png = sys.argv[4] if len(sys.argv) == 5 else None
    b = Browser(chromium)
    try:
        b.open(url)
        if action == "click":
            b.click_first_button()
        print(b.evaluate("document.body.innerText"))
        if png:
            b.screenshot(png)
        return 0
    except Timeout:
        print(f"timed out after {TIMEOUT} s", file=sys.stderr)
        return 3
    except Exception as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
