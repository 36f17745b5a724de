//! One module per group of routes.

pub mod events;
pub mod health;
