//! The SSRF guard against every spelling of a private destination, with
//! real requests to a sink on loopback, and property tests: no push URL,
//! however written, gets a private address past the guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use pusher::client::{ClientConfig, PushClient, PushError, PushTarget, SsrfGuard};
use sink::{Faults, Sink, SinkConfig};

const ID: &str = "AAAA";

#[tokio::test]
async fn private_destinations_are_refused_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SinkConfig::new(dir.path());
    config.faults = Faults::none();
    let (_, sink) = Sink::start(config).unwrap();
    let port = sink.addr().port();
    let strict = PushClient::new(
        SsrfGuard::default(),
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    for host in [
        "127.0.0.1",
        "0177.0.0.1",      // octal
        "0x7f.0.0.1",      // hex
        "0x7f000001",      // one hex number
        "2130706433",      // one decimal number
        "017700000001",    // one octal number
        "127.1",           // short form
        "127.000.000.001", // zero-padded
        "localhost",
        "LOCALHOST",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::1]",
        "0.0.0.0",
        "[::]",
    ] {
        let base = format!("http://{host}:{port}/alias/push/");
        let Ok(target) = PushTarget::new(&base, ID) else {
            continue; // refused even earlier
        };
        let err = strict.start(&target, "grant").await.unwrap_err();
        assert!(matches!(err, PushError::Refused(_)), "{host}: {err:?}");
    }
    // Addresses no test can bind: refused before any connection.
    for host in [
        "169.254.169.254",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "100.64.0.1",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "0251.0376.0251.0376", // 169.254.169.254 in octal
        "2852039166",          // 169.254.169.254 as one number
    ] {
        let target = PushTarget::new(&format!("http://{host}/alias/push/"), ID).unwrap();
        let err = strict.start(&target, "grant").await.unwrap_err();
        assert!(matches!(err, PushError::Refused(_)), "{host}: {err:?}");
    }
    assert_eq!(sink.counters().requests, 0, "nothing reached the sink");
    sink.stop();
}

fn private_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(127, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(10, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(0, b, c, d)),
        (16u8..32, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(172, b, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(192, 168, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(169, 254, c, d)),
        (64u8..128, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(100, b, c, d)),
        (224u8..=255, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
    ]
}

fn private_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        Just(Ipv6Addr::LOCALHOST),
        Just(Ipv6Addr::UNSPECIFIED),
        any::<[u16; 7]>().prop_map(|s| Ipv6Addr::new(
            0xfc00 | (s[0] & 0x1ff),
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            1
        )),
        any::<[u16; 7]>().prop_map(|s| Ipv6Addr::new(
            0xfe80 | (s[0] & 0x3f),
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            1
        )),
        any::<[u16; 7]>().prop_map(|s| Ipv6Addr::new(
            0xff00 | (s[0] & 0xff),
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            1
        )),
        private_v4().prop_map(|v4| v4.to_ipv6_mapped()),
        private_v4().prop_map(|v4| {
            let [a, b, c, d] = v4.octets();
            Ipv6Addr::new(
                0x2002,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
                0,
                0,
                0,
                0,
                1,
            )
        }),
        private_v4().prop_map(|v4| {
            let [a, b, c, d] = v4.octets();
            Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            )
        }),
    ]
}

/// The spellings of an IPv4 host that WHATWG URL parsing accepts.
fn spell_v4(ip: Ipv4Addr, form: u8) -> String {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    match form % 6 {
        0 => ip.to_string(),
        1 => n.to_string(),
        2 => format!("0x{n:x}"),
        3 => format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        4 => format!("0x{a:x}.{b}.{}", u32::from(c) << 8 | u32::from(d)),
        _ => format!("{a}.{}", n & 0x00ff_ffff),
    }
}

fn url_around(host: &str, port: u16, path: &str, userinfo: bool, upper: bool) -> String {
    let scheme = if upper { "HTTP" } else { "http" };
    let user = if userinfo { "user:pw@" } else { "" };
    format!("{scheme}://{user}{host}:{port}/{path}/")
}

/// The special-purpose IPv4 networks (IANA registry): none is a public
/// unicast destination. Written here as a table, independently of the
/// guard's own classification, so that the property tests can catch it.
const SPECIAL_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 networks that are never public, whatever they carry.
const SPECIAL_V6: &[&str] = &[
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

fn nets(table: &[&str]) -> Vec<ipnet::IpNet> {
    table.iter().map(|n| n.parse().unwrap()).collect()
}

/// The oracle: whether `ip` is a public unicast address. IPv4-mapped,
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses are as public as
/// the IPv4 address they carry; other IPv6 addresses must be in `2000::/3`.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !nets(SPECIAL_V4).iter().any(|n| n.contains(&IpAddr::V4(v4))),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let carried = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            };
            if s[..6] == [0, 0, 0, 0, 0, 0xffff] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return carried(s[6], s[7]);
            }
            if s[0] == 0x2002 {
                return carried(s[1], s[2]);
            }
            let global = "2000::/3".parse::<ipnet::IpNet>().unwrap();
            global.contains(&ip) && !nets(SPECIAL_V6).iter().any(|n| n.contains(&ip))
        }
    }
}

/// Addresses inside the special networks, at their edges, or anywhere.
fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    let edges = (0..SPECIAL_V4.len(), any::<u32>(), any::<bool>()).prop_map(|(i, r, last)| {
        let net: ipnet::Ipv4Net = SPECIAL_V4[i].parse().unwrap();
        let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
        // Inside, or one past either end.
        match r % 4 {
            0 => Ipv4Addr::from(if last { hi } else { lo }),
            1 => Ipv4Addr::from(if last {
                hi.wrapping_add(1)
            } else {
                lo.wrapping_sub(1)
            }),
            _ => Ipv4Addr::from(lo + r % (hi - lo + 1)),
        }
    });
    prop_oneof![edges, any::<u32>().prop_map(Ipv4Addr::from)]
}

fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    let inside = (0..SPECIAL_V6.len(), any::<u128>()).prop_map(|(i, r)| {
        let net: ipnet::Ipv6Net = SPECIAL_V6[i].parse().unwrap();
        let host = !0u128 >> net.prefix_len();
        Ipv6Addr::from(u128::from(net.network()) | (r & host))
    });
    let carrying = (any_v4(), 0u8..3, any::<u16>()).prop_map(|(v4, form, r)| {
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        match form {
            0 => v4.to_ipv6_mapped(),
            1 => Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            _ => Ipv6Addr::new(0x2002, hi, lo, r, 0, 0, 0, 1),
        }
    });
    let global = any::<u128>().prop_map(|r| Ipv6Addr::from((r >> 3) | (1u128 << 125)));
    prop_oneof![
        inside,
        carrying,
        global,
        Just(Ipv6Addr::LOCALHOST),
        Just(Ipv6Addr::UNSPECIFIED),
        any::<u128>().prop_map(Ipv6Addr::from),
    ]
}

/// A push URL host: an IPv4 address in any spelling, an IPv6 literal, or
/// arbitrary text.
fn any_host() -> impl Strategy<Value = String> {
    prop_oneof![
        (any_v4(), any::<u8>()).prop_map(|(ip, form)| spell_v4(ip, form)),
        any_v6().prop_map(|ip| format!("[{ip}]")),
        "[0-9a-fxA-FX.:\\[\\]%@ffff]{1,40}",
    ]
}

/// The IP literal a push URL reaches, when it parses and names one.
fn literal_of(url: &str) -> Option<IpAddr> {
    let target = PushTarget::new(url, ID).ok()?;
    match target.transfer_url().host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Whether the guard lets a push URL through.
fn passes(guard: &SsrfGuard, url: &str) -> bool {
    PushTarget::new(url, ID).is_ok_and(|t| guard.check_url(t.transfer_url()).is_ok())
}

#[test]
fn the_oracle_knows_public_from_private() {
    for (ip, public) in [
        ("8.8.8.8", true),
        ("10.1.2.3", false),
        ("172.32.0.1", true),
        ("172.31.255.255", false),
        ("100.128.0.1", true),
        ("::ffff:8.8.8.8", true),
        ("::ffff:169.254.169.254", false),
        ("64:ff9b::a00:1", false),
        ("2002:808:808::1", true),
        ("2002:a00:1::1", false),
        ("2606:4700::1111", true),
        ("fd00::1", false),
        ("4000::1", false),
    ] {
        assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
    }
    let guard = SsrfGuard::default();
    assert!(passes(&guard, "http://8.8.8.8/alias/push/"));
    assert!(!passes(&guard, "http://0x7f.1/alias/push/"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn private_ipv4_urls_never_pass(
        ip in private_v4(),
        form in any::<u8>(),
        port in 1u16..,
        path in "[a-z]{0,8}",
        userinfo in any::<bool>(),
        upper in any::<bool>(),
    ) {
        let guard = SsrfGuard::default();
        let url = url_around(&spell_v4(ip, form), port, &path, userinfo, upper);
        if let Some(literal) = literal_of(&url) {
            prop_assert_eq!(literal, IpAddr::V4(ip), "{}", url);
        }
        prop_assert!(!passes(&guard, &url), "{}", url);
        // Resolved to that address, a name is refused as well.
        prop_assert!(guard.filter("h", [SocketAddr::new(IpAddr::V4(ip), port)]).is_err());
    }

    #[test]
    fn private_ipv6_urls_never_pass(ip in private_v6(), port in 1u16.., path in "[a-z]{0,8}") {
        let guard = SsrfGuard::default();
        let url = url_around(&format!("[{ip}]"), port, &path, false, false);
        prop_assert!(!passes(&guard, &url), "{}", url);
        prop_assert!(guard.filter("h", [SocketAddr::new(IpAddr::V6(ip), port)]).is_err());
    }

    /// Whatever a push URL holds, an IP literal passes the guard exactly
    /// when the oracle says it is public; other URLs are refused or name a
    /// domain (checked by the resolver on connection).
    #[test]
    fn arbitrary_push_urls_never_pass_to_private_addresses(
        host in any_host(),
        port in proptest::option::of(any::<u16>()),
    ) {
        let guard = SsrfGuard::default();
        let url = match port {
            Some(p) => format!("http://{host}:{p}/alias/push/"),
            None => format!("http://{host}/alias/push/"),
        };
        if let Some(ip) = literal_of(&url) {
            prop_assert_eq!(passes(&guard, &url), is_public(ip), "{} ({})", url, ip);
        }
    }

    /// Whatever a resolver answers, the guard keeps exactly the public
    /// addresses, in their order, and refuses an answer with none.
    #[test]
    fn resolutions_keep_only_public_addresses(
        addrs in proptest::collection::vec(
            prop_oneof![
                any_v4().prop_map(IpAddr::V4),
                any_v6().prop_map(IpAddr::V6),
                any::<IpAddr>(),
            ],
            0..8,
        ),
    ) {
        let guard = SsrfGuard::default();
        let sockets: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, 443)).collect();
        let public: Vec<SocketAddr> = sockets.iter().copied().filter(|a| is_public(a.ip())).collect();
        match guard.filter("h", sockets) {
            Ok(kept) => prop_assert_eq!(kept, public),
            Err(_) => prop_assert!(public.is_empty(), "public addresses refused: {:?}", public),
        }
    }
}
