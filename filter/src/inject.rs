//! Renders a binding's inject templates from a fetched secret and checks every value before it
//! can reach a header: no CR, LF or NUL (header injection), and a bounded length.

use std::fmt;

use base64::prelude::{Engine as _, BASE64_STANDARD};

use crate::binding::{Binding, HeaderValue};
use crate::template::Template;
use crate::vault::SecretFields;

/// Envoy's default limit for all request headers is 60 KiB; one credential stays well below.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectError {
    MissingField { header: String, field: String },
    ForbiddenByte { header: String },
    TooLong { header: String, len: usize },
    ColonInUsername { header: String },
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
            Self::ColonInUsername { header } => {
                write!(f, "Basic username for header {header} holds a ':'")
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
            let value = render_value(header, &template.value, fields)?;
            check_value(header, &value)?;
            Ok((header.clone(), value))
        })
        .collect()
}

fn render_value(
    header: &str,
    value: &HeaderValue,
    fields: &SecretFields,
) -> Result<String, InjectError> {
    let fill = |template: &Template| {
        template
            .render(|name| fields.get(name))
            .map_err(|field| InjectError::MissingField {
                header: header.to_string(),
                field: field.to_string(),
            })
    };
    match value {
        HeaderValue::Text(template) => fill(template),
        HeaderValue::Basic { username, password } => {
            let username = fill(username)?;
            // RFC 7617: the user-id cannot hold a colon, the password may.
            if username.contains(':') {
                return Err(InjectError::ColonInUsername {
                    header: header.to_string(),
                });
            }
            let pair = format!("{username}:{}", fill(password)?);
            Ok(format!("Basic {}", BASE64_STANDARD.encode(pair)))
        }
    }
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
    use crate::binding::{CredentialSource, Engine, HeaderTemplate, OnError};
    use crate::template::Template;
    use crate::vault::Secret;

    fn binding(templates: &[(&str, &str)]) -> Binding {
        Binding {
            name: "b".into(),
            hosts: vec![],
            path_prefix: None,
            identities: vec![],
            credential: CredentialSource {
                engine: Engine::Kv2,
                mount: "secret".into(),
                path: Template::parse("p").unwrap(),
                field: None,
                refresh: Some(Duration::from_secs(60)),
            },
            inject: templates
                .iter()
                .map(|(h, v)| HeaderTemplate {
                    name: h.to_string(),
                    value: HeaderValue::Text(Template::parse(v).unwrap()),
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

    #[test]
    fn basic_header_encodes_username_and_password() {
        let mut b = binding(&[]);
        b.inject = vec![HeaderTemplate {
            name: "authorization".into(),
            value: HeaderValue::Basic {
                username: Template::parse("{username}").unwrap(),
                password: Template::parse("{password}").unwrap(),
            },
        }];
        let rendered = render(
            &b,
            &fields(&[("username", "v-orders"), ("password", "p:w")]),
        );
        // base64("v-orders:p:w")
        assert_eq!(rendered.unwrap()[0].1, "Basic di1vcmRlcnM6cDp3");
        let err = render(&b, &fields(&[("username", "a:b"), ("password", "p")])).unwrap_err();
        assert_eq!(
            err,
            InjectError::ColonInUsername {
                header: "authorization".into()
            }
        );
    }
}
