//! Comparing secrets (room passwords, resume tokens, the API key) in time that does not depend
//! on where they differ.

/// Whether `given` equals `expected`, compared in constant time (`subtle`).
pub fn same_secret(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}
