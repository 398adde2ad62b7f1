//! Hub backends: where configurations and device twins come from and go to.

pub mod generate;
pub mod snapshot;
pub mod twin;
pub mod wire;
