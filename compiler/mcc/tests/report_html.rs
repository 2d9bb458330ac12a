//! `report.html` in a real browser: `mcc build` of the LeNet-5 example (its last layer renamed
//! `<script>alert(1)</script>`, which must show as text and run nothing) writes a report that
//! headless Chromium, driven through chromedriver's W3C WebDriver HTTP API (a few requests
//! over a `TcpStream`, no WebDriver crate), loads with no console error; its DOM has one
//! layer-table row per layer in `report.json` and the SVG charts; a real click on a header
//! sorts the table (numerically, both ways; by text); the page's script ran under its own
//! Content-Security-Policy; the latency `mcc bench --report` adds shows in the summary. A
//! screenshot goes to `target/report.png`, to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without them the test says NOT RUN on
//! standard error, and fails where `MCC_REQUIRE_BROWSER` is set (CI).

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::succeeds;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first of `names` on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or why the test cannot run (then it says NOT RUN, and fails
/// where `MCC_REQUIRE_BROWSER` is set).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    if let (Some(c), Some(d)) = (chromium, driver) {
        return Some((c, d));
    }
    let why = "NOT RUN: the report.html browser test needs Chromium and chromedriver (Debian packages chromium and chromium-driver)";
    assert!(
        std::env::var_os("MCC_REQUIRE_BROWSER").is_none_or(|v| v != "1"),
        "{why}: MCC_REQUIRE_BROWSER is set"
    );
    // Past the harness's capture, so every run's log (and scripts/test's summary) shows it.
    let _ = writeln!(std::io::stderr(), "{why}");
    None
}

/// A chromedriver this test started; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        // A free port: bound, read, released (chromedriver binds it next).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver { child, port };
        let start = Instant::now();
        loop {
            if let Some(v) = driver.try_request("GET", "/status", None)
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP/1.1 request; the JSON body of the answer, or `None` when there was none.
    fn try_request(&self, method: &str, path: &str, body: Option<&Value>) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .ok()?;
        // chromedriver keeps the connection open: read the head, then Content-Length bytes
        // (or chunks up to the last one).
        let mut raw = vec![];
        let mut buf = [0u8; 8192];
        let split = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "content-length").then(|| v.trim().parse::<usize>().ok())?
        });
        let mut payload = raw[split + 4..].to_vec();
        loop {
            let done = match length {
                Some(n) => payload.len() >= n,
                None => payload.ends_with(b"0\r\n\r\n"),
            };
            if done {
                break;
            }
            let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
            payload.extend_from_slice(&buf[..n]);
        }
        if length.is_none() && head.contains("transfer-encoding: chunked") {
            payload = dechunk(&payload);
        }
        serde_json::from_slice(&payload).ok()
    }

    /// A WebDriver command that must succeed: its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self
            .try_request(method, path, body.as_ref())
            .unwrap_or_else(|| panic!("no answer from chromedriver to {method} {path}"));
        assert!(
            v["value"].get("error").is_none(),
            "{method} {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }
}

/// A `Transfer-Encoding: chunked` body, joined.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// A WebDriver session on one page.
struct Page<'d> {
    driver: &'d Driver,
    session: String,
}

impl Drop for Page<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_request("DELETE", &format!("/session/{}", self.session), None);
    }
}

impl Page<'_> {
    fn eval(&self, script: &str) -> Value {
        self.driver.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Clicks the element `css` selects, as a user does (WebDriver's element click).
    fn click(&self, css: &str) {
        let found = self.driver.call(
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({ "using": "css selector", "value": css })),
        );
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.driver.call(
            "POST",
            &format!("/session/{}/element/{id}/click", self.session),
            Some(json!({})),
        );
    }

    /// The `data-v` numbers (NaN when empty) or texts of column `col` (1-based) of the layer
    /// table, top to bottom.
    fn column(&self, col: usize) -> Vec<Value> {
        self.eval(&format!(
            "return Array.from(document.querySelectorAll('#layers tbody tr')).map(r => {{ \
               const c = r.cells[{}]; \
               return c.hasAttribute('data-v') ? (c.dataset.v === '' ? null : Number(c.dataset.v)) : c.textContent.trim(); }});",
            col - 1
        ))
        .as_array()
        .unwrap()
        .clone()
    }

    /// Browser log entries at level SEVERE (console errors, failed loads, CSP violations).
    fn errors(&self) -> Vec<Value> {
        let log = self.driver.call(
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(json!({ "type": "browser" })),
        );
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .collect()
    }
}

fn numbers(v: &[Value]) -> Vec<f64> {
    v.iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A layer name that is markup: the page must show it as text and run nothing.
const EVIL: &str = "<script>alert(1)</script>";

/// The LeNet-5 example with its last layer renamed [`EVIL`], and `recipes/lenet5.mcr` (which
/// prunes it by its operator) reading the example's data from where it is: (recipe, model).
fn hostile_lenet5(root: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    use mcc_onnx::pb;
    use prost::Message;
    let mut proto =
        pb::ModelProto::decode(&*std::fs::read(root.join("examples/lenet5/lenet5.onnx")).unwrap())
            .unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let last = graph
        .node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some("/fc2/Gemm"))
        .expect("the example has /fc2/Gemm");
    last.name = Some(EVIL.into());
    let model = dir.join("lenet5.onnx");
    std::fs::write(&model, proto.encode_to_vec()).unwrap();
    // A second stage, so the page draws the accuracy-against-size curve over stages.
    let text = std::fs::read_to_string(root.join("recipes/lenet5.mcr"))
        .unwrap()
        .replace("\"../examples/", &format!("\"{}/examples/", root.display()))
        + "\nstage share {\n  quantize kmeans on Conv | Gemm { bits: 6 }\n}\n";
    let recipe = dir.join("lenet5.mcr");
    std::fs::write(&recipe, text).unwrap();
    (recipe, model)
}

#[test]
fn the_report_opens_sorts_and_draws_in_chromium() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let root = workspace().canonicalize().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (recipe, model) = hostile_lenet5(&root, tmp.path());
    let out = tmp.path().join("lenet5");
    succeeds(
        &root,
        &[
            "build",
            recipe.to_str().unwrap(),
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quiet",
            "--attribution",
        ],
    );
    // The latency `mcc bench --report` adds to the page.
    succeeds(
        &root,
        &["bench", "--report", out.to_str().unwrap(), "--runs", "3"],
    );
    let html = out.join("report.html");
    assert!(
        !std::fs::read_to_string(&html).unwrap().contains(EVIL),
        "the layer name went into the page unescaped"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let layers = report["layers"].as_array().unwrap();
    assert!(layers.len() >= 2, "the example report has layers to sort");

    let driver = Driver::start(&chromedriver);
    let session = driver.call(
        "POST",
        "/session",
        Some(json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}})),
    );
    let page = Page {
        driver: &driver,
        session: session["sessionId"].as_str().unwrap().to_string(),
    };
    let url = format!("file://{}", html.canonicalize().unwrap().display());
    driver.call(
        "POST",
        &format!("/session/{}/url", page.session),
        Some(json!({ "url": url })),
    );

    // The DOM: one row per layer of report.json, in its order; the charts; the summary.
    let names: Vec<Value> = layers.iter().map(|l| l["name"].clone()).collect();
    assert_eq!(page.column(1), names, "one row per layer, by name");
    let charts = page.eval(
        "return ['chart-bytes', 'chart-error'].map(id => { const s = document.getElementById(id); \
           return s && s.tagName.toLowerCase() === 'svg' ? s.querySelectorAll('rect').length : -1; });",
    );
    let rects = charts.as_array().unwrap();
    assert_eq!(
        rects[0].as_u64(),
        Some(2 * layers.len() as u64),
        "a before and an after bar per layer"
    );
    assert_eq!(
        rects[1].as_u64(),
        Some(layers.len() as u64),
        "an error bar per layer"
    );
    let text = page.eval("return document.body.innerText;");
    let text = text.as_str().unwrap();
    for want in [
        "Summary",
        "Budget",
        "holds",
        "Accuracy per class",
        "arena",
        "latency, batch 1",
        " ms → ",
    ] {
        assert!(text.contains(want), "the page does not say `{want}`");
    }
    // The sorting script ran (the policy admitted it): it made the headers focusable.
    assert_eq!(
        page.eval("return document.querySelectorAll('#layers th[tabindex=\"0\"]').length;"),
        json!(13)
    );

    // Sorting by clicks: column 10 is "bytes after", column 11 the output error, 1 the name.
    let bytes_after: Vec<f64> = layers
        .iter()
        .map(|l| l["bytes"]["after"].as_f64().unwrap())
        .collect();
    page.click("#layers thead th:nth-child(10)");
    let mut up = bytes_after.clone();
    up.sort_by(f64::total_cmp);
    assert_eq!(numbers(&page.column(10)), up, "ascending by bytes after");
    assert_eq!(
        page.eval("return document.querySelector('#layers thead th:nth-child(10)').getAttribute('aria-sort');"),
        json!("ascending")
    );
    page.click("#layers thead th:nth-child(10)");
    let down: Vec<f64> = up.iter().rev().copied().collect();
    assert_eq!(
        numbers(&page.column(10)),
        down,
        "descending on a second click"
    );
    // Numeric, not textual: the order differs from the text order of the same numbers
    // whenever the text order is wrong, and must match the numeric one here either way.
    page.click("#layers thead th:nth-child(11)");
    let errors = numbers(&page.column(11));
    assert!(
        errors.windows(2).all(|w| w[0] <= w[1]),
        "ascending by output error: {errors:?}"
    );
    page.click("#layers thead th:nth-child(1)");
    let mut by_name: Vec<String> = names
        .iter()
        .map(|n| n.as_str().unwrap().to_lowercase())
        .collect();
    by_name.sort();
    let shown: Vec<String> = page
        .column(1)
        .iter()
        .map(|n| n.as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(shown, by_name, "by name");

    // The stages' curve: a point per stage (the original and two); the attribution: a row
    // per compressed layer, sortable by what restoring it regains, and the suggestion.
    let stages = report["stages"]["points"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "original and two stages");
    assert_eq!(
        page.eval("return document.querySelectorAll('#stages-chart .stage-point circle').length;"),
        json!(stages.len())
    );
    let attributed = report["attribution"]["layers"].as_array().unwrap();
    assert_eq!(
        page.eval("return document.querySelectorAll('#attribution-table tbody tr').length;"),
        json!(attributed.len())
    );
    let rows = || -> Vec<Value> {
        page.eval(
            "return Array.from(document.querySelectorAll('#attribution-table tbody tr')).map(r => r.cells[0].textContent);",
        )
        .as_array()
        .unwrap()
        .clone()
    };
    let in_report: Vec<Value> = attributed.iter().map(|l| l["layer"].clone()).collect();
    assert_eq!(rows(), in_report, "largest regain first, as in report.json");
    page.click("#attribution-table thead th:nth-child(6)");
    let shown = page.eval(
        "return Array.from(document.querySelectorAll('#attribution-table tbody tr')).map(r => Number(r.cells[5].getAttribute('data-v')));",
    );
    let shown = numbers(shown.as_array().unwrap());
    assert_eq!(shown.len(), attributed.len());
    assert!(
        shown.windows(2).all(|w| w[0] <= w[1]),
        "ascending by regain: {shown:?}"
    );
    if report["attribution"]["restore"].is_object() {
        assert!(text.contains("to regain"), "no suggestion on the page");
    }

    // The hostile name is a row's text, no alert opened, and the page's script is the only one.
    assert!(
        names.contains(&json!(EVIL)),
        "the renamed layer is in the report"
    );
    assert!(page.column(1).contains(&json!(EVIL)), "shown as text");
    assert_eq!(
        page.eval("return document.querySelectorAll('script').length;"),
        json!(1)
    );
    let alert = driver
        .try_request(
            "GET",
            &format!("/session/{}/alert/text", page.session),
            None,
        )
        .unwrap();
    assert_eq!(alert["value"]["error"], "no such alert", "{alert}");

    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // The log is read for real: an error logged now shows up.
    page.eval("console.error('mcc probe'); return null;");
    let probe = page.errors();
    assert!(
        probe
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("mcc probe")),
        "the browser log does not show a logged error: {probe:?}"
    );

    // A screenshot of the whole page, to look at.
    let height = page
        .eval("return document.documentElement.scrollHeight;")
        .as_u64()
        .unwrap()
        .clamp(600, 8000);
    drop(page);
    drop(driver);
    let png = root.join("target/report.png");
    let shot = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size=1280,{height}"),
            &format!("--screenshot={}", png.display()),
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(shot.success() && png.is_file(), "no screenshot");
    let _ = writeln!(
        std::io::stderr(),
        "report.html screenshot: {}",
        png.display()
    );
}
