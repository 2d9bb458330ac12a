//! Shared helpers for mcc's integration suites.
