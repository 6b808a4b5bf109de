//! The admin listener's connections, with one fix-up (issue 8 item 8):
//! hyper answers a request it cannot parse (a bad `Content-Length`, two
//! different ones, a malformed header) with a bare `400` and no body,
//! before axum ever sees the request, and offers no hook to change that.
//! Here, an error response that hyper wrote with `content-length: 0` and no
//! `content-type` gets the JSON error body the contract promises.
//!
//! Why by hand: hyper has no setting for it, and replacing hyper's HTTP/1
//! parser is far more code than this byte-level rewrite of one response
//! shape. Our own error responses never match it (they all carry a JSON
//! body, see `admin/http_errors.rs`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One admin connection (handed to hyper by `http_serve.rs`): TCP, or TLS
/// over TCP.
pub struct JsonErrorStream<S> {
    inner: S,
    /// A rewritten response not yet fully written; bounded by the size of
    /// one header block plus a short body.
    pending: Vec<u8>,
}

impl<S: AsyncWrite + Unpin> JsonErrorStream<S> {
    pub fn new(inner: S) -> JsonErrorStream<S> {
        JsonErrorStream {
            inner,
            pending: Vec::new(),
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

/// The rewritten bytes when `buf` is a bodiless error response from hyper.
fn with_json_body(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let (_, code, reason) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    let code: u16 = code.parse().ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    let headers: Vec<&str> = lines.collect();
    let has = |name: &str| {
        headers.iter().any(|h| {
            h.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        })
    };
    let empty = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !empty || has("content-type") {
        return None;
    }
    let (error_code, message) = match code {
        400 => (
            "invalid_request",
            "the request could not be parsed (for example a bad Content-Length header)",
        ),
        431 => ("headers_too_large", "request headers are too large"),
        _ => ("request_failed", reason),
    };
    let body = serde_json::json!({"error": {"code": error_code, "message": message}}).to_string();
    let mut out = Vec::with_capacity(buf.len() + body.len() + 64);
    out.extend_from_slice(status_line.as_bytes());
    for h in headers {
        let is_length = h
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"));
        if !is_length {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(h.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\ncontent-type: application/json");
    out.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrorStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // Only a whole header block with nothing after it can match; a
        // response hyper splits across writes passes through unchanged.
        if buf.starts_with(b"HTTP/1.") {
            if let Some(rewritten) = with_json_body(buf) {
                self.pending = rewritten;
                // Queued: reported as written; flushed below or on flush.
                let _ = self.poll_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response's header block in one
    // buffer, which is what the rewrite looks at. Admin traffic is light.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::with_json_body;

    #[test]
    fn bare_400_gets_a_json_body_and_others_pass() {
        let bare = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(with_json_body(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("connection: close") && head.contains("date: x"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(head.contains(&format!("content-length: {}", body.len())));

        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(ok).is_none());
        let json = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(json).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert!(with_json_body(with_body).is_none());
    }
}
