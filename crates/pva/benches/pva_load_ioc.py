"""pva_load_ioc.py - the IOC of the PVA monitor benchmark: N plain soft ai records
PREFIX:LOAD:0..N-1 (EPICS base, served over pvAccess by pvxs's QSRV, as NTScalar
double) updated from C (dbPutField) RATE times a second; each tick posts the tick number
k to every record, so a client sees a lost update as a jump in k.

Usage: pva_load_ioc.py PREFIX N RATE PVA_TCP_PORT PVA_UDP_PORT CA_PORT
Prints "READY" when serving and "STATS ticks/s=.. cpu%=.." every 5 s; SIGTERM exits.
"""
import ctypes
import os
import signal
import sys
import tempfile
import threading
import time

prefix, n, rate, tcp, udp, ca = sys.argv[1:7]
n, rate = int(n), float(rate)
e = os.environ
e.update({
    "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_SERVER_PORT": tcp,
    "EPICS_PVAS_BROADCAST_PORT": udp,
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVA_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_SERVER_PORT": ca,
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
})

from softioc import softioc, asyncio_dispatcher  # noqa: E402
from softioc.imports import db_put_field_process  # noqa: E402

DBR_DOUBLE = 10
with tempfile.NamedTemporaryFile("w", suffix=".db", delete=False) as f:
    for i in range(n):
        f.write('record(ai, "%sLOAD:%d") {\n  field(EGU, "k")\n}\n' % (prefix, i))
    dbfile = f.name
softioc.dbLoadDatabase(dbfile)
os.unlink(dbfile)
softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=True)
names = ["%sLOAD:%d" % (prefix, i) for i in range(n)]
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
        due = t0 + k / rate
        now = time.time()
        if due > now and stop.wait(due - now):
            break
        val.value = float(k)
        for name in names:
            db_put_field_process(name, DBR_DOUBLE, addr, 1, True)
        k += 1
        state["k"] = k


threading.Thread(target=updater, daemon=True).start()
print("READY", flush=True)
last_t, last_k, last_c = time.time(), 0, sum(os.times()[:2])
while not stop.wait(5.0):
    now, c = time.time(), sum(os.times()[:2])
    print("STATS ticks/s=%.1f cpu%%=%.0f" % ((state["k"] - last_k) / (now - last_t),
                                              100 * (c - last_c) / (now - last_t)), flush=True)
    last_t, last_k, last_c = now, state["k"], c
softioc.safeEpicsExit(0)
