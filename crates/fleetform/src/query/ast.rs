//! The syntax tree of the twin query language and its canonical printer.
//!
//! Every node carries the byte span it was parsed from so that errors and `explain` output can
//! point into the original text (which is usually embedded in a KDL string). Equality ignores
//! spans: two parses of differently formatted text that mean the same thing compare equal, which is
//! what the print/parse round-trip property needs.

use std::fmt;

/// A byte range in the query text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// A span from `offset` covering `len` bytes.
    pub fn new(offset: usize, len: usize) -> Self {
        Span { offset, len }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        let start = self.offset.min(other.offset);
        let end = (self.offset + self.len).max(other.offset + other.len);
        Span::new(start, end - start)
    }
}

/// One segment of a property path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    /// The property name as written (lookups are case-insensitive, printing keeps the spelling).
    pub name: String,
}

/// A dotted property path such as `properties.reported.firmware` or `configurations.[[id]].status`.
#[derive(Debug, Clone)]
pub struct Path {
    /// The segments, outermost first; never empty.
    pub segments: Vec<Segment>,
    /// Where the path was written.
    pub span: Span,
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments
    }
}

impl Path {
    /// A path from segment names, with an empty span.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        Path {
            segments: names.iter().map(|n| Segment { name: n.as_ref().to_string() }).collect(),
            span: Span::default(),
        }
    }

    /// The last segment's name: the hub names an un-aliased projection after it.
    pub fn leaf(&self) -> &str {
        self.segments.last().map(|s| s.name.as_str()).unwrap_or("")
    }

    /// Segment names equal ignoring ASCII/Unicode case, the way the hub matches property names.
    pub fn eq_ignore_case(&self, other: &Path) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| crate::query::eval::eq_ignore_case(&a.name, &b.name))
    }
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A finite number (decimal or `0x` hex in the source).
    Number(f64),
    /// A single-quoted string, unescaped.
    String(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as printed in canonical text.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl ArithOp {
    /// The operator as printed in canonical text.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => PREC_ADD,
            ArithOp::Mul | ArithOp::Div | ArithOp::Rem => PREC_MUL,
        }
    }
}

/// The functions valid in twin queries and target conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `IS_DEFINED(x)`: true when `x` has a value, including `null`.
    IsDefined,
    /// `IS_NULL(x)`
    IsNull,
    /// `IS_BOOL(x)`
    IsBool,
    /// `IS_NUMBER(x)`
    IsNumber,
    /// `IS_STRING(x)`
    IsString,
    /// `IS_OBJECT(x)`
    IsObject,
    /// `IS_ARRAY(x)`
    IsArray,
    /// `IS_PRIMITIVE(x)`: string, number, boolean or null.
    IsPrimitive,
    /// `STARTSWITH(x, prefix)`, case-sensitive.
    StartsWith,
    /// `ENDSWITH(x, suffix)`, case-sensitive.
    EndsWith,
}

impl Function {
    /// Every supported function.
    pub const ALL: [Function; 10] = [
        Function::IsDefined,
        Function::IsNull,
        Function::IsBool,
        Function::IsNumber,
        Function::IsString,
        Function::IsObject,
        Function::IsArray,
        Function::IsPrimitive,
        Function::StartsWith,
        Function::EndsWith,
    ];

    /// The canonical (upper-case) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::IsDefined => "IS_DEFINED",
            Function::IsNull => "IS_NULL",
            Function::IsBool => "IS_BOOL",
            Function::IsNumber => "IS_NUMBER",
            Function::IsString => "IS_STRING",
            Function::IsObject => "IS_OBJECT",
            Function::IsArray => "IS_ARRAY",
            Function::IsPrimitive => "IS_PRIMITIVE",
            Function::StartsWith => "STARTSWITH",
            Function::EndsWith => "ENDSWITH",
        }
    }

    /// Looks a function up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// How many arguments the function takes.
    pub fn arity(self) -> usize {
        match self {
            Function::StartsWith | Function::EndsWith => 2,
            _ => 1,
        }
    }
}

/// An expression with its source span.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it was written (empty for built trees).
    pub span: Span,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Expr {
    /// An expression with an empty span, for building trees in code.
    pub fn new(kind: ExprKind) -> Self {
        Expr { kind, span: Span::default() }
    }
}

/// The expression forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A constant.
    Literal(Literal),
    /// An array constant `[a, b]`.
    Array(Vec<Literal>),
    /// A property path.
    Path(Path),
    /// `NOT x`
    Not(Box<Expr>),
    /// `-x`
    Neg(Box<Expr>),
    /// `a AND b AND ...` (two or more operands; kept n-ary so long chains stay shallow).
    And(Vec<Expr>),
    /// `a OR b OR ...` (two or more operands).
    Or(Vec<Expr>),
    /// A comparison.
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// Arithmetic.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `x IN [..]` (or `NIN` when `negated`).
    In {
        /// The tested value.
        operand: Box<Expr>,
        /// The array constant.
        list: Vec<Literal>,
        /// `NIN`
        negated: bool,
    },
    /// A function call with its arguments.
    Call(Function, Vec<Expr>),
}

/// What a target condition or WHERE clause is.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionRoot {
    /// An empty target condition: targets no device.
    Nothing,
    /// `*`: every device.
    All,
    /// A boolean expression.
    Expr(Expr),
}

/// A parsed condition together with the text it came from.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The meaning.
    pub root: ConditionRoot,
    /// The source text (empty when built in code); spans point into it.
    pub source: String,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Condition {
    /// The empty condition, which targets nothing (the hub's meaning of an empty `targetCondition`).
    pub fn nothing() -> Self {
        Condition { root: ConditionRoot::Nothing, source: String::new() }
    }

    /// `*`.
    pub fn all() -> Self {
        Condition { root: ConditionRoot::All, source: "*".to_string() }
    }

    /// A condition from an expression built in code.
    pub fn from_expr(expr: Expr) -> Self {
        Condition { root: ConditionRoot::Expr(expr), source: String::new() }
    }

    /// The top-level AND-ed clauses (the whole expression when it is not an AND).
    pub fn clauses(&self) -> Vec<&Expr> {
        match &self.root {
            ConditionRoot::Expr(Expr { kind: ExprKind::And(items), .. }) => items.iter().collect(),
            ConditionRoot::Expr(e) => vec![e],
            _ => Vec::new(),
        }
    }

    /// The source text of `span`, or the canonical text of `expr` when there is no source.
    pub(crate) fn text_of(&self, expr: &Expr) -> String {
        let end = expr.span.offset + expr.span.len;
        if !self.source.is_empty()
            && expr.span.len > 0
            && let Some(text) = self.source.get(expr.span.offset..end)
        {
            return text.to_string();
        }
        expr.to_string()
    }
}

/// The collection a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.modules`: module twins.
    Modules,
}

/// An aggregate function of the SELECT list besides `COUNT()`; it reads a number per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `AVG(x)`: the mean of the numbers.
    Avg,
    /// `SUM(x)`
    Sum,
    /// `MIN(x)`
    Min,
    /// `MAX(x)`
    Max,
}

impl Aggregate {
    /// Every aggregate, for the parser.
    pub const ALL: [Aggregate; 4] = [Aggregate::Avg, Aggregate::Sum, Aggregate::Min, Aggregate::Max];

    /// The canonical (upper-case) name.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "AVG",
            Aggregate::Sum => "SUM",
            Aggregate::Min => "MIN",
            Aggregate::Max => "MAX",
        }
    }
}

/// One item of a SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectExpr {
    /// `COUNT()`
    Count,
    /// `AVG(x)`, `SUM(x)`, `MIN(x)`, `MAX(x)`
    Aggregate(Aggregate, Expr),
    /// Any expression (usually a path).
    Expr(Expr),
}

/// A SELECT list item with its optional alias.
#[derive(Debug, Clone)]
pub struct SelectItem {
    /// The projected value.
    pub expr: SelectExpr,
    /// `AS alias`
    pub alias: Option<String>,
    /// Where the item was written.
    pub span: Span,
}

impl PartialEq for SelectItem {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.alias == other.alias
    }
}

/// The SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// `SELECT *`
    All,
    /// `SELECT a, b AS c, COUNT() AS n`
    Items(Vec<SelectItem>),
}

/// A full query: `SELECT ... FROM ... [WHERE ...] [GROUP BY ...]`.
#[derive(Debug, Clone)]
pub struct Query {
    /// `TOP n`
    pub top: Option<u64>,
    /// The projection.
    pub selection: Selection,
    /// The collection.
    pub from: Collection,
    /// The WHERE condition.
    pub filter: Option<Expr>,
    /// GROUP BY paths.
    pub group_by: Vec<Path>,
    /// The source text (empty when built in code).
    pub source: String,
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.top == other.top
            && self.selection == other.selection
            && self.from == other.from
            && self.filter == other.filter
            && self.group_by == other.group_by
    }
}

impl Query {
    /// True for `FROM devices.modules`.
    pub fn from_modules(&self) -> bool {
        self.from == Collection::Modules
    }

    /// The WHERE clause as a [`Condition`] (spans still point into the query text), so it can
    /// be compiled into a [`crate::query::ConditionSet`]; `*` when there is no WHERE.
    pub fn where_condition(&self) -> Condition {
        match &self.filter {
            Some(e) => Condition { root: ConditionRoot::Expr(e.clone()), source: self.source.clone() },
            None => Condition::all(),
        }
    }

    /// True when the SELECT list uses `COUNT()` or another aggregate (the query returns
    /// aggregated rows).
    pub fn is_aggregate(&self) -> bool {
        matches!(&self.selection, Selection::Items(items)
            if items.iter().any(|i| matches!(i.expr, SelectExpr::Count | SelectExpr::Aggregate(..))))
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical printing.

/// Words that cannot start a path without `[[ ]]` because the parser reads them as keywords.
pub(crate) const RESERVED: [&str; 15] =
    ["AND", "OR", "NOT", "IN", "NIN", "TRUE", "FALSE", "NULL", "SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "TOP"];

pub(crate) fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$' || (!c.is_ascii() && c.is_alphabetic())
}

pub(crate) fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || (!c.is_ascii() && c.is_alphanumeric())
}

pub(crate) fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if is_ident_start(c)) && chars.all(is_ident_continue)
}

// Binding strength, loosest first. Comparison binds tighter than NOT (SQL's order), so
// `NOT a = b` means `NOT (a = b)`.
const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_NOT: u8 = 3;
const PREC_CMP: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
const PREC_UNARY: u8 = 7;
const PREC_ATOM: u8 = 8;

impl ExprKind {
    fn precedence(&self) -> u8 {
        match self {
            ExprKind::Or(_) => PREC_OR,
            ExprKind::And(_) => PREC_AND,
            ExprKind::Not(_) => PREC_NOT,
            ExprKind::Compare(..) | ExprKind::In { .. } => PREC_CMP,
            ExprKind::Arith(op, ..) => op.precedence(),
            ExprKind::Neg(_) => PREC_UNARY,
            // A negative number literal prints with a leading '-', which a parent '-' must not
            // run into; treat it as unary for parenthesisation.
            ExprKind::Literal(Literal::Number(n)) if n.is_sign_negative() => PREC_UNARY,
            _ => PREC_ATOM,
        }
    }
}

/// Writes `expr`, parenthesised when it binds looser than `min`.
fn write_child(f: &mut fmt::Formatter<'_>, expr: &Expr, min: u8) -> fmt::Result {
    if expr.kind.precedence() < min { write!(f, "({expr})") } else { write!(f, "{expr}") }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            // Rust prints the shortest text that reads back as the same f64, without exponent.
            Literal::Number(n) => write!(f, "{n}"),
            Literal::String(s) => {
                f.write_str("'")?;
                // A backslash starts an escape when read back, so it is doubled.
                f.write_str(&s.replace('\\', "\\\\").replace('\'', "''"))?;
                f.write_str("'")
            }
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            let plain = is_plain_ident(&seg.name) && !(i == 0 && is_reserved(&seg.name));
            if plain {
                f.write_str(&seg.name)?;
            } else {
                write!(f, "[[{}]]", seg.name)?;
            }
        }
        Ok(())
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &[Literal]) -> fmt::Result {
    f.write_str("[")?;
    for (i, lit) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{lit}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}"),
            ExprKind::Array(items) => write_list(f, items),
            ExprKind::Path(p) => write!(f, "{p}"),
            ExprKind::Not(inner) => {
                f.write_str("NOT ")?;
                write_child(f, inner, PREC_NOT)
            }
            ExprKind::Neg(inner) => {
                f.write_str("-")?;
                // A non-negative number right after '-' would be read back as a negative
                // literal. Nothing else gets extra parentheses, so the printed text nests no
                // deeper than the parsed one (the parser bounds nesting).
                let needs_paren = matches!(inner.kind, ExprKind::Literal(Literal::Number(n)) if !n.is_sign_negative())
                    || inner.kind.precedence() < PREC_UNARY;
                if needs_paren { write!(f, "({inner})") } else { write!(f, "{inner}") }
            }
            ExprKind::And(items) | ExprKind::Or(items) => {
                let (word, prec) =
                    if matches!(self.kind, ExprKind::And(_)) { (" AND ", PREC_AND) } else { (" OR ", PREC_OR) };
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    // A nested AND inside an AND must keep its parentheses to survive a reparse.
                    write_child(f, item, prec + 1)?;
                }
                Ok(())
            }
            ExprKind::Compare(op, l, r) => {
                write_child(f, l, PREC_CMP)?;
                write!(f, " {} ", op.symbol())?;
                write_child(f, r, PREC_CMP + 1)
            }
            ExprKind::Arith(op, l, r) => {
                let p = op.precedence();
                write_child(f, l, p)?;
                write!(f, " {} ", op.symbol())?;
                write_child(f, r, p + 1)
            }
            ExprKind::In { operand, list, negated } => {
                write_child(f, operand, PREC_CMP)?;
                f.write_str(if *negated { " NIN " } else { " IN " })?;
                write_list(f, list)
            }
            ExprKind::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            ConditionRoot::Nothing => Ok(()),
            ConditionRoot::All => f.write_str("*"),
            ConditionRoot::Expr(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if let Some(n) = self.top {
            write!(f, "TOP {n} ")?;
        }
        match &self.selection {
            Selection::All => f.write_str("*")?,
            Selection::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match &item.expr {
                        SelectExpr::Count => f.write_str("COUNT()")?,
                        SelectExpr::Aggregate(a, e) => write!(f, "{}({e})", a.name())?,
                        SelectExpr::Expr(e) => write!(f, "{e}")?,
                    }
                    if let Some(alias) = &item.alias {
                        write!(f, " AS {alias}")?;
                    }
                }
            }
        }
        f.write_str(match self.from {
            Collection::Devices => " FROM devices",
            Collection::Modules => " FROM devices.modules",
        })?;
        if let Some(filter) = &self.filter {
            write!(f, " WHERE {filter}")?;
        }
        if !self.group_by.is_empty() {
            f.write_str(" GROUP BY ")?;
            for (i, p) in self.group_by.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{p}")?;
            }
        }
        Ok(())
    }
}
