//! Whether a request's body was read to its end before the answer went out.
//!
//! An answer given before the body was read (a refused digest header, a
//! denied signature, a missing bucket) leaves the rest of the body on the
//! connection. hyper then cannot keep the connection, but it decides that
//! only when it notices the body was dropped, which can be after it already
//! wrote `Connection: keep-alive` in the answer's head. A client that
//! believed it pools the connection and sends its next request into a
//! socket that is closing: the request fails as "connection closed before
//! message completed" though nothing was wrong with it. Saying
//! `Connection: close` ourselves whenever the body is unread removes that
//! race: the client opens a fresh connection for its next request.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// A request body that records when it has been read to its end.
pub struct ReadToEnd<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

/// The reading side's flag, kept by whoever answers the request.
#[derive(Clone)]
pub struct Ended(Arc<AtomicBool>);

impl Ended {
    /// True once the body's last frame was read, or the body had none.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<B: http_body::Body> ReadToEnd<B> {
    /// Wraps `inner`; a body that is empty from the start counts as read.
    pub fn new(inner: B) -> (Self, Ended) {
        let ended = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (
            Self {
                inner,
                ended: ended.clone(),
            },
            Ended(ended),
        )
    }
}

impl<B> http_body::Body for ReadToEnd<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Adds `Connection: close` to an answer whose request body was not read
/// to its end (see the module comment).
pub fn close_if_unread<T>(resp: &mut http::Response<T>, ended: &Ended) {
    if !ended.get() {
        close_connection(resp);
    }
}

/// Tells the client, and hyper, that the connection ends with this answer.
pub fn close_connection<T>(resp: &mut http::Response<T>) {
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use std::collections::VecDeque;

    /// Frames handed out one at a time, then the end.
    struct Frames(VecDeque<Bytes>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    async fn next(body: &mut ReadToEnd<Frames>) -> Option<Bytes> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|f| f.unwrap().into_data().unwrap())
    }

    #[tokio::test]
    async fn an_empty_body_counts_as_read() {
        let (_body, ended) = ReadToEnd::new(Frames(VecDeque::new()));
        assert!(ended.get());
        let mut resp = http::Response::new(());
        close_if_unread(&mut resp, &ended);
        assert!(resp.headers().get(http::header::CONNECTION).is_none());
    }

    #[tokio::test]
    async fn an_answer_before_the_last_frame_closes_the_connection() {
        let frames = VecDeque::from([Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        let (mut body, ended) = ReadToEnd::new(Frames(frames));
        assert!(!ended.get());
        assert_eq!(next(&mut body).await.unwrap(), Bytes::from_static(b"ab"));
        assert!(!ended.get(), "one frame of two read");
        let mut resp = http::Response::new(());
        close_if_unread(&mut resp, &ended);
        assert_eq!(resp.headers()[http::header::CONNECTION], "close");

        assert_eq!(next(&mut body).await.unwrap(), Bytes::from_static(b"cd"));
        assert!(ended.get(), "the last frame was read");
        assert!(next(&mut body).await.is_none());
        let mut resp = http::Response::new(());
        close_if_unread(&mut resp, &ended);
        assert!(resp.headers().get(http::header::CONNECTION).is_none());
    }
}
