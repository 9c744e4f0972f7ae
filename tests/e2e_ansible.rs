//! An Ansible user's habits on real test hosts: a Host block in the ssh config decides how a
//! host is reached (labctl adds no -p/-l/-i of its own), `labctl run PATTERN -- CMD` runs in
//! parallel with output per host, host patterns with subscripts, and `run_once`.
//! One testbed for the module; host state is checked out of band (nsenter).

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{e2e_enabled, show, write, Testbed};

fn labctl_in(dir: &Path, ssh_config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .current_dir(dir)
        .env("LABCTL_SSH_CONFIG", ssh_config)
        .env("NO_COLOR", "1")
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("LABCTL_INVENTORY")
        .output()
        .expect("run labctl")
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn ssh_config_adhoc_run_and_run_once() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("ansible-adhoc", 2);
    let (h1, h2) = (&tb.hosts[0], &tb.hosts[1]);
    let d = tempfile::tempdir().unwrap();
    let key = tb.key().display().to_string();
    let kh = tb.known_hosts().display().to_string();
    // `via-config` exists only in the ssh config: address, user, key and known_hosts come
    // from its Host block. `bad-port` differs only by Port, which must be honoured.
    let cfg = d.path().join("ssh_config");
    write(
        d.path(),
        "ssh_config",
        &format!(
            "Host via-*\n  HostName {a}\n  User root\n  IdentityFile {key}\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n\
             Host bad-port\n  HostName {a}\n  Port 1\n  User root\n  IdentityFile {key}\n  UserKnownHostsFile {kh}\n  ConnectTimeout 3\n",
            a = h1.address
        ),
    );
    // An INI inventory, kubespray-style: one host by alias only, one with Ansible's vars.
    write(
        d.path(),
        "hosts.ini",
        &format!(
            "[lab]\nvia-config\n{n2} ansible_ssh_host={a2} ansible_ssh_user=root ansible_ssh_private_key_file={key} labctl_known_hosts={kh}\n\
             [broken]\nbad-port\n[k3s_server]\nvia-config\n",
            n2 = h2.name,
            a2 = h2.address
        ),
    );

    let o = labctl_in(
        d.path(),
        &cfg,
        &[
            "run",
            "lab",
            "-i",
            "hosts.ini",
            "--",
            "cat /etc/hostname; id -un",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        out.contains("via-config | SUCCESS | rc=0 >>"),
        "{}",
        show(&o)
    );
    assert!(
        out.contains(&format!("{} | SUCCESS | rc=0 >>", h2.name)),
        "{}",
        show(&o)
    );
    assert!(
        out.contains(&h1.name) && out.contains("root"),
        "{}",
        show(&o)
    );

    // Port 1 comes from the config: the host is unreachable (exit 6), not reached on 22.
    let o = labctl_in(
        d.path(),
        &cfg,
        &["run", "broken", "-i", "hosts.ini", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(6), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bad-port | UNREACHABLE"),
        "{}",
        show(&o)
    );

    // A failing command: output per host, exit 1; `lab[1]` is the second host only.
    let o = labctl_in(
        d.path(),
        &cfg,
        &[
            "run",
            "lab[1]",
            "-i",
            "hosts.ini",
            "--",
            "echo out; echo err >&2; exit 3",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out.contains(&format!("{} | FAILED | rc=3 >>\nout\nerr\n", h2.name)),
        "{}",
        show(&o)
    );
    assert!(!out.contains("via-config"), "{}", show(&o));

    // `labctl kubectl` runs `k3s kubectl` as root on the first k3s server (the k3s stand-in,
    // tests/standins/k3s, installed where the real binary goes).
    let standin =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/k3s")).unwrap();
    let b64 = {
        use std::io::Write;
        let mut c = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&standin).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let install =
        format!("echo {b64} | base64 -d > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s");
    let o = labctl_in(
        d.path(),
        &cfg,
        &["run", "k3s_server", "-i", "hosts.ini", "--", &install],
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = labctl_in(
        d.path(),
        &cfg,
        &["kubectl", "-i", "hosts.ini", "--", "version", "--client"],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("via-config | SUCCESS | rc=0 >>\nClient Version: v"),
        "{}",
        show(&o)
    );
    // No server running: kubectl's own refusal comes back, with its exit code.
    let o = labctl_in(
        d.path(),
        &cfg,
        &["kubectl", "-i", "hosts.ini", "--", "get", "nodes"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("refused"),
        "{}",
        show(&o)
    );

    // run_once: the first selected host does it; every host does the rest.
    write(
        d.path(),
        "site.yml",
        "- hosts: lab\n  roles: [r]\n- hosts: lab\n  run_once: true\n  roles: [cluster]\n",
    );
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/each, content: \"x\\n\"}\n  - file: {path: /root/once-resource, content: \"x\\n\"}\n    run_once: true\n",
    );
    write(
        d.path(),
        "roles/cluster/role.yml",
        "resources:\n  - file: {path: /root/once-play, content: \"x\\n\"}\n",
    );
    let o = labctl_in(
        d.path(),
        &cfg,
        &["apply", "--yes", "site.yml", "-i", "hosts.ini"],
    );
    assert!(o.status.success(), "{}", show(&o));
    let exists = |host: &str, f: &str| tb.sh(host, &format!("test -e /root/{f}")).status.success();
    assert!(exists(&h1.name, "each") && exists(&h2.name, "each"));
    assert!(exists(&h1.name, "once-resource") && exists(&h1.name, "once-play"));
    assert!(!exists(&h2.name, "once-resource") && !exists(&h2.name, "once-play"));

    // Facts in templates: gathered (only because a template names them), Ansible's names.
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/facts, template: facts.j2}\n",
    );
    write(
        d.path(),
        "roles/r/templates/facts.j2",
        "{{ ansible_distribution }} {{ ansible_facts['distribution_release'] }} {{ ansible_distribution_major_version }} \
         {{ ansible_architecture }} {{ ansible_default_ipv4.address }} {{ ansible_service_mgr }} {{ ansible_pkg_mgr }} \
         {{ ansible_hostname }} {{ ansible_processor_vcpus > 0 }} {{ ansible_memtotal_mb > 0 }}\n",
    );
    let o = labctl_in(
        d.path(),
        &cfg,
        &[
            "apply",
            "--yes",
            "site.yml",
            "-i",
            "hosts.ini",
            "-l",
            "lab[0]",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let got = tb.sh(&h1.name, "cat /root/facts");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        format!(
            "Debian bookworm 12 x86_64 {} systemd apt {} True True\n",
            h1.address, h1.name
        )
    );
    // `check` contacts nobody: facts are placeholders, and it still checks everything else.
    let o = labctl_in(d.path(), &cfg, &["check", "site.yml", "-i", "hosts.ini"]);
    assert!(o.status.success(), "{}", show(&o));

    // First contact (README's "Start your lab"): a host not in known_hosts is refused (exit 5);
    // --accept-new-host-keys trusts its key once; a changed key is refused even with the flag.
    let fresh = d.path().join("fresh_known_hosts");
    write(d.path(), "fresh_known_hosts", "");
    write(
        d.path(),
        "trust.ini",
        &format!(
            "{n2} ansible_ssh_host={a2} ansible_ssh_user=root ansible_ssh_private_key_file={key} labctl_known_hosts={fresh}\n",
            n2 = h2.name,
            a2 = h2.address,
            fresh = fresh.display()
        ),
    );
    write(d.path(), "trust.yml", "- hosts: all\n  roles: [nothing]\n");
    write(d.path(), "roles/nothing/role.yml", "resources: []\n");
    let trust = |extra: &[&str]| {
        let args = [&["plan", "trust.yml", "-i", "trust.ini"][..], extra].concat();
        labctl_in(d.path(), &cfg, &args)
    };
    let o = trust(&[]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "");
    // `labctl run` refuses the same host as plan does (exit 5), as docs/ansible.md says.
    let o = labctl_in(
        d.path(),
        &cfg,
        &["run", "all", "-i", "trust.ini", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("is not trusted"),
        "{}",
        show(&o)
    );
    let o = trust(&["--accept-new-host-keys"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        std::fs::read_to_string(&fresh)
            .unwrap()
            .contains(&h2.address),
        "the key was recorded"
    );
    let o = trust(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "trusted from now on: {}",
        show(&o)
    );
    // Another key for the same address: refused, with or without the flag.
    let other = d.path().join("other_key");
    let kg = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(kg.status.success(), "{}", show(&kg));
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let line = format!(
        "{} {} {}\n",
        h2.address,
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    write(d.path(), "fresh_known_hosts", &line);
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let o = trust(extra);
        assert_eq!(o.status.code(), Some(5), "{extra:?}: {}", show(&o));
    }
}
