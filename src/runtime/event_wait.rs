//! Sleeping until a producer's main queue has an event (a delivery report, an error, a
//! log line) to serve. rust-rdkafka's `BaseProducer::poll(timeout)` serves events until
//! its deadline and passes librdkafka whole milliseconds, so short polls never block and a
//! wait made of them spins a core. Here librdkafka writes a byte to a socket when an event
//! lands on the empty queue, and the waiting thread sleeps on that socket.
//! [`Events`] falls back to millisecond polls when no socket can be had.
//!
//! Invariant: one [`EventWait`] per producer at a time (librdkafka keeps one wake-up
//! socket per queue: a second one takes it over, and dropping either leaves the other
//! waking only at its timeouts). It lives no longer than the borrow of its producer, and
//! takes its socket back from librdkafka before closing it.

use rdkafka::bindings;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What librdkafka writes to the socket; only its arrival matters.
const WAKE_UP: &[u8] = b"!";

/// A producer's main queue, watched for new events.
pub struct EventWait<'a, C: ProducerContext> {
    producer: &'a BaseProducer<C>,
    queue: NonNull<bindings::rd_kafka_queue_t>,
    /// The end the waiting thread reads.
    woken: UnixStream,
    /// The end librdkafka writes; kept open for as long as librdkafka has it.
    _waker: UnixStream,
}

impl<'a, C: ProducerContext> EventWait<'a, C> {
    pub fn new(producer: &'a BaseProducer<C>) -> io::Result<Self> {
        let (woken, waker) = UnixStream::pair()?;
        // librdkafka writes from its own threads, with the queue locked: never block them
        // (a full socket already holds unread wake-ups, so nothing is lost).
        waker.set_nonblocking(true)?;
        // SAFETY: the client outlives `self` (the borrow); the handle is released in drop.
        let queue = unsafe { bindings::rd_kafka_queue_get_main(producer.client().native_ptr()) };
        let queue = NonNull::new(queue).ok_or_else(|| io::Error::other("the producer has no main queue"))?;
        // SAFETY: librdkafka copies the payload; the socket stays open until drop disables it.
        unsafe {
            bindings::rd_kafka_queue_io_event_enable(
                queue.as_ptr(),
                waker.as_raw_fd(),
                WAKE_UP.as_ptr().cast(),
                WAKE_UP.len(),
            )
        };
        Ok(Self {
            producer,
            queue,
            woken,
            _waker: waker,
        })
    }

    /// Serves the events waiting on the queue (delivery reports reach the producer's
    /// context) and says how many there were. Events arriving meanwhile may be left for the
    /// next call; [`Self::wait`] returns at once for them.
    pub fn serve(&self) -> usize {
        let waiting = self.waiting();
        // Each zero-timeout poll hands rust-rdkafka at most one event. At least one poll,
        // even on an empty queue: librdkafka writes the next wake-up only after a poll.
        for _ in 0..waiting.max(1) {
            self.producer.poll(Duration::ZERO);
        }
        waiting
    }

    /// Sleeps until an event arrives, at most `timeout`. May return sooner (an event
    /// already waiting, an earlier wake-up not yet read, a signal): callers check again.
    pub fn wait(&self, timeout: Duration) {
        if self.waiting() > 0 || timeout.is_zero() {
            return;
        }
        // A failure to sleep (the socket) only makes the caller's loop look sooner.
        if self.woken.set_read_timeout(Some(timeout)).is_ok() {
            // librdkafka writes once each time the queue turns non-empty after a poll;
            // bytes of wake-ups already served only cost one more pass.
            let _ = (&self.woken).read(&mut [0u8; 64]);
        }
    }

    fn waiting(&self) -> usize {
        // SAFETY: the handle is valid until drop.
        unsafe { bindings::rd_kafka_queue_length(self.queue.as_ptr()) }
    }
}

impl<C: ProducerContext> Drop for EventWait<'_, C> {
    fn drop(&mut self) {
        // SAFETY: fd -1 removes the wake-up under the queue's lock, so librdkafka no longer
        // writes to the socket closed after this; then the handle is released.
        unsafe {
            bindings::rd_kafka_queue_io_event_enable(self.queue.as_ptr(), -1, std::ptr::null(), 0);
            bindings::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// A producer's events: slept on with [`EventWait`], or, if its socket cannot be had
/// (out of file descriptors), polled every millisecond as rust-rdkafka allows.
pub enum Events<'a, C: ProducerContext> {
    Woken(EventWait<'a, C>),
    Polled(&'a BaseProducer<C>),
}

impl<'a, C: ProducerContext> Events<'a, C> {
    pub fn new(producer: &'a BaseProducer<C>) -> Self {
        match EventWait::new(producer) {
            Ok(events) => Events::Woken(events),
            Err(error) => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "cannot sleep on a producer's events; polling them (said once)");
                }
                Events::Polled(producer)
            }
        }
    }

    /// Serves the waiting events; says how many there were (0 when polled blindly).
    pub fn serve(&self) -> usize {
        match self {
            Events::Woken(events) => events.serve(),
            Events::Polled(producer) => {
                producer.poll(Duration::ZERO);
                0
            }
        }
    }

    pub fn wait(&self, timeout: Duration) {
        match self {
            Events::Woken(events) => events.wait(timeout),
            Events::Polled(producer) => producer.poll(timeout.min(Duration::from_millis(1))),
        }
    }
}
