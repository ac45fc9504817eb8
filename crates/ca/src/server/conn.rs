//! One client's TCP connection to the server.
//!
//! The reader handles requests in order; replies and monitor updates are appended to the
//! connection's [`ConnOut`] buffer, which a writer task drains. A client that is too slow
//! loses monitor updates (counted), never replies; a client that breaks the protocol is
//! disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use super::Store;
use super::pv::{ConnOut, Pv, Sub};
use crate::codec;
use crate::dbr::DbrType;
use crate::error::ProtocolError;
use crate::header::{CA_MINOR, Header, cmd, payload_str, push_message};
use crate::status::{AccessRights, EcaStatus};

struct Chan {
    cid: u32,
    pv: Arc<Pv>,
}

pub(crate) async fn serve(stream: TcpStream, id: u64, store: Arc<Store>, max_payload: usize) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let out = Arc::new(ConnOut::new(
        max_payload.max(1 << 20) * 4,
        store.dropped.clone(),
    ));
    let writer = tokio::spawn(write_loop(wr, out.clone()));
    // the server's VERSION goes out at accept (minor ≥ 11 behaviour)
    out.push(false, |b| {
        Header {
            count: u32::from(CA_MINOR),
            ..Header::new(cmd::VERSION)
        }
        .encode(b)
    });
    let mut conn = Conn {
        id,
        store,
        out: out.clone(),
        chans: HashMap::new(),
        next_sid: 1,
        client_minor: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut shutdown = conn.store.shutdown.subscribe();
    let reason = loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "closed by client".to_string(),
                Ok(_) => {}
                Err(e) => break format!("read error: {e}"),
            },
            _ = shutdown.wait_for(|s| *s) => break "server shut down".to_string(),
        }
        let mut at = 0;
        let r = loop {
            let Some((h, hl)) = Header::decode(&buf[at..]) else {
                break Ok(());
            };
            let size = match h.check_payload(max_payload) {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            if buf.len() - at < hl + size {
                buf.reserve(hl + size);
                break Ok(());
            }
            let start = at + hl;
            at = start + size;
            if let Err(e) = conn.message(h, &buf[start..at]) {
                break Err(e);
            }
        };
        buf.drain(..at);
        if let Err(e) = r {
            break format!("protocol error: {e}");
        }
        if out.closed.load(Ordering::Relaxed) {
            break "write failed".into();
        }
    };
    tracing::debug!(?peer, %reason, "CA server connection closed");
    conn.close();
    out.closed.store(true, Ordering::Relaxed);
    out.notify.notify_one();
    if let Ok(mut wr) = writer.await {
        let _ = wr.shutdown().await;
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, out: Arc<ConnOut>) -> OwnedWriteHalf {
    let mut spare = Vec::with_capacity(16 * 1024);
    loop {
        out.notify.notified().await;
        loop {
            out.take(&mut spare);
            if spare.is_empty() {
                break;
            }
            if wr.write_all(&spare).await.is_err() {
                out.closed.store(true, Ordering::Relaxed);
                return wr;
            }
        }
        if out.closed.load(Ordering::Relaxed) {
            return wr;
        }
    }
}

struct Conn {
    id: u64,
    store: Arc<Store>,
    out: Arc<ConnOut>,
    chans: HashMap<u32, Chan>,
    next_sid: u32,
    client_minor: u16,
}

impl Conn {
    fn send(&self, f: impl FnOnce(&mut Vec<u8>)) {
        self.out.push(false, f);
    }

    fn error(&self, cid: u32, status: EcaStatus, orig: &Header, text: &str) {
        let mut payload = Vec::new();
        orig.encode(&mut payload);
        payload.extend_from_slice(text.as_bytes());
        payload.push(0);
        self.send(|b| {
            push_message(
                b,
                Header {
                    param1: cid,
                    param2: status.0,
                    ..Header::new(cmd::ERROR)
                },
                &payload,
            )
        });
    }

    fn chan(&self, sid: u32, h: &Header) -> Result<&Chan, ProtocolError> {
        match self.chans.get(&sid) {
            Some(c) => Ok(c),
            None => {
                // rsrv: ERROR "Bad Resource ID", then drop the client
                self.error(0xFFFF_FFFF, EcaStatus::INTERNAL, h, "Bad Resource ID");
                Err(ProtocolError::UnexpectedCommand(h.command))
            }
        }
    }

    fn message(&mut self, h: Header, payload: &[u8]) -> Result<(), ProtocolError> {
        match h.command {
            cmd::VERSION => self.client_minor = h.count as u16,
            cmd::CLIENT_NAME | cmd::HOST_NAME | cmd::EVENTS_OFF | cmd::EVENTS_ON => {}
            cmd::ECHO | cmd::READ_SYNC => self.send(|b| push_message(b, h, payload)),
            cmd::CREATE_CHAN => {
                let name = String::from_utf8_lossy(payload_str(payload)).into_owned();
                let cid = h.param1;
                match self.store.get(&name) {
                    Some(pv) => {
                        let sid = self.next_sid;
                        self.next_sid = self.next_sid.wrapping_add(1);
                        let rights = AccessRights {
                            read: true,
                            write: pv.writable(),
                        };
                        let (native, count) = (pv.native(), pv.count());
                        self.chans.insert(sid, Chan { cid, pv });
                        self.send(|b| {
                            Header {
                                param1: cid,
                                param2: rights.bits(),
                                ..Header::new(cmd::ACCESS_RIGHTS)
                            }
                            .encode(b);
                            Header {
                                data_type: native as u16,
                                count,
                                param1: cid,
                                param2: sid,
                                ..Header::new(cmd::CREATE_CHAN)
                            }
                            .encode(b);
                        });
                    }
                    None => self.send(|b| {
                        Header {
                            param1: cid,
                            ..Header::new(cmd::CREATE_CH_FAIL)
                        }
                        .encode(b)
                    }),
                }
            }
            cmd::READ_NOTIFY | cmd::READ => {
                let ty = DbrType::from_u16(h.data_type)?;
                let ch = self.chan(h.param1, &h)?;
                let pv = ch.pv.clone();
                let cid = ch.cid;
                self.send(|b| {
                    let start = b.len();
                    pv.reply(b, h.command, ty, h.count, h.param2);
                    if h.command == cmd::READ && b.len() >= start + 12 {
                        // READ (3) replies carry the CID in parameter 1
                        b[start + 8..start + 12].copy_from_slice(&cid.to_be_bytes());
                    }
                });
            }
            cmd::WRITE_NOTIFY | cmd::WRITE => {
                let ch = self.chan(h.param1, &h)?;
                let pv = ch.pv.clone();
                let cid = ch.cid;
                let status = if !pv.writable() {
                    EcaStatus::NOWTACCESS
                } else {
                    match DbrType::from_u16(h.data_type).and_then(|ty| {
                        codec::decode(ty, h.count, payload, pv.count() == 1 && h.count == 1)
                    }) {
                        Ok(d) => match pv.post(d.value, crate::value::Timestamp::now(), 0, 0) {
                            Ok(()) => EcaStatus::NORMAL,
                            Err(_) => EcaStatus::BADTYPE,
                        },
                        Err(_) => EcaStatus::BADTYPE,
                    }
                };
                if h.command == cmd::WRITE_NOTIFY {
                    self.send(|b| {
                        Header {
                            payload_size: 0,
                            param1: status.0,
                            ..h
                        }
                        .encode(b);
                    });
                } else if !status.is_success() {
                    self.error(cid, status, &h, "write failed");
                }
            }
            cmd::EVENT_ADD => {
                let ty = DbrType::from_u16(h.data_type)?;
                let ch = self.chan(h.param1, &h)?;
                let mask = if payload.len() >= 14 {
                    u16::from_be_bytes([payload[12], payload[13]])
                } else {
                    0
                };
                let mask = if mask == 0 {
                    crate::channel::mask::DBE_VALUE | crate::channel::mask::DBE_ALARM
                } else {
                    mask
                };
                ch.pv.add_sub(Sub {
                    out: self.out.clone(),
                    conn: self.id,
                    subid: h.param2,
                    ty,
                    count: h.count,
                    mask,
                });
            }
            cmd::EVENT_CANCEL => {
                let ch = self.chan(h.param1, &h)?;
                if ch.pv.remove_subs(self.id, Some(h.param2)) == 0 {
                    self.error(ch.cid, EcaStatus::BADMONID, &h, "unknown subscription");
                } else {
                    self.send(|b| {
                        Header {
                            command: cmd::EVENT_ADD,
                            payload_size: 0,
                            ..h
                        }
                        .encode(b)
                    });
                }
            }
            cmd::CLEAR_CHANNEL => {
                if let Some(ch) = self.chans.remove(&h.param1) {
                    ch.pv.remove_subs(self.id, None);
                }
                self.send(|b| {
                    Header {
                        payload_size: 0,
                        ..h
                    }
                    .encode(b)
                });
            }
            other => {
                self.error(0xFFFF_FFFF, EcaStatus::INTERNAL, &h, "unsupported command");
                return Err(ProtocolError::UnexpectedCommand(other));
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        for ch in self.chans.values() {
            ch.pv.remove_subs(self.id, None);
        }
        self.chans.clear();
    }
}
