#!/usr/bin/env python3
"""Check that core/ keeps its floors (docs/architecture.md).

Each folder of core/ is a floor, and a file may use only its own floor and
those below it:

    gateway.h (the public module API: includes nothing of ours)
    base/  <  vm/  <  modules/  <  runtime/  <  net/  <  main.c

"Use" is an #include "..." of a file of core/, or, when object files are
given (--objects DIR, the build's obj/ folder), a call or reference to a
symbol that another object defines. A .c file and the .h of the same name
in the same folder are one unit; no two units may use each other, directly
or round a longer loop (a circle), even on one floor.

    scripts/check-layers.py [--core DIR] [--objects DIR]

Prints each broken rule and exits 1, or prints a one-line summary and
exits 0.
"""
import argparse
import os
import re
import subprocess
import sys

FLOORS = ["base", "vm", "modules", "runtime", "net"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def floor_of(unit):
    """0 for gateway.h, 1.. for the folders, above them all for main."""
    if unit == "gateway":
        return 0
    folder = unit.split("/")[0]
    if folder in FLOORS:
        return FLOORS.index(folder) + 1
    return len(FLOORS) + 1


def unit_of(path):
    """core-relative path without extension: a .c and its .h are one unit."""
    return os.path.splitext(path)[0]


def read_includes(core):
    """{unit: {used unit: [why, ...]}} from the quoted includes."""
    uses = {}
    errors = []
    for root, _dirs, files in os.walk(core):
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            full = os.path.join(root, name)
            rel = os.path.relpath(full, core)
            unit = unit_of(rel)
            uses.setdefault(unit, {})
            with open(full, encoding="utf-8", errors="replace") as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                if not os.path.exists(os.path.join(core, inc)):
                    if os.path.exists(os.path.join(root, inc)):
                        errors.append(f"{rel}: includes \"{inc}\" by a path relative to its folder; "
                                      "name it from core/ (\"{}\")".format(
                                          os.path.relpath(os.path.join(root, inc), core)))
                    continue  # a system or library header
                target = unit_of(inc)
                if target != unit:
                    uses[unit].setdefault(target, []).append(f"#include \"{inc}\" in {rel}")
    return uses, errors


def read_symbols(objects, core):
    """{unit: {used unit: [why, ...]}} from the objects' undefined symbols."""
    defined, undefined = {}, {}
    for root, _dirs, files in os.walk(objects):
        for name in files:
            if not name.endswith(".o"):
                continue
            full = os.path.join(root, name)
            unit = unit_of(os.path.relpath(full, objects))
            if not os.path.exists(os.path.join(core, unit + ".c")):
                continue  # an object of a file that has since moved
            out = subprocess.run(["nm", "-P", full], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 2:
                    continue
                sym, kind = parts[0], parts[1]
                if kind == "U":
                    undefined.setdefault(unit, set()).add(sym)
                elif kind in ("T", "D", "B", "R", "C", "V", "W"):
                    defined.setdefault(sym, set()).add(unit)
    uses = {}
    for unit, syms in undefined.items():
        for sym in syms:
            owners = defined.get(sym, set())
            if len(owners) == 1:
                target = next(iter(owners))
                if target != unit:
                    uses.setdefault(unit, {}).setdefault(target, []).append(f"uses {sym}")
    return uses


def circles(graph):
    """The strongly connected components of more than one unit (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--core", default=os.path.join(here, "..", "core"))
    ap.add_argument("--objects", help="the build's obj/ folder: check calls between objects too")
    args = ap.parse_args()
    core = os.path.normpath(args.core)

    graph, problems = read_includes(core)
    if args.objects:
        for unit, targets in read_symbols(args.objects, core).items():
            for target, why in targets.items():
                graph.setdefault(unit, {}).setdefault(target, []).extend(why)

    for unit in sorted(graph):
        for target, why in sorted(graph[unit].items()):
            if floor_of(target) > floor_of(unit):
                problems.append(f"{unit} uses {target}, a floor above it: {'; '.join(sorted(set(why))[:3])}")
    for comp in circles(graph):
        ties = []
        for a in comp:
            for b in comp:
                if b in graph.get(a, {}):
                    ties.append(f"{a} -> {b} ({'; '.join(sorted(set(graph[a][b]))[:2])})")
        problems.append("circle: " + ", ".join(comp) + "\n    " + "\n    ".join(ties))

    if problems:
        for p in problems:
            print("check-layers: " + p)
        return 1
    nedges = sum(len(t) for t in graph.values())
    print(f"check-layers: {len(graph)} units of core/, {nedges} ties, every one downward or level, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
