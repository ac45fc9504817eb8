"""p4p_monitor_count.py - p4p's client (pvxs underneath, a Python callback per update)
on the PVA monitor benchmark's PVs: prints
  P4P events=N gaps=G cpu_s=C rss_kb=R secs=S connected=K

Usage: p4p_monitor_count.py NAMES_FILE SECONDS
"""
import os
import sys
import threading
import time

from p4p.client.thread import Context

names = [n for n in open(sys.argv[1]).read().split() if n]
secs = float(sys.argv[2])
last = {}
counts = {"events": 0, "gaps": 0}
lock = threading.Lock()


def make_cb(name):
    def cb(v):
        if isinstance(v, Exception):
            return
        k = float(v)
        with lock:
            prev = last.get(name)
            if prev is not None and k > prev + 1:
                counts["gaps"] += int(k - prev - 1)
            last[name] = k
            counts["events"] += 1
    return cb


ctx = Context("pva")
subs = [ctx.monitor(n, make_cb(n), request="field(value,alarm,timeStamp)") for n in names]
t0 = time.time()
while len(last) < len(names) and time.time() - t0 < 20:
    time.sleep(0.05)
e0, g0 = counts["events"], counts["gaps"]
c0 = sum(os.times()[:2])
s0 = time.time()
time.sleep(secs)
el = time.time() - s0
rss = 0
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1])
print("P4P events=%d gaps=%d cpu_s=%.3f rss_kb=%d secs=%.3f connected=%d" % (
    counts["events"] - e0, counts["gaps"] - g0, sum(os.times()[:2]) - c0, rss, el, len(last)),
    flush=True)
for s in subs:
    s.close()
ctx.close()
