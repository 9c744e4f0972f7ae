//! `labctl init`: a new lab repo from a few answers, and `--add-host` for a node more.
//!
//! What the roles need (vault secrets, EXAMPLE settings) is read from the roles themselves
//! (`scan`), the text of each file is made by `render` (pure, tested), and this module does the
//! I/O: it refuses to overwrite anything, makes or reuses the age identity outside the repo,
//! and encrypts the vault in memory before it is written.

mod addhost;
pub mod net;
pub mod render;
pub mod scan;
pub mod shipped;

use std::path::{Path, PathBuf};

use crate::error::Exit;
use crate::secret::Secret;

pub use addhost::add_host;
use render::{Answers, Node};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    BadInput(String),
    /// `--wg-subnet` is not a usable subnet.
    #[error(transparent)]
    Subnet(#[from] net::SubnetError),
    /// The inventory's `wg_subnet` is not a usable subnet.
    #[error("wg_subnet: {0}")]
    InventorySubnet(net::SubnetError),
    #[error("refusing to overwrite what is already there ({}): `labctl init` only makes new repos\n  = help: use an empty or new folder; `labctl init --add-host NAME ADDRESS` adds a node to an existing lab", some(.0))]
    Exists(Vec<String>),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot write {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

impl InitError {
    pub fn exit(&self) -> Exit {
        match self {
            InitError::BadInput(_) | InitError::Subnet(_) | InitError::InventorySubnet(_) => {
                Exit::BadInput
            }
            InitError::Exists(_) | InitError::Refused(_) => Exit::Refused,
            InitError::Vault(_) => Exit::Vault,
            InitError::Io { .. } => Exit::Failed,
        }
    }
}

/// The first few of a long list.
fn some(v: &[String]) -> String {
    match v.len() {
        0..=4 => v.join(", "),
        n => format!("{} and {} more", v[..4].join(", "), n - 4),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |err| InitError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Where the repo's files go, relative to its root.
pub struct Layout {
    pub inventory: String,
}

impl Layout {
    pub fn new(name: &str) -> Layout {
        Layout {
            inventory: format!("inventories/{name}"),
        }
    }
    pub fn hosts(&self) -> String {
        format!("{}/hosts.yml", self.inventory)
    }
    pub fn main_vars(&self) -> String {
        format!("{}/group_vars/all/main.yml", self.inventory)
    }
    pub fn vault(&self) -> String {
        format!("{}/group_vars/all/vault.yml.age", self.inventory)
    }
}

/// What `init` made, for the closing message.
pub struct Made {
    pub files: usize,
    pub key: PathBuf,
    pub key_created: bool,
    pub public: String,
}

/// The age identity: the one at `key` when it exists (a second lab shares the user's key),
/// else a new one written there 0600. Returns the public key and whether it was created.
fn identity(key: &Path) -> Result<(String, bool), InitError> {
    if key.exists() {
        let ring = crate::vault::Keyring::from_file(key)?;
        let public = ring.public_keys().into_iter().next().ok_or_else(|| {
            InitError::BadInput(format!("{} holds no age identity", key.display()))
        })?;
        return Ok((public, false));
    }
    let (text, public) = crate::vault::keygen();
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    crate::fsutil::write_atomic(key, text.expose().as_bytes(), 0o600, true).map_err(io(key))?;
    Ok((public, true))
}

/// Makes a new lab repo in `dir`. `external`: credentials from outside (SMTP password).
pub fn create(
    dir: &Path,
    name: &str,
    answers: &Answers,
    external: &[(String, Secret<String>)],
    key: &Path,
) -> Result<Made, InitError> {
    let layout = Layout::new(name);
    let needs = shipped::needs();
    let mut files: Vec<(String, Vec<u8>)> = shipped::FILES
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    files.extend(
        crate::schema::files()
            .into_iter()
            .map(|(p, t)| (p, t.into_bytes())),
    );
    files.push((
        layout.hosts(),
        render::hosts_yml(&answers.nodes).into_bytes(),
    ));
    files.push((
        layout.main_vars(),
        render::main_yml(answers, &needs).into_bytes(),
    ));
    files.push((".gitignore".into(), render::GITIGNORE.as_bytes().to_vec()));
    files.push((
        ".vscode/settings.json".into(),
        render::vscode_settings().into_bytes(),
    ));
    let exists: Vec<String> = files
        .iter()
        .map(|(p, _)| p.clone())
        .chain([layout.vault(), crate::vault::RECIPIENTS_FILE.to_string()])
        .filter(|p| dir.join(p).symlink_metadata().is_ok())
        .collect();
    if !exists.is_empty() {
        return Err(InitError::Exists(exists));
    }
    let (public, key_created) = identity(key)?;
    let recipient: age::x25519::Recipient = public
        .parse()
        .map_err(|e| InitError::BadInput(format!("bad public key in {}: {e}", key.display())))?;
    let nodes: Vec<&str> = answers.nodes.iter().map(|n| n.name.as_str()).collect();
    // Encrypted in memory: the plaintext never touches the disk.
    let vault = crate::vault::encrypt(
        render::vault_yml(&needs, &nodes, external)
            .expose()
            .as_bytes(),
        &[recipient],
    )?;
    files.push((layout.vault(), vault));
    files.push((
        crate::vault::RECIPIENTS_FILE.into(),
        render::recipients(&public).into_bytes(),
    ));
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        crate::fsutil::write_atomic(&path, bytes, 0o644, true).map_err(io(&path))?;
    }
    Ok(Made {
        files: files.len(),
        key: key.to_path_buf(),
        key_created,
        public,
    })
}

/// Validates a node name the way the inventory does.
pub fn check_node(name: &str, address: &str) -> Result<(), InitError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with(['-', '.']);
    if !ok {
        return Err(InitError::BadInput(format!(
            "host name `{name}`: use letters, digits, `-`, `_` and `.`"
        )));
    }
    if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(InitError::BadInput(format!(
            "host `{name}`: `{address}` is not an address (an IP or a DNS name)"
        )));
    }
    Ok(())
}

/// Gives each node (server first) the next free tunnel address.
pub fn assign(hosts: &[(String, String)], subnet: &net::Subnet) -> Result<Vec<Node>, InitError> {
    let mut used = Vec::new();
    let mut out = Vec::new();
    for (name, address) in hosts {
        check_node(name, address)?;
        if out.iter().any(|n: &Node| &n.name == name) {
            return Err(InitError::BadInput(format!(
                "host `{name}` is listed twice"
            )));
        }
        let wg = subnet.free(&used).ok_or_else(|| {
            InitError::BadInput(format!(
                "the WireGuard subnet {subnet} has no free address left"
            ))
        })?;
        used.push(wg);
        out.push(Node {
            name: name.clone(),
            address: address.clone(),
            wg_address: wg,
        });
    }
    Ok(out)
}
