//! labctl: plan and apply a small k3s lab over SSH.
//!
//! The binary (src/main.rs) only calls [`run`]. Everything else lives here so that tests/ and
//! fuzz/ can use the same code; the modules stay private, so the compiler still reports what
//! nothing uses.

mod apply;
mod cli;
mod cluster;
mod digest;
mod error;
mod facts;
mod fsutil;
mod import;
mod init;
#[doc(hidden)]
pub mod internals;
mod inventory;
mod plan;
mod prompt;
mod reboot;
mod removenode;
mod resources;
mod schema;
mod secret;
mod sh;
mod site;
mod template;
mod testbed;
mod transport;
mod ui;
mod uninstall;
mod vault;
mod yaml;

/// Parse this process's command line, run the command, and return its exit code (README.md,
/// "Exit codes"): the binary exits with it.
pub fn run() -> i32 {
    cli::main()
}
