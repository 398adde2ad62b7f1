//! Small building blocks with no knowledge of hubs or deployments.

pub mod atomic_file;
pub mod pool;
