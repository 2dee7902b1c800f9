//! Where requests the engine sends on a store's behalf (its webhooks) may go:
//! never to loopback, private, link-local, multicast, reserved or cloud
//! metadata addresses, unless an operator's allow-list names the network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Host names that mean "this machine" or a cloud's metadata service.
const INTERNAL_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why an address is internal, or `None` for a public one.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (127, _) => "loopback",
        (0, _) => "unspecified",
        (10, _) | (192, 168) => "private",
        (172, 16..=31) => "private",
        (100, 64..=127) => "private (shared address space)",
        (169, 254) => "link-local or metadata",
        (192, 0) if c == 0 => "reserved",
        (198, 18..=19) => "reserved",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_kind(v4);
    }
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local) or metadata")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xff00 == 0xff00 {
        Some("multicast")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4
/// IPv6 address: where a packet to it really goes.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_loopback() && !ip.is_unspecified() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// What an outbound target was refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must be an http(s) URL with a host")]
    NotAUrl,
    #[error("{host} is a {kind} address, which store webhooks may not reach")]
    Internal { host: String, kind: &'static str },
    #[error("{host} names this machine or a metadata service, which store webhooks may not reach")]
    InternalName { host: String },
}

/// The host of a target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

/// A URL's host and port, as the connection will use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        let url = url::Url::parse(raw.trim()).map_err(|_| Refusal::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::NotAUrl);
        }
        let port = url.port_or_known_default().ok_or(Refusal::NotAUrl)?;
        let host = match url.host().ok_or(Refusal::NotAUrl)? {
            url::Host::Ipv4(v4) => Host::Ip(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Host::Ip(IpAddr::V6(v6)),
            url::Host::Domain(name) => Host::Name(name.trim_end_matches('.').to_ascii_lowercase()),
        };
        Ok(Self { host, port })
    }
}

/// The operator's allow-list over the rules above.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Whether a connection to `ip` may be made.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        match internal_kind(ip) {
            Some(kind) if !self.allows(ip) => Err(Refusal::Internal {
                host: host.to_owned(),
                kind,
            }),
            _ => Ok(()),
        }
    }

    /// What can be decided before any name is resolved: the URL's shape, a
    /// literal address, and names that always mean something internal.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        match &target.host {
            Host::Ip(ip) => self.check_ip(&ip.to_string(), *ip),
            Host::Name(name) => {
                let internal = INTERNAL_NAMES.contains(&name.as_str())
                    || name.ends_with(".localhost")
                    || name.ends_with(".internal");
                if internal && self.allowed.is_empty() {
                    return Err(Refusal::InternalName { host: name.clone() });
                }
                Ok(())
            }
        }
    }

    /// Every address a name resolved to must be allowed (a single internal
    /// one refuses the lot: the connection could pick it).
    pub fn check_resolved(&self, host: &str, addresses: &[IpAddr]) -> Result<(), Refusal> {
        addresses.iter().try_for_each(|ip| self.check_ip(host, *ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let target = Target::parse(url).unwrap();
        OutboundPolicy::default().check_target(&target).is_err()
    }

    #[test]
    fn internal_literals_are_refused_and_public_ones_pass() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://127.9.9.9/",
            "http://0.0.0.0/",
            "http://10.0.0.5/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert!(refused(url), "{url} must be refused");
        }
        for url in [
            "https://hooks.example.com/flashdrop",
            "http://203.0.113.10/hook",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!refused(url), "{url} is public");
        }
        assert_eq!(Target::parse("ftp://x.example/"), Err(Refusal::NotAUrl));
        assert_eq!(Target::parse("not a url"), Err(Refusal::NotAUrl));
    }

    #[test]
    fn the_allow_list_admits_named_networks_only() {
        let policy = OutboundPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        let loopback = Target::parse("http://127.0.0.1:9/").unwrap();
        assert!(policy.check_target(&loopback).is_ok());
        let mapped = Target::parse("http://[::ffff:127.0.0.1]:9/").unwrap();
        assert!(policy.check_target(&mapped).is_ok());
        let other = Target::parse("http://127.0.0.2:9/").unwrap();
        assert!(policy.check_target(&other).is_err());
        let metadata = Target::parse("http://169.254.169.254/").unwrap();
        assert!(policy.check_target(&metadata).is_err());
    }

    #[test]
    fn a_name_is_refused_when_any_of_its_addresses_is_internal() {
        let policy = OutboundPolicy::default();
        let public: IpAddr = "203.0.113.9".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(policy.check_resolved("h.example", &[public]).is_ok());
        assert_eq!(
            policy.check_resolved("h.example", &[public, private]),
            Err(Refusal::Internal {
                host: "h.example".into(),
                kind: "private"
            })
        );
    }
}
