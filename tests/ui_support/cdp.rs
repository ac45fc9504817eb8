//! A minimal Chrome DevTools Protocol client for the browser tests: starts Debian's
//! `chromium` headless on a fresh profile, opens one page and drives it (navigate,
//! evaluate JavaScript, screenshot) over a WebSocket (`tungstenite`, synchronous, like the
//! rest of the tests).
//!
//! Why not a CDP crate (`chromiumoxide`, `headless_chrome`): the tests need four commands
//! (`Target.createTarget`, `Emulation.setDeviceMetricsOverride`, `Page.navigate`,
//! `Runtime.evaluate`, `Page.captureScreenshot`); those crates bring an async runtime or
//! their own browser download and launch flags, where this is ~150 lines over a
//! well-kept WebSocket crate and starts Chromium with exactly the flags we choose.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value as Json, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `ARCHIVER_TEST_CHROMIUM`, else `chromium` on the `PATH`. Missing is
/// a failure that says how to install it, never a skip.
pub fn chromium_path() -> String {
    let exe = std::env::var("ARCHIVER_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let ok = Command::new(&exe)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the browser tests need Chromium ({exe:?} does not run): run `bash scripts/setup.sh` \
         (it installs Debian's `chromium`), or set ARCHIVER_TEST_CHROMIUM to a Chromium binary"
    );
    exe
}

/// A headless Chromium with one page open; killed (by its PID) when dropped.
pub struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens a blank page of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let exe = chromium_path();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`.
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let browser_ws = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(i) = line.find("ws://") {
                        break line[i..].trim().to_string();
                    }
                    seen.push(line);
                }
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "chromium printed no DevTools address in 30 s:\n{}",
                        seen.join("\n")
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!("chromium exited ({status:?}):\n{}", seen.join("\n"));
                }
                Err(_) => {}
            }
        };
        let (mut browser, _) = tungstenite::connect(&browser_ws).expect("connect to DevTools");
        let target = call(
            &mut browser,
            1,
            "Target.createTarget",
            json!({"url": "about:blank"}),
        );
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let (page, _) = tungstenite::connect(format!("ws://{host}/devtools/page/{target_id}"))
            .expect("connect to the page");
        drop(browser);
        let mut b = Browser {
            child,
            page,
            next_id: 1,
            _profile: profile,
        };
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Sends `method` with `params` to the page; its `result`.
    pub fn call(&mut self, method: &str, params: Json) -> Json {
        self.next_id += 1;
        call(&mut self.page, self.next_id, method, params)
    }

    /// Loads `url` and waits until the document has loaded.
    pub fn navigate(&mut self, url: &str) {
        // A mark on the old document: gone once the new one is there.
        self.js("window.__leaving = true");
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait_js(
            10.0,
            &format!("{url} loaded"),
            "window.__leaving === undefined && document.readyState === 'complete'",
        );
    }

    /// The value of JavaScript `expression` (promises awaited); a thrown exception fails
    /// the test with its text.
    pub fn js(&mut self, expression: &str) -> Json {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JavaScript `{expression}` threw: {e}");
        }
        r["result"].get("value").cloned().unwrap_or(Json::Null)
    }

    /// Polls `expression` every 100 ms until it is `true`; fails naming `what` after `secs`.
    pub fn wait_js(&mut self, secs: f64, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if self.js(expression) == Json::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self.js("document.body ? document.body.innerText.slice(0, 3000) : ''");
                panic!(
                    "timed out after {secs} s waiting for {what} (`{expression}`); the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG screenshot of the page to `path`; returns its bytes.
    pub fn screenshot(&mut self, path: &Path) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.page.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One CDP command on `ws`: sends it with `id`, skips events, returns its `result`.
fn call(
    ws: &mut WebSocket<MaybeTlsStream<TcpStream>>,
    id: u64,
    method: &str,
    params: Json,
) -> Json {
    let msg = json!({"id": id, "method": method, "params": params});
    ws.send(Message::Text(msg.to_string().into())).unwrap();
    loop {
        let m = ws.read().unwrap_or_else(|e| panic!("{method}: {e}"));
        let Message::Text(text) = m else { continue };
        let v: Json = serde_json::from_str(text.as_str()).unwrap();
        if v["id"].as_u64() == Some(id) {
            if let Some(e) = v.get("error") {
                panic!("{method} failed: {e}");
            }
            return v["result"].clone();
        }
    }
}
