//! The `lwota` CLI binary run against a test server, as an operator would:
//! a real child process talking HTTP to the server, with its admin token.

use std::process::{Command, Output};

use serde_json::Value;

use super::TestServer;

/// Runs the CLI against `url` with no server or token taken from the
/// environment of the test run (each caller passes what it means to test).
pub fn lwota_at(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(args)
        .args(["--server", url])
        .env_remove("LWOTA_SERVER")
        .env_remove("LWOTA_TOKEN")
        .output()
        .expect("run lwota")
}

/// Runs the CLI against `server` with the server's admin token.
pub fn lwota(server: &TestServer, args: &[&str]) -> Output {
    let mut with_token = vec!["--token", &server.token];
    with_token.extend_from_slice(args);
    lwota_at(&format!("http://{}", server.http), &with_token)
}

/// The standard output of a run that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `lwota --output json ARGS` parsed.
pub fn json_of(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = ok(&lwota(server, &all));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}
