//! `{name}` templates, compiled once at configure time. Used for vault paths (variables from
//! the verified identity) and for injected header values (variables from the fetched secret).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unclosed,
    StrayBrace,
    EmptyName,
    BadName { name: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclosed => write!(f, "'{{' without a closing '}}'"),
            Self::StrayBrace => write!(f, "'}}' without an opening '{{'"),
            Self::EmptyName => write!(f, "empty variable name '{{}}'"),
            Self::BadName { name } => {
                write!(f, "variable name {name:?} may hold only [A-Za-z0-9_]")
            }
        }
    }
}

impl Template {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            let (literal, tail) = rest.split_at(open);
            if tail.starts_with('}') {
                return Err(TemplateError::StrayBrace);
            }
            let tail = tail.get(1..).unwrap_or_default();
            let close = tail.find('}').ok_or(TemplateError::Unclosed)?;
            let (name, after) = tail.split_at(close);
            if name.is_empty() {
                return Err(TemplateError::EmptyName);
            }
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(TemplateError::BadName {
                    name: name.to_string(),
                });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(literal.to_string()));
            }
            parts.push(Part::Var(name.to_string()));
            rest = after.get(1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Renders with `lookup`; the first variable it cannot resolve is returned as the error.
    pub fn render<'v>(&self, lookup: impl Fn(&str) -> Option<&'v str>) -> Result<String, &str> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(name) => out.push_str(lookup(name).ok_or(name.as_str())?),
            }
        }
        Ok(out)
    }
}

/// The template as written: `Bearer {api_key}`. It holds names, never values.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Var(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_written() {
        let raw = "Basic {user}:{password}!";
        assert_eq!(Template::parse(raw).unwrap().to_string(), raw);
    }

    #[test]
    fn renders_literals_and_variables() {
        let template = Template::parse("apps/{namespace}/{service_account}/db").unwrap();
        let rendered = template.render(|name| match name {
            "namespace" => Some("payments"),
            "service_account" => Some("checkout"),
            _ => None,
        });
        assert_eq!(rendered.unwrap(), "apps/payments/checkout/db");
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            ["namespace", "service_account"]
        );
    }

    #[test]
    fn reports_the_unresolved_variable() {
        let template = Template::parse("Bearer {token}").unwrap();
        assert_eq!(template.render(|_| None), Err("token"));
    }

    #[test]
    fn rejects_malformed_templates() {
        assert_eq!(Template::parse("a{b"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("a}b"), Err(TemplateError::StrayBrace));
        assert_eq!(Template::parse("a{}b"), Err(TemplateError::EmptyName));
        assert_eq!(
            Template::parse("{a-b}"),
            Err(TemplateError::BadName { name: "a-b".into() })
        );
    }
}
