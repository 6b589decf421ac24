//! Generates the Open Inference Protocol gRPC client and server from `proto/inference.proto`,
//! parsing the proto in Rust (`protox`): no `protoc` install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let descriptors = protox::compile(["proto/inference.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
