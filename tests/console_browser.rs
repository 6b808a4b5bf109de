//! The web console in a real browser: Debian's `chromium` driven through
//! `chromedriver` by Python selenium (`tests/console/browser_flow.py`;
//! Python rather than a Rust WebDriver crate so CI compiles nothing more).
//! The script logs in (a wrong token first), uploads firmware through the
//! form, creates a campaign, watches the live page follow simulated
//! devices (run here, in-process, once the script says the campaign
//! exists) without a reload, cancels it, searches devices, and checks that
//! a read token gets no write buttons. Screenshots of every page land in
//! `target/console-screenshots/` (copies of them are `docs/images/`).
//! Missing tools fail the test; `scripts/test.sh` installs them.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;
use serde_json::json;

/// Devices the simulator runs; two more are registered and never poll,
/// so the campaign is still running when the script cancels it.
const SIM_DEVICES: usize = 4;

fn require_tools() {
    for tool in ["chromium", "chromedriver"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} not found: apt-get install chromium chromium-driver (scripts/test.sh does)"
        );
    }
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        selenium,
        "python3 selenium not found: pip install selenium (scripts/test.sh does)"
    );
}

#[test]
fn console_runs_a_rollout_in_chromium() {
    require_tools();
    let server = TestServer::start();
    let mut devices: Vec<_> = (0..SIM_DEVICES)
        .map(|i| json!({"name": format!("dev-{i:05}"), "product": "thermo", "version": "1.0.0"}))
        .collect();
    devices.push(json!({"name": "sleeper-1", "product": "thermo", "version": "1.0.0"}));
    devices.push(json!({"name": "sleeper-2", "product": "thermo", "version": "0.9.0"}));
    let (status, body) = server.post_json("/api/v1/devices", &json!(devices));
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        server.post_json("/api/v1/tokens", &json!({"name": "viewer", "role": "read"}));
    assert_eq!(status, 201, "{body}");
    let read_token = body["token"].as_str().expect("read token").to_string();

    // Small blocks make each download take a few seconds, so the page has
    // devices in `downloading` to show.
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("thermo-2.0.0.bin");
    std::fs::write(&image, common::image(256 * 1024, 7)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target").join("console-screenshots");
    let mut sim = common::sim_config(&server, SIM_DEVICES, "dev-", "thermo", "1.0.0");
    sim.block = 32;
    sim.duration = Duration::from_secs(120);

    let mut child = Command::new("python3")
        .arg(root.join("tests/console/browser_flow.py"))
        .arg(server.url(""))
        .arg(&server.token)
        .arg(&read_token)
        .arg(&image)
        .arg(&shots)
        .arg(SIM_DEVICES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let stdout = child.stdout.take().unwrap();
    let mut fleet = None;
    let mut ok = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        eprintln!("browser: {line}");
        if line.starts_with("CAMPAIGN ") && fleet.is_none() {
            let config = sim.clone();
            fleet = Some(std::thread::spawn(move || common::run_sim(config)));
        }
        ok |= line == "OK";
    }
    let status = child.wait().unwrap();
    assert!(status.success() && ok, "the browser flow failed ({status})");
    let report = fleet.expect("campaign created").join().unwrap();
    assert_eq!(report.updated(), SIM_DEVICES, "{report:?}");
    for page in [
        "login",
        "firmware",
        "firmware-details",
        "campaign-form-error",
        "campaign-live",
        "campaign-cancelled",
        "campaigns",
        "devices",
        "device",
        "versions",
        "campaign-phone",
    ] {
        let file = shots.join(format!("{page}.png"));
        assert!(
            file.metadata().is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            file.display()
        );
    }
}
