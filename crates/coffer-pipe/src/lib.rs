//! One producer thread, `threads` worker threads and an in-order consumer on the calling thread.
//!
//! ```text
//! producer ──jobs──▶ workers (any order) ──▶ reorder ──▶ consumer (in order)
//!     ▲                                                      │
//!     └──────────────── tokens (at most `depth` in flight) ◀─┘
//! ```
//! Back-pressure comes from the tokens: the producer takes one per job and the consumer gives
//! it back after handling the job, so at most `depth` jobs exist at any time, whatever the
//! speed of each stage. Jobs carry their own buffers; a caller that recycles them through the
//! consumer therefore never holds more than `depth` buffers plus one scratch buffer per worker.
//!
//! The first error stops everything: a failing consumer cancels the producer (its next
//! [`Feed::send`] returns [`Stopped`]) and the workers; a failing producer lets the consumer
//! finish the jobs already sent, then its error is returned.
#![forbid(unsafe_code)]

use crossbeam_channel::{bounded, select, Receiver, Sender};
use std::collections::BTreeMap;

/// Returned by [`Feed::send`] when the consumer has stopped; the producer should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pipeline stopped")
    }
}

impl std::error::Error for Stopped {}

/// The producer's handle for sending jobs.
#[derive(Debug)]
pub struct Feed<J> {
    jobs: Sender<(u64, J)>,
    tokens: Receiver<()>,
    cancelled: Receiver<()>,
    next: std::cell::Cell<u64>,
}

impl<J> Feed<J> {
    /// Sends a job, waiting while `depth` jobs are in flight.
    pub fn send(&self, job: J) -> Result<(), Stopped> {
        select! {
            recv(self.tokens) -> t => t.map_err(|_| Stopped)?,
            recv(self.cancelled) -> _ => return Err(Stopped),
        }
        let seq = self.next.get();
        self.next.set(seq + 1);
        self.jobs.send((seq, job)).map_err(|_| Stopped)
    }
}

/// Sizes of a pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Most jobs in flight (at least 1).
    pub depth: usize,
}

impl Shape {
    /// `threads` workers and enough jobs in flight to keep them busy while the producer and the
    /// consumer do their I/O.
    pub fn for_threads(threads: usize) -> Self {
        let threads = threads.max(1);
        // Measured on 2 cores with many small files (a copy of /usr/lib): 2t+2 left workers
        // idle behind one slow chunk at the head of the line; 4t+4 gains 10%, more gains <2%.
        Self { threads, depth: 4 * threads + 4 }
    }
}

/// Runs the pipeline to completion and returns the first error.
///
/// `make_worker` builds each worker's state (compression contexts, scratch buffers); the
/// returned closure transforms a job in place. Errors found by workers travel inside the job,
/// so the consumer reports them in order.
pub fn run<J, E, P, M, W, C>(shape: Shape, producer: P, make_worker: M, mut consumer: C) -> Result<(), E>
where
    J: Send,
    E: Send + From<Stopped>,
    P: FnOnce(&Feed<J>) -> Result<(), E> + Send,
    M: Fn() -> W + Sync,
    W: FnMut(&mut J),
    C: FnMut(J) -> Result<(), E>,
{
    let threads = shape.threads.max(1);
    let depth = shape.depth.max(1);
    let (jobs_tx, jobs_rx) = bounded::<(u64, J)>(depth);
    let (done_tx, done_rx) = bounded::<(u64, J)>(depth);
    let (tokens_tx, tokens_rx) = bounded::<()>(depth);
    for _ in 0..depth {
        tokens_tx.send(()).expect("room for every token");
    }
    // Never sent on: dropping the sender is the cancellation signal.
    let (cancel_tx, cancel_rx) = bounded::<()>(0);

    std::thread::scope(|scope| {
        let feed = Feed { jobs: jobs_tx, tokens: tokens_rx, cancelled: cancel_rx, next: std::cell::Cell::new(0) };
        let producer = std::thread::Builder::new()
            .name("coffer-read".into())
            .spawn_scoped(scope, move || {
                let feed = feed;
                producer(&feed)
            })
            .expect("spawn producer thread");
        for i in 0..threads {
            let jobs_rx = jobs_rx.clone();
            let done_tx = done_tx.clone();
            let make_worker = &make_worker;
            std::thread::Builder::new()
                .name(format!("coffer-work-{i}"))
                .spawn_scoped(scope, move || {
                    let mut work = make_worker();
                    for (seq, mut job) in jobs_rx {
                        work(&mut job);
                        if done_tx.send((seq, job)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn worker thread");
        }
        drop(jobs_rx);
        drop(done_tx);

        let consumed = consume_in_order(&done_rx, &tokens_tx, &mut consumer);
        // Unblock everyone: the producer waiting for a token, workers waiting to hand back.
        drop(cancel_tx);
        drop(done_rx);
        let produced = match producer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        consumed.and(produced)
    })
}

fn consume_in_order<J, E, C>(done: &Receiver<(u64, J)>, tokens: &Sender<()>, consumer: &mut C) -> Result<(), E>
where
    C: FnMut(J) -> Result<(), E>,
{
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for (seq, job) in done {
        pending.insert(seq, job);
        while let Some(job) = pending.remove(&next) {
            next += 1;
            consumer(job)?;
            // The producer may have finished and dropped its receiver; that is fine.
            let _ = tokens.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, PartialEq)]
    enum Error {
        Stopped,
        Producer,
        Consumer(u64),
    }
    impl From<Stopped> for Error {
        fn from(_: Stopped) -> Self {
            Error::Stopped
        }
    }

    fn squares(threads: usize, depth: usize, n: u64) -> Vec<u64> {
        let mut out = vec![];
        run::<_, Error, _, _, _, _>(
            Shape { threads, depth },
            |feed| {
                for i in 0..n {
                    feed.send(i)?;
                }
                Ok(())
            },
            || {
                |j: &mut u64| {
                    // Uneven work, so completion order differs from submission order.
                    if (*j).is_multiple_of(7) {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    *j *= *j;
                }
            },
            |j| {
                out.push(j);
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn output_is_in_order_for_every_shape() {
        let want: Vec<u64> = (0..500u64).map(|i| i * i).collect();
        for threads in 1..=4 {
            for depth in [1, 2, 3, 16] {
                assert_eq!(squares(threads, depth, 500), want, "threads {threads} depth {depth}");
            }
        }
        assert!(squares(2, 2, 0).is_empty());
    }

    #[test]
    fn never_more_than_depth_jobs_in_flight() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        run::<_, Error, _, _, _, _>(
            Shape { threads: 3, depth: 4 },
            |feed| {
                for i in 0..300u64 {
                    // Counted before sending, so the job waiting for a token counts too.
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    feed.send(i)?;
                }
                Ok(())
            },
            || |_: &mut u64| {},
            |_| {
                live.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert!(peak.load(Ordering::SeqCst) <= 5, "peak {}", peak.load(Ordering::SeqCst));
    }

    #[test]
    fn consumer_error_stops_an_endless_producer() {
        let r = run::<_, Error, _, _, _, _>(
            Shape::for_threads(2),
            |feed| {
                for i in 0.. {
                    feed.send(i)?;
                }
                Ok(())
            },
            || |_: &mut u64| {},
            |j| if j == 50 { Err(Error::Consumer(j)) } else { Ok(()) },
        );
        assert_eq!(r, Err(Error::Consumer(50)));
    }

    #[test]
    fn producer_error_comes_after_the_jobs_it_sent() {
        let mut seen = 0;
        let r = run::<_, Error, _, _, _, _>(
            Shape::for_threads(2),
            |feed| {
                for i in 0..10u64 {
                    feed.send(i)?;
                }
                Err(Error::Producer)
            },
            || |_: &mut u64| {},
            |_| {
                seen += 1;
                Ok(())
            },
        );
        assert_eq!(r, Err(Error::Producer));
        assert_eq!(seen, 10);
    }
}
