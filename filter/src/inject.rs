//! Renders a binding's inject templates from a fetched secret and checks every value before it
//! can reach a header: no CR, LF or NUL (header injection), and a bounded length.

use std::fmt;

use crate::binding::Binding;
use crate::vault::SecretFields;

/// Envoy's default limit for all request headers is 60 KiB; one credential stays well below.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectError {
    MissingField { header: String, field: String },
    ForbiddenByte { header: String },
    TooLong { header: String, len: usize },
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingField { header, field } => {
                write!(f, "secret has no field {field:?} for header {header}")
            }
            Self::ForbiddenByte { header } => {
                write!(f, "value for header {header} holds CR, LF or NUL")
            }
            Self::TooLong { header, len } => {
                write!(
                    f,
                    "value for header {header} is {len} bytes, over {MAX_HEADER_VALUE_BYTES}"
                )
            }
        }
    }
}

/// The `(header, value)` pairs to set, in the binding's order.
pub fn render(
    binding: &Binding,
    fields: &SecretFields,
) -> Result<Vec<(String, String)>, InjectError> {
    binding
        .inject
        .iter()
        .map(|template| {
            let header = &template.name;
            let value = template
                .value
                .render(|name| fields.get(name))
                .map_err(|field| InjectError::MissingField {
                    header: header.clone(),
                    field: field.to_string(),
                })?;
            check_value(header, &value)?;
            Ok((header.clone(), value))
        })
        .collect()
}

fn check_value(header: &str, value: &str) -> Result<(), InjectError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(InjectError::ForbiddenByte {
            header: header.to_string(),
        });
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(InjectError::TooLong {
            header: header.to_string(),
            len: value.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::binding::{CredentialSource, HeaderTemplate, OnError};
    use crate::template::Template;
    use crate::vault::Secret;

    fn binding(templates: &[(&str, &str)]) -> Binding {
        Binding {
            name: "b".into(),
            hosts: vec![],
            path_prefix: None,
            identities: vec![],
            credential: CredentialSource::Kv2 {
                mount: "secret".into(),
                path: Template::parse("p").unwrap(),
                field: None,
                refresh: Duration::from_secs(60),
            },
            inject: templates
                .iter()
                .map(|(h, v)| HeaderTemplate {
                    name: h.to_string(),
                    value: Template::parse(v).unwrap(),
                })
                .collect(),
            strip: vec![],
            on_error: OnError::Deny,
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> SecretFields {
        SecretFields::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), Secret::new(v.to_string())))
                .collect(),
        )
    }

    #[test]
    fn renders_several_headers_in_order() {
        let b = binding(&[
            ("authorization", "Bearer {token}"),
            ("x-tenant", "{tenant}"),
        ]);
        let rendered = render(&b, &fields(&[("token", "t-1"), ("tenant", "acme")])).unwrap();
        assert_eq!(
            rendered,
            [
                ("authorization".to_string(), "Bearer t-1".to_string()),
                ("x-tenant".into(), "acme".into())
            ]
        );
    }

    #[test]
    fn refuses_values_that_would_split_headers() {
        let b = binding(&[("authorization", "Bearer {token}")]);
        for bad in ["a\r\nx-evil: 1", "a\nb", "a\0b"] {
            let err = render(&b, &fields(&[("token", bad)])).unwrap_err();
            assert_eq!(
                err,
                InjectError::ForbiddenByte {
                    header: "authorization".into()
                }
            );
        }
    }

    #[test]
    fn refuses_oversized_values() {
        let b = binding(&[("authorization", "{token}")]);
        let long = "a".repeat(MAX_HEADER_VALUE_BYTES + 1);
        let err = render(&b, &fields(&[("token", &long)])).unwrap_err();
        assert!(matches!(err, InjectError::TooLong { .. }));
    }

    #[test]
    fn names_the_missing_field() {
        let b = binding(&[("authorization", "Bearer {token}")]);
        let err = render(&b, &fields(&[])).unwrap_err();
        assert_eq!(
            err,
            InjectError::MissingField {
                header: "authorization".into(),
                field: "token".into()
            }
        );
    }
}
