#!/usr/bin/env python3
"""Processes and CPU time on the HOST for one no-op `labctl plan` of the bench workload.

    bench/.venv/bin/python bench/lib/probe_cost.py --labctl target/release/labctl [--labctl OLD ...]

Boots one test host (testbed `factsprobe`), converges it with the first binary, then for each
binary runs `labctl plan` several times while `strace -f` is attached (from outside the
container) to the host's sshd: every execve (a program started) and every fork/clone (a process
created) under that sshd is counted. The host's CPU time is the container cgroup's `usage_usec`
delta around a plan WITHOUT strace, minus the same delta for `ssh host true` (the floor:
sshd's own connection work). Writes bench/results/probe-cost.json. Not a test.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def cgroup_dir(pid):
    """The container's cgroup (v2): the one holding the host's init, or, when nspawn made a
    `payload` subtree for the container's own cgroups, the parent of that subtree."""
    import os
    for d, _, files in os.walk("/sys/fs/cgroup"):
        if "cgroup.procs" in files:
            try:
                procs = Path(d, "cgroup.procs").read_text().split()
            except OSError:
                continue
            if str(pid) in procs:
                p = Path(d)
                while p.name != "payload" and p != Path("/sys/fs/cgroup"):
                    p = p.parent
                return p.parent if p.name == "payload" else Path(d)
    raise RuntimeError(f"no cgroup holds pid {pid}")


def usage_usec(cg):
    for line in (cg / "cpu.stat").read_text().splitlines():
        k, v = line.split()
        if k == "usage_usec":
            return int(v)
    raise RuntimeError(f"no usage_usec in {cg}/cpu.stat")


def traced_plan(lab, argv, cwd, out):
    _, _, sp = harness.run(["pgrep", "-P", str(lab.hosts[0]["pid"]), "-x", "sshd"], check=False)
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(out),
                           "-p", sp.split()[0]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    harness.run(argv, cwd=cwd, check=True)
    time.sleep(0.5)
    st.terminate()
    st.wait()
    execs, forks, progs = 0, 0, {}
    for line in out.read_text().splitlines():
        m = re.match(r'^\d+\s+execve\("([^"]+)".*= 0$', line)
        if m:
            execs += 1
            b = m.group(1).rsplit("/", 1)[-1]
            progs[b] = progs.get(b, 0) + 1
        elif re.match(r"^\d+\s+(clone3?|v?fork)\(.*= \d+$", line):
            forks += 1
    return execs, forks, progs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--labctl", action="append", required=True, help="binary to measure (first one converges)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    bins = [Path(b).resolve() for b in a.labctl]
    harness.LABCTL = bins[0]
    lab = harness.Lab("factsprobe", 1)
    res = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_start": open("/proc/loadavg").read().split()[:3],
           "binaries": {}}
    try:
        lab.fresh()
        argv, cwd, _ = lab.tool_cmd("labctl", "apply")
        harness.run(argv, cwd=cwd, check=False)
        _, ch, _ = lab.run_tool("labctl", "apply")
        if ch != 0:
            raise SystemExit(f"second apply reported {ch} changes")
        cg = cgroup_dir(lab.hosts[0]["pid"])
        h = lab.hosts[0]
        floor = []
        for _ in range(a.reps):
            u0 = usage_usec(cg)
            lab.ssh(h, "true")
            floor.append(usage_usec(cg) - u0)
        res["floor_cpu_ms"] = statistics.median(floor) / 1000
        res["cgroup"] = str(cg)
        for b in bins:
            harness.LABCTL = b
            argv, cwd, _ = lab.tool_cmd("labctl", "dry")
            version = subprocess.run([str(b), "--version"], capture_output=True, text=True).stdout.strip()
            cpu = []
            for _ in range(a.reps):
                u0 = usage_usec(cg)
                harness.run(argv, cwd=cwd)
                cpu.append(usage_usec(cg) - u0)
            e, f, progs = traced_plan(lab, argv, cwd, harness.WORK / f"probecost-{b.parent.name}.strace")
            r = {"binary": str(b), "version": version, "execs": e, "forks": f,
                 "programs": sorted(progs.items(), key=lambda kv: -kv[1]),
                 "plan_cpu_ms": statistics.median(cpu) / 1000,
                 "probe_cpu_ms": (statistics.median(cpu) - statistics.median(floor)) / 1000,
                 "plan_cpu_ms_all": [c / 1000 for c in cpu]}
            res["binaries"][str(b)] = r
            print(json.dumps(r))
    finally:
        if not a.keep:
            lab.down()
    res["load_end"] = open("/proc/loadavg").read().split()[:3]
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "probe-cost.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "binaries"}))


if __name__ == "__main__":
    main()
