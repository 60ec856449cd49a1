//! Wiring of the gRPC services.
