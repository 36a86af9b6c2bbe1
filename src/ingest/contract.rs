//! The request contract: every rule the HTTP handlers enforce on a value, once, as data.
//! The handlers validate with [`Rule::check_int`], [`Rule::check_text`] and
//! [`Rule::from_json`]; the OpenAPI document states the same rules with [`Rule::schema`];
//! the routes and their methods ([`ROUTES`]) drive both the router's `405`/`Allow` and the
//! document's paths. Invariant: a value passes a rule's check exactly when it is valid
//! against the rule's schema, so a generated client and the server cannot disagree.

use super::requests::ApiError;
use crate::topology::record::{Column, Value, MAX_NAME_CHARS};

/// Longest idempotency key, in characters (visible ASCII only).
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Every route and the methods each one serves.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/order", &["GET", "POST"]),
    ("/user", &["GET", "POST"]),
    ("/v1/orders", &["POST"]),
    ("/v1/orders/{order_id}", &["GET"]),
    ("/v1/users", &["GET", "POST", "PATCH", "DELETE"]),
    ("/v1/users/{uid}", &["GET", "PATCH", "DELETE"]),
    ("/v1/commands/{command_id}", &["GET"]),
];

/// The `Allow` header of a route: the methods it serves (GET for a route not listed).
pub fn allowed_methods(route: &str) -> String {
    ROUTES
        .iter()
        .find(|(r, _)| *r == route)
        .map_or_else(|| "GET".to_string(), |(_, methods)| methods.join(", "))
}

/// What one value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A uid, order id or command id: a positive int64.
    Id,
    /// An order's amount: a positive int64.
    Amount,
    /// `credit_limit` or `credit_balance`: an int64, at least 0.
    Credit,
    /// `name` or `lname`: 1 to 15 characters, none of them a control character.
    Name,
    /// An idempotency key: 1 to 200 visible ASCII characters.
    IdempotencyKey,
    /// A long-poll wait: 0 to the configured maximum, ms.
    WaitMs(u64),
}

/// The shape of the seed's `condition` and `new_val`: one line from `{` to `}` with at least
/// one entry, so `{}` is refused as the handler refuses it (what is inside, columns and
/// their values, is parsed and checked by the columns' rules).
pub const DICT_LITERAL_PATTERN: &str = "^[{]\\s*[^\\s}].*[}]$";

/// Whether `text` has the shape [`DICT_LITERAL_PATTERN`] states.
pub fn is_dict_literal_shaped(text: &str) -> bool {
    let one_line = !text.contains(['\n', '\r', '\u{2028}', '\u{2029}']);
    let inside = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
    one_line && inside.is_some_and(|inside| inside.trim_start().chars().next().is_some_and(|c| c != '}'))
}

/// The regular expression of a name: no control character (Unicode category Cc).
const NAME_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]*$";
const KEY_PATTERN: &str = "^[\\x21-\\x7E]*$";

impl Rule {
    /// The rule of a user column's values, wherever they appear.
    pub fn for_column(column: Column) -> Rule {
        match column {
            Column::Uid => Rule::Id,
            Column::Name | Column::Lname => Rule::Name,
            Column::CreditLimit | Column::CreditBalance => Rule::Credit,
        }
    }

    /// The JSON Schema (OpenAPI 3.0) that states this rule.
    pub fn schema(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Rule::Id | Rule::Amount => {
                json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX})
            }
            Rule::Credit => json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX}),
            Rule::Name => json!({
                "type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": NAME_PATTERN
            }),
            Rule::IdempotencyKey => json!({
                "type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": KEY_PATTERN
            }),
            Rule::WaitMs(max) => json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": max}),
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Rule::Name | Rule::IdempotencyKey)
    }

    /// Checks an integer value of `field`.
    pub fn check_int(self, field: &str, value: i64) -> Result<i64, ApiError> {
        let (minimum, maximum) = match self {
            Rule::Id | Rule::Amount => (1, i64::MAX),
            Rule::Credit => (0, i64::MAX),
            Rule::WaitMs(max) => (0, i64::try_from(max).unwrap_or(i64::MAX)),
            Rule::Name | Rule::IdempotencyKey => {
                return Err(ApiError::bad_request(field, "expected a string, got an integer"))
            }
        };
        if value < minimum || value > maximum {
            let what = match self {
                Rule::Id | Rule::Amount => "a positive integer".to_string(),
                Rule::Credit => "an integer of at least 0".to_string(),
                _ => format!("an integer from {minimum} to {maximum}"),
            };
            return Err(ApiError::bad_request(field, format!("must be {what}, got {value}")));
        }
        Ok(value)
    }

    /// Checks a text value of `field`.
    pub fn check_text(self, field: &str, text: &str) -> Result<(), ApiError> {
        let (max, allowed): (usize, fn(char) -> bool) = match self {
            Rule::Name => (MAX_NAME_CHARS, |c| !c.is_control()),
            Rule::IdempotencyKey => (MAX_IDEMPOTENCY_KEY, |c| c.is_ascii_graphic()),
            _ => return Err(ApiError::bad_request(field, "expected an integer, got a string")),
        };
        let chars = text.chars().count();
        if chars == 0 || chars > max {
            return Err(ApiError::bad_request(
                field,
                format!("must be 1 to {max} characters, got {chars}"),
            ));
        }
        if !text.chars().all(allowed) {
            let what = match self {
                Rule::Name => "must not contain control characters",
                _ => "must be visible ASCII characters only",
            };
            return Err(ApiError::bad_request(field, what));
        }
        Ok(())
    }

    /// Parses and checks a value that arrived as text (a query parameter or a header).
    pub fn parse(self, field: &str, text: &str) -> Result<Value, ApiError> {
        if self.is_text() {
            self.check_text(field, text)?;
            return Ok(Value::Text(text.to_string()));
        }
        let value = text
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(field, format!("expected an integer within i64, got {text:?}")))?;
        self.check_int(field, value).map(Value::Int)
    }

    /// Checks a JSON value strictly: a string where the rule is text, an integer (a number
    /// with no fraction) where it is a number; nothing is coerced.
    pub fn from_json(self, field: &str, value: &serde_json::Value) -> Result<Value, ApiError> {
        match value {
            serde_json::Value::String(text) if self.is_text() => {
                self.check_text(field, text)?;
                Ok(Value::Text(text.clone()))
            }
            serde_json::Value::Number(n) if !self.is_text() => {
                let int = n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
                        .map(|f| f as i64)
                });
                match int {
                    Some(v) => self.check_int(field, v).map(Value::Int),
                    None => Err(ApiError::bad_request(
                        field,
                        format!("expected an integer within i64, got {n}"),
                    )),
                }
            }
            other => Err(ApiError::bad_request(
                field,
                format!(
                    "expected {}, got {other}",
                    if self.is_text() { "a string" } else { "an integer" }
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_dict_literal_pattern_states_what_the_handler_accepts() {
        let pattern = regex::Regex::new(DICT_LITERAL_PATTERN).expect("a valid pattern");
        for (text, shaped) in [
            ("{'uid': 5}", true),
            ("{ \"name\": \"Asha\" }", true),
            ("{x}", true),
            ("{}", false),
            ("{ }", false),
            ("{}}", false),
            ("{'uid': 5}\n", false),
            ("'uid': 5", false),
            ("{", false),
            ("", false),
        ] {
            assert_eq!(is_dict_literal_shaped(text), shaped, "{text:?}");
            assert_eq!(
                pattern.is_match(text),
                shaped,
                "{text:?} against {DICT_LITERAL_PATTERN}"
            );
        }
    }

    #[test]
    fn ids_are_positive_and_names_short_and_printable() {
        assert!(Rule::Id.check_int("uid", 0).is_err());
        assert!(Rule::Id.check_int("uid", i64::MIN).is_err());
        assert_eq!(Rule::Id.check_int("uid", 1), Ok(1));
        assert!(Rule::Credit.check_int("credit_limit", -1).is_err());
        assert!(Rule::Name.check_text("name", "").is_err());
        assert!(Rule::Name.check_text("name", &"a".repeat(16)).is_err());
        assert!(Rule::Name.check_text("name", "a\u{85}").is_err());
        assert!(Rule::Name.check_text("name", "Ärpana Śarma").is_ok());
        assert!(Rule::IdempotencyKey.check_text("idempotency_key", "a b").is_err());
        assert_eq!(
            Rule::WaitMs(10).parse("wait_ms", "11").map_err(|e| e.field),
            Err(Some("wait_ms".into()))
        );
    }

    #[test]
    fn json_values_are_never_coerced() {
        assert!(Rule::Name.from_json("lname", &json!(0)).is_err());
        assert!(Rule::Credit.from_json("credit_limit", &json!("5")).is_err());
        assert!(Rule::Credit.from_json("credit_limit", &json!(5.5)).is_err());
        assert_eq!(Rule::Credit.from_json("credit_limit", &json!(5.0)), Ok(Value::Int(5)));
        assert!(Rule::Id.from_json("uid", &json!(null)).is_err());
    }

    #[test]
    fn the_schema_states_the_bounds_the_check_enforces() {
        let id = Rule::Id.schema();
        assert_eq!(
            (id["minimum"].as_i64(), id["maximum"].as_i64()),
            (Some(1), Some(i64::MAX))
        );
        let name = Rule::Name.schema();
        assert_eq!(name["maxLength"].as_u64(), Some(MAX_NAME_CHARS as u64));
        assert_eq!(Rule::WaitMs(30).schema()["maximum"].as_u64(), Some(30));
    }
}
