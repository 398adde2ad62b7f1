//! iotedgedev's `.env`, read the way python-dotenv (which iotedgedev loads it with) reads
//! it, so a template resolves to the values `iotedgedev genconfig` would use:
//!
//! - `KEY=VALUE`, optionally after `export `; blank lines and `#` lines are skipped, and so
//!   is a line without `=` (python-dotenv gives it no value).
//! - Unquoted values end at a `#` that follows whitespace (an inline comment) and are
//!   trimmed; `a#b` keeps its `#`.
//!   `KEY= # x` is `# x`: the whitespace after `=` is not part of the value.
//! - `'single'` quotes decode only `\'` and `\\`; `"double"` quotes decode `\n`, `\t`,
//!   `\"`, `\\` and friends; both may span lines and may be followed by a comment.
//! - `${VAR}` and `${VAR:-default}` expand (in every kind of value, single-quoted too, as
//!   python-dotenv 1.x does) from the process environment first, then from earlier lines
//!   (`load_dotenv` without `override`, as iotedgedev calls it); a bare `$VAR` is kept.
//!
//! Two deliberate differences, both failing closed or harmless: a line python-dotenv cannot
//! parse (it warns and skips it) is an error naming the line, and a UTF-8 byte order mark
//! is dropped rather than made part of the first name.

use std::collections::BTreeMap;

/// A line python-dotenv would not parse either (it warns and skips it; a template
/// resolved without it would be wrong, so this refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Parses `.env` text. `env` looks a variable up in the process environment.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, DotenvError> {
    let mut out = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { chars: &chars, at: 0, line: 1 };
    while !p.done() {
        p.skip_inline_space();
        if p.eat_line_end() {
            continue;
        }
        let start_line = p.line;
        if p.peek() == Some('#') {
            p.skip_to_line_end();
            continue;
        }
        if p.looking_at("export") && p.chars.get(p.at + 6).is_some_and(|c| *c == ' ' || *c == '\t') {
            p.at += 6;
            p.skip_inline_space();
        }
        let key = match p.peek() {
            Some(q @ ('\'' | '"')) => {
                p.at += 1;
                let k = p.until(q).ok_or_else(|| p.err(start_line, "the quoted name has no closing quote"))?;
                p.at += 1;
                k
            }
            _ => p.take_while(|c| c != '=' && c != '#' && !c.is_whitespace()),
        };
        p.skip_inline_space();
        if p.peek() != Some('=') {
            // python-dotenv: a name alone has no value; anything else is a parse error.
            let rest = p.rest_of_line();
            if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                continue;
            }
            return Err(p.err(start_line, format!("expected KEY=VALUE, found `{key}{rest}`")));
        }
        p.at += 1;
        p.skip_inline_space();
        let quote = p.peek().filter(|c| *c == '\'' || *c == '"');
        let raw = match quote {
            Some(q) => {
                p.at += 1;
                let kind = if q == '"' { "double" } else { "single" };
                let v = p
                    .quoted(q)
                    .ok_or_else(|| p.err(start_line, format!("the {kind}-quoted value has no closing quote")))?;
                // After a closing quote only whitespace and a comment may follow.
                let tail = p.rest_of_line();
                let tail = tail.trim_start();
                if !tail.is_empty() && !tail.starts_with('#') {
                    return Err(p.err(start_line, format!("unexpected `{tail}` after the quoted value of {key}")));
                }
                v
            }
            None => {
                let line = p.rest_of_line();
                strip_inline_comment(&line).trim().to_string()
            }
        };
        if key.is_empty() {
            return Err(p.err(start_line, "a line starts with `=`: the variable has no name"));
        }
        let value = interpolate(&raw, &out, env);
        out.insert(key, value);
    }
    Ok(out)
}

/// `value # comment` -> `value`: a `#` starts a comment only after whitespace.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

/// `${VAR}` / `${VAR:-default}`: the process environment, then earlier lines, then the
/// default (empty without one), as python-dotenv resolves them.
fn interpolate(raw: &str, earlier: &BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>) -> String {
    expand_placeholders(raw, |inner| {
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        let valid = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        valid.then(|| env(name).or_else(|| earlier.get(name).cloned()).unwrap_or_else(|| default.to_string()))
    })
}

/// Replaces each `${inner}` of `text` by what `resolve(inner)` returns; where it returns
/// `None` the placeholder stays as written. An unterminated `${` and the rest after it are
/// kept as they are.
pub(crate) fn expand_placeholders(text: &str, mut resolve: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        match resolve(&after[..end]) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[at..at + 3 + end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
    line: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn err(&self, line: usize, message: impl Into<String>) -> DotenvError {
        DotenvError { line, message: message.into() }
    }

    fn looking_at(&self, word: &str) -> bool {
        word.chars().enumerate().all(|(i, c)| self.chars.get(self.at + i) == Some(&c))
    }

    fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    fn eat_line_end(&mut self) -> bool {
        match self.peek() {
            Some('\n') => {
                self.at += 1;
                self.line += 1;
                true
            }
            Some('\r') => {
                self.at += 1;
                if self.peek() == Some('\n') {
                    self.at += 1;
                }
                self.line += 1;
                true
            }
            _ => false,
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(&f) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// Up to (not including) `q` on the same line.
    fn until(&mut self, q: char) -> Option<String> {
        let s = self.take_while(|c| c != q && c != '\n' && c != '\r');
        (self.peek() == Some(q)).then_some(s)
    }

    /// The rest of the line, consuming its end.
    fn rest_of_line(&mut self) -> String {
        let s = self.take_while(|c| c != '\n' && c != '\r');
        self.eat_line_end();
        s
    }

    fn skip_to_line_end(&mut self) {
        self.rest_of_line();
    }

    /// A quoted value after its opening quote, through the closing one, escapes decoded.
    fn quoted(&mut self, q: char) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                '\\' => {
                    let next = self.peek()?;
                    self.at += 1;
                    let decoded = match (q, next) {
                        ('\'', '\'') => Some('\''),
                        ('\'', '\\') => Some('\\'),
                        ('\'', _) => None,
                        (_, 'n') => Some('\n'),
                        (_, 't') => Some('\t'),
                        (_, 'r') => Some('\r'),
                        (_, '"') => Some('"'),
                        (_, '\\') => Some('\\'),
                        (_, '\'') => Some('\''),
                        _ => None,
                    };
                    match decoded {
                        Some(d) => out.push(d),
                        None => {
                            out.push('\\');
                            out.push(next);
                        }
                    }
                    if next == '\n' {
                        self.line += 1;
                    }
                }
                c if c == q => return Some(out),
                '\n' => {
                    self.line += 1;
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(text: &str, env: &[(&str, &str)]) -> BTreeMap<String, String> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(text, &|k| env.get(k).cloned()).unwrap()
    }

    fn get(text: &str, key: &str) -> String {
        parse_with(text, &[]).get(key).cloned().unwrap_or_else(|| panic!("{key} not in {text:?}"))
    }

    // Expectations checked against python-dotenv 1.2.2's `load_dotenv` by hand.
    #[test]
    fn inline_comments_end_unquoted_values_only_after_whitespace() {
        assert_eq!(get("REG=myreg.azurecr.io # the registry\n", "REG"), "myreg.azurecr.io");
        assert_eq!(get("REG=myreg.azurecr.io\t# tab\n", "REG"), "myreg.azurecr.io");
        assert_eq!(get("PASS=abc#def\n", "PASS"), "abc#def");
        assert_eq!(get("EMPTY= # nothing\n", "EMPTY"), "# nothing");
        assert_eq!(get("A=  spaced value  \n", "A"), "spaced value");
    }

    #[test]
    fn quotes_export_and_escapes() {
        assert_eq!(get("export A=1\n", "A"), "1");
        assert_eq!(get("A='x # not a comment' # comment\n", "A"), "x # not a comment");
        assert_eq!(get("A=\"x # kept\"  # comment\n", "A"), "x # kept");
        assert_eq!(get("A=\"line1\\nline2\"\n", "A"), "line1\nline2");
        assert_eq!(get("A='raw\\n'\n", "A"), "raw\\n");
        assert_eq!(get("A=\"multi\nline\"\nB=2\n", "A"), "multi\nline");
        assert_eq!(get("A=\"multi\nline\"\nB=2\n", "B"), "2");
        assert_eq!(get("A = 1\n", "A"), "1");
        assert_eq!(get("\u{feff}A=1\r\nB=2\r\n", "B"), "2");
    }

    #[test]
    fn comments_blank_lines_and_bare_names_are_skipped() {
        let m = parse_with("# c\n\n   # indented\nBARE\nA=1\n", &[]);
        assert_eq!(m.len(), 1);
        assert_eq!(m["A"], "1");
    }

    #[test]
    fn braced_variables_expand_bare_dollars_do_not() {
        let m = parse_with(
            "REG=r.io\nIMG=${REG}/m\nQ='${REG}'\nD=\"${NOPE:-dflt}\"\nP=pa$word\nE=${P}x\n",
            &[("REG", "env.io")],
        );
        // The process environment wins over the file, as in iotedgedev.
        assert_eq!(m["IMG"], "env.io/m");
        assert_eq!(m["Q"], "env.io");
        assert_eq!(m["E"], "pa$wordx");
        assert_eq!(m["D"], "dflt");
        assert_eq!(m["P"], "pa$word");
        assert_eq!(parse_with("A=1\nB=${A}2\n", &[])["B"], "12");
    }

    #[test]
    fn unparsable_lines_are_named() {
        let e = parse("A=1\nB=\"open\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("no closing quote"), "{e:?}");
        let e = parse("A=1\nnot a line\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("A='x' junk\n", &|_| None).unwrap_err();
        assert!(e.message.contains("junk"), "{e:?}");
    }
}
