//! `labctl import-ansible` proven on real test hosts.
//!
//! Equivalence: tests/fixtures/import/equiv/ (the common modules of issue #26) converges one
//! fresh host with the real `ansible-playbook` (ansible-core and the ansible.posix and
//! community.general collections from the test venv, over ssh like any Ansible user) and
//! another with the project `labctl import-ansible` writes, applied by `labctl apply`. The two
//! hosts are then read out of band (nsenter, never through labctl or Ansible) and must be
//! equal: managed files, packages, services, users and groups, sysctl values, ufw, cron and the
//! time zone. A second labctl run changes nothing.
//!
//! k3s-ansible: the imported `prereq` role applied to a host, its effects checked out of band,
//! idempotent, and what it left out named by the report.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{e2e_enabled, json_data, show, skip, write, Testbed};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import");

fn labctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("LABCTL_INVENTORY")
        .output()
        .expect("run labctl")
}

/// ansible-playbook and the collections dir from scripts/setup.sh, or why the test cannot run.
fn ansible() -> Result<(PathBuf, PathBuf), String> {
    let venv = std::env::var_os("LABCTL_TEST_VENV")
        .map(PathBuf::from)
        .ok_or("LABCTL_TEST_VENV is not set (source scripts/setup.sh)")?;
    let playbook = venv.join("bin/ansible-playbook");
    if !playbook.is_file() {
        return Err(format!("no {} (scripts/setup.sh)", playbook.display()));
    }
    let coll = std::env::var_os("LABCTL_ANSIBLE_COLLECTIONS")
        .map(PathBuf::from)
        .ok_or("LABCTL_ANSIBLE_COLLECTIONS is not set (source scripts/setup.sh)")?;
    for c in ["ansible/posix", "community/general"] {
        if !coll.join("ansible_collections").join(c).is_dir() {
            return Err(format!(
                "no {c} under {} (scripts/setup.sh)",
                coll.display()
            ));
        }
    }
    Ok((playbook, coll))
}

/// Serves one file over HTTP on `addr` until dropped: the hosts have no internet, and get_url
/// and labctl's `download` both need a URL. Bound to the machine's end of a test host's veth.
struct Serve {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl Serve {
    fn start(addr: &str, body: Vec<u8>) -> Serve {
        let l = TcpListener::bind((addr, 0)).expect("bind the file server");
        let url = format!("http://{}/tool.tar.gz", l.local_addr().unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = c.write_all(head.as_bytes());
                        if !req.starts_with(b"HEAD ") {
                            let _ = c.write_all(&body);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Serve {
            stop,
            thread: Some(thread),
            url,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gateway(address: &str) -> String {
    format!("{}.1", address.rsplit_once('.').unwrap().0)
}

/// An inventory with one host in group `equiv`, in the shape both tools read (Ansible gets the
/// testbed's known_hosts from ANSIBLE_SSH_COMMON_ARGS: labctl refuses ssh options in an
/// inventory).
fn inventory(tb: &Testbed, host: &str, extra: &str) -> String {
    let h = tb.host(host);
    let key = tb.key().display().to_string();
    let kh = tb.known_hosts().display().to_string();
    format!(
        "all:\n  vars:\n    labctl_known_hosts: {kh}\n  children:\n    equiv:\n      hosts:\n        {host}:\n          ansible_host: {a}\n          ansible_user: root\n          ansible_ssh_private_key_file: {key}\n{extra}",
        a = h.address
    )
}

/// Installs what Ansible needs on a host (python3, and python3-apt for its apt module) and puts
/// the file the playbook removes in place. Run on BOTH hosts, so they differ only by the tool
/// that converges them.
fn prepare(tb: &Testbed, host: &str) {
    tb.sh_ok(
        host,
        "export DEBIAN_FRONTEND=noninteractive; \
         { apt-get install -y -q python3 python3-apt >/dev/null 2>&1 || \
           { apt-get update -qq && apt-get install -y -q python3 python3-apt >/dev/null; }; } && \
         echo old > /etc/equiv-old.conf",
    );
}

/// What the hosts are compared on, one `KIND WHAT: VALUE` line each. Nothing is normalized but
/// crontab's own header lines (they name a temp file and the install time; the cron module drops
/// them the same way) and a user's last password change day (the day the user was created).
const FILES: &[&str] = &[
    "/etc/equiv",
    "/etc/equiv/motd",
    "/etc/equiv/app.conf",
    "/etc/equiv/equiv.conf",
    "/etc/equiv/flags",
    "/etc/equiv/distro",
    "/etc/equiv-old.conf",
    "/var/lib/equiv",
    "/var/lib/equiv/stamp",
    "/var/lib/equiv/initialized",
    "/var/lib/equiv/peers.count",
    "/usr/local/bin/equiv-true",
    "/etc/crontab",
    "/etc/ssh/sshd_config",
    "/etc/bash.bashrc",
    "/etc/systemd/system/equiv.service",
    "/etc/systemd/system/multi-user.target.wants/equiv.service",
    "/home/equiv",
    "/home/equiv/.ssh",
    "/home/equiv/.ssh/authorized_keys",
    "/etc/sysctl.d/60-equiv.conf",
    "/opt/equiv-tool.tar.gz",
    "/opt/equiv",
    "/opt/equiv/bin",
    "/opt/equiv/bin/tool",
    "/etc/cron.d/equiv-sync",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/hostname",
    "/etc/ufw/ufw.conf",
    "/etc/default/ufw",
    "/etc/ufw/user.rules",
    "/etc/ufw/user6.rules",
];
const PACKAGES: &[&str] = &["cron", "ufw", "procps", "curl", "tzdata", "jq"];
const SERVICES: &[&str] = &["equiv", "cron", "ssh", "ufw"];
const USERS: &[&str] = &["equiv"];
const GROUPS: &[&str] = &["equiv", "ops", "adm"];
const SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.tcp_keepalive_time"];

fn state_script() -> String {
    // One `KIND $x: VALUE` line per item of a list.
    let each = |kind: &str, items: &[&str], value: &str| {
        format!(
            "for x in {}; do echo \"{kind} $x: {value}\"; done\n",
            items.join(" ")
        )
    };
    [
        "export LC_ALL=C\n".to_string(),
        format!(
            "for x in {}; do\n\
             if [ -L \"$x\" ]; then echo \"file $x: link $(readlink \"$x\") $(stat -c '%U:%G' \"$x\")\";\n\
             elif [ -d \"$x\" ]; then echo \"file $x: dir $(stat -c '%a %U:%G' \"$x\")\";\n\
             elif [ -f \"$x\" ]; then echo \"file $x: $(sha256sum < \"$x\" | cut -c1-16) $(stat -c '%a %U:%G' \"$x\")\";\n\
             else echo \"file $x: absent\"; fi; done\n",
            FILES.join(" ")
        ),
        each(
            "package",
            PACKAGES,
            "$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' \"$x\" 2>/dev/null || echo missing)",
        ),
        each(
            "service",
            SERVICES,
            "$(systemctl is-enabled \"$x\" 2>&1) $(systemctl is-active \"$x\" 2>&1)",
        ),
        each(
            "user",
            USERS,
            "$(getent passwd \"$x\") groups=$(id -nG \"$x\") shadow=$(getent shadow \"$x\" | cut -d: -f1,2,4-)",
        ),
        each("group", GROUPS, "$(getent group \"$x\")"),
        each("sysctl", SYSCTLS, "$(sysctl -n \"$x\")"),
        "ufw status verbose | sed 's/^/ufw status: /'\n\
         grep -hE '^(### tuple|-A )' /etc/ufw/user.rules /etc/ufw/user6.rules | sed 's/^/ufw rules: /'\n\
         for t in iptables-save ip6tables-save; do $t | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//g; s/^/ufw live: /'; done\n"
            .to_string(),
        "for u in root equiv; do crontab -u \"$u\" -l 2>&1 | grep -vE '^# (DO NOT EDIT THIS FILE|\\(/tmp/.*installed on|\\(.*version)' | sed \"s/^/cron $u: /\"; done\n"
            .to_string(),
        "echo \"timezone: $(readlink /etc/localtime) $(date +%Z)\"\n".to_string(),
        "echo \"hostname: $(hostname)\"\n".to_string(),
    ]
    .concat()
}

/// Lines per kind (`file`, `package`, …): what the equivalence check compared.
fn kinds(state: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in state.lines() {
        let k = l.split([' ', ':']).next().unwrap_or_default().to_string();
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[test]
#[ignore = "end-to-end on test hosts (root), with ansible-playbook: scripts/test.sh runs it with --include-ignored"]
fn imported_playbook_converges_a_host_as_ansible_does() {
    if !e2e_enabled() {
        return;
    }
    let (playbook, collections) = match ansible() {
        Ok(a) => a,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let started = std::time::Instant::now();
    let tb = Testbed::up("impeq", 2);
    let (ha, hl) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    std::thread::scope(|s| {
        s.spawn(|| prepare(&tb, &ha));
        s.spawn(|| prepare(&tb, &hl));
    });

    // The archive get_url downloads and unarchive unpacks, owned by root as a release tarball.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "src/bin/tool", "#!/bin/sh\necho equiv tool\n");
    let tar = Command::new("tar")
        .args(["--owner=0", "--group=0", "--mtime=2024-01-01", "-czf"])
        .arg(d.path().join("tool.tar.gz"))
        .arg("-C")
        .arg(d.path().join("src"))
        .arg("bin")
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", show(&tar));
    let archive = std::fs::read(d.path().join("tool.tar.gz")).unwrap();
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&archive))
    };
    let serve_a = Serve::start(&gateway(&tb.host(&ha).address), archive.clone());
    let serve_l = Serve::start(&gateway(&tb.host(&hl).address), archive);
    let vars =
        |url: &str| format!("          equiv_src_url: {url}\n          equiv_src_sha256: {sha}\n");

    // Ansible: the fixture as it is, over ssh.
    let fixture = Path::new(FIXTURES).join("equiv");
    let ans = d.path().join("ansible");
    std::fs::create_dir_all(&ans).unwrap();
    write(&ans, "hosts.yml", &inventory(&tb, &ha, &vars(&serve_a.url)));
    let t = std::time::Instant::now();
    let o = Command::new(&playbook)
        .arg("-i")
        .arg(ans.join("hosts.yml"))
        .arg(fixture.join("site.yml"))
        .current_dir(&ans)
        .env("ANSIBLE_COLLECTIONS_PATH", &collections)
        .env("ANSIBLE_HOME", ans.join(".ansible"))
        .env("ANSIBLE_LOCAL_TEMP", ans.join(".ansible/tmp"))
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("ANSIBLE_NOCOLOR", "1")
        .env(
            "ANSIBLE_SSH_COMMON_ARGS",
            format!(
                "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
                tb.known_hosts().display()
            ),
        )
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("LANG", "C.UTF-8")
        .env_remove("ANSIBLE_CONFIG")
        .output()
        .expect("run ansible-playbook");
    assert!(o.status.success(), "ansible-playbook:\n{}", show(&o));
    let ansible_secs = t.elapsed().as_secs_f64();

    // labctl: import, then apply to the other host.
    let lab = d.path().join("lab");
    let inv_l = d.path().join("labctl-hosts.yml");
    std::fs::write(&inv_l, inventory(&tb, &hl, &vars(&serve_l.url))).unwrap();
    let o = labctl(&[
        "--json",
        "import-ansible",
        fixture.join("site.yml").to_str().unwrap(),
        "-i",
        inv_l.to_str().unwrap(),
        "--out",
        lab.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "nothing may be left out:\n{}",
        show(&o)
    );
    let report = json_data(&o);
    // docs/import-ansible.md quotes these.
    assert_eq!(
        report["counts"],
        serde_json::json!({"translated": 27, "approximated": 11, "left_out": 0}),
        "{}",
        show(&o)
    );
    let site = lab.join("site.yml").display().to_string();
    let inv = lab.join("inventory/labctl-hosts.yml").display().to_string();
    let t = std::time::Instant::now();
    let o = labctl(&["apply", "--yes", &site, "-i", &inv]);
    assert!(o.status.success(), "labctl apply:\n{}", show(&o));
    let labctl_secs = t.elapsed().as_secs_f64();

    // The two hosts, read out of band.
    let script = state_script();
    let a = tb.sh_ok(&ha, &script);
    let l = tb.sh_ok(&hl, &script);
    let differ: Vec<String> = a
        .lines()
        .zip(l.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  ansible: {x}\n  labctl:  {y}"))
        .collect();
    assert!(
        differ.is_empty() && a.lines().count() == l.lines().count(),
        "the hosts differ:\n{}\n--- ansible host\n{a}\n--- labctl host\n{l}",
        differ.join("\n")
    );
    // The comparison saw what the playbook did (not two untouched hosts).
    for want in [
        "file /etc/equiv/equiv.conf: ",
        "package jq: ii ",
        "service equiv: enabled active",
        "sysctl net.ipv4.ip_forward: 1",
        "ufw status: Status: active",
        "cron root: #Ansible: equiv backup",
        "timezone: ../usr/share/zoneinfo/Europe/Berlin CE",
        "file /etc/equiv-old.conf: absent",
        "hostname: equiv-web",
    ] {
        assert!(a.contains(want), "{want} in\n{a}");
    }
    assert!(
        a.lines()
            .any(|l| l.starts_with("ufw live: -A ufw-user-input") && l.contains("--dport 8080")),
        "the firewall is loaded:\n{a}"
    );

    // A second labctl run: nothing to do, and the plan agrees.
    let o = labctl(&["apply", "--yes", &site, "-i", &inv]);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("changed=0"), "second apply:\n{}", show(&o));
    let o = labctl(&["plan", "--json", &site, "-i", &inv]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "plan after two applies:\n{}",
        show(&o)
    );
    assert_eq!(
        l,
        tb.sh_ok(&hl, &script),
        "the second apply changed the host"
    );

    if std::env::var_os("LABCTL_SHOW_STATE").is_some() {
        eprintln!("{a}");
    }
    eprintln!(
        "equivalence: {:?} lines equal; report counts {}; ansible-playbook {ansible_secs:.1} s, labctl apply {labctl_secs:.1} s; test {:.0} s",
        kinds(&a),
        report["counts"],
        started.elapsed().as_secs_f64()
    );
}

/// The `- name:` lines of a tasks file that are tasks (a block is not one): where the importer
/// must account for each, either as a resource or as a left-out item.
fn task_lines(tasks: &str) -> Vec<usize> {
    let lines: Vec<&str> = tasks.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let indent = l.len() - l.trim_start().len();
        if !l.trim_start().starts_with("- name:") {
            continue;
        }
        let body = lines[i + 1..]
            .iter()
            .take_while(|b| b.trim().is_empty() || b.len() - b.trim_start().len() > indent);
        let block = format!("{}block:", " ".repeat(indent + 2));
        if !body.into_iter().any(|b| *b == block) {
            out.push(i + 1);
        }
    }
    out
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn imported_k3s_prereq_role_applies_and_converges() {
    if !e2e_enabled() {
        return;
    }
    let k3s = Path::new(FIXTURES).join("k3s-ansible");
    let d = tempfile::tempdir().unwrap();
    let lab = d.path().join("lab");
    let o = labctl(&[
        "--json",
        "import-ansible",
        k3s.join("playbooks/site.yml").to_str().unwrap(),
        "--roles-path",
        k3s.join("roles").to_str().unwrap(),
        "--out",
        lab.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let report = json_data(&o);

    // Every task of prereq is accounted for exactly once: a resource in role.yml (its comment
    // names the task) or a left-out item in the report.
    let src = "roles/prereq/tasks/main.yml";
    let tasks = task_lines(&std::fs::read_to_string(k3s.join(src)).unwrap());
    let role = std::fs::read_to_string(lab.join("roles/prereq/role.yml")).unwrap();
    let written: std::collections::BTreeSet<usize> = role
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("# ansible: {src}:")))
        .map(|r| r.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let left_out: std::collections::BTreeSet<usize> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["file"] == src && i["outcome"] == "left_out")
        .map(|i| i["line"].as_u64().unwrap() as usize)
        .collect();
    assert!(written.is_disjoint(&left_out), "{written:?} {left_out:?}");
    let both: Vec<usize> = written.union(&left_out).copied().collect();
    assert_eq!(both, tasks, "written {written:?}, left out {left_out:?}");
    assert!(!written.is_empty() && !left_out.is_empty());

    // Only the role, on one fresh host, with the optional vars that its translated tasks read.
    let tb = Testbed::up("impk3s", 1);
    let h = tb.hosts[0].name.clone();
    let key = tb.key().display().to_string();
    let kh = tb.known_hosts().display().to_string();
    write(
        &lab,
        "prereq.yml",
        "- name: Cluster prep\n  hosts: k3s_cluster\n  roles: [prereq]\n",
    );
    write(
        &lab,
        "hosts.yml",
        &format!(
            "k3s_cluster:\n  children:\n    server:\n      hosts:\n        {h}:\n          ansible_host: {a}\n          ansible_user: root\n          ansible_ssh_private_key_file: {key}\n  vars:\n    labctl_known_hosts: {kh}\n    k3s_server_location: /srv\n    extra_manifests: [/nowhere/manifest.yaml]\n    registries_config_yaml: |\n      mirrors:\n        docker.io:\n          endpoint: [\"http://10.0.0.1:5000\"]\n",
            a = tb.hosts[0].address
        ),
    );
    let site = lab.join("prereq.yml").display().to_string();
    let inv = lab.join("hosts.yml").display().to_string();
    let o = labctl(&["apply", "--yes", &site, "-i", &inv]);
    assert!(o.status.success(), "{}", show(&o));

    // Out of band: what the translated tasks do on Debian, and what their `when` skips.
    let got = tb.sh_ok(
        &h,
        "grep -x 'net.ipv4.ip_forward=1' /etc/sysctl.conf; sysctl -n net.ipv4.ip_forward; \
         stat -c '%F %a' /var/lib/rancher; readlink /var/lib/rancher/k3s; \
         stat -c '%F %a' /srv/server/manifests; stat -c '%a' /etc/rancher/k3s/registries.yaml; \
         cat /etc/rancher/k3s/registries.yaml; \
         test -e /etc/modules-load.d/br_netfilter.conf && echo br_netfilter file || echo no br_netfilter file; \
         grep -c bridge-nf-call /etc/sysctl.conf || true",
    );
    assert_eq!(
        got,
        "net.ipv4.ip_forward=1\n1\ndirectory 755\n/srv\ndirectory 700\n644\n\
         mirrors:\n  docker.io:\n    endpoint: [\"http://10.0.0.1:5000\"]\n\
         no br_netfilter file\n0\n"
    );

    // A second run changes nothing.
    let o = labctl(&["apply", "--yes", &site, "-i", &inv]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );
    let o = labctl(&["plan", &site, "-i", &inv]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    eprintln!(
        "prereq: {} tasks, {} written as resources, {} left out (lines {left_out:?})",
        tasks.len(),
        written.len(),
        left_out.len()
    );
}
