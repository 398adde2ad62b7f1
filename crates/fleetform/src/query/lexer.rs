//! Turns query text into tokens with byte spans.

use super::ast::{is_ident_continue, is_ident_start};
use super::error::{QueryError, QueryErrorKind};

/// A token kind. Words are kept as text: whether a word is a keyword depends on where the parser
/// meets it (after a `.` every word is a property name).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'s> {
    Word(&'s str),
    /// `[[...]]`: the text between the brackets.
    Quoted(&'s str),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Tok<'_> {
    /// How the token is named in "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(q) => format!("'[[{q}]]'"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(_) => "a number".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::Star => "'*'".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Percent => "'%'".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
        }
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'s> {
    pub tok: Tok<'s>,
    pub offset: usize,
    pub len: usize,
}

/// Which string quotes the text may use. The hub's query grammar takes `'...'` and `"..."`
/// alike, but IoT Edge target conditions reject double quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quotes {
    SingleOnly,
    SingleOrDouble,
}

/// Splits `src` into tokens, or reports the first lexical error.
pub(crate) fn lex(src: &str, quotes: Quotes) -> Result<Vec<Token<'_>>, QueryError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let single = |tok| Token { tok, offset: start, len: 1 };
        let tok = match b {
            b'(' => single(Tok::LParen),
            b')' => single(Tok::RParen),
            b']' => single(Tok::RBracket),
            b',' => single(Tok::Comma),
            b'.' => single(Tok::Dot),
            b'*' => single(Tok::Star),
            b'+' => single(Tok::Plus),
            b'-' => single(Tok::Minus),
            b'/' => single(Tok::Slash),
            b'%' => single(Tok::Percent),
            b'=' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    return Err(QueryError::new(
                        start,
                        2,
                        QueryErrorKind::Unexpected {
                            expected: "an operator ('=' compares for equality)".into(),
                            found: "'=='".into(),
                        },
                    ));
                }
                single(Tok::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => Token { tok: Tok::Ne, offset: start, len: 2 },
            b'<' => match bytes.get(i + 1) {
                Some(b'=') => Token { tok: Tok::Le, offset: start, len: 2 },
                Some(b'>') => Token { tok: Tok::Ne, offset: start, len: 2 },
                _ => single(Tok::Lt),
            },
            b'>' => match bytes.get(i + 1) {
                Some(b'=') => Token { tok: Tok::Ge, offset: start, len: 2 },
                _ => single(Tok::Gt),
            },
            b'[' => {
                if bytes.get(i + 1) == Some(&b'[') {
                    lex_segment(src, start)?
                } else {
                    single(Tok::LBracket)
                }
            }
            b'\'' => lex_string(src, start)?,
            b'"' if quotes == Quotes::SingleOrDouble => lex_string(src, start)?,
            b'"' => {
                // Point at the whole double-quoted run when it closes, so the fix is obvious.
                let len = src[start + 1..].find('"').map(|e| e + 2).unwrap_or(src.len() - start);
                return Err(QueryError::new(start, len, QueryErrorKind::DoubleQuote));
            }
            b'0'..=b'9' => lex_number(src, start)?,
            _ => {
                // Safe: `start` is always on a char boundary (we only advance by whole tokens).
                let c = src[start..].chars().next().unwrap_or('\u{fffd}');
                if is_ident_start(c) {
                    let len = src[start..]
                        .char_indices()
                        .find(|&(_, ch)| !is_ident_continue(ch))
                        .map(|(k, _)| k)
                        .unwrap_or(src.len() - start);
                    Token { tok: Tok::Word(&src[start..start + len]), offset: start, len }
                } else {
                    return Err(QueryError::new(start, c.len_utf8(), QueryErrorKind::UnexpectedChar(c)));
                }
            }
        };
        i = tok.offset + tok.len;
        out.push(tok);
    }
    Ok(out)
}

/// Reads a string opened by the quote at `start`. Escapes are the hub grammar's `\'`, `\"`,
/// `\\` and `\uXXXX`; a doubled quote (`''`) is also read as one quote, as fleetform always has.
fn lex_string(src: &str, start: usize) -> Result<Token<'_>, QueryError> {
    let bytes = src.as_bytes();
    let quote = bytes[start];
    let mut value = String::new();
    let mut i = start + 1;
    let mut chunk = i;
    loop {
        match bytes.get(i) {
            None => {
                return Err(QueryError::new(start, src.len() - start, QueryErrorKind::UnterminatedString));
            }
            Some(&b) if b == quote => {
                value.push_str(&src[chunk..i]);
                if bytes.get(i + 1) == Some(&quote) {
                    value.push(quote as char);
                    i += 2;
                    chunk = i;
                } else {
                    return Ok(Token { tok: Tok::Str(value), offset: start, len: i + 1 - start });
                }
            }
            Some(b'\\') if i + 1 == bytes.len() => {
                return Err(QueryError::new(start, src.len() - start, QueryErrorKind::UnterminatedString));
            }
            Some(b'\\') => {
                value.push_str(&src[chunk..i]);
                let (c, len) = lex_escape(src, i)?;
                value.push(c);
                i += len;
                chunk = i;
            }
            Some(_) => i += 1,
        }
    }
}

/// Decodes the escape whose backslash is at `at`: the character and the escape's length.
fn lex_escape(src: &str, at: usize) -> Result<(char, usize), QueryError> {
    let rest = &src[at + 1..];
    match rest.chars().next().unwrap_or('\0') {
        c @ ('\'' | '"' | '\\') => Ok((c, 2)),
        'u' => {
            let hex = rest.get(1..5).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let code = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
            match code.and_then(char::from_u32) {
                Some(c) => Ok((c, 6)),
                None => {
                    // Cover the backslash, the `u` and whatever hex digits follow it.
                    let digits = rest[1..].bytes().take(4).take_while(u8::is_ascii_hexdigit).count();
                    let text = src[at..at + 2 + digits].to_string();
                    Err(QueryError::new(at, 2 + digits, QueryErrorKind::InvalidEscape(text)))
                }
            }
        }
        c => Err(QueryError::new(at, 1 + c.len_utf8(), QueryErrorKind::InvalidEscape(format!("\\{c}")))),
    }
}

fn lex_segment(src: &str, start: usize) -> Result<Token<'_>, QueryError> {
    let body_start = start + 2;
    match src[body_start..].find("]]") {
        None => Err(QueryError::new(start, src.len() - start, QueryErrorKind::UnterminatedSegment)),
        Some(0) => Err(QueryError::new(start, 4, QueryErrorKind::EmptySegment)),
        Some(n) => Ok(Token { tok: Tok::Quoted(&src[body_start..body_start + n]), offset: start, len: n + 4 }),
    }
}

fn lex_number(src: &str, start: usize) -> Result<Token<'_>, QueryError> {
    let bytes = src.as_bytes();
    let mut i = start;
    let value;
    if bytes[i] == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        let digits = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        let hex = &src[digits..i];
        value = if hex.is_empty() {
            None
        } else {
            // Fold digit by digit into an f64 so long hex literals lose precision like a
            // decimal one would, instead of failing.
            Some(hex.bytes().fold(0f64, |acc, d| acc * 16.0 + f64::from((d as char).to_digit(16).unwrap_or(0))))
        };
    } else {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(bytes.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                i = j;
            }
        }
        value = src[start..i].parse::<f64>().ok();
    }
    // A letter glued to the number (`12abc`, `1e`, `0xZ`) is a typo, not two tokens.
    let glued = src[i..].chars().next().is_some_and(is_ident_continue);
    let end = if glued {
        i + src[i..].char_indices().find(|&(_, c)| !is_ident_continue(c)).map(|(k, _)| k).unwrap_or(src.len() - i)
    } else {
        i
    };
    match value {
        Some(v) if v.is_finite() && !glued => Ok(Token { tok: Tok::Num(v), offset: start, len: i - start }),
        _ => Err(QueryError::new(start, end - start, QueryErrorKind::InvalidNumber(src[start..end].to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_t(s: &str) -> Result<Vec<Token<'_>>, QueryError> {
        lex(s, Quotes::SingleOnly)
    }

    fn toks(s: &str) -> Vec<Tok<'_>> {
        lex(s, Quotes::SingleOrDouble).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_operators_and_words() {
        assert_eq!(
            toks("a.b <> 1 AND c<=2"),
            vec![
                Tok::Word("a"),
                Tok::Dot,
                Tok::Word("b"),
                Tok::Ne,
                Tok::Num(1.0),
                Tok::Word("AND"),
                Tok::Word("c"),
                Tok::Le,
                Tok::Num(2.0)
            ]
        );
    }

    #[test]
    fn lexes_numbers() {
        assert_eq!(toks("0x1F"), vec![Tok::Num(31.0)]);
        assert_eq!(toks("1.5e3"), vec![Tok::Num(1500.0)]);
        assert_eq!(toks("2E-2"), vec![Tok::Num(0.02)]);
        assert_eq!(toks("7"), vec![Tok::Num(7.0)]);
    }

    #[test]
    fn rejects_bad_numbers_with_spans() {
        let e = lex_t("x = 12abc").unwrap_err();
        assert_eq!((e.offset, e.len), (4, 5));
        assert!(matches!(e.kind, QueryErrorKind::InvalidNumber(_)));
        let e = lex_t("x = 0x").unwrap_err();
        assert_eq!((e.offset, e.len), (4, 2));
        let e = lex_t("1e999").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::InvalidNumber("1e999".into()));
    }

    #[test]
    fn string_escapes() {
        assert_eq!(toks("'it''s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(toks("''''"), vec![Tok::Str("'".into())]);
        assert_eq!(toks("'é'"), vec![Tok::Str("é".into())]);
    }

    #[test]
    fn backslash_escapes_of_the_hub_grammar() {
        assert_eq!(toks(r"'it\'s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(toks(r#"'say \"hi\"'"#), vec![Tok::Str("say \"hi\"".into())]);
        assert_eq!(toks(r"'a\\b'"), vec![Tok::Str("a\\b".into())]);
        assert_eq!(toks(r"'\u0070rod'"), vec![Tok::Str("prod".into())]);
        assert_eq!(toks(r"'\u00E9'"), vec![Tok::Str("é".into())]);
        assert_eq!(toks(r#""it's \"x\"""#), vec![Tok::Str("it's \"x\"".into())]);
        // The token spans the raw text, escapes included, so what follows keeps its offset.
        let t = lex(r"'\u0070' = x", Quotes::SingleOnly).unwrap();
        assert_eq!((t[0].offset, t[0].len, t[1].offset), (0, 8, 9));
    }

    #[test]
    fn bad_escapes_point_at_the_escape() {
        let e = lex_t(r"tags.a = 'ab\x'").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::InvalidEscape(r"\x".into()));
        assert_eq!((e.offset, e.len), (12, 2));
        let e = lex_t(r"tags.a = 'ab\u12'").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::InvalidEscape(r"\u12".into()));
        assert_eq!((e.offset, e.len), (12, 4));
        // A surrogate is four hex digits but no character.
        let e = lex_t(r"'\uD800'").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::InvalidEscape(r"\uD800".into()));
        let e = lex_t(r"tags.a = 'ab\").unwrap_err();
        assert_eq!((e.offset, e.kind), (9, QueryErrorKind::UnterminatedString));
        let e = lex_t(r"tags.a = 'ab\'").unwrap_err();
        assert_eq!((e.offset, e.kind), (9, QueryErrorKind::UnterminatedString));
    }

    #[test]
    fn full_queries_take_double_quotes() {
        let t = lex("a = \"x\" AND b = 'y'", Quotes::SingleOrDouble).unwrap();
        assert_eq!(t[2].tok, Tok::Str("x".into()));
        assert_eq!((t[2].offset, t[2].len), (4, 3));
        let e = lex("a = \"x", Quotes::SingleOrDouble).unwrap_err();
        assert_eq!((e.offset, e.kind), (4, QueryErrorKind::UnterminatedString));
    }

    #[test]
    fn unterminated_string_points_at_opening_quote() {
        let e = lex_t("tags.a = 'abc").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::UnterminatedString);
        assert_eq!((e.offset, e.len), (9, 4));
        assert!(e.help().unwrap().contains("the quote that opened it"));
    }

    #[test]
    fn double_quotes_are_rejected_with_help() {
        let e = lex_t("tags.a = \"x\"").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::DoubleQuote);
        assert_eq!((e.offset, e.len), (9, 3));
        assert_eq!(e.help().unwrap(), "double quotes are not allowed in target conditions; use single quotes");
    }

    #[test]
    fn quoted_segments() {
        assert_eq!(
            toks("configurations.[[my-config]].status"),
            vec![Tok::Word("configurations"), Tok::Dot, Tok::Quoted("my-config"), Tok::Dot, Tok::Word("status")]
        );
        let e = lex_t("tags.[[abc").unwrap_err();
        assert_eq!((e.offset, e.kind), (5, QueryErrorKind::UnterminatedSegment));
        let e = lex_t("tags.[[]]").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::EmptySegment);
    }

    #[test]
    fn unexpected_characters() {
        let e = lex_t("a && b").unwrap_err();
        assert_eq!((e.offset, e.kind.clone()), (2, QueryErrorKind::UnexpectedChar('&')));
        assert_eq!(e.help().as_deref(), Some("use AND"));
        let e = lex_t("a == 1").unwrap_err();
        assert_eq!((e.offset, e.len), (2, 2));
        let e = lex_t("a = €").unwrap_err();
        assert_eq!((e.offset, e.len), (4, 3));
    }
}
