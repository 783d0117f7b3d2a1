//! Who a transfer's client is: its signing key and the registrable domain
//! of its push URL, and this pusher's share of workers per client.

use runtime::state::ClientName;
use std::collections::HashMap;
use std::sync::Mutex;

/// Counts this pusher's workers busy with each client identity, to hold
/// one client to its share of the workers.
#[derive(Debug, Default)]
pub struct LocalShare {
    busy: Mutex<HashMap<ClientName, usize>>,
}

/// A place in [`LocalShare`], given back when dropped.
pub(super) struct ShareGuard<'a> {
    share: &'a LocalShare,
    names: Vec<ClientName>,
}

impl LocalShare {
    /// Takes one worker for every name in `names` unless one of them already
    /// holds `cap` workers.
    pub(super) fn take(&self, names: &[ClientName], cap: usize) -> Option<ShareGuard<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if names
            .iter()
            .any(|n| busy.get(n).copied().unwrap_or(0) >= cap)
        {
            return None;
        }
        for n in names {
            *busy.entry(n.clone()).or_insert(0) += 1;
        }
        Some(ShareGuard {
            share: self,
            names: names.to_vec(),
        })
    }
}

impl Drop for ShareGuard<'_> {
    fn drop(&mut self) {
        let mut busy = self.share.busy.lock().unwrap_or_else(|e| e.into_inner());
        for n in &self.names {
            if let Some(count) = busy.get_mut(n) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    busy.remove(n);
                }
            }
        }
    }
}

/// The registrable domain of a host ("eTLD+1"), so that every subdomain of
/// one registration shares one slot budget: IP literals and single labels
/// stay as they are; otherwise the last two labels, or three when the
/// second-level label is one of the common public second levels under a
/// two-letter country code (`co.uk`, `com.au`, …). Without the full public
/// suffix list this groups too much rather than too little (all of
/// `*.github.io` is one client), which only slows those clients down.
pub fn registrable_domain(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() <= 2 {
        return host;
    }
    const SECOND_LEVELS: &[&str] = &[
        "ac", "co", "com", "edu", "gob", "gov", "govt", "ltd", "mil", "ne", "net", "nic", "nom",
        "or", "org", "plc", "sch",
    ];
    let n = labels.len();
    let take = if labels[n - 1].len() == 2 && SECOND_LEVELS.contains(&labels[n - 2]) {
        3
    } else {
        2
    };
    labels[n - take.min(n)..].join(".")
}

/// Who a transfer's client is, for fairness and the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientId {
    /// The client declaration's signing key (URL-safe base64), when the
    /// grant could be read.
    pub(super) key: Option<String>,
    /// The registrable domain of the push URL.
    pub(super) domain: String,
}

impl ClientId {
    /// The names whose slots, shares and restart counts the client takes.
    pub(super) fn names(&self) -> Vec<ClientName> {
        let mut names = vec![ClientName::Domain(self.domain.clone())];
        if let Some(key) = &self.key {
            names.push(ClientName::Key(key.clone()));
        }
        names
    }

    /// The name its breaker and failures are kept under.
    pub(super) fn breaker(&self) -> ClientName {
        match &self.key {
            Some(key) => ClientName::Key(key.clone()),
            None => ClientName::Domain(self.domain.clone()),
        }
    }
}

/// The client's signing key (URL-safe base64) of a stored grant.
pub(super) fn client_key(token: &str) -> Option<String> {
    let limits = protocol::anychain::Limits {
        max_bytes: usize::MAX,
        max_depth: 128,
    };
    let value = protocol::anychain::from_json_str(token, &limits).ok()?;
    let grant = protocol::alias::Grant::from_verified(value).ok()?;
    let client = grant.contract().client().ok()?;
    Some(protocol::anychain::b64u_encode(client.signer()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        for (host, want) in [
            ("a.evil.example", "evil.example"),
            ("x.y.z.evil.example", "evil.example"),
            ("evil.example", "evil.example"),
            ("EVIL.Example.", "evil.example"),
            ("shop.evil.co.uk", "evil.co.uk"),
            ("evil.co.uk", "evil.co.uk"),
            ("a.b.com.au", "b.com.au"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("a.b.io", "b.io"),
        ] {
            assert_eq!(registrable_domain(host), want, "{host}");
        }
    }

    #[test]
    fn a_client_holds_at_most_its_share() {
        let share = LocalShare::default();
        let one = ClientId {
            key: Some("K".into()),
            domain: "evil.example".into(),
        };
        let other_key_same_domain = ClientId {
            key: Some("L".into()),
            domain: "evil.example".into(),
        };
        let healthy = ClientId {
            key: Some("H".into()),
            domain: "good.example".into(),
        };
        let first = share.take(&one.names(), 1).unwrap();
        assert!(share.take(&one.names(), 1).is_none());
        assert!(share.take(&other_key_same_domain.names(), 1).is_none());
        let h = share.take(&healthy.names(), 1).unwrap();
        drop(first);
        assert!(share.take(&other_key_same_domain.names(), 1).is_some());
        drop(h);
        assert_eq!(one.breaker(), ClientName::Key("K".into()));
        assert_eq!(one.breaker().to_string(), "key:K");
        let keyless = ClientId {
            key: None,
            domain: "evil.example".into(),
        };
        assert_eq!(keyless.breaker().to_string(), "dom:evil.example");
    }
}
