//! One integration test binary, linked once (as just and ripgrep do): each file below is a
//! module. End-to-end tests boot disposable hosts with `labctl testbed`; they are `#[ignore]`d,
//! and run with `LABCTL_E2E=1 cargo test -- --include-ignored` (as root; scripts/test.sh does).

mod common;

mod ansible_inventory;
mod apply_confirm;
mod charts_lock;
mod cli_local;
mod cluster_kit;
mod controlplane;
mod docs_commands;
mod e2e_ansible;
mod e2e_backups;
mod e2e_cluster;
mod e2e_engine;
mod e2e_facts;
mod e2e_import;
mod e2e_k3s;
mod e2e_reboot;
mod e2e_removenode;
mod e2e_roles;
mod e2e_secrets;
mod e2e_site;
mod e2e_ufw;
mod e2e_uninstall;
mod e2e_upgrade;
mod e2e_volumes;
mod environments_cli;
mod faults;
// The fuzz targets' entry points, with the test that replays fuzz/corpus and fuzz/regressions.
#[path = "../fuzz/src/lib.rs"]
mod fuzzing;
mod import_ansible;
mod ingress_cli;
mod init;
mod lab_check;
mod removenode_cli;
mod render_gate;
mod role_checks;
mod schema;
mod secret_formats;
mod testbed;
mod uninstall_cli;
mod vault_cli;
mod wireguard_cli;
