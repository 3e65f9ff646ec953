//! Awaiting the runtime's promises. `JsFuture` makes two closures per
//! promise (each registered with a `FinalizationRegistry`, then released
//! again): about eight crossings between wasm and JavaScript per await.
//! Here a promise gets a numbered slot and is watched by a line of
//! JavaScript that reports its outcome to one long-lived callback: two
//! crossings, and no closure of the wasm's made per await.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use wasm_bindgen::prelude::*;
use worker::js_sys::Promise;

// The only JavaScript of its own the worker carries: `then` with two arrow
// functions, so that no closure has to cross from wasm per promise.
#[wasm_bindgen(inline_js = "export function watch(p, slot, settle) {
  p.then((v) => settle(slot, true, v), (e) => settle(slot, false, e));
}")]
extern "C" {
    fn watch(promise: &Promise, slot: u32, settle: &JsValue);
}

enum Slot {
    Free,
    /// Watched; the waker of the task awaiting it, once polled.
    Waiting(Option<Waker>),
    Settled(Result<JsValue, JsValue>),
    /// Its future was dropped first: freed when the promise settles.
    Abandoned,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slots {
    fn take(&mut self) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Slot::Waiting(None);
                slot
            }
            None => {
                self.slots.push(Slot::Waiting(None));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, slot: u32) {
        self.slots[slot as usize] = Slot::Free;
        self.free.push(slot);
    }
}

thread_local! {
    static SLOTS: RefCell<Slots> = RefCell::default();
    static SETTLE: JsValue = Closure::<dyn FnMut(u32, bool, JsValue)>::new(settle).into_js_value();
}

/// Called by the watching JavaScript, once per promise, from a promise
/// reaction (never while a slot is borrowed).
fn settle(slot: u32, ok: bool, value: JsValue) {
    let waker = SLOTS.with_borrow_mut(|s| {
        let state = s.slots.get_mut(slot as usize)?;
        match std::mem::replace(state, Slot::Free) {
            Slot::Waiting(waker) => {
                *state = Slot::Settled(if ok { Ok(value) } else { Err(value) });
                waker
            }
            Slot::Abandoned => {
                s.free.push(slot);
                None
            }
            other => {
                *state = other;
                None
            }
        }
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The promise's outcome: `Ok` with its value, `Err` with its reason.
pub fn settled(promise: &Promise) -> Settled {
    let slot = SLOTS.with_borrow_mut(Slots::take);
    SETTLE.with(|settle| watch(promise, slot, settle));
    Settled { slot: Some(slot) }
}

pub struct Settled {
    /// `None` once the outcome was taken.
    slot: Option<u32>,
}

impl Future for Settled {
    type Output = Result<JsValue, JsValue>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = self.slot else {
            return Poll::Ready(Err(JsValue::from_str("promise awaited after it settled")));
        };
        let outcome = SLOTS.with_borrow_mut(|s| match s.slots.get_mut(slot as usize) {
            Some(Slot::Waiting(waker)) => {
                *waker = Some(cx.waker().clone());
                None
            }
            Some(Slot::Settled(_)) => match std::mem::replace(&mut s.slots[slot as usize], Slot::Free) {
                Slot::Settled(outcome) => {
                    s.free.push(slot);
                    Some(outcome)
                }
                _ => None,
            },
            _ => Some(Err(JsValue::from_str("promise slot lost"))),
        });
        match outcome {
            None => Poll::Pending,
            Some(outcome) => {
                self.slot = None;
                Poll::Ready(outcome)
            }
        }
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        SLOTS.with_borrow_mut(|s| match s.slots.get(slot as usize) {
            Some(Slot::Waiting(_)) => s.slots[slot as usize] = Slot::Abandoned,
            Some(Slot::Settled(_)) => s.release(slot),
            _ => {}
        });
    }
}
