//! Recursive-descent parser for target conditions and full queries.

use super::ast::*;
use super::error::{QueryError, QueryErrorKind, suggest_function};
use super::lexer::{Quotes, Tok, Token, lex};

/// How deeply parentheses, NOT, unary minus and operator chains may nest. Evaluation, printing
/// and dropping the tree are recursive, so the parser bounds the tree's depth to keep them far
/// from the stack limit on any input (the fuzzer feeds arbitrary text).
pub const MAX_DEPTH: usize = 128;

/// Parses a target condition or WHERE condition. `*` alone means every device; empty text is
/// an [`QueryErrorKind::EmptyCondition`] error.
pub fn parse_condition(text: &str) -> Result<Condition, QueryError> {
    let toks = lex(text, Quotes::SingleOnly)?;
    if toks.is_empty() {
        return Err(QueryError::new(0, text.len(), QueryErrorKind::EmptyCondition));
    }
    if toks.len() == 1 && toks[0].tok == Tok::Star {
        return Ok(Condition { root: ConditionRoot::All, source: text.to_string() });
    }
    let mut p = Parser::new(text, toks);
    let expr = p.expr()?;
    p.finish()?;
    Ok(Condition { root: ConditionRoot::Expr(expr), source: text.to_string() })
}

/// Parses a full query: `SELECT ... FROM devices|devices.modules [WHERE ...] [GROUP BY ...]`.
pub fn parse_query(text: &str) -> Result<Query, QueryError> {
    let toks = lex(text, Quotes::SingleOrDouble)?;
    let mut p = Parser::new(text, toks);
    let q = p.query()?;
    p.finish()?;
    Ok(q)
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token<'s>>,
    pos: usize,
    depth: usize,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str, toks: Vec<Token<'s>>) -> Self {
        Parser { src, toks, pos: 0, depth: 0 }
    }

    fn peek(&self) -> Option<&Token<'s>> {
        self.toks.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok<'s>> {
        self.peek().map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok<'s>> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn bump(&mut self) -> Option<Token<'s>> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, kw: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_word(&mut self, kw: &str) -> bool {
        let hit = self.at_word(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat(&mut self, tok: &Tok<'_>) -> Option<Token<'s>> {
        if self.peek_tok() == Some(tok) { self.bump() } else { None }
    }

    /// "expected X" at the current token (or at the end of the text).
    fn expected(&self, what: &str) -> QueryError {
        match self.peek() {
            Some(t) => QueryError::new(
                t.offset,
                t.len,
                QueryErrorKind::Unexpected { expected: what.to_string(), found: t.tok.describe() },
            ),
            None => QueryError::new(self.src.len(), 0, QueryErrorKind::UnexpectedEnd { expected: what.to_string() }),
        }
    }

    fn enter(&mut self, at: Span) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(at.offset, at.len, QueryErrorKind::TooDeep(MAX_DEPTH)));
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), QueryError> {
        match self.peek() {
            None => Ok(()),
            Some(t) if t.tok == Tok::RParen => Err(QueryError::new(t.offset, t.len, QueryErrorKind::UnmatchedParen)),
            Some(t) => Err(QueryError::new(t.offset, t.len, QueryErrorKind::TrailingInput(t.tok.describe()))),
        }
    }

    fn tok_span(t: &Token<'_>) -> Span {
        Span::new(t.offset, t.len)
    }

    // ---- expressions -------------------------------------------------------------------

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let first = self.and()?;
        if !self.at_word("OR") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_word("OR") {
            items.push(self.and()?);
        }
        Ok(n_ary(items, ExprKind::Or))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let first = self.not()?;
        if !self.at_word("AND") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_word("AND") {
            items.push(self.not()?);
        }
        Ok(n_ary(items, ExprKind::And))
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.at_word("NOT") {
            let t = self.bump().ok_or_else(|| self.expected("NOT"))?;
            self.enter(Self::tok_span(&t))?;
            let inner = self.not()?;
            self.depth -= 1;
            let span = Self::tok_span(&t).to(inner.span);
            return Ok(Expr { kind: ExprKind::Not(Box::new(inner)), span });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.additive()?;
        let saved = self.depth;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Eq) => Some(CmpOp::Eq),
                Some(Tok::Ne) => Some(CmpOp::Ne),
                Some(Tok::Lt) => Some(CmpOp::Lt),
                Some(Tok::Le) => Some(CmpOp::Le),
                Some(Tok::Gt) => Some(CmpOp::Gt),
                Some(Tok::Ge) => Some(CmpOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.enter(left.span)?;
                self.pos += 1;
                let right = self.additive()?;
                let span = left.span.to(right.span);
                left = Expr { kind: ExprKind::Compare(op, Box::new(left), Box::new(right)), span };
            } else if self.at_word("IN") || self.at_word("NIN") {
                self.enter(left.span)?;
                let negated = self.at_word("NIN");
                self.pos += 1;
                let (list, end) = self.array()?;
                let span = left.span.to(end);
                left = Expr { kind: ExprKind::In { operand: Box::new(left), list, negated }, span };
            } else {
                break;
            }
        }
        self.depth = saved;
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.multiplicative()?;
        let saved = self.depth;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Plus) => ArithOp::Add,
                Some(Tok::Minus) => ArithOp::Sub,
                _ => break,
            };
            self.enter(left.span)?;
            self.pos += 1;
            let right = self.multiplicative()?;
            left = arith(op, left, right);
        }
        self.depth = saved;
        Ok(left)
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        let saved = self.depth;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Star) => ArithOp::Mul,
                Some(Tok::Slash) => ArithOp::Div,
                Some(Tok::Percent) => ArithOp::Rem,
                _ => break,
            };
            self.enter(left.span)?;
            self.pos += 1;
            let right = self.unary()?;
            left = arith(op, left, right);
        }
        self.depth = saved;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.peek_tok() != Some(&Tok::Minus) {
            return self.primary();
        }
        let minus = self.bump().ok_or_else(|| self.expected("'-'"))?;
        let mspan = Self::tok_span(&minus);
        // `-5` directly is a negative literal, so `-5` and a printed Number(-5) read back alike.
        if let Some(Tok::Num(n)) = self.peek_tok() {
            let n = *n;
            let t = self.bump().ok_or_else(|| self.expected("a number"))?;
            return Ok(Expr { kind: ExprKind::Literal(Literal::Number(-n)), span: mspan.to(Self::tok_span(&t)) });
        }
        self.enter(mspan)?;
        let inner = self.unary()?;
        self.depth -= 1;
        let span = mspan.to(inner.span);
        Ok(Expr { kind: ExprKind::Neg(Box::new(inner)), span })
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.expected("a value, property path or '('"));
        };
        let span = Self::tok_span(&t);
        match &t.tok {
            Tok::Num(n) => {
                self.pos += 1;
                Ok(lit(Literal::Number(*n), span))
            }
            Tok::Str(s) => {
                self.pos += 1;
                Ok(lit(Literal::String(s.clone()), span))
            }
            Tok::LBracket => {
                let (list, end) = self.array()?;
                Ok(Expr { kind: ExprKind::Array(list), span: span.to(end) })
            }
            Tok::LParen => {
                self.pos += 1;
                self.enter(span)?;
                let inner = self.expr()?;
                self.depth -= 1;
                match self.eat(&Tok::RParen) {
                    Some(close) => Ok(Expr { kind: inner.kind, span: span.to(Self::tok_span(&close)) }),
                    None if self.peek().is_none() => Err(QueryError::new(t.offset, 1, QueryErrorKind::UnclosedParen)),
                    None => Err(self.expected("')' or an operator")),
                }
            }
            Tok::Word(w) if self.peek_at(1) == Some(&Tok::LParen) => self.call(w, span),
            Tok::Word(w) => {
                if let Some(l) = word_literal(w) {
                    self.pos += 1;
                    return Ok(lit(l, span));
                }
                if is_reserved(w) {
                    return Err(self.expected("a value, property path or '('"));
                }
                let path = self.path()?;
                Ok(Expr { span: path.span, kind: ExprKind::Path(path) })
            }
            Tok::Quoted(_) => {
                let path = self.path()?;
                Ok(Expr { span: path.span, kind: ExprKind::Path(path) })
            }
            _ => Err(self.expected("a value, property path or '('")),
        }
    }

    fn call(&mut self, name: &str, span: Span) -> Result<Expr, QueryError> {
        let Some(func) = Function::from_name(name) else {
            return Err(QueryError::new(
                span.offset,
                span.len,
                QueryErrorKind::UnknownFunction { name: name.to_string(), suggestion: suggest_function(name) },
            ));
        };
        self.pos += 1; // name
        let open = self.bump().ok_or_else(|| self.expected("'('"))?;
        self.enter(span)?;
        let mut args = Vec::new();
        if self.peek_tok() != Some(&Tok::RParen) {
            loop {
                args.push(self.expr()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
        }
        self.depth -= 1;
        let close = match self.eat(&Tok::RParen) {
            Some(c) => c,
            None if self.peek().is_none() => {
                return Err(QueryError::new(open.offset, 1, QueryErrorKind::UnclosedParen));
            }
            None => return Err(self.expected("',' or ')'")),
        };
        let full = span.to(Self::tok_span(&close));
        if args.len() != func.arity() {
            return Err(QueryError::new(
                full.offset,
                full.len,
                QueryErrorKind::WrongArity { function: func.name(), expected: func.arity(), found: args.len() },
            ));
        }
        Ok(Expr { kind: ExprKind::Call(func, args), span: full })
    }

    /// `[lit, lit, ...]`; returns the literals and the span of the whole array.
    fn array(&mut self) -> Result<(Vec<Literal>, Span), QueryError> {
        let open = match self.eat(&Tok::LBracket) {
            Some(t) => t,
            None => return Err(self.expected("an array such as ['a', 'b']")),
        };
        let mut list = Vec::new();
        if let Some(close) = self.eat(&Tok::RBracket) {
            return Ok((list, Self::tok_span(&open).to(Self::tok_span(&close))));
        }
        loop {
            list.push(self.array_literal(&open)?);
            if self.eat(&Tok::Comma).is_some() {
                continue;
            }
            match self.eat(&Tok::RBracket) {
                Some(close) => {
                    return Ok((list, Self::tok_span(&open).to(Self::tok_span(&close))));
                }
                None if self.peek().is_none() => {
                    return Err(QueryError::new(open.offset, 1, QueryErrorKind::UnclosedBracket));
                }
                None => return Err(self.expected("',' or ']'")),
            }
        }
    }

    fn array_literal(&mut self, open: &Token<'_>) -> Result<Literal, QueryError> {
        let negative = self.eat(&Tok::Minus).is_some();
        let out = match self.peek_tok() {
            Some(Tok::Num(n)) => Some(Literal::Number(if negative { -*n } else { *n })),
            Some(Tok::Str(s)) if !negative => Some(Literal::String(s.clone())),
            Some(Tok::Word(w)) if !negative => word_literal(w),
            None => {
                return Err(QueryError::new(open.offset, 1, QueryErrorKind::UnclosedBracket));
            }
            _ => None,
        };
        match out {
            Some(l) => {
                self.pos += 1;
                Ok(l)
            }
            None => Err(self.expected("a constant (string, number, true, false or null)")),
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let mut segments = Vec::new();
        let first = self.bump().ok_or_else(|| self.expected("a property path"))?;
        let mut span = Self::tok_span(&first);
        match first.tok {
            Tok::Word(w) | Tok::Quoted(w) => segments.push(Segment { name: w.to_string() }),
            _ => return Err(self.expected("a property path")),
        }
        while self.eat(&Tok::Dot).is_some() {
            match self.peek_tok() {
                Some(Tok::Word(w) | Tok::Quoted(w)) => {
                    segments.push(Segment { name: w.to_string() });
                    let t = self.bump().ok_or_else(|| self.expected("a property name"))?;
                    span = span.to(Self::tok_span(&t));
                }
                _ => return Err(self.expected("a property name after '.'")),
            }
        }
        Ok(Path { segments, span })
    }

    // ---- queries -----------------------------------------------------------------------

    fn query(&mut self) -> Result<Query, QueryError> {
        if !self.eat_word("SELECT") {
            return Err(self.expected("SELECT"));
        }
        let mut top = None;
        if self.eat_word("TOP") {
            match self.peek().cloned() {
                Some(Token { tok: Tok::Num(n), offset, len }) => {
                    self.pos += 1;
                    // TOP takes a whole number; 2^53 is where f64 stops counting exactly.
                    if n.fract() != 0.0 || !(0.0..=9_007_199_254_740_992.0).contains(&n) {
                        return Err(QueryError::new(
                            offset,
                            len,
                            QueryErrorKind::InvalidNumber(self.src[offset..offset + len].into()),
                        ));
                    }
                    top = Some(n as u64);
                }
                _ => return Err(self.expected("a number after TOP")),
            }
        }
        let selection = if self.eat(&Tok::Star).is_some() {
            Selection::All
        } else {
            let mut items = Vec::new();
            loop {
                items.push(self.select_item()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
            Selection::Items(items)
        };
        if !self.eat_word("FROM") {
            return Err(self.expected("',' or FROM"));
        }
        let from = self.collection()?;
        let filter = if self.eat_word("WHERE") { Some(self.expr()?) } else { None };
        let mut group_by = Vec::new();
        if self.eat_word("GROUP") {
            if !self.eat_word("BY") {
                return Err(self.expected("BY"));
            }
            loop {
                match self.peek_tok() {
                    Some(Tok::Word(w)) if !is_reserved(w) => group_by.push(self.path()?),
                    Some(Tok::Quoted(_)) => group_by.push(self.path()?),
                    _ => return Err(self.expected("a property path")),
                }
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
        }
        let q = Query { top, selection, from, filter, group_by, source: self.src.to_string() };
        check_grouping(&q)?;
        Ok(q)
    }

    fn select_item(&mut self) -> Result<SelectItem, QueryError> {
        let start = self.peek().map(Self::tok_span).unwrap_or(Span::new(self.src.len(), 0));
        let (expr, mut span) = if self.at_word("COUNT") && self.peek_at(1) == Some(&Tok::LParen) {
            self.pos += 2;
            let close = match self.eat(&Tok::RParen) {
                Some(c) => c,
                None => return Err(self.expected("')' (COUNT takes no arguments)")),
            };
            (SelectExpr::Count, start.to(Self::tok_span(&close)))
        } else if let Some(agg) = Aggregate::ALL.into_iter().find(|a| self.at_word(a.name()))
            && self.peek_at(1) == Some(&Tok::LParen)
        {
            self.pos += 2;
            let arg = self.expr()?;
            let close = match self.eat(&Tok::RParen) {
                Some(c) => c,
                None => return Err(self.expected(&format!("')' ({} takes one argument)", agg.name()))),
            };
            (SelectExpr::Aggregate(agg, arg), start.to(Self::tok_span(&close)))
        } else {
            let e = self.expr()?;
            let span = e.span;
            (SelectExpr::Expr(e), span)
        };
        let mut alias = None;
        if self.eat_word("AS") {
            match self.peek() {
                Some(Token { tok: Tok::Word(w), offset, len }) if !is_reserved(w) => {
                    alias = Some(w.to_string());
                    span = span.to(Span::new(*offset, *len));
                    self.pos += 1;
                }
                _ => return Err(self.expected("an alias name")),
            }
        }
        Ok(SelectItem { expr, alias, span })
    }

    fn collection(&mut self) -> Result<Collection, QueryError> {
        let Some(first) = self.peek().cloned() else {
            return Err(self.expected("devices or devices.modules"));
        };
        let path = match first.tok {
            Tok::Word(_) => self.path()?,
            _ => return Err(self.expected("devices or devices.modules")),
        };
        let names: Vec<String> = path.segments.iter().map(|s| s.name.to_ascii_lowercase()).collect();
        match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["devices"] => Ok(Collection::Devices),
            ["devices", "modules"] => Ok(Collection::Modules),
            _ => Err(QueryError::new(
                path.span.offset,
                path.span.len,
                QueryErrorKind::UnsupportedCollection(path.to_string()),
            )),
        }
    }
}

/// With COUNT() or GROUP BY, every projected path must be one of the grouping paths.
fn check_grouping(q: &Query) -> Result<(), QueryError> {
    let Selection::Items(items) = &q.selection else {
        if let Some(p) = q.group_by.first() {
            return Err(QueryError::new(p.span.offset, p.span.len, QueryErrorKind::StarWithGroupBy));
        }
        return Ok(());
    };
    if !q.is_aggregate() && q.group_by.is_empty() {
        return Ok(());
    }
    for item in items {
        let SelectExpr::Expr(e) = &item.expr else {
            continue;
        };
        let grouped = matches!(&e.kind, ExprKind::Path(p)
            if q.group_by.iter().any(|g| g.eq_ignore_case(p)));
        if !grouped {
            return Err(QueryError::new(e.span.offset, e.span.len, QueryErrorKind::NotGrouped(e.to_string())));
        }
    }
    Ok(())
}

fn word_literal(w: &str) -> Option<Literal> {
    if w.eq_ignore_ascii_case("true") {
        Some(Literal::Bool(true))
    } else if w.eq_ignore_ascii_case("false") {
        Some(Literal::Bool(false))
    } else if w.eq_ignore_ascii_case("null") {
        Some(Literal::Null)
    } else {
        None
    }
}

fn lit(l: Literal, span: Span) -> Expr {
    Expr { kind: ExprKind::Literal(l), span }
}

fn arith(op: ArithOp, l: Expr, r: Expr) -> Expr {
    let span = l.span.to(r.span);
    Expr { kind: ExprKind::Arith(op, Box::new(l), Box::new(r)), span }
}

fn n_ary(items: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    let span = match (items.first(), items.last()) {
        (Some(a), Some(b)) => a.span.to(b.span),
        _ => Span::default(),
    };
    Expr { kind: make(items), span }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> QueryError {
        parse_condition(text).unwrap_err()
    }

    fn roundtrip(text: &str) -> String {
        parse_condition(text).unwrap().to_string()
    }

    #[test]
    fn precedence_and_canonical_text() {
        assert_eq!(roundtrip("a=1 or b=2 and not c=3"), "a = 1 OR b = 2 AND NOT c = 3");
        assert_eq!(roundtrip("(a=1 or b=2) and c=3"), "(a = 1 OR b = 2) AND c = 3");
        assert_eq!(roundtrip("a + b * c - d"), "a + b * c - d");
        assert_eq!(roundtrip("(a + b) * c"), "(a + b) * c");
        assert_eq!(roundtrip("a - (b - c)"), "a - (b - c)");
        assert_eq!(roundtrip("x in ['a','b']"), "x IN ['a', 'b']");
        assert_eq!(roundtrip("x <> -5"), "x != -5");
        assert_eq!(roundtrip("is_defined(tags.x)"), "IS_DEFINED(tags.x)");
        assert_eq!(roundtrip("tags.[[a.b]] = 0x10"), "tags.[[a.b]] = 16");
        assert_eq!(roundtrip("[[and]].x = 1"), "[[and]].x = 1");
        assert_eq!(roundtrip("tags.and = 1"), "tags.and = 1");
        assert_eq!(roundtrip("tags.x = 'it''s'"), "tags.x = 'it''s'");
    }

    #[test]
    fn not_binds_looser_than_comparison() {
        let c = parse_condition("NOT tags.a = 'x'").unwrap();
        let ConditionRoot::Expr(e) = c.root else { panic!() };
        assert!(matches!(&e.kind, ExprKind::Not(inner) if matches!(inner.kind, ExprKind::Compare(..))));
    }

    #[test]
    fn and_or_are_n_ary() {
        let c = parse_condition("a=1 AND b=2 AND c=3").unwrap();
        assert_eq!(c.clauses().len(), 3);
        assert_eq!(c.clauses()[1].span, Span::new(8, 3));
    }

    #[test]
    fn star_and_empty() {
        assert_eq!(parse_condition(" * ").unwrap().root, ConditionRoot::All);
        let e = err("   ");
        assert_eq!(e.kind, QueryErrorKind::EmptyCondition);
        assert!(e.help().unwrap().contains("'*'"));
    }

    #[test]
    fn unknown_function_suggests() {
        let e = err("tags.a = 1 AND STARTS_WITH(deviceId, 'x')");
        assert_eq!((e.offset, e.len), (15, 11));
        assert_eq!(e.help().unwrap(), "unknown function STARTS_WITH — did you mean STARTSWITH?");
        let e = err("LOWER(deviceId) = 'x'");
        assert!(e.help().unwrap().contains("IS_DEFINED"));
    }

    #[test]
    fn wrong_arity() {
        let e = err("STARTSWITH(deviceId)");
        assert_eq!((e.offset, e.len), (0, 20));
        assert!(matches!(e.kind, QueryErrorKind::WrongArity { expected: 2, found: 1, .. }));
    }

    #[test]
    fn parens() {
        let e = err("(tags.a = 1 AND (tags.b = 2)");
        assert_eq!((e.offset, e.kind.clone()), (0, QueryErrorKind::UnclosedParen));
        let e = err("tags.a = 1)");
        assert_eq!((e.offset, e.kind.clone()), (10, QueryErrorKind::UnmatchedParen));
        let e = err("IS_DEFINED(tags.a");
        assert_eq!((e.offset, e.kind), (10, QueryErrorKind::UnclosedParen));
    }

    #[test]
    fn trailing_and_missing_operands() {
        let e = err("tags.a = 'x' tags.b = 'y'");
        assert_eq!(e.offset, 13);
        assert!(matches!(e.kind, QueryErrorKind::TrailingInput(_)));
        assert!(e.help().is_some());
        let e = err("tags.a = ");
        assert_eq!((e.offset, e.len), (9, 0));
        assert!(matches!(e.kind, QueryErrorKind::UnexpectedEnd { .. }));
        let e = err("tags.a = 1 AND");
        assert_eq!(e.offset, 14);
        let e = err("tags. = 1");
        assert_eq!(e.offset, 6);
        let e = err("x IN ['a', 'b'");
        assert_eq!((e.offset, e.kind), (5, QueryErrorKind::UnclosedBracket));
        let e = err("x IN 'a'");
        assert_eq!(e.offset, 5);
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(err(&deep).kind, QueryErrorKind::TooDeep(_)));
        let chain = format!("a{}", " + a".repeat(500));
        assert!(matches!(err(&chain).kind, QueryErrorKind::TooDeep(_)));
        // Long OR lists are flat and fine.
        let ors = (0..1000).map(|i| format!("deviceId = 'd{i}'")).collect::<Vec<_>>().join(" OR ");
        assert!(parse_condition(&ors).is_ok());
    }

    #[test]
    fn queries_parse_and_print() {
        let q = parse_query(
            "select top 5 properties.reported.telemetryConfig.status as status, count() as n \
             from devices where tags.a = 1 group by properties.reported.telemetryConfig.status",
        )
        .unwrap();
        assert_eq!(q.top, Some(5));
        assert!(q.is_aggregate());
        assert_eq!(
            q.to_string(),
            "SELECT TOP 5 properties.reported.telemetryConfig.status AS status, COUNT() AS n \
             FROM devices WHERE tags.a = 1 GROUP BY properties.reported.telemetryConfig.status"
        );
        assert_eq!(parse_query(&q.to_string()).unwrap(), q);
        let q = parse_query(
            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' \
             AND configurations.[[dep-1]].status = 'Applied'",
        )
        .unwrap();
        assert!(q.from_modules());
    }

    #[test]
    fn query_errors() {
        let e = parse_query("SELECT * FROM devices.jobs").unwrap_err();
        assert_eq!((e.offset, e.len), (14, 12));
        let e = parse_query("SELECT deviceId, COUNT() AS n FROM devices").unwrap_err();
        assert_eq!((e.offset, e.kind), (7, QueryErrorKind::NotGrouped("deviceId".into())));
        let e = parse_query("SELECT * FROM devices GROUP BY tags.a").unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::StarWithGroupBy);
        let e = parse_query("SELECT TOP 1.5 * FROM devices").unwrap_err();
        assert_eq!(e.offset, 11);
        let e = parse_query("SELECT * FROM devices WHERE").unwrap_err();
        assert!(matches!(e.kind, QueryErrorKind::UnexpectedEnd { .. }));
        let e = parse_query("SELECT * devices").unwrap_err();
        assert_eq!(e.offset, 9);
    }
}
