//! avx512 kernels (x86-64). Every function here is checked against `scalar` in tests.
