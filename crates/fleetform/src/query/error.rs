//! Errors with byte spans into the query text.

use std::fmt;

/// What went wrong; see [`QueryError`] for where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryErrorKind {
    /// A character that starts no token.
    #[error("unexpected character '{0}'")]
    UnexpectedChar(char),
    /// `"` in a target condition: IoT Edge target conditions only take single-quoted strings
    /// (full queries and metric queries take both).
    #[error("double-quoted string")]
    DoubleQuote,
    /// A `'` with no closing quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// A backslash escape the hub's grammar does not have, such as `\x` or `\u12`.
    #[error("invalid escape '{0}' in a string")]
    InvalidEscape(String),
    /// A `[[` with no closing `]]`.
    #[error("unterminated [[ ]] segment")]
    UnterminatedSegment,
    /// `[[]]`.
    #[error("empty [[ ]] segment")]
    EmptySegment,
    /// A malformed or out-of-range number.
    #[error("invalid number '{0}'")]
    InvalidNumber(String),
    /// A token where another was expected.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the grammar wanted.
        expected: String,
        /// What was there.
        found: String,
    },
    /// The text ended where more was expected.
    #[error("expected {expected}, found the end of the text")]
    UnexpectedEnd {
        /// What the grammar wanted.
        expected: String,
    },
    /// A `(` with no matching `)`.
    #[error("unclosed '('")]
    UnclosedParen,
    /// A `)` with no matching `(`.
    #[error("unmatched ')'")]
    UnmatchedParen,
    /// A `[` with no matching `]`.
    #[error("unclosed '['")]
    UnclosedBracket,
    /// Text after a complete condition or query.
    #[error("unexpected {0} after the end of the expression")]
    TrailingInput(String),
    /// Nothing but whitespace.
    #[error("empty condition")]
    EmptyCondition,
    /// A call to a function the twin query language does not have.
    #[error("unknown function {name}")]
    UnknownFunction {
        /// The name as written.
        name: String,
        /// The closest supported function, if any is close.
        suggestion: Option<&'static str>,
    },
    /// A call with the wrong number of arguments.
    #[error("{function} takes {expected} argument{}, found {found}", if *.expected == 1 { "" } else { "s" })]
    WrongArity {
        /// The function's canonical name.
        function: &'static str,
        /// Required argument count.
        expected: usize,
        /// Given argument count.
        found: usize,
    },
    /// Parentheses, NOTs or operators nested beyond what fleetform accepts.
    #[error("expression nested too deeply (more than {0} levels)")]
    TooDeep(usize),
    /// Text longer than the hub accepts.
    #[error("query is {len} characters long; the hub accepts at most {max}")]
    TooLong {
        /// Length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path an IoT Edge target condition may not read.
    #[error("target conditions cannot read '{0}'")]
    ForbiddenPath(String),
    /// A collection other than `devices` or `devices.modules`.
    #[error("unsupported collection '{0}'")]
    UnsupportedCollection(String),
    /// A projection that is neither grouped nor aggregated in an aggregate query.
    #[error("'{0}' must appear in GROUP BY when the query uses COUNT(), AVG, SUM, MIN or MAX")]
    NotGrouped(String),
    /// `SELECT *` in an aggregate or grouped query.
    #[error("SELECT * cannot be combined with GROUP BY")]
    StarWithGroupBy,
    /// GROUP BY without COUNT().
    #[error("GROUP BY needs COUNT() in the SELECT list")]
    GroupByWithoutCount,
}

/// A query-language error: a kind plus the byte range of the query text it is about, so that a
/// caller can place the span inside the string the query was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Byte offset into the query text.
    pub offset: usize,
    /// Length in bytes (0 at the end of the text).
    pub len: usize,
    /// What went wrong.
    pub kind: QueryErrorKind,
}

/// The closest known function name to `name`, if close enough to be a likely typo.
pub(crate) fn suggest_function(name: &str) -> Option<&'static str> {
    let names = crate::query::ast::Function::ALL.iter().map(|f| f.name());
    crate::suggest::closest(name, names, crate::suggest::Likeness::Keyword)
}

impl QueryError {
    pub(crate) fn new(offset: usize, len: usize, kind: QueryErrorKind) -> Self {
        QueryError { offset, len, kind }
    }

    /// A one-line description.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }

    /// A hint on how to fix it, when there is a useful one.
    pub fn help(&self) -> Option<String> {
        use QueryErrorKind as K;
        Some(match &self.kind {
            K::DoubleQuote => "double quotes are not allowed in target conditions; use single quotes".into(),
            K::UnterminatedString => {
                "close the string with the quote that opened it; write \\' for a quote inside a string".into()
            }
            K::InvalidEscape(_) => {
                "the escapes are \\' \\\" \\\\ and \\uXXXX (four hex digits); write \\\\ for a backslash".into()
            }
            K::UnterminatedSegment => "close the segment with ]]".into(),
            K::UnclosedParen => "add the missing ')'".into(),
            K::UnmatchedParen => "remove this ')' or add the matching '('".into(),
            K::UnclosedBracket => "close the array with ']'".into(),
            K::TrailingInput(_) => {
                "join conditions with AND or OR; check for an unbalanced quote or parenthesis".into()
            }
            K::EmptyCondition => {
                "an empty target condition targets no device; use '*' to target every IoT Edge device".into()
            }
            K::UnknownFunction { name, suggestion } => match suggestion {
                Some(s) => format!("unknown function {name} — did you mean {s}?"),
                None => format!(
                    "twin queries support {}",
                    crate::query::ast::Function::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                ),
            },
            K::UnexpectedChar('!') => "use != for 'not equal' or NOT for negation".into(),
            K::UnexpectedChar('&') => "use AND".into(),
            K::UnexpectedChar('|') => "use OR".into(),
            K::ForbiddenPath(_) => "target conditions may only use tags, properties.reported and deviceId".into(),
            K::TooLong { .. } => "shorten the query".into(),
            K::NotGrouped(_) => "add the path to GROUP BY or remove it from SELECT".into(),
            K::UnsupportedCollection(_) => "use FROM devices or FROM devices.modules".into(),
            K::EmptySegment => "put the property name between [[ and ]]".into(),
            _ => return None,
        })
    }

    /// The same error moved by `base` bytes, for a query embedded at `base` in a larger text.
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.offset)
    }
}

impl std::error::Error for QueryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_function_names() {
        assert_eq!(suggest_function("STARTS_WITH"), Some("STARTSWITH"));
        assert_eq!(suggest_function("is_defind"), Some("IS_DEFINED"));
        assert_eq!(suggest_function("ends_with"), Some("ENDSWITH"));
        assert_eq!(suggest_function("LOWER"), None);
    }
}
