//! The text form of a [`SealContext`]: `table=T,column=C,row=R[,tenant=X]`, as tools and
//! configuration files write it (`mcpsec crypt encrypt --context …`).
//!
//! Strict: every pair is `key=value`, the keys are exactly `table`, `column`, `row` and
//! optionally `tenant`, none twice, and each value is a valid context part. Keys may be
//! surrounded by spaces; values are taken as written (a space in a row id is part of it).

use crate::{Error, SealContext};

/// Why a context's text form was refused. Context parts are not secret, so the message
/// names the offending pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealContextSyntaxError {
    /// A comma-separated item without `=`.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    /// A key other than `table`, `column`, `row`, `tenant`.
    #[error("unknown key {0:?} (table, column, row, tenant)")]
    UnknownKey(String),
    /// A key given more than once.
    #[error("{0} given twice")]
    Repeated(String),
    /// `table`, `column` or `row` is missing.
    #[error("needs table=, column= and row=")]
    Missing,
    /// A value is not a valid context part (empty, or over 256 bytes).
    #[error("{0}")]
    Part(Error),
}

impl SealContext {
    /// Parses `table=T,column=C,row=R[,tenant=X]` into the context of a field of `category`.
    ///
    /// ```
    /// use mcpsec_core::SealContext;
    /// let context = SealContext::parse("pii", "table=users,column=email,row=42,tenant=acme")?;
    /// assert_eq!(context, SealContext::new("pii", "users", "email", "42")?.with_tenant("acme")?);
    /// assert!(SealContext::parse("pii", "table=users,column=email").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(category: &str, text: &str) -> Result<Self, SealContextSyntaxError> {
        let (mut table, mut column, mut row, mut tenant) = (None, None, None, None);
        for pair in text.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| SealContextSyntaxError::NotKeyValue(pair.to_owned()))?;
            let slot = match key.trim() {
                "table" => &mut table,
                "column" => &mut column,
                "row" => &mut row,
                "tenant" => &mut tenant,
                other => return Err(SealContextSyntaxError::UnknownKey(other.to_owned())),
            };
            if slot.replace(value).is_some() {
                return Err(SealContextSyntaxError::Repeated(key.to_owned()));
            }
        }
        let (Some(table), Some(column), Some(row)) = (table, column, row) else {
            return Err(SealContextSyntaxError::Missing);
        };
        let context =
            SealContext::new(category, table, column, row).map_err(SealContextSyntaxError::Part)?;
        match tenant {
            Some(tenant) => context
                .with_tenant(tenant)
                .map_err(SealContextSyntaxError::Part),
            None => Ok(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_parse_strictly() {
        let context =
            SealContext::parse("pii", "table=users,column=email,row=42,tenant=acme").unwrap();
        assert_eq!(context.tenant(), Some("acme"));
        assert_eq!(
            context,
            SealContext::new("pii", "users", "email", "42")
                .unwrap()
                .with_tenant("acme")
                .unwrap()
        );
        let spaced = SealContext::parse("pii", " table=users, column =email,row=a=b").unwrap();
        assert_eq!(
            spaced,
            SealContext::new("pii", "users", "email", "a=b").unwrap()
        );
        let cases: [(&str, SealContextSyntaxError); 7] = [
            ("", SealContextSyntaxError::NotKeyValue(String::new())),
            ("table=users", SealContextSyntaxError::Missing),
            ("table=users,column=email", SealContextSyntaxError::Missing),
            (
                "table=users,column=email,row=1,row=2",
                SealContextSyntaxError::Repeated("row".into()),
            ),
            (
                "table=users,column=email,row=1,colour=red",
                SealContextSyntaxError::UnknownKey("colour".into()),
            ),
            (
                "table=users,column=email,row=",
                SealContextSyntaxError::Part(Error::InvalidArgument(
                    "seal context parts must be 1 to 256 bytes",
                )),
            ),
            (
                "table users",
                SealContextSyntaxError::NotKeyValue("table users".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(SealContext::parse("pii", text), Err(expected), "{text:?}");
        }
    }
}
