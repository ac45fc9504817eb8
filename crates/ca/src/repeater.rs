//! The beacon repeater (fact sheet §7.4).
//!
//! Several clients on a host cannot all bind the repeater port, so one process binds it
//! and fans each beacon out to every registered local client. A client first tries to
//! bind the port itself: if that works it runs this repeater in-process (as libca falls
//! back to an in-process repeater thread) and registers with it like any other client;
//! otherwise it registers with the repeater that holds the port.
//!
//! The process holding the port may exit at any time (a short `archiver ca get` that was
//! running when `archiver serve` started), taking its repeater with it. So a client never
//! stops caring ([`Registration`]): it registers again whenever it has heard neither a
//! confirmation nor a beacon for [`SILENCE`], and when a registration goes unanswered it
//! takes the port itself if it is free and registers with its own repeater. libca gets the
//! same robustness differently: its repeater is a separate `caRepeater` process that
//! outlives the client that spawned it.
//!
//! The repeater forgets clients whose socket is gone, as caRepeater's `verifyClients`
//! does: when a new client registers, every known client's port is test-bound, and one
//! that can be bound has no owner any more (fact sheet §7.4 "housekeeping").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

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

/// Without a confirmation or a beacon for this long, a client registers again (beacons
/// reach a client only through the repeater, so hearing one proves it is alive; an IOC
/// beacons at least every 15 s by default, so with IOCs up this costs one 16-byte loopback
/// datagram every few beacon periods at most, and with none up one every 5 s).
pub const SILENCE: Duration = Duration::from_secs(5);
/// A registration unanswered for this long means no repeater holds the port: the client
/// tries to take it (libca retries every 1 s until confirmed).
pub const CONFIRM_WAIT: Duration = Duration::from_millis(500);
/// How often a client checks its registration ([`Registration::tick`]).
pub const TICK: Duration = Duration::from_secs(1);

/// What a client does about the repeater at one [`Registration::tick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the repeater was heard from recently, or a registration is in flight.
    Wait,
    /// Send a registration.
    Register,
    /// The last registration went unanswered: bind the repeater port if it is free (and
    /// run a repeater on it), then send a registration.
    TakePortAndRegister,
}

/// A client's side of the repeater protocol, free of I/O: when to register, when to
/// take the port. Times are the caller's clock.
#[derive(Debug, Default)]
pub struct Registration {
    /// Last confirmation or beacon.
    heard: Option<Instant>,
    /// Last registration sent.
    sent: Option<Instant>,
}

impl Registration {
    /// A confirmation or a beacon arrived at `now` (both come only through a repeater).
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// Whether a confirmation or beacon was ever heard.
    pub fn confirmed(&self) -> bool {
        self.heard.is_some()
    }

    /// Decides what to do at `now` (call every [`TICK`]); a step other than
    /// [`Step::Wait`] counts as a registration sent at `now`.
    pub fn tick(&mut self, now: Instant) -> Step {
        let awaiting = match (self.sent, self.heard) {
            (Some(s), Some(h)) => s > h,
            (Some(_), None) => true,
            (None, _) => false,
        }
        .then_some(self.sent)
        .flatten();
        let step = match awaiting {
            Some(s) if now.saturating_duration_since(s) >= CONFIRM_WAIT => {
                Step::TakePortAndRegister
            }
            Some(_) => Step::Wait,
            None if self
                .heard
                .is_none_or(|h| now.saturating_duration_since(h) >= SILENCE) =>
            {
                Step::Register
            }
            None => Step::Wait,
        };
        if step != Step::Wait {
            self.sent = Some(now);
        }
        step
    }
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

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Forgets every client except `keep` for which `gone` says its socket is closed
    /// (caRepeater's `verifyClients`; [`socket_gone`] is the real test).
    pub fn prune(&mut self, keep: SocketAddr, gone: impl Fn(SocketAddr) -> bool) {
        self.clients.retain(|c| *c == keep || !gone(*c));
    }
}

/// Whether the client socket at `addr` is closed: its address can be bound again. A
/// client's socket binds the wildcard address without SO_REUSEADDR, so while it is open
/// binding the same port on any local address fails. Any other error (an address not
/// local any more) counts as "not known to be gone".
pub fn socket_gone(addr: SocketAddr) -> bool {
    std::net::UdpSocket::bind(addr).is_ok()
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
        let known = st.len();
        let actions = st.handle(&buf[..n], from);
        if st.len() > known {
            // a new client: forget those that have exited meanwhile
            st.prune(from, socket_gone);
        }
        for Action::Send(to, data) in actions {
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

    /// Regression: the repeater fanned beacons out to every client that ever registered,
    /// also to those long gone (each short `archiver ca get` added one for good).
    #[test]
    fn repeater_forgets_clients_whose_socket_is_closed() {
        let alive = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let alive_addr: SocketAddr = (
            Ipv4Addr::LOCALHOST,
            alive.local_addr().expect("addr").port(),
        )
            .into();
        let gone = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let gone_addr: SocketAddr =
            (Ipv4Addr::LOCALHOST, gone.local_addr().expect("addr").port()).into();
        drop(gone);
        let mut st = RepeaterState::default();
        st.handle(&[], alive_addr);
        st.handle(&[], gone_addr);
        let newcomer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        st.handle(&[], newcomer);
        assert_eq!(st.len(), 3);
        assert!(!socket_gone(alive_addr));
        assert!(socket_gone(gone_addr));
        st.prune(newcomer, socket_gone);
        assert_eq!(st.clients, vec![alive_addr, newcomer]);
    }

    /// Regression for the repeater-owner fault: a client that had been confirmed once
    /// never registered again, so after the repeater's process exited it heard no beacon
    /// for the rest of its life.
    #[test]
    fn registration_is_renewed_after_silence_and_the_port_taken_when_unanswered() {
        let t0 = Instant::now();
        let mut r = Registration::default();
        assert!(!r.confirmed());
        // first tick: register
        assert_eq!(r.tick(t0), Step::Register);
        // confirmed at once; nothing more while beacons keep coming
        r.heard(t0 + Duration::from_millis(1));
        assert!(r.confirmed());
        let mut t = t0;
        for _ in 0..20 {
            t += TICK;
            r.heard(t);
            assert_eq!(r.tick(t + Duration::from_millis(10)), Step::Wait);
        }
        // the repeater's process exits: silence
        let last = t;
        while t.duration_since(last) < SILENCE {
            t += TICK;
            if t.duration_since(last) < SILENCE {
                assert_eq!(r.tick(t), Step::Wait);
            }
        }
        assert_eq!(r.tick(t), Step::Register);
        // no answer: take the port (and register again)
        assert_eq!(r.tick(t + CONFIRM_WAIT / 2), Step::Wait);
        t += TICK;
        assert_eq!(r.tick(t), Step::TakePortAndRegister);
        // still no answer (another process won the port and is slow): keep trying
        t += TICK;
        assert_eq!(r.tick(t), Step::TakePortAndRegister);
        // answered
        r.heard(t + Duration::from_millis(1));
        t += TICK;
        assert_eq!(r.tick(t), Step::Wait);
        t += SILENCE;
        assert_eq!(r.tick(t), Step::Register);
    }
}
