//! Asking hosts for facts: which queries a host's plan reads, the first probe that also gathers
//! the facts templates name (and the compile again with them), and the one probe script run.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::conn::Conns;
use super::Opts;
use crate::error::Diag;
use crate::facts::{self, probe, Fact, FactQuery, Facts};
use crate::plan::HostError;
use crate::site::select::{self, Compiled, Item};
use crate::site::sources::{Gathered, Sources};
use crate::transport::Transport;

/// The first probe of the hosts `idxs`, in parallel over their run-long connections: their
/// facts for templates and every query the current compile knows (an item that awaits facts
/// asks only what names none). Adds their facts to `gathered` and returns the site compiled
/// again with all facts gathered so far, and each host's answers, or why it has none.
pub(super) async fn first_probes(
    compiled: Arc<Compiled>,
    idxs: &[usize],
    play: Option<usize>,
    conns: &Conns,
    opts: &Opts,
    (sources, gathered): (&Sources, &mut Gathered),
) -> (
    Arc<Compiled>,
    std::collections::HashMap<usize, Result<Facts, HostError>>,
) {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.forks.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for &i in idxs {
        let (c, k, o, sem) = (compiled.clone(), conns.clone(), opts.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let work = &c.hosts[i];
            let r = async {
                let t = k.get(i, work, &o).await?;
                let items: Vec<&Item> = work.roles_in(play).flat_map(|r| r.items.iter()).collect();
                let clock = o.time(super::timings::Split::Via(&t));
                let r = gather(&t, &first_queries(&items), &o).await;
                o.lap(clock, Some(&work.host), || {
                    "probe (and facts for templates)".into()
                });
                r
            }
            .await;
            (i, r)
        });
    }
    let mut answers = std::collections::HashMap::new();
    while let Some(j) = set.join_next().await {
        if let Ok((i, r)) = j {
            answers.insert(i, r);
        }
    }
    for &i in idxs {
        answers.entry(i).or_insert_with(|| {
            Err(HostError::Internal(
                "internal error: the probe task panicked".into(),
            ))
        });
    }
    for (&i, r) in answers.iter_mut() {
        if let Ok(f) = r {
            match f.get(&facts::host::HostQuery) {
                Ok(m) => gathered.add(&compiled.hosts[i].host, m),
                Err(e) => *r = Err(HostError::Probe(format!("facts for templates: {e}"))),
            }
        }
    }
    let clock = opts.time(super::timings::Split::Cpu);
    let recompiled = select::compile(sources, gathered);
    opts.lap(clock, None, || "compile with facts".into());
    match recompiled {
        Ok(c) if same_hosts(&c, &compiled) => (Arc::new(c), answers),
        Ok(_) => {
            let e = "internal error: compiling with facts selected other hosts".to_string();
            fail_all(&compiled, &mut answers, |_| HostError::Internal(e.clone()));
            (compiled, answers)
        }
        Err(report) => {
            fail_all(&compiled, &mut answers, |h| {
                HostError::Plan(errors_of(&report.0, h))
            });
            (compiled, answers)
        }
    }
}

fn same_hosts(a: &Compiled, b: &Compiled) -> bool {
    a.hosts.len() == b.hosts.len() && a.hosts.iter().zip(&b.hosts).all(|(x, y)| x.host == y.host)
}

fn fail_all(
    compiled: &Compiled,
    answers: &mut std::collections::HashMap<usize, Result<Facts, HostError>>,
    why: impl Fn(&str) -> HostError,
) {
    for (&i, r) in answers.iter_mut() {
        if r.is_ok() {
            *r = Err(why(&compiled.hosts[i].host));
        }
    }
}

/// The problems of a compile report about `host`, rendered; a host the report does not name was
/// not planned because the others' errors stopped the compile.
fn errors_of(report: &[Diag], host: &str) -> String {
    let render = |ds: Vec<&Diag>| -> String {
        ds.iter()
            .map(|d| d.render("error"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mine: Vec<&Diag> = report
        .iter()
        .filter(|d| d.host.as_deref() == Some(host))
        .collect();
    if !mine.is_empty() {
        return render(mine);
    }
    if report.iter().all(|d| d.host.is_none()) {
        return render(report.iter().collect());
    }
    "not planned: the site did not compile with the gathered facts (see the other hosts' errors)"
        .into()
}

/// The first probe's queries: the host's plan queries, and its facts.
pub(crate) fn first_queries(items: &[&Item]) -> Vec<FactQuery> {
    host_queries(items)
        .into_iter()
        .chain([facts::host::HostQuery.query()])
        .collect()
}

/// The queries in `want` that `have` holds no answer for: what a second, small probe must ask
/// after compiling with facts (usually none: a download's url and checksum change, its path
/// does not).
pub(crate) fn missing(have: &Facts, want: &[FactQuery]) -> Vec<FactQuery> {
    want.iter()
        .filter(|q| !have.raw.contains_key(&q.key))
        .cloned()
        .collect()
}

/// `have`, plus the answers to the queries in `want` it lacks, asked in one more probe (none
/// when it lacks nothing).
pub(super) async fn gather_missing(
    t: &Transport,
    mut have: Facts,
    want: &[FactQuery],
    opts: &Opts,
) -> Result<Facts, HostError> {
    let more = missing(&have, want);
    if !more.is_empty() {
        have.raw.extend(gather(t, &more, opts).await?.raw);
    }
    Ok(have)
}

/// Every fact a host's plan reads: the OS, the handler journal, a pending reboot, and each
/// item's.
pub(crate) fn host_queries(items: &[&Item]) -> Vec<FactQuery> {
    [
        facts::os::OsQuery.query(),
        facts::journal::JournalQuery.query(),
        facts::reboot::RebootQuery.query(),
    ]
    .into_iter()
    .chain(items.iter().flat_map(|i| i.inst.facts()))
    .collect()
}

/// Connect and probe one host for every fact its plan reads, and its facts for templates: the
/// round trip `plan` and `apply` make, for `labctl facts` to print. When templates name facts,
/// the host's work is compiled again with its facts, and what that adds is asked over the same
/// connection. Returns the host's work as the diff would see it, the answers and its
/// `ansible_facts`.
pub async fn probe_host(
    sources: &Sources,
    compiled: Compiled,
    i: usize,
    opts: &Opts,
) -> Result<(Compiled, Facts, Map<String, Value>), HostError> {
    let t = Transport::connect(
        &compiled.hosts[i].conn,
        opts.host_keys,
        opts.connect_timeout,
    )
    .await?;
    let r = async {
        let items: Vec<&Item> = compiled.hosts[i].items().collect();
        let f = gather(&t, &first_queries(&items), opts).await?;
        let host = f
            .get(&facts::host::HostQuery)
            .map_err(|e| HostError::Probe(format!("facts for templates: {e}")))?;
        let compiled = if !sources.facts_used {
            compiled
        } else {
            let mut gathered = Gathered::default();
            gathered.add(&compiled.hosts[i].host, host.clone());
            let c = select::compile(sources, &gathered)
                .map_err(|e| HostError::Plan(errors_of(&e.0, &compiled.hosts[i].host)))?;
            if !same_hosts(&c, &compiled) {
                return Err(HostError::Internal(
                    "internal error: compiling with facts selected other hosts".into(),
                ));
            }
            c
        };
        let items: Vec<&Item> = compiled.hosts[i].items().collect();
        let f = gather_missing(&t, f, &host_queries(&items), opts).await?;
        Ok((compiled, f, host))
    }
    .await;
    t.close().await;
    r
}

pub(super) async fn gather(
    t: &Transport,
    queries: &[FactQuery],
    opts: &Opts,
) -> Result<Facts, HostError> {
    let p = probe::build(queries);
    let started = std::time::Instant::now();
    let out = t.run(&p.script, None, opts.step_timeout).await?;
    tracing::debug!(
        host = t.dest(),
        facts = p.keys().len(),
        bytes = out.stdout.len(),
        ms = started.elapsed().as_millis() as u64,
        "probe"
    );
    if !out.stderr.is_empty() {
        tracing::debug!(host = t.dest(), stderr = %out.stderr_tail(), "probe stderr");
    }
    let stdout = out.stdout_str();
    p.parse(&stdout).map_err(|source| HostError::ProbeOutput {
        source,
        status: out.status,
        stderr: out.stderr_tail(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::testutil::item;
    use serde_json::json;

    fn keys(qs: &[FactQuery]) -> Vec<String> {
        qs.iter().map(|q| q.key.clone()).collect()
    }

    #[test]
    fn a_plan_reads_the_os_the_journal_a_pending_reboot_and_each_items_facts_in_order() {
        let a = item("file", json!({"path": "/etc/a", "content": "a\n"}));
        let b = item("file", json!({"path": "/etc/b", "content": "b\n"}));
        let got = keys(&host_queries(&[&a, &b]));
        let mut want = vec![
            facts::os::KEY.to_string(),
            facts::journal::KEY.to_string(),
            facts::reboot::KEY.to_string(),
        ];
        want.extend(keys(&a.inst.facts()));
        want.extend(keys(&b.inst.facts()));
        assert_eq!(got, want);
    }

    /// The round trip of a host whose templates name facts: the first probe asks its facts and
    /// every query that names none; compiled again with them, only a query whose key depended
    /// on a fact is asked in a second probe.
    #[test]
    fn first_probe_then_compile_again_asks_only_what_changed() {
        let (_d, src) = crate::site::sources::testutil::project(
            "all:\n  hosts:\n    h1: {ansible_host: 10.0.0.1}\n",
            "- hosts: all\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/arch, content: \"{{ ansible_architecture }}\\n\"}\n  - file: {path: \"/etc/by-host/{{ ansible_facts.hostname }}\", content: x}\n  - file: {path: /etc/plain, content: y}\n",
            &[],
        );
        assert!(src.facts_used);
        let before = select::compile(&src, &Gathered::default()).unwrap();
        let items: Vec<&Item> = before.hosts[0].items().collect();
        let first = keys(&first_queries(&items));
        assert!(first.contains(&facts::host::KEY.to_string()), "{first:?}");
        assert!(first.contains(&facts::reboot::KEY.to_string()), "{first:?}");
        assert!(first.iter().any(|k| k.ends_with("/etc/arch")), "{first:?}");
        assert!(first.iter().any(|k| k.ends_with("/etc/plain")), "{first:?}");
        assert!(!first.iter().any(|k| k.contains("<fact:")), "{first:?}");

        let mut gathered = Gathered::default();
        let facts = "id=debian\nversion_id=12\narch=aarch64\nnodename=node-7\n";
        gathered.add("h1", facts::host::parse(facts).unwrap());
        let after = select::compile(&src, &gathered).unwrap();
        let items: Vec<&Item> = after.hosts[0].items().collect();
        assert_eq!(items[0].rendered["content"], "aarch64\n");
        assert_eq!(items[1].rendered["path"], "/etc/by-host/node-7");
        assert!(items.iter().all(|i| i.inst.awaits().is_none()));
        let mut have = Facts::default();
        for k in first {
            have.insert(&k, "", 0);
        }
        let more = keys(&missing(&have, &host_queries(&items)));
        assert_eq!(more.len(), 1, "{more:?}");
        assert!(more[0].ends_with("/etc/by-host/node-7"), "{more:?}");
    }

    #[test]
    fn only_queries_without_an_answer_are_asked_again() {
        let a = item("file", json!({"path": "/etc/a", "content": "a\n"}));
        let b = item("file", json!({"path": "/etc/b", "content": "b\n"}));
        let mut have = Facts::default();
        for q in a.inst.facts() {
            have.insert(&q.key, "", 0);
        }
        let want = host_queries(&[&a, &b]);
        have.insert(facts::os::KEY, "", 0);
        assert_eq!(
            keys(&missing(&have, &want)),
            [
                vec![
                    facts::journal::KEY.to_string(),
                    facts::reboot::KEY.to_string()
                ],
                keys(&b.inst.facts())
            ]
            .concat()
        );
        for q in &want {
            have.insert(&q.key, "", 0);
        }
        assert!(missing(&have, &want).is_empty());
    }

    #[test]
    fn a_compile_report_is_split_by_the_host_each_problem_is_about() {
        let about = |h: &str, m: &str| Diag::new(format!("host `{h}`: {m}")).about(h);
        let report = vec![
            about("h1", "variable `x`: undefined value"),
            about("h2", "bad"),
            about("h1", "worse"),
        ];
        assert_eq!(
            errors_of(&report, "h1"),
            "error: host `h1`: variable `x`: undefined value\nerror: host `h1`: worse"
        );
        // Named nowhere while others are: stopped by their errors.
        assert!(errors_of(&report, "h3").starts_with("not planned: the site did not compile"));
        // A report about no host is every host's.
        let site_wide = vec![Diag::new("site.yml: bad")];
        assert_eq!(errors_of(&site_wide, "h1"), "error: site.yml: bad");
        // The field decides, not the text: a problem that is not h1's but quotes it is not h1's.
        let quoting = vec![
            about("h2", "bad"),
            Diag::new("handlers cannot use `loop` or `when` (host `h1` was being compiled)"),
        ];
        assert!(errors_of(&quoting, "h1").starts_with("not planned"));
    }
}
