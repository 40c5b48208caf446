//! Compiles the vendored Kubernetes `.proto` files (crates/sim/proto) into a descriptor set that
//! the embedded API server's protobuf codec reads at run time (`kube/protobuf.rs`).

fn main() {
    let root = std::path::Path::new("proto");
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "k8s.io/api/core/v1/generated.proto",
        "k8s.io/api/apps/v1/generated.proto",
        "k8s.io/api/batch/v1/generated.proto",
        "k8s.io/api/coordination/v1/generated.proto",
        "k8s.io/api/events/v1/generated.proto",
        "k8s.io/api/rbac/v1/generated.proto",
        "k8s.io/api/policy/v1/generated.proto",
        "k8s.io/api/networking/v1/generated.proto",
        "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
        "k8s.io/apimachinery/pkg/runtime/generated.proto",
    ];
    let descriptors = protox::compile(files, [root]).unwrap_or_else(|e| {
        panic!("compiling the vendored Kubernetes protos: {e}");
    });
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out.join("kubernetes.bin"), bytes).expect("writing the descriptor set");
}
