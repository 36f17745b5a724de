//! One module per group of routes.

pub mod admin;
pub mod checkpoints;
pub mod events;
pub mod health;
pub mod records;
pub mod similar;
