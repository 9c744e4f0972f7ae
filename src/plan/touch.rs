//! What a change can alter on a host: apply runs changes that cannot alter each other's facts
//! in ONE remote execution, and re-reads (in one probe) the facts of those that might have moved.
//!
//! The default is `Anything` (commands, packages, users: they can change any fact). Types that
//! change only paths or one fact family say so (`Resource::touches`).

/// One thing a change may alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    Anything,
    /// A path (with `subtree`, also every path below it: a symlink or a recursive chown).
    Path {
        path: String,
        subtree: bool,
    },
    /// Facts whose keys start with this prefix (`ufw`, `sysctl:`).
    Facts(&'static str),
}

impl Touch {
    pub fn path(path: &str) -> Touch {
        Touch::Path {
            path: path.to_string(),
            subtree: false,
        }
    }
    pub fn subtree(path: &str) -> Touch {
        Touch::Path {
            path: path.to_string(),
            subtree: true,
        }
    }
}

/// System paths whose content other fact families read (users, units, packages, firewall,
/// homes with authorized_keys and kubeconfigs, programs a guard may run): a write there may
/// move facts other than the path's own. Each with the fact keys (prefixes) it may move; [`ANY`]:
/// every fact that is not a path's own. ufw's files are read only by the `ufw` fact (and enabling
/// ufw applies its sysctl.conf), so a firewall change no longer forces the user, service and package facts to be read again before the next
/// change (one remote execution fewer in a converge of the bench role).
const SHARED: &[(&str, &[&str])] = &[
    ("/etc/passwd", ANY),
    ("/etc/group", ANY),
    ("/etc/shadow", ANY),
    ("/etc/gshadow", ANY),
    ("/etc/nsswitch.conf", ANY),
    ("/etc/login.defs", ANY),
    ("/etc/hostname", ANY),
    ("/etc/os-release", ANY),
    ("/usr/lib/os-release", ANY),
    ("/etc/ufw", UFW),
    ("/etc/default/ufw", UFW),
    ("/lib/ufw", UFW),
    ("/etc/systemd", ANY),
    ("/lib/systemd", ANY),
    ("/usr/lib/systemd", ANY),
    ("/run/systemd", ANY),
    ("/etc/init.d", ANY),
    ("/etc/apt", ANY),
    ("/var/lib/dpkg", ANY),
    ("/var/lib/apt", ANY),
    ("/etc/rancher", ANY),
    ("/var/lib/rancher", ANY),
    ("/home", ANY),
    ("/root", ANY),
    ("/bin", ANY),
    ("/sbin", ANY),
    ("/usr", ANY),
    ("/proc", ANY),
    ("/sys", ANY),
];

const ANY: &[&str] = &[];
/// The firewall's fact, and live sysctls: enabling ufw applies /etc/ufw/sysctl.conf.
const UFW: &[&str] = &[crate::facts::ufw::KEY, "sysctl:"];

fn under(p: &str, base: &str) -> bool {
    p == base || p.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

/// What a fact key reads: a path (file facts and `creates` guards) or anything else.
fn read_path(key: &str) -> Option<&str> {
    ["file:", "file+content:", "creates:"]
        .iter()
        .find_map(|p| key.strip_prefix(p))
}

/// Whether changes with these touches may alter the facts behind these keys.
pub fn affects(touches: &[Touch], keys: &[String]) -> bool {
    touches.iter().any(|t| {
        keys.iter().any(|k| match (t, read_path(k)) {
            (Touch::Anything, _) => true,
            (Touch::Path { path, subtree }, Some(q)) => q == path || (*subtree && under(q, path)),
            // `unless` checks run arbitrary commands: they may read any path.
            (Touch::Path { path, .. }, None) => {
                k.starts_with("unless:")
                    || SHARED.iter().any(|(s, moves)| {
                        under(path, s)
                            && (moves.is_empty() || moves.iter().any(|m| k.starts_with(m)))
                    })
            }
            (Touch::Facts(prefix), None) => k.starts_with(prefix),
            (Touch::Facts(_), Some(_)) => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_affect_their_own_facts_and_shared_system_files_affect_the_rest() {
        let lab = [Touch::path("/etc/lab/a.conf")];
        assert!(affects(&lab, &keys(&["file+content:/etc/lab/a.conf"])));
        assert!(!affects(&lab, &keys(&["file+content:/etc/lab/b.conf"])));
        assert!(!affects(&lab, &keys(&["file:/etc/lab"])));
        assert!(!affects(&lab, &keys(&["service:cron", "ufw", "user:bob"])));
        // A guard that runs a command may look anywhere.
        assert!(affects(&lab, &keys(&["unless:0123"])));
        // A unit file moves the unit's facts; a home's file may be someone's authorized_keys.
        assert!(affects(
            &[Touch::path("/etc/systemd/system/x.service")],
            &keys(&["service:x"])
        ));
        assert!(affects(
            &[Touch::path("/home/bob/.ssh/authorized_keys")],
            &keys(&["authorized_keys:bob:~"])
        ));
        // ufw's files move the firewall's fact only; the password file moves users'.
        let fw = [Touch::subtree("/etc/ufw"), Touch::path("/etc/default/ufw")];
        assert!(affects(&fw, &keys(&["ufw"])));
        assert!(affects(&fw, &keys(&["sysctl:net.ipv4.conf.all.rp_filter"])));
        assert!(!affects(
            &fw,
            &keys(&[
                "user:bob",
                "authorized_keys:bob:~",
                "service:ufw",
                "packages:ufw"
            ])
        ));
        assert!(affects(
            &fw,
            &keys(&["file:/etc/ufw/user.rules", "unless:0123"])
        ));
        assert!(affects(&[Touch::path("/etc/passwd")], &keys(&["user:bob"])));
        // Not a prefix match on names: /etc/groupies is not /etc/group.
        assert!(!affects(
            &[Touch::path("/etc/groupies")],
            &keys(&["group:x"])
        ));
    }

    #[test]
    fn subtrees_and_families() {
        let link = [Touch::subtree("/opt/app")];
        assert!(affects(&link, &keys(&["file:/opt/app/current/bin"])));
        assert!(!affects(&link, &keys(&["file:/opt/application"])));
        let ufw = [Touch::Facts("ufw")];
        assert!(affects(&ufw, &keys(&["ufw"])));
        assert!(!affects(
            &ufw,
            &keys(&["file:/etc/ufw/user.rules", "service:ufw"])
        ));
        assert!(affects(&[Touch::Anything], &keys(&["file:/x"])));
        assert!(!affects(&[], &keys(&["file:/x"])));
    }
}
