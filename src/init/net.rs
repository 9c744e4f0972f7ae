//! Tunnel addresses: each node gets the lowest free address of the WireGuard subnet.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

/// Why a WireGuard subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("`{0}` is not an IPv4 subnet like 10.200.0.0/24")]
    Syntax(String),
    #[error("`{0}`: use a prefix between /8 and /30")]
    Prefix(String),
}

impl std::str::FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let bad = || SubnetError::Syntax(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(SubnetError::Prefix(s.to_string()));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Subnet {
    /// The lowest host address not in `used` (network and broadcast excluded).
    pub fn free(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u32 << (32 - self.prefix);
        (1..size - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|a| !used.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_address_skips_used_ones() {
        let s: Subnet = "10.200.0.7/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.200.0.0/24");
        let used: Vec<Ipv4Addr> =
            vec!["10.200.0.1".parse().unwrap(), "10.200.0.3".parse().unwrap()];
        assert_eq!(s.free(&used), Some("10.200.0.2".parse().unwrap()));
        let tiny: Subnet = "10.0.0.0/30".parse().unwrap();
        let full: Vec<Ipv4Addr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert_eq!(tiny.free(&full), None);
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
    }

    #[test]
    fn refusals_say_what_a_subnet_looks_like() {
        assert_eq!(
            "10.0.0.0".parse::<Subnet>().unwrap_err().to_string(),
            "`10.0.0.0` is not an IPv4 subnet like 10.200.0.0/24"
        );
        assert_eq!(
            "10.0.0.0/31".parse::<Subnet>().unwrap_err(),
            SubnetError::Prefix("10.0.0.0/31".into())
        );
        assert_eq!(
            "10.0.0.0/31".parse::<Subnet>().unwrap_err().to_string(),
            "`10.0.0.0/31`: use a prefix between /8 and /30"
        );
    }
}
