//! Smoke run of `portvakt bench` (CI runs only this small size; the real figures come from running
//! the command by hand, see the README). It proves the harness works end to end: the simulator and
//! the operator run as their own processes, every MaskinportenClient becomes Ready, the
//! steady-state window makes no writes, and nothing is left behind.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn bench_smoke_run_gets_every_client_ready_and_writes_nothing_in_steady_state() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .args(["bench", "--n", "5", "--unrelated", "50", "--latency", "1ms"])
        .args([
            "--steady-window",
            "5s",
            "--next-key-delay",
            "2s",
            "--timeout",
            "40s",
        ])
        .env("TMPDIR", tmp.path())
        .env_remove("PORTVAKT_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting portvakt bench");
    // The bench stops by itself (--timeout); this bound only guards against a hang.
    let deadline = Instant::now() + Duration::from_secs(55);
    while child
        .try_wait()
        .expect("waiting for portvakt bench")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting output");
            panic!(
                "portvakt bench did not stop by itself within 55 s\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("collecting output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!(
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(out.status.success(), "portvakt bench failed:\n{all}");

    let result: HashMap<&str, &str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{all}"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(result.get("ready"), Some(&"5/5"), "{all}");
    assert_eq!(result.get("steady_writes"), Some(&"0"), "{all}");
    let calls: f64 = result
        .get("calls_per_resource")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no calls_per_resource:\n{all}"));
    assert!(
        calls >= 1.0,
        "registering a client takes Digdir calls:\n{all}"
    );
    let rss: u64 = result
        .get("peak_rss_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_bytes:\n{all}"));
    assert!(rss > 0, "{all}");
    assert!(stdout.contains("steady-state writes           0"), "{all}");
    for target in [
        "time to Ready",
        "steady state: 0 writes",
        "steady state: O(1) list calls",
        "peak RSS",
    ] {
        assert!(
            stdout.contains(target),
            "the report names the target {target:?}:\n{all}"
        );
    }

    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("reading the temp dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "portvakt bench left files behind: {left:?}"
    );
}
