//! The text of every file `labctl init` writes. Pure: answers in, file contents out.

use std::net::Ipv4Addr;

use super::net::Subnet;
use super::scan::{Kind, Needs};
use crate::secret::Secret;

/// A node of the lab.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub address: String,
    pub wg_address: Ipv4Addr,
}

#[derive(Debug)]
pub struct Smtp {
    /// `host:port`
    pub relay: String,
    pub user: String,
}

/// Everything `init` asked for (or took from flags).
#[derive(Debug)]
pub struct Answers {
    /// The server first, then the agents.
    pub nodes: Vec<Node>,
    pub admin_key: String,
    pub ssh_user: String,
    pub ssh_key: String,
    pub known_hosts: Option<String>,
    pub smtp: Option<Smtp>,
    pub domain: Option<String>,
    pub alert_email: Option<String>,
    pub subnet: Subnet,
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

pub const SCHEMA_DIR: &str = "schemas";

/// `inventories/NAME/hosts.yml`: the first node is the k3s server, the rest are agents.
pub fn hosts_yml(nodes: &[Node]) -> String {
    let mut y = format!(
        "# yaml-language-server: $schema=../../{SCHEMA_DIR}/inventory.schema.json\n\
         # The lab's hosts, in Ansible's YAML inventory format. Add a node with\n\
         # `labctl init --add-host NAME ADDRESS` (a free wg_address and a WireGuard key in the vault).\n\
         all:\n  children:\n    lab:\n      children:\n"
    );
    let (server, agents) = nodes.split_at(1.min(nodes.len()));
    for (group, members) in [("k3s_server", server), ("k3s_agents", agents)] {
        y.push_str(&format!("        {group}:\n"));
        if members.is_empty() {
            y.push_str("          hosts: {}\n");
            continue;
        }
        y.push_str("          hosts:\n");
        for n in members {
            y.push_str(&host_entry(n));
        }
    }
    y
}

/// One host under a group's `hosts:` (12 spaces deep).
pub fn host_entry(n: &Node) -> String {
    format!(
        "            {}:\n              ansible_host: {}\n              wg_address: {}\n",
        n.name,
        q(&n.address),
        n.wg_address
    )
}

/// `group_vars/all/main.yml`: every setting a new lab must make, each with a comment.
pub fn main_yml(a: &Answers, needs: &Needs) -> String {
    let mut y = String::from(
        "# Settings for the whole lab, written by `labctl init`. Any role default (roles/*/defaults.yml)\n\
         # can be overridden here, per group (group_vars/GROUP.yml) or per host (host_vars/HOST.yml).\n\
         # Secrets are in vault.yml.age beside this file: `labctl vault edit` it.\n\n\
         # How labctl connects (Ansible's variable names).\n",
    );
    y.push_str(&format!(
        "ansible_user: {}                 # root, or a user with passwordless sudo (labctl runs `sudo -n`)\n",
        q(&a.ssh_user)
    ));
    y.push_str(&format!(
        "ansible_become: {}\n",
        if a.ssh_user == "root" {
            "false"
        } else {
            "true"
        }
    ));
    y.push_str(&format!(
        "ansible_ssh_private_key_file: {}\n",
        q(&a.ssh_key)
    ));
    if let Some(k) = &a.known_hosts {
        y.push_str(&format!(
            "labctl_known_hosts: {}           # the hosts' SSH keys, checked strictly\n",
            q(k)
        ));
    }
    y.push_str("\n# base-hardening: an admin user that logs in with this key only, with passwordless sudo.\n");
    y.push_str("admin_user: labadmin\nadmin_authorized_keys:\n");
    y.push_str(&format!("  - {}\n", q(&a.admin_key)));
    y.push_str(&format!(
        "vpn_subnet: {}                   # VPN-only ports (k8s API, kubelet, NodePorts) open to it\n",
        a.subnet
    ));
    y.push_str(
        "\n# wireguard: each node's wg_address is in hosts.yml, its private key in the vault.\n",
    );
    y.push_str(&format!(
        "wg_subnet: {}\nwg_prefix: {}\n",
        a.subnet, a.subnet.prefix
    ));
    y.push_str("wg_peers: []                       # admin laptops: [{name: laptop, public_key: \"…\", address: …}],\n");
    y.push_str("                                   # then `labctl wireguard peer-config laptop` prints its config\n");
    if !needs.examples.is_empty() {
        y.push_str("\n# The roles ship these as EXAMPLE values (see each role's defaults.yml): make them yours.\n");
    }
    let mut seen = std::collections::BTreeSet::new();
    // A var two roles mark (or one set above) is written once: YAML refuses duplicate keys.
    for e in needs
        .examples
        .iter()
        .filter(|e| seen.insert(e.name.clone()))
    {
        let (value, note) = match answer_for(a, &e.name) {
            Some(v) => (
                format!("{}: {}", e.name, q(&v)),
                "from labctl init".to_string(),
            ),
            None => (e.value.clone(), format!("EXAMPLE{}, set yours", e.hint)),
        };
        y.push_str(&format!("{value}    # {}: {note}\n", e.role));
    }
    if a.smtp.is_none() && needs.examples.iter().any(|e| e.name.starts_with("smtp")) {
        y.push_str("# No SMTP relay was given to `labctl init`: alert e-mail goes nowhere until the smtp_* and\n\
                    # alert_email_* settings above are real (and vault_smtp_password is set in the vault).\n");
    }
    y
}

/// The value `init`'s answers give an EXAMPLE setting, if they do.
fn answer_for(a: &Answers, var: &str) -> Option<String> {
    match var {
        "smtp_smarthost" => a.smtp.as_ref().map(|s| s.relay.clone()),
        "smtp_username" => a.smtp.as_ref().map(|s| s.user.clone()),
        "alert_email_to" => a.alert_email.clone(),
        "alert_email_from" => a.domain.as_ref().map(|d| format!("alertmanager@{d}")),
        "lab_domain" => a.domain.clone(),
        "acme_email" => a.alert_email.clone(),
        _ => None,
    }
}

/// The vault's plaintext: every secret the roles mention, generated here; credentials from
/// outside (`external`, e.g. the SMTP password) as given, else empty with a note.
pub fn vault_yml(
    needs: &Needs,
    nodes: &[&str],
    external: &[(String, Secret<String>)],
) -> Secret<String> {
    let mut y = String::from(
        "# The lab's secrets, generated by labctl on the machine that made the repo.\n\
         # Edit with `labctl vault edit inventories/NAME/group_vars/all/vault.yml.age`.\n",
    );
    for v in needs.vault.iter().filter(|v| v.kind != Kind::WgKeys) {
        let roles = v.roles.join(", ");
        match v.kind {
            Kind::Token => y.push_str(&format!(
                "{}: {}    # {roles}\n",
                v.name,
                q(super::super::vault::gen::hex32().expose())
            )),
            Kind::Password => y.push_str(&format!(
                "{}: {}    # {roles}\n",
                v.name,
                q(super::super::vault::gen::password().expose())
            )),
            Kind::External => match external.iter().find(|(n, _)| n == &v.name) {
                Some((_, s)) => y.push_str(&format!("{}: {}    # {roles}\n", v.name, q(s.expose()))),
                None if v.required => y.push_str(&format!(
                    "{}: \"\"    # {roles}: a credential from outside the lab; set it when you have one\n",
                    v.name
                )),
                // Left out, not empty: an empty value here would hide one the user keeps in
                // another vault file (they merge, later files win).
                None => y.push_str(&format!(
                    "# {}: a credential from outside the lab, needed once you turn its feature on ({roles})\n",
                    v.name
                )),
            },
            Kind::Manual => y.push_str(&format!(
                "# {}: not generated; see roles/{}/defaults.yml for how to make it\n",
                v.name,
                v.roles.first().map(String::as_str).unwrap_or("")
            )),
            Kind::WgKeys => unreachable!("filtered above"),
        }
    }
    if let Some(v) = needs.vault.iter().find(|v| v.kind == Kind::WgKeys) {
        // Last, so `labctl init --add-host` appends a node's key at the end of the file.
        y.push_str(&format!(
            "# {}: one WireGuard private key per node (public keys are derived from them)\n{}:\n",
            v.roles.join(", "),
            v.name
        ));
        y.push_str(&wg_key_lines(nodes));
    }
    Secret::new(y)
}

/// Throwaway values for the outside credentials every lab must define (a testbed has no real
/// SMTP relay, but the monitoring role still renders its password).
pub fn throwaway_external(needs: &Needs) -> Vec<(String, Secret<String>)> {
    needs
        .vault
        .iter()
        .filter(|v| v.kind == Kind::External && v.required)
        .map(|v| (v.name.clone(), super::super::vault::gen::password()))
        .collect()
}

/// `  node: "key"` lines, one fresh key per node.
pub fn wg_key_lines(nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "  {n}: {}\n",
                q(super::super::vault::gen::wg_private_key().expose())
            )
        })
        .collect()
}

/// `.gitignore`: what labctl fetches or writes that must stay out of git.
pub const GITIGNORE: &str = "# Written by labctl init. (git takes no comments after a pattern.)\n\
# kubeconfigs fetched from the k3s server: admin credentials\n\
/kubeconfig/\n\
# the run log (labctl history) and other local state\n\
/.labctl/\n\
# keys: the age identity lives in ~/.config/labctl/age.key, never here\n\
*.agekey\n\
age.key\n\
*.key\n\
id_*\n\
!id_*.pub\n\
# decrypted vaults and saved plans\n\
*.dec.yml\n\
*.plain.yml\n\
plan.json\n\
*.plan.json\n";

/// `.vscode/settings.json`: the YAML language server (VS Code's YAML extension) validates and
/// completes the lab's files with the schemas in `schemas/`.
pub fn vscode_settings() -> String {
    let v = serde_json::json!({
        "yaml.schemas": {
            "./schemas/role.schema.json": ["roles/*/role.yml"],
            "./schemas/site.schema.json": ["site.yml"],
            "./schemas/inventory.schema.json": ["inventories/*/hosts.yml"]
        }
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&v).expect("serializes")
    )
}

pub fn recipients(public: &str) -> String {
    format!(
        "# Who can open this repo's vaults: one age public key per line.\n\
         # Add a teammate's key, then `labctl vault rekey inventories/*/group_vars/all/vault.yml.age`.\n\
         {public}\n"
    )
}
