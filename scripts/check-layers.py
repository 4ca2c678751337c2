#!/usr/bin/env python3
"""Dependencies point one way: core <- backends <- services <- protocols <- cli.

A source file may include the headers of its own floor and of the floors
below it, never one above. Run by `make unit` (so by `make test` and by the
landing script); exits 1 and names every upward include it finds.

A public header include/roost/X.h sits on the floor of its module: the
folder holding X.c or X_*.c (the highest such floor when several do: smtp.h
has services/smtp_client.c and protocols/smtp/smtp_*.c, so it is a protocol
header), unless PLACED below says otherwise. A header no module claims is
noted and allowed. bench/ is a client of the public interface: no *_impl.h
and no "../" path into the tree.
"""
import os
import re
import sys

FLOORS = ["core", "backends", "services", "protocols", "cli"]
# Headers without a module file of their own name.
PLACED = {
    "cli.h": "cli",
    "protocols.h": "protocols",
    "services.h": "services",
    "storage_impl.h": "backends",
    "server_impl.h": "core",
}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def floor_of(path):
    top = path.split(os.sep, 1)[0]
    return FLOORS.index(top) if top in FLOORS else None


def sources(exts):
    for top in FLOORS:
        for d, _, files in os.walk(top):
            for f in sorted(files):
                if f.endswith(exts):
                    yield os.path.join(d, f)


def header_floors():
    modules = {}
    for path in sources((".c",)):
        base = os.path.basename(path)[:-2]
        modules.setdefault(base, set()).add(floor_of(path))
    floors = {}
    for h in os.listdir("include/roost"):
        if not h.endswith(".h"):
            continue
        if h in PLACED:
            floors[h] = FLOORS.index(PLACED[h])
            continue
        mod = h[:-2]
        found = set()
        for base, fl in modules.items():
            if base == mod or base.startswith(mod + "_"):
                found |= fl
        floors[h] = max(found) if found else None
    return floors


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    floors = header_floors()
    bad = 0
    for path in sources((".c", ".h")):
        mine = floor_of(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if m is None:
                    continue
                inc = m.group(1)
                if inc.startswith("roost/"):
                    theirs = floors.get(inc[len("roost/"):])
                    if theirs is None:
                        print(f"check-layers: note: {path}:{n}: {inc} belongs to no floor",
                              file=sys.stderr)
                        continue
                else:
                    target = os.path.normpath(os.path.join(os.path.dirname(path), inc))
                    theirs = floor_of(target)
                    if theirs is None:
                        continue
                if theirs > mine:
                    print(f"{path}:{n}: {FLOORS[mine]} includes {inc} from {FLOORS[theirs]} "
                          "(dependencies point down: " + " <- ".join(FLOORS) + ")")
                    bad += 1
    for d, _, files in os.walk("bench"):
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(d, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if m and (m.group(1).startswith("../") or m.group(1).endswith("_impl.h")):
                        print(f"{path}:{n}: the benchmarks use the public interface, "
                              f"not {m.group(1)}")
                        bad += 1
    if bad:
        print(f"check-layers: {bad} upward include(s)")
        return 1
    print("check-layers: no upward include")
    return 0


if __name__ == "__main__":
    sys.exit(main())
