//! Parses the flat dictionaries the seed's clients send in `condition=` and `new_val=`:
//! JSON (`{"name": "Arpana"}`) or Python literals (`{'name': 'Arpana', 'credit_limit': 5}`).
//! Total: any input yields a map or an error that says where it went wrong.

use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed dictionary at character {position}: {message}")]
pub struct DictError {
    pub position: usize,
    pub message: String,
}

/// Deepest nesting accepted (the seed only sends flat dictionaries).
const MAX_INPUT_CHARS: usize = 8192;

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    len: usize,
}

impl Parser<'_> {
    fn error<T>(&mut self, message: impl Into<String>) -> Result<T, DictError> {
        let position = self.chars.peek().map_or(self.len, |(i, _)| *i);
        Err(DictError {
            position,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn expect(&mut self, wanted: char) -> Result<(), DictError> {
        self.skip_ws();
        match self.chars.next() {
            Some((_, c)) if c == wanted => Ok(()),
            Some((i, c)) => Err(DictError {
                position: i,
                message: format!("expected '{wanted}', found '{c}'"),
            }),
            None => self.error(format!("expected '{wanted}', found the end")),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, DictError> {
        let mut out = String::new();
        loop {
            match self.chars.next() {
                None => return self.error("unterminated string"),
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c @ ('\\' | '\'' | '"' | '/'))) => out.push(c),
                    Some((i, c)) => {
                        return Err(DictError {
                            position: i,
                            message: format!("unsupported escape '\\{c}'"),
                        })
                    }
                    None => return self.error("unterminated escape"),
                },
                Some((_, c)) => out.push(c),
            }
        }
    }

    fn scalar(&mut self) -> Result<Value, DictError> {
        self.skip_ws();
        match self.chars.peek().map(|(_, c)| *c) {
            Some(q @ ('\'' | '"')) => {
                self.chars.next();
                Ok(Value::String(self.string(q)?))
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => {
                let mut text = String::new();
                while let Some((_, c)) = self
                    .chars
                    .next_if(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
                {
                    text.push(c);
                }
                match text.parse::<i64>() {
                    Ok(n) => Ok(Value::Number(Number::from(n))),
                    Err(_) => self.error(format!("{text:?} is not an integer within i64")),
                }
            }
            Some(_) => {
                let mut word = String::new();
                while let Some((_, c)) = self.chars.next_if(|(_, c)| c.is_ascii_alphabetic()) {
                    word.push(c);
                }
                match word.as_str() {
                    "True" | "true" => Ok(Value::Bool(true)),
                    "False" | "false" => Ok(Value::Bool(false)),
                    "None" | "null" => Ok(Value::Null),
                    _ => self.error("expected a quoted string or an integer"),
                }
            }
            None => self.error("expected a value, found the end"),
        }
    }
}

/// Parses a flat dictionary of scalars.
pub fn parse_dict(input: &str) -> Result<Map<String, Value>, DictError> {
    if input.len() > MAX_INPUT_CHARS {
        return Err(DictError {
            position: MAX_INPUT_CHARS,
            message: "dictionary too long".into(),
        });
    }
    let mut p = Parser {
        chars: input.char_indices().peekable(),
        len: input.len(),
    };
    let mut map = Map::new();
    p.expect('{')?;
    p.skip_ws();
    if p.chars.next_if(|(_, c)| *c == '}').is_some() {
        return finish(p, map);
    }
    loop {
        p.skip_ws();
        let key = match p.chars.next() {
            Some((_, q @ ('\'' | '"'))) => p.string(q)?,
            Some((i, c)) => {
                return Err(DictError {
                    position: i,
                    message: format!("expected a quoted key, found '{c}'"),
                })
            }
            None => return p.error("expected a key, found the end"),
        };
        p.expect(':')?;
        let value = p.scalar()?;
        if map.insert(key.clone(), value).is_some() {
            return p.error(format!("key {key:?} appears twice"));
        }
        p.skip_ws();
        match p.chars.next() {
            Some((_, ',')) => {
                p.skip_ws();
                if p.chars.next_if(|(_, c)| *c == '}').is_some() {
                    return finish(p, map);
                }
            }
            Some((_, '}')) => return finish(p, map),
            Some((i, c)) => {
                return Err(DictError {
                    position: i,
                    message: format!("expected ',' or '}}', found '{c}'"),
                })
            }
            None => return p.error("expected ',' or '}', found the end"),
        }
    }
}

fn finish(mut p: Parser<'_>, map: Map<String, Value>) -> Result<Map<String, Value>, DictError> {
    p.skip_ws();
    match p.chars.peek() {
        None => Ok(map),
        Some(_) => p.error("unexpected text after the dictionary"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_python_and_json_dicts() {
        assert_eq!(
            Value::Object(parse_dict("{'name':'Arpana'}").unwrap()),
            json!({"name": "Arpana"})
        );
        assert_eq!(
            Value::Object(parse_dict(r#"{"credit_limit": 500, 'lname' : "O'Neil", 'x': -3,}"#).unwrap()),
            json!({"credit_limit": 500, "lname": "O'Neil", "x": -3})
        );
        assert_eq!(Value::Object(parse_dict("{ }").unwrap()), json!({}));
        assert_eq!(
            Value::Object(parse_dict(r"{'a': 'it\'s'}").unwrap()),
            json!({"a": "it's"})
        );
    }

    #[test]
    fn rejects_malformed_input_with_a_position() {
        for bad in [
            "",
            "{",
            "{'a'}",
            "{'a':}",
            "{'a': 1",
            "{'a': 1} x",
            "{a: 1}",
            "{'a': 1.5}",
            "{'a': 99999999999999999999}",
            "{'a':1,'a':2}",
            "[1]",
            "{'a': 'x}",
        ] {
            assert!(parse_dict(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
