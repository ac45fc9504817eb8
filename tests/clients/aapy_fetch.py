"""Reads one PV from a running archiver with aapy (a real client from PyPI), as a user
script would: aa.pb.PbFetcher (getData.raw, pbraw) and aa.js.JsonFetcher (getData.json).

Usage: aapy_fetch.py HOST PORT PV FROM TO   (FROM, TO: Unix seconds, may be fractional)
Prints one JSON object: {"raw": DATA, "json": DATA, "aapy": VERSION} where DATA is
{"values": [...], "timestamps": [...], "severities": [...], "enum_options": {"0": ...},
"enum_strings": [...] or null}. Used by tests/aapy_client.rs.
"""
import datetime
import json
import sys

import aa
from aa.js import JsonFetcher
from aa.pb import PbFetcher


def as_dict(data):
    strings = data.enum_strings
    values = data.values
    if values.ndim == 2 and values.shape[1] == 1:  # aapy keeps scalars as 1-element rows
        values = values[:, 0]
        if strings is not None:
            strings = strings[:, 0] if strings.ndim == 2 else strings
    return {
        "values": values.tolist(),
        "timestamps": [float(t) for t in data.timestamps],
        "severities": [int(s) for s in data.severities],
        "enum_options": {str(k): v for k, v in data.enum_options.items()},
        "enum_strings": None if strings is None else [str(s) for s in strings],
    }


def main():
    host, port, pv, t0, t1 = sys.argv[1:6]
    utc = datetime.timezone.utc
    start = datetime.datetime.fromtimestamp(float(t0), utc)
    end = datetime.datetime.fromtimestamp(float(t1), utc)
    out = {"aapy": getattr(aa, "__version__", "?")}
    for key, fetcher in (("raw", PbFetcher(host, int(port))), ("json", JsonFetcher(host, int(port)))):
        out[key] = as_dict(fetcher.get_values(pv, start, end))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
