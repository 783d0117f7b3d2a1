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
