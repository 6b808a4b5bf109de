//! The benchmark harness keeps working: a seconds-long `lwota bench
//! --quick` run produces every scenario. Nothing here is about speed.

use std::process::Command;

#[test]
fn quick_bench_runs_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("run lwota bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "block2",
        "udp_limit",
        "peers",
        "poll",
        "footprint",
        "campaign",
    ] {
        assert!(!report[key].is_null(), "{key} missing: {report}");
    }
    let peers = report["peers"].as_array().unwrap();
    assert!(
        peers.iter().all(|p| p["error"].is_null()),
        "a peer did not run: {peers:?}"
    );
    assert!(report["block2"][0]["result"]["requests"].as_u64().unwrap() > 0);
    // Both insertion orders, every device of the product queued.
    let campaign = report["campaign"].as_array().unwrap();
    assert_eq!(campaign.len(), 2, "{campaign:?}");
    for row in campaign {
        assert_eq!(row["all_tasks"], 5000, "{row}");
        assert_eq!(row["listed_devices"], 100, "{row}");
    }
}
