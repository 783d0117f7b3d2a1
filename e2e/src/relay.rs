//! A TCP relay a test can cut: the roles of a bank connect to a server
//! through it, and a cut makes that server unreachable for them until
//! [`Relay::restore`]. Every relayed connection is closed at the cut; new
//! ones are then refused ([`Cut::Refuse`], a host gone from the network)
//! or accepted and closed at once ([`Cut::AcceptClose`], a proxy in front
//! of a dead server). The outage is seen by the roles only; the test's own
//! connections go to the server directly.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the relay behaves while cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Connections refused (nothing listens on the port).
    Refuse,
    /// Connections accepted and closed at once.
    AcceptClose,
}

/// A running relay to one upstream address.
pub struct Relay {
    addr: SocketAddr,
    state: watch::Sender<Option<Cut>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, state_rx) = watch::channel(None);
        let task = tokio::spawn(serve(listener, addr, upstream, state_rx));
        Relay { addr, state, task }
    }

    /// The address the roles connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection; new ones meet `how`.
    pub fn cut(&self, how: Cut) {
        self.state.send_replace(Some(how));
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.state.send_replace(None);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut state: watch::Receiver<Option<Cut>>,
) {
    loop {
        let cut = *state.borrow_and_update();
        if cut == Some(Cut::Refuse) {
            drop(listener);
            if state.wait_for(|s| *s != Some(Cut::Refuse)).await.is_err() {
                return;
            }
            // The same port again (the listener sets SO_REUSEADDR).
            listener = TcpListener::bind(addr).await.unwrap();
            continue;
        }
        let inbound = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => inbound,
                Err(_) => return,
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        if state.borrow().is_some() {
            drop(inbound);
            continue;
        }
        let mut until_cut = state.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            let mut inbound = inbound;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = until_cut.wait_for(|s| s.is_some()) => {}
            }
        });
    }
}
