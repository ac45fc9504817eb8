#!/usr/bin/env python3
"""10,000 concurrent hostile HTTP connections against `archiver serve` (issue 13).

Starts the server (a fresh data folder, loopback, the limits given), opens N connections
at once, each sending half a request head and then nothing (slowloris), and reports:
the server's RSS and open file descriptors before, under and after the flood; how the
flood's connections were answered (a 503 at once, or held until the header timeout);
the time a fresh GET /health takes under the flood and once it is over; that the server
is still running. Standard library only.

    python3 scripts/http_flood.py --archiver target/debug/archiver \
        [--connections 10000] [--max-connections 1024] [--header-timeout 5]
"""

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time


def proc_figures(pid):
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return rss_kb / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


async def health(port, timeout=60.0):
    """(status line, seconds) of one GET /health on a new connection."""
    t0 = time.monotonic()
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    w.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await w.drain()
    data = await asyncio.wait_for(r.read(), timeout)
    w.close()
    return data.split(b"\r\n", 1)[0].decode(errors="replace"), time.monotonic() - t0


async def hostile(port, results, hold):
    """One slowloris connection: half a head, then silence; records how it ended."""
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        results["connect failed"] = results.get("connect failed", 0) + 1
        return
    try:
        w.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await w.drain()
        data = await asyncio.wait_for(r.read(4096), hold)
        key = "503 at once" if data.startswith(b"HTTP/1.1 503") else (
            "closed by the server" if not data else "other answer")
    except asyncio.TimeoutError:
        key = "still open at the end"
    except OSError:
        key = "reset"
    results[key] = results.get(key, 0) + 1
    w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archiver", default="target/debug/archiver")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--max-connections", type=int, default=1024)
    ap.add_argument("--header-timeout", type=float, default=5.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data = tempfile.mkdtemp(prefix="archiver-flood-")
    conf = os.path.join(data, "archiver.toml")
    with open(conf, "w") as f:
        f.write(f"header_read_timeout_secs = {args.header_timeout}\n"
                f"max_connections = {args.max_connections}\n")
    env = dict(os.environ, EPICS_CA_ADDR_LIST="127.0.0.1:9", EPICS_CA_AUTO_ADDR_LIST="NO")
    server = subprocess.Popen(
        [args.archiver, "serve", "--config", conf, "--data-dir", os.path.join(data, "d"),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    port = None
    for line in server.stdout:
        if "127.0.0.1:" in line:
            port = int(line.rsplit("127.0.0.1:", 1)[1].split()[0].strip("/ "))
            break
    if port is None:
        sys.exit("the server printed no address")
    print(f"server pid {server.pid} on port {port}; RLIMIT_NOFILE of this process {hard}")
    status, secs = await health(port)
    rss, fds = proc_figures(server.pid)
    print(f"before: RSS {rss:.1f} MiB, {fds} fds; /health {status!r} in {secs*1000:.1f} ms")

    results = {}
    hold = args.header_timeout * 3 + 10
    t0 = time.monotonic()
    tasks = [asyncio.create_task(hostile(port, results, hold)) for _ in range(args.connections)]
    # under the flood: sample the server while the connections are open
    peak_rss, peak_fds, probes = 0.0, 0, []
    for _ in range(8):
        await asyncio.sleep(0.5)
        rss, fds = proc_figures(server.pid)
        peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
        try:
            probes.append(await health(port, timeout=30.0))
        except (OSError, asyncio.TimeoutError) as e:
            probes.append((f"failed: {e!r}", float("nan")))
    for status, secs in probes[:3]:
        print(f"under the flood: /health {status!r} in {secs*1000:.1f} ms")
    await asyncio.gather(*tasks)
    rss, fds = proc_figures(server.pid)
    peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
    print(f"flood of {args.connections} over in {time.monotonic()-t0:.1f} s: {results}")
    print(f"under the flood: peak RSS {peak_rss:.1f} MiB, peak {peak_fds} fds")
    # after: the held connections are gone once the header timeout passed
    t1 = time.monotonic()
    while True:
        status, secs = await health(port)
        if status.startswith("HTTP/1.1 200") or time.monotonic() - t1 > 60:
            break
        await asyncio.sleep(0.2)
    rss, fds = proc_figures(server.pid)
    print(f"after: RSS {rss:.1f} MiB, {fds} fds; /health {status!r} in {secs*1000:.1f} ms")
    alive = server.poll() is None
    print(f"server still running: {alive}")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    print(f"server exit status after SIGTERM: {server.returncode}")
    return 0 if alive and status.startswith("HTTP/1.1 200") else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
