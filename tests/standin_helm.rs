//! The stand-in helm (tests/standins/helm) renders a release with the real helm and the kept
//! chart before recording it: values the chart refuses fail with helm's own error and leave no
//! release; a render folder without the chart fails loudly. Needs the real helm (`LABCTL_HELM`,
//! from scripts/setup.sh); skips, saying so, without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{show, skip};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn helm(state: &Path, render: &Path, args: &[&str], values: &str) -> Output {
    let mut child = Command::new(repo().join("tests/standins/helm"))
        .args(args)
        .env("STANDIN_K8S_DIR", state)
        .env("STANDIN_RENDER_DIR", render)
        .env("TMPDIR", state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(values.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_standin_helm_renders_with_the_real_helm_before_recording() {
    let Some(real) = std::env::var_os("LABCTL_HELM").filter(|p| Path::new(p).is_file()) else {
        skip("the real helm (LABCTL_HELM, set by scripts/setup.sh) is not here");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (state, render) = (tmp.path().join("k8s"), tmp.path().join("render"));
    std::fs::create_dir_all(render.join("charts")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(real, render.join("helm")).unwrap();
    let chart = "prometheus-postgres-exporter-8.2.0.tgz";
    std::fs::copy(
        repo().join("charts").join(chart),
        render.join("charts").join(chart),
    )
    .unwrap();
    let kc = tmp.path().join("kubeconfig");
    std::fs::write(&kc, "").unwrap();
    let kc = kc.to_str().unwrap();
    let ok = helm(
        &state,
        &render,
        &["repo", "add", "pc", "https://example.invalid"],
        "",
    );
    assert!(ok.status.success(), "{}", show(&ok));
    let install = |chart: &str, version: &str, values: &str| {
        helm(
            &state,
            &render,
            &[
                "upgrade",
                "--install",
                "pg",
                chart,
                "--version",
                version,
                "-n",
                "db",
                "--create-namespace",
                "--kubeconfig",
                kc,
                "-f",
                "-",
            ],
            values,
        )
    };
    let release = state.join("releases/db/pg/meta");

    // The chart requires a password: helm's own error, and nothing recorded.
    let o = install("pc/prometheus-postgres-exporter", "8.2.0", "{}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("config.datasource.password is required"),
        "{}",
        show(&o)
    );
    assert!(!release.exists());

    // With one it renders, and is recorded; the values never stay in a temp file.
    let secret = "s3cr3t-standin-render";
    let values = format!("{{\"config\":{{\"datasource\":{{\"password\":\"{secret}\"}}}}}}");
    let o = install("pc/prometheus-postgres-exporter", "8.2.0", &values);
    assert!(o.status.success(), "{}", show(&o));
    assert!(std::fs::read_to_string(&release)
        .unwrap()
        .contains("chart=prometheus-postgres-exporter-8.2.0"));
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // No kept chart for the version asked: a loud error, not a silent skip.
    let o = install("pc/prometheus-postgres-exporter", "9.9.9", &values);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("prometheus-postgres-exporter-9.9.9.tgz is missing"),
        "{}",
        show(&o)
    );
}
