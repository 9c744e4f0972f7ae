//! Python literals, as Ansible's INI inventory reads values (`ast.literal_eval`): `5` is a
//! number, `True` a boolean, `"[1, 2]"` a list, and anything that is not a literal (`yes`,
//! `true`, `01`, `a=b`) stays the string it was written as.

use serde_json::{Map, Number, Value};

/// The value Ansible's INI plugin makes of `s`.
pub fn ini_value(s: &str) -> Value {
    literal_eval(s).unwrap_or_else(|| Value::String(s.to_string()))
}

/// `ast.literal_eval` for the literals that have a JSON form; None where Python raises.
pub fn literal_eval(s: &str) -> Option<Value> {
    let mut p = Parser {
        s: s.as_bytes(),
        i: 0,
    };
    // Python rejects leading indentation; trailing blanks are fine.
    if s.starts_with([' ', '\t']) {
        return None;
    }
    let mut v = p.expr()?;
    // `1, 2` is a tuple even without parentheses.
    if p.eat(b',') {
        let mut items = vec![v];
        p.ws();
        while p.i < p.s.len() {
            items.push(p.expr()?);
            if !p.eat(b',') {
                break;
            }
            p.ws();
        }
        v = Value::Array(items);
    }
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                Some(Value::Array(self.seq(b']')?))
            }
            b'(' => {
                self.i += 1;
                let start = self.i;
                let items = self.seq(b')')?;
                // `(5)` is 5, `(5,)` a tuple; tuples become lists in JSON.
                let text = std::str::from_utf8(&self.s[start..self.i - 1]).ok()?;
                if items.len() == 1 && !text.trim_end().ends_with(',') {
                    return items.into_iter().next();
                }
                Some(Value::Array(items))
            }
            b'{' => {
                self.i += 1;
                self.dict()
            }
            b'\'' | b'"' => self.string(),
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                match self.expr()? {
                    Value::Number(n) if neg => negate(&n),
                    v @ Value::Number(_) => Some(v),
                    _ => None,
                }
            }
            c if c.is_ascii_digit() || c == b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Some(Value::Bool(true)),
                    b"False" => Some(Value::Bool(false)),
                    b"None" => Some(Value::Null),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn seq(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.expr()?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn dict(&mut self) -> Option<Value> {
        let mut out = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(out));
            }
            let k = match self.expr()? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                _ => return None,
            };
            if !self.eat(b':') {
                return None; // a set literal: no JSON form
            }
            let v = self.expr()?;
            out.insert(k, v);
            if self.eat(b'}') {
                return Some(Value::Object(out));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn string(&mut self) -> Option<Value> {
        let q = self.peek()?;
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == q {
                // Adjacent literals concatenate: 'a' 'b' is 'ab'.
                self.ws();
                let mut s = String::from_utf8(out).ok()?;
                if matches!(self.peek(), Some(b'\'' | b'"')) {
                    if let Value::String(more) = self.string()? {
                        s.push_str(&more);
                    }
                }
                return Some(Value::String(s));
            }
            if c == b'\\' {
                let e = self.peek()?;
                self.i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'\n' => {}
                    _ => {
                        out.push(b'\\');
                        out.push(e);
                    }
                }
            } else if c == b'\n' {
                return None;
            } else {
                out.push(c);
            }
        }
        None
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            || (self.i > start
                && matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s[self.i - 1], b'e' | b'E')
                && !self.s[start..].starts_with(b"0x"))
        {
            self.i += 1;
        }
        let raw = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if raw.starts_with('_') || raw.ends_with('_') || raw.contains("__") {
            return None;
        }
        let t = raw.replace('_', "");
        let lower = t.to_ascii_lowercase();
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(d) = lower.strip_prefix(prefix) {
                return i64::from_str_radix(d, radix).ok().map(Value::from);
            }
        }
        if t.bytes().all(|c| c.is_ascii_digit()) {
            // Python 3 refuses `01` (leading zeros), except for zero itself.
            if t.len() > 1 && t.starts_with('0') && t.bytes().any(|c| c != b'0') {
                return None;
            }
            return t
                .parse::<i64>()
                .ok()
                .map(Value::from)
                .or_else(|| t.parse::<u64>().ok().map(Value::from));
        }
        if lower.contains(['j', 'x', 'o', 'b']) {
            return None;
        }
        let f: f64 = t.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }
}

fn negate(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::from(-i));
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_like_ansible_ini() {
        // Each pair checked against ansible-core 2.19's INI plugin (see tests/ansible_inventory.rs).
        let cases = [
            ("5", json!(5)),
            ("-5", json!(-5)),
            ("0x10", json!(16)),
            ("1e3", json!(1000.0)),
            ("1.0", json!(1.0)),
            ("1_000", json!(1000)),
            ("True", json!(true)),
            ("None", json!(null)),
            ("[1, 2]", json!([1, 2])),
            ("(1,2)", json!([1, 2])),
            ("(5)", json!(5)),
            ("5,", json!([5])),
            ("{'x': 1, \"y\": [True]}", json!({"x": 1, "y": [true]})),
            ("'single'", json!("single")),
            ("\"a\\nb\"", json!("a\nb")),
        ];
        for (src, want) in cases {
            assert_eq!(ini_value(src), want, "{src}");
        }
        for s in [
            "true",
            "yes",
            "01",
            "a=b",
            "two words",
            "1.2.3.4",
            "{1, 2}",
            " 5",
        ] {
            assert_eq!(ini_value(s), json!(s), "{s}");
        }
    }
}
