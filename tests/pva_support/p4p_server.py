"""A p4p (pvxs) pvAccess server for the PVA integration tests.

    p4p_server.py PREFIX PVA_TCP_PORT PVA_UDP_PORT BEACON_PORT

Beacons go to 127.0.0.1:BEACON_PORT (a port of their own, so that a test client listening
there hears them whichever process bound the search port last).

Serves
  PREFIX:STRUCT  custom structure "test:point_t" {value{x,y: double; label: string;
                 u: union{i: int, s: string}; any: any}, alarm, timeStamp}
  PREFIX:TABLE   NTTable with columns pos (double[]) and name (string[]), stamped now
Prints "READY". Stdin lines (each answered "DONE n"):
  x VALUE SECONDS NANOS   post value.x and timeStamp only (a partial update)
  y VALUE [SECONDS]       post value.y only (and the time stamp when given)
  u_s TEXT                post value.u = string member
  any_i VALUE             post value.any = an int
  table POS,... NAME,...  post a new table
  burst N                 post value.x = 1..N as fast as possible (for overruns)
"""
import sys
import time

from p4p import Type, Value
from p4p.nt import NTTable
from p4p.server import Server
from p4p.server.thread import SharedPV

prefix, tcp_port, udp_port, beacon_port = sys.argv[1:5]

point_t = Type([
    ("value", ("S", "point_t", [
        ("x", "d"),
        ("y", "d"),
        ("label", "s"),
        ("u", ("U", None, [("i", "i"), ("s", "s")])),
        ("any", "v"),
    ])),
    ("alarm", ("S", "alarm_t", [("severity", "i"), ("status", "i"), ("message", "s")])),
    ("timeStamp", ("S", "time_t", [("secondsPastEpoch", "l"), ("nanoseconds", "i"),
                                   ("userTag", "i")])),
], id="test:point_t")

init = Value(point_t, {
    "value": {"x": 1.0, "y": 2.0, "label": "origin"},
    "timeStamp": {"secondsPastEpoch": 1600000000, "nanoseconds": 5},
})
struct_pv = SharedPV(initial=init)

table_t = NTTable([("pos", "d"), ("name", "s")])
def table(rows):
    v = table_t.wrap(rows)
    v["timeStamp.secondsPastEpoch"] = int(time.time())
    return v


table_pv = SharedPV(nt=table_t, initial=table([
    {"pos": 0.5, "name": "a"},
    {"pos": 1.5, "name": "b"},
]))

server = Server(
    providers=[{prefix + ":STRUCT": struct_pv, prefix + ":TABLE": table_pv}],
    conf={
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_SERVER_PORT": tcp_port,
        "EPICS_PVAS_BROADCAST_PORT": udp_port,
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1:" + beacon_port,
    },
    useenv=False,
)
print("READY", flush=True)


def post(fields):
    v2 = Value(point_t, {})
    for k, x in fields.items():
        v2[k] = x
    struct_pv.post(v2)


n = 0
for line in sys.stdin:
    p = line.split()
    if not p:
        continue
    if p[0] == "x":
        post({"value.x": float(p[1]), "timeStamp.secondsPastEpoch": int(p[2]),
              "timeStamp.nanoseconds": int(p[3])})
    elif p[0] == "y":
        f = {"value.y": float(p[1])}
        if len(p) > 2:
            f.update({"timeStamp.secondsPastEpoch": int(p[2]), "timeStamp.nanoseconds": 0})
        post(f)
    elif p[0] == "u_s":
        post({"value.u": ("s", p[1])})
    elif p[0] == "any_i":
        post({"value.any": int(p[1])})
    elif p[0] == "table":
        pos = [float(x) for x in p[1].split(",")]
        names = p[2].split(",")
        table_pv.post(table([{"pos": a, "name": b} for a, b in zip(pos, names)]))
    elif p[0] == "burst":
        for i in range(1, int(p[1]) + 1):
            post({"value.x": float(i)})
    n += 1
    print("DONE %d" % n, flush=True)
server.stop()
