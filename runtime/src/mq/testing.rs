//! Fault injection for tests and drills: makes RabbitMQ drop connections,
//! as a broker restart or a network cut would.

use std::io;
use std::process::Command;

/// Closes, through `rabbitmqctl`, every connection whose client properties
/// contain `needle` (e.g. the connection name `alias-bank {ns}`), leaving
/// other tenants' connections alone. Returns how many were closed.
pub fn close_connections(needle: &str) -> io::Result<usize> {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties"])
        .args(["--quiet", "--no-table-headers"])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        if !properties.contains(needle) {
            continue;
        }
        let out = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "fault injection"])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        closed += 1;
    }
    Ok(closed)
}

/// Starts the failover tests' three-node RabbitMQ cluster through
/// `scripts/rabbit-ha start` unless it runs (idempotent, serialized by the
/// script) and returns the comma-separated URLs of its nodes.
pub fn rabbit_cluster_urls() -> io::Result<String> {
    let script: std::path::PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "scripts", "rabbit-ha"]
        .iter()
        .collect();
    let out = Command::new(&script).arg("start").output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "scripts/rabbit-ha start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned())
}
