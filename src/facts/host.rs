//! Ansible's common facts (`ansible_facts`, `ansible_distribution`, …) for templates: the
//! distribution and release, architecture, hostname, default IPv4 address and interface, memory,
//! CPU count, service and package managers. Gathered only when a template names one.

use serde_json::{json, Map, Value};

use super::{parse_err, Fact, FactError};

pub const KEY: &str = "host";

/// How every fact starts before the host's facts are known (`<fact:architecture>`).
pub const PLACEHOLDER: &str = "<fact:";

/// Fact names labctl gathers, as Ansible spells them (without the `ansible_` prefix).
pub const NAMES: &[&str] = &[
    "distribution",
    "distribution_release",
    "distribution_version",
    "distribution_major_version",
    "os_family",
    "system",
    "kernel",
    "architecture",
    "machine",
    "hostname",
    "nodename",
    "fqdn",
    "default_ipv4",
    "memtotal_mb",
    "processor_vcpus",
    "processor_nproc",
    "service_mgr",
    "pkg_mgr",
];

pub struct HostQuery;

impl Fact for HostQuery {
    type Output = Map<String, Value>;

    fn key(&self) -> String {
        KEY.into()
    }

    fn script(&self) -> String {
        r#"[ -r /etc/os-release ] && . /etc/os-release
printf 'id=%s\nname=%s\nversion_id=%s\ncodename=%s\n' "$ID" "$NAME" "$VERSION_ID" "$VERSION_CODENAME"
[ -r /etc/debian_version ] && printf 'debian_version=%s\n' "$(cat /etc/debian_version)"
printf 'arch=%s\nkernel=%s\nnodename=%s\n' "$(uname -m)" "$(uname -r)" "$(uname -n)"
printf 'fqdn=%s\n' "$(hostname -f 2>/dev/null || uname -n)"
__r=$(ip -4 route show default 2>/dev/null | head -n 1)
printf 'route=%s\n' "$__r"
__if=$(printf '%s\n' "$__r" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
[ -n "$__if" ] && printf 'addr=%s\n' "$(ip -4 -o addr show dev "$__if" 2>/dev/null | awk '{print $4; exit}')"
printf 'memkb=%s\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
printf 'cpus=%s\n' "$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
printf 'init=%s\n' "$(cat /proc/1/comm 2>/dev/null)"
for __p in apt-get dnf yum zypper apk pacman; do command -v "$__p" >/dev/null 2>&1 && { printf 'pkg=%s\n' "$__p"; break; }; done
true"#
            .into()
    }

    fn parse(&self, out: &str) -> Result<Self::Output, FactError> {
        parse(out)
    }
}

/// The probe's answer as Ansible names it: `{"distribution": "Debian", "default_ipv4":
/// {"address": …}, …}` (the keys of `ansible_facts`).
pub fn parse(out: &str) -> Result<Map<String, Value>, FactError> {
    let kv: std::collections::HashMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| kv.get(k).copied().unwrap_or("").trim();
    let id = get("id");
    if get("arch").is_empty() {
        return Err(parse_err(KEY, "no architecture in the answer"));
    }
    let distribution = match id {
        "debian" => "Debian".to_string(),
        "ubuntu" => "Ubuntu".to_string(),
        "" => "Unknown".to_string(),
        other => get("name")
            .split_whitespace()
            .next()
            .map(String::from)
            .unwrap_or_else(|| other.to_string()),
    };
    let version = match (id, get("debian_version")) {
        ("debian", v) if !v.is_empty() => v.to_string(),
        _ => get("version_id").to_string(),
    };
    let os_family = if matches!(id, "debian" | "ubuntu") {
        "Debian".to_string()
    } else {
        distribution.clone()
    };
    let nodename = get("nodename");
    let mut ipv4 = Map::new();
    let route = get("route");
    let word_after = |w: &str| {
        let mut it = route.split_whitespace();
        it.by_ref().find(|x| *x == w);
        it.next().map(String::from)
    };
    if let Some(i) = word_after("dev") {
        ipv4.insert("interface".into(), json!(i));
        ipv4.insert("alias".into(), json!(i));
    }
    if let Some(g) = word_after("via") {
        ipv4.insert("gateway".into(), json!(g));
    }
    if let Some((a, p)) = get("addr").split_once('/') {
        let prefix: u32 = p.parse().unwrap_or(32);
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        ipv4.insert("address".into(), json!(a));
        ipv4.insert("prefix".into(), json!(prefix.to_string()));
        ipv4.insert(
            "netmask".into(),
            json!(std::net::Ipv4Addr::from(mask).to_string()),
        );
        if let Ok(ip) = a.parse::<std::net::Ipv4Addr>() {
            let net = u32::from(ip) & mask;
            ipv4.insert(
                "network".into(),
                json!(std::net::Ipv4Addr::from(net).to_string()),
            );
        }
    }
    let cpus: u64 = get("cpus").parse().unwrap_or(1);
    let pkg = match get("pkg") {
        "apt-get" => "apt",
        other => other,
    };
    let mut m = Map::new();
    m.insert("distribution".into(), json!(distribution));
    m.insert("distribution_release".into(), json!(get("codename")));
    m.insert("distribution_version".into(), json!(version));
    m.insert(
        "distribution_major_version".into(),
        json!(version.split('.').next().unwrap_or("")),
    );
    m.insert("os_family".into(), json!(os_family));
    m.insert("system".into(), json!("Linux"));
    m.insert("kernel".into(), json!(get("kernel")));
    m.insert("architecture".into(), json!(get("arch")));
    m.insert("machine".into(), json!(get("arch")));
    m.insert(
        "hostname".into(),
        json!(nodename.split('.').next().unwrap_or(nodename)),
    );
    m.insert("nodename".into(), json!(nodename));
    m.insert("fqdn".into(), json!(get("fqdn")));
    m.insert("default_ipv4".into(), Value::Object(ipv4));
    m.insert(
        "memtotal_mb".into(),
        json!(get("memkb").parse::<u64>().unwrap_or(0) / 1024),
    );
    m.insert("processor_vcpus".into(), json!(cpus));
    m.insert("processor_nproc".into(), json!(cpus));
    m.insert("service_mgr".into(), json!(get("init")));
    m.insert("pkg_mgr".into(), json!(pkg));
    Ok(m)
}

/// The template vars for one host's facts: `ansible_facts` and each `ansible_NAME`.
pub fn template_vars(facts: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = vec![("ansible_facts".to_string(), Value::Object(facts.clone()))];
    out.extend(
        facts
            .iter()
            .map(|(k, v)| (format!("ansible_{k}"), v.clone())),
    );
    out
}

/// Stand-ins for `check`, which contacts no host: each fact renders as `<fact:NAME>`.
pub fn placeholders() -> Map<String, Value> {
    NAMES
        .iter()
        .map(|n| {
            let v = if *n == "default_ipv4" {
                json!({"address": "<fact:default_ipv4.address>", "interface": "<fact:default_ipv4.interface>", "gateway": "<fact:default_ipv4.gateway>"})
            } else {
                json!(format!("<fact:{n}>"))
            };
            (n.to_string(), v)
        })
        .collect()
}

/// Does this value hold a fact placeholder anywhere?
pub fn holds_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(PLACEHOLDER),
        Value::Array(a) => a.iter().any(holds_placeholder),
        Value::Object(m) => m.values().any(holds_placeholder),
        _ => false,
    }
}

/// The first placeholder in this value's strings, by name (`<fact:architecture>`). Walked, not
/// serialised: it runs for every item of every compile.
pub fn placeholder_in_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => placeholder_in(s.as_bytes()),
        Value::Array(a) => a.iter().find_map(placeholder_in_value),
        Value::Object(m) => m.values().find_map(placeholder_in_value),
        _ => None,
    }
}

/// The first placeholder in `text`, as a whole tag (`<fact:NAME>`) when a name follows it, else
/// as `<fact:…`. Only a name is ever quoted back: `text` may be a secret (a rendered template),
/// and an error message must not carry what follows the placeholder there.
pub fn placeholder_in(text: &[u8]) -> Option<String> {
    let needle = PLACEHOLDER.as_bytes();
    let at = text.windows(needle.len()).position(|w| w == needle)?;
    let after = &text[at + needle.len()..];
    let name = after
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    Some(match after.get(name) {
        Some(b'>') if name > 0 => {
            format!("{PLACEHOLDER}{}>", String::from_utf8_lossy(&after[..name]))
        }
        _ => format!("{PLACEHOLDER}…"),
    })
}

/// A resource that renders a fact not gathered for its host (another host's, read through
/// `hostvars`, of a host outside `--limit` or not probed yet in this run; or any fact in
/// `check`): it is built as one that awaits the fact, and never reaches a host nor a diff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("on host `{host}`, `{fact}` is a fact that was not gathered (another host's, read through hostvars, outside --limit or not yet probed in this run); nothing was run")]
pub struct NotGathered {
    pub host: String,
    /// The placeholder, `<fact:NAME>`.
    pub fact: String,
}

/// Does this text (a role file, a template, an inventory var) use a fact?
pub fn named_in(text: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let names = NAMES.join("|");
        regex::Regex::new(&format!(r"\bansible_(?:facts\b|(?:{names})\b)")).expect("valid regex")
    });
    text.contains("ansible_") && RE.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the script printed on a Debian 12 test host (`labctl testbed up`, then
    /// `labctl run all -- SCRIPT`).
    const DEBIAN: &str = "id=debian\nname=Debian GNU/Linux\nversion_id=12\ncodename=bookworm\n\
        debian_version=12.15\narch=x86_64\nkernel=6.18.44-fc-v657\nnodename=ansible-cap-1\n\
        fqdn=ansible-cap-1\nroute=default via 10.213.1.1 dev host0 \naddr=10.213.1.2/24\n\
        memkb=24684092\ncpus=2\ninit=systemd\npkg=apt-get\n";

    #[test]
    fn a_placeholder_is_quoted_back_only_when_a_name_follows() {
        let tag = |t: &str| placeholder_in(t.as_bytes());
        assert_eq!(
            tag("arch=<fact:architecture> x").as_deref(),
            Some("<fact:architecture>")
        );
        assert_eq!(
            tag("a <fact:default_ipv4.address>").as_deref(),
            Some("<fact:default_ipv4.address>")
        );
        // Cut or not a name: found, but nothing after the needle is repeated.
        assert_eq!(tag("pw=<fact:s3cr et>").as_deref(), Some("<fact:…"));
        assert_eq!(tag("host <fact:ho").as_deref(), Some("<fact:…"));
        assert_eq!(tag("no placeholder"), None);
        let v = json!({"a": [1, "x"], "b": {"c": "<fact:fqdn>/<fact:hostname>"}});
        assert_eq!(placeholder_in_value(&v).as_deref(), Some("<fact:fqdn>"));
        assert_eq!(placeholder_in_value(&json!({"a": "b"})), None);
    }

    #[test]
    fn named_like_ansible() {
        let f = parse(DEBIAN).unwrap();
        assert_eq!(f["distribution"], "Debian");
        assert_eq!(f["distribution_release"], "bookworm");
        assert_eq!(f["distribution_version"], "12.15");
        assert_eq!(f["distribution_major_version"], "12");
        assert_eq!(f["os_family"], "Debian");
        assert_eq!(f["architecture"], "x86_64");
        assert_eq!(f["default_ipv4"]["address"], "10.213.1.2");
        assert_eq!(f["default_ipv4"]["interface"], "host0");
        assert_eq!(f["default_ipv4"]["gateway"], "10.213.1.1");
        assert_eq!(f["default_ipv4"]["netmask"], "255.255.255.0");
        assert_eq!(f["memtotal_mb"], 24105);
        assert_eq!(f["hostname"], "ansible-cap-1");
        assert_eq!(f["processor_vcpus"], 2);
        assert_eq!(f["service_mgr"], "systemd");
        assert_eq!(f["pkg_mgr"], "apt");
        let ubuntu = parse("id=ubuntu\nversion_id=24.04\ncodename=noble\narch=aarch64\n").unwrap();
        assert_eq!(
            (
                ubuntu["distribution"].as_str(),
                ubuntu["distribution_version"].as_str()
            ),
            (Some("Ubuntu"), Some("24.04"))
        );
    }

    #[test]
    fn detects_fact_names() {
        assert!(named_in("{{ ansible_facts['architecture'] }}"));
        assert!(named_in("{{ ansible_default_ipv4.address }}"));
        assert!(!named_in("{{ ansible_host }} {{ ansible_user }}"));
    }
}
