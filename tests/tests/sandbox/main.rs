//! The sandbox page of the fake Twilio, in a real headless Chromium (through WebDriver): a
//! verification started from the page, its SMS appearing without a reload, the code copied
//! and checked; a fault switched on from the page showing as a retry; the page on a
//! phone-sized window. Each step's screenshot is saved under `target/sandbox-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use verify_tests::harness::{API_KEY, TestApp, code_in, spawn_app};
use verify_tests::webdriver::{Browser, ENTER};

/// How long the page may take to show what happened (the flow itself takes well under 1 s).
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/sandbox-screenshots")
        .join(format!("{name}.png"))
}

async fn open(app: &TestApp, width: u32, height: u32) -> Browser {
    app.fake.set_sandbox_api(&app.api_base, API_KEY);
    let browser = Browser::start(width, height).await.expect("starting Chromium");
    browser
        .goto(&format!("{}/", app.fake.base_url))
        .await
        .expect("opening the sandbox");
    browser
        .wait_for("#live", "live", SHOWN_WITHIN)
        .await
        .expect("the live stream connects");
    browser
}

/// Types `number` into the "try it" form and sends a code.
async fn start_from_page(browser: &Browser, number: &str) {
    let field = browser.get("#try-number").await.unwrap();
    browser.clear(&field).await.unwrap();
    browser.type_into(&field, number).await.unwrap();
    browser.click(&browser.get("#try-start").await.unwrap()).await.unwrap();
    browser
        .wait_for("#try-result", "202", SHOWN_WITHIN)
        .await
        .expect("the API accepts the start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_arrives_live_is_copied_and_approved() {
    let app = spawn_app().await;
    let browser = open(&app, 1280, 900).await;
    let number = "+14155552671";
    browser.screenshot(&screenshot_path("01-opened")).await.unwrap();
    // Kept by the page unless it reloads.
    browser
        .script("window.notReloaded = 42; return 0", json!([]))
        .await
        .unwrap();

    app.watch.step("start from the page, wait for the SMS in the thread");
    start_from_page(&browser, number).await;
    // The text as read when it showed: the callbacks that follow redraw the thread.
    let (_, shown) = browser
        .wait_for_text("#items li.kind-sms mark.code", "", SHOWN_WITHIN)
        .await
        .expect("the SMS shows in the thread");
    let sent = app.fake.messages_to(number);
    assert_eq!(sent.len(), 1, "one SMS sent");
    assert_eq!(
        Some(shown.clone()),
        code_in(&sent[0].body),
        "the page highlights the code sent"
    );
    let kept = browser.script("return window.notReloaded", json!([])).await.unwrap();
    assert_eq!(kept, json!(42), "the SMS appeared without a reload");
    browser
        .wait_for("#items li.kind-sms .callbacks", "delivered →", SHOWN_WITHIN)
        .await
        .expect("the thread shows the status callbacks sent");
    browser.screenshot(&screenshot_path("02-code-arrived")).await.unwrap();

    app.watch.step("copy the code, check it with the keyboard");
    browser
        .click(&browser.get("#items button.copy").await.unwrap())
        .await
        .unwrap();
    let field = browser.get("#check-code").await.unwrap();
    assert_eq!(browser.property(&field, "value").await.unwrap(), json!(shown));
    browser.type_into(&field, ENTER).await.unwrap();
    browser
        .wait_for("#check-result", "approved", SHOWN_WITHIN)
        .await
        .expect("the check answers approved");
    browser.screenshot(&screenshot_path("03-approved")).await.unwrap();

    app.watch.step("the queue strip shows the local stack's queues");
    browser
        .wait_for("#queues", "consumers", SHOWN_WITHIN)
        .await
        .expect("the queue strip reads /v1/ops/queues");
    browser.quit().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_switched_on_from_the_page_shows_as_a_retry() {
    let app = spawn_app().await;
    let browser = open(&app, 1280, 900).await;
    let number = "+14155552672";

    app.watch.step("queue one 503 from the page");
    browser
        .click(&browser.get("#next-kind option[value=unavailable]").await.unwrap())
        .await
        .unwrap();
    browser.click(&browser.get("#next-queue").await.unwrap()).await.unwrap();
    browser
        .wait_for("#fault-state", "next: unavailable", SHOWN_WITHIN)
        .await
        .expect("the page shows the fault queued");

    app.watch.step("start, see the failed request and then the SMS");
    start_from_page(&browser, number).await;
    browser
        .wait_for("#items li.kind-fault", "503", SHOWN_WITHIN)
        .await
        .expect("the thread shows the 503");
    browser
        .wait_for("#items li.kind-sms mark.code", "", SHOWN_WITHIN)
        .await
        .expect("the retry's SMS shows after it");
    let kinds = browser
        .script(
            "return [...document.querySelectorAll('#items li')].map(li => li.dataset.kind)",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        kinds,
        json!(["fault", "sms"]),
        "the failure first, then the SMS of the retry"
    );
    assert_eq!(
        app.fake.create_call_times(number).len(),
        2,
        "two requests reached the fake"
    );
    assert_eq!(app.fake.messages_to(number).len(), 1, "one SMS");
    browser
        .wait_for("#fault-state", "next: none", SHOWN_WITHIN)
        .await
        .expect("the fault was used up");
    browser.screenshot(&screenshot_path("04-retry")).await.unwrap();

    app.watch.step("keyboard focus survives the list being redrawn");
    browser
        .script(
            "document.querySelector('button.number[data-number=\"' + arguments[0] + '\"]').focus(); return 0",
            json!([number]),
        )
        .await
        .unwrap();
    app.fake
        .inject_message("+14155559999", "Your verification code is 123456");
    browser
        .wait_for("#numbers-count", "(2)", SHOWN_WITHIN)
        .await
        .expect("the page lists the new number");
    let focused = browser
        .script("return document.activeElement.dataset.number || null", json!([]))
        .await
        .unwrap();
    assert_eq!(focused, json!(number), "the focus stays on the number's button");

    app.watch.step("the same page on a phone-sized window");
    browser.resize(390, 844).await.unwrap();
    // A fresh load (a new hash alone would not reload), which must open the number's thread.
    browser.goto("about:blank").await.unwrap();
    browser
        .goto(&format!("{}/#{}", app.fake.base_url, number.replace('+', "%2B")))
        .await
        .unwrap();
    browser
        .wait_for("#items li.kind-sms mark.code", "", SHOWN_WITHIN)
        .await
        .expect("the thread of the number in the address shows");
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(0), "nothing wider than a phone's screen");
    browser
        .script(
            "document.getElementById('thread-title').scrollIntoView(); return 0",
            json!([]),
        )
        .await
        .unwrap();
    browser.screenshot(&screenshot_path("05-phone")).await.unwrap();
    browser.quit().await.unwrap();
    app.stop().await;
}
