//! One module per group of routes.

pub mod admin;
pub mod checkpoints;
pub mod derived;
pub mod events;
pub mod export;
pub mod health;
pub mod legal_hold;
pub mod records;
pub mod similar;
pub mod stream;
pub mod ui;
