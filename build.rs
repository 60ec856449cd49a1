//! Compiles `proto/` with protox (pure Rust, no system `protoc`), generates the
//! tonic/prost code and writes the descriptor set served by gRPC reflection.

use std::path::PathBuf;

use protox::prost::Message;

const PROTOS: &[&str] = &[
    "proto/salesmetrics/v1/records.proto",
    "proto/salesmetrics/v1/ingest.proto",
    "proto/salesmetrics/v1/kpi.proto",
    "proto/salesmetrics/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out_dir.join("salesmetrics_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
