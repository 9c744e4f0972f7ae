#!/usr/bin/env python3
"""bench harness: labctl vs Ansible vs pyinfra on the same disposable hosts.

Run through bench/run.sh (which builds labctl and the virtualenv first). Writes
BENCHMARKS.md at the repository root and the raw figures to bench/results/latest.json.
Not a test: nothing in CI runs this.
"""

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
# BENCH_LABCTL: another build (e.g. an older one, for a before/after of --first-only).
LABCTL = Path(os.environ.get("BENCH_LABCTL") or ROOT / "target" / "release" / "labctl")
# BENCH_LABCTL_ARGS: extra flags for labctl's apply/plan, e.g. `--timings` (its table goes to the log).
LABCTL_ARGS = shlex.split(os.environ.get("BENCH_LABCTL_ARGS", ""))
VENV_BIN = BENCH / ".venv" / "bin"
TB_DIR = BENCH / ".testbed"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
TOOLS = ["labctl", "ansible", "pyinfra"]
# labctl --forks and pyinfra --parallel: every host at once (at least 10), so neither tool waits
# for a free slot and the floor (`ssh true` to all hosts at once) is the fair comparison. Ansible's
# forks are 20 in ansible.cfg; it runs up to --ansible-max hosts.
PARALLEL = 10
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BENCH_PACKAGES = ["ufw", "cron", "curl", "jq", "rsync", "tree"]
USER_KEY_DATA = "AAAAC3NzaC1lZDI1NTE5AAAAIGO5x48dGQ7ridzYIa53mwT8oJXQcvRjY7p1hABE3EPO"

LOG = None
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def busy_s():
    """Every CPU's busy time since boot, in seconds (/proc/stat: user, nice, system, irq, softirq,
    steal; guest time is inside user). Read around a timed run, it is what the whole machine
    spent on it: the tool, its ssh clients and every test host (they share these CPUs), so
    busy / CPUs is the shortest wall time this machine allows that run."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK


def settle(limit_s=30.0, idle=0.15):
    """Wait (up to limit_s) until the machine is nearly idle over half a second: fresh hosts
    finish booting units and apt's triggers after `prepare`, and a first run timed while they
    do pays for their work."""
    end = time.perf_counter() + limit_s
    while time.perf_counter() < end:
        b0, t0 = busy_s(), time.perf_counter()
        time.sleep(0.5)
        if (busy_s() - b0) / ((time.perf_counter() - t0) * NCPU) < idle:
            return


def log(msg):
    line = f"[{datetime.datetime.now():%H:%M:%S}] {msg}"
    print(line, flush=True)
    if LOG:
        LOG.write(line + "\n")
        LOG.flush()


class BenchError(Exception):
    pass


def run(cmd, cwd=None, env=None, check=True, timeout=1800):
    """Runs cmd, returns (seconds, rc, stdout+stderr without colour codes)."""
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    dt = time.perf_counter() - t0
    out = ANSI.sub("", p.stdout.decode("utf-8", "replace"))
    if LOG:
        LOG.write(f"$ {' '.join(shlex.quote(str(c)) for c in cmd)}  (cwd={cwd}) -> rc {p.returncode} in {dt:.3f}s\n")
        LOG.write(out[-6000:] + "\n")
        LOG.flush()
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{out[-4000:]}")
    return dt, p.returncode, out


# ---------------------------------------------------------------- test hosts

class Lab:
    """One `labctl testbed` incarnation plus the inventories the three tools read."""

    def __init__(self, name, n, python=True):
        self.name, self.n = name, n
        self.python = python
        self.dir = TB_DIR / name
        self.hosts = []
        self.incarnation = 0

    # -- lifecycle
    def down(self):
        run([LABCTL, "testbed", "down", "--name", self.name, "--dir", TB_DIR], check=False)

    def fresh(self):
        """down + up + inventories + out-of-band host setup (python3 for Ansible, sshd VERBOSE)."""
        self.down()
        run([LABCTL, "testbed", "up", "--hosts", str(self.n), "--name", self.name, "--dir", TB_DIR])
        _, _, out = run([LABCTL, "testbed", "status", "--json", "--name", self.name, "--dir", TB_DIR])
        doc = json.loads(out[out.index("{") if "{" in out.split("[", 1)[0] else out.index("["):])
        st = doc["data"] if isinstance(doc, dict) else doc  # labctl's versioned JSON envelope
        self.hosts = [{"name": h["name"], "address": h["address"], "pid": h["init_pid"]} for h in st]
        if len(self.hosts) != self.n or not all(h["ssh"] for h in st):
            raise BenchError(f"testbed {self.name}: expected {self.n} hosts with sshd up: {st}")
        self.incarnation += 1
        self.write_inventories()
        self.prepare()
        settle()

    def prepare(self):
        # Out of band, once per fresh host, untimed. python3 is only for Ansible (labctl and
        # pyinfra need nothing on the host). `apt-get update` + the periodic stamp make the
        # package lists fresh for all three tools alike, so none of them refreshes them in a
        # timed run (labctl: update_cache auto; Ansible: cache_valid_time; pyinfra: cache_time).
        # The workload's six packages are installed here too (issue 17: "converge with packages
        # present"): the first-run figure measures the tools, not dpkg.
        script = (
            "set -e; printf 'LogLevel VERBOSE\\n' > /etc/ssh/sshd_config.d/10-bench-loglevel.conf; "
            "systemctl reload ssh; export DEBIAN_FRONTEND=noninteractive; "
            f"apt-get update -qq; apt-get install -y -qq {'python3 ' if self.python else ''}{' '.join(BENCH_PACKAGES)} >/dev/null; "
            "mkdir -p /var/lib/apt/periodic; touch /var/lib/apt/periodic/update-success-stamp"
        )
        self.each(lambda h: self.ssh(h, script))

    def each(self, fn):
        with cf.ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as ex:
            return list(ex.map(fn, self.hosts))

    # -- access
    @property
    def key(self):
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self):
        return self.dir / "known_hosts"

    def ssh_cmd(self, h, command, opts=()):
        return ["ssh", "-F", "/dev/null", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no",
                "-o", "ControlPath=none", *opts, f"root@{h['address']}", command]

    def ssh(self, h, command, check=True, opts=()):
        return run(self.ssh_cmd(h, command, opts), check=check)

    def ns(self, h, script, check=True):
        """Runs script inside the host's namespaces (not over ssh): for counting and checks."""
        return run(["nsenter", "-t", str(h["pid"]), "-m", "-u", "-i", "-n", "-p", "--", "sh", "-c", script],
                   check=check, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                     "LANG": "C.UTF-8"})

    # -- inventories
    def write_inventories(self):
        WORK.mkdir(parents=True, exist_ok=True)
        peers = [h["address"] for h in self.hosts]
        lines = [
            "# Written by bench/lib/harness.py for testbed " + self.name + " (read by labctl AND Ansible).",
            "all:",
            "  vars:",
            f"    labctl_known_hosts: {self.known_hosts}",
            f"    bench_peers: {json.dumps(peers)}",
            "  children:",
            "    bench:",
            "      hosts:",
        ]
        for i, h in enumerate(self.hosts, 1):
            lines += [
                f"        {h['name']}:",
                f"          ansible_host: {h['address']}",
                "          ansible_user: root",
                f"          ansible_ssh_private_key_file: {self.key}",
                f"          bench_site: rack-{(i - 1) % 2 + 1}",
                f"          bench_index: {i}",
            ]
        self.inv_yml = WORK / f"{self.name}.inventory.yml"
        self.inv_yml.write_text("\n".join(lines) + "\n")
        py = ["# Written by bench/lib/harness.py for testbed " + self.name + " (read by pyinfra).", "bench = ["]
        for i, h in enumerate(self.hosts, 1):
            data = {
                "ssh_hostname": h["address"], "ssh_user": "root", "ssh_key": str(self.key),
                "ssh_known_hosts_file": str(self.known_hosts), "ssh_strict_host_key_checking": "yes",
                "inventory_hostname": h["name"], "bench_site": f"rack-{(i - 1) % 2 + 1}",
                "bench_index": i, "bench_peers": peers,
            }
            py.append(f"    ({h['name']!r}, {data!r}),")
        py.append("]")
        self.inv_py = WORK / f"{self.name}.inventory.py"
        self.inv_py.write_text("\n".join(py) + "\n")
        # Ansible's ControlPersist masters are per incarnation: a master to a host that was
        # torn down must never be reused by the next incarnation's host at the same address.
        self.cp_dir = WORK / "cp" / f"{self.name}-{self.incarnation}"
        self.cp_dir.mkdir(parents=True, exist_ok=True)

    def close_ansible_masters(self):
        for base in [WORK / "cp"]:
            if not base.exists():
                continue
            for sock in base.rglob("*"):
                if sock.is_socket():
                    run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"], check=False, timeout=20)
                    try:
                        sock.unlink()
                    except FileNotFoundError:
                        pass

    # -- the three tools
    def tool_cmd(self, tool, mode):
        """(argv, cwd, env) for tool in mode: apply | dry."""
        if tool == "labctl":
            sub = ["apply", "--yes"] if mode == "apply" else ["plan"]
            return ([str(LABCTL), *sub, "site.yml", "-i", str(self.inv_yml), "--forks", str(max(PARALLEL, self.n)),
                     "--color", "never", *LABCTL_ARGS], BENCH / "labctl", {})
        if tool == "ansible":
            argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inv_yml), "playbook.yml"]
            if mode == "dry":
                argv[2:2] = []
                argv += ["--check", "--diff"]
            return (argv, BENCH / "ansible", {
                "ANSIBLE_CONFIG": str(BENCH / "ansible" / "ansible.cfg"),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "True",
                # Not in the shared inventory: labctl refuses ansible_ssh_common_args there.
                "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts} -o GlobalKnownHostsFile=/dev/null "
                                           "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
            })
        if tool == "pyinfra":
            argv = [str(VENV_BIN / "pyinfra"), "--parallel", str(max(PARALLEL, self.n))]
            argv += ["--dry"] if mode == "dry" else ["-y"]
            argv += [str(self.inv_py), "deploy.py"]
            return (argv, BENCH / "pyinfra", {"PYINFRA_PROGRESS": "off", "NO_COLOR": "1"})
        raise ValueError(tool)

    def run_tool(self, tool, mode):
        """(seconds, changes, output); the machine's busy CPU-seconds for it in self.last_cpu_s."""
        argv, cwd, env = self.tool_cmd(tool, mode)
        b0 = busy_s()
        dt, rc, out = run(argv, cwd=cwd, env=env, check=False)
        self.last_cpu_s = busy_s() - b0
        changes = parse_changes(tool, mode, rc, out, self.n)
        return dt, changes, out

    # -- out-of-band state checks
    def check_state(self, label):
        """Host state the workload must leave, checked inside each host (not through any tool)."""
        def one(args):
            i, h = args
            checks = [
                "dpkg-query -W -f='${Status}\\n' ufw cron curl jq rsync tree | grep -vq 'install ok installed' && exit 11 || true",
                "ufw status verbose | grep -q 'Status: active' || exit 12",
                "ufw status verbose | grep -q 'deny (incoming), allow (outgoing)' || exit 13",
                "for r in 22/tcp 80/tcp 443/tcp 51820/udp; do ufw status | grep -Eq \"^$r +ALLOW +Anywhere\" || exit 14; done",
                "[ \"$(sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.all.send_redirects net.ipv4.tcp_keepalive_time net.core.somaxconn net.ipv4.tcp_fin_timeout | tr '\\n' ' ')\" = '2 0 600 1024 30 ' ] || exit 15",
                "grep -q '^MaxAuthTries 4$' /etc/ssh/sshd_config.d/50-bench.conf || exit 16",
                "sshd -T | grep -q '^clientaliveinterval 300$' || exit 17",
                "id -nG benchadm | grep -qw sudo || exit 18",
                f"grep -q '{USER_KEY_DATA}' ~benchadm/.ssh/authorized_keys || exit 19",
                "[ \"$(stat -c %a /etc/sudoers.d/50-bench)\" = 440 ] && visudo -c >/dev/null || exit 20",
                f"for n in 1 2 3 4 5 6 7 8 9 10; do grep -qx \"id = $(({i} * 100 + n))\" /etc/lab/bench-$n.conf || exit 21; done",
                "[ \"$(stat -c %a /etc/lab /srv/bench /srv/bench/data /srv/bench/data/cache /srv/bench/logs | tr '\\n' ' ')\" = '755 755 750 700 755 ' ] || exit 22",
                "systemctl is-active -q cron && systemctl is-enabled -q cron || exit 23",
                "[ \"$(readlink /etc/localtime)\" = /usr/share/zoneinfo/Europe/Berlin ] || exit 24",
                "[ \"$(cat /etc/timezone)\" = Europe/Berlin ] || exit 25",
            ]
            _, rc, out = self.ns(h, "\n".join(checks), check=False)
            digest_script = ("cd / && sha256sum etc/lab/bench-*.conf etc/ssh/sshd_config.d/50-bench.conf etc/sudoers.d/50-bench "
                             "etc/timezone home/benchadm/.ssh/authorized_keys etc/sysctl.d/60-bench.conf")
            _, _, dig = self.ns(h, digest_script, check=False)
            files = {}
            for line in dig.splitlines():
                parts = line.split()
                if len(parts) == 2:
                    files["/" + parts[1]] = parts[0][:12]
            return h["name"], rc, files
        res = self.each_indexed(one)
        bad = [(n, rc) for n, rc, _ in res if rc != 0]
        if bad:
            raise BenchError(f"{label}: out-of-band state check failed (host, exit code of the failed check): {bad}")
        return {n: d for n, _, d in res}

    def each_indexed(self, fn):
        with cf.ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as ex:
            return list(ex.map(fn, enumerate(self.hosts, 1)))

    # -- drift
    def drift(self):
        """One file and one service drifted per host, out of band over ssh."""
        self.each(lambda h: self.ssh(h, "printf 'drifted\\n' >> /etc/lab/bench-3.conf; systemctl stop cron"))

    # -- sshd log counting
    def mark(self, tag):
        self.each(lambda h: self.ns(h, f"logger -t bench-marker {tag}"))

    def sshd_log(self, begin, end):
        """Per host: sshd journal lines (epoch, message) between two markers."""
        def one(h):
            _, _, out = self.ns(h, "journalctl -o short-unix --no-pager -t sshd -t bench-marker --since -30min")
            lines, inside = [], False
            for line in out.splitlines():
                m = re.match(r"^(\d+\.\d+) \S+ ([\w-]+)\[\d+\]: (.*)$", line)
                if not m:
                    continue
                ts, ident, msg = float(m.group(1)), m.group(2), m.group(3)
                if ident == "bench-marker":
                    if msg == begin:
                        inside = True
                    elif msg == end:
                        inside = False
                    continue
                if inside:
                    lines.append((ts, msg))
            return lines
        return self.each(one)


def controller_cost(argv, cwd, env):
    """labctl's own cost on the controller for one run: CPU seconds (user + system, its ssh
    processes included: wait4's rusage covers reaped descendants), peak RSS of labctl itself
    (VmHWM) and the most file descriptors it held open at once (polled every 5 ms)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(argv, cwd=cwd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    max_fds, hwm_kb = 0, 0
    t0 = time.perf_counter()
    while True:
        try:
            max_fds = max(max_fds, len(os.listdir(f"/proc/{p.pid}/fd")))
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmHWM:"):
                    hwm_kb = max(hwm_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            pass
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.005)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime, "rss_mb": hwm_kb / 1024, "max_rss_tree_mb": ru.ru_maxrss / 1024,
            "max_fds": max_fds, "rc": os.waitstatus_to_exitcode(status)}


def parse_changes(tool, mode, rc, out, n):
    """Changes reported (or, for dry runs, planned) by the tool, summed over hosts; None = failure."""
    if tool == "labctl":
        if mode == "dry":
            if rc == 0:
                return 0
            m = re.search(r"Plan: (\d+) to create, (\d+) to change, (\d+) to remove, (\d+) to run", out)
            return sum(map(int, m.groups())) if rc == 2 and m else None
        if rc != 0:
            return None
        recaps = re.findall(r"^\S+\s+ok=\d+ changed=(\d+) failed=(\d+)", out, re.M)
        if len(recaps) != n or any(int(f) for _, f in recaps):
            return None
        return sum(int(c) for c, _ in recaps)
    if tool == "ansible":
        if rc != 0:
            return None
        recap = re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
        if len(recap) != n or any(int(u) or int(f) for _, u, f in recap):
            return None
        return sum(int(c) for c, _, _ in recap)
    if tool == "pyinfra":
        if rc != 0:
            return None
        if mode == "apply":
            m = re.search(r"^\s*Grand total\s+(\d+)\s+(\d+|-)\s+(\d+|-)\s+(\d+|-)\s*$", out, re.M)
            if not m or m.group(3) != "-":
                return None
            return 0 if m.group(2) == "-" else int(m.group(2))
        # --dry: the "Detected changes" table; the Change column counts hosts per operation.
        lines = out.splitlines()
        try:
            i = next(k for k, l in enumerate(lines) if "Detected changes:" in l)
        except StopIteration:
            return None
        header = lines[i + 1]
        c0, c1 = header.index("Change"), header.index("Conditional Change")
        total = 0
        for l in lines[i + 2:]:
            if not l.strip():
                break
            cell = l[c0:c1].strip()
            if cell and cell != "-":
                total += int(cell.split()[0])
        return total
    raise ValueError(tool)


# ---------------------------------------------------------------- measuring

PHASE_KINDS = ["connect", "probe", "diff", "lock", "batches", "single changes", "re-probes",
               "handlers", "unlock", "other"]


def phase_kind(label):
    """`--timings` phase labels, grouped: each remote execution of a converge is one of these."""
    for prefix, kind in (("connect", "connect"), ("re-probe", "re-probes"), ("probe", "probe"),
                         ("diff", "diff"), ("unlock", "unlock"), ("lock", "lock"),
                         ("batch of", "batches"), ("change ", "single changes"),
                         ("handler", "handlers")):
        if label.startswith(prefix):
            return kind
    return "other"


PERF_HZ = 1000


def have_perf():
    """`perf` that can sample the whole machine (Debian: apt-get install linux-perf)."""
    if not shutil.which("perf"):
        return False
    try:
        return subprocess.run(["perf", "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def perf_by_program(data):
    """{program: CPU ms} from a whole-machine `perf record -e cpu-clock -F PERF_HZ`: each sample
    is one CPU's 1/PERF_HZ s, attributed to the program (comm) running then. perf's own samples
    and the idle task's are left out. Empty when perf could not record (e.g. no permission)."""
    try:
        out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "comm",
                              "--show-nr-samples", "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=300).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    progs = {}
    for line in out.splitlines():
        f = line.split(None, 2)
        # swapper: the idle task (cpu-clock samples idle CPUs too).
        if len(f) == 3 and f[0].endswith("%") and f[1].isdigit() and f[2].strip() not in ("perf", "swapper"):
            progs[f[2].strip()] = progs.get(f[2].strip(), 0) + int(f[1]) * 1000 / PERF_HZ
    return progs


def by_program_table(res, top=14):
    """The machine's CPU by program for labctl's breakdown runs (perf), per size and run."""
    rows = []
    for n in res["hosts"]:
        R = res["n"].get(str(n)) or {}
        for key, what in (("first_timings", "first converge"), ("noop_timings", "no-op plan")):
            bp = (R.get(key) or {}).get("by_program")
            if not bp:
                continue
            total = sum(bp.values())
            items = sorted(bp.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{k} {v:.0f}" for k, v in items[:top])
            rest = total - sum(v for _, v in items[:top])
            rows.append(f"| {n} | {what} | {total:.0f} | {total / n:.0f} | {shown}"
                        + (f", others {rest:.0f}" if rest >= 1 else "") + " |")
    if not rows:
        return ""
    return ("The same `--timings` runs under `perf record -a -e cpu-clock` (every CPU sampled "
            f"{PERF_HZ} times a second): the machine's CPU milliseconds by program, whoever ran it: labctl "
            "and its `ssh` clients on the controller; `sshd`, the shells and every program a step or the "
            "probe starts on the hosts (`python3` is ufw's frontend, `iptables*`/`ufw-init` its loading of "
            "the rules). Samples are not exact: ±1 ms per program at best.\n\n"
            "| hosts | run | machine CPU ms | per host | by program, ms |\n|---|---|---|---|---|\n"
            + "\n".join(rows))


def summarize_timings(t):
    """labctl's `--timings` JSON → per phase kind, the median over hosts of each host's sum
    (wall, waiting on the host, the controller's part) and of its remote executions."""
    per_host = []
    for h in t["hosts"]:
        k = {}
        for ph in h["phases"]:
            d = k.setdefault(phase_kind(ph["phase"]), {"wall_ms": 0.0, "remote_ms": 0.0,
                                                      "controller_ms": 0.0, "count": 0})
            d["wall_ms"] += ph["wall_ms"]
            d["remote_ms"] += ph["remote_ms"]
            d["controller_ms"] += ph["controller_ms"]
            d["count"] += 1
        per_host.append((h["wall_ms"], k))
    kinds = {}
    for kind in PHASE_KINDS:
        rows = [k[kind] for _, k in per_host if kind in k]
        if not rows:
            continue
        kinds[kind] = {f: statistics.median(r[f] for r in rows)
                       for f in ("wall_ms", "remote_ms", "controller_ms", "count")}
    cpu = t["cpu"]
    return {"wall_ms": t["wall_ms"], "host_wall_ms": statistics.median(w for w, _ in per_host),
            "cpu_ms": cpu["user_ms"] + cpu["sys_ms"], "children_ms": cpu["children_ms"],
            "hosts": len(per_host), "kinds": kinds}


def stats(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "runs": xs}


class Bench:
    def __init__(self, args):
        self.args = args
        self.fast = args.fast_reps
        self.slow = args.slow_reps
        self.res = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
                    "quick": args.quick, "fast_reps": self.fast, "slow_reps": self.slow,
                    "hosts": args.hosts, "load": {}, "n": {}}

    def load(self, tag):
        self.res["load"][tag] = open("/proc/loadavg").read().split()[:3]

    def expect(self, what, changes, want):
        """want: 0, or 'some' (> 0)."""
        ok = changes is not None and ((changes == 0) if want == 0 else (changes > 0))
        if not ok:
            raise BenchError(f"{what}: expected {'0' if want == 0 else 'some'} changes, tool reported {changes}")

    def timed(self, lab, tool, mode, reps, want, label):
        """stats of the runs' wall seconds, with the median machine CPU-seconds as cpu_s."""
        xs, cpu = [], []
        for r in range(reps):
            dt, ch, out = lab.run_tool(tool, mode)
            self.expect(f"{label} {tool} {mode} run {r + 1}", ch, want)
            xs.append(dt)
            cpu.append(lab.last_cpu_s)
            log(f"  {label:10} {tool:8} {mode:5} {dt:7.2f}s  changes={ch}  machine CPU {lab.last_cpu_s:.2f}s")
        return dict(stats(xs), cpu_s=statistics.median(cpu))

    @property
    def first_tools(self):
        """--tools: the tools whose first run is measured (all three unless --first-only)."""
        return [t for t in TOOLS if t in self.args.tools]

    def tools(self, n):
        """Ansible only up to --ansible-max hosts (see BENCHMARKS.md, "Scope")."""
        return [t for t in TOOLS if t != "ansible" or n <= self.args.ansible_max]

    def controller(self, lab, R):
        argv, cwd, env = lab.tool_cmd("labctl", "dry")
        xs = [controller_cost(argv, cwd, env) for _ in range(self.fast)]
        if any(x["rc"] != 0 for x in xs):
            raise BenchError(f"labctl plan for the controller figures exited {[x['rc'] for x in xs]}")
        R["controller"] = {k: statistics.median(x[k] for x in xs) for k in ("wall_s", "cpu_s", "user_s", "sys_s", "rss_mb")}
        R["controller"]["max_fds"] = max(x["max_fds"] for x in xs)
        R["controller"]["max_rss_tree_mb"] = max(x["max_rss_tree_mb"] for x in xs)
        c = R["controller"]
        log(f"  controller labctl plan: {c['cpu_s']:.2f} CPU s, RSS {c['rss_mb']:.1f} MB, at most {c['max_fds']} fds")

    def breakdown(self, lab, mode):
        """One labctl run with `--timings --json` (not one of the timed runs): where its time
        went, per phase kind, as the median over hosts (see `phase_kind`); and, when `perf` is
        here, where the whole machine's CPU went during it, by program (`perf_by_program`)."""
        argv, cwd, env = lab.tool_cmd("labctl", mode)
        argv = [a for a in argv if a not in ("--color", "never")] + ["--timings", "--json"]
        data = WORK / f"perf-{lab.name}-{mode}.data"
        perf = have_perf()
        if perf:
            WORK.mkdir(parents=True, exist_ok=True)
            argv = ["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", str(PERF_HZ), "-o", str(data), "--", *argv]
        dt, rc, out = run(argv, cwd=cwd, env=env, check=False)
        if rc != 0:
            raise BenchError(f"labctl {mode} --timings --json exited {rc}")
        t = json.loads(out[out.index("{"):])["timings"]
        b = summarize_timings(t)
        b["wall_s_outside"] = dt
        if perf:
            b["by_program"] = perf_by_program(data)
        log(f"  timings    labctl {mode}: {b['wall_ms']:.0f} ms, labctl CPU {b['cpu_ms']:.0f} ms, "
            + ", ".join(f"{k} {v['wall_ms']:.0f} ms" for k, v in b["kinds"].items()))
        return b

    def floor(self, lab, R, n):
        one, alln, cpu = [], [], []

        def children_cpu():
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            return ru.ru_utime + ru.ru_stime

        busy = []
        for r in range(self.fast):
            dt, _, _ = lab.ssh(lab.hosts[0], "true")
            one.append(dt)
            c0, b0, t0 = children_cpu(), busy_s(), time.perf_counter()
            lab.each(lambda h: lab.ssh(h, "true"))
            alln.append(time.perf_counter() - t0)
            cpu.append(children_cpu() - c0)
            busy.append(busy_s() - b0)
        R["floor"]["one"] = stats(one)
        R["floor"]["all"] = dict(stats(alln), cpu_s=statistics.median(busy))
        # The controller's CPU for the parallel floor (the ssh clients, reaped by this process),
        # and the same with a classical key exchange instead of OpenSSH 9's default
        # sntrup761x25519 (post-quantum hybrid): how much of a connection's CPU is the kex.
        R["floor"]["all_cpu_s"] = statistics.median(cpu)
        kex = ("-o", "KexAlgorithms=curve25519-sha256")
        ccpu, cwall = [], []
        for r in range(self.fast):
            c0, t0 = children_cpu(), time.perf_counter()
            lab.each(lambda h: lab.ssh(h, "true", opts=kex))
            cwall.append(time.perf_counter() - t0)
            ccpu.append(children_cpu() - c0)
        R["floor"]["all_curve25519"] = stats(cwall)
        R["floor"]["all_curve25519_cpu_s"] = statistics.median(ccpu)
        log(f"  floor      ssh true one host median {statistics.median(one):.3f}s, all {n} in parallel {statistics.median(alln):.3f}s "
            f"({R['floor']['all_cpu_s']:.2f} CPU s); with curve25519 kex {statistics.median(cwall):.3f}s ({R['floor']['all_curve25519_cpu_s']:.2f} CPU s)")

    def first_runs(self, lab, R, tools):
        """(4) first run from fresh hosts, each tool --slow-reps times; then labctl's phase
        breakdown of one more first run and of a no-op plan (`--timings`)."""
        R.setdefault("first", {})
        R.setdefault("first_changes", {})
        R.setdefault("digests", {})
        for tool in tools:
            xs, chs, cpu = [], [], []
            for r in range(self.slow):
                lab.fresh()
                dt, ch, out = lab.run_tool(tool, "apply")
                self.expect(f"first run {tool} #{r + 1}", ch, "some")
                xs.append(dt)
                chs.append(ch)
                cpu.append(lab.last_cpu_s)
                log(f"  first      {tool:8} apply {dt:7.2f}s  changes={ch}  machine CPU {lab.last_cpu_s:.2f}s")
                if r == 0:
                    # The second run of each tool must report 0 changes, the host state must match.
                    dt2, ch2, _ = lab.run_tool(tool, "apply")
                    self.expect(f"second run after first {tool}", ch2, 0)
                    R["digests"][tool] = lab.check_state(f"after {tool}'s first run")
                    log(f"  second     {tool:8} apply {dt2:7.2f}s  changes={ch2}; state checks pass")
            R["first"][tool] = dict(stats(xs), cpu_s=statistics.median(cpu))
            R["first_changes"][tool] = chs
            log(f"  first      {tool:8} median {statistics.median(xs):.2f}s over {len(xs)} run(s); "
                f"load {' '.join(open('/proc/loadavg').read().split()[:3])}")
        if "labctl" in tools:
            lab.fresh()
            R["first_timings"] = self.breakdown(lab, "apply")
            R["noop_timings"] = self.breakdown(lab, "dry")

    def first_scale(self, n):
        """--first-only above --full-max: only the first runs (and labctl's breakdown)."""
        R = self.res["n"][str(n)] = {"first": {}, "scale_only": True}
        lab = Lab(f"{self.args.testbed_prefix}{n}", n, python=False)
        self.res["load"][f"before {n}"] = open("/proc/loadavg").read().split()[:3]
        try:
            self.first_runs(lab, R, [t for t in self.first_tools if t != "ansible"])
        finally:
            self.res["load"][f"after {n}"] = open("/proc/loadavg").read().split()[:3]
            if not self.args.keep:
                lab.down()

    def run_scale(self, n):
        """Sizes above --full-max: the no-op figures, the floor and the controller's cost, and up
        to --first-max the first runs of labctl and pyinfra (no drift or counts, and no Ansible:
        at 20-50 hosts on 2 CPUs they would not fit a session)."""
        R = self.res["n"][str(n)] = {"converged": {}, "dry": {}, "floor": {}, "scale_only": True,
                                     "first": {},
                                     "tools": self.tools(n)}
        lab = Lab(f"{self.args.testbed_prefix}{n}", n, python="ansible" in self.tools(n))
        self.res["load"][f"before {n}"] = open("/proc/loadavg").read().split()[:3]
        try:
            log(f"== {n} hosts: boot + prepare")
            lab.fresh()
            if n <= self.args.first_max:
                # Issue 27: the first converge at this size too, for the tools measured at scale.
                log(f"== {n} hosts: first runs (labctl, pyinfra)")
                self.first_runs(lab, R, [t for t in self.tools(n) if t != "ansible"])
            for tool in self.tools(n):
                log(f"== {n} hosts: {tool} on a converged lab")
                _, ch, _ = lab.run_tool(tool, "apply")  # converge to this tool's own view, untimed
                if ch is None:
                    raise BenchError(f"{tool}: converging apply failed")
                _, ch2, _ = lab.run_tool(tool, "apply")
                self.expect(f"second run {tool}", ch2, 0)
                lab.check_state(f"{tool} converged")
                R["converged"][tool] = self.timed(lab, tool, "apply", self.fast, 0, "converged")
                R["dry"][tool] = self.timed(lab, tool, "dry", self.fast, 0, "dry")
                if tool == "labctl":
                    self.controller(lab, R)
            self.floor(lab, R, n)
        finally:
            self.res["load"][f"after {n}"] = open("/proc/loadavg").read().split()[:3]
            if not self.args.keep:
                lab.down()

    def run_n(self, n):
        if n > self.args.full_max:
            return self.run_scale(n)
        R = self.res["n"][str(n)] = {"first": {}, "converged": {}, "dry": {}, "drift_plan": {},
                                     "drift_apply": {}, "drift_total": {}, "first_changes": {},
                                     "drift_changes": {}, "counts": {}, "floor": {}, "digests": {},
                                     "timeline": {}}
        lab = Lab(f"{self.args.testbed_prefix}{n}", n, python="ansible" in self.first_tools)
        self.res["load"][f"before {n}"] = open("/proc/loadavg").read().split()[:3]
        try:
            # Pre-warm the shared apt archive cache (untimed): every .deb the workload needs.
            log(f"== {n} host(s): warming the package cache (untimed)")
            lab.fresh()
            lab.run_tool("labctl", "apply")

            self.first_runs(lab, R, self.first_tools)
            if self.args.first_only:
                return

            # (1) converged, (2) dry, (3) drift, and counts: one tool at a time on the same hosts.
            for tool in TOOLS:
                log(f"== {n} host(s): {tool} on a converged lab")
                _, ch, _ = lab.run_tool(tool, "apply")  # converge to this tool's own view, untimed
                if ch is None:
                    raise BenchError(f"{tool}: warm-up apply failed")
                R["converged"][tool] = self.timed(lab, tool, "apply", self.fast, 0, "converged")
                R["dry"][tool] = self.timed(lab, tool, "dry", self.fast, 0, "dry")
                lab.check_state(f"{tool} converged")
                R["counts"][tool] = self.count(lab, tool)
                plans, applies, totals, dchs = [], [], [], []
                for r in range(self.slow):
                    lab.drift()
                    dp, chp, _ = lab.run_tool(tool, "dry")
                    self.expect(f"drift plan {tool}", chp, "some")
                    da, cha, _ = lab.run_tool(tool, "apply")
                    self.expect(f"drift apply {tool}", cha, "some")
                    plans.append(dp)
                    applies.append(da)
                    totals.append(dp + da)
                    dchs.append((chp, cha))
                    log(f"  drift      {tool:8} plan {dp:6.2f}s ({chp} changes) + apply {da:6.2f}s ({cha} changes)")
                    lab.check_state(f"{tool} after drift apply")
                R["drift_plan"][tool] = stats(plans)
                R["drift_apply"][tool] = stats(applies)
                R["drift_total"][tool] = stats(totals)
                R["drift_changes"][tool] = dchs

            # (5) the floor: `ssh host true`, fresh connection.
            self.floor(lab, R, n)
            self.controller(lab, R)
            R["profile"] = self.profile(lab)
        finally:
            self.res["load"][f"after {n}"] = open("/proc/loadavg").read().split()[:3]
            lab.close_ansible_masters()
            if not self.args.keep:
                lab.down()

    def count(self, lab, tool):
        """SSH connections and remote commands per host for one no-op dry run and one no-op
        converged run, from the hosts' sshd logs (LogLevel VERBOSE). Ansible starts cold (no
        ControlPersist master left from an earlier run) so its connection is counted too."""
        out = {}
        for mode in ("dry", "apply"):
            lab.close_ansible_masters()
            tag = uuid.uuid4().hex[:8]
            lab.mark(f"BEGIN-{tag}")
            dt, ch, _ = lab.run_tool(tool, mode)
            self.expect(f"count run {tool} {mode}", ch, 0)
            time.sleep(1.0)  # let the last sshd messages reach the journal
            lab.mark(f"END-{tag}")
            per_host = []
            for lines in lab.sshd_log(f"BEGIN-{tag}", f"END-{tag}"):
                conns = sum(1 for _, m in lines if m.startswith("Accepted publickey"))
                cmds = sum(1 for _, m in lines if m.startswith("Starting session: command"))
                sftp = sum(1 for _, m in lines if m.startswith("Starting session: subsystem"))
                shells = sum(1 for _, m in lines if m.startswith("Starting session: shell"))
                per_host.append({"connections": conns, "commands": cmds, "sftp": sftp, "shells": shells})
                if tool == "labctl" and mode == "dry":
                    out["labctl_timeline"] = timeline(lines)
            out[mode] = per_host
            log(f"  count      {tool:8} {mode:5} per host: " + ", ".join(
                f"{p['connections']} conn/{p['commands']} exec/{p['sftp']} sftp" for p in per_host))
        return out

    def profile(self, lab):
        """Where labctl's no-op plan spends its time: every process it starts on the controller,
        and every process its probe starts on the first host (strace attached to that host's
        sshd from outside the container). strace slows both sides; this is attribution, not timing."""
        if not shutil.which("strace"):
            return None
        argv, cwd, env = lab.tool_cmd("labctl", "dry")
        ctl, hst = WORK / f"strace-{lab.name}-controller.txt", WORK / f"strace-{lab.name}-host.txt"
        _, _, sp = run(["pgrep", "-P", str(lab.hosts[0]["pid"]), "-x", "sshd"], check=False)
        host_trace = None
        if sp.split():
            host_trace = subprocess.Popen(["strace", "-f", "-ttt", "-e", "trace=execve", "-o", str(hst), "-p", sp.split()[0]],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        run(["strace", "-f", "-ttt", "-e", "trace=execve,connect,exit_group", "-o", str(ctl)] + argv,
            cwd=cwd, env=env, check=False)
        if host_trace:
            time.sleep(0.5)
            host_trace.terminate()
            host_trace.wait()
        prof = {"controller": [], "host": None}
        t0 = None
        for line in ctl.read_text().splitlines():
            m = re.match(r"^(\d+)\s+(\d+\.\d+) (.*)$", line)
            if not m or "ENOENT" in line or "resumed>" in line:
                continue
            ts, what = float(m.group(2)), m.group(3)
            t0 = t0 or ts
            if what.startswith("execve("):
                args = re.findall(r'"((?:[^"\\]|\\.)*)"', what)[1:4]
                desc = "exec " + " ".join(args) + (" … (ssh master: TCP + key exchange + auth)" if "-M" in what else "")
            elif what.startswith("connect(") and "sin_port=htons(22)" in what:
                desc = "TCP connect to port 22"
            elif what.startswith("connect(") and "master" in what:
                desc = "mux request to the ssh master (open the probe's session / wait / close)"
            elif what.startswith("+++ exited"):
                desc = what.strip("+ ")
            else:
                continue
            prof["controller"].append((round(ts - t0, 3), m.group(1), desc))
        if host_trace and hst.exists():
            execs = []
            for line in hst.read_text().splitlines():
                m = re.match(r'^\d+\s+(\d+\.\d+) execve\("([^"]+)".*= 0$', line)
                if m:
                    execs.append((float(m.group(1)), m.group(2).rsplit("/", 1)[-1]))
            if execs:
                counts = {}
                for _, b in execs:
                    counts[b] = counts.get(b, 0) + 1
                sh_start = next((t for t, b in execs if b in ("sh", "bash")), execs[0][0])
                prof["host"] = {"processes": len(execs), "by_binary": sorted(counts.items(), key=lambda kv: -kv[1]),
                                "sshd_to_first_shell": round(sh_start - execs[0][0], 3),
                                "first_shell_to_last_exec": round(execs[-1][0] - sh_start, 3)}
        return prof


def timeline(lines):
    """Seconds between sshd events of one labctl plan on one host."""
    def first(prefix):
        return next((t for t, m in lines if m.startswith(prefix)), None)
    c = first("Connection from")
    a = first("Accepted publickey")
    s = first("Starting session: command")
    e = first("Close session")
    if None in (c, a, s, e):
        return None
    return {"connect_to_auth": round(a - c, 3), "auth_to_exec": round(s - a, 3), "exec_to_close": round(e - s, 3)}


# ---------------------------------------------------------------- report

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode().strip()
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return {
        "nproc": sh("nproc"), "cpu": cpu, "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(), "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "labctl": sh(f"{LABCTL} --version"), "ansible": sh(f"{VENV_BIN}/ansible --version 2>/dev/null | head -1").splitlines()[0],
        "ansible_pkg": sh(f"{VENV_BIN}/pip show ansible 2>/dev/null | sed -n 's/^Version: //p'"),
        "pyinfra": sh(f"{VENV_BIN}/pyinfra --version"), "python": sh(f"{VENV_BIN}/python --version"),
        "openssh": sh("ssh -V 2>&1"), "paramiko_kex": paramiko_kex(), "git": sh(f"git -C {ROOT} rev-parse --short HEAD") + (" (dirty tree)" if sh(f"git -C {ROOT} status --porcelain") else ""),
    }


def paramiko_kex():
    """pyinfra's SSH library and the key exchange it asks for first (what it negotiates with
    OpenSSH's sshd): `paramiko 4.0.0 curve25519-sha256@libssh.org`."""
    try:
        return subprocess.run([str(VENV_BIN / "python"), "-c", "import paramiko; "
                               "print(paramiko.__version__, paramiko.Transport._preferred_kex[0])"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60).stdout.decode().strip()
    except Exception:  # noqa: BLE001
        return ""


def fmt(s):
    return f"{s['min']:.2f} / **{s['median']:.2f}** / {s['max']:.2f}"


def ratio(s, base):
    return f"{s['median'] / base['median']:.1f}×" if base and base["median"] > 0 else "–"


def report(res, cmdline):
    m = res["machine"]
    L = []
    w = L.append
    w("# Benchmarks: labctl vs Ansible vs pyinfra")
    w("")
    w("Generated by `bench/run.sh` (see [bench/README.md](bench/README.md)); do not edit by hand.")
    w("")
    if res["quick"]:
        w("> **Quick mode** (`--quick`): few repetitions, for checking the harness. Re-run without "
          "`--quick` on a quiet machine for figures worth quoting.")
        w("")
    w(f"Run {res['started']} → {res['finished']}, command: `{cmdline}`, "
      f"{res['fast_reps']} runs of each fast figure, {res['slow_reps']} of each slow one (first run, drift).")
    w("")
    w("## Machine")
    w("")
    w(f"- {m['os']}, kernel {m['kernel']}, {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM")
    lo = res["load"]
    w(f"- load average (1/5/15 min) at start {' '.join(lo.get('start', []))}, at end {' '.join(lo.get('end', []))}"
      " — anything well above 0 means other work shared the CPUs and the figures are noisy")
    w(f"- labctl: `{m['labctl']}` (release build, commit {m['git']})")
    w(f"- Ansible: `{m['ansible']}` (PyPI package `ansible` {m['ansible_pkg']}, which bundles community.general and ansible.posix)")
    w(f"- pyinfra: `{m['pyinfra']}`; controller {m['python']}; {m['openssh']}")
    w("- hosts: `labctl testbed` (Debian 12 minbase, systemd-nspawn containers on this machine, "
      "one veth each); the controller and the hosts share the same CPUs")
    w("")
    w("## Results")
    w("")
    w("Wall-clock seconds, **min / median / max**; the ratio is the tool's median over labctl's median in the same run "
      "(higher = slower than labctl).")
    for n in res["hosts"]:
        R = res["n"].get(str(n))
        if not R:
            continue
        w("")
        w(f"### {n} host{'s' if n > 1 else ''}")
        w("")
        w("| figure | labctl | Ansible | ratio | pyinfra | ratio |")
        w("|---|---|---|---|---|---|")
        rows = [("1. converged run (apply, nothing to do)", "converged"),
                ("2. dry run on a converged lab (plan / --check --diff / --dry)", "dry"),
                ("3. drift: dry run", "drift_plan"), ("3. drift: apply", "drift_apply"),
                ("3. drift: dry run + apply", "drift_total"),
                ("4. converge: first run on fresh hosts, packages present", "first")]
        for label, key in rows:
            d = R.get(key, {})
            if "labctl" not in d or "pyinfra" not in d:
                continue
            base = d["labctl"]
            an = (f"{fmt(d['ansible'])} | {ratio(d['ansible'], base)}" if "ansible" in d
                  else "not run (see Scope) | –")
            w(f"| {label} | {fmt(base)} | {an} | "
              f"{fmt(d['pyinfra'])} | {ratio(d['pyinfra'], base)} |")
        fl = R.get("floor", {})
        if fl:
            w(f"| 5. floor: `ssh host true`, fresh connection, one host | {fmt(fl['one'])} | | | | |")
            if n > 1:
                w(f"| 5. floor: `ssh host true` to all {n} hosts in parallel | {fmt(fl['all'])} | | | | |")
            if "all_curve25519" in fl:
                w(f"| 5. floor, all {n} in parallel, `-o KexAlgorithms=curve25519-sha256` (not ssh's default; see below) "
                  f"| {fmt(fl['all_curve25519'])} | | | | |")
        w("")
        if "all_cpu_s" in fl:
            w(f"Controller CPU of the parallel floor: {fl['all_cpu_s']:.2f} s for {n} `ssh true` "
              f"({1000 * fl['all_cpu_s'] / n:.0f} ms per connection) with OpenSSH's default key exchange "
              f"(sntrup761x25519-sha512, post-quantum hybrid), {fl['all_curve25519_cpu_s']:.2f} s "
              f"({1000 * fl['all_curve25519_cpu_s'] / n:.0f} ms) with curve25519-sha256.")
            w("")
        lb, la = res["load"].get(f"before {n}"), res["load"].get(f"after {n}")
        if lb and la:
            w(f"Load average (1/5/15 min) before this size {' '.join(lb)}, after {' '.join(la)}.")
            w("")
        if R.get("scale_only"):
            w(f"At {n} hosts only the no-op figures, the floor and the controller's cost are measured (see Scope); every "
              "tool converged first (untimed), its second run reported **0** changes, the out-of-band state checks "
              "passed, and every timed run above reported **0** changes.")
            w("")
            continue
        fc = R.get("first_changes", {})
        dc = R.get("drift_changes", {})
        w("Changes reported (summed over hosts): first run " + ", ".join(f"{t} {fc.get(t)}" for t in TOOLS) +
          "; every tool's second run and every converged/dry run above reported **0**; drift (dry run, apply) " +
          ", ".join(f"{t} {dc.get(t)}" for t in TOOLS) + ".")
        w("")
        cnt = R.get("counts", {})
        if cnt:
            w("SSH connections and remote commands **per host** for one no-op run (sshd `LogLevel VERBOSE` on the hosts: "
              "`Accepted publickey` = a connection, `Starting session: command` = a remote command, "
              "`Starting session: subsystem` = an sftp session; Ansible counted cold, without a master left by an earlier run):")
            w("")
            w("| tool | dry run: connections | commands | sftp | converged run: connections | commands | sftp |")
            w("|---|---|---|---|---|---|---|")
            for t in TOOLS:
                c = cnt.get(t)
                if not c:
                    continue

                def rng(mode, k):
                    xs = [p[k] for p in c[mode]]
                    return str(xs[0]) if min(xs) == max(xs) else f"{min(xs)}–{max(xs)}"
                w(f"| {t} | {rng('dry', 'connections')} | {rng('dry', 'commands')} | {rng('dry', 'sftp')} | "
                  f"{rng('apply', 'connections')} | {rng('apply', 'commands')} | {rng('apply', 'sftp')} |")
            w("")
        dg = R.get("digests", {})
        if dg:
            differ = set()
            for host in dg.get("labctl", {}):
                for f in dg["labctl"][host]:
                    if len({dg.get(t, {}).get(host, {}).get(f) for t in TOOLS}) != 1:
                        differ.add(f)
            nfiles = len(next(iter(dg["labctl"].values()), {})) if dg.get("labctl") else 0
            w("Host state after each tool's first run passed the same out-of-band checks (packages, ufw status and rules, "
              "live sysctl values, sshd effective config, user + key + sudoers, the ten files' per-host values, "
              f"directory modes, cron active + enabled, timezone). Of the {nfiles} managed files, the bodies (sha256) are "
              + ("**identical** across the three tools." if not differ else
                 "identical across the three tools except " + ", ".join(f"`{f}`" for f in sorted(differ)) +
                 " (same settings, each tool's own layout: see bench/results/latest.json, `digests`)."))
            w("")
    w("## labctl's own cost on the controller")
    w("")
    w("One no-op `labctl plan` (median of the fast runs; `wait4` rusage, so CPU includes the ssh processes labctl "
      "starts; RSS = labctl's own peak, `VmHWM`; fds = most open at once, polled every 5 ms):")
    w("")
    w("| hosts | wall s | CPU s (user + sys) | CPU s per host | peak RSS MB | max open fds |")
    w("|---|---|---|---|---|---|")
    for n in res["hosts"]:
        c = (res["n"].get(str(n)) or {}).get("controller")
        if c:
            w(f"| {n} | {c['wall_s']:.2f} | {c['cpu_s']:.2f} ({c['user_s']:.2f} + {c['sys_s']:.2f}) | {c['cpu_s'] / n:.3f} | "
              f"{c['rss_mb']:.1f} | {c['max_fds']} |")
    w("")
    pc = probe_cost()
    if pc:
        w("## The probe on the host (issue 17)")
        w("")
        w(pc)
        w("")
    w("## Scope")
    w("")
    w(f"Ansible runs up to {res.get('ansible_max', 5)} hosts: on these 2 CPUs one no-op Ansible run takes about 170 s at "
      "20 hosts (issue 17's own table), so the repetitions at 20 and 50 hosts would not fit a working session. "
      f"Above {res.get('full_max', 5)} hosts only the no-op figures (converged and dry runs), the `ssh true` floor "
      "and the controller's cost are measured, for labctl and pyinfra; first runs, drift and counts are measured "
      "at the smaller sizes.")
    w("")
    w("## Targets (issue 27)")
    w("")
    w(targets27(res))
    w("")
    w("## Targets (issue 17)")
    w("")
    w(targets17(res))
    w("")
    g = gaps17(res)
    if g:
        w("Where a target is missed, what the same run measured:")
        w("")
        w(g)
        w("")
    w("## Targets (issue 8)")
    w("")
    w(targets(res))
    w("")
    ct = cpu_table(res)
    if ct:
        w("## What the machine's CPUs allow")
        w("")
        w(ct)
        w("")
    w("## Where labctl's time goes")
    w("")
    bd = breakdown_table(res)
    if bd:
        w(bd)
        w("")
    bp = by_program_table(res)
    if bp:
        w(bp)
        w("")
    for n in res["hosts"]:
        R = res["n"].get(str(n))
        if not R:
            continue
        tl = (R.get("counts", {}).get("labctl") or {}).get("labctl_timeline")
        if tl:
            w(f"- {n} host(s), one no-op `labctl plan`, from the first host's sshd log: TCP accepted → key accepted "
              f"{tl['connect_to_auth']:.3f} s, key accepted → probe started {tl['auth_to_exec']:.3f} s, "
              f"probe started → probe finished {tl['exec_to_close']:.3f} s (the probe runs on the host).")
        prof = R.get("profile")
        if prof:
            w(f"- {n} host(s), `strace -f -ttt -e trace=execve,connect,exit_group labctl plan …` on the controller "
              "(seconds since labctl started; strace slows everything down):")
            w("")
            w("  ```")
            seen = set()
            for ts, pid, what in prof["controller"]:
                what = what.replace("connect to the ssh master's socket (a session: the probe)",
                                    "mux request to the ssh master (open the probe's session / wait / close)")
                if (pid, what) in seen and what.startswith("exec"):
                    continue  # strace prints an execve again when it resumes
                seen.add((pid, what))
                w(f"  {ts:7.3f}  pid {pid:>7}  {what[:140]}")
            w("  ```")
            hp = prof.get("host")
            if hp:
                w(f"- {n} host(s), on the first host during that plan (`strace -f -e trace=execve -p` on the host's sshd): "
                  f"**{hp['processes']} processes** started: sshd → first shell {hp['sshd_to_first_shell']:.3f} s "
                  f"(key exchange, auth, PAM session incl. Debian's pam_motd running /etc/update-motd.d), first shell → "
                  f"last process {hp['first_shell_to_last_exec']:.3f} s (the probe). By binary: "
                  + ", ".join(f"{b} {c}" for b, c in hp["by_binary"][:14]) + ".")
                w("  Reading: a no-op plan is labctl's own start-up (load, render: the first line above), then one ssh "
                  "handshake (the floor), then the probe. The probe merges each fact family's queries (one `stat`, "
                  "one `sha256sum`, one `cat | base64` for all files; one `systemctl show` for all units; one "
                  "`grep` over /proc/sys for all sysctls), so its process count no longer grows with the resources.")
    w("")
    w("## How it was measured")
    w("")
    w(METHOD)
    return "\n".join(L) + "\n"


def probe_cost():
    f = RESULTS / "probe-cost.json"
    if not f.exists():
        return None
    pc = json.loads(f.read_text())
    L = [f"From `{pc.get('command', 'bench/lib/probe_cost.py')}` ({pc['started']}; load {' '.join(pc['load_start'])} → "
         f"{' '.join(pc['load_end'])}): one host converged with the bench role, then for each labctl build a no-op "
         "`labctl plan` with `strace -f -e trace=execve,fork,vfork,clone,clone3` attached to the host's sshd from "
         "outside the container (programs started = successful execve; processes created = fork/clone), and the CPU "
         "time of everything the connection ran on the host (growth of the sshd listener's reaped-children "
         "cutime + cstime, median of several plans without strace) minus the same for `ssh host true`.",
         "",
         "| build | programs started | processes created | host CPU ms per plan | of which the probe (minus `ssh true`) | top programs |",
         "|---|---|---|---|---|---|",
         f"| `ssh host true` (floor) | {pc['floor_execs']} | {pc['floor_forks']} | {pc['floor_cpu_ms']:.0f} | – | "
         + ", ".join(f"{b} {c}" for b, c in sorted(pc['floor_programs'].items(), key=lambda kv: -kv[1])[:8]) + " |"]
    for label, r in pc["binaries"].items():
        L.append(f"| {r.get('label', label)} | {r['execs']} | {r['forks']} | {r['plan_cpu_ms']:.0f} | {r['probe_cpu_ms']:.0f} | "
                 + ", ".join(f"{b} {c}" for b, c in r["programs"][:10]) + " |")
    L.append("")
    L.append("The probe's own processes are the plan's minus the floor's (sshd's session start-up: sshd, PAM's "
             "motd scripts, the login shell).")
    return "\n".join(L)


def breakdown_table(res):
    """labctl's `--timings` of one first converge and one no-op plan per size, by phase kind:
    the median host's milliseconds (wall = waiting on the host + the controller's part)."""
    rows = []
    for n in res["hosts"]:
        R = res["n"].get(str(n)) or {}
        for key, what in (("first_timings", "first converge"), ("noop_timings", "no-op plan")):
            b = R.get(key)
            if not b:
                continue
            cells = []
            for kind in PHASE_KINDS:
                k = b["kinds"].get(kind)
                cells.append("" if not k else
                             f"{k['wall_ms']:.0f} ({k['controller_ms']:.0f})" + (f" ×{k['count']:g}" if k["count"] > 1 else ""))
            rows.append(f"| {n} | {what} | {b['wall_ms']:.0f} | {b['host_wall_ms']:.0f} | {b['cpu_ms']:.0f} | "
                        f"{b['children_ms']:.0f} | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    head = ("One extra run per size with `--timings --json` (not among the timed runs): wall = the whole run; "
            "host = the median host's own wall time; labctl CPU = the process's own user + sys, ssh = its ssh "
            "children's. Per phase kind, the median host's milliseconds, with the controller's part (its own "
            "work and waiting for a CPU) in parentheses and how many remote executions when more than one; "
            "the rest of each phase is waiting on the host.\n\n"
            "| hosts | run | wall ms | host ms | labctl CPU ms | ssh CPU ms | " + " | ".join(PHASE_KINDS) + " |\n"
            "|" + "---|" * (6 + len(PHASE_KINDS)))
    return head + "\n" + "\n".join(rows)


def ncpu(res):
    try:
        return int(res["machine"]["nproc"])
    except (KeyError, ValueError):
        return NCPU


def cpu_table(res):
    """Per timed figure: the median wall time next to the median CPU-seconds the whole machine
    was busy for it. The test hosts are containers on the controller's own CPUs, so CPU / CPUs
    is the shortest wall time this machine allows that run, whatever the tool does."""
    c = ncpu(res)
    rows = []
    for n in res["hosts"]:
        R = res["n"].get(str(n)) or {}
        figs = [("first converge", "first"), ("no-op apply", "converged"), ("no-op plan", "dry")]
        for what, key in figs:
            for tool, st in (R.get(key) or {}).items():
                if "cpu_s" in st:
                    rows.append((n, what, tool, st))
        fl = (R.get("floor") or {}).get("all")
        if fl and "cpu_s" in fl:
            rows.append((n, f"`ssh true` to all {n}", "floor", fl))
    if not rows:
        return ""
    out = [f"Machine CPU = the CPU-seconds all {c} CPUs were busy during the run (/proc/stat): the tool, its ssh "
           "clients, and the test hosts, which are containers on the same CPUs. So **CPU / "
           f"{c}** is the shortest wall time this machine allows that run; busy = CPU / ({c} × wall), 100 % meaning "
           "the run was bound by the machine's CPUs, not by waiting. Medians over the timed runs.",
           "", "| hosts | run | tool | wall s | machine CPU s | shortest possible here (CPU / " + str(c) + ") s | busy |",
           "|---|---|---|---|---|---|---|"]
    for n, what, tool, st in rows:
        out.append(f"| {n} | {what} | {tool} | {st['median']:.2f} | {st['cpu_s']:.2f} | {st['cpu_s'] / c:.2f} | "
                   f"{100 * st['cpu_s'] / (c * st['median']):.0f} % |")
    return "\n".join(out)


def targets27(res):
    """Issue 27's targets, each with what this run measured."""
    out = []
    get = lambda n: res["n"].get(str(n)) or {}  # noqa: E731
    for n in (1, 5, 20):
        f = get(n).get("first", {})
        if "labctl" in f and "pyinfra" in f:
            p = f["pyinfra"]["median"] / f["labctl"]["median"]
            out.append(f"- {n} host(s), first converge: pyinfra/labctl **{p:.1f}×** "
                       f"({f['labctl']['median']:.2f} s vs {f['pyinfra']['median']:.2f} s; target ≥ 10×: {'met' if p >= 10 else 'MISSED'})"
                       + cpu_bound_note(res, f["labctl"], f["pyinfra"]["median"] / 10))
        else:
            out.append(f"- {n} host(s), first converge: not measured in this run")
    for n in res["hosts"]:
        R = get(n)
        for key, label in (("dry", "no-op plan"), ("converged", "no-op apply")):
            d = R.get(key, {})
            if "labctl" in d and "pyinfra" in d:
                p = d["pyinfra"]["median"] / d["labctl"]["median"]
                out.append(f"- {n} host(s), {label}: pyinfra/labctl **{p:.1f}×** (target ≥ 10×: {'met' if p >= 10 else 'MISSED'})")
    for n in (20, 50):
        R = get(n)
        if R.get("dry", {}).get("labctl") and R.get("floor", {}).get("all"):
            pl, fl = R["dry"]["labctl"]["median"], R["floor"]["all"]["median"]
            out.append(f"- {n} hosts, no-op plan {pl:.2f} s vs `ssh true` to all {n} in parallel {fl:.2f} s: "
                       f"**{pl / fl:.2f}×** (target ≤ 1.2×: {'met' if pl <= 1.2 * fl else 'MISSED'})"
                       + cpu_bound_note(res, R["dry"]["labctl"], 1.2 * fl))
    c = get(50).get("controller")
    if c:
        out.append(f"- 50 hosts, controller peak RSS {c['rss_mb']:.0f} MB (target < 150 MB: {'met' if c['rss_mb'] < 150 else 'MISSED'})")
    if get(1).get("dry", {}).get("labctl") and get(50).get("dry", {}).get("labctl"):
        a, b = get(1)["dry"]["labctl"]["median"], get(50)["dry"]["labctl"]["median"]
        fa, fb = get(1)["floor"]["one"]["median"], get(50)["floor"]["all"]["median"]
        out.append(f"- 50 hosts vs 1, no-op plan: {a:.2f} s → {b:.2f} s (**{b / a:.2f}×**) against the floor's "
                   f"{fa:.2f} s → {fb:.2f} s ({fb / fa:.2f}×; target ≤ 1.5 × the floor's growth = {1.5 * fb / fa:.2f}×: "
                   f"{'met' if b / a <= 1.5 * fb / fa else 'MISSED'})")
    lo = res["load"]
    out.append(f"- machine load (1/5/15 min) at start {' '.join(lo.get('start', []))}, at end {' '.join(lo.get('end', []))}"
               " (figures worth quoting need a quiet machine: near 0 at the start)")
    return "\n".join(out)


def cpu_bound_note(res, st, need):
    """When the target asks for less wall time than the machine's CPUs allow the run it timed."""
    if "cpu_s" not in st:
        return ""
    c = ncpu(res)
    least = st["cpu_s"] / c
    if least <= need:
        return f"; the machine was busy {st['cpu_s']:.2f} CPU-s for labctl's run, ≥ {least:.2f} s on {c} CPUs, within the {need:.2f} s the target allows"
    return (f"; the machine was busy {st['cpu_s']:.2f} CPU-s for labctl's run (tool, ssh and hosts on the same {c} CPUs): "
            f"no schedule finishes it under {least:.2f} s here, and the target allows {need:.2f} s")


def targets17(res):
    out = []
    ns = [n for n in res["hosts"] if (res["n"].get(str(n)) or {}).get("dry")]
    get = lambda n: res["n"][str(n)]  # noqa: E731
    for n in ns:
        R = get(n)
        for key, label in (("dry", "no-op plan"), ("converged", "no-op apply")):
            p = R[key]["pyinfra"]["median"] / R[key]["labctl"]["median"]
            out.append(f"- {n} host(s), {label}: pyinfra/labctl **{p:.1f}×** (target ≥ 10×: {'met' if p >= 10 else 'MISSED'})")
        f = R.get("first", {})
        if "labctl" in f and "pyinfra" in f and n in (1, 5):
            p = f["pyinfra"]["median"] / f["labctl"]["median"]
            out.append(f"- {n} host(s), converge with packages present: pyinfra/labctl **{p:.1f}×** "
                       f"(target ≥ 8×: {'met' if p >= 8 else 'MISSED'})")
        if n == 20:
            pl, fl = R["dry"]["labctl"]["median"], R["floor"]["all"]["median"]
            out.append(f"- 20 hosts, no-op plan {pl:.2f} s vs `ssh true` to all 20 in parallel {fl:.2f} s: **{pl / fl:.2f}×** "
                       f"(target ≤ 1.5×: {'met' if pl <= 1.5 * fl else 'MISSED'})")
    if 1 in ns and 50 in ns:
        a, b = get(1)["dry"]["labctl"]["median"], get(50)["dry"]["labctl"]["median"]
        fa, fb = get(1)["floor"]["one"]["median"], get(50)["floor"]["all"]["median"]
        out.append(f"- 50 hosts vs 1: no-op plan {a:.2f} s → {b:.2f} s (**{b / a:.2f}×**) against the floor's "
                   f"{fa:.2f} s → {fb:.2f} s ({fb / fa:.2f}×) (target: no worse than the floor's ratio: "
                   f"{'met' if b / a <= fb / fa else 'MISSED'})")
    for n in (1, 20, 50):
        c = (res["n"].get(str(n)) or {}).get("controller")
        if c:
            out.append(f"- {n} host(s), controller: {c['cpu_s']:.2f} CPU s ({c['cpu_s'] / n:.3f} per host), RSS {c['rss_mb']:.0f} MB "
                       f"(issue 13: < 150 MB: {'met' if c['rss_mb'] < 150 else 'MISSED'}), at most {c['max_fds']} open fds "
                       f"(within 1024: {'met' if c['max_fds'] <= 1024 else 'MISSED'})")
    return "\n".join(out)


def gaps17(res):
    """Measured bounds for the issue-17 targets: the ssh floor caps any tool's lead, and the
    CPU a no-op plan needs (controller + hosts) is shared by 2 CPUs and everything else running."""
    out = []
    nproc = int(res["machine"].get("nproc") or 2)
    pc = None
    f = RESULTS / "probe-cost.json"
    if f.exists():
        pc = json.loads(f.read_text())
    host_ms = None
    if pc:
        after = next(iter(pc["binaries"].values()), None)
        host_ms = after["plan_cpu_ms"] if after else None
    f1 = ((res["n"].get("1") or {}).get("first") or {})
    for n in (5,):
        f = ((res["n"].get(str(n)) or {}).get("first") or {})
        if "labctl" in f and "pyinfra" in f and "labctl" in f1 and "pyinfra" in f1 \
                and f["pyinfra"]["median"] / f["labctl"]["median"] < 8:
            a1, an = f1["labctl"]["median"], f["labctl"]["median"]
            p1, pn = f1["pyinfra"]["median"], f["pyinfra"]["median"]
            out.append(f"- {n} hosts, converge: ≥ 8× needs labctl ≤ {pn / 8:.2f} s; its first run grows from {a1:.2f} s "
                       f"(1 host) to {an:.2f} s, +{(an - a1) / (n - 1):.2f} s per added host (pyinfra: {p1:.2f} s → {pn:.2f} s). "
                       f"That growth is the hosts' own work on the {nproc} CPUs they share with the controller: per host, "
                       "ufw's Python frontend once (about 0.2 CPU s: its capability probe and `ufw-init`) and 8 remote "
                       "executions, each an sshd session (timings per execution from `LABCTL_LOG=labctl=debug` in issue "
                       "17's closing note). Test hosts with CPUs of their own would run it in parallel.")
    for n in res["hosts"]:
        R = res["n"].get(str(n)) or {}
        if not R.get("dry") or "pyinfra" not in R["dry"]:
            continue
        fl = R["floor"]["all" if n > 1 else "one"]["median"]
        py = R["dry"]["pyinfra"]["median"]
        lab = R["dry"]["labctl"]["median"]
        if py / lab < 10 and py / fl >= 10:
            ap = R["converged"]["labctl"]["median"]
            d = R["dry"]["labctl"]
            out.append(f"- {n} host(s): pyinfra's dry run is {py / fl:.1f}× the `ssh true` floor ({fl:.2f} s), so the target "
                       f"is reachable; labctl's plan took {lab:.2f} s ({lab / fl:.2f}× the floor; runs {d['min']:.2f}–{d['max']:.2f} s) "
                       f"where its no-op apply, the same probe over the same one connection, took {ap:.2f} s "
                       f"(runs {R['converged']['labctl']['min']:.2f}–{R['converged']['labctl']['max']:.2f} s): `plan` and a no-op "
                       "`apply` run the same code up to the probe's answer (`apply::plan_hosts` / `apply_hosts`).")
        elif py / lab < 10:
            out.append(f"- {n} host(s): pyinfra's no-op dry run ({py:.2f} s) is only **{py / fl:.1f}×** the bare `ssh true` "
                       f"floor of the same run ({fl:.2f} s); a tool that did nothing but connect would be {py / fl:.1f}× "
                       f"faster than pyinfra here, so ≥ 10× is out of reach on this machine at this load; labctl is "
                       f"{lab / fl:.2f}× the floor.")
        fr = R.get("floor", {})
        c = R.get("controller")
        pk = res["machine"].get("paramiko_kex") or paramiko_kex()
        if "all_curve25519" in fr and pk and py / lab < 10:
            out.append(f"- {n} host(s): pyinfra connects with paramiko (`{pk}`: no post-quantum key exchange), labctl and "
                       f"the floor with OpenSSH's default sntrup761x25519-sha512. The same run's floor with curve25519-sha256 "
                       f"took {fr['all_curve25519']['median']:.2f} s instead of {fr['all']['median']:.2f} s: pyinfra's lead in "
                       f"handshake cost, not in its own work. `bench/kex-compare.sh` times labctl's plan with that key exchange "
                       f"(docs/speed.md).")
        if c and "all_cpu_s" in fr and n >= 20:
            out.append(f"- {n} hosts: of labctl's {c['cpu_s']:.2f} CPU s on the controller, {fr['all_cpu_s']:.2f} s is what "
                       f"the bare `ssh true` floor spends on {n} handshakes ({1000 * fr['all_cpu_s'] / n:.0f} ms each, "
                       f"{1000 * fr['all_curve25519_cpu_s'] / n:.0f} ms with curve25519-sha256): the default "
                       f"post-quantum key exchange, not labctl, is most of a connection's cost at this size, and the hosts' sshd "
                       f"pays its side too. labctl keeps ssh's default (a lab that accepts the trade-off can set "
                       f"`KexAlgorithms` in ~/.ssh/config, which labctl honours).")
        lo = res["load"].get(f"before {n}") or res["load"].get("start")
        if c and host_ms and n >= 20:
            need = c["cpu_s"] + n * host_ms / 1000
            out.append(f"- {n} hosts: one no-op plan needs about {need:.1f} CPU-seconds: labctl and its {n} ssh clients "
                       f"{c['cpu_s']:.2f} s (measured) + {n} × {host_ms:.0f} ms on the hosts (sshd's connection work and the "
                       f"probe, from bench/lib/probe_cost.py), on {nproc} CPUs whose load average was {lo[0] if lo else '?'} "
                       f"before this size: {need / nproc:.2f} s of the plan's {lab:.2f} s is CPU-bound even on an idle machine.")
    return "\n".join(out)


def targets(res):
    out = []
    for n in res["hosts"]:
        R = res["n"].get(str(n))
        if not R or not R.get("converged") or R.get("scale_only"):
            continue
        for key, label in (("converged", "converged run"), ("dry", "dry run")):
            d = R[key]
            a = d["ansible"]["median"] / d["labctl"]["median"]
            p = d["pyinfra"]["median"] / d["labctl"]["median"]
            out.append(f"- {n} host(s), {label}: Ansible/labctl **{a:.1f}×** (target ≥ 20×: {'met' if a >= 20 else 'MISSED'}), "
                       f"pyinfra/labctl **{p:.1f}×** (target ≥ 5×: {'met' if p >= 5 else 'MISSED'})")
        fl = R["floor"]["all"]["median"] if n > 1 else R["floor"]["one"]["median"]
        pl = R["dry"]["labctl"]["median"]
        tl = ((R.get("counts") or {}).get("labctl") or {}).get("labctl_timeline") or {}
        probe = tl.get("exec_to_close", 0.0)
        fp = fl + probe
        out.append(f"- {n} host(s), no-op plan {pl:.3f} s vs floor (`ssh true`, {'all hosts in parallel' if n > 1 else 'one host'}) "
                   f"{fl:.3f} s + one probe {probe:.3f} s (probe time on the host, from sshd's log) = {fp:.3f} s: "
                   f"**{pl / fp:.2f}×** (target ≤ 2×: {'met' if pl <= 2 * fp else 'MISSED'}); "
                   f"{pl / fl:.1f}× the bare `ssh true`")
        c = (R.get("counts") or {}).get("labctl")
        if c:
            conns = max(p["connections"] for p in c["dry"])
            cmds = max(p["commands"] + p["sftp"] for p in c["dry"])
            out.append(f"- {n} host(s), no-op plan: at most {conns} SSH connection(s) and {cmds} remote command(s) per host "
                       f"(target 1 and ≤ 2: {'met' if conns <= 1 and cmds <= 2 else 'MISSED'})")
    ns = [n for n in res["hosts"] if res["n"].get(str(n), {}).get("dry") and not res["n"][str(n)].get("scale_only")]
    if len(ns) > 1:
        a, b = res["n"][str(ns[0])]["dry"]["labctl"]["median"], res["n"][str(ns[-1])]["dry"]["labctl"]["median"]
        R1, R5 = res["n"][str(ns[0])], res["n"][str(ns[-1])]
        f1 = R1["floor"]["one"]["median"]
        f5 = R5["floor"]["all"]["median"]
        p1 = ((R1.get("counts") or {}).get("labctl") or {}).get("labctl_timeline") or {}
        p5 = ((R5.get("counts") or {}).get("labctl") or {}).get("labctl_timeline") or {}
        flat = b / a <= 1.25
        out.append(f"- flat from {ns[0]} to {ns[-1]} hosts: no-op plan {a:.3f} s → {b:.3f} s (**{b / a:.2f}×**; "
                   f"target flat, read as ≤ 1.25×: {'met' if flat else 'MISSED'}). Over the same step the floor itself goes "
                   f"{f1:.3f} s → {f5:.3f} s ({f5 / f1:.2f}×: {ns[-1]} handshakes at once)"
                   + (f" and one host's probe {p1['exec_to_close']:.3f} s → {p5['exec_to_close']:.3f} s "
                      f"({p5['exec_to_close'] / p1['exec_to_close']:.1f}×)" if p1 and p5 else "")
                   + f": the hosts are containers on the controller's {res['machine']['nproc']} CPUs, so {ns[-1]} probes "
                   "and handshakes run in parallel on the same CPUs (see \"The probe on the host\" for its processes). "
                   "On real VMs each probe has its own CPU.")
    return "\n".join(out)


METHOD = """\
The workload (`bench/labctl/`, `bench/ansible/`, `bench/pyinfra/`, described in bench/README.md) is the same
about-25-step base-hardening role in each tool's own format. Each tool is configured as a performance-aware
user would: labctl `--forks 10`; Ansible with `pipelining = True`, `ControlMaster=auto -o ControlPersist=60s`,
`forks = 20`, `gathering = explicit` (`gather_facts: false`: the playbook uses no facts); pyinfra
`--parallel 10`. labctl and Ansible read the very same inventory file; pyinfra reads the same hosts and vars
as `inventory.py`. Host keys are checked strictly against the testbed's `known_hosts` by all three.

Per number of hosts, on hosts from `labctl testbed up` (each tool on the same hosts, one tool at a time):

1. **fresh hosts, out of band, untimed** (`bench/lib/harness.py: Lab.prepare`), over ssh: `LogLevel VERBOSE`
   in an sshd drop-in + reload; `apt-get update` + `apt-get install -y` of the workload's six packages (the
   first-run figure is "converge with packages present", as in issue 17) and, at the sizes where Ansible runs,
   `python3` (**Ansible needs python3 on the host; labctl and pyinfra do not** — the minimal Debian image has
   none) + touch `/var/lib/apt/periodic/update-success-stamp`, so the package lists are fresh for all three
   tools and none of them refreshes them inside a timed run.
2. **warm package cache**: one untimed `labctl apply` fills the testbed's shared apt archive cache, so the
   first runs below install from a local cache, not the network.
3. **first run** (figure 4): for each tool, `testbed down` + `up` + step 1, then the timed apply. After the
   first repetition, the tool runs again and must report 0 changes, and the host state is checked out of
   band (`nsenter` into each host, not through any tool; same checks for all three tools).
4. then, for each tool: an untimed apply (to converge to the tool's own view of the state), the timed
   **converged runs** (figure 1: `labctl apply` / `ansible-playbook playbook.yml` / `pyinfra -y`) and
   **dry runs** (figure 2: `labctl plan` / `ansible-playbook --check --diff` / `pyinfra --dry`), each of
   which must report 0 changes (labctl: recap `changed=` / plan exit 0; Ansible: PLAY RECAP `changed=`;
   pyinfra: the `Success` column of `Grand total` / the `Change` column of `Detected changes`); the
   **counts** (one no-op dry run and one no-op converged run between two `logger` markers in each host's
   journal); then the **drift runs** (figure 3): over ssh, a line appended to `/etc/lab/bench-3.conf` and
   `systemctl stop cron` on every host; then the timed dry run (must report changes) and apply (must
   report changes), and the out-of-band state checks again.
5. **floor** (figure 5): `ssh -o ControlMaster=no host true` with the testbed's key and known_hosts, one host,
   and all hosts in parallel, in the same run as the tools' figures.
6. **controller cost**: a no-op `labctl plan` run under `os.wait4` (CPU seconds of labctl and the ssh
   processes it starts), with labctl's `/proc/PID/status` VmHWM (peak RSS) and `/proc/PID/fd` (open fds)
   polled every 5 ms.

Above `--full-max` hosts (default 5) only steps 1, 4's converged and dry runs, 5 and 6 run, for labctl and
pyinfra (Ansible up to `--ansible-max`, default 5): each tool converges (untimed), its second run must report
0 changes and the out-of-band checks must pass, then the timed no-op runs.

The exact commands, per tool (`INV` = `bench/.work/benchN.inventory.yml`, `INV_PY` = the same as pyinfra
inventory):

```sh
cd bench/labctl  && ../../target/release/labctl apply site.yml -i INV --forks 10 --color never
cd bench/labctl  && ../../target/release/labctl plan  site.yml -i INV --forks 10 --color never
cd bench/ansible && ANSIBLE_CONFIG=ansible.cfg ../.venv/bin/ansible-playbook -i INV playbook.yml
cd bench/ansible && ANSIBLE_CONFIG=ansible.cfg ../.venv/bin/ansible-playbook -i INV playbook.yml --check --diff
cd bench/pyinfra && ../.venv/bin/pyinfra --parallel 10 -y    INV_PY deploy.py
cd bench/pyinfra && ../.venv/bin/pyinfra --parallel 10 --dry INV_PY deploy.py
ssh -F /dev/null -i KEY -o UserKnownHostsFile=KNOWN_HOSTS -o StrictHostKeyChecking=yes -o BatchMode=yes \\
    -o IdentitiesOnly=yes -o ControlMaster=no -o ControlPath=none root@HOST true
```

Every command's full output is in `bench/results/latest.log` after a run. Notes on fairness:
Ansible's ControlPersist master outlives a run by design, so its repeated converged and dry runs (figures 1–3)
reuse the previous run's SSH connection, as a user's consecutive runs would; labctl opens a new connection per
run. pyinfra has no ufw operation and no validate-before-replace for uploads: its deploy reads
`ufw status verbose` as a fact and emits only the `ufw` commands needed, and runs `sshd -t` / `visudo -cf`
right after the drop-ins change (conditional operations). Ansible uses `community.general.ufw` and
`ansible.posix.sysctl` / `authorized_key` from the `ansible` PyPI package (Galaxy is not needed).
"""


def first_only(a):
    """--first-only: figure 4 for some tools, printed and kept apart from the full run's results."""
    global LOG
    LOG = open(RESULTS / "first-only.log", "w")
    b = Bench(a)
    b.load("start")
    try:
        for n in a.hosts:
            if n > max(a.full_max, a.first_max):
                raise BenchError(f"--first-only measures sizes up to --first-max ({a.first_max})")
            b.run_n(n) if n <= a.full_max else b.first_scale(n)
    finally:
        b.load("end")
        b.res["cmdline"] = a.cmdline
        (RESULTS / "first-only.json").write_text(json.dumps(b.res, indent=1))
    for n, R in b.res["n"].items():
        for tool, st in R["first"].items():
            print(f"{n} host(s) first run {tool}: min {st['min']:.2f} / median {st['median']:.2f} / max {st['max']:.2f} s")
        if "labctl" in R["first"] and "pyinfra" in R["first"]:
            print(f"{n} host(s) pyinfra/labctl: {R['first']['pyinfra']['median'] / R['first']['labctl']['median']:.1f}x")
    print("load average start", " ".join(b.res["load"]["start"]), "end", " ".join(b.res["load"]["end"]))
    table = breakdown_table(b.res)
    if table:
        print("\n" + table)
    table = by_program_table(b.res)
    if table:
        print("\n" + table)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hosts", default="1,5,20,50")
    ap.add_argument("--ansible-max", type=int, default=5,
                    help="run Ansible only up to this many hosts (it takes minutes per run beyond)")
    ap.add_argument("--full-max", type=int, default=5,
                    help="above this many hosts: only the no-op figures, the floor and the controller's cost")
    ap.add_argument("--first-max", type=int, default=20,
                    help="above --full-max and up to this many hosts: also the first runs of labctl and pyinfra")
    ap.add_argument("--keep", action="store_true", help="leave the test hosts running")
    ap.add_argument("--cmdline", default="bench/run.sh")
    ap.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from bench/results/latest.json")
    ap.add_argument("--first-only", action="store_true",
                    help="only figure 4 (first run on fresh hosts, packages present), for the tools in --tools; "
                         "writes bench/results/first-only.json and leaves BENCHMARKS.md alone")
    ap.add_argument("--tools", default=",".join(TOOLS), help="with --first-only: comma-separated subset of "
                    + ",".join(TOOLS))
    ap.add_argument("--testbed-prefix", default="bench",
                    help="testbeds are named PREFIXN (N hosts); testbed names are machine-wide")
    ap.add_argument("--slow-reps", type=int, help="runs of each slow figure (default 3, or 1 with --quick)")
    a = ap.parse_args()
    a.tools = [t for t in a.tools.split(",") if t]
    if any(t not in TOOLS for t in a.tools):
        ap.error(f"--tools: choose from {','.join(TOOLS)}")
    if not a.first_only and a.tools != TOOLS:
        ap.error("--tools needs --first-only (the full report compares all three tools)")
    if a.report_only:
        res = json.loads((RESULTS / "latest.json").read_text())
        (ROOT / "BENCHMARKS.md").write_text(report(res, res.get("cmdline", a.cmdline)))
        print(f"wrote {ROOT / 'BENCHMARKS.md'} from {RESULTS / 'latest.json'}")
        return
    a.hosts = [int(x) for x in a.hosts.split(",") if x]
    reps = a.slow_reps
    a.fast_reps, a.slow_reps = (3, 1) if a.quick else (5, 3)
    a.slow_reps = reps or a.slow_reps
    RESULTS.mkdir(parents=True, exist_ok=True)
    global LOG
    if a.first_only:
        return first_only(a)
    LOG = open(RESULTS / "latest.log", "w")
    b = Bench(a)
    b.res["machine"] = machine()
    b.res["cmdline"] = a.cmdline
    b.res["ansible_max"], b.res["full_max"] = a.ansible_max, a.full_max
    b.load("start")
    err = None
    try:
        for n in a.hosts:
            b.run_n(n)
            # Written after every size, so a run cut short still leaves what it measured.
            b.load("end")
            b.res["finished"] = datetime.datetime.now().isoformat(timespec="seconds") + f" (after {n} hosts)"
            (RESULTS / "latest.json").write_text(json.dumps(b.res, indent=1))
            (ROOT / "BENCHMARKS.md").write_text(report(b.res, a.cmdline))
    except (BenchError, subprocess.TimeoutExpired) as e:
        err = str(e)
        log(f"FAILED: {e}")
    b.load("end")
    b.res["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    b.res["error"] = err
    (RESULTS / "latest.json").write_text(json.dumps(b.res, indent=1))
    if err:
        log("not writing BENCHMARKS.md: the run failed (see bench/results/latest.log)")
        sys.exit(1)
    (ROOT / "BENCHMARKS.md").write_text(report(b.res, a.cmdline))
    log(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
