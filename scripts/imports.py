#!/usr/bin/env python3
"""Import graph of labctl's top-level modules, from `crate::` paths in src/ (tests excluded).

Prints each module's dependencies, and exits 1 if the graph has a cycle or a module imports
one on a higher floor of LAYERS (a module not in LAYERS yet gets a NOTE). Run:
python3 scripts/imports.py (scripts/test.sh runs it first).
"""
import os, re, sys
from collections import defaultdict

# Lowest floor first. A module may use modules on its own floor or below, never above.
LAYERS = [
    ["error", "secret", "fsutil", "yaml", "sh", "digest"],
    ["inventory", "vault"],
    ["template", "transport", "facts", "cluster"],  # cluster: what is sent to Kubernetes, checked offline
    ["plan"],  # the plan's types: actions, steps, changes, host errors, the selection
    ["resources"],
    ["site", "role_checks", "fuzzing"],  # fuzzing: test-only entry points over the loaders
    ["schema"],  # JSON schema of specs
    ["apply", "init"],
    ["ui"],
    ["testbed"],
    ["cli"],
    ["main"],
]

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
CRATE = re.compile(r"\bcrate::([a-z_]+(?:::[a-z_]+)?)")
USE_GROUP = re.compile(r"use crate::\{([^;]*)\};", re.S)


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks (to the end of the file, as they sit last)
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\(crate\) )?mod \w+ \{", text)
    return text[: m.start()] if m else text


def node(name):
    """`facts::os` -> `facts`."""
    return name.split("::")[0]


def top(path):
    rel = os.path.relpath(path, SRC)[:-3].replace(os.sep, "::")
    return node(rel.removesuffix("::mod"))


def main():
    deps = defaultdict(set)
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            p = os.path.join(root, f)
            me = top(p)
            text = strip_tests(open(p).read())
            text = re.sub(r"//.*", "", text)
            names = {node(n) for n in CRATE.findall(text)}
            for g in USE_GROUP.findall(text):
                names |= {node(n.strip()) for n in g.split(",") if n.strip()}
            deps[me] |= {n for n in names if n != me}
    floor = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = []
    notes = set()
    for m in sorted(deps):
        print(f"{m:12} -> {', '.join(sorted(deps[m])) or '-'}")
        for d in deps[m]:
            if m not in floor or d not in floor:
                # A new module: say so, but only cycles and known floors fail.
                notes.add(f"{m if m not in floor else d} is not in LAYERS: give it a floor")
            elif floor[d] > floor[m]:
                bad.append(f"{m} (floor {floor[m]}) imports {d} (floor {floor[d]})")
    # cycles (same-floor modules may use each other only without a circle)
    state = {}
    def visit(m, stack):
        state[m] = 1
        for d in sorted(deps.get(m, ())):
            if state.get(d) == 1:
                bad.append("cycle: " + " -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"cycle via {d}")
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2
    for m in sorted(deps):
        if m not in state:
            visit(m, [m])
    for n in sorted(notes):
        print("NOTE:", n)
    for b in bad:
        print("PROBLEM:", b)
    sys.exit(1 if bad else 0)


main()
