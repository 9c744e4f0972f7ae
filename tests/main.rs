//! One integration test binary, linked once (as just and ripgrep do): each file below is a
//! module. End-to-end modules boot disposable hosts with `labctl testbed` and skip, saying so,
//! unless `LABCTL_E2E=1`.

mod common;

mod ansible_inventory;
mod apply_confirm;
mod cli_local;
mod controlplane;
mod e2e_ansible;
mod e2e_backups;
mod e2e_cluster;
mod e2e_engine;
mod e2e_facts;
mod e2e_k3s;
mod e2e_roles;
mod e2e_secrets;
mod e2e_site;
mod e2e_ufw;
mod environments_cli;
mod faults;
mod ingress_cli;
mod init;
mod render_gate;
mod schema;
mod testbed;
mod vault_cli;
mod wireguard_cli;
