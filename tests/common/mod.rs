//! End-to-end test harness: disposable hosts from `labctl testbed`, and helpers to run
//! the built binary. E2E tests need root, are `#[ignore]`d (a plain `cargo test` lists them as
//! ignored), and run with `LABCTL_E2E=1 cargo test -- --include-ignored` (scripts/test.sh does).
//!
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True when `LABCTL_E2E=1`. Otherwise prints why the test is skipped; callers return early.
pub fn e2e_enabled() -> bool {
    if std::env::var("LABCTL_E2E").as_deref() == Ok("1") {
        return true;
    }
    skip("end-to-end, needs LABCTL_E2E=1 and root (scripts/test.sh sets it)");
    false
}

/// Say that the running test skipped, and why, where the test log shows it (under CI=true, fail
/// instead).
pub fn skip(why: &str) {
    // CI runs scripts/setup.sh as root: a missing prerequisite there is a broken setup, and a
    // skipped test would pass for the wrong reason.
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and a prerequisite is missing: {why}"
    );
    say_skipped(why);
}

/// The SKIPPED line scripts/test.sh counts, straight to stderr: the harness swallows a passing
/// test's captured output (eprintln!). For an opt-in test not asked for, call it directly.
pub fn say_skipped(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {test}: {why}\n").as_bytes(),
    );
}

/// A program from the private PyPI venv (`$LABCTL_TEST_VENV`, else ~/.cache/labctl/test-venv;
/// scripts/setup.sh creates it), if it is there.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("LABCTL_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labctl/test-venv"))
        })?;
    let p = venv.join("bin").join(name);
    p.is_file().then_some(p)
}

/// The `data` of a `--json` output, after checking the envelope's version.
pub fn json_data(out: &Output) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", show(out)));
    assert_eq!(v["version"], 1, "--json envelope version:\n{}", show(out));
    v["data"].take()
}

/// Runs the built `labctl` binary.
pub fn labctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .output()
        .expect("cannot run the labctl binary")
}

/// The labctl binary run in `dir`, cut off from this machine's labctl setup: its own config and
/// runtime dirs (each test its own local run lock: tests run in parallel), no key files or
/// inventory from the environment, no colour.
pub fn isolated(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
    c.current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_RUNTIME_DIR", dir.join(".run"))
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("LABCTL_INVENTORY")
        .env("NO_COLOR", "1");
    c
}

/// Runs `cmd` with a pty as its terminal (util-linux `script`), typing `input` into it. The
/// command line is rebuilt from `cmd`'s program and args; its env and dir are kept.
pub fn in_pty(cmd: &Command, input: &str) -> Output {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shlex::try_quote(&a.to_string_lossy()).unwrap().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut s = Command::new("script");
    s.args(["-qec", &line, "/dev/null"]);
    if let Some(d) = cmd.get_current_dir() {
        s.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    let mut child = s
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The Debian release e2e test hosts run: `$LABCTL_TESTBED_RELEASE` (`scripts/test.sh --release`
/// sets it), else bookworm, labctl's default.
pub fn testbed_release() -> String {
    let r = std::env::var("LABCTL_TESTBED_RELEASE").unwrap_or_default();
    match r.as_str() {
        "" => "bookworm".into(),
        "bookworm" | "trixie" => r,
        other => panic!("LABCTL_TESTBED_RELEASE={other:?}: use bookworm or trixie (codenames)"),
    }
}

/// Where e2e testbeds live: `<target>/e2e-testbeds`, so `cargo clean` removes leftovers.
pub fn testbeds_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("e2e-testbeds")
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct TbHost {
    pub name: String,
    pub address: String,
    /// PID (in the machine's namespace) of the host's systemd when the testbed came up; `sh`
    /// enters its namespaces (through `init_pid_now`, which follows a reboot).
    pub init_pid: u32,
    /// Its /proc start time: a PID seen again with another start time is another process.
    pub init_start: Option<u64>,
}

/// A process's start time (field 22 of /proc/PID/stat), if it runs.
pub fn proc_start(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// A running testbed; `Drop` tears it down, also when the test panicked.
pub struct Testbed {
    pub name: String,
    /// The Debian release its hosts run (`bookworm`, `trixie`), checked in /etc/os-release.
    pub release: String,
    /// The testbed's own directory (`<testbeds_dir>/NAME`): inventory, key, known_hosts.
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub hosts: Vec<TbHost>,
}

impl Testbed {
    /// Boots `hosts` hosts named `NAME-1..N` of the release the run asks for
    /// (`testbed_release`). Use a name unique to the test: tests run in parallel.
    pub fn up(name: &str, hosts: usize) -> Testbed {
        Testbed::up_release(name, hosts, &testbed_release())
    }

    /// Like `up`, with an explicit Debian release (a codename `labctl testbed up --release` takes).
    pub fn up_release(name: &str, hosts: usize, release: &str) -> Testbed {
        let base = testbeds_dir();
        let base_s = base.to_string_lossy().into_owned();
        // Constructed first so Drop cleans up even if `up` half-succeeded and we panic below.
        let mut tb = Testbed {
            name: name.to_string(),
            release: release.to_string(),
            dir: base.join(name),
            inventory: base.join(name).join("inventory.yml"),
            hosts: Vec::new(),
        };
        let n = hosts.to_string();
        let out = labctl(&[
            "testbed",
            "up",
            "--name",
            name,
            "--hosts",
            &n,
            "--dir",
            &base_s,
            "--release",
            release,
        ]);
        assert!(
            out.status.success(),
            "labctl testbed up --name {name} failed:\n{}",
            show(&out)
        );
        tb.hosts = tb
            .status()
            .iter()
            .map(|h| TbHost {
                name: h["name"].as_str().expect("status: name").to_string(),
                address: h["address"].as_str().expect("status: address").to_string(),
                init_pid: h["init_pid"].as_u64().expect("status: init_pid") as u32,
                init_start: h["init_pid"].as_u64().and_then(|p| proc_start(p as u32)),
            })
            .collect();
        assert_eq!(
            tb.hosts.len(),
            hosts,
            "status lists a different number of hosts"
        );
        // Out of band, so a test that says it ran on Debian 13 did.
        for h in &tb.hosts {
            let codename = tb.sh_ok(&h.name, ". /etc/os-release && echo \"$VERSION_CODENAME\"");
            assert_eq!(codename.trim(), release, "{}: /etc/os-release", h.name);
        }
        tb
    }

    /// `labctl testbed status --json` for this testbed.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let base = testbeds_dir();
        let out = labctl(&[
            "testbed",
            "status",
            "--json",
            "--name",
            &self.name,
            "--dir",
            &base.to_string_lossy(),
        ]);
        assert!(
            out.status.success(),
            "labctl testbed status failed:\n{}",
            show(&out)
        );
        serde_json::from_value(json_data(&out))
            .unwrap_or_else(|e| panic!("status --json is not a JSON array ({e}):\n{}", show(&out)))
    }

    /// `CMD SITE -i INV --vault-key KEY -e @DIR/base.yml [-e @DIR/O.yml …]`: a site run
    /// against this testbed with the test's var files (in `dir`, `base` first).
    pub fn site_args(&self, cmd: &str, site: &Path, dir: &Path, overlays: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            cmd.into(),
            site.display().to_string(),
            "-i".into(),
            self.inventory.display().to_string(),
            "--vault-key".into(),
            self.dir.join("age.key").display().to_string(),
        ];
        for o in std::iter::once(&"base").chain(overlays) {
            a.push("-e".into());
            a.push(format!("@{}", dir.join(format!("{o}.yml")).display()));
        }
        a
    }

    /// The init PID of `host`'s current boot: the one from `up` while it runs, else (the host
    /// rebooted) the one `testbed status` reports now (0 while it is between two boots).
    pub fn init_pid_now(&self, host: &str) -> u32 {
        let h = self.host(host);
        if h.init_start.is_some() && proc_start(h.init_pid) == h.init_start {
            return h.init_pid;
        }
        self.status()
            .iter()
            .find(|s| s["name"] == host)
            .and_then(|s| s["init_pid"].as_u64())
            .unwrap_or(0) as u32
    }

    pub fn host(&self, name: &str) -> &TbHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("testbed {} has no host {name}", self.name))
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Runs `script` inside `host` out of band (entering its namespaces, not via ssh), so
    /// checks do not depend on the code under test.
    pub fn sh(&self, host: &str, script: &str) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.init_pid_now(host).to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
                "sh",
                "-c",
                script,
            ])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .output()
            .expect("cannot run nsenter")
    }

    /// Like `sh`, but asserts success and returns stdout.
    pub fn sh_ok(&self, host: &str, script: &str) -> String {
        let out = self.sh(host, script);
        assert!(
            out.status.success(),
            "on {host}: `{script}` failed:\n{}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// ssh to `user@address` with the testbed's key and strict host key checking.
    pub fn ssh(&self, user: &str, address: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(self.key())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg(format!("{user}@{address}"))
            .arg(command)
            .output()
            .expect("cannot run ssh")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let base = testbeds_dir();
        let out = labctl(&[
            "testbed",
            "down",
            "--name",
            &self.name,
            "--dir",
            &base.to_string_lossy(),
        ]);
        if !out.status.success() {
            // No panic here: panicking while unwinding would abort and hide the real failure.
            eprintln!(
                "warning: labctl testbed down --name {} failed:\n{}",
                self.name,
                show(&out)
            );
        }
    }
}

/// True if the process exists and is not a zombie (some inits reap orphans late).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Writes `body` to `dir/rel`, creating the folders on the way.
pub fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}
