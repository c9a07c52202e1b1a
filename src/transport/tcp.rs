//! The TCP stream under a direct SSH session, which acknowledges at once what it reads.
//!
//! sshd leaves Nagle's algorithm on for sessions without a terminal: a small packet it sends
//! while an earlier one is not yet acknowledged waits for that acknowledgement. Linux delays
//! an acknowledgement up to 40 ms when it has nothing to send back, so where sshd sends two
//! messages in a row while the operator only waits for the second (after login, when the
//! operator opens its channel; again when an uploaded executor starts), each node sat 40 ms
//! idle before its first job, 80 ms at first contact. [`QuickAck`] asks for the acknowledgement
//! at once (`TCP_QUICKACK`, which the kernel does not keep, so after every read that got
//! bytes): one small packet more at times, and no stall.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected TCP stream that acknowledges every read at once.
pub(crate) struct QuickAck(TcpStream);

impl QuickAck {
    pub(crate) fn new(stream: TcpStream) -> QuickAck {
        set_quick_ack(&stream, true);
        QuickAck(stream)
    }
}

/// With `on`, acknowledges what was received on `stream` now, and what comes until the kernel
/// leaves quick-ack mode again. A failure only costs the delay it avoids: it is ignored.
fn set_quick_ack(stream: &TcpStream, on: bool) {
    let on = libc::c_int::from(on);
    // SAFETY: setsockopt on a descriptor the stream owns, with a c_int value of its size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            set_quick_ack(&self.0, true);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    fn quick_ack_mode(stream: &TcpStream) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int this function owns, with its size.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt TCP_QUICKACK: {}", io::Error::last_os_error());
        value
    }

    #[tokio::test]
    async fn every_read_that_gets_bytes_asks_for_the_acknowledgement_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut stream = QuickAck::new(client);
        assert_eq!(quick_ack_mode(&stream.0), 1, "a new stream acknowledges at once");
        for round in 0..3 {
            // What the kernel does on its own after the socket sent and received a while:
            // delayed acknowledgements.
            set_quick_ack(&stream.0, false);
            assert_eq!(quick_ack_mode(&stream.0), 0);
            server.write_all(b"greeting").unwrap();
            let mut buf = [0u8; 8];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"greeting");
            assert_eq!(quick_ack_mode(&stream.0), 1, "round {round}: a read left delayed acknowledgements on");
        }
    }
}
