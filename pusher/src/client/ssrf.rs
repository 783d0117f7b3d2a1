//! The SSRF guard (PROTOCOL.md Part 2 §10 S1): push destinations are chosen
//! by contract authors, so the pusher only connects to public addresses,
//! unless an address is inside an allowed network (`ALIAS_PUSH_ALLOW`).
//!
//! [`SsrfGuard`] is reqwest's DNS resolver: it resolves a host name with
//! tokio's resolver, drops every refused address and hands the rest to the
//! connector, which connects to exactly those (no second lookup, so DNS
//! rebinding cannot slip a private address in). reqwest does not call the
//! resolver for IP-literal hosts, so [`SsrfGuard::check_url`] checks those
//! before each request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why an address is not a public unicast destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` ("this network").
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `100.64.0.0/10` (carrier-grade NAT).
    SharedAddressSpace,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated site-local).
    SiteLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
    /// `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// `192.0.0.0/24`, `2001::/23` (IETF protocol assignments, Teredo).
    ProtocolAssignment,
    /// `240.0.0.0/4`, `192.88.99.0/24`, `100::/64`, `64:ff9b:1::/48`,
    /// IPv4-compatible `::a.b.c.d`, and IPv6 outside `2000::/3`.
    Reserved,
}

impl AddrClass {
    /// A short description for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Unspecified => "unspecified address",
            AddrClass::ThisNetwork => "\"this network\" address",
            AddrClass::Loopback => "loopback address",
            AddrClass::Private => "private address",
            AddrClass::SharedAddressSpace => "shared (CGNAT) address",
            AddrClass::LinkLocal => "link-local address",
            AddrClass::UniqueLocal => "unique-local address",
            AddrClass::SiteLocal => "site-local address",
            AddrClass::Multicast => "multicast address",
            AddrClass::Broadcast => "broadcast address",
            AddrClass::Documentation => "documentation address",
            AddrClass::Benchmarking => "benchmarking address",
            AddrClass::ProtocolAssignment => "IETF protocol assignment",
            AddrClass::Reserved => "reserved address",
        }
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an IPv4 address that is not public unicast.
fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => AddrClass::Unspecified,
        _ if ip.is_broadcast() => AddrClass::Broadcast,
        (0, _, _) => AddrClass::ThisNetwork,
        (10, _, _) => AddrClass::Private,
        (100, b, _) if b & 0xc0 == 64 => AddrClass::SharedAddressSpace,
        (127, _, _) => AddrClass::Loopback,
        (169, 254, _) => AddrClass::LinkLocal,
        (172, b, _) if b & 0xf0 == 16 => AddrClass::Private,
        (192, 0, 0) => AddrClass::ProtocolAssignment,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddrClass::Documentation,
        (192, 88, 99) => AddrClass::Reserved,
        (192, 168, _) => AddrClass::Private,
        (198, b, _) if b & 0xfe == 18 => AddrClass::Benchmarking,
        (a, _, _) if a & 0xf0 == 224 => AddrClass::Multicast,
        (a, _, _) if a >= 240 => AddrClass::Reserved,
        _ => return None,
    })
}

/// The IPv4 address in the low 32 bits.
fn low_v4(seg: &[u16; 8]) -> Ipv4Addr {
    Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    )
}

/// The class of an IPv6 address that is not public unicast; IPv4-mapped,
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) forms are judged by the
/// IPv4 address they carry.
fn classify_v6(ip: Ipv6Addr) -> Option<AddrClass> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some(AddrClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddrClass::Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    match seg {
        // IPv4-compatible (deprecated): never a real destination.
        [0, 0, 0, 0, 0, 0, _, _] => Some(AddrClass::Reserved),
        // NAT64 well-known prefix: as the IPv4 address it reaches.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => classify_v4(low_v4(&seg)),
        // Local-use NAT64.
        [0x64, 0xff9b, 1, ..] => Some(AddrClass::Reserved),
        // Discard-only.
        [0x100, 0, 0, 0, ..] => Some(AddrClass::Reserved),
        [0x2001, 0xdb8, ..] => Some(AddrClass::Documentation),
        [0x2001, b, ..] if b < 0x200 => Some(AddrClass::ProtocolAssignment),
        // 6to4: as the IPv4 address it embeds.
        [0x2002, hi, lo, ..] => classify_v4(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        [0x3fff, b, ..] if b < 0x1000 => Some(AddrClass::Documentation),
        [a, ..] if a & 0xfe00 == 0xfc00 => Some(AddrClass::UniqueLocal),
        [a, ..] if a & 0xffc0 == 0xfe80 => Some(AddrClass::LinkLocal),
        [a, ..] if a & 0xffc0 == 0xfec0 => Some(AddrClass::SiteLocal),
        [a, ..] if a & 0xff00 == 0xff00 => Some(AddrClass::Multicast),
        // Everything outside global unicast 2000::/3.
        [a, ..] if a & 0xe000 != 0x2000 => Some(AddrClass::Reserved),
        _ => None,
    }
}

/// Why `ip` is not a public unicast address, or `None` when it is.
pub fn classify(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// A destination refused by the guard. Permanent: retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("push destination {host} refused: {addr} is a {reason} (not in ALIAS_PUSH_ALLOW)")]
pub struct Refused {
    /// The host of the URL.
    pub host: String,
    /// The refused address (the literal, or the first resolved one).
    pub addr: IpAddr,
    /// Why it is refused.
    pub reason: AddrClass,
}

/// The SSRF guard: an allow-list of networks and reqwest's resolver.
///
/// Cloning is cheap (the list is shared).
#[derive(Debug, Clone, Default)]
pub struct SsrfGuard {
    allow: Arc<[IpNet]>,
}

impl SsrfGuard {
    /// A guard that lets through public addresses and those inside `allow`
    /// (e.g. `Config::push_allow`).
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: allow.into(),
        }
    }

    /// The allowed networks.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    fn in_allow_list(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
    }

    /// Checks one address of `host`.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        match classify(ip) {
            Some(reason) if !self.in_allow_list(ip) => Err(Refused {
                host: host.to_owned(),
                addr: ip,
                reason,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a URL's host when it is an IP literal (names are checked by
    /// the resolver when reqwest connects).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or_default();
        match url.host() {
            Some(Host::Ipv4(v4)) => self.check_ip(host, IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(host, IpAddr::V6(v6)),
            Some(Host::Domain(_)) | None => Ok(()),
        }
    }

    /// Keeps the allowed addresses of a resolution; refuses when none is
    /// left.
    pub fn filter(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut kept = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match self.check_ip(host, addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(refused) => {
                    tracing::debug!(host, %addr, reason = %refused.reason, "dropping a refused address");
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match (kept.is_empty(), first_refusal) {
            (true, Some(refused)) => Err(refused),
            _ => Ok(kept),
        }
    }
}

impl Resolve for SsrfGuard {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = guard.filter(&host, resolved)?;
            if kept.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host}: no address"),
                )
                .into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refused_ranges() {
        for (addr, class) in [
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::ThisNetwork),
            ("10.0.0.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::SharedAddressSpace),
            ("100.127.255.255", AddrClass::SharedAddressSpace),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("192.0.0.8", AddrClass::ProtocolAssignment),
            ("192.0.2.1", AddrClass::Documentation),
            ("192.88.99.1", AddrClass::Reserved),
            ("192.168.1.1", AddrClass::Private),
            ("198.18.0.1", AddrClass::Benchmarking),
            ("198.19.255.1", AddrClass::Benchmarking),
            ("198.51.100.7", AddrClass::Documentation),
            ("203.0.113.9", AddrClass::Documentation),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("240.0.0.1", AddrClass::Reserved),
            ("255.255.255.255", AddrClass::Broadcast),
            ("::", AddrClass::Unspecified),
            ("::1", AddrClass::Loopback),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:10.1.2.3", AddrClass::Private),
            ("::ffff:169.254.169.254", AddrClass::LinkLocal),
            ("::127.0.0.1", AddrClass::Reserved),
            ("::8.8.8.8", AddrClass::Reserved),
            ("64:ff9b::10.0.0.1", AddrClass::Private),
            ("64:ff9b::127.0.0.1", AddrClass::Loopback),
            ("64:ff9b:1::1", AddrClass::Reserved),
            ("100::1", AddrClass::Reserved),
            ("2001::1", AddrClass::ProtocolAssignment),
            ("2001:db8::1", AddrClass::Documentation),
            ("2002:7f00:1::", AddrClass::Loopback),
            ("2002:c0a8:101::1", AddrClass::Private),
            ("3fff::1", AddrClass::Documentation),
            ("fc00::1", AddrClass::UniqueLocal),
            ("fd00::1", AddrClass::UniqueLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("febf::1", AddrClass::LinkLocal),
            ("fec0::1", AddrClass::SiteLocal),
            ("ff02::1", AddrClass::Multicast),
            ("4000::1", AddrClass::Reserved),
            ("1::1", AddrClass::Reserved),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4007:80e::200e",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
            "2001:200::1",
            "3fff:1000::1",
        ] {
            assert_eq!(classify(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn allow_list_opens_networks() {
        let guard = SsrfGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(guard.check_ip("h", ip("127.0.0.1")).is_ok());
        assert!(guard.check_ip("h", ip("::ffff:127.0.0.1")).is_ok());
        assert!(guard.check_ip("h", ip("fd12::1")).is_ok());
        assert!(guard.check_ip("h", ip("8.8.8.8")).is_ok());
        let refused = guard.check_ip("h", ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.reason, AddrClass::Private);
        assert!(guard.check_ip("h", ip("::1")).is_err());
    }

    #[test]
    fn literal_hosts_are_checked() {
        let guard = SsrfGuard::default();
        for url in [
            "http://127.0.0.1:6379/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://[::]/",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(guard.check_url(&url).is_err(), "{url}");
        }
        assert!(guard
            .check_url(&Url::parse("https://client.example/").unwrap())
            .is_ok());
        assert!(guard
            .check_url(&Url::parse("https://8.8.8.8/").unwrap())
            .is_ok());
    }

    #[test]
    fn resolution_keeps_allowed_addresses() {
        let guard = SsrfGuard::default();
        let addrs = [
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([93, 184, 215, 14], 0)),
        ];
        assert_eq!(guard.filter("h", addrs).unwrap(), vec![addrs[1]]);
        let refused = guard.filter("h", [addrs[0]]).unwrap_err();
        assert_eq!(refused.addr, ip("127.0.0.1"));
        assert!(guard.filter("h", []).unwrap().is_empty());
    }

    #[tokio::test]
    async fn localhost_is_refused_by_the_resolver() {
        let guard = SsrfGuard::default();
        let name: Name = "localhost".parse().unwrap();
        let err = guard.resolve(name).await.err().unwrap();
        let refused = err.downcast_ref::<Refused>().unwrap();
        assert_eq!(refused.reason, AddrClass::Loopback);
    }
}
