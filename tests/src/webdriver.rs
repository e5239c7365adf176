//! A small WebDriver client for the browser tests: starts `chromedriver` with headless
//! Chromium (Debian's `chromium` and `chromium-driver`) and speaks the W3C WebDriver protocol
//! to it over HTTP. Only what the tests use: open a page, find elements, click, type, read
//! text and properties, run a script, take screenshots.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

/// The key WebDriver sends for Enter.
pub const ENTER: &str = "\u{E007}";

/// Where Debian puts the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A Chromium session, driven through its own `chromedriver`; both end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

/// An element of the page, as WebDriver names it.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Whether this machine has the browser and its driver (`.ci/run` installs them).
    pub fn available() -> bool {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    }

    /// Starts `chromedriver` on a free port and opens a headless session with a window of
    /// `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        if !Self::available() {
            bail!("{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // In a PID namespace of its own (`unshare`, as root): the driver is its first process,
        // so killing it ends every Chromium process too, and nothing the browser does to
        // processes can reach the machine's others (the services the tests run against).
        let driver = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc", CHROMEDRIVER])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
        };
        browser.wait_ready().await?;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            format!("--window-size={width},{height}"),
        ];
        let created = browser
            .post(
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }}}),
            )
            .await?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no sessionId in the new session's answer")?
            .to_owned();
        Ok(browser)
    }

    /// Waits (bounded) for the driver to answer `/status` with `ready`.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = async {
                let status: Value = self
                    .http
                    .get(format!("{}/status", self.base))
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok::<_, reqwest::Error>(status["value"]["ready"].as_bool() == Some(true))
            };
            if matches!(ready.await, Ok(true)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("chromedriver did not become ready within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One WebDriver command; its `value`, or the error WebDriver answered.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.with_context(|| format!("WebDriver {path}"))?;
        let status = answer.status();
        let body: Value = answer.json().await.with_context(|| format!("WebDriver {path}: body"))?;
        if !status.is_success() {
            bail!("WebDriver {path}: {status}: {}", body["value"]);
        }
        Ok(body["value"].clone())
    }

    /// A command with a JSON body, and one without; their `value`.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn read(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> anyhow::Result<Option<Element>> {
        let found = self
            .post("/elements", json!({ "using": "css selector", "value": css }))
            .await?;
        Ok(found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e.as_object())
            .and_then(|e| e.values().next())
            .and_then(Value::as_str)
            .map(|id| Element(id.to_owned())))
    }

    /// The first element matching `css`; an error if there is none.
    pub async fn get(&self, css: &str) -> anyhow::Result<Element> {
        self.find(css)
            .await?
            .with_context(|| format!("no element matches {css:?}"))
    }

    /// Waits (at most `limit`, polling) until an element matches `css` and its text contains
    /// `text`; returns it.
    pub async fn wait_for(&self, css: &str, text: &str, limit: Duration) -> anyhow::Result<Element> {
        self.wait_for_text(css, text, limit).await.map(|(found, _)| found)
    }

    /// [`Browser::wait_for`], with the element's whole text as read when it matched: a page
    /// that redraws may replace the element right after, so reading it again can fail.
    pub async fn wait_for_text(&self, css: &str, text: &str, limit: Duration) -> anyhow::Result<(Element, String)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(found) = self.find(css).await?
                && let Ok(shown) = self.text(&found).await
                && shown.contains(text)
            {
                return Ok((found, shown));
            }
            if tokio::time::Instant::now() >= deadline {
                let shown = self.script("return document.body.innerText", json!([])).await?;
                bail!(
                    "no {css:?} with text {text:?} within {limit:?}; the page shows:\n{}",
                    shown.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .map(drop)
    }

    pub async fn clear(&self, element: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await
            .map(drop)
    }

    /// Types `text` into the element (keys such as [`ENTER`] included), as a person would.
    pub async fn type_into(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/value", element.0), json!({ "text": text }))
            .await
            .map(drop)
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let text = self.read(&format!("/element/{}/text", element.0)).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// A DOM property of the element (`value` of an input).
    pub async fn property(&self, element: &Element, name: &str) -> anyhow::Result<Value> {
        self.read(&format!("/element/{}/property/{name}", element.0)).await
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Saves a PNG of the window to `path` (folders made as needed).
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.read("/screenshot").await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Resizes the window (CSS pixels of the outer window).
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(drop)
    }
}

impl Browser {
    /// Ends the session, which closes Chromium; the driver ends when the browser is dropped.
    pub async fn quit(self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "", None).await?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `unshare` passes the kill on to the driver; the namespace's other processes end with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
