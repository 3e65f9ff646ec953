//! Runs the worker's own futures: the request's, and the work it leaves for
//! after the answer. wasm-bindgen's executor schedules every wake-up as a
//! promise reaction of its own (a call into JavaScript and one more trip
//! through the microtask queue per await). A promise's outcome already
//! arrives in a promise reaction (`promise::settle`), with nothing of the
//! wasm on the stack: the task it wakes is polled there and then. Wakes from
//! anywhere else (a task spawned or woken while another is being polled)
//! are scheduled as before, so that no poll ever runs inside another.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use wasm_bindgen::prelude::*;
use worker::js_sys::Promise;

type Work = Pin<Box<dyn Future<Output = ()>>>;

struct Task {
    /// `None` once it has completed.
    future: RefCell<Option<Work>>,
    /// Woken while being polled: polled again before the poll returns.
    woken: Cell<bool>,
    /// Waiting in the queue of scheduled polls.
    queued: Cell<bool>,
}

// Wasm without threads runs on one thread: `Waker` asks for `Send + Sync`,
// which no task here is ever sent across.
unsafe impl Send for Task {}
unsafe impl Sync for Task {}

thread_local! {
    /// A task is being polled (no other poll may start inside it).
    static POLLING: Cell<bool> = const { Cell::new(false) };
    /// Set by `promise::settle` around its wake: the stack is the runtime's.
    static AT_REST: Cell<bool> = const { Cell::new(false) };
    static QUEUE: RefCell<VecDeque<Arc<Task>>> = const { RefCell::new(VecDeque::new()) };
    static SCHEDULED: Cell<bool> = const { Cell::new(false) };
    static RUN_QUEUE: (Promise, Closure<dyn FnMut(JsValue)>) =
        (Promise::resolve(&JsValue::UNDEFINED), Closure::new(|_| run_queue()));
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if POLLING.get() {
            self.woken.set(true);
            if !self.queued.get() {
                schedule(self.clone());
            }
        } else if AT_REST.get() {
            poll(self);
        } else {
            schedule(self.clone());
        }
    }
}

/// Runs `wake` with the task it wakes polled at once: for callers that the
/// runtime calls with nothing of the wasm on the stack.
pub fn at_rest(wake: impl FnOnce()) {
    AT_REST.set(true);
    wake();
    AT_REST.set(false);
}

fn schedule(task: Arc<Task>) {
    task.queued.set(true);
    QUEUE.with_borrow_mut(|q| q.push_back(task));
    if !SCHEDULED.replace(true) {
        RUN_QUEUE.with(|(resolved, run)| {
            let _ = resolved.then(run);
        });
    }
}

fn run_queue() {
    SCHEDULED.set(false);
    AT_REST.set(false);
    while let Some(task) = QUEUE.with_borrow_mut(VecDeque::pop_front) {
        task.queued.set(false);
        poll(&task);
    }
}

fn poll(task: &Arc<Task>) {
    if POLLING.replace(true) {
        // Never reached (wake_by_ref checks first); scheduled to be safe.
        if !task.queued.get() {
            schedule(task.clone());
        }
        return;
    }
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        task.woken.set(false);
        let mut slot = task.future.borrow_mut();
        let Some(future) = slot.as_mut() else { break };
        if future.as_mut().poll(&mut cx).is_ready() {
            *slot = None;
            break;
        }
        drop(slot);
        if !task.woken.get() {
            break;
        }
    }
    POLLING.set(false);
}

/// Starts `future` now (from the runtime's call into the wasm) or, when a
/// task is being polled, as soon as that poll ends.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    let task = Arc::new(Task {
        future: RefCell::new(Some(Box::pin(future))),
        woken: Cell::new(false),
        queued: Cell::new(false),
    });
    if POLLING.get() {
        schedule(task);
    } else {
        poll(&task);
    }
}

/// A promise of `future`'s outcome, run by `spawn`.
pub fn promise(future: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let mut future = Some(future);
    Promise::new(&mut |resolve, reject| {
        let Some(future) = future.take() else { return };
        spawn(async move {
            let _ = match future.await {
                Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
                Err(error) => reject.call1(&JsValue::UNDEFINED, &error),
            };
        });
    })
}
