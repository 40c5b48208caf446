//! The binary's configuration errors: bad settings fail at start and name the setting,
//! before anything is read or written.

use std::process::Command;

fn portvakt(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portvakt"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTVAKT_") {
            cmd.env_remove(k);
        }
    }
    // No cluster: a run that got past validation would fail on Kubernetes, not on the setting.
    cmd.env("KUBECONFIG", "/nonexistent/kubeconfig");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running portvakt");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const BASE: &[(&str, &str)] = &[
    ("PORTVAKT_CLUSTER_NAME", "dev-gcp"),
    ("PORTVAKT_DIGDIR_ENV", "test"),
    ("PORTVAKT_DIGDIR_ADMIN_CLIENT_ID", "admin"),
    ("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", "/nonexistent/key.pem"),
    ("PORTVAKT_DIGDIR_ADMIN_KID", "kid-1"),
    ("PORTVAKT_CLIENT_NAME", "Test Org"),
    ("PORTVAKT_CLIENT_URI", "https://org.example"),
];

const KMS_KEY: &str = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";

fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<(&str, &str)> = BASE
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    env.extend(overrides.iter().filter(|(_, v)| !v.is_empty()).copied());
    env
}

#[test]
fn run_refuses_bad_settings_naming_them() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PORTVAKT_CLUSTER_NAME", "")], "--cluster-name"),
        (&[("PORTVAKT_DIGDIR_ENV", "staging")], "--digdir-env"),
        (&[("PORTVAKT_RESYNC_PERIOD", "soon")], "--resync-period"),
        (&[("PORTVAKT_CONCURRENCY", "0")], "--concurrency"),
        (&[("PORTVAKT_DIGDIR_BASE_URL", "ftp://digdir")], "base_url"),
        (
            &[("PORTVAKT_DIGDIR_ADMIN_KID", "")],
            "--digdir-admin-cert-chain-file or --digdir-admin-kid",
        ),
        (&[], "--digdir-admin-key-file"),
        // No sane run with these (a zero resync period would busy-loop).
        (&[("PORTVAKT_RESYNC_PERIOD", "0s")], "--resync-period"),
        (
            &[("PORTVAKT_DIGDIR_REQUEST_TIMEOUT", "0ms")],
            "--digdir-request-timeout",
        ),
        // No organisation's values as defaults.
        (&[("PORTVAKT_CLIENT_NAME", "")], "--client-name is required"),
        (&[("PORTVAKT_CLIENT_URI", "")], "--client-uri is required"),
        (&[("PORTVAKT_CLIENT_URI", "not a url")], "--client-uri"),
        // One way of naming the admin key, not two.
        (
            &[(
                "PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE",
                "/nonexistent/chain.pem",
            )],
            "--digdir-admin-cert-chain-file and --digdir-admin-kid are both set",
        ),
        (
            &[("PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH", KMS_KEY)],
            "--digdir-admin-key-file and --digdir-admin-kms-key-path are both set",
        ),
        (
            &[("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", "")],
            "--digdir-admin-key-file or --digdir-admin-kms-key-path",
        ),
        (
            &[
                ("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", ""),
                (
                    "PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH",
                    "projects/p/locations/l/keyRings/r/cryptoKeys/k",
                ),
            ],
            "--digdir-admin-kms-key-path",
        ),
        (
            &[
                ("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", ""),
                ("PORTVAKT_DIGDIR_ADMIN_KMS_KEY_PATH", KMS_KEY),
                ("PORTVAKT_GCP_METADATA_URL", "metadata.google.internal"),
            ],
            "--gcp-metadata-url",
        ),
    ];
    for (overrides, setting) in cases {
        let (ok, text) = portvakt(&["run"], &with(overrides));
        assert!(!ok, "portvakt run accepted {overrides:?}:\n{text}");
        assert!(
            text.contains(setting),
            "the error for {overrides:?} does not name {setting}:\n{text}"
        );
    }
}

#[test]
fn a_bad_key_file_is_reported_as_the_key_file_not_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").expect("write");
    let key = key.display().to_string();
    let env: Vec<(&str, &str)> = with(&[("PORTVAKT_DIGDIR_ADMIN_KID", "")])
        .into_iter()
        .filter(|(k, _)| *k != "PORTVAKT_DIGDIR_ADMIN_KEY_FILE")
        .chain([
            ("PORTVAKT_DIGDIR_ADMIN_KEY_FILE", key.as_str()),
            (
                "PORTVAKT_DIGDIR_ADMIN_CERT_CHAIN_FILE",
                "/nonexistent/chain.pem",
            ),
        ])
        .collect();
    let (ok, text) = portvakt(&["run"], &env);
    assert!(!ok, "{text}");
    assert!(
        text.contains("--digdir-admin-key-file:")
            && !text.contains("--digdir-admin-cert-chain-file:"),
        "{text}"
    );
}

#[test]
fn an_install_without_any_digdir_kind_needs_no_digdir_settings() {
    // Only the settings of enabled providers are required: with both Digdir kinds off there is no
    // controller left (until Entra lands), and the error says so, not that a Digdir setting is missing.
    let (ok, text) = portvakt(
        &["run", "--idporten=false", "--maskinporten=false"],
        &[("PORTVAKT_CLUSTER_NAME", "dev")],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("no controller left"), "{text}");
}

#[test]
fn sim_refuses_a_non_loopback_address() {
    let (ok, text) = portvakt(&["sim", "--listen", "0.0.0.0:0"], &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("--listen") && text.contains("loopback"),
        "{text}"
    );
}

#[test]
fn sim_refuses_a_fault_rule_that_does_not_parse_naming_the_flag_and_the_word() {
    let (ok, text) = portvakt(
        &[
            "sim",
            "--digdir-fault",
            "POST /api/v1/clients status=503 sometimes",
        ],
        &[("RUST_BACKTRACE", "1")],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("--digdir-fault") && text.contains("\"sometimes\""),
        "{text}"
    );
    assert!(
        !text.contains("backtrace") && !text.contains("Stack"),
        "a bad setting prints the error alone, not a backtrace:\n{text}"
    );
}

#[test]
fn crds_prints_exactly_what_crds_holds() {
    let out = Command::new(env!("CARGO_BIN_EXE_portvakt"))
        .arg("crds")
        .output()
        .expect("running portvakt crds");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(repo.join("crds"))
        .expect("crds/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let on_disk: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("reading a CRD file"))
        .collect();
    assert_eq!(
        printed, on_disk,
        "`portvakt crds` differs from the files in crds/"
    );
}
