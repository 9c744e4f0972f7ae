//! The part of `ansible.utils.ipaddr` homelab roles use: validate, take the address, network,
//! prefix, netmask or broadcast of a CIDR, the Nth host of a subnet, and `ipwrap` for IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use minijinja::{Environment, Error, ErrorKind, Value};

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("ipaddr", |v: Value, q: Option<Value>| {
        each(v, |s| ipaddr(s, q.as_ref(), None))
    });
    env.add_filter("ipv4", |v: Value, q: Option<Value>| {
        each(v, |s| ipaddr(s, q.as_ref(), Some(4)))
    });
    env.add_filter("ipv6", |v: Value, q: Option<Value>| {
        each(v, |s| ipaddr(s, q.as_ref(), Some(6)))
    });
    env.add_filter("ipwrap", |v: Value| {
        each(v, |s| {
            Ok(Value::from(match Cidr::parse(s) {
                Some(c) if c.bits == 128 => match s.split_once('/') {
                    Some((a, p)) => format!("[{a}]/{p}"),
                    None => format!("[{s}]"),
                },
                _ => s.to_string(),
            }))
        })
    });
    env.add_filter("nthhost", |v: String, n: i64| -> Result<Value, Error> {
        let c = Cidr::parse(&v).ok_or_else(|| bad("nthhost", &v))?;
        Ok(c.nth(n)
            .map(|a| Value::from(c.fmt(a)))
            .unwrap_or(Value::from(false)))
    });
}

fn bad(filter: &str, v: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{filter}: `{v}` is not an IP address or network"),
    )
}

/// Lists are filtered item by item, dropping the items that are not addresses (as Ansible does);
/// items that are not strings pass through `ipwrap` untouched.
fn each(v: Value, f: impl Fn(&str) -> Result<Value, Error>) -> Result<Value, Error> {
    if let Some(s) = v.as_str() {
        return f(s);
    }
    if matches!(v.kind(), minijinja::value::ValueKind::Seq) {
        let mut out = Vec::new();
        for x in v.try_iter()? {
            let Some(s) = x.as_str() else {
                out.push(x);
                continue;
            };
            let r = f(s)?;
            // `false` means "not an address": dropped from the list.
            if r.kind() != minijinja::value::ValueKind::Bool || r.is_true() {
                out.push(r);
            }
        }
        return Ok(Value::from(out));
    }
    f(&v.to_string())
}

#[derive(Clone, Copy)]
struct Cidr {
    addr: u128,
    prefix: u32,
    bits: u32,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let (addr, bits) = match ip {
            IpAddr::V4(v) => (u32::from(v) as u128, 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        };
        let prefix = match p {
            None => bits,
            Some(p) => match p.parse::<u32>() {
                Ok(n) if n <= bits => n,
                // A netmask (`10.0.0.0/255.255.255.0`).
                _ => {
                    let m: Ipv4Addr = p.parse().ok()?;
                    let m = u32::from(m);
                    if bits != 32 || m.leading_ones() + m.trailing_zeros() != 32 {
                        return None;
                    }
                    m.leading_ones()
                }
            },
        };
        Some(Cidr { addr, prefix, bits })
    }

    fn mask(&self) -> u128 {
        let all = if self.bits == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        if self.prefix == 0 {
            0
        } else {
            all & !((1u128 << (self.bits - self.prefix)) - 1).min(all)
        }
    }

    fn network(&self) -> u128 {
        self.addr & self.mask()
    }

    fn broadcast(&self) -> u128 {
        let all = if self.bits == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        self.network() | (all & !self.mask())
    }

    fn size(&self) -> u128 {
        self.broadcast() - self.network() + 1
    }

    fn nth(&self, n: i64) -> Option<u128> {
        let size = self.size();
        let off = if n >= 0 {
            n as u128
        } else {
            size.checked_sub(n.unsigned_abs() as u128)?
        };
        (off < size).then(|| self.network() + off)
    }

    fn fmt(&self, a: u128) -> String {
        if self.bits == 32 {
            Ipv4Addr::from(a as u32).to_string()
        } else {
            Ipv6Addr::from(a).to_string()
        }
    }
}

fn ipaddr(s: &str, q: Option<&Value>, version: Option<u32>) -> Result<Value, Error> {
    let no = Value::from(false);
    let Some(c) = Cidr::parse(s) else {
        return Ok(no);
    };
    if version.is_some_and(|v| (v == 4) != (c.bits == 32)) {
        return Ok(no);
    }
    let Some(q) = q.filter(|q| !q.is_none() && !q.is_undefined()) else {
        return Ok(Value::from(s));
    };
    if let Some(n) = q.as_i64() {
        return Ok(c
            .nth(n)
            .map(|a| Value::from(format!("{}/{}", c.fmt(a), c.prefix)))
            .unwrap_or(no));
    }
    let q = q.as_str().unwrap_or_default();
    Ok(match q {
        "address" | "ip" => Value::from(c.fmt(c.addr)),
        "network" => Value::from(c.fmt(c.network())),
        "prefix" => Value::from(c.prefix),
        "netmask" => Value::from(c.fmt(c.mask())),
        "broadcast" => Value::from(c.fmt(c.broadcast())),
        "size" => Value::from(c.size() as u64),
        "subnet" | "cidr" => Value::from(format!("{}/{}", c.fmt(c.network()), c.prefix)),
        "net" => {
            if c.addr == c.network() && s.contains('/') {
                Value::from(format!("{}/{}", c.fmt(c.network()), c.prefix))
            } else {
                no
            }
        }
        "host" => {
            if c.prefix == c.bits || c.addr != c.network() {
                Value::from(format!("{}/{}", c.fmt(c.addr), c.prefix))
            } else {
                no
            }
        }
        "host/prefix" | "address/prefix" => Value::from(format!("{}/{}", c.fmt(c.addr), c.prefix)),
        "version" => Value::from(if c.bits == 32 { 4 } else { 6 }),
        "private" | "public" => {
            let private = match c.bits {
                32 => Ipv4Addr::from(c.addr as u32).is_private(),
                _ => (c.addr >> 121) == 0x7e, // fc00::/7
            };
            if private == (q == "private") {
                Value::from(s)
            } else {
                no
            }
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("ipaddr: query `{other}` is not one labctl has (address, network, prefix, netmask, broadcast, size, subnet, net, host, address/prefix, version, private, public, or a number)"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn r(src: &str) -> String {
        crate::template::render_for_test(Path::new("."), &Default::default(), src)
    }

    #[test]
    fn ipaddr_queries_as_documented() {
        // From the ansible.utils ipaddr filter guide.
        assert_eq!(
            r("{{ '192.0.2.1/24' | ansible.utils.ipaddr('address') }}"),
            "192.0.2.1"
        );
        assert_eq!(r("{{ '192.0.2.1/24' | ipaddr('network') }}"), "192.0.2.0");
        assert_eq!(r("{{ '192.0.2.1/24' | ipaddr('prefix') }}"), "24");
        assert_eq!(
            r("{{ '192.0.2.1/24' | ipaddr('netmask') }}"),
            "255.255.255.0"
        );
        assert_eq!(
            r("{{ '192.0.2.1/24' | ipaddr('broadcast') }}"),
            "192.0.2.255"
        );
        assert_eq!(r("{{ '192.0.2.1/24' | ipaddr('subnet') }}"), "192.0.2.0/24");
        assert_eq!(r("{{ '192.168.0.0/24' | ipaddr(5) }}"), "192.168.0.5/24");
        assert_eq!(r("{{ '192.168.0.0/24' | ipaddr(-1) }}"), "192.168.0.255/24");
        assert_eq!(r("{{ '10.0.0.0/8' | nthhost(305) }}"), "10.0.1.49");
        assert_eq!(r("{{ 'nope' | ipaddr }}"), "False");
        assert_eq!(
            r("{{ ['192.24.2.1', 'host.fqdn', '::1', '192.168.32.0/24'] | ipaddr }}"),
            "['192.24.2.1', '::1', '192.168.32.0/24']"
        );
        assert_eq!(
            r("{{ '2001:db8::1/64' | ipaddr('network') }}"),
            "2001:db8::"
        );
        assert_eq!(r("{{ '192.0.2.1' | ipv6 }}"), "False");
    }

    #[test]
    fn ipwrap_as_documented() {
        assert_eq!(
            r("{{ ['192.24.2.1', 'host.fqdn', '::1', '192.168.32.0/24', 'fe80::100/10', True] | ansible.utils.ipwrap }}"),
            "['192.24.2.1', 'host.fqdn', '[::1]', '192.168.32.0/24', '[fe80::100]/10', True]"
        );
    }
}
