//! Credentials in configuration: shown redacted, handed out only on request.

use std::fmt;
use std::str::FromStr;

/// What a redacted password reads as.
const REDACTED: &str = "***";

/// A connection URL that may carry a password (`postgres://user:password@host/db`,
/// `esdb://admin:changeit@host:2113`, a `password=` parameter, or PostgreSQL's
/// `key=value` form). `Debug` and `Display` show it with every password replaced by `***`, so
/// logging a configuration never prints one; [`SecretUrl::expose`] gives the URL itself, for
/// connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, to connect with. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its passwords replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password_parameters(&redact_userinfo(&self.0))
    }
}

/// `scheme://user:password@rest` as `scheme://user:***@rest`. The password ends at the last
/// `@`: a password holding an unescaped `@` is hidden whole, and an `@` further on (in a query
/// parameter) hides more than the password rather than less.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Every `password=value` (a URL's query parameter, or PostgreSQL's `key=value` form, quoted
/// or not) as `password=***`.
fn redact_password_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.to_ascii_lowercase().find(KEY) {
        let value_start = start + KEY.len();
        out.push_str(&rest[..value_start]);
        out.push_str(REDACTED);
        let value = &rest[value_start..];
        let value_len = match value.strip_prefix('\'') {
            // A quoted value ends at the first quote not escaped by a backslash.
            Some(quoted) => {
                let mut escaped = false;
                quoted
                    .char_indices()
                    .find(|&(_, c)| {
                        let closes = c == '\'' && !escaped;
                        escaped = c == '\\' && !escaped;
                        closes
                    })
                    .map_or(value.len(), |(i, _)| i + 2)
            }
            None => value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .unwrap_or(value.len()),
        };
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> (String, String) {
        let secret = SecretUrl::from(url);
        (format!("{secret:?}"), secret.to_string())
    }

    #[test]
    fn a_database_url_is_shown_with_its_password_hidden() {
        let (debug, display) = shown("postgres://milestone:hunter2@db.internal:5432/milestone");
        assert_eq!(
            display,
            "postgres://milestone:***@db.internal:5432/milestone"
        );
        assert_eq!(
            debug,
            "\"postgres://milestone:***@db.internal:5432/milestone\""
        );
    }

    #[test]
    fn the_url_itself_is_handed_out_only_by_expose() {
        let url = "esdb://admin:changeit@127.0.0.1:2113?tls=false";
        let secret: SecretUrl = url.parse().unwrap();
        assert_eq!(secret.expose(), url);
        assert_eq!(
            secret.to_string(),
            "esdb://admin:***@127.0.0.1:2113?tls=false"
        );
    }

    #[test]
    fn a_password_holding_an_at_sign_is_hidden_whole() {
        let (debug, display) = shown("postgres://app:p@ss:w0rd@db/milestone");
        assert_eq!(display, "postgres://app:***@db/milestone");
        assert!(!debug.contains("ss:w0rd"), "{debug}");
    }

    #[test]
    fn a_password_given_as_a_parameter_is_hidden() {
        let (_, display) = shown("postgres://app@db/milestone?password=hunter2&sslmode=disable");
        assert_eq!(
            display,
            "postgres://app@db/milestone?password=***&sslmode=disable"
        );
        let (_, display) = shown("host=db user=app password='hunter 2\\'s' dbname=milestone");
        assert_eq!(display, "host=db user=app password=*** dbname=milestone");
    }

    #[test]
    fn a_url_without_a_password_is_shown_as_it_is() {
        for url in [
            "postgres://app@db/milestone",
            "postgres://db:5432/milestone",
            "kurrentdb://127.0.0.1:2113?tls=false",
        ] {
            assert_eq!(SecretUrl::from(url).to_string(), url);
        }
    }
}
