#!/usr/bin/env python3
"""Processes and CPU time on the HOST for one no-op `labctl plan` of the bench workload.

    bench/.venv/bin/python bench/lib/probe_cost.py --labctl target/release/labctl [--labctl OLD ...]

Boots one test host (testbed `factsprobe`), converges it with the first binary, then for each
binary runs `labctl plan` several times while `strace -f` is attached (from outside the
container) to the host's sshd: every execve (a program started) and every fork/clone (a process
created) under that sshd is counted. The host's CPU time is the growth of the sshd listener's
reaped-children CPU time (cutime + cstime: everything a connection ran) around a plan WITHOUT
strace, minus the same for `ssh host true` (the floor: sshd's own connection work). Writes bench/results/probe-cost.json. Not a test.
"""

import argparse
import os
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def sshd_listener(lab):
    _, _, sp = harness.run(["pgrep", "-P", str(lab.hosts[0]["pid"]), "-x", "sshd"], check=False)
    return int(sp.split()[0])


def children_cpu_ms(pid):
    """CPU time (user + system) of every process the host's sshd listener has reaped: each
    connection's sshd waits for its session, so this sums everything a connection ran on the
    host, sshd's own work included. Clock ticks (10 ms), hence several repetitions."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); cutime and cstime are fields 16 and 17.
    ticks = int(fields[13]) + int(fields[14])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def traced_plan(lab, argv, cwd, out):
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-ff", "-o", str(out),
                           "-p", str(sshd_listener(lab))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    harness.run(argv, cwd=cwd, check=True)
    time.sleep(0.5)
    st.terminate()
    st.wait()
    return count_trace(out)


def traced_floor(lab, out):
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-ff", "-o", str(out),
                           "-p", str(sshd_listener(lab))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    lab.ssh(lab.hosts[0], "true")
    time.sleep(0.5)
    st.terminate()
    st.wait()
    return count_trace(out)


def count_trace(out):
    """strace -ff writes one file per process (OUT.PID), so no line is split by another
    process's (an `execve(...) <unfinished ...>` / `<... execve resumed>` pair)."""
    execs, forks, progs = 0, 0, {}
    for f in out.parent.glob(out.name + ".*"):
        for line in f.read_text().splitlines():
            m = re.match(r'^execve\("([^"]+)".*= 0$', line)
            if m:
                execs += 1
                b = m.group(1).rsplit("/", 1)[-1]
                progs[b] = progs.get(b, 0) + 1
            elif re.match(r"^(clone3?|v?fork)\(.*= \d+$", line):
                forks += 1
        f.unlink()
    return execs, forks, progs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--labctl", action="append", required=True,
                    help="LABEL=PATH of a labctl binary to measure (the first one converges the host)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    labels = [b.split("=", 1)[0] if "=" in b else b for b in a.labctl]
    bins = [Path(b.split("=", 1)[-1]).resolve() for b in a.labctl]
    harness.LABCTL = bins[0]
    lab = harness.Lab("factsprobe", 1)
    res = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_start": open("/proc/loadavg").read().split()[:3],
           "binaries": {}, "command": "bench/lib/probe_cost.py " + " ".join(sys.argv[1:])}
    try:
        lab.fresh()
        argv, cwd, _ = lab.tool_cmd("labctl", "apply")
        harness.run(argv, cwd=cwd, check=False)
        _, ch, out = lab.run_tool("labctl", "apply")
        if ch != 0:
            raise SystemExit(f"second apply reported {ch} changes:\n{out[-3000:]}")
        sshd = sshd_listener(lab)
        h = lab.hosts[0]
        floor = []
        for _ in range(a.reps):
            u0 = children_cpu_ms(sshd)
            lab.ssh(h, "true")
            time.sleep(0.2)
            floor.append(children_cpu_ms(sshd) - u0)
        res["floor_cpu_ms"] = statistics.median(floor)
        e, f, progs = traced_floor(lab, harness.WORK / "probecost-floor.strace")
        res["floor_execs"], res["floor_forks"], res["floor_programs"] = e, f, progs
        for label, b in zip(labels, bins):
            harness.LABCTL = b
            argv, cwd, _ = lab.tool_cmd("labctl", "dry")
            version = subprocess.run([str(b), "--version"], capture_output=True, text=True).stdout.strip()
            cpu = []
            for _ in range(a.reps):
                u0 = children_cpu_ms(sshd)
                harness.run(argv, cwd=cwd)
                time.sleep(0.2)
                cpu.append(children_cpu_ms(sshd) - u0)
            e, f, progs = traced_plan(lab, argv, cwd, harness.WORK / f"probecost-{b.parent.name}.strace")
            r = {"label": label, "binary": str(b), "version": version, "execs": e, "forks": f,
                 "programs": sorted(progs.items(), key=lambda kv: -kv[1]),
                 "plan_cpu_ms": statistics.median(cpu),
                 "probe_cpu_ms": statistics.median(cpu) - statistics.median(floor),
                 "plan_cpu_ms_all": cpu}
            res["binaries"][label] = r
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
