//! `labctl import-ansible`: a real public playbook (k3s-ansible, kept under
//! tests/fixtures/import/) and a small one using every play-level feature, each imported and
//! then checked with `labctl check`.

use std::path::Path;

use crate::common::{json_data, labctl, show};

const K3S: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import/k3s-ansible"
);

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn check(out: &Path, inventory: &str) -> std::process::Output {
    let site = out.join("site.yml");
    let inv = out.join(inventory);
    labctl(&["check", "-i", inv.to_str().unwrap(), site.to_str().unwrap()])
}

#[test]
fn k3s_ansible_imports_with_a_report_and_passes_check() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("lab");
    let o = labctl(&[
        "--json",
        "import-ansible",
        &format!("{K3S}/playbooks/site.yml"),
        "--roles-path",
        &format!("{K3S}/roles"),
        "-i",
        &format!("{K3S}/inventory-sample.yml"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let data = json_data(&o);
    let c = &data["counts"];
    assert_eq!(
        (
            c["translated"].as_u64(),
            c["approximated"].as_u64(),
            c["left_out"].as_u64()
        ),
        (Some(15), Some(3), Some(99)),
        "{}",
        show(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .trim_end()
            .ends_with("15 translated, 3 approximated, 99 left out"),
        "{stderr}"
    );
    let items = data["items"].as_array().unwrap();
    let find = |file_line: &str| {
        items
            .iter()
            .find(|i| format!("{}:{}", i["file"].as_str().unwrap(), i["line"]) == file_line)
            .unwrap_or_else(|| panic!("no item for {file_line}"))
    };
    // A register'd result, a Python-only regex, a URL without checksum: each named with why.
    let i = find("roles/prereq/tasks/main.yml:119");
    assert_eq!(i["outcome"], "left_out");
    assert!(
        i["why"]
            .as_str()
            .unwrap()
            .contains("set at run time at roles/prereq/tasks/main.yml:"),
        "{i}"
    );
    let i = find("roles/prereq/tasks/main.yml:113");
    assert!(i["why"].as_str().unwrap().contains("changed_when"), "{i}");
    let i = find("roles/k3s_agent/tasks/main.yml:20");
    assert_eq!(i["outcome"], "left_out");
    let i = find("roles/prereq/tasks/main.yml:31");
    assert_eq!(
        (i["module"].as_str(), i["outcome"].as_str()),
        (Some("ansible.posix.sysctl"), Some("approximated"))
    );
    // A block's `when` on service_facts' results reaches the tasks inside it.
    let i = find("roles/prereq/tasks/main.yml:93");
    assert!(
        i["why"]
            .as_str()
            .unwrap()
            .contains("`ansible_facts.services`"),
        "{i}"
    );
    let i = find("roles/prereq/tasks/main.yml:314");
    assert_eq!(
        (i["module"].as_str(), i["outcome"].as_str()),
        (Some("ansible.builtin.file"), Some("translated"))
    );

    // Every resource carries the task it came from.
    let role = std::fs::read_to_string(out.join("roles/prereq/role.yml")).unwrap();
    let entries = role.lines().filter(|l| l.starts_with("  - ")).count();
    let comments = role
        .lines()
        .filter(|l| l.starts_with("  # ansible: roles/prereq/tasks/main.yml:"))
        .count();
    assert!(entries > 0 && entries == comments, "{role}");
    assert!(out.join("roles/prereq/templates/k3s.nft.j2").is_file());
    assert_eq!(
        std::fs::read(out.join("inventory/inventory-sample.yml")).unwrap(),
        std::fs::read(format!("{K3S}/inventory-sample.yml")).unwrap()
    );

    // prereq's vars/ cluster_cidr reads server_config_yaml, which the sample inventory leaves
    // undefined: Ansible never renders it here (only left-out tasks use it), and neither may
    // labctl, which renders every var it is given before the run.
    assert!(!std::fs::read_to_string(out.join("site.yml"))
        .unwrap()
        .contains("cluster_cidr"));
    assert!(
        stderr.contains("vars/ `cluster_cidr`, `service_cidr` not carried over"),
        "{stderr}"
    );
    let o = check(&out, "inventory/inventory-sample.yml");
    assert!(o.status.success(), "{}", show(&o));
}

/// Play order, vars_files, role vars and dependencies, handlers with `listen`, blocks and
/// includes: all translated, exit 0, and the project passes check.
#[test]
fn a_playbook_of_common_features_is_translated_whole() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("ansible");
    write(
        &a,
        "hosts.yml",
        "all:\n  children:\n    web:\n      hosts:\n        w1: {ansible_host: 10.0.0.1}\n",
    );
    write(&a, "group_vars/web.yml", "motd: hello\n");
    write(&a, "vars/extra.yml", "port: 8080\n");
    write(
        &a,
        "site.yml",
        "- name: Web servers\n  hosts: web\n  become: yes\n  serial: 1\n  tags: [web]\n  vars:\n    greeting: hi\n  vars_files: [vars/extra.yml]\n  pre_tasks:\n    - name: tools\n      apt: {name: [curl, jq]}\n  roles:\n    - app\n  tasks:\n    - name: motd\n      copy: {content: \"{{ motd }} {{ greeting }}\\n\", dest: /etc/motd, mode: '0644'}\n      notify: web changed\n    - import_tasks: more.yml\n  post_tasks:\n    - name: done marker\n      file: {path: /var/lib/app, state: directory}\n  handlers:\n    - name: reload nginx\n      listen: web changed\n      service: {name: nginx, state: reloaded}\n",
    );
    write(&a, "more.yml", "- name: port file\n  copy: {content: \"port={{ port }}\", dest: /etc/port}\n  when: port > 0\n");
    write(
        &a,
        "roles/base/tasks/main.yml",
        "- name: admin group\n  group: {name: admins}\n",
    );
    write(&a, "roles/app/meta/main.yml", "dependencies: [base]\n");
    write(&a, "roles/app/defaults/main.yml", "app_user: app\n");
    write(&a, "roles/app/vars/main.yml", "app_dir: /srv/app\n");
    write(&a, "roles/app/templates/app.conf.j2", "dir={{ app_dir }}\n");
    write(
        &a,
        "roles/app/tasks/main.yml",
        "- block:\n    - name: app user\n      user: {name: \"{{ app_user }}\", groups: admins}\n    - name: app conf\n      template: {src: app.conf.j2, dest: /etc/app.conf}\n      notify: restart app\n  when: app_user != ''\n",
    );
    write(
        &a,
        "roles/app/handlers/main.yml",
        "- name: restart app\n  systemd: {name: app, state: restarted, daemon_reload: true}\n",
    );
    let out = d.path().join("lab");
    let o = labctl(&[
        "import-ansible",
        a.join("site.yml").to_str().unwrap(),
        "-i",
        a.join("hosts.yml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(err.contains("0 left out"), "{err}");
    let site = std::fs::read_to_string(out.join("site.yml")).unwrap();
    // pre_tasks, the role's dependency, the role (with its vars/), tasks, post_tasks.
    let order: Vec<&str> = [
        "web-servers-pre",
        "- role: base",
        "- role: app",
        "app_dir: /srv/app",
        "web-servers-tasks",
        "web-servers-post",
    ]
    .into_iter()
    .collect();
    let pos: Vec<usize> = order
        .iter()
        .map(|s| site.find(s).unwrap_or_else(|| panic!("{s} in\n{site}")))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{site}");
    assert!(
        site.contains("serial: 1") && site.contains("port: 8080") && site.contains("greeting: hi"),
        "{site}"
    );
    let tasks = std::fs::read_to_string(out.join("roles/web-servers-tasks/role.yml")).unwrap();
    assert!(
        tasks.contains("notify:\n    - reload nginx") && tasks.contains("- name: reload nginx"),
        "{tasks}"
    );
    assert!(
        tasks.contains("# ansible: more.yml:1 \"port file\""),
        "{tasks}"
    );
    let app = std::fs::read_to_string(out.join("roles/app/role.yml")).unwrap();
    assert!(
        app.contains("when: app_user != ''") && app.contains("state: restarted"),
        "{app}"
    );
    assert!(
        out.join("roles/app/defaults.yml").is_file()
            && out.join("inventory/group_vars/web.yml").is_file()
    );
    let o = check(&out, "inventory/hosts.yml");
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn unreadable_input_is_exit_3_naming_the_place() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "site.yml",
        "- hosts: all\n  tasks:\n    - name: x\n      copy: {content: [unclosed\n",
    );
    let out = d.path().join("lab");
    let o = labctl(&[
        "import-ansible",
        d.path().join("site.yml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("site.yml:4:"), "{err}");
    assert!(!out.exists());
}
