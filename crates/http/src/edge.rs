//! The connection edge: bodies for the answers hyper gives by itself.
//!
//! Some requests never reach a handler: hyper refuses them while parsing the request head
//! and writes the status alone, `content-length: 0`, then closes the connection — 414 for a
//! URI longer than 65,534 bytes (the `http` crate's limit, `MAX_URI_LEN` in hyper; a
//! `getDataForPVs` GET with thousands of `pv=` does that), 431 for a head larger than
//! hyper's read buffer, 400 for a request line or header that does not parse. A client
//! then sees an error without a word of why. [`ErrorBodies`] wraps the listener so that
//! such an answer carries a JSON body like every other error of this server
//! (`{"status":"error","message":"..."}`, [`crate::ApiError`]), naming the problem and
//! the way around it (POST for long PV lists).
//!
//! How: the connection's writes are watched for a response head that is hyper's own —
//! one write holding the whole head, a status of 400, 414 or 431 and `content-length: 0`
//! (no handler of ours answers an error without a body) — and that head is replaced by
//! one with the body. Everything else passes through untouched (vectored writes
//! included, so the streamed bodies are not copied once more).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener whose connections answer hyper's own refusals (400, 414, 431) with a JSON
/// body naming the problem (module docs). Use it in place of the listener:
/// `axum::serve(ErrorBodies(listener), router)`.
#[derive(Debug)]
pub struct ErrorBodies<L>(pub L);

impl<L: Listener> Listener for ErrorBodies<L> {
    type Io = ErrorBodyIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (ErrorBodyIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One connection of [`ErrorBodies`]: reads pass through; a head of hyper's own refusal
/// is replaced, on its way out, by the same status with a JSON body.
#[derive(Debug)]
pub struct ErrorBodyIo<T> {
    inner: T,
    /// The replacement response still to be written, from `written`.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ErrorBodyIo<T> {
    fn new(inner: T) -> Self {
        ErrorBodyIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The message of hyper's refusal with this status, `None` for a status hyper does not
/// answer by itself.
fn message(status: u16) -> Option<&'static str> {
    Some(match status {
        414 => {
            "URI too long: the request line is longer than 65534 bytes, the most this server \
             (and the HTTP library under it) reads; send long PV lists with POST \
             (getDataForPVs, getDataAtTime and the bulk management calls take the list in the \
             body)"
        }
        431 => {
            "request head too large: the request line and headers are larger than this server \
             reads; send long PV lists with POST (in the body)"
        }
        400 => "bad request: the request line or a header does not parse as HTTP/1.1",
        _ => return None,
    })
}

/// When `buf` is exactly the head of one of hyper's own refusals, the response to send
/// in its place: the same status line and `date`, a JSON body, `connection: close`.
fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
    if buf.len() > 1024 || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let msg = message(status)?;
    let head = std::str::from_utf8(buf).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut empty_body = false;
    let mut date = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            empty_body = value.trim() == "0";
        } else if name.eq_ignore_ascii_case("date") {
            date = Some(value.trim());
        } else if !name.eq_ignore_ascii_case("connection") {
            // A header hyper does not put on its refusals: a handler's answer.
            return None;
        }
    }
    if !empty_body {
        return None;
    }
    let body = serde_json::json!({ "status": "error", "message": msg }).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(d) = date {
        out.push_str("date: ");
        out.push_str(d);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> ErrorBodyIo<T> {
    /// Writes what remains of a replacement; ready when nothing does.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if !self.pending.is_empty() {
            self.pending = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodyIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodyIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(r) = replacement(buf) {
            self.pending = r;
            // hyper's head counts as written; the replacement goes out now or at the
            // flush that follows.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (nonempty.next(), nonempty.next())
            && let Some(r) = replacement(only)
        {
            self.pending = r;
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bodiless_refusals_are_replaced() {
        let hyper_414 =
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 23:00:00 GMT\r\n\r\n";
        let r = String::from_utf8(replacement(hyper_414).expect("replaced")).expect("utf8");
        assert!(r.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{r}");
        assert!(r.contains("content-type: application/json\r\n"), "{r}");
        assert!(r.contains("date: Sun, 29 Nov 2026 23:00:00 GMT\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{r}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["status"], "error");
        assert!(v["message"].as_str().expect("message").contains("POST"));
        for status in ["400 Bad Request", "431 Request Header Fields Too Large"] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            assert!(replacement(head.as_bytes()).is_some(), "{status}");
        }
        // Not hyper's: a body, another status, a handler's headers, a piece of a body.
        for other in [
            &b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n",
            b"1418019667,-0.09,0,0,601158377\n",
        ] {
            assert!(replacement(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
