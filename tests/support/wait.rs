//! Bounded waits shared by the server and cluster tests: nothing a test waits for may hang it.

use std::future::Future;
use std::time::Duration;

use parlor_client::protocol::ServerFrame;
use parlor_client::Client;

/// Fails the test if `future` does not finish within `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Skips frames until one matches, failing the test after `secs` seconds.
pub async fn next_matching_within(
    client: &mut Client,
    secs: u64,
    what: &str,
    f: impl Fn(&ServerFrame) -> bool,
) -> ServerFrame {
    within(secs, what, async {
        loop {
            let frame = client.next_frame().await.expect("frame");
            if f(&frame) {
                return frame;
            }
        }
    })
    .await
}
