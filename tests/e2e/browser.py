"""Headless Chromium driven over the DevTools protocol (CDP), for the
end-to-end tests that need a real browser (devloop.py, ops.py).

Needs Debian's chromium and python3-websocket (tools/deps.sh --test); a
test that builds a Browser without them is skipped, not failed.
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import harness
from harness import Skip, check, fail, wait_until


class Browser:
    """Headless Chromium driven over the DevTools protocol (CDP)."""

    def __init__(self, tmp):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise Skip("chromium is not installed (tools/deps.sh --test)")
        try:
            import websocket  # noqa: F401 - python3-websocket
        except ImportError:
            # Debian's package, under a python3 that is not Debian's
            sys.path.append("/usr/lib/python3/dist-packages")
            try:
                import websocket  # noqa: F401,F811
            except ImportError:
                raise Skip("python3-websocket is not installed")
        self.port = harness.free_port()
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-extensions",
             "--user-data-dir=" + os.path.join(tmp, "chromium"),
             "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=%d" % self.port, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.next_id = 0

    def connect(self):
        import websocket

        def target():
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/json/list" % self.port,
                        timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                    return pages[0]["webSocketDebuggerUrl"] if pages else None
            except OSError:
                return None
        check(wait_until(lambda: target() is not None, 20),
              "chromium's DevTools endpoint did not come up")
        self.ws = websocket.create_connection(target(), timeout=20)

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method,
                                 "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.next_id:
                if "error" in m:
                    fail("CDP %s: %s" % (method, m["error"]))
                return m.get("result", {})

    def eval(self, js):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True)
        return r.get("result", {}).get("value")

    def close(self):
        if self.ws:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

