//! Runs a page test in headless Chromium: `node tests/browser/<script> <base-url>
//! <artifact-dir> <chromium>` (playwright-core drives Debian's chromium), and checks that it
//! passed and saved its screenshots. `./scripts/test` installs chromium, node and the npm
//! packages; run alone, a test says what is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The chromium to drive: `PARLOR_CHROMIUM`, or Debian's.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("PARLOR_CHROMIUM") {
        return path.into();
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no chromium found: run ./scripts/test (it installs it) or set PARLOR_CHROMIUM")
}

/// Runs `script` against the node at `base` (an http URL) within 90 s; it must exit 0 and
/// leave each of `shots` (PNG) in target/test-artifacts/browser/.
pub async fn run_page_script(script: &str, base: &str, shots: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("tests/browser");
    assert!(
        scripts.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    let artifacts = root.join("target/test-artifacts/browser");
    for shot in shots {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    let run = tokio::process::Command::new("node")
        .arg(scripts.join(script))
        .arg(base)
        .arg(&artifacts)
        .arg(chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser test finished within 90 s")
        .expect("node runs (./scripts/test installs it)");
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{}\n{}\n(screenshots in {})",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        artifacts.display()
    );
    for shot in shots {
        let bytes = std::fs::read(artifacts.join(shot)).expect("screenshot saved");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}

/// A plain HTTP GET of `path` on `addr`: the whole answer, headers and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("answer");
    body
}
