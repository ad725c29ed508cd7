#!/usr/bin/env python3
"""What the other clients of a crashing worker get.

    bench/crash_loss.sh [--crashes 20] [--clients 16] [--ms 50]
                        [--interval 2.5] [--workers 1]

--clients threads request /slow?ms=MS in a loop, each on a new connection,
while every --interval seconds a request crashes the worker it lands in (a
NULL dereference; a different page each time, so that quarantine, which
needs two crashes of one version, never stops the crashes). With --workers
1 every request shares the crashing worker. Each answer is counted as ok
(200), 503 (the dying worker answered it: retry), other status, or lost
(the connection closed or reset without a response). Prints the counts,
lost and 503 per crash, and a RESULT line. The crashing requests themselves
are not counted. Compare binaries with HOTPUB=/path/to/hotpub.
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import Bench, Hotpub, log, note  # noqa: E402

SLOW_C = r"""#include <hotpub.h>
#include <stdlib.h>
#include <unistd.h>
HP_HANDLER(http_handler)
{
    const char *ms = hp_arg(req, "ms");
    if (ms)
        usleep((useconds_t)atoi(ms) * 1000);
    hp_printf(req, "slow %d", (int)getpid());
    return HP_OK;
}
"""

CRASH_C = r"""#include <hotpub.h>
HP_HANDLER(http_handler) /* crash %d */
{
    if (hp_arg(req, "crash")) {
        volatile int *p = 0;
        *p = 1;
    }
    hp_puts(req, "fine");
    return HP_OK;
}
"""


def get(port, path, timeout=10):
    """(status, body) of GET path on a new connection, or (None, why) if
    the connection ended without a complete response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
                   % path).encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as e:
        return None, repr(e)
    finally:
        s.close()
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return None, "closed after %d bytes" % len(buf)
    return int(head.split(b" ")[1]), body


class Load(threading.Thread):
    def __init__(self, port, ms):
        super().__init__(daemon=True)
        self.port, self.path = port, "/slow?ms=%d" % ms
        self.counts = {"ok": 0, "503": 0, "other": 0, "lost": 0}
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                st, _ = get(self.port, self.path)
            except OSError:
                st = None
            key = ("lost" if st is None else "ok" if st == 200
                   else "503" if st == 503 else "other")
            self.counts[key] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crashes", type=int, default=20)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--ms", type=int, default=50)
    ap.add_argument("--interval", type=float, default=2.5)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    b = Bench("crash_loss")
    binary, src, digest = benchlib.hotpub_binary(b)
    benchlib.describe_env(b, src, digest)
    root = b.path("root")
    os.makedirs(root)
    with open(os.path.join(root, "slow.c"), "w") as f:
        f.write(SLOW_C)
    for i in range(a.crashes):
        with open(os.path.join(root, "crash%d.c" % i), "w") as f:
            f.write(CRASH_C % i)
    hp = Hotpub(b, binary, root, b.path("cache"),
                extra=["--workers", str(a.workers), "--threads",
                       str(a.clients + 8)])
    for i in range(a.crashes):  # compile everything first
        st, body = get(hp.port, "/crash%d" % i, timeout=60)
        if st != 200:
            benchlib.die("warm-up of crash%d: %s %r" % (i, st, body))
    loads = [Load(hp.port, a.ms) for _ in range(a.clients)]
    for ld in loads:
        ld.start()
    time.sleep(1.0)
    crashed = 0
    for i in range(a.crashes):
        st, _ = get(hp.port, "/crash%d?crash=1" % i)
        crashed += st != 200
        time.sleep(a.interval)
    for ld in loads:
        ld.halt.set()
    for ld in loads:
        ld.join(15)
    tot = {k: sum(ld.counts[k] for ld in loads) for k in loads[0].counts}
    hp.stop()
    n = max(1, a.crashes)
    log("crash_loss: %d crashes (%d answered without 200), %d clients of "
        "/slow?ms=%d, --workers %d" % (a.crashes, crashed, a.clients, a.ms,
                                        a.workers))
    log("  requests: %d ok, %d lost, %d answered 503, %d other status"
        % (tot["ok"], tot["lost"], tot["503"], tot["other"]))
    log("  per crash: %.1f lost, %.1f answered 503 (retryable)"
        % (tot["lost"] / n, tot["503"] / n))
    note("a lost request saw its connection end without a response")
    log("RESULT crash_loss crashes=%d ok=%d lost=%d answered_503=%d "
        "other=%d lost_per_crash=%.2f" % (a.crashes, tot["ok"], tot["lost"],
                                          tot["503"], tot["other"],
                                          tot["lost"] / n))
    return 0


if __name__ == "__main__":
    benchlib.main_wrapper(main)
