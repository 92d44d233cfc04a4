//! NEON kernels (aarch64), with SDOT/i8mm paths behind runtime checks.
