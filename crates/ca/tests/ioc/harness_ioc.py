#!/usr/bin/env python3
"""harness_ioc.py - a small real EPICS IOC (pythonSoftIOC = EPICS base RSRV) for the
archiver-ca integration tests.

Serves one PV of every native CA type, scalars and arrays, with CTRL metadata, on
loopback only.  Every dynamic PV updates RATE times per second at tick k with the
device time stamp ts = k / RATE (exact: secs = k // RATE, nsec = (k % RATE) * 1e9 / RATE)
and a value that is a pure function of k, so a client can check each (time, value)
pair exactly.  The functions are listed in VALUES below and mirrored in
crates/ca/tests/common/mod.rs.

Usage: python harness_ioc.py --prefix T1: --port 40000 --beacon-port 40001 [--rate 10]
Prints "HARNESS READY ..." when serving; exits cleanly on SIGTERM/SIGINT.
"""
import argparse
import os
import signal
import sys
import threading
import time

BIG_LEN = 100000

VALUES = """
AI     ai          double  ((k % 800) - 400) * 0.25            EGU mm, PREC 3, limits +-100/90/70
LI     longin      long    k % 1000                             EGU counts, limits 0..1000, 900/800/100/50
SHORT  waveform[1] short   (k % 30000) - 15000
FLOAT  waveform[1] float   (k % 1000) * 0.5                     PREC 2, EGU A
CHAR   waveform[1] char    k % 256
SI     stringin    string  "k=%d" % k
MBBI   mbbi        enum    k % 4                                OK, WARN(MINOR), FAULT(MAJOR), OFF
WF     waveform    double[16]  k * 0.5 + j                      EGU V, PREC 4
WFC    waveform    char[64]    (k + j) % 256
WFS    waveform    short[10]   (k + j) % 30000
WFL    waveform    long[8]     k * 10 + j
WFF    waveform    float[8]    (k % 1000) * 0.25 + j
BIG    waveform    double[100000]  k + j                        (extended header)
AO     ao          writable, EGU A, PREC 2, DRV +-1000
SO     stringout   writable
"""


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--prefix", default="T:")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--beacon-port", type=int, required=True)
    p.add_argument("--rate", type=int, default=10)
    p.add_argument("--load", type=int, default=0,
                   help="load mode: serve only LOAD:0..N-1 (ai, value = tick k, "
                        "time of processing) for benchmarks")
    p.add_argument("--stats", action="store_true",
                   help="load mode: print achieved ticks/s and CPU every 5 s")
    return p.parse_args()


def run_load(args):
    """N plain soft ai records updated from C (dbPutField) at RATE: each tick posts
    the tick number k to every record, k never skips (a late tick runs late), so a
    client sees loss as a jump in k."""
    import ctypes
    import tempfile
    from softioc import softioc, asyncio_dispatcher
    from softioc.imports import db_put_field_process
    DBR_DOUBLE = 10
    P = args.prefix
    with tempfile.NamedTemporaryFile("w", suffix=".db", delete=False) as f:
        for i in range(args.load):
            f.write('record(ai, "%sLOAD:%d") {\n  field(EGU, "k")\n}\n' % (P, i))
        dbfile = f.name
    softioc.dbLoadDatabase(dbfile)
    os.unlink(dbfile)
    softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=False)
    names = ["%sLOAD:%d" % (P, i) for i in range(args.load)]
    val = ctypes.c_double()
    addr = ctypes.addressof(val)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *a: stop.set())
    state = {"k": 0}

    def updater():
        t0 = time.time()
        k = 0
        while not stop.is_set():
            due = t0 + k / args.rate
            now = time.time()
            if due > now and stop.wait(due - now):
                break
            val.value = float(k)
            for n in names:
                db_put_field_process(n, DBR_DOUBLE, addr, 1, True)
            k += 1
            state["k"] = k

    threading.Thread(target=updater, daemon=True).start()
    sys.stdout.write("HARNESS READY prefix=%s port=%d pid=%d load=%d\n"
                     % (P, args.port, os.getpid(), args.load))
    sys.stdout.flush()
    last_t, last_k = time.time(), 0
    last_c = sum(os.times()[:2])
    while not stop.wait(5.0 if args.stats else 0.5):
        if args.stats:
            now, c = time.time(), sum(os.times()[:2])
            sys.stdout.write("HARNESS STATS ticks/s=%.1f cpu%%=%.0f\n" % (
                (state["k"] - last_k) / (now - last_t), 100 * (c - last_c) / (now - last_t)))
            sys.stdout.flush()
            last_t, last_k, last_c = now, state["k"], c
    softioc.safeEpicsExit(0)


def loopback_env(args):
    e = os.environ
    e["EPICS_CA_SERVER_PORT"] = str(args.port)
    e["EPICS_CAS_SERVER_PORT"] = str(args.port)
    e["EPICS_CAS_INTF_ADDR_LIST"] = "127.0.0.1"
    e["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "NO"
    e["EPICS_CAS_BEACON_ADDR_LIST"] = "127.0.0.1"
    e["EPICS_CAS_BEACON_PORT"] = str(args.beacon_port)
    e["EPICS_CA_REPEATER_PORT"] = str(args.beacon_port)
    e["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    e["EPICS_CA_ADDR_LIST"] = "127.0.0.1"
    e["EPICS_CA_MAX_ARRAY_BYTES"] = "10000000"
    e["EPICS_PVA_AUTO_ADDR_LIST"] = "NO"
    e["EPICS_PVA_ADDR_LIST"] = "127.0.0.1"
    e["EPICS_PVAS_INTF_ADDR_LIST"] = "127.0.0.1"


def main():
    args = parse_args()
    loopback_env(args)
    if args.load:
        return run_load(args)
    import numpy
    from softioc import softioc, builder, asyncio_dispatcher
    from softioc.fields import ca_timestamp

    P = args.prefix
    R = args.rate
    builder.SetDeviceName(P.rstrip(":"))
    dev = dict(TSE=-2)
    alarm = dict(HHSV="MAJOR", HSV="MINOR", LSV="MINOR", LLSV="MAJOR")

    def name(n):
        return n  # builder prefixes with the device name and ':'

    recs = {}
    recs["AI"] = builder.aIn(name("AI"), EGU="mm", PREC=3, HOPR=100, LOPR=-100,
                             HIHI=90, HIGH=70, LOW=-70, LOLO=-90, **alarm, **dev)
    recs["LI"] = builder.longIn(name("LI"), EGU="counts", HOPR=1000, LOPR=0,
                                HIHI=900, HIGH=800, LOW=100, LOLO=50, **alarm,
                                **dev)
    recs["SHORT"] = builder.WaveformIn(name("SHORT"), datatype=numpy.int16,
                                       length=1, EGU="V", **dev)
    recs["FLOAT"] = builder.WaveformIn(name("FLOAT"), datatype=numpy.float32,
                                       length=1, EGU="A", PREC=2, **dev)
    recs["CHAR"] = builder.WaveformIn(name("CHAR"), datatype=numpy.uint8,
                                      length=1, **dev)
    recs["SI"] = builder.stringIn(name("SI"), **dev)
    recs["MBBI"] = builder.mbbIn(name("MBBI"), "OK", ("WARN", "MINOR"),
                                 ("FAULT", "MAJOR"), "OFF", **dev)
    recs["WF"] = builder.WaveformIn(name("WF"), datatype=numpy.float64,
                                    length=16, EGU="V", PREC=4, **dev)
    recs["WFC"] = builder.WaveformIn(name("WFC"), datatype=numpy.uint8,
                                     length=64, **dev)
    recs["WFS"] = builder.WaveformIn(name("WFS"), datatype=numpy.int16,
                                     length=10, **dev)
    recs["WFL"] = builder.WaveformIn(name("WFL"), datatype=numpy.int32,
                                     length=8, **dev)
    recs["WFF"] = builder.WaveformIn(name("WFF"), datatype=numpy.float32,
                                     length=8, **dev)
    recs["BIG"] = builder.WaveformIn(name("BIG"), datatype=numpy.float64,
                                     length=BIG_LEN, **dev)
    builder.aOut(name("AO"), EGU="A", PREC=2, DRVL=-1000, DRVH=1000,
                 initial_value=0.0)
    builder.stringOut(name("SO"), initial_value="init")

    builder.LoadDatabase()
    softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=False)

    jf16 = numpy.arange(16, dtype=numpy.float64)
    j64 = numpy.arange(64)
    j10 = numpy.arange(10)
    j8 = numpy.arange(8)
    jbig = numpy.arange(BIG_LEN, dtype=numpy.float64)

    def tick(k):
        ts = ca_timestamp()
        ts.secs = k // R
        ts.nsec = (k % R) * (1000000000 // R)
        s = dict(timestamp=ts)
        recs["AI"].set(((k % 800) - 400) * 0.25, **s)
        recs["LI"].set(k % 1000, **s)
        recs["SHORT"].set(numpy.array([(k % 30000) - 15000], numpy.int16), **s)
        recs["FLOAT"].set(numpy.array([(k % 1000) * 0.5], numpy.float32), **s)
        recs["CHAR"].set(numpy.array([k % 256], numpy.uint8), **s)
        recs["SI"].set("k=%d" % k, **s)
        recs["MBBI"].set(k % 4, **s)
        recs["WF"].set(k * 0.5 + jf16, **s)
        recs["WFC"].set(((k + j64) % 256).astype(numpy.uint8), **s)
        recs["WFS"].set(((k + j10) % 30000).astype(numpy.int16), **s)
        recs["WFL"].set((k * 10 + j8).astype(numpy.int32), **s)
        recs["WFF"].set(((k % 1000) * 0.25 + j8).astype(numpy.float32), **s)
        recs["BIG"].set(k + jbig, **s)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *a: stop.set())

    k0 = int(time.time() * R)
    tick(k0)

    def updater():
        k = k0 + 1
        while not stop.is_set():
            now = time.time()
            due = k / R
            if due > now and stop.wait(due - now):
                break
            tick(k)
            k += 1

    threading.Thread(target=updater, daemon=True).start()
    sys.stdout.write("HARNESS READY prefix=%s port=%d pid=%d\n"
                     % (P, args.port, os.getpid()))
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    sys.stdout.write("HARNESS STOPPED\n")
    sys.stdout.flush()
    softioc.safeEpicsExit(0)


if __name__ == "__main__":
    main()
