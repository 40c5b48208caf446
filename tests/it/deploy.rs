//! The Helm chart ships the same CRDs as crds/ (Helm installs a chart's crds/ folder first).

use std::path::PathBuf;

#[test]
fn chart_crds_are_the_crds_portvakt_owns() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (file, yaml) in portvakt::crd::crd_files() {
        let path = repo.join("charts/portvakt/crds").join(file);
        let chart = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); copy crds/ into the chart",
                path.display()
            )
        });
        assert_eq!(
            chart,
            yaml,
            "{} differs from crds/{file}: copy crds/ into the chart",
            path.display()
        );
    }
}
