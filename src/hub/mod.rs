//! Hub backends: where configurations and device twins come from and go to.

pub mod wire;
