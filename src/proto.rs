//! Code generated from `proto/salesmetrics/v1/*.proto` by `build.rs`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The `salesmetrics.v1` package.
pub mod v1 {
    tonic::include_proto!("salesmetrics.v1");

    /// Encoded descriptor set of the package, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/salesmetrics_descriptor.bin"));
}
