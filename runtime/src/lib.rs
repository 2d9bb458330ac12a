//! `mcc-runtime`: what programs emitted by mcc link against. Today: `.npy` I/O.
pub mod npy;
