//! charts/ against its lock file: every kept file is listed in charts/charts.lock.yaml with its
//! sha256, upstream tag and full commit and an existing license file; every entry's file exists;
//! a packaged chart is the name and version its entry says, and its subcharts (helm package keeps
//! them unpacked inside the parent) are exactly the ones listed. Then the same check on a
//! tampered copy, to show each kind of drift is caught.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lock {
    pub(crate) charts: Vec<Entry>,
    crds: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub(crate) file: Option<String>,
    dir: Option<String>,
    name: String,
    version: String,
    sha256: Option<String>,
    git: String,
    tag: String,
    commit: String,
    path: Option<String>,
    license: String,
    license_file: String,
    pub(crate) helm_repository: Option<String>,
    #[allow(dead_code)] // free text, for people
    note: Option<String>,
    #[serde(default)]
    subcharts: Vec<Entry>,
}

/// charts/charts.lock.yaml, parsed (the test below says what is wrong with it, if anything).
pub(crate) fn lock() -> Lock {
    let path = charts_dir().join("charts.lock.yaml");
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn charts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts")
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every regular file under `dir`, relative to it.
fn files(dir: &Path, rel: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files(dir, &r, out);
        } else {
            out.insert(r.to_string_lossy().into_owned());
        }
    }
}

/// The paths inside `tgz` (empty when tar cannot read it: the sha256 check names that file).
fn tar_list(tgz: &Path) -> String {
    let o = Command::new("tar").arg("-tzf").arg(tgz).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// name and version from the Chart.yaml at `inner` inside `tgz`.
fn chart_meta(tgz: &Path, inner: &str) -> Result<(String, String), String> {
    let o = Command::new("tar")
        .arg("-xzOf")
        .arg(tgz)
        .arg(inner)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(format!("no {inner} inside"));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    #[derive(Deserialize)]
    struct Meta {
        name: String,
        version: String,
    }
    let m: Meta = serde_saphyr::from_str(&text).map_err(|e| format!("{inner}: {e}"))?;
    Ok((m.name, m.version))
}

fn check_provenance(e: &Entry, what: &str, dir: &Path, problems: &mut Vec<String>) {
    let hex40 = e.commit.len() == 40 && e.commit.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex40 {
        problems.push(format!(
            "{what}: commit {:?} is not a full git sha",
            e.commit
        ));
    }
    if e.tag.is_empty() || e.tag == "FILL-IN" {
        problems.push(format!("{what}: tag {:?} is not filled in", e.tag));
    }
    if !e.git.starts_with("https://") {
        problems.push(format!("{what}: git {:?} is not an https URL", e.git));
    }
    if e.license.is_empty() {
        problems.push(format!("{what}: no license"));
    }
    if !dir.join(&e.license_file).is_file() {
        problems.push(format!(
            "{what}: license file {} is missing",
            e.license_file
        ));
    }
}

/// What is wrong with the charts folder `dir` (empty: nothing).
fn problems(dir: &Path) -> Vec<String> {
    let lock_path = dir.join("charts.lock.yaml");
    let text = std::fs::read_to_string(&lock_path).unwrap();
    let lock: Lock = match serde_saphyr::from_str(&text) {
        Ok(l) => l,
        Err(e) => return vec![format!("{}: {e}", lock_path.display())],
    };
    let mut problems = Vec::new();
    let mut listed = BTreeSet::from(["charts.lock.yaml".to_string(), "README.md".to_string()]);
    for e in lock.charts.iter().chain(&lock.crds) {
        let Some(file) = &e.file else {
            problems.push(format!("entry {}: no file", e.name));
            continue;
        };
        let what = format!("charts/{file}");
        listed.insert(file.clone());
        listed.insert(e.license_file.clone());
        check_provenance(e, &what, dir, &mut problems);
        let path = dir.join(file);
        if !path.is_file() {
            problems.push(format!("{what}: listed in charts.lock.yaml but missing"));
            continue;
        }
        match &e.sha256 {
            Some(want) if *want == sha256(&path) => {}
            Some(want) => problems.push(format!(
                "{what}: sha256 is {}, charts.lock.yaml says {want}",
                sha256(&path)
            )),
            None => problems.push(format!("{what}: no sha256")),
        }
        if !file.ends_with(".tgz") {
            continue;
        }
        // scripts/refresh-charts.sh pulls a new version from here.
        if !e
            .helm_repository
            .as_ref()
            .is_some_and(|r| r.starts_with("https://"))
        {
            problems.push(format!(
                "{what}: no https helm_repository to refresh it from"
            ));
        }
        match chart_meta(&path, &format!("{}/Chart.yaml", e.name)) {
            Ok((n, v)) if n == e.name && v == e.version => {}
            Ok((n, v)) => problems.push(format!(
                "{what}: is {n} {v}, charts.lock.yaml says {} {}",
                e.name, e.version
            )),
            Err(err) => problems.push(format!("{what}: {err}")),
        }
        // Packaged subcharts: NAME/charts/SUB/Chart.yaml, one level down (not their own subcharts).
        let inside: BTreeSet<String> = tar_list(&path)
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&format!("{}/charts/", e.name))?;
                let sub = rest.strip_suffix("/Chart.yaml")?;
                (!sub.contains('/')).then(|| format!("{}/charts/{sub}", e.name))
            })
            .collect();
        let mut subs = BTreeSet::new();
        for s in &e.subcharts {
            let Some(d) = &s.dir else {
                problems.push(format!("{what}: subchart {} has no dir", s.name));
                continue;
            };
            subs.insert(d.clone());
            listed.insert(s.license_file.clone());
            let swhat = format!("{what}: subchart {d}");
            check_provenance(s, &swhat, dir, &mut problems);
            match chart_meta(&path, &format!("{d}/Chart.yaml")) {
                Ok((n, v)) if n == s.name && v == s.version => {}
                Ok((n, v)) => problems.push(format!(
                    "{swhat}: is {n} {v}, charts.lock.yaml says {} {}",
                    s.name, s.version
                )),
                Err(err) => problems.push(format!("{swhat}: {err}")),
            }
        }
        // An in-tree subchart (kube-prometheus-stack's crds) is part of the parent's own source.
        for d in inside.difference(&subs) {
            let in_tree = e.path.as_ref().is_some_and(|_| d.ends_with("/charts/crds"));
            if !in_tree {
                problems.push(format!(
                    "{what}: subchart {d} is not listed in charts.lock.yaml"
                ));
            }
        }
    }
    let mut present = BTreeSet::new();
    files(dir, Path::new(""), &mut present);
    for f in present.difference(&listed) {
        problems.push(format!("charts/{f}: not listed in charts.lock.yaml"));
    }
    problems
}

#[test]
fn every_kept_chart_is_locked_with_its_sha256_and_license() {
    let p = problems(&charts_dir());
    assert!(
        p.is_empty(),
        "charts/ does not match charts.lock.yaml:\n{}",
        p.join("\n")
    );
}

#[test]
fn drift_from_the_lock_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut all = BTreeSet::new();
    files(&charts_dir(), Path::new(""), &mut all);
    for f in &all {
        std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
        std::fs::copy(charts_dir().join(f), dir.join(f)).unwrap();
    }
    assert!(problems(dir).is_empty());

    // A changed chart, an unlisted file, a lost license, a listed file gone, an unfilled commit.
    let mut bytes = std::fs::read(dir.join("argo-cd-10.1.1.tgz")).unwrap();
    bytes.push(0);
    std::fs::write(dir.join("argo-cd-10.1.1.tgz"), bytes).unwrap();
    std::fs::write(dir.join("stray-1.0.0.tgz"), "x").unwrap();
    std::fs::remove_file(dir.join("licenses/k3s-io-helm-controller.LICENSE")).unwrap();
    std::fs::remove_file(dir.join("prometheus-redis-exporter-6.29.0.tgz")).unwrap();
    let lock = std::fs::read_to_string(dir.join("charts.lock.yaml")).unwrap();
    let commit = "commit: d1b5ad60cee2d9432a9cc05627b42a8d8dc7bbae";
    assert!(lock.contains(commit), "cloudnative-pg's commit moved");
    std::fs::write(
        dir.join("charts.lock.yaml"),
        lock.replace(commit, "commit: FILL-IN"),
    )
    .unwrap();

    let p = problems(dir).join("\n");
    for want in [
        "charts/argo-cd-10.1.1.tgz: sha256 is ",
        "charts/stray-1.0.0.tgz: not listed in charts.lock.yaml",
        "charts/crds/helm-controller-crds-v0.17.7.yaml: license file licenses/k3s-io-helm-controller.LICENSE is missing",
        "charts/prometheus-redis-exporter-6.29.0.tgz: listed in charts.lock.yaml but missing",
        "charts/cloudnative-pg-0.29.0.tgz: commit \"FILL-IN\" is not a full git sha",
    ] {
        assert!(p.contains(want), "missing {want:?} in:\n{p}");
    }
}
