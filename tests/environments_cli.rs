//! Environments (`-e target_environment=staging`): `labctl check` accepts the example
//! inventory's staging and refuses environments that would share a namespace or a NodePort, or
//! an environment that does not exist, before any host is contacted.

use crate::common::show;

fn check(extra: &[&str]) -> std::process::Output {
    let repo = env!("CARGO_MANIFEST_DIR");
    std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(repo)
        .args(["check", "-i", "inventories/lab/hosts.yml"])
        .args(["--vault-key", "inventories/lab/EXAMPLE-ONLY.agekey.txt"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn colliding_environments_are_refused_by_check() {
    let o = check(&["-e", "target_environment=staging"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("envs.yml");
    std::fs::write(
        &f,
        "environments:\n  prod: {}\n  staging:\n    postgres_namespace: db-staging\n    postgres_node_port: 30379\n",
    )
    .unwrap();
    let o = check(&["-e", &format!("@{}", f.display())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        err.contains("environments `prod` and `staging` collide: redis_node_port and postgres_node_port are both NodePort 30379"),
        "{err}"
    );

    let o = check(&["-e", "target_environment=qa"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("unknown target_environment `qa` (environments: prod, staging)"));
}
