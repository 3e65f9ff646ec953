//! `join_all` for the futures a request waits on together (a generation's
//! records and index keys, a page of images or files, the operator's keys
//! and their usages): each is polled in turn until all are done, their
//! outputs in order. Every wake polls them all, which is nothing beside the
//! KV round trips they wait on at these numbers; futures-util's own switches
//! to a task queue past 30 futures, code compiled once per joined type.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::{maybe_done, MaybeDone};

/// Waits for every future of `futures`; resolves to their outputs, in order.
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    JoinAll { items: futures.into_iter().map(|f| maybe_done(Box::pin(f))).collect() }
}

pub struct JoinAll<F: Future> {
    items: Vec<MaybeDone<Pin<Box<F>>>>,
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut done = true;
        for item in self.items.iter_mut() {
            done &= Pin::new(item).poll(cx).is_ready();
        }
        if !done {
            return Poll::Pending;
        }
        let outputs = self.items.iter_mut().filter_map(|item| Pin::new(item).take_output()).collect();
        Poll::Ready(outputs)
    }
}
