//! The domain: validated records, tenant settings and periods. No I/O here;
//! proto messages are converted into these types once, at the API edge.

pub mod period;
pub mod records;
pub mod rules;
pub mod scope;
pub mod settings;

pub use records::*;
pub use scope::Scope;
pub use settings::{DEFAULT_TENANT, PipelineStage, TenantSettings};
