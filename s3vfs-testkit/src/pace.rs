//! A bandwidth cap per connection, for the S3-like profile: on real S3 one connection
//! carries on the order of 100 MB/s, so throughput comes only from many requests in flight,
//! while a loopback socket carries gigabytes per second. [`PacedStream`] wraps a server's
//! connection and lets each direction move at most `bytes_per_sec`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Most bytes moved by one read or write call, so that the pace is kept at a fine grain.
const CHUNK: usize = 64 * 1024;

/// Credit an idle direction may build up: a connection idle for a while may send this much
/// at once, not its whole idle time's worth.
const MAX_BURST: Duration = Duration::from_millis(10);

/// The pace of one direction: `done` bytes since `start` at `rate` bytes per second.
#[derive(Debug)]
struct Pace {
    rate: u64,
    start: Instant,
    done: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            start: Instant::now(),
            done: 0,
            sleep: None,
        }
    }

    /// Ready when the bytes moved so far are within the rate.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let due = self.start + Duration::from_secs_f64(self.done as f64 / self.rate as f64);
            let now = Instant::now();
            if due <= now {
                if now - due > MAX_BURST {
                    self.start = now - MAX_BURST;
                    self.done = 0;
                }
                return Poll::Ready(());
            }
            self.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
        }
    }

    fn moved(&mut self, n: usize) {
        self.done += n as u64;
    }
}

/// A stream whose reads and writes each move at most `bytes_per_sec` (see the module docs).
#[derive(Debug)]
pub struct PacedStream<S> {
    inner: S,
    read: Pace,
    write: Pace,
}

impl<S> PacedStream<S> {
    /// Wraps `inner`, each direction capped at `bytes_per_sec`.
    pub fn new(inner: S, bytes_per_sec: u64) -> Self {
        Self {
            inner,
            read: Pace::new(bytes_per_sec),
            write: Pace::new(bytes_per_sec),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.read.poll_ready(cx));
        let room = buf.remaining().min(CHUNK);
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        this.read.moved(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.write.poll_ready(cx));
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..data.len().min(CHUNK)]))?;
        this.write.moved(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn each_direction_keeps_its_rate() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut paced = PacedStream::new(server, 1024 * 1024);
        let mut client = client;
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            client.write_all(&vec![7u8; 4 << 20]).await.unwrap();
            client
        });
        let mut got = vec![0u8; 4 << 20];
        paced.read_exact(&mut got).await.unwrap();
        let took = started.elapsed();
        assert!(got.iter().all(|&b| b == 7));
        // 4 MiB at 1 MiB/s: four seconds (of paused time), less the last chunk (moved
        // as soon as the ones before it were paid for), plus at most one burst.
        assert!(took >= Duration::from_millis(3900), "{took:?}");
        assert!(took <= Duration::from_millis(4100), "{took:?}");
        let mut client = writer.await.unwrap();

        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut back = vec![0u8; 2 << 20];
            client.read_exact(&mut back).await.unwrap();
        });
        paced.write_all(&vec![1u8; 2 << 20]).await.unwrap();
        reader.await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took <= Duration::from_millis(2100), "{took:?}");
    }
}
