//! labctl: plan and apply a small k3s lab over SSH.
//!
//! main stays thin: parse the command line, set up output, run, map the outcome to an exit code.

mod apply;
mod cli;
mod cluster;
mod digest;
mod error;
mod facts;
mod fsutil;
#[cfg(test)]
mod fuzzing;
mod import;
mod init;
mod inventory;
mod plan;
mod prompt;
mod resources;
#[cfg(test)]
mod role_checks;
mod schema;
mod secret;
mod sh;
mod site;
mod template;
mod testbed;
mod transport;
mod ui;
mod vault;
mod yaml;

fn main() {
    std::process::exit(cli::main());
}
