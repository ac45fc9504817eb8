"""A small EPICS IOC (pythonSoftIOC: EPICS base records, served over pvAccess by
pvxs's QSRV) for the PVA integration tests.

    pva_ioc.py PREFIX PVA_TCP_PORT PVA_UDP_PORT CA_PORT

Serves PREFIX:AI (ai, EGU mm, PREC 3, limits), PREFIX:LI (longin), PREFIX:SI
(stringin), PREFIX:WF (double waveform, 8), PREFIX:MBBI (OK/WARN/FAULT). Prints
"READY" when serving. Stdin lines:
    set NAME VALUE TIMESTAMP [SEVERITY]   (VALUE: comma-separated for WF)
    field NAME FIELD VALUE                (a record field, e.g. field AI HIHI 95)
print "DONE n" after each. Records have TSE=-2 (device time): the TIMESTAMP
(Unix seconds, a float exact in binary, e.g. .25) is the PV's time stamp. Everything stays on 127.0.0.1.
"""
import os
import sys
import threading

prefix, tcp_port, udp_port, ca_port = sys.argv[1:5]
env = os.environ
env["EPICS_PVAS_INTF_ADDR_LIST"] = "127.0.0.1"
env["EPICS_PVAS_SERVER_PORT"] = tcp_port
env["EPICS_PVAS_BROADCAST_PORT"] = udp_port
env["EPICS_PVAS_AUTO_BEACON_ADDR_LIST"] = "NO"
env["EPICS_PVAS_BEACON_ADDR_LIST"] = "127.0.0.1"
env["EPICS_PVA_AUTO_ADDR_LIST"] = "NO"
env["EPICS_PVA_ADDR_LIST"] = "127.0.0.1"
env["EPICS_CA_SERVER_PORT"] = ca_port
env["EPICS_CAS_INTF_ADDR_LIST"] = "127.0.0.1"
env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "NO"
env["EPICS_CAS_BEACON_ADDR_LIST"] = "127.0.0.1"
env["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
env["EPICS_CA_ADDR_LIST"] = "127.0.0.1"

from softioc import softioc, builder, asyncio_dispatcher  # noqa: E402

builder.SetDeviceName(prefix)
recs = {
    "AI": builder.aIn("AI", initial_value=1.5, EGU="mm", PREC=3, LOPR=-100,
                      HOPR=100, HIHI=90, HIGH=70, LOW=-70, LOLO=-90,
                      HHSV="MAJOR", HSV="MINOR", LSV="MINOR", LLSV="MAJOR",
                      TSE=-2),
    "LI": builder.longIn("LI", initial_value=7, EGU="counts", TSE=-2),
    "SI": builder.stringIn("SI", initial_value="hello", TSE=-2),
    "WF": builder.WaveformIn("WF", length=8, FTVL="DOUBLE", TSE=-2),
    "MBBI": builder.mbbIn("MBBI", "OK", "WARN", "FAULT", initial_value=0,
                           TSE=-2),
}
builder.LoadDatabase()
softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=True)
print("READY", flush=True)


def serve():
    n = 0
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "set":
            name, value, ts = parts[1], parts[2], float(parts[3])
            sev = int(parts[4]) if len(parts) > 4 else 0
            rec = recs[name]
            if name == "WF":
                v = [float(x) for x in value.split(",")]
            elif name in ("LI", "MBBI"):
                v = int(value)
            elif name == "SI":
                v = value
            else:
                v = float(value)
            rec.set(v, severity=sev, alarm=1 if sev else 0, timestamp=ts)
        elif parts[0] == "field":
            recs[parts[1]].set_field(parts[2], parts[3])
        n += 1
        print("DONE %d" % n, flush=True)
    os._exit(0)


threading.Thread(target=serve, daemon=True).start()
threading.Event().wait()
