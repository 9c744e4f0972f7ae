//! ufw facts, read from its files: `ufw status` needs an active firewall (and root-only iptables
//! calls), while `/etc/ufw/user*.rules` carry every rule as a stable `### tuple ###` line whether
//! ufw is enabled or not.

use super::{parse_err, unexpected, Fact, FactError, Merge};

pub const KEY: &str = "ufw";

/// One `### tuple ###` line, e.g. `allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=737368`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Tuple {
    /// `route:` rules filter forwarded traffic.
    pub route: bool,
    /// `allow`, `deny`, `reject`, `limit`.
    pub action: String,
    /// `log` or `log-all` (written `allow_log`, `allow_log-all`).
    pub log: Option<String>,
    /// `tcp`, `udp`, `any`, …
    pub proto: String,
    /// `22`, `30000:32767`, `80,443`, `any`.
    pub dport: String,
    pub dst: String,
    pub sport: String,
    /// `0.0.0.0/0`, `::/0`, `10.0.0.0/8`, `10.0.0.5`.
    pub src: String,
    /// Application profile names (`OpenSSH`, `WWW Full`), when the rule was made from one.
    pub dapp: Option<String>,
    pub sapp: Option<String>,
    /// `in`, `out`, `in_eth0`, or for routes `in_eth0!out_eth1`.
    pub direction: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UfwFact {
    /// `command -v ufw` found it.
    pub installed: bool,
    /// `ENABLED=yes` in /etc/ufw/ufw.conf: the firewall is loaded at boot (and was enabled).
    pub enabled: bool,
    /// iptables words from /etc/default/ufw: `DROP`, `ACCEPT`, `REJECT` (empty when unreadable).
    pub input_policy: String,
    pub output_policy: String,
    /// From /etc/ufw/user.rules.
    pub v4: Vec<Tuple>,
    /// From /etc/ufw/user6.rules.
    pub v6: Vec<Tuple>,
}

/// ufw's state from its own files. No process: the files are read by the shell's `read`
/// (printf, not echo: dash's echo would expand backslashes in a rule's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UfwQuery;

impl Fact for UfwQuery {
    type Output = UfwFact;
    fn key(&self) -> String {
        KEY.into()
    }
    fn script(&self) -> String {
        script(&[])
    }
    fn parse(&self, out: &str) -> Result<UfwFact, FactError> {
        parse(out)
    }
    fn merge(&self) -> Option<Merge> {
        Some(Merge::inline("ufw", script))
    }
}

fn script(_: &[&str]) -> String {
    "if command -v ufw >/dev/null 2>&1; then echo installed yes; else echo installed no; fi; \
     __ur() { [ -r \"$1\" ] || return 0; while IFS= read -r __l || [ -n \"$__l\" ]; do case $__l in \
     ENABLED=*) printf 'enabled %s\\n' \"${__l#ENABLED=}\";; \
     DEFAULT_INPUT_POLICY=*) printf 'input %s\\n' \"${__l#DEFAULT_INPUT_POLICY=}\";; \
     DEFAULT_OUTPUT_POLICY=*) printf 'output %s\\n' \"${__l#DEFAULT_OUTPUT_POLICY=}\";; \
     '### tuple ### '*) [ -n \"${2:-}\" ] && printf '%s %s\\n' \"$2\" \"${__l#'### tuple ### '}\";; esac; done < \"$1\"; }; \
     __ur /etc/ufw/ufw.conf; __ur /etc/default/ufw; __ur /etc/ufw/user.rules v4; __ur /etc/ufw/user6.rules v6; \
     echo done"
        .into()
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

pub fn parse(out: &str) -> Result<UfwFact, FactError> {
    let mut f = UfwFact::default();
    let mut done = false;
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "installed" => f.installed = rest.trim() == "yes",
            "enabled" => f.enabled = unquote(rest).eq_ignore_ascii_case("yes"),
            "input" => f.input_policy = unquote(rest).to_ascii_uppercase(),
            "output" => f.output_policy = unquote(rest).to_ascii_uppercase(),
            "v4" => f.v4.push(parse_tuple(rest)?),
            "v6" => f.v6.push(parse_tuple(rest)?),
            "done" => done = true,
            "" => {}
            _ => return Err(unexpected(KEY, line)),
        }
    }
    if !done {
        return Err(parse_err(KEY, "answer cut short"));
    }
    Ok(f)
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// ufw writes app names with spaces as `%20`.
fn app(s: &str) -> Option<String> {
    (s != "-").then(|| s.replace("%20", " "))
}

/// Parse the part after `### tuple ### `.
pub fn parse_tuple(s: &str) -> Result<Tuple, FactError> {
    let bad = || parse_err(KEY, format!("unexpected ufw tuple `{s}`"));
    let mut tok: Vec<&str> = s.split_whitespace().collect();
    let mut t = Tuple::default();
    if let Some(c) = tok.last().and_then(|l| l.strip_prefix("comment=")) {
        t.comment = Some(unhex(c).ok_or_else(bad)?);
        tok.pop();
    }
    let (head, apps) = match tok.len() {
        7 => (&tok[..6], None),
        9 => (&tok[..6], Some((tok[6], tok[7]))),
        _ => return Err(bad()),
    };
    t.direction = tok[tok.len() - 1].to_string();
    let mut action = head[0];
    if let Some(a) = action.strip_prefix("route:") {
        t.route = true;
        action = a;
    }
    match action.split_once('_') {
        Some((a, log)) => {
            t.action = a.to_string();
            t.log = Some(log.to_string());
        }
        None => t.action = action.to_string(),
    }
    t.proto = head[1].to_string();
    t.dport = head[2].to_string();
    t.dst = head[3].to_string();
    t.sport = head[4].to_string();
    t.src = head[5].to_string();
    if let Some((d, s)) = apps {
        t.dapp = app(d);
        t.sapp = app(s);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_valid_sh_and_answers_without_ufw() {
        let script = UfwQuery.script();
        crate::facts::testutil::assert_valid_sh(&script);
        let stdout = crate::facts::testutil::run_sh(&script);
        let f = parse(&stdout).unwrap();
        // Whatever this machine has, the answer parses; without ufw it is simply empty.
        if !f.installed {
            assert!(f.v4.is_empty() || std::path::Path::new("/etc/ufw/user.rules").exists());
        }
    }

    #[test]
    fn reads_rules_files_with_the_shells_own_read() {
        // The snippet's reader, pointed at a copy of Debian 12's files (no trailing newline on
        // the last line).
        let d = tempfile::tempdir().unwrap();
        let rules = d.path().join("user.rules");
        std::fs::write(&rules, "*filter\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=5c6e\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n### tuple ### allow udp 51820 0.0.0.0/0 any 0.0.0.0/0 in").unwrap();
        let conf = d.path().join("ufw.conf");
        std::fs::write(&conf, "# comment\nENABLED=yes\nLOGLEVEL=low\n").unwrap();
        let script = UfwQuery.script();
        let reader = &script[script.find("__ur()").unwrap()..script.find("__ur /etc").unwrap()];
        let out = crate::facts::testutil::run_sh(&format!(
            "{reader} __ur {} v4; __ur {}",
            rules.display(),
            conf.display()
        ));
        assert_eq!(
            out,
            "v4 allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=5c6e\nv4 allow udp 51820 0.0.0.0/0 any 0.0.0.0/0 in\nenabled yes\n"
        );
    }

    /// The snippet's output on Debian 12 (ufw 0.36.2, inactive) after a mix of `ufw allow`,
    /// `limit`, `deny out`, `route`, app-profile and commented rules.
    pub const BOOKWORM: &str = r#"installed yes
enabled no
input "DROP"
output "ACCEPT"
v4 allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=73736820616363657373
v4 limit tcp 2222 0.0.0.0/0 any 10.0.0.0/8 in
v4 allow udp 8472 0.0.0.0/0 any 10.0.0.5 in
v4 allow tcp 30000:32767 0.0.0.0/0 any 0.0.0.0/0 in
v4 deny any 25 0.0.0.0/0 any 0.0.0.0/0 out
v4 allow_log tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in
v4 allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 WWW%20Full - in_eth0
v4 route:allow tcp 80 10.0.0.0/8 any 0.0.0.0/0 in_eth0!out_eth1
v6 allow tcp 22 ::/0 any ::/0 in comment=73736820616363657373
v6 allow tcp 30000:32767 ::/0 any ::/0 in
v6 deny any 25 ::/0 any ::/0 out
v6 allow_log tcp 8080 ::/0 any ::/0 in
v6 allow tcp 80,443 ::/0 any ::/0 WWW%20Full - in_eth0
done
"#;

    #[test]
    fn parses_real_bookworm_files() {
        let f = parse(BOOKWORM).unwrap();
        assert!(f.installed && !f.enabled);
        assert_eq!(
            (f.input_policy.as_str(), f.output_policy.as_str()),
            ("DROP", "ACCEPT")
        );
        let ssh = &f.v4[0];
        assert_eq!(
            ssh,
            &Tuple {
                action: "allow".into(),
                proto: "tcp".into(),
                dport: "22".into(),
                dst: "0.0.0.0/0".into(),
                sport: "any".into(),
                src: "0.0.0.0/0".into(),
                direction: "in".into(),
                comment: Some("ssh access".into()),
                ..Tuple::default()
            }
        );
        assert_eq!(f.v6[0].src, "::/0");
        assert_eq!(f.v6[0].comment.as_deref(), Some("ssh access"));
        let find = |pred: &dyn Fn(&Tuple) -> bool| f.v4.iter().find(|t| pred(t)).cloned().unwrap();
        let limit = find(&|t| t.action == "limit");
        assert_eq!(
            (limit.dport.as_str(), limit.src.as_str()),
            ("2222", "10.0.0.0/8")
        );
        let host = find(&|t| t.proto == "udp");
        assert_eq!(host.src, "10.0.0.5");
        let logged = find(&|t| t.log.is_some());
        assert_eq!(
            (logged.action.as_str(), logged.log.as_deref()),
            ("allow", Some("log"))
        );
        let app = find(&|t| t.dapp.is_some());
        assert_eq!(
            (
                app.dapp.as_deref(),
                app.sapp.as_deref(),
                app.direction.as_str()
            ),
            (Some("WWW Full"), None, "in_eth0")
        );
        let route = find(&|t| t.route);
        assert_eq!(
            (route.direction.as_str(), route.dst.as_str()),
            ("in_eth0!out_eth1", "10.0.0.0/8")
        );
        assert!(f.v4.iter().any(|t| t.direction == "out"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("installed yes\nv4 allow tcp\ndone\n").is_err());
        assert!(parse("installed yes\n")
            .unwrap_err()
            .to_string()
            .contains("cut short"));
        let f = parse("installed no\ndone\n").unwrap();
        assert!(!f.installed && f.v4.is_empty() && f.input_policy.is_empty());
    }
}
