//! Compiles the wire API in `proto/` with protox (pure Rust, no `protoc` needed).

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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
