//! The `parlor` binary itself: flags, environment overrides and configuration errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use parlor_client::Client;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parlor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parlor"));
    // Run away from the repository's config.toml so only what the test gives applies.
    cmd.current_dir(std::env::temp_dir())
        .env("RUST_LOG", "info");
    cmd
}

/// Starts the binary and returns it with the address it logs as listening on.
fn start(cmd: &mut Command) -> (Running, String) {
    start_with_log(cmd, true)
}

fn start_with_log(cmd: &mut Command, keep_reading_log: bool) -> (Running, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn parlor");
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            let addr = rest.split('/').next().unwrap().to_owned();
            if keep_reading_log {
                std::thread::spawn(move || lines.for_each(drop));
            }
            return (running, addr);
        }
    }
    panic!("parlor exited without listening");
}

#[tokio::test]
async fn the_binary_serves_with_bind_flag_and_env_overrides() {
    let (_server, addr) = start(
        parlor()
            .args(["--bind", "127.0.0.1:0"])
            .env("PARLOR_LIMITS_MAX_ROOMS_PER_SESSION", "3"),
    );
    let client = Client::connect(&format!("ws://{addr}/ws")).await.unwrap();
    assert_eq!(client.welcome().limits.max_rooms_per_session, 3);
    // Everything else is the embedded default.
    assert_eq!(client.welcome().limits.max_frame_bytes, 65_536);
    assert_eq!(client.welcome().heartbeat_ms, 5_000);
}

#[tokio::test]
async fn the_binary_reads_a_config_file() {
    let path = std::env::temp_dir().join(format!("parlor-bin-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[server]\nbind = \"127.0.0.1:0\"\n[limits]\nmax_depth = 7\n",
    )
    .unwrap();
    let (_server, addr) = start(parlor().arg("--config").arg(&path));
    let client = Client::connect(&format!("ws://{addr}/ws")).await.unwrap();
    assert_eq!(client.welcome().limits.max_depth, 7);
}

#[test]
fn invalid_configuration_names_the_key_and_exits_2() {
    let path = std::env::temp_dir().join(format!("parlor-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[limits]\nmax_members_per_room = -1\n").unwrap();
    let out = parlor().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.max_members_per_room"), "{stderr}");

    let out = parlor()
        .env("PARLOR_LIMITS_MAX_DEPTH", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_depth"));
}

#[tokio::test]
async fn a_closed_log_pipe_does_not_take_the_server_down() {
    // At debug level every session logs as it starts and stops, so writes to the closed pipe
    // are certain to happen.
    let (_server, addr) = start_with_log(
        parlor()
            .args(["--bind", "127.0.0.1:0"])
            .env("RUST_LOG", "parlor=debug"),
        false,
    );
    // The log's reader is gone; the server's next log lines fail to write.
    for _ in 0..3 {
        let mut client = Client::connect(&format!("ws://{addr}/ws")).await.unwrap();
        client.join("r").await.unwrap();
        client.close().await.unwrap();
    }
}
