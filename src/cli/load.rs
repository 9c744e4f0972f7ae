//! Loading everything a run needs, in one place: vault keys, inventory, site, compiled hosts.
//! Each failure is mapped to its exit code here, before any host is contacted.

use std::path::{Path, PathBuf};

use crate::error::{CliError, Diags, Exit};
use crate::inventory::{vars, Inventory, VarLayer, VaultFail};
use crate::secret::Secret;
use crate::site::select::{self, Compiled};
use crate::site::sources::{Gathered, Sources};
use crate::site::Site;
use crate::template::Engine;
use crate::ui::Shell;
use crate::vault::password::{PasswordFail, Passwords};
use crate::vault::sops::SopsFail;
use crate::vault::Keyring;

use super::{Global, Target};

pub struct Loaded {
    /// What `compiled` was compiled from: the engine compiles it again as hosts' facts arrive.
    pub sources: Sources,
    /// Compiled before any host's facts are gathered.
    pub compiled: Compiled,
    pub hash_key: [u8; 32],
    /// Set when `hash_key` is a key for this run only (no vault identity, and no plan key could
    /// be read or created): why, for refusing to save or apply a plan file with it.
    pub ephemeral_key: Option<String>,
    pub selection: crate::plan::SavedSelection,
}

impl Loaded {
    /// Saving or applying a plan file needs a key that outlives this run.
    pub fn lasting_key(&self) -> Result<(), CliError> {
        match &self.ephemeral_key {
            None => Ok(()),
            Some(why) => Err(CliError::new(
                Exit::Vault,
                format!("cannot save or apply a plan file: {why}. Plan files are fingerprinted with a keyed hash, and a key for this run only could not check them later. Pass --vault-key (the key is derived from your age identity), or make the directory writable"),
            )),
        }
    }
}

pub fn keyring(g: &Global) -> Result<Keyring, CliError> {
    Keyring::discover(g.vault_key.as_deref()).map_err(|e| CliError::new(Exit::Vault, e.to_string()))
}

/// Opens every kind of vault the inventory may hold: age files with the keyring, ansible-vault
/// values with the passwords (read on first need), SOPS files with the keyring.
pub struct Openers<'a> {
    pub keys: &'a Keyring,
    pub passwords: &'a Passwords,
}

impl crate::inventory::Open for Openers<'_> {
    fn age(&self, p: &Path) -> Result<Secret<Vec<u8>>, VaultFail> {
        if self.keys.is_empty() {
            return Err(VaultFail::NoKey(format!(
                "no age identity found (tried: {})",
                self.keys.sources_tried().join(", ")
            )));
        }
        self.keys
            .decrypt_file(p)
            .map_err(|e| VaultFail::Error(e.to_string()))
    }

    fn ansible(&self, envelope: &str) -> Result<Secret<Vec<u8>>, VaultFail> {
        self.passwords.open(envelope).map_err(|e| match e {
            PasswordFail::None(why) => VaultFail::NoKey(why),
            PasswordFail::Error(why) => VaultFail::Error(why),
        })
    }

    fn sops(
        &self,
        file: &Path,
        doc: &mut crate::yaml::Node,
    ) -> Result<std::collections::BTreeSet<String>, VaultFail> {
        crate::vault::sops::decrypt(self.keys, file, doc).map_err(|e| match e {
            SopsFail::NoKey(why) => VaultFail::NoKey(why),
            SopsFail::Error(why) => VaultFail::Error(why),
        })
    }
}

pub fn passwords(g: &Global) -> Passwords {
    Passwords::discover(&g.vault_password_files)
}

pub fn inventory(
    sh: &Shell,
    path: &Path,
    keys: &Keyring,
    passwords: &Passwords,
) -> Result<Inventory, CliError> {
    let open = Openers { keys, passwords };
    Inventory::load(path, &open).map_err(|d| {
        let vault = d.0.iter().any(|d| d.vault);
        report(sh, &d);
        CliError::Reported(if vault { Exit::Vault } else { Exit::BadInput })
    })
}

/// Every vault that stayed closed, grouped by reason: each file, or file:line of an
/// ansible-vault value.
pub fn unopened_message(unopened: &[(crate::error::Loc, String)]) -> String {
    let mut by_why: Vec<(&str, Vec<String>)> = Vec::new();
    for (at, why) in unopened {
        let at = if at.line == 0 {
            at.file.display().to_string()
        } else {
            format!("{}:{}", at.file.display(), at.line)
        };
        match by_why.iter_mut().find(|(w, _)| *w == why.as_str()) {
            Some((_, v)) => v.push(at),
            None => by_why.push((why.as_str(), vec![at])),
        }
    }
    by_why
        .iter()
        .map(|(why, at)| format!("{} vault(s): {why}\n    {}", at.len(), at.join("\n    ")))
        .collect::<Vec<_>>()
        .join("\n  ")
}

pub fn report(sh: &Shell, d: &Diags) {
    for x in &d.0 {
        sh.err(&format!("{}\n", x.render(&sh.paint("1;31", "error"))));
    }
    if d.0.len() > 1 {
        sh.err(&format!("{} problems found\n", d.0.len()));
    }
}

/// Load and compile. `check_mode`: unopened vaults become placeholders instead of a stop.
pub fn load(sh: &Shell, g: &Global, t: &Target, check_mode: bool) -> Result<Loaded, CliError> {
    let keys = keyring(g)?;
    let inventory = inventory(sh, &t.inventory, &keys, &passwords(g))?;
    if !inventory.unopened_vaults.is_empty() {
        let why = unopened_message(&inventory.unopened_vaults);
        if check_mode {
            sh.warn(&format!(
                "could not open {why}\n  secrets are checked as placeholders"
            ));
        } else {
            return Err(CliError::new(Exit::Vault, format!("cannot open {why}\n  = help: pass --vault-key FILE or set LABCTL_AGE_KEY_FILE (age vaults, SOPS files); pass --vault-password-file FILE or set ANSIBLE_VAULT_PASSWORD_FILE (ansible-vault)")));
        }
    }
    let site = Site::load(&t.site).map_err(|d| {
        report(sh, &d);
        CliError::Reported(Exit::BadInput)
    })?;
    let mut extra = VarLayer::default();
    for e in &t.extra_vars {
        match vars::parse_extra_var(e) {
            Ok(l) => extra.overlay(&l),
            Err(m) => return Err(CliError::new(Exit::BadInput, m.to_string())),
        }
    }
    let engine = Engine::new(&site.root);
    // lookup('password') keeps what it generates in a vault beside the inventory.
    let inv_dir = t.inventory.parent().unwrap_or(Path::new("."));
    let passwords = std::sync::Arc::new(
        crate::template::passwords::PasswordStore::open(inv_dir, &keys, check_mode)
            .map_err(|e| CliError::new(Exit::Vault, e.to_string()))?,
    );
    engine.set_passwords(passwords.clone());
    let vault_placeholders = check_mode && !inventory.unopened_vaults.is_empty();
    let mut sources = Sources::new(site, inventory, extra, engine, t.select.clone());
    sources.vault_placeholders = vault_placeholders;
    let mut compiled = select::compile(&sources, &Gathered::default()).map_err(|d| {
        report(sh, &d);
        CliError::Reported(Exit::BadInput)
    })?;
    let env_problems = environment_problems(&sources, &compiled);
    if !env_problems.is_empty() {
        for p in &env_problems {
            sh.error(&format!("{}: {p}", sources.inventory.path.display()));
        }
        return Err(CliError::Reported(Exit::BadInput));
    }
    compiled.secret_strings.extend(passwords.secrets());
    if let Some(p) = passwords
        .save()
        .map_err(|e| CliError::new(Exit::Vault, e.to_string()))?
    {
        sh.status("Saved", &format!("new password(s) in {}", p.display()));
    }
    sh.set_secrets(compiled.secret_strings.clone());
    let (hash_key, ephemeral_key) = hash_key(&keys);
    let extra_hash = if t.extra_vars.is_empty() {
        None
    } else {
        Some(crate::digest::keyed_hash(
            &hash_key,
            t.extra_vars.join("\0").as_bytes(),
        ))
    };
    let selection = crate::plan::SavedSelection {
        select: t.select.clone(),
        extra_vars: extra_hash,
    };
    Ok(Loaded {
        sources,
        compiled,
        hash_key,
        ephemeral_key,
        selection,
    })
}

/// Load with `--limit HOST`, for the commands about one host: the load, and the index of the
/// host's work in it. A host in no play is bad input.
pub fn load_host(
    sh: &Shell,
    g: &Global,
    t: &Target,
    host: &str,
) -> Result<(Loaded, usize), CliError> {
    let mut target = t.clone();
    target.select.limit = Some(host.to_string());
    let l = load(sh, g, &target, false)?;
    let i = l
        .compiled
        .hosts
        .iter()
        .position(|h| h.host == host)
        .ok_or_else(|| {
            CliError::new(
                Exit::BadInput,
                format!("host `{host}` is in no play of {}", t.site.display()),
            )
        })?;
    Ok((l, i))
}

/// The key for keyed hashes in plans: derived from the vault identity when there is one (so a
/// team sharing the key can apply each other's plans), else a local random key kept in the config
/// dir. If neither is possible, a random key for this run only, with the reason: never a fixed
/// key (an all-zero key is public, and a keyed hash under it hides nothing).
fn hash_key(keys: &Keyring) -> ([u8; 32], Option<String>) {
    if let Some(k) = keys.derive_key("labctl plan fingerprint v1") {
        return (k, None);
    }
    match local_key(config_dir()) {
        Ok(k) => (k, None),
        Err(why) => {
            tracing::info!("plan key: {why}; using a key for this run only");
            (rand::random(), Some(why))
        }
    }
}

fn local_key(dir: Option<PathBuf>) -> Result<[u8; 32], String> {
    let dir = dir.ok_or(
        "no vault identity, and neither $XDG_CONFIG_HOME nor $HOME is set for the plan key",
    )?;
    let p = dir.join("plan.key");
    if let Ok(b) = std::fs::read(&p) {
        return <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
            format!(
                "{} is not a 32-byte plan key (delete it to make a new one)",
                p.display()
            )
        });
    }
    let k: [u8; 32] = rand::random();
    std::fs::create_dir_all(&dir)
        .and_then(|_| crate::fsutil::write_atomic(&p, &k, 0o600, false))
        .map_err(|e| {
            format!(
                "no vault identity, and the plan key {} cannot be created: {e}",
                p.display()
            )
        })?;
    Ok(k)
}

pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("labctl"))
}

/// `environments` that would collide, or a target that does not exist: checked per host on the
/// vars without any environment applied (role defaults, inventory, `-e`), reported once each.
fn environment_problems(src: &Sources, compiled: &select::Compiled) -> Vec<String> {
    let (site, inventory, extra) = (&src.site, &src.inventory, &src.extra);
    let mut out: Vec<String> = Vec::new();
    for hw in &compiled.hosts {
        let mut base = VarLayer::default();
        for r in &hw.roles {
            if let Some(role) = site.roles.get(&r.role) {
                base.overlay(&role.defaults);
            }
        }
        base.overlay(&crate::site::vars::inventory(inventory, &hw.host));
        base.overlay(extra);
        for p in crate::site::environments::problems(&base.values) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_key_is_kept_and_never_falls_back_to_a_fixed_one() {
        let d = tempfile::tempdir().unwrap();
        let k1 = local_key(Some(d.path().join("labctl"))).unwrap();
        assert_eq!(local_key(Some(d.path().join("labctl"))).unwrap(), k1);
        assert_ne!(k1, [0u8; 32]);
        // A config dir that cannot be created (its parent is a file): an error saying why.
        std::fs::write(d.path().join("file"), "").unwrap();
        let e = local_key(Some(d.path().join("file/labctl"))).unwrap_err();
        assert!(e.contains("cannot be created"), "{e}");
        assert!(local_key(None).unwrap_err().contains("HOME"));
        std::fs::write(d.path().join("labctl/plan.key"), "short").unwrap();
        assert!(local_key(Some(d.path().join("labctl")))
            .unwrap_err()
            .contains("not a 32-byte plan key"));
    }
}
