//! The SSRF guard against every spelling of a private destination, with
//! real requests to a sink on loopback, and property tests: no push URL,
//! however written, gets a private address past the guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use pusher::client::{classify, ClientConfig, PushClient, PushError, PushTarget, SsrfGuard};
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

/// Whether the guard lets `url` through to a private address.
fn gets_through(guard: &SsrfGuard, url: &str) -> Option<IpAddr> {
    let target = PushTarget::new(url, ID).ok()?;
    let parsed = target.transfer_url();
    guard.check_url(parsed).ok()?;
    let ip = match parsed.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    classify(ip).map(|_| ip)
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
        prop_assert_eq!(gets_through(&guard, &url), None, "{}", url);
        // Resolved to that address, a name is refused as well.
        prop_assert!(guard.filter("h", [SocketAddr::new(IpAddr::V4(ip), port)]).is_err());
    }

    #[test]
    fn private_ipv6_urls_never_pass(ip in private_v6(), port in 1u16.., path in "[a-z]{0,8}") {
        let guard = SsrfGuard::default();
        let url = url_around(&format!("[{ip}]"), port, &path, false, false);
        prop_assert_eq!(gets_through(&guard, &url), None, "{}", url);
        prop_assert!(guard.filter("h", [SocketAddr::new(IpAddr::V6(ip), port)]).is_err());
    }

    /// Any text at all: whatever parses and passes names a public address
    /// (or a domain name, checked by the resolver on connection).
    #[test]
    fn arbitrary_push_urls_never_pass_to_private_addresses(
        host in "[0-9a-fxA-FX.:\\[\\]%@ffff]{1,40}",
        port in proptest::option::of(any::<u16>()),
    ) {
        let guard = SsrfGuard::default();
        let url = match port {
            Some(p) => format!("http://{host}:{p}/alias/push/"),
            None => format!("http://{host}/alias/push/"),
        };
        prop_assert_eq!(gets_through(&guard, &url), None, "{}", url);
    }

    /// Whatever a resolver answers, the addresses kept are public ones.
    #[test]
    fn resolutions_keep_only_public_addresses(
        addrs in proptest::collection::vec(any::<IpAddr>(), 0..8),
    ) {
        let guard = SsrfGuard::default();
        let sockets: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, 443)).collect();
        if let Ok(kept) = guard.filter("h", sockets) {
            for addr in kept {
                prop_assert_eq!(classify(addr.ip()), None, "{}", addr);
            }
        }
    }
}
