//! Compiles the wire API in `proto/elevate/v1` and the store's record encoding in
//! `proto/elevate/store/v1` with protox (pure Rust, no `protoc` needed), lists the
//! paths of its methods for the RPC metrics (`$OUT_DIR/grpc_methods.rs`), and keeps the encoded
//! descriptors for gRPC server reflection (`$OUT_DIR/elevate_descriptor.bin`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/elevate/v1/types.proto",
        "proto/elevate/v1/access.proto",
        "proto/elevate/v1/approval.proto",
        "proto/elevate/v1/break_glass.proto",
        "proto/elevate/v1/audit.proto",
        "proto/elevate/v1/admin.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let mut methods = Vec::new();
    for file in &descriptors.file {
        for service in &file.service {
            for method in &service.method {
                methods.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    write_methods(methods)?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("elevate_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    // How the store encodes its records: messages only, kept out of the wire API's descriptors.
    let records = protox::compile(["proto/elevate/store/v1/records.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        // Verification reads audit entries by the million: their fields slice the stored
        // bytes instead of copying them.
        .bytes(".elevate.store.v1.AuditEntry")
        .compile_fds(records)?;
    Ok(())
}

/// Writes `METHODS`: the HTTP/2 path of every method, sorted.
fn write_methods(mut paths: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    paths.sort();
    let mut text = String::from("/// The path of every method of the wire API, sorted.\n");
    text.push_str("pub const METHODS: &[&str] = &[\n");
    for path in paths {
        text.push_str(&format!("    {path:?},\n"));
    }
    text.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("grpc_methods.rs");
    std::fs::write(out, text)?;
    Ok(())
}
