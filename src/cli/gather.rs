//! Facts for templates (`ansible_facts`, `ansible_architecture`, …): gathered from the hosts
//! before compiling, and only when something in the site or inventory names one.

use std::path::Path;
use std::time::Duration;

use crate::error::{CliError, Exit};
use crate::facts::{host, probe, Fact};
use crate::inventory::{pattern, Inventory, VarLayer};
use crate::site::Site;
use crate::template::Engine;
use crate::transport::{HostKeyPolicy, Transport};

use super::Conn;

/// True when a role file, site.yml, an inventory var or an `-e` var names a gathered fact.
pub fn facts_used(site: &Site, inv: &Inventory, extra: &VarLayer) -> bool {
    let vars_text = |l: &VarLayer| serde_json::to_string(&l.values).unwrap_or_default();
    inv.groups
        .values()
        .any(|g| host::named_in(&vars_text(&g.vars)))
        || inv
            .hosts
            .values()
            .any(|h| host::named_in(&vars_text(&h.vars)))
        || host::named_in(&vars_text(extra))
        || files_under(&site.root.join("roles"))
            .into_iter()
            .chain([site.root.join("site.yml")])
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| host::named_in(&t)))
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `check` contacts no host: every host's facts render as `<fact:NAME>`.
pub fn placeholders(inv: &mut Inventory) {
    let p = host::placeholders();
    for h in inv.hosts.keys() {
        inv.facts.insert(h.clone(), p.clone());
    }
}

/// One probe per selected host (in parallel); hosts outside `--limit` get placeholders.
pub fn gather(
    inv: &mut Inventory,
    extra: &VarLayer,
    limit: Option<&str>,
    c: &Conn,
) -> Result<(), CliError> {
    let selected = match limit {
        Some(l) => pattern::select(inv, l)
            .map_err(|e| CliError::new(Exit::BadInput, format!("--limit: {e}")))?,
        None => inv.hosts.keys().cloned().collect(),
    };
    placeholders(inv);
    let engine = Engine::new(Path::new("."));
    // Connection vars must not need facts themselves: resolve them with placeholders in place.
    let hostvars = crate::site::select::inventory_hostvars(inv, extra, &engine, false)
        .map_err(|d| CliError::new(Exit::BadInput, d.to_string()))?;
    let root = inv.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut conns = Vec::new();
    for h in &selected {
        let conn = Inventory::conn(h, &hostvars[h].values, &root)
            .map_err(|e| CliError::new(Exit::BadInput, e))?;
        conns.push((h.clone(), conn));
    }
    let policy = if c.accept_new_host_keys {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    };
    let (connect, step) = (
        Duration::from_secs(c.connect_timeout),
        Duration::from_secs(c.step_timeout),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(c.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (h, conn) in conns {
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await.expect("semaphore open");
                let r: Result<_, String> = async {
                    let t = Transport::connect(&conn, policy, connect)
                        .await
                        .map_err(|e| e.to_string())?;
                    let p = probe::build(&[host::HostQuery.query()]);
                    let out = t
                        .run(&p.script, None, step)
                        .await
                        .map_err(|e| e.to_string());
                    t.close().await;
                    let out = out?;
                    let facts = p.parse(&out.stdout_str()).map_err(|e| e.to_string())?;
                    facts.get(&host::HostQuery).map_err(|e| e.to_string())
                }
                .await;
                (h, r)
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            out.push(r);
        }
        out
    });
    let mut failed = Vec::new();
    for (h, r) in results {
        match r {
            Ok(f) => {
                inv.facts.insert(h, f);
            }
            Err(e) => failed.push(format!("{h}: {e}")),
        }
    }
    if !failed.is_empty() {
        failed.sort();
        return Err(CliError::new(
            Exit::Unreachable,
            format!(
                "cannot gather facts (a template uses them):\n  {}",
                failed.join("\n  ")
            ),
        ));
    }
    Ok(())
}
