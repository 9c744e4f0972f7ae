//! The `Secret` type: a value that has no printing path.
//!
//! Anything decrypted from a vault, or derived from a vault value (a rendered template, a file
//! body), lives in a `Secret`. Debug and Display print `<secret>`, and Serialize writes the same
//! marker, so a secret cannot reach a log line, an error message or a plan file by accident:
//! reading it takes an explicit `expose()`.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// The only way to the value. Grep for `expose(` to audit every use.
    pub fn expose(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_printing_path() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s} {s:#?}"), "<secret> <secret> <secret>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<secret>\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
