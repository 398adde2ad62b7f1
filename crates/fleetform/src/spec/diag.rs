//! Problems found in deployment files, as miette diagnostics that point into the file.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode, SourceSpan};
use serde::Serialize;

use super::source::SourceFile;

/// What kind of problem this is. The code is stable: CI scripts may match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The file is not valid KDL.
    Syntax,
    UnknownNode,
    UnknownProperty,
    UnknownAnnotation,
    MissingValue,
    ExtraValue,
    WrongType,
    OutOfRange,
    InvalidName,
    InvalidEnum,
    Duplicate,
    TooMany,
    /// Something only a standard deployment may hold appears in a layered one.
    NotInLayered,
    InvalidJson,
    InvalidRoute,
    InvalidQuery,
    /// An `(env)` variable is not set.
    MissingEnv,
    Io,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownNode => "unknown-node",
            Code::UnknownProperty => "unknown-property",
            Code::UnknownAnnotation => "unknown-annotation",
            Code::MissingValue => "missing-value",
            Code::ExtraValue => "extra-value",
            Code::WrongType => "wrong-type",
            Code::OutOfRange => "out-of-range",
            Code::InvalidName => "invalid-name",
            Code::InvalidEnum => "invalid-enum",
            Code::Duplicate => "duplicate",
            Code::TooMany => "too-many",
            Code::NotInLayered => "not-in-layered",
            Code::InvalidJson => "invalid-json",
            Code::InvalidRoute => "invalid-route",
            Code::InvalidQuery => "invalid-query",
            Code::MissingEnv => "missing-env",
            Code::Io => "io",
        }
    }
}

/// One problem in one file, with a span and what to do about it.
#[derive(Clone, Debug)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    pub file: Arc<SourceFile>,
    pub span: SourceSpan,
    pub label: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(
        code: Code,
        file: &Arc<SourceFile>,
        span: SourceSpan,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Problem { code, message: message.into(), file: file.clone(), span, label: label.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// `file:line:col` of the start of the span.
    pub fn location(&self) -> String {
        let (line, col) = self.file.line_col(self.span.offset());
        format!("{}:{}:{}", self.file.name, line, col)
    }

    pub fn to_json(&self) -> ProblemJson<'_> {
        let (line, column) = self.file.line_col(self.span.offset());
        let (end_line, end_column) = self.file.line_col(self.span.offset() + self.span.len());
        ProblemJson {
            severity: "error",
            code: self.code,
            message: &self.message,
            file: &self.file.name,
            line,
            column,
            end_line,
            end_column,
            label: &self.label,
            help: self.help.as_deref(),
        }
    }
}

/// The JSON form of a problem, as `fleetform validate --format json` prints it.
#[derive(Serialize)]
pub struct ProblemJson<'a> {
    pub severity: &'static str,
    pub code: Code,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub label: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("fleetform::{}", self.code.as_str())))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&*self.file as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span))))
    }
}

// The CLI suggests deployment names through this path.
pub use crate::suggest::did_you_mean;
