//! The beacon repeater (fact sheet §7.4).
//!
//! Several clients on a host cannot all bind the repeater port, so one process binds it
//! and fans each beacon out to every registered local client. A client first tries to
//! bind the port itself: if that works it runs this repeater in-process (as libca falls
//! back to an in-process repeater thread) and registers with it like any other client;
//! otherwise it registers with the repeater that holds the port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

use crate::header::{Header, cmd};

/// Tries to bind the repeater port; `None` if another repeater holds it.
pub fn try_bind(port: u16) -> Option<std::net::UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .ok()?;
    // no SO_REUSEADDR: exactly one repeater per host and port
    sock.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())
        .ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock.into())
}

/// The registration message a client sends to the repeater.
pub fn register_message(client_ip: Ipv4Addr) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    Header {
        param2: u32::from(client_ip),
        ..Header::new(cmd::REPEATER_REGISTER)
    }
    .encode(&mut v);
    v
}

/// What the repeater does with one datagram.
#[derive(Debug, Default)]
pub struct RepeaterState {
    clients: Vec<SocketAddr>,
}

/// An action decided by [`RepeaterState::handle`].
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to this address.
    Send(SocketAddr, Vec<u8>),
}

impl RepeaterState {
    /// Handles a datagram from `from`; returns the datagrams to send.
    pub fn handle(&mut self, data: &[u8], from: SocketAddr) -> Vec<Action> {
        let is_register = data.is_empty()
            || Header::decode(data).is_some_and(|(h, _)| h.command == cmd::REPEATER_REGISTER);
        if is_register {
            if !from.ip().is_loopback() && !is_local(from.ip()) {
                return Vec::new();
            }
            if !self.clients.contains(&from) {
                self.clients.push(from);
            }
            let ip = match from.ip() {
                IpAddr::V4(v) => u32::from(v),
                IpAddr::V6(_) => 0,
            };
            let mut v = Vec::with_capacity(16);
            Header {
                param2: ip,
                ..Header::new(cmd::REPEATER_CONFIRM)
            }
            .encode(&mut v);
            return vec![Action::Send(from, v)];
        }
        let mut msg = data.to_vec();
        // a beacon without the server address: fill in the source (as caRepeater does)
        if let (Some((h, _)), IpAddr::V4(src)) = (Header::decode(data), from.ip())
            && h.command == cmd::RSRV_IS_UP
            && h.param2 == 0
            && msg.len() >= 16
        {
            msg[12..16].copy_from_slice(&u32::from(src).to_be_bytes());
        }
        self.clients
            .iter()
            .filter(|c| **c != from)
            .map(|c| Action::Send(*c, msg.clone()))
            .collect()
    }

    /// Forgets a client whose socket is gone.
    pub fn remove(&mut self, client: SocketAddr) {
        self.clients.retain(|c| *c != client);
    }
}

fn is_local(ip: IpAddr) -> bool {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.iter().any(|i| i.ip() == ip))
        .unwrap_or(false)
}

/// Runs the repeater on a bound socket until the task is aborted.
pub async fn run(sock: std::net::UdpSocket) {
    let Ok(sock) = UdpSocket::from_std(sock) else {
        return;
    };
    let mut st = RepeaterState::default();
    let mut buf = vec![0u8; 0x10000];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        for Action::Send(to, data) in st.handle(&buf[..n], from) {
            if sock.send_to(&data, to).await.is_err() {
                st.remove(to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_confirms_and_fans_out() {
        let mut st = RepeaterState::default();
        let c1: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        let c2: SocketAddr = "127.0.0.1:40002".parse().expect("addr");
        let a = st.handle(&register_message(Ipv4Addr::LOCALHOST), c1);
        assert_eq!(a.len(), 1);
        let Action::Send(to, data) = &a[0];
        assert_eq!(*to, c1);
        assert_eq!(
            Header::decode(data).map(|(h, _)| h.command),
            Some(cmd::REPEATER_CONFIRM)
        );
        st.handle(&[], c2);
        let mut beacon = Vec::new();
        Header {
            count: 5064,
            param1: 3,
            ..Header::new(cmd::RSRV_IS_UP)
        }
        .encode(&mut beacon);
        let server: SocketAddr = "127.0.0.1:5064".parse().expect("addr");
        let out = st.handle(&beacon, server);
        assert_eq!(out.len(), 2);
        let Action::Send(_, data) = &out[0];
        assert_eq!(&data[12..16], &[127, 0, 0, 1]);
        // not sent back to the source
        assert_eq!(st.handle(&beacon, c1).len(), 1);
        st.remove(c1);
        assert_eq!(st.handle(&beacon, server).len(), 1);
    }
}
