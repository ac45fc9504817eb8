#!/usr/bin/env python3
"""pyepics_client.py - read and monitor PVs with pyepics (libca) and print JSON lines.

Usage: python pyepics_client.py MONITOR_SECONDS NAME...
For each NAME: one {"kind": "get", ...} line (DBR_TIME value, time stamp, severity,
status, native type/count, CTRL metadata); then MONITOR_SECONDS of monitoring, one
{"kind": "mon", ...} line per update; then {"kind": "done"}.
Run with EPICS_CA_ADDR_LIST / EPICS_CA_AUTO_ADDR_LIST=NO pointing at the server.
"""
import json
import sys
import threading
import time

import epics


def plain(v):
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, tuple):
        v = list(v)
    return v


def emit(obj, lock=threading.Lock()):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def main():
    secs = float(sys.argv[1])
    names = sys.argv[2:]
    pvs = [epics.PV(n, form="time", auto_monitor=False) for n in names]
    for pv in pvs:
        if not pv.wait_for_connection(10):
            emit({"kind": "error", "name": pv.pvname, "error": "not connected"})
            continue
        v = pv.get(timeout=5, use_monitor=False)
        # The get's own time stamp and alarm, read before get_ctrlvars: for a string PV
        # pyepics reads the control values as DBR_TIME_STRING, which replaces the PV's
        # time stamp with a later tick's (a CI run under load compared the value of tick k
        # with the stamp of tick k+1).
        stamp = {"secs": pv.posixseconds, "nsec": pv.nanoseconds,
                 "severity": pv.severity, "status": pv.status}
        ctrl = pv.get_ctrlvars(timeout=5) or {}
        emit(dict({"kind": "get", "name": pv.pvname, "value": plain(v),
                   "count": pv.count, "type": pv.type,
                   "ctrl": {k: plain(x) for k, x in ctrl.items()}}, **stamp))

    def cb(pvname=None, value=None, posixseconds=None, nanoseconds=None,
           severity=None, status=None, **kw):
        emit({"kind": "mon", "name": pvname, "value": plain(value),
              "secs": posixseconds, "nsec": nanoseconds,
              "severity": severity, "status": status})

    mons = [epics.PV(n, form="time", callback=cb) for n in names]
    time.sleep(secs)
    for m in mons:
        m.clear_callbacks()
        m.disconnect()
    emit({"kind": "done"})


if __name__ == "__main__":
    main()
