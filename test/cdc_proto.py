#!/usr/bin/python3
"""Decode change-capture PROTO records for the TAP tests.

Reads one JSON object from stdin: {"descriptor": "<hex>", "records": ["<hex>", ...]},
decodes each record with the descriptor (the emulator's own record class
builder, emulator/protos.py) and prints a JSON list of objects in the
conventions of the extension's JSON records: bytes as base64, repeated
fields as lists, absent fields left out.  Unknown fields or a record that
does not parse are errors.
"""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "emulator"))
from protos import record_class_from_descriptor  # noqa: E402


def value(v):
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def main():
    req = json.load(sys.stdin)
    cls = record_class_from_descriptor(bytes.fromhex(req["descriptor"]))
    out = []
    for raw in req["records"]:
        msg = cls()
        msg.ParseFromString(bytes.fromhex(raw))
        if msg.UnknownFields():
            raise SystemExit("record has unknown fields")
        rec = {}
        for field, v in msg.ListFields():
            rec[field.name] = [value(x) for x in v] if field.label == field.LABEL_REPEATED else value(v)
        out.append(rec)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
