"""bench: the reference workload (bench/README.md) as a pyinfra deploy; the same steps as
bench/labctl/roles/bench/role.yml and bench/ansible/playbook.yml.

pyinfra has no ufw operation and no "validate before replacing" for uploaded files, so the
firewall is a guarded `server.shell` decided from a fact (`ufw status verbose`), and the sshd
and sudoers drop-ins are checked (`sshd -t`, `visudo -c`) right after they change, before ssh
is reloaded -- what a pyinfra user writes by hand.
"""

import re

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd

PACKAGES = ["ufw", "cron", "curl", "jq", "rsync", "tree"]
SYSCTL = {
    "net.ipv4.conf.all.rp_filter": "2",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.tcp_keepalive_time": "600",
    "net.core.somaxconn": "1024",
    "net.ipv4.tcp_fin_timeout": "30",
}
USER = "benchadm"
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGO5x48dGQ7ridzYIa53mwT8oJXQcvRjY7p1hABE3EPO benchadm@bench"
FIREWALL_RULES = [("22", "tcp"), ("80", "tcp"), ("443", "tcp"), ("51820", "udp")]
TIMEZONE = "Europe/Berlin"
DIRS = [
    ("/srv/bench", "755"),
    ("/srv/bench/data", "750"),
    ("/srv/bench/data/cache", "700"),
    ("/srv/bench/logs", "755"),
]
TPL = {
    "inventory_hostname": host.data.inventory_hostname,
    "ansible_host": host.data.ssh_hostname,
    "bench_site": host.data.bench_site,
    "bench_index": host.data.bench_index,
    "bench_peers": host.data.bench_peers,
    "bench_ssh_max_auth_tries": 4,
}

apt.packages(
    name="packages",
    packages=PACKAGES,
    update=True,
    cache_time=86400,
)

sshd = files.template(
    name="sshd drop-in",
    src="templates/sshd-bench.conf.j2",
    dest="/etc/ssh/sshd_config.d/50-bench.conf",
    mode="644",
    **TPL,
)
server.shell(
    name="validate sshd config and reload ssh",
    commands=["/usr/sbin/sshd -t", "systemctl reload ssh"],
    _if=sshd.did_change,
)

for key, value in SYSCTL.items():
    server.sysctl(
        name=f"sysctl {key}",
        key=key,
        value=value,
        persist=True,
        persist_file="/etc/sysctl.d/60-bench.conf",
    )

# ufw: read its state (a fact, gathered before any change), emit only the commands needed.
status = host.get_fact(Command, "ufw status verbose 2>/dev/null || true") or ""
ufw_cmds = []
if "deny (incoming)" not in status:
    ufw_cmds.append("ufw default deny incoming")
if "allow (outgoing)" not in status:
    ufw_cmds.append("ufw default allow outgoing")
for port, proto in FIREWALL_RULES:
    if not re.search(rf"^{port}/{proto}\s+ALLOW IN\s+Anywhere\s*$", status, re.M):
        ufw_cmds.append(f"ufw allow {port}/{proto}")
if "Status: active" not in status:
    ufw_cmds.append("ufw --force enable")
if ufw_cmds:
    server.shell(name="firewall", commands=ufw_cmds)

server.user(
    name="admin user and key",
    user=USER,
    shell="/bin/bash",
    groups=["sudo"],
    append=True,
    public_keys=[USER_KEY],
    create_home=True,
)

sudo = files.put(
    name="admin sudo",
    src="templates/sudoers-bench",
    dest="/etc/sudoers.d/50-bench",
    mode="440",
)
server.shell(
    name="validate sudoers",
    commands=["/usr/sbin/visudo -cf /etc/sudoers.d/50-bench || { rm -f /etc/sudoers.d/50-bench; exit 1; }"],
    _if=sudo.did_change,
)

files.directory(name="lab directory", path="/etc/lab", mode="755", user="root", group="root")
for i in range(1, 11):
    files.template(
        name=f"lab file {i}",
        src="templates/lab.conf.j2",
        dest=f"/etc/lab/bench-{i}.conf",
        mode="644",
        item=i,
        **TPL,
    )

for path, mode in DIRS:
    files.directory(name=f"dir {path}", path=path, mode=mode, user="root", group="root")

systemd.service(name="cron running", service="cron", running=True, enabled=True)

files.link(
    name="timezone",
    path="/etc/localtime",
    target=f"/usr/share/zoneinfo/{TIMEZONE}",
    force=True,
)
files.put(name="timezone name", src="templates/timezone", dest="/etc/timezone", mode="644")
