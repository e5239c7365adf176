//! Hands each simulated user the code texted to its number, as its phone would.
//!
//! Thousands of users each polling the fake's messages (a scan of all of them) would cost
//! O(n²); one reader goes through each message once, in order, and passes its code to the
//! user waiting for that number.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use verify_tests::fake_twilio::FakeTwilio;
use verify_tests::harness::code_in;

/// A code as it reached the phone: the code and when it arrived.
pub type Delivery = (String, Instant);

#[derive(Default)]
pub struct Mailbox {
    waiting: Mutex<HashMap<String, oneshot::Sender<Delivery>>>,
}

impl Mailbox {
    /// Waits for the next SMS to `to` (call it before the start that sends the SMS).
    pub fn expect(&self, to: &str) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("mailbox").insert(to.to_owned(), tx);
        rx
    }

    /// Reads every message the fake accepts, in order, and delivers its code to whoever
    /// waits for its number, until `stop`.
    pub async fn deliver(&self, fake: &FakeTwilio, stop: &CancellationToken) {
        let mut seen = 0;
        loop {
            // Before reading: a message accepted in between wakes it.
            let changed = fake.changed();
            let new = fake.messages_after(seen);
            seen += new.len();
            let arrived = Instant::now();
            {
                let mut waiting = self.waiting.lock().expect("mailbox");
                for message in new {
                    if let (Some(tx), Some(code)) = (waiting.remove(&message.to), code_in(&message.body)) {
                        drop(tx.send((code, arrived)));
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = changed => {}
                // Messages added without a notification (none in these tests) are read too.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
