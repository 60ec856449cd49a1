//! gRPC handlers and the conversions between proto messages and domain types.
