//! ARG and ENV values, read the way Directord reads them: as a Python literal when the text is
//! one (`1` is a number, `1.2` a float, `['x']` a list, `{"a": "b"}` a mapping, `True`/`None`
//! what Python says), and as the plain string otherwise.
//!
//! A small recursive-descent reader of Python literal syntax (strings in either quote,
//! numbers, True/False/None, lists, tuples and dicts) into JSON values; nothing is evaluated.
//! Nesting deeper than [`MAX_DEPTH`] is not read as a literal (Python itself gives up there
//! too): the value stays text, and the reader's stack stays small whatever the input.

use serde_json::{Map, Number, Value};

/// Deepest nesting of lists and dicts read as a literal.
pub(crate) const MAX_DEPTH: usize = 64;

/// The value of `text`: a literal if the whole text is one, else the text itself.
pub(crate) fn parse(text: &str) -> Value {
    let mut r = Reader { s: text.as_bytes(), i: 0, depth: 0 };
    match r.value() {
        Some(v) if r.at_end() => v,
        _ => Value::String(text.to_string()),
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        let open = *self.s.get(self.i)?;
        if matches!(open, b'[' | b'(' | b'{') {
            if self.depth == MAX_DEPTH {
                return None;
            }
            self.depth += 1;
        }
        let value = match open {
            b'\'' | b'"' => self.string().map(Value::String),
            b'[' => self.seq(b'[', b']').map(Value::Array),
            b'(' => self.seq(b'(', b')').map(Value::Array),
            b'{' => self.dict(),
            _ => self.atom(),
        };
        if matches!(open, b'[' | b'(' | b'{') {
            self.depth -= 1;
        }
        value
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        other => other,
                    });
                }
                c if c == quote => return String::from_utf8(out).ok(),
                c => out.push(c),
            }
        }
        None
    }

    fn seq(&mut self, open: u8, close: u8) -> Option<Vec<Value>> {
        self.eat(open);
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.value()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    fn dict(&mut self) -> Option<Value> {
        self.eat(b'{');
        let mut map = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                _ => return None,
            };
            if !self.eat(b':') {
                return None;
            }
            map.insert(key, self.value()?);
            if !self.eat(b',') {
                return self.eat(b'}').then_some(Value::Object(map));
            }
        }
    }

    fn atom(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len() && !b",:]})".contains(&self.s[self.i]) && !self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match word {
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "None" => Some(Value::Null),
            _ => {
                let digits = word.strip_prefix(['-', '+']).unwrap_or(word);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'_')
                {
                    return None;
                }
                let clean = word.replace('_', "");
                if let Ok(i) = clean.parse::<i64>() {
                    return Some(Value::Number(i.into()));
                }
                clean.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, MAX_DEPTH};
    use serde_json::json;

    #[test]
    fn python_literals_and_plain_text() {
        assert_eq!(parse("['a', 1]"), json!(["a", 1]));
        assert_eq!(parse("1"), json!(1));
        assert_eq!(parse("1.2"), json!(1.2));
        assert_eq!(parse("{\"a\": \"b\"}"), json!({"a": "b"}));
        assert_eq!(parse("{'a': [True, None, (1, 2)]}"), json!({"a": [true, null, [1, 2]]}));
        assert_eq!(parse("12345"), json!(12345));
        assert_eq!(parse("argument"), json!("argument"));
        assert_eq!(parse("hello world"), json!("hello world"));
        assert_eq!(parse("[unclosed"), json!("[unclosed"));
        assert_eq!(parse("'it''s'"), json!("'it''s'"));
        assert_eq!(parse("10.0.0.1"), json!("10.0.0.1"));
    }

    #[test]
    fn deep_nesting_stays_text_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(40_000), "]".repeat(40_000));
        assert_eq!(parse(&deep), json!(deep));
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_array());
    }
}
