//! The LwM2M server (OMA LwM2M 1.0/1.1): content formats today; the
//! registration interface and the sans-IO update logic build on them.

pub mod content;
