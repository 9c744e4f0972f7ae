#!/usr/bin/env python3
"""Import graph of labctl's modules, from `crate::`, `super::` and `self::` paths in src/ (tests
excluded).

Prints each top-level module's dependencies, and exits 1 if a module imports one on a higher
floor of LAYERS, or if there is a circle: between top-level modules, or between the module files
inside one (`cli/confirm.rs` -> `cli/run.rs` -> `cli/confirm.rs`), reported with its path. A
module not in LAYERS yet gets a NOTE. A parent's own file (`mod.rs`) declaring and re-exporting
its children is not a use: only the children's uses of it, of each other and of anything else
count. Run: python3 scripts/imports.py [--submodules] (scripts/test.sh runs it first);
--submodules also prints the edges between module files inside each top-level module, and
--self-test checks the checker on a made-up tree.

It also exits 1 if an error crosses a module boundary as a bare String: a `pub` (or
`pub(crate)`, `pub(super)`) fn, field or type alias with `Result<_, String>` in its type, or a
trait impl's `type Err = String` / `type Error = String`. Errors are typed to the edge; only a
leaf parser's private helpers may build a message as a String (STRING_ERRORS_ALLOWED lists the
files that may do more, each with why).
"""
import os, re, sys
from collections import defaultdict

# Lowest floor first. A module may use modules on its own floor or below, never above.
LAYERS = [
    ["error", "secret", "fsutil", "yaml", "sh", "digest", "prompt"],  # prompt: questions on the terminal
    ["inventory", "vault"],
    ["template", "transport", "facts", "cluster"],  # cluster: what is sent to Kubernetes, checked offline
    ["plan"],  # the plan's values: actions, steps, changes, host errors, recaps
    ["resources"],
    ["site"],
    ["schema"],  # JSON schema of specs
    ["apply", "init", "import", "reboot", "removenode", "uninstall"],  # import: Ansible playbooks → a labctl project; reboot: rolling reboots; removenode: one node out of the lab; uninstall: the whole cluster off its hosts
    ["ui"],
    ["testbed"],
    ["cli"],
    # lib.rs is the crate root (declares the modules, `run`); internals re-exports what tests/ and
    # fuzz/ call; main.rs is the binary, which only calls `labctl::run` from outside the library.
    ["lib", "internals", "main"],
]

# Files (relative to src/) whose public items may still return `Result<_, String>`, each with why.
# Empty: every public error is typed. Add a file only with a reason that would convince a reviewer.
STRING_ERRORS_ALLOWED = {}

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A path that starts at the crate or relative to the current module, outside `use` items.
PATH = re.compile(rf"\b(?:crate|super|self)(?:::{IDENT})+")
USE = re.compile(r"\buse\s+([^;]*);", re.S)


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks (to the end of the file, as they sit last)
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\(crate\) )?mod \w+ \{", text)
    return text[: m.start()] if m else text


def module_of(path, src):
    """`src/cli/run.rs` -> ("cli", "run"); `src/cli/mod.rs` -> ("cli",); `src/lib.rs` -> ("lib",)."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def split_top(s):
    """Split at commas outside braces."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def expand(tree):
    """A `use` tree as full paths: `a::{self, b::{c, d}}` -> a, a::b::c, a::b::d."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)  # `x as y` uses x
    tree = re.sub(r"\s+", "", tree)
    if tree.endswith("}") and "{" in tree:
        i = tree.index("{")
        prefix = tree[:i].rstrip(":")
        out = []
        for part in split_top(tree[i + 1 : -1]):
            for p in expand(part):
                out.append(prefix if p == "self" else f"{prefix}::{p}" if prefix else p)
        return out
    return [tree]


def resolve(path, me):
    """A path as segments from the crate root, or None for an external crate or std."""
    segs = path.split("::")
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] in ("self", "super"):
        # `super` of `cli::run` (cli/run.rs) is `cli`; of `cli` (cli/mod.rs), the crate.
        base = list(me)
        while segs and segs[0] in ("self", "super"):
            if segs.pop(0) == "super":
                base = base[:-1]
        return base + segs
    return None


def target(segs, modules):
    """The longest module that `segs` names or names something in."""
    for n in range(len(segs), 0, -1):
        if tuple(segs[:n]) in modules:
            return tuple(segs[:n])
    return None


def cycles(deps):
    """One circle per strongly connected component (Tarjan), each as a path back to its start."""
    index, low, on, stack, comps, n = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in deps.get(v, ()):
                comps.append(comp)

    for v in sorted(deps):
        if v not in index:
            strong(v)
    out = []
    for comp in comps:
        start = min(comp)
        # Shortest way back to `start` inside the component.
        prev, todo = {start: None}, [start]
        found = None
        while todo and found is None:
            nxt = []
            for v in todo:
                for w in sorted(deps.get(v, ())):
                    if w == start:
                        found = v
                        break
                    if w in comp and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            todo = nxt
        path, v = [start], found
        while v != start:
            path.insert(1, v)
            v = prev[v]
        out.append(path + [start])
    return sorted(out)


def module_edges(src):
    """Edges between module files, a parent's edges to its own children left out."""
    files = {}
    for root, _, names in os.walk(src):
        for f in names:
            if f.endswith(".rs") and f != "tests.rs":
                p = os.path.join(root, f)
                files[module_of(p, src)] = p
    modules = set(files)
    edges = defaultdict(set)
    for me, p in files.items():
        text = strip_tests(open(p).read())
        text = re.sub(r"//.*", "", text)
        paths = []
        for u in USE.findall(text):
            paths += expand(u)
        paths += PATH.findall(USE.sub("", text))
        for path in paths:
            segs = resolve(path, me)
            t = segs and target(segs, modules)
            if t and t != me and t[: len(me)] != me:
                edges[me].add(t)
        edges.setdefault(me, set())
    return edges


def name(m):
    return "::".join(m)


def check(edges, out=print, show_sub=False):
    """Print the graph through `out`; return the problems."""
    deps = defaultdict(set)
    for a, bs in edges.items():
        deps[a[0]] |= {b[0] for b in bs if b[0] != a[0]}
        deps.setdefault(a[0], set())
    floor = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = []
    notes = set()
    for m in sorted(deps):
        out(f"{m:12} -> {', '.join(sorted(deps[m])) or '-'}")
        for d in deps[m]:
            if m not in floor or d not in floor:
                # A new module: say so, but only cycles and known floors fail.
                notes.add(f"{m if m not in floor else d} is not in LAYERS: give it a floor")
            elif floor[d] > floor[m]:
                bad.append(f"{m} (floor {floor[m]}) imports {d} (floor {floor[d]})")
    for c in cycles(deps):
        bad.append("cycle: " + " -> ".join(c))
    # Circles between the files of one top-level module (a circle across top-level modules is
    # one of theirs, reported above).
    inner = {a: {b for b in bs if b[0] == a[0]} for a, bs in edges.items()}
    if show_sub:
        out("")
        for a in sorted(inner):
            if len(a) > 1 or inner[a]:
                out(f"{name(a):24} -> {', '.join(name(b) for b in sorted(inner[a])) or '-'}")
    for c in cycles(inner):
        bad.append("cycle: " + " -> ".join(name(m) for m in c))
    for n in sorted(notes):
        out(f"NOTE: {n}")
    return bad


VIS = r"\bpub(?:\([^)]*\))?\s+"
# A public fn's signature (up to its body or `;`), a public field (one line), a public type alias.
PUB_ITEMS = re.compile(
    rf"{VIS}(?:(?:async|const|unsafe|extern)\s+)*fn\b[^{{;]*"
    rf"|{VIS}{IDENT}\s*:[^\n]*"
    rf"|{VIS}type\s[^;]*;"
)
STRING_ASSOC = re.compile(r"\btype\s+(?:Err|Error)\s*=\s*(?:std::string::)?String\s*;")


def generic_args(text, start):
    """The top-level arguments of the `<...>` opening at text[start]."""
    depth, cur, out = 0, "", []
    i = start
    while i < len(text):
        ch = text[i]
        if ch in "<([":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif ch in ">)]" and not (ch == ">" and text[i - 1] == "-"):
            depth -= 1
            if depth == 0:
                out.append(cur.strip())
                return out
        elif ch == "," and depth == 1:
            out.append(cur.strip())
            cur = ""
            i += 1
            continue
        cur += ch
        i += 1
    return out


def string_error(sig):
    """Does this type or signature hold a `Result<_, String>`?"""
    for m in re.finditer(r"\bResult\s*<", sig):
        args = generic_args(sig, m.end() - 1)
        if len(args) == 2 and args[1] in ("String", "std::string::String"):
            return True
    return False


def string_errors(src, allowed=None):
    """Public items of src/ whose error is a bare String, as `file:line: item` problems."""
    allowed = STRING_ERRORS_ALLOWED if allowed is None else allowed
    bad = []
    for root, _, names in os.walk(src):
        for f in sorted(names):
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            p = os.path.join(root, f)
            rel = os.path.relpath(p, src)
            if rel in allowed:
                continue
            text = re.sub(r"//[^\n]*", "", strip_tests(open(p).read()))
            hits = [m for m in PUB_ITEMS.finditer(text) if string_error(m.group(0))]
            hits += list(STRING_ASSOC.finditer(text))
            for m in sorted(hits, key=lambda m: m.start()):
                line = text[: m.start()].count("\n") + 1
                item = " ".join(m.group(0).split())[:90]
                bad.append(f"{rel}:{line}: a String error crosses the module boundary: {item}")
    return bad


def self_test():
    """The checks on a made-up tree: a circle two files deep, and what is not one."""
    import tempfile

    files = {
        "lib.rs": "mod plan; mod apply;",
        "plan/mod.rs": "pub mod a; pub mod b; pub use self::a::A;",
        # plan::a -> plan::b -> plan::c::d -> plan::a: found, with its path.
        "plan/a.rs": "use super::b::{self as bee, B};\npub struct A;",
        "plan/b.rs": "pub fn f() { crate::plan::c::d::g() }",
        "plan/c/mod.rs": "pub mod d;",
        "plan/c/d.rs": "use crate::plan::{a::A, error};\n#[cfg(test)]\nmod tests { use super::super::super::b; }",
        "plan/error.rs": "// use crate::apply::x;  (a comment is no use)",
        # A parent re-exporting its child and the child using the parent: no circle.
        "apply/mod.rs": "mod run; pub use self::run::go; pub struct Opts;",
        "apply/run.rs": "use super::Opts; use crate::plan::A; use std::sync::Arc;",
        # String errors: public ones found (fn over lines, field, assoc type), the rest not.
        "apply/parse.rs": "\n".join([
            "pub fn bad(s: &str) -> Result<u8, String> { Ok(0) }",
            "pub(crate) async fn long(",
            "    s: &str,",
            ") -> Result<HashMap<String, String>, String> {",
            "fn private() -> Result<u8, String> { Ok(0) }",
            "pub fn typed() -> Result<HashMap<String, String>, ParseError> { todo!() }",
            "pub fn other() -> Result<(), Box<dyn Fn() -> String>> { todo!() }",
            "// pub fn commented() -> Result<u8, String>",
            "pub struct M { pub split: fn(&[&str], &str) -> Result<Vec<String>, String>, pub n: u8 }",
            "impl FromStr for X { type Err = String; }",
            "#[cfg(test)]",
            "mod tests { pub fn helper() -> Result<(), String> { Ok(()) } }",
        ]),
        "apply/leaf.rs": "pub fn allowed() -> Result<u8, String> { Ok(0) }",
    }
    with tempfile.TemporaryDirectory() as d:
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
            open(os.path.join(d, rel), "w").write(text)
        edges = module_edges(d)
        got = check(edges, out=lambda _: None)
        strings = string_errors(d, {"apply/leaf.rs": "test"})
    want = ["cycle: plan::a -> plan::b -> plan::c::d -> plan::a"]
    assert got == want, got
    assert edges[("apply", "run")] == {("apply",), ("plan",)}, edges[("apply", "run")]
    assert edges[("plan", "error")] == set(), edges[("plan", "error")]
    assert edges[("plan",)] == set(), "a parent's uses of its children are not edges"
    assert expand("a::{self, b::{c as x, d}, e}") == ["a", "a::b::c", "a::b::d", "a::e"]
    got = [b.split(": a String")[0] for b in strings]
    assert got == ["apply/parse.rs:1", "apply/parse.rs:2", "apply/parse.rs:9", "apply/parse.rs:10"], got
    print("imports.py self-test: ok")


def main():
    if "--self-test" in sys.argv[1:]:
        return self_test()
    bad = check(module_edges(SRC), show_sub="--submodules" in sys.argv[1:])
    bad += string_errors(SRC)
    for b in bad:
        print("PROBLEM:", b)
    sys.exit(1 if bad else 0)


main()
