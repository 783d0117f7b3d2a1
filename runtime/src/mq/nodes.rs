//! The RabbitMQ nodes a broker handle may connect to: one URL, or the
//! comma-separated URLs of a cluster's nodes, tried in turn.

use super::error::MqError;
use lapin::uri::AMQPUri;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The URLs of a comma-separated list (`amqp://a:5672/%2f,amqp://b:5672/%2f`),
/// trimmed; an error (saying why) if the list is empty, holds an empty entry
/// or an entry that is not an `amqp://` or `amqps://` URL.
pub fn split_amqp_urls(list: &str) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for (i, entry) in list.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!("entry {} of the URL list is empty", i + 1));
        }
        let parsed = url::Url::parse(entry)
            .map_err(|e| format!("entry {} ({}): {e}", i + 1, shown_url(entry)))?;
        if !matches!(parsed.scheme(), "amqp" | "amqps") {
            return Err(format!(
                "entry {} ({}): scheme must be amqp or amqps",
                i + 1,
                shown_url(entry)
            ));
        }
        entry
            .parse::<AMQPUri>()
            .map_err(|e| format!("entry {} ({}): {e}", i + 1, shown_url(entry)))?;
        urls.push(entry.to_owned());
    }
    Ok(urls)
}

/// The URL with its password hidden.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Refused only by URLs that cannot hold a password.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The nodes of one broker handle and where the next connection attempt
/// starts.
///
/// The first attempt starts at a random node, so that the clients of a
/// cluster spread over its nodes; after a connection is established the
/// next attempt starts at the following node, so that a reconnection moves
/// away from a node that died rather than waiting for it.
#[derive(Debug)]
pub(crate) struct Nodes {
    urls: Vec<String>,
    shown: Vec<String>,
    next: AtomicUsize,
    current: AtomicUsize,
}

/// No connection yet.
const NONE: usize = usize::MAX;

impl Nodes {
    /// Parses a comma-separated list (see [`split_amqp_urls`]).
    pub(crate) fn parse(list: &str) -> Result<Nodes, MqError> {
        let urls =
            split_amqp_urls(list).map_err(|e| MqError::InvalidInput(format!("AMQP URL {e}")))?;
        let shown = urls.iter().map(|u| shown_url(u)).collect();
        let start = rand::thread_rng().gen_range(0..urls.len());
        Ok(Nodes {
            urls,
            shown,
            next: AtomicUsize::new(start),
            current: AtomicUsize::new(NONE),
        })
    }

    /// The node indexes in the order of the next connection attempt.
    pub(crate) fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.urls.len();
        let start = self.next.load(Ordering::SeqCst) % n;
        (0..n).map(move |k| (start + k) % n)
    }

    /// The URL of node `i`.
    pub(crate) fn url(&self, i: usize) -> &str {
        self.urls.get(i).map_or("", String::as_str)
    }

    /// The URL of node `i` with its password hidden.
    pub(crate) fn shown(&self, i: usize) -> &str {
        self.shown.get(i).map_or("", String::as_str)
    }

    /// Every URL, passwords hidden, comma-separated.
    pub(crate) fn shown_all(&self) -> String {
        self.shown.join(",")
    }

    /// Records a connection to node `i`: the next attempt starts after it.
    pub(crate) fn connected(&self, i: usize) {
        self.current.store(i, Ordering::SeqCst);
        self.next.store((i + 1) % self.urls.len(), Ordering::SeqCst);
    }

    /// The node of the current connection (its URL, password hidden).
    pub(crate) fn current(&self) -> Option<&str> {
        match self.current.load(Ordering::SeqCst) {
            NONE => None,
            i => Some(self.shown(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_trimmed_and_checked() {
        let urls = split_amqp_urls("amqp://u:p@a:5672/%2f , amqps://b/v").unwrap();
        assert_eq!(urls, ["amqp://u:p@a:5672/%2f", "amqps://b/v"]);
        assert_eq!(split_amqp_urls("amqp://a").unwrap().len(), 1);
        let empty = split_amqp_urls("amqp://a,,amqp://b").unwrap_err();
        assert!(empty.contains("entry 2"), "{empty}");
        assert!(split_amqp_urls("").is_err());
        let scheme = split_amqp_urls("amqp://a,http://u:secret@b").unwrap_err();
        assert!(
            scheme.contains("entry 2") && scheme.contains("scheme"),
            "{scheme}"
        );
        assert!(!scheme.contains("secret"), "password hidden: {scheme}");
    }

    #[test]
    fn attempts_start_anywhere_then_move_past_the_connected_node() {
        let nodes = Nodes::parse("amqp://a,amqp://b,amqp://c").unwrap();
        assert_eq!(nodes.current(), None);
        let first: Vec<usize> = nodes.order().collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "every node once");
        nodes.connected(1);
        assert_eq!(nodes.current(), Some("amqp://b"));
        assert_eq!(nodes.order().collect::<Vec<_>>(), [2, 0, 1]);
        nodes.connected(2);
        assert_eq!(nodes.order().collect::<Vec<_>>(), [0, 1, 2]);
        // Many handles spread over the nodes.
        let starts: std::collections::HashSet<usize> = (0..64)
            .filter_map(|_| {
                Nodes::parse("amqp://a,amqp://b,amqp://c")
                    .ok()?
                    .order()
                    .next()
            })
            .collect();
        assert_eq!(starts.len(), 3, "random first node");
    }
}
