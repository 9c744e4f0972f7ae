//! `labctl init`: flags for scripts, questions on a terminal for what the flags left out.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{CliError, Exit};
use crate::init::{self, render, InitError};
use crate::prompt;
use crate::secret::Secret;
use crate::ui::Shell;

use super::Global;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new repo's folder (created if missing; nothing in it is overwritten)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Add one node to the lab in DIR instead: inventory entry, free wg_address, WireGuard key
    #[arg(long, num_args = 2, value_names = ["NAME", "ADDRESS"])]
    add_host: Option<Vec<String>>,
    /// The inventory's name: inventories/NAME/hosts.yml
    #[arg(long, default_value = "lab")]
    name: String,
    /// A node, as NAME=ADDRESS (repeat; the first is the k3s server unless --server says)
    #[arg(long = "host", value_name = "NAME=ADDRESS")]
    hosts: Vec<String>,
    /// Which host is the k3s server
    #[arg(long)]
    server: Option<String>,
    /// The admin's SSH public key: the key itself, or a .pub file
    #[arg(long, value_name = "KEY|FILE")]
    admin_key: Option<String>,
    /// The user labctl connects as (root, or a user with passwordless sudo)
    #[arg(long, value_name = "USER")]
    ssh_user: Option<String>,
    /// The SSH private key labctl connects with
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<String>,
    /// A known_hosts file holding the hosts' keys (labctl_known_hosts); else ~/.ssh/known_hosts
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<String>,
    /// SMTP relay for alert e-mail, HOST:PORT (optional; its password is asked for, or read
    /// from $LABCTL_SMTP_PASSWORD — never from a flag)
    #[arg(long, value_name = "HOST:PORT")]
    smtp_relay: Option<String>,
    /// SMTP user name (default: the alert sender address)
    #[arg(long, value_name = "USER")]
    smtp_user: Option<String>,
    /// Where alerts go
    #[arg(long, value_name = "ADDRESS")]
    alert_email: Option<String>,
    /// The lab's domain (optional): lab_domain for the ingress role; alerts come from alertmanager@DOMAIN
    #[arg(long)]
    domain: Option<String>,
    /// The WireGuard subnet the nodes' tunnel addresses come from
    #[arg(long, value_name = "CIDR", default_value = "10.200.0.0/24")]
    wg_subnet: String,
    /// Never ask: take everything from flags (the default when stdin is not a terminal)
    #[arg(long)]
    no_input: bool,
}

pub fn run(g: &Global, a: InitArgs) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let r = match &a.add_host {
        Some(nh) => add_host(sh, g, &a, &nh[0], &nh[1]),
        None => create(sh, g, a),
    };
    r.map(|()| Exit::Ok)
        .map_err(|e| CliError::new(e.exit(), e.to_string()))
}

fn add_host(
    sh: &Shell,
    g: &Global,
    a: &InitArgs,
    name: &str,
    address: &str,
) -> Result<(), InitError> {
    let keys = crate::vault::Keyring::discover(g.vault_key.as_deref())?;
    let wg = init::add_host(&a.dir, &a.name, name, address, &keys)?;
    sh.status(
        "Added",
        &format!("{name} ({address}) as a k3s agent, wg_address {wg}, with a new WireGuard key in the vault"),
    );
    sh.err(
        "\nNext: `labctl plan` shows what the new node gets (and the other nodes' new WireGuard peer);\n\
         `labctl apply` converges it.\n",
    );
    Ok(())
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn tilde(p: &str) -> PathBuf {
    crate::inventory::expand_tilde(p)
}

/// A flag's value, else the answer to a question on a terminal, else `default`.
fn get(
    ask: bool,
    flag: Option<String>,
    question: &str,
    default: Option<String>,
) -> Result<Option<String>, InitError> {
    if flag.is_some() {
        return Ok(flag);
    }
    if !ask {
        return Ok(default);
    }
    match prompt::ask(question, default.as_deref()) {
        Some(a) if a.is_empty() => Ok(None),
        Some(a) => Ok(Some(a)),
        None => Err(InitError::BadInput("no answer (end of input)".into())),
    }
}

fn parse_host(s: &str) -> Result<(String, String), InitError> {
    let (n, a) = s
        .split_once('=')
        .or_else(|| s.split_once(char::is_whitespace))
        .ok_or_else(|| InitError::BadInput(format!("`{s}`: write a host as NAME=ADDRESS")))?;
    Ok((n.trim().to_string(), a.trim().to_string()))
}

/// The admin key: a key line, or a file holding one.
fn admin_key(v: &str) -> Result<String, InitError> {
    let text = if v.starts_with("ssh-") || v.starts_with("ecdsa-") || v.starts_with("sk-") {
        v.to_string()
    } else {
        let p = tilde(v);
        std::fs::read_to_string(&p).map_err(|e| {
            InitError::BadInput(format!(
                "--admin-key {v}: not a public key, and cannot read it as a file: {e}"
            ))
        })?
    };
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.contains("PRIVATE KEY") {
        return Err(InitError::BadInput(format!(
            "--admin-key {v}: that is a PRIVATE key; give the .pub file"
        )));
    }
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(_))
            if kind.starts_with("ssh-")
                || kind.starts_with("ecdsa-")
                || kind.starts_with("sk-") =>
        {
            Ok(line.to_string())
        }
        _ => Err(InitError::BadInput(format!(
            "--admin-key {v}: not an SSH public key (expected `ssh-ed25519 AAAA… comment`)"
        ))),
    }
}

fn create(sh: &Shell, g: &Global, a: InitArgs) -> Result<(), InitError> {
    let ask = !a.no_input && prompt::interactive();
    if ask {
        sh.err(&format!(
            "A new lab in {}. Press Enter to take the [default].\n",
            a.dir.display()
        ));
    }
    let subnet: init::net::Subnet = a.wg_subnet.parse()?;
    let mut hosts: Vec<(String, String)> = a
        .hosts
        .iter()
        .map(|h| parse_host(h))
        .collect::<Result<_, _>>()?;
    if hosts.is_empty() && ask {
        sh.err("Your hosts, one per line as NAME ADDRESS (an IP or DNS name); an empty line ends the list.\n");
        loop {
            match prompt::ask(&format!("host {}", hosts.len() + 1), None) {
                Some(l) if l.is_empty() => break,
                Some(l) => hosts.push(parse_host(&l)?),
                None => break,
            }
        }
    }
    if hosts.is_empty() {
        return Err(InitError::BadInput(
            "no hosts: pass --host NAME=ADDRESS (one per node), or run on a terminal to be asked"
                .into(),
        ));
    }
    let first = hosts[0].0.clone();
    let server = if hosts.len() > 1 {
        get(
            ask,
            a.server.clone(),
            "Which host is the k3s server?",
            Some(first),
        )?
    } else {
        a.server.clone().or(Some(first))
    }
    .unwrap_or_default();
    let Some(pos) = hosts.iter().position(|(n, _)| *n == server) else {
        return Err(InitError::BadInput(format!(
            "--server {server}: not one of the hosts"
        )));
    };
    let s = hosts.remove(pos);
    hosts.insert(0, s);

    let default_pub = home()
        .map(|h| h.join(".ssh/id_ed25519.pub"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string());
    let key = get(ask, a.admin_key.clone(), "The admin's SSH public key (the key, or a .pub file)", default_pub)?
        .ok_or_else(|| InitError::BadInput("no admin key: pass --admin-key 'ssh-ed25519 AAAA…' or --admin-key ~/.ssh/id_ed25519.pub".into()))?;
    let admin_key = admin_key(&key)?;
    let ssh_user = get(
        ask,
        a.ssh_user.clone(),
        "The user labctl connects as (root, or one with passwordless sudo)",
        Some("root".into()),
    )?
    .unwrap_or_else(|| "root".into());
    let ssh_key = get(
        ask,
        a.ssh_key.clone(),
        "The SSH private key labctl connects with",
        Some("~/.ssh/id_ed25519".into()),
    )?
    .unwrap_or_else(|| "~/.ssh/id_ed25519".into());
    let relay = get(
        ask,
        a.smtp_relay.clone(),
        "SMTP relay for alert e-mail, HOST:PORT (optional)",
        None,
    )?;
    let domain = get(ask, a.domain.clone(), "The lab's domain (optional)", None)?;
    let mut external: Vec<(String, Secret<String>)> = Vec::new();
    let mut alert_email = a.alert_email.clone();
    let smtp = match relay {
        None => None,
        Some(relay) => {
            let sender = domain.as_ref().map(|d| format!("alertmanager@{d}"));
            let user = get(ask, a.smtp_user.clone(), "SMTP user", sender)?.unwrap_or_default();
            alert_email = get(
                ask,
                alert_email,
                "Where alerts go (an e-mail address)",
                None,
            )?;
            let pw = match std::env::var("LABCTL_SMTP_PASSWORD") {
                Ok(p) if !p.is_empty() => Some(Secret::new(p)),
                _ if ask => prompt::ask_hidden("SMTP password (not shown; empty: set it later)")
                    .filter(|p| !p.expose().is_empty()),
                _ => None,
            };
            if let Some(pw) = pw {
                external.push(("vault_smtp_password".into(), pw));
            }
            Some(render::Smtp { relay, user })
        }
    };
    let nodes = init::assign(&hosts, &subnet)?;
    let answers = render::Answers {
        nodes,
        admin_key,
        ssh_user,
        ssh_key,
        known_hosts: a.known_hosts.clone(),
        smtp,
        domain,
        alert_email,
        subnet,
    };
    let key_path = match &g.vault_key {
        Some(k) => k.clone(),
        None => crate::vault::default_key_path().ok_or_else(|| {
            InitError::BadInput(
                "HOME is not set: pass --vault-key FILE for the age identity".into(),
            )
        })?,
    };
    let made = init::create(&a.dir, &a.name, &answers, &external, &key_path)?;
    report(sh, &a.dir, &a.name, &answers, &made, g.vault_key.is_some());
    Ok(())
}

fn report(
    sh: &Shell,
    dir: &Path,
    name: &str,
    a: &render::Answers,
    made: &init::Made,
    explicit_key: bool,
) {
    sh.status(
        "Created",
        &format!(
            "a lab repo in {} ({} files; server {}, {} agent(s))",
            dir.display(),
            made.files,
            a.nodes[0].name,
            a.nodes.len() - 1
        ),
    );
    if made.key_created {
        sh.status(
            "Created",
            &format!(
                "your age identity {} (0600), public key {}",
                made.key.display(),
                made.public
            ),
        );
    } else {
        sh.status(
            "Using",
            &format!(
                "your age identity {} (public key {})",
                made.key.display(),
                made.public
            ),
        );
    }
    let inv = if name == "lab" {
        String::new()
    } else {
        format!(" -i inventories/{name}/hosts.yml")
    };
    let key = if explicit_key {
        format!(" --vault-key {}", made.key.display())
    } else {
        String::new()
    };
    sh.err(&format!(
        "\nNext, in {dir}:\n  labctl check{inv}{key}     # offline: every file parses and every template renders\n  labctl plan{inv}{key}      # what would change on the hosts (nothing is changed);\n                    # add --accept-new-host-keys the first time, to trust each host's SSH key\n\n\
         Back up your age key now: without {keyfile} nobody can open the vault\n\
         (it is not in the repo). Copy it to a password manager or an offline medium, e.g.\n  \
         cat {keyfile}    # and store the AGE-SECRET-KEY-… line somewhere safe\n\
         `git init && git add -A && git commit` is safe: the vault is encrypted, keys are git-ignored.\n",
        dir = dir.display(),
        keyfile = made.key.display(),
    ));
}
