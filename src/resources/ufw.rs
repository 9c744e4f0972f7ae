//! `ufw`: the host firewall: on/off, default policies, and the exact set of incoming rules.
//!
//! ```yaml
//! - ufw:
//!     state: enabled              # enabled (default) | disabled
//!     default_incoming: deny      # deny (default) | allow | reject
//!     default_outgoing: allow     # allow (default) | deny | reject
//!     ssh_port: 22                # the port labctl reaches the host on (default 22)
//!     purge: true                 # delete rules not listed here (default true)
//!     rules:
//!       - {port: "22", comment: ssh}
//!       - {port: "6443", from: 10.0.0.0/24, comment: k3s api}
//!       - {port: "8472", proto: udp, from: 10.0.0.0/24, comment: flannel vxlan}
//!       - {port: "30000:32767", proto: tcp}
//!       - {port: "2222", rule: limit}
//!       - {from: 10.42.0.0/16, comment: k3s pods}          # no port: every port (proto any)
//!       - {port: "8472", proto: udp, interface: wg0, from: [10.200.0.1, 10.200.0.2]}
//! ```
//!
//! Rules are incoming, and their `from` is `any`, an IPv4 address/CIDR, or a list of them (one rule
//! each). Without `port` a rule admits every port; `interface` limits it to packets coming in on that
//! interface (`ufw allow in on wg0 …`). ufw gives a `from: any`
//! rule an IPv6 twin; the twin belongs to the rule (it is neither required nor purged). Rule order
//! is not managed. Rules are added before `ufw --force enable` runs, and a spec that would enable
//! a deny-by-default firewall without allowing `ssh_port`/tcp is refused: labctl would lock
//! itself out mid-run.
//!
//! All of a resource's ufw commands run in one Python process on the host, through ufw's own
//! parser and frontend (what `/usr/sbin/ufw` does once per command); every command is parsed
//! before any runs, so one that ufw refuses (a `'` in a comment) fails the resource, names the
//! command and changes nothing. Enabling a disabled firewall whose chains are not loaded writes the
//! rules files and loads them with `ufw-init start`, as the host does at boot, instead of `ufw
//! enable`'s ~75 live iptables calls: on a fresh bench host the firewall step went from ~0.9 s to
//! ~0.3 s. The e2e test (`tests/e2e_ufw.rs`, real ufw 0.36.2 on Debian 12) checks that the files
//! and the live iptables/ip6tables ruleset equal what the same commands typed one by one leave.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::ResourceError;
use super::{q, DiffCx, Resource};
use crate::facts::ufw::{Tuple, UfwFact, UfwQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};

pub struct Ufw;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Allow,
    Deny,
    Reject,
}

impl Policy {
    fn word(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Deny => "deny",
            Policy::Reject => "reject",
        }
    }
    /// What /etc/default/ufw stores.
    fn iptables(self) -> &'static str {
        match self {
            Policy::Allow => "ACCEPT",
            Policy::Deny => "DROP",
            Policy::Reject => "REJECT",
        }
    }
}

fn deny() -> Policy {
    Policy::Deny
}
fn allow() -> Policy {
    Policy::Allow
}
fn yes() -> bool {
    true
}
fn ssh() -> u16 {
    22
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
    Any,
}

impl Proto {
    fn word(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Any => "any",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Allow,
    Deny,
    Reject,
    Limit,
}

impl RuleAction {
    fn word(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::Reject => "reject",
            RuleAction::Limit => "limit",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `"22"`, `"30000:32767"`, `"80,443"`, or `"any"` (every port).
    pub port: String,
    pub proto: Proto,
    /// `any`, an IPv4 address or an IPv4 CIDR.
    pub from_: Option<String>,
    /// Only packets coming in on this interface (`in_wg0` in user.rules).
    pub interface: Option<String>,
    pub rule: RuleAction,
    pub comment: Option<String>,
}

/// A rule as written: `from` may list several sources, `port` and `proto` may be left out.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// `"22"`, `"30000:32767"`, `"80,443"` (a YAML integer is accepted too); none = every port.
    #[serde(default, deserialize_with = "port")]
    #[schemars(with = "Option<super::support::StringOrNumber>")]
    port: Option<String>,
    /// Default `tcp` with a port, `any` without one.
    #[serde(default)]
    proto: Option<Proto>,
    #[serde(default, rename = "from")]
    from_: Option<OneOrMany>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    rule: RuleAction,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s == "any" => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "port must be a string like \"22\" or \"30000:32767\", got {other}"
        ))),
    }
}

/// One `Rule` per source of each written rule.
fn rules<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Rule>, D::Error> {
    let raw = Vec::<RawRule>::deserialize(d)?;
    let mut out = Vec::new();
    for r in raw {
        let sources: Vec<Option<String>> = match r.from_ {
            None => vec![None],
            Some(OneOrMany::One(s)) => vec![Some(s)],
            Some(OneOrMany::Many(v)) if v.is_empty() => {
                return Err(serde::de::Error::custom(
                    "from: an empty list would make no rule at all; leave `from` out for `any`",
                ))
            }
            Some(OneOrMany::Many(v)) => v.into_iter().map(Some).collect(),
        };
        let proto = r.proto.unwrap_or(if r.port.is_some() {
            Proto::Tcp
        } else {
            Proto::Any
        });
        for from_ in sources {
            out.push(Rule {
                port: r.port.clone().unwrap_or_else(|| "any".into()),
                proto,
                from_,
                interface: r.interface.clone(),
                rule: r.rule,
                comment: r.comment.clone(),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub state: State,
    #[serde(default = "deny")]
    pub default_incoming: Policy,
    #[serde(default = "allow")]
    pub default_outgoing: Policy,
    #[serde(default, deserialize_with = "rules")]
    #[schemars(with = "Vec<RawRule>")]
    pub rules: Vec<Rule>,
    #[serde(default = "yes")]
    pub purge: bool,
    #[serde(default = "ssh")]
    pub ssh_port: u16,
}

impl Rule {
    /// The source as ufw writes it in user.rules: `0.0.0.0/0`, `10.0.0.5` (a /32 loses its
    /// prefix), `10.0.0.0/8`.
    fn src(&self) -> String {
        match self.from_.as_deref() {
            None | Some("any") => "0.0.0.0/0".into(),
            Some(c) => normalize_cidr(c).unwrap_or_else(|_| c.to_string()),
        }
    }
    fn is_from_any(&self) -> bool {
        matches!(self.from_.as_deref(), None | Some("any"))
    }
    /// The user.rules tuple this rule becomes (user6.rules for its twin).
    fn tuple(&self, v6: bool) -> Tuple {
        let (any, src) = if v6 {
            ("::/0".to_string(), "::/0".to_string())
        } else {
            ("0.0.0.0/0".to_string(), self.src())
        };
        Tuple {
            action: self.rule.word().into(),
            proto: self.proto.word().into(),
            dport: self.port.clone(),
            dst: any,
            sport: "any".into(),
            src,
            direction: match &self.interface {
                Some(i) => format!("in_{i}"),
                None => "in".into(),
            },
            comment: self.comment.clone(),
            ..Tuple::default()
        }
    }
    fn label(&self) -> String {
        let from = if self.is_from_any() {
            String::new()
        } else {
            format!(" from {}", self.src())
        };
        let on = self
            .interface
            .as_deref()
            .map(|i| format!(" in on {i}"))
            .unwrap_or_default();
        format!(
            "{} {}/{}{from}{on}",
            self.rule.word(),
            self.port,
            self.proto.word()
        )
    }
    /// The `ufw` arguments that add this rule (or update its action or comment in place).
    fn add_args(&self) -> Vec<String> {
        let mut w = vec![self.rule.word().to_string()];
        if let Some(i) = &self.interface {
            w.extend(["in".into(), "on".into(), i.clone()]);
        }
        if self.proto != Proto::Any {
            w.extend(["proto".into(), self.proto.word().into()]);
        }
        w.push("from".into());
        w.push(if self.is_from_any() {
            "any".into()
        } else {
            self.src()
        });
        w.extend(["to".into(), "any".into()]);
        if self.port != "any" {
            w.extend(["port".into(), self.port.clone()]);
        }
        if let Some(c) = &self.comment {
            w.extend(["comment".into(), c.clone()]);
        }
        w
    }
    /// Does this rule let a new SSH connection in on `port`/tcp?
    fn admits_ssh(&self, port: u16) -> bool {
        matches!(self.rule, RuleAction::Allow | RuleAction::Limit)
            && self.proto != Proto::Udp
            && self.interface.is_none()
            && (self.port == "any"
                || self.port.split(',').any(|p| match p.split_once(':') {
                    Some((a, b)) => {
                        a.parse::<u16>().is_ok_and(|a| a <= port)
                            && b.parse::<u16>().is_ok_and(|b| port <= b)
                    }
                    None => p.parse::<u16>() == Ok(port),
                }))
    }
}

/// What identifies a rule for ufw: everything but the action and comment. Adding a rule with the
/// same match and another action or comment updates it in place ("Rule updated").
fn same_match(a: &Tuple, b: &Tuple) -> bool {
    let strip = |t: &Tuple| Tuple {
        action: String::new(),
        comment: None,
        ..t.clone()
    };
    strip(a) == strip(b)
}

fn normalize_cidr(c: &str) -> Result<String, String> {
    if c.contains(':') {
        return Err(format!(
            "from `{c}`: IPv6 sources are not supported (rules are IPv4; `from: any` also admits IPv6)"
        ));
    }
    let (addr, prefix) = match c.split_once('/') {
        Some((a, p)) => (
            a,
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| format!("from `{c}`: bad prefix length"))?,
        ),
        None => (c, 32),
    };
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("from `{c}` is not `any`, an IPv4 address or an IPv4 CIDR"))?;
    if prefix == 32 {
        return Ok(ip.to_string());
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    if u32::from(ip) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(ip) & mask);
        // ufw would silently store the network, and the rule would never match what was written.
        return Err(format!(
            "from `{c}` has host bits set: write {net}/{prefix}"
        ));
    }
    Ok(format!("{ip}/{prefix}"))
}

fn check_port(p: &str, proto: Proto) -> Result<(), String> {
    let ok_num = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0) && !s.starts_with('0');
    let mut parts = 0;
    for part in p.split(',') {
        parts += 1;
        let ok = match part.split_once(':') {
            Some((a, b)) => {
                ok_num(a)
                    && ok_num(b)
                    && a.parse::<u16>().unwrap_or(0) < b.parse::<u16>().unwrap_or(0)
            }
            None => ok_num(part),
        };
        if !ok {
            return Err(format!("port `{p}`: give a port (\"22\"), a range (\"30000:32767\") or a list (\"80,443\")"));
        }
    }
    if (parts > 1 || p.contains(':')) && proto == Proto::Any {
        return Err(format!(
            "port `{p}`: ufw needs `proto: tcp` or `proto: udp` for ranges and lists"
        ));
    }
    Ok(())
}

fn validate(spec: &Spec) -> Result<(), ResourceError> {
    for (i, r) in spec.rules.iter().enumerate() {
        let at = |e: String| ResourceError::spec(format!("rules[{i}]: {e}"));
        if r.port != "any" {
            check_port(&r.port, r.proto).map_err(at)?;
        }
        if let Some(iface) = &r.interface {
            // Linux interface names: at most 15 bytes, no spaces or slashes.
            if iface.is_empty()
                || iface.len() > 15
                || !iface
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(at(format!(
                    "interface `{iface}` is not a network interface name"
                )));
            }
        }
        if let Some(f) = r.from_.as_deref().filter(|f| *f != "any") {
            normalize_cidr(f).map_err(at)?;
        }
        if let Some(c) = &r.comment {
            if c.contains(['\n', '\r', '\0']) || c.len() > 200 {
                return Err(at("comment must be one line of at most 200 bytes".into()));
            }
        }
        let mine = r.tuple(false);
        if spec.rules[..i]
            .iter()
            .any(|o| same_match(&o.tuple(false), &mine))
        {
            return Err(at(format!("{} is listed twice", r.label())));
        }
    }
    if spec.state == State::Enabled
        && spec.default_incoming != Policy::Allow
        && !spec.rules.iter().any(|r| r.admits_ssh(spec.ssh_port))
    {
        return Err(ResourceError::spec(format!(
            "enabling ufw with `default_incoming: {}` and no rule allowing port {}/tcp would lock labctl (and you) out of the host: \
             add `{{port: \"{}\"}}` to `rules` (or set `ssh_port` if sshd listens elsewhere)",
            spec.default_incoming.word(),
            spec.ssh_port,
            spec.ssh_port
        )));
    }
    Ok(())
}

/// The `ufw` arguments that remove the rule a tuple describes (its IPv6 twin too when both
/// ends are `any`: ufw expands `any` to both families).
fn delete_args(t: &Tuple) -> Vec<String> {
    let any = |a: &str| {
        if a == "0.0.0.0/0" || a == "::/0" {
            "any".to_string()
        } else {
            a.to_string()
        }
    };
    let mut w: Vec<String> = vec!["--force".into()];
    if t.route {
        w.push("route".into());
    }
    w.push("delete".into());
    w.push(t.action.clone());
    for part in t.direction.split('!') {
        let (dir, iface) = part
            .split_once('_')
            .map(|(d, i)| (d, Some(i)))
            .unwrap_or((part, None));
        match iface {
            Some(i) => w.extend([dir.to_string(), "on".into(), i.to_string()]),
            None if dir == "in" && !t.route => {}
            None => w.push(dir.to_string()),
        }
    }
    if let Some(l) = &t.log {
        w.push(l.clone());
    }
    // ufw refuses `proto` together with an application profile.
    if t.proto != "any" && t.dapp.is_none() && t.sapp.is_none() {
        w.extend(["proto".into(), t.proto.clone()]);
    }
    w.extend(["from".into(), any(&t.src)]);
    match (&t.sapp, t.sport.as_str()) {
        (Some(a), _) => w.extend(["app".into(), a.clone()]),
        (None, "any") => {}
        (None, p) => w.extend(["port".into(), p.to_string()]),
    }
    w.extend(["to".into(), any(&t.dst)]);
    match (&t.dapp, t.dport.as_str()) {
        (Some(a), _) => w.extend(["app".into(), a.clone()]),
        (None, "any") => {}
        (None, p) => w.extend(["port".into(), p.to_string()]),
    }
    w
}

/// A ufw command line as a user would type it (reasons, error messages, tests).
fn shown(args: &[String]) -> String {
    std::iter::once("ufw".to_string())
        .chain(args.iter().map(|a| q(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// ufw's commands, run in ONE Python process through ufw's own parser and frontend (the
/// driver, `ufw_driver.py`): each `ufw` call is an interpreter start, and `ufw enable` from
/// disabled rebuilds the logging chains with ~75 iptables calls where loading the rules files
/// once (as at boot) gives the same ruleset. Every command is parsed before any runs.
fn driver_step(commands: &[Vec<String>]) -> Step {
    let list = serde_json::to_string(commands).expect("strings serialize");
    // A JSON list of strings is a Python literal too.
    let program = format!("{}\nrun({list})\n", include_str!("ufw_driver.py"));
    Step::Stdin {
        script: "python3 -".into(),
        data: crate::secret::Secret::new(program.into_bytes()),
    }
}

/// What `labctl uninstall-cluster` takes out of ufw: the rules of `rules` (a list written as a
/// `ufw` resource's `rules`) that the host has, matched as the resource matches them (action and
/// comment aside), and the driver program that deletes them with their IPv6 twins. Rules not
/// listed are never touched; none present is `None`.
pub struct RuleDeletion {
    /// The rules in words (`allow 8472/udp from 10.200.0.2 in on wg0`).
    pub rules: Vec<String>,
    /// The driver, for `python3 -` on the host's stdin.
    pub program: Vec<u8>,
}

impl RuleDeletion {
    pub const SCRIPT: &'static str = "python3 -";

    fn listed(list: &serde_json::Value) -> Result<Vec<Rule>, ResourceError> {
        #[derive(Deserialize)]
        struct Listed {
            #[serde(deserialize_with = "rules")]
            rules: Vec<Rule>,
        }
        let listed: Listed = serde_json::from_value(serde_json::json!({ "rules": list }))
            .map_err(|e| ResourceError::spec(format!("rules: {e}")))?;
        Ok(listed.rules)
    }

    /// The listed rules in words, without asking a host (what `--check` shows).
    pub fn labels(rules: &serde_json::Value) -> Result<Vec<String>, ResourceError> {
        Ok(Self::listed(rules)?.iter().map(Rule::label).collect())
    }

    pub fn of(
        rules: &serde_json::Value,
        seen: &UfwFact,
    ) -> Result<Option<RuleDeletion>, ResourceError> {
        let listed = Self::listed(rules)?;
        if !seen.installed {
            return Ok(None);
        }
        let mut labels = Vec::new();
        let mut cmds: Vec<Vec<String>> = Vec::new();
        for r in &listed {
            let want = r.tuple(false);
            if let Some(t) = seen.v4.iter().find(|t| same_match(t, &want)) {
                let cmd = delete_args(t);
                if !cmds.contains(&cmd) {
                    labels.push(r.label());
                    cmds.push(cmd);
                }
            }
        }
        if cmds.is_empty() {
            return Ok(None);
        }
        let program = match driver_step(&cmds) {
            Step::Stdin { data, .. } => data.expose().clone(),
            _ => unreachable!("the driver is a stdin step"),
        };
        Ok(Some(RuleDeletion {
            rules: labels,
            program,
        }))
    }
}

impl Resource for Ufw {
    const KIND: &'static str = "ufw";
    type Spec = Spec;

    fn name(_spec: &Spec) -> String {
        "firewall".into()
    }

    fn prepare(spec: &mut Spec, _cx: &super::PrepareCx) -> Result<(), ResourceError> {
        validate(spec)
    }

    fn facts(_spec: &Spec) -> Vec<FactQuery> {
        vec![UfwQuery.query()]
    }

    fn touches(_spec: &Spec) -> Vec<Touch> {
        // Rules and policies live in ufw's own files and the kernel, read only by the ufw fact.
        vec![
            Touch::Facts(crate::facts::ufw::KEY),
            Touch::subtree("/etc/ufw"),
            Touch::path("/etc/default/ufw"),
        ]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        validate(spec)?;
        let seen = facts.get(&UfwQuery)?;
        let mut reasons = Vec::new();
        let mut first = Vec::new();
        let mut adds = Vec::new();
        let mut cmds: Vec<Vec<String>> = Vec::new();
        let mut deletes: Vec<Vec<String>> = Vec::new();
        let mut last = Vec::new();

        if !seen.installed {
            // An earlier `apt` resource in the same run may install it: plan everything, and
            // make apply stop with a clear message if it is still missing.
            reasons.push("ufw not installed (yet)".to_string());
            first.push(Step::sh(
                "command -v ufw >/dev/null 2>&1 || { echo 'ufw is not installed: add it to an `apt` resource before this `ufw` one' >&2; exit 1; }",
            ));
        }
        if spec.state == State::Disabled && seen.enabled {
            reasons.push("enabled → disabled".to_string());
            cmds.push(vec!["disable".into()]);
        }

        for r in &spec.rules {
            let want = r.tuple(false);
            match seen.v4.iter().find(|t| same_match(t, &want)) {
                None => {
                    if seen.installed {
                        reasons.push(format!("rule {} missing", r.label()));
                    }
                    adds.push(r.add_args());
                }
                Some(t) if t.action != want.action => {
                    reasons.push(format!(
                        "rule {}: {} → {}",
                        r.label(),
                        t.action,
                        want.action
                    ));
                    adds.push(r.add_args());
                }
                Some(t) if want.comment.is_some() && t.comment != want.comment => {
                    reasons.push(format!(
                        "rule {}: comment → {:?}",
                        r.label(),
                        want.comment.as_deref().unwrap_or("")
                    ));
                    adds.push(r.add_args());
                }
                Some(_) => {}
            }
        }

        if spec.purge {
            let managed4: Vec<Tuple> = spec.rules.iter().map(|r| r.tuple(false)).collect();
            let managed6: Vec<Tuple> = spec
                .rules
                .iter()
                .filter(|r| r.is_from_any())
                .map(|r| r.tuple(true))
                .collect();
            let unmanaged = seen
                .v4
                .iter()
                .filter(|t| !managed4.iter().any(|m| same_match(m, t)))
                .chain(
                    seen.v6
                        .iter()
                        .filter(|t| !managed6.iter().any(|m| same_match(m, t))),
                );
            for t in unmanaged {
                let cmd = delete_args(t);
                // A v4 rule and its v6 twin go with one command.
                if !deletes.contains(&cmd) {
                    reasons.push(format!(
                        "unmanaged rule: {}",
                        shown(&cmd[1..])
                            .replacen("ufw ", "", 1)
                            .replacen("delete ", "", 1)
                    ));
                    deletes.push(cmd);
                }
            }
        }

        for (dir, want, have) in [
            ("incoming", spec.default_incoming, &seen.input_policy),
            ("outgoing", spec.default_outgoing, &seen.output_policy),
        ] {
            if !seen.installed || have != want.iptables() {
                if seen.installed {
                    let from = match have.as_str() {
                        "ACCEPT" => "allow",
                        "DROP" => "deny",
                        "REJECT" => "reject",
                        "" => "unset",
                        other => other,
                    };
                    reasons.push(format!("default {dir} {from} → {}", want.word()));
                }
                last.push(vec![
                    "--force".into(),
                    "default".into(),
                    want.word().into(),
                    dir.into(),
                ]);
            }
        }
        // Last of all, so the allow rules are in place before the firewall starts dropping.
        if spec.state == State::Enabled && (!seen.enabled || !seen.installed) {
            if seen.installed {
                reasons.push("disabled → enabled".to_string());
            }
            last.push(vec!["--force".into(), "enable".into()]);
        }

        cmds.extend(adds);
        cmds.extend(deletes);
        cmds.extend(last);
        if cmds.is_empty() {
            return Ok(None);
        }
        let mut steps = first;
        steps.push(driver_step(&cmds));
        let action = if seen.installed {
            Action::Update
        } else {
            Action::Create
        };
        Ok(Some(Drift::new(action, reasons, steps)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const BASE: &str = "installed yes\nenabled yes\ninput \"DROP\"\noutput \"ACCEPT\"\n";
    const SSH4: &str = "v4 allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=737368\n";
    const SSH6: &str = "v6 allow tcp 22 ::/0 any ::/0 in comment=737368\n";
    const API4: &str = "v4 allow tcp 6443 0.0.0.0/0 any 10.0.0.0/24 in\n";
    const SPEC: &str =
        "rules:\n  - {port: \"22\", comment: ssh}\n  - {port: 6443, from: 10.0.0.0/24}\n";

    /// The steps as a user would type them: the driver's commands one `ufw …` line each.
    fn commands(d: &Drift) -> String {
        d.steps
            .iter()
            .flat_map(|s| match s {
                Step::Sh { script } => vec![script.clone()],
                Step::Stdin { script, data } => {
                    assert_eq!(script, "python3 -");
                    let program = String::from_utf8(data.expose().clone()).unwrap();
                    assert!(program.starts_with(include_str!("ufw_driver.py")));
                    let call = program.lines().last().unwrap();
                    let list = call
                        .strip_prefix("run(")
                        .unwrap()
                        .strip_suffix(')')
                        .unwrap();
                    let cmds: Vec<Vec<String>> = serde_json::from_str(list).unwrap();
                    cmds.iter().map(|c| shown(c)).collect()
                }
                other => panic!("unexpected step {other:?}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn diff(yaml: &str, fact: &str) -> Result<Option<Drift>, String> {
        let s = spec::<Ufw>(yaml);
        Ufw::diff(&s, &facts(&[("ufw", &format!("{fact}done\n"))]), &cx())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn not_installed_plans_everything_rules_first_enable_last() {
        let d = diff(SPEC, "installed no\n").unwrap().unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.reasons, ["ufw not installed (yet)"]);
        assert_eq!(
            commands(&d),
            "command -v ufw >/dev/null 2>&1 || { echo 'ufw is not installed: add it to an `apt` resource before this `ufw` one' >&2; exit 1; }\n\
             ufw allow proto tcp from any to any port 22 comment ssh\n\
             ufw allow proto tcp from 10.0.0.0/24 to any port 6443\n\
             ufw --force default deny incoming\n\
             ufw --force default allow outgoing\n\
             ufw --force enable"
        );
    }

    #[test]
    fn fresh_install_is_configured() {
        // Debian's ufw package as installed: disabled, deny in / allow out, no rules.
        let fresh = "installed yes\nenabled no\ninput \"DROP\"\noutput \"ACCEPT\"\n";
        let d = diff(SPEC, fresh).unwrap().unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(
            d.reasons,
            [
                "rule allow 22/tcp missing",
                "rule allow 6443/tcp from 10.0.0.0/24 missing",
                "disabled → enabled"
            ]
        );
        assert_eq!(
            commands(&d),
            "ufw allow proto tcp from any to any port 22 comment ssh\nufw allow proto tcp from 10.0.0.0/24 to any port 6443\nufw --force enable"
        );
    }

    #[test]
    fn in_sync_including_v6_twin() {
        assert!(diff(SPEC, &format!("{BASE}{SSH4}{API4}{SSH6}"))
            .unwrap()
            .is_none());
        // Hosts with IPV6=no have no twin: not drift either.
        assert!(diff(SPEC, &format!("{BASE}{SSH4}{API4}"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn purge_deletes_unmanaged_rules_once_per_twin_pair() {
        let extra = "v4 allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in\nv6 allow tcp 8080 ::/0 any ::/0 in\n\
                     v4 deny any 25 0.0.0.0/0 any 0.0.0.0/0 out\nv6 allow tcp 22 ::/0 any 2001:db8::/32 in\n\
                     v4 allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 WWW%20Full - in_eth0\n\
                     v4 route:allow tcp 80 10.0.0.0/8 any 0.0.0.0/0 in_eth0!out_eth1\n\
                     v4 allow_log tcp 9000 0.0.0.0/0 1234 10.0.0.0/8 in\n";
        let d = diff(SPEC, &format!("{BASE}{SSH4}{API4}{SSH6}{extra}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            commands(&d),
            "ufw --force delete allow proto tcp from any to any port 8080\n\
             ufw --force delete deny out from any to any port 25\n\
             ufw --force delete allow in on eth0 from any to any app 'WWW Full'\n\
             ufw --force route delete allow in on eth0 out on eth1 proto tcp from any to 10.0.0.0/8 port 80\n\
             ufw --force delete allow log proto tcp from 10.0.0.0/8 port 1234 to any port 9000\n\
             ufw --force delete allow proto tcp from 2001:db8::/32 to any port 22"
        );
        assert_eq!(
            d.reasons[0],
            "unmanaged rule: allow proto tcp from any to any port 8080"
        );
        assert_eq!(d.reasons.len(), 6);
        // purge: false leaves them.
        let d = diff(
            &format!("{SPEC}purge: false\n"),
            &format!("{BASE}{SSH4}{API4}{SSH6}{extra}"),
        )
        .unwrap();
        assert!(d.is_none());
    }

    #[test]
    fn drifted_rules_and_policies_are_fixed() {
        let fact = "installed yes\nenabled yes\ninput \"ACCEPT\"\noutput \"ACCEPT\"\n\
                    v4 deny tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=737368\nv6 deny tcp 22 ::/0 any ::/0 in\n\
                    v4 allow tcp 6443 0.0.0.0/0 any 10.0.0.0/24 in comment=6f6c64\n";
        let y = "rules:\n  - {port: \"22\", comment: ssh}\n  - {port: 6443, from: 10.0.0.0/24, comment: api}\n";
        let d = diff(y, fact).unwrap().unwrap();
        assert_eq!(
            d.reasons,
            [
                "rule allow 22/tcp: deny → allow",
                "rule allow 6443/tcp from 10.0.0.0/24: comment → \"api\"",
                "default incoming allow → deny"
            ]
        );
        // The deny twin is replaced by ufw itself ("Rule updated"), so nothing is deleted.
        assert_eq!(
            commands(&d),
            "ufw allow proto tcp from any to any port 22 comment ssh\n\
             ufw allow proto tcp from 10.0.0.0/24 to any port 6443 comment api\n\
             ufw --force default deny incoming"
        );
    }

    #[test]
    fn disabling_goes_first() {
        let d = diff(
            "state: disabled\nrules: [{port: 80}]\n",
            &format!("{BASE}{SSH4}{SSH6}"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            commands(&d),
            "ufw disable\nufw allow proto tcp from any to any port 80\nufw --force delete allow proto tcp from any to any port 22"
        );
    }

    #[test]
    fn lock_out_is_refused() {
        let e = diff(
            "rules: [{port: 80}, {port: \"22\", proto: udp}, {port: \"22\", rule: deny}]\n",
            BASE,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no rule allowing port 22/tcp would lock labctl"),
            "{e}"
        );
        assert!(e.contains("ssh_port"), "{e}");
        let e = diff("ssh_port: 2222\nrules: [{port: \"22\"}]\n", BASE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 2222/tcp"), "{e}");
        // A range, a list, limit or proto any all admit SSH; a source restriction is the user's call.
        for r in [
            "{port: \"1:1024\"}",
            "{port: \"80,22\"}",
            "{port: \"22\", rule: limit}",
            "{port: \"22\", proto: any}",
            "{port: \"22\", from: 10.0.0.0/8}",
        ] {
            assert!(diff(&format!("rules: [{r}]\n"), BASE).is_ok(), "{r}");
        }
        // Not enabling, or allowing by default: nothing to lock out.
        assert!(diff("state: disabled\n", BASE).is_ok());
        assert!(diff("default_incoming: allow\n", BASE).is_ok());
    }

    #[test]
    fn any_port_interfaces_and_source_lists() {
        let y = "rules:\n  - {port: \"22\"}\n  - {from: 10.42.0.0/16, comment: pods}\n  \
                 - {port: \"8472\", proto: udp, interface: wg0, from: [10.200.0.1, 10.200.0.2]}\n";
        let fresh = "installed yes\nenabled yes\ninput \"DROP\"\noutput \"ACCEPT\"\n";
        let d = diff(y, &format!("{fresh}{SSH4}")).unwrap().unwrap();
        assert_eq!(
            d.reasons,
            [
                "rule allow any/any from 10.42.0.0/16 missing",
                "rule allow 8472/udp from 10.200.0.1 in on wg0 missing",
                "rule allow 8472/udp from 10.200.0.2 in on wg0 missing"
            ]
        );
        assert_eq!(
            commands(&d),
            "ufw allow from 10.42.0.0/16 to any comment pods\n\
             ufw allow in on wg0 proto udp from 10.200.0.1 to any port 8472\n\
             ufw allow in on wg0 proto udp from 10.200.0.2 to any port 8472"
        );
        // What ufw then writes to user.rules: in sync, and purge keeps every one of them.
        let have = "v4 allow any any 0.0.0.0/0 any 10.42.0.0/16 in comment=706f6473\n\
                    v4 allow udp 8472 0.0.0.0/0 any 10.200.0.1 in_wg0\n\
                    v4 allow udp 8472 0.0.0.0/0 any 10.200.0.2 in_wg0\n";
        assert!(diff(y, &format!("{fresh}{SSH4}{have}")).unwrap().is_none());
        // The same port without the interface is another rule: purged, and its own add.
        let other = "v4 allow udp 8472 0.0.0.0/0 any 10.200.0.9 in_wg0\n";
        let d = diff(y, &format!("{fresh}{SSH4}{have}{other}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            commands(&d),
            "ufw --force delete allow in on wg0 proto udp from 10.200.0.9 to any port 8472"
        );
        // A rule limited to an interface does not count as keeping SSH open.
        let e = diff("rules: [{port: \"22\", interface: wg0}]\n", BASE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lock labctl"), "{e}");
        let e = spec_err::<Ufw>("rules: [{port: \"22\", from: []}]\n");
        assert!(e.contains("empty list"), "{e}");
        let bad = validate(&spec::<Ufw>(
            "rules: [{port: \"22\"}, {port: \"1\", interface: \"wg 0\"}]\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(bad.contains("not a network interface name"), "{bad}");
    }

    #[test]
    fn spec_errors() {
        let e = spec_err::<Ufw>("rules: [{port: \"22\", proto: icmp}]\n");
        assert!(e.contains("t.yml:1") && e.contains("icmp"), "{e}");
        let e = spec_err::<Ufw>("rules: [{port: \"22\", src: any}]\n");
        assert!(e.contains("src"), "{e}");
        let e = spec_err::<Ufw>("default_incoming: drop\n");
        assert!(e.contains("t.yml:1:19") && e.contains("drop"), "{e}");
        let bad = |y: &str| validate(&spec::<Ufw>(y)).unwrap_err().to_string();
        assert_eq!(
            bad("rules: [{port: \"22\"}, {port: \"22\", from: 10.1.2.3/8}]\n"),
            "rules[1]: from `10.1.2.3/8` has host bits set: write 10.0.0.0/8"
        );
        assert!(
            bad("rules: [{port: \"22\"}, {port: \"22\", from: \"2001:db8::/32\"}]\n")
                .contains("IPv6 sources are not supported")
        );
        assert!(
            bad("rules: [{port: \"22\"}, {port: \"ssh\"}]\n").starts_with("rules[1]: port `ssh`")
        );
        assert!(
            bad("rules: [{port: \"22\"}, {port: \"1000:2000\", proto: any}]\n")
                .contains("needs `proto: tcp`")
        );
        assert!(bad("rules: [{port: \"22\"}, {port: 22, comment: again}]\n")
            .contains("allow 22/tcp is listed twice"));
        assert_eq!(normalize_cidr("10.0.0.5/32").unwrap(), "10.0.0.5");
    }

    #[test]
    fn uninstall_deletes_only_the_listed_rules_the_host_has() {
        let seen = crate::facts::ufw::parse(&format!(
            "{BASE}{SSH4}{SSH6}{API4}v4 allow any any 0.0.0.0/0 any 10.42.0.0/16 in comment=6b337320706f6473\ndone\n"
        ))
        .unwrap();
        let listed = serde_json::json!([
            {"from": "10.42.0.0/16", "comment": "k3s pods"},
            {"from": "10.43.0.0/16", "comment": "k3s services"},
            {"port": "6443", "from": "10.0.0.0/24", "comment": "kubernetes api"},
        ]);
        let d = RuleDeletion::of(&listed, &seen).unwrap().unwrap();
        assert_eq!(
            d.rules,
            [
                "allow any/any from 10.42.0.0/16",
                "allow 6443/tcp from 10.0.0.0/24"
            ]
        );
        let program = String::from_utf8(d.program).unwrap();
        let call = program.lines().last().unwrap();
        assert_eq!(
            call,
            r#"run([["--force","delete","allow","from","10.42.0.0/16","to","any"],["--force","delete","allow","proto","tcp","from","10.0.0.0/24","to","any","port","6443"]])"#
        );
        // SSH is not listed: never touched. Nothing listed present: nothing to do.
        assert!(!call.contains("\"22\""));
        let none = serde_json::json!([{"from": "10.43.0.0/16"}]);
        assert!(RuleDeletion::of(&none, &seen).unwrap().is_none());
        let off = crate::facts::ufw::parse("installed no\ndone\n").unwrap();
        assert!(RuleDeletion::of(&listed, &off).unwrap().is_none());
    }
}
