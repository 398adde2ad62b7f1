//! The IoT Edge hub's route grammar (docs/hub-semantics.md#routes; edge hub `Route.g4`; docs
//! `module-composition.md`):
//!
//! ```text
//! [SELECT *] FROM <source> [WHERE <condition>] INTO <sink>
//! ```
//!
//! Keywords are case-insensitive. Sources are the documented message sources
//! (`/*`, `/twinChangeNotifications`, `/messages/*`, `/messages/modules/*`,
//! `/messages/modules/<m>/*`, `/messages/modules/<m>/outputs/*`,
//! `/messages/modules/<m>/outputs/<o>`) plus `/messages/events`; sinks are `$upstream` or
//! `BrokeredEndpoint("/modules/<module>/inputs/<input>")` (single quotes work too, as in the grammar).
//!
//! The condition is kept as text (it is the IoT Hub routing query language, which the edge
//! hub evaluates on messages, not on twins) but its quotes and brackets must balance, since
//! an unbalanced condition is the usual way a route swallows its own `INTO`.
//!
//! Every error carries a byte offset and length into the route text so that a caller can
//! point a span at the exact place inside a KDL string or a JSON document.

use serde::Serialize;

/// A byte range inside the route text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

/// A parsed route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub source: RouteSource,
    /// Where the source path sits in the route text.
    pub source_span: Span,
    /// The WHERE condition, trimmed, with the byte offset of its first character.
    pub condition: Option<(String, usize)>,
    pub sink: Sink,
    /// Where the sink (`$upstream` or the whole `BrokeredEndpoint(...)`) sits.
    pub sink_span: Span,
}

/// Where a route's messages come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RouteSource {
    /// `/*`: every device-to-cloud message and twin change notification.
    All,
    /// `/twinChangeNotifications`: reported-property changes of modules and devices.
    TwinChangeNotifications,
    /// `/messages/*`: every device-to-cloud message, from modules or downstream devices.
    Messages,
    /// `/messages/events`: the edge hub's telemetry source (messages sent without an output).
    Events,
    /// `/messages/modules/*`: every message sent by any module.
    AllModules,
    /// `/messages/modules/<module>/*`: everything one module sends, through any or no output.
    Module { module: String },
    /// `/messages/modules/<module>/outputs/*`: everything one module sends through some output.
    ModuleOutputs { module: String },
    /// `/messages/modules/<module>/outputs/<output>`: one output of one module.
    ModuleOutput { module: String, output: String },
}

impl RouteSource {
    /// The module a source reads from, when it names one.
    pub fn source_module(&self) -> Option<&str> {
        match self {
            RouteSource::Module { module }
            | RouteSource::ModuleOutputs { module }
            | RouteSource::ModuleOutput { module, .. } => Some(module),
            _ => None,
        }
    }
}

impl std::fmt::Display for RouteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteSource::All => f.write_str("/*"),
            RouteSource::TwinChangeNotifications => f.write_str("/twinChangeNotifications"),
            RouteSource::Messages => f.write_str("/messages/*"),
            RouteSource::Events => f.write_str("/messages/events"),
            RouteSource::AllModules => f.write_str("/messages/modules/*"),
            RouteSource::Module { module } => write!(f, "/messages/modules/{module}/*"),
            RouteSource::ModuleOutputs { module } => {
                write!(f, "/messages/modules/{module}/outputs/*")
            }
            RouteSource::ModuleOutput { module, output } => {
                write!(f, "/messages/modules/{module}/outputs/{output}")
            }
        }
    }
}

/// Where a route delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Sink {
    /// `$upstream`: IoT Hub.
    Upstream,
    /// `BrokeredEndpoint("/modules/<module>/inputs/<input>")`.
    Module { module: String, input: String },
}

impl Sink {
    /// The module a sink delivers to, when it is a module input.
    pub fn sink_module(&self) -> Option<&str> {
        match self {
            Sink::Upstream => None,
            Sink::Module { module, .. } => Some(module),
        }
    }
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Upstream => f.write_str("$upstream"),
            Sink::Module { module, input } => {
                write!(f, "BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
            }
        }
    }
}

impl std::fmt::Display for Route {
    /// The canonical spelling: upper-case keywords, single spaces.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FROM {}", self.source)?;
        if let Some((condition, _)) = &self.condition {
            write!(f, " WHERE {condition}")?;
        }
        write!(f, " INTO {}", self.sink)
    }
}

/// Why a route does not parse, with the byte range to point at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct RouteError {
    /// Byte offset into the route text.
    pub offset: usize,
    /// Length in bytes of the offending text (at least 1 unless the text is empty).
    pub len: usize,
    pub message: String,
    /// A suggestion for the fix, when there is one.
    pub help: Option<String>,
}

impl RouteError {
    /// The same error with its offset moved by `base`: for a route that sits at byte
    /// `base` of a larger text (a KDL string's contents, a JSON file).
    pub fn offset_by(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

const SHAPE_HELP: &str =
    "a route reads `FROM <source> [WHERE <condition>] INTO <sink>`, e.g. `FROM /messages/* INTO $upstream`";
const SINK_MESSAGE: &str = "sink must be $upstream or BrokeredEndpoint(\"/modules/<module>/inputs/<input>\")";
const SOURCE_HELP: &str = "valid sources: /*, /twinChangeNotifications, /messages/*, /messages/events, /messages/modules/*, /messages/modules/<module>/*, /messages/modules/<module>/outputs/*, /messages/modules/<module>/outputs/<output>";

fn err(offset: usize, len: usize, message: impl Into<String>, help: Option<&str>) -> RouteError {
    RouteError { offset, len, message: message.into(), help: help.map(str::to_owned) }
}

/// A small cursor over the route text; all positions are byte offsets.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The next run of non-whitespace characters, without consuming it.
    fn peek_word(&self) -> (usize, &'a str) {
        let rest = &self.text[self.pos..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        (self.pos, &rest[..end])
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }
}

/// Parse one route string.
pub fn parse_route(text: &str) -> Result<Route, RouteError> {
    let mut c = Cursor { text, pos: 0 };
    c.skip_ws();
    if c.at_end() {
        return Err(err(0, text.len(), "the route is empty", Some(SHAPE_HELP)));
    }

    let (at, word) = c.peek_word();
    if word.eq_ignore_ascii_case("SELECT") {
        c.pos = at + word.len();
        c.skip_ws();
        let (star_at, star) = c.peek_word();
        if star != "*" {
            return Err(err(
                star_at,
                star.len().max(1),
                "routes only allow `SELECT *`",
                Some("drop the SELECT clause or write `SELECT * FROM ...`"),
            ));
        }
        c.pos = star_at + 1;
        c.skip_ws();
    }

    let (at, word) = c.peek_word();
    if !word.eq_ignore_ascii_case("FROM") {
        let message =
            if word.is_empty() { "missing FROM <source>".to_owned() } else { format!("expected FROM, found `{word}`") };
        return Err(err(at, word.len().max(1), message, Some(SHAPE_HELP)));
    }
    c.pos = at + word.len();
    c.skip_ws();

    let (source_at, source_text) = c.peek_word();
    if source_text.is_empty() {
        return Err(err(source_at, 0, "missing source after FROM", Some(SOURCE_HELP)));
    }
    let source = parse_source(source_text, source_at)?;
    let source_span = Span { offset: source_at, len: source_text.len() };
    c.pos = source_at + source_text.len();
    c.skip_ws();

    let (at, word) = c.peek_word();
    let mut condition = None;
    let sink_start;
    if word.eq_ignore_ascii_case("WHERE") {
        let cond_start = at + word.len();
        let (cond, into_at) = scan_condition(text, cond_start)?;
        condition = Some(cond);
        sink_start = into_at + "INTO".len();
    } else if word.eq_ignore_ascii_case("INTO") {
        sink_start = at + word.len();
    } else if word.is_empty() {
        return Err(err(
            text.len(),
            0,
            "missing INTO <sink>",
            Some(
                "end the route with `INTO $upstream` or `INTO BrokeredEndpoint(\"/modules/<module>/inputs/<input>\")`",
            ),
        ));
    } else {
        return Err(err(
            at,
            word.len(),
            format!("expected WHERE or INTO after the source, found `{word}`"),
            Some(SHAPE_HELP),
        ));
    }

    c.pos = sink_start;
    c.skip_ws();
    let (sink, sink_span) = parse_sink(text, c.pos)?;
    Ok(Route { source, source_span, condition, sink, sink_span })
}

/// Checks a module name against the agent's pattern `^[a-zA-Z0-9_-]+$` (docs/hub-semantics.md#names-and-enums).
fn check_module_name(name: &str, offset: usize) -> Result<(), RouteError> {
    if name.is_empty() {
        return Err(err(offset, 0, "missing module name", None));
    }
    if let Some((i, ch)) = name.char_indices().find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-'))
    {
        return Err(err(
            offset + i,
            ch.len_utf8(),
            format!("`{ch}` is not allowed in a module name"),
            Some("module names use letters, digits, `_` and `-`"),
        ));
    }
    Ok(())
}

/// An output or input name: the grammar's identifier, any run of characters that cannot
/// end the path or the string it sits in.
fn check_endpoint_name(name: &str, offset: usize, what: &str) -> Result<(), RouteError> {
    if name.is_empty() {
        return Err(err(offset, 0, format!("missing {what} name"), None));
    }
    if let Some((i, ch)) =
        name.char_indices().find(|(_, ch)| matches!(ch, '"' | '\'' | '(' | ')' | '*') || ch.is_whitespace())
    {
        return Err(err(offset + i, ch.len_utf8(), format!("`{ch}` is not allowed in an {what} name"), None));
    }
    Ok(())
}

fn parse_source(text: &str, offset: usize) -> Result<RouteSource, RouteError> {
    let bad = |message: String| err(offset, text.len(), message, Some(SOURCE_HELP));
    let Some(rest) = text.strip_prefix('/') else {
        return Err(bad(format!("source `{text}` must start with `/`")));
    };
    // Segments with their byte offsets, so that a bad module name is pointed at exactly.
    let mut segments = Vec::new();
    let mut at = offset + 1;
    for seg in rest.split('/') {
        segments.push((seg, at));
        at += seg.len() + 1;
    }
    let is = |i: usize, word: &str| segments.get(i).is_some_and(|(s, _)| s.eq_ignore_ascii_case(word));
    let n = segments.len();
    if n == 1 && segments[0].0 == "*" {
        return Ok(RouteSource::All);
    }
    if n == 1 && is(0, "twinChangeNotifications") {
        return Ok(RouteSource::TwinChangeNotifications);
    }
    if !is(0, "messages") {
        return Err(bad(format!("unknown source `{text}`")));
    }
    if n == 2 && segments[1].0 == "*" {
        return Ok(RouteSource::Messages);
    }
    if n == 2 && is(1, "events") {
        return Ok(RouteSource::Events);
    }
    if !is(1, "modules") || n < 3 {
        return Err(bad(format!("unknown source `{text}`")));
    }
    let (module, module_at) = segments[2];
    if n == 3 && module == "*" {
        return Ok(RouteSource::AllModules);
    }
    check_module_name(module, module_at)?;
    let module = module.to_owned();
    match n {
        4 if segments[3].0 == "*" => Ok(RouteSource::Module { module }),
        5 if is(3, "outputs") => {
            let (output, output_at) = segments[4];
            if output == "*" {
                Ok(RouteSource::ModuleOutputs { module })
            } else {
                check_endpoint_name(output, output_at, "output")?;
                Ok(RouteSource::ModuleOutput { module, output: output.to_owned() })
            }
        }
        _ => Err(bad(format!(
            "unknown source `{text}`: after the module name write `/*`, `/outputs/*` or `/outputs/<output>`"
        ))),
    }
}

/// Scans a WHERE condition starting at `start` up to the `INTO` keyword that ends it,
/// which must sit outside quotes and brackets. Returns the trimmed condition with its
/// offset, and the offset of `INTO`.
fn scan_condition(text: &str, start: usize) -> Result<((String, usize), usize), RouteError> {
    let bytes = text.as_bytes();
    // Open brackets with their offsets, innermost last.
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut quote: Option<(u8, usize)> = None;
    let mut i = start;
    let mut into_at = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some((q, _)) = quote {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'\'' | b'"' => quote = Some((b, i)),
            b'(' | b'{' | b'[' => open.push((b, i)),
            b')' | b'}' | b']' => {
                let expected = match b {
                    b')' => b'(',
                    b'}' => b'{',
                    _ => b'[',
                };
                match open.pop() {
                    Some((o, _)) if o == expected => {}
                    Some((o, at)) => {
                        return Err(err(
                            i,
                            1,
                            format!("`{}` does not close the `{}` opened at byte {at}", b as char, o as char),
                            Some("check the brackets in the WHERE condition"),
                        ));
                    }
                    None => {
                        return Err(err(
                            i,
                            1,
                            format!("unmatched `{}` in the WHERE condition", b as char),
                            Some("check the brackets in the WHERE condition"),
                        ));
                    }
                }
            }
            _ if open.is_empty()
                && bytes[i..].len() >= 4
                && bytes[i..i + 4].eq_ignore_ascii_case(b"INTO")
                && i > start
                && bytes[i - 1].is_ascii_whitespace()
                && bytes.get(i + 4).is_none_or(|b| b.is_ascii_whitespace()) =>
            {
                into_at = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((q, at)) = quote {
        return Err(err(
            at,
            1,
            format!("unclosed {} quote in the WHERE condition", q as char),
            Some("string literals in route conditions are quoted 'like this'"),
        ));
    }
    if let Some((b, at)) = open.pop() {
        return Err(err(
            at,
            1,
            format!("unclosed `{}` in the WHERE condition", b as char),
            Some("check the brackets in the WHERE condition"),
        ));
    }
    let Some(into_at) = into_at else {
        return Err(err(text.len(), 0, "missing INTO <sink> after the WHERE condition", Some(SHAPE_HELP)));
    };
    let raw = &text[start..into_at];
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(err(
            start,
            raw.len(),
            "empty WHERE condition",
            Some("remove WHERE to route every message, or write a condition"),
        ));
    }
    let cond_at = start + (raw.len() - raw.trim_start().len());
    Ok(((trimmed.to_owned(), cond_at), into_at))
}

fn parse_sink(text: &str, at: usize) -> Result<(Sink, Span), RouteError> {
    let rest = &text[at..];
    let body = rest.trim_end();
    if body.is_empty() {
        return Err(err(at, 0, "missing sink after INTO", Some(SINK_MESSAGE)));
    }
    let sink_error = |offset: usize, len: usize| {
        err(
            offset,
            len,
            SINK_MESSAGE,
            Some("there are no wildcards in sinks, and modules receive messages on named inputs"),
        )
    };
    if body.starts_with('$') {
        let end = body.find(char::is_whitespace).unwrap_or(body.len());
        if !body[..end].eq_ignore_ascii_case("$upstream") {
            return Err(sink_error(at, end));
        }
        trailing(text, at + end)?;
        return Ok((Sink::Upstream, Span { offset: at, len: end }));
    }
    let name_end = body.find(|ch: char| ch == '(' || ch.is_whitespace()).unwrap_or(body.len());
    if !body[..name_end].eq_ignore_ascii_case("BrokeredEndpoint") {
        return Err(sink_error(at, name_end.max(1)));
    }
    let mut pos = at + name_end;
    let skip = |pos: &mut usize| {
        let r = &text[*pos..];
        *pos += r.len() - r.trim_start().len();
    };
    skip(&mut pos);
    if !text[pos..].starts_with('(') {
        return Err(err(pos, 1, "expected `(` after BrokeredEndpoint", Some(SINK_MESSAGE)));
    }
    pos += 1;
    skip(&mut pos);
    // The edge hub's route grammar takes a string in either quote for the endpoint.
    let quote = match text[pos..].chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Err(err(pos, 1, "the endpoint must be a quoted string", Some(SINK_MESSAGE))),
    };
    let str_at = pos + 1;
    let Some(close) = text[str_at..].find(quote) else {
        return Err(err(pos, 1, format!("unclosed {quote} in BrokeredEndpoint"), Some(SINK_MESSAGE)));
    };
    let endpoint = &text[str_at..str_at + close];
    pos = str_at + close + 1;
    skip(&mut pos);
    if !text[pos..].starts_with(')') {
        return Err(err(pos, 1, "expected `)` to close BrokeredEndpoint", Some(SINK_MESSAGE)));
    }
    pos += 1;
    let span = Span { offset: at, len: pos - at };
    let (module, input) = parse_endpoint(endpoint, str_at)?;
    trailing(text, pos)?;
    Ok((Sink::Module { module, input }, span))
}

fn parse_endpoint(endpoint: &str, offset: usize) -> Result<(String, String), RouteError> {
    let bad = || err(offset, endpoint.len(), format!("`{endpoint}` is not a module input"), Some(SINK_MESSAGE));
    let Some(rest) = endpoint.strip_prefix("/modules/") else {
        return Err(bad());
    };
    let module_at = offset + "/modules/".len();
    let Some((module, tail)) = rest.split_once('/') else {
        return Err(bad());
    };
    let Some(input) = tail.strip_prefix("inputs/") else {
        return Err(bad());
    };
    check_module_name(module, module_at)?;
    let input_at = module_at + module.len() + "/inputs/".len();
    if input.contains('/') {
        return Err(bad());
    }
    check_endpoint_name(input, input_at, "input")?;
    Ok((module.to_owned(), input.to_owned()))
}

fn trailing(text: &str, at: usize) -> Result<(), RouteError> {
    let rest = &text[at..];
    let trimmed = rest.trim_start();
    if trimmed.is_empty() {
        return Ok(());
    }
    let start = at + rest.len() - trimmed.len();
    Err(err(start, trimmed.trim_end().len(), "unexpected text after the sink", Some("a route ends with its sink")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_sink(m: &str, i: &str) -> Sink {
        Sink::Module { module: m.into(), input: i.into() }
    }

    #[test]
    fn parses_every_documented_source() {
        let cases = [
            ("/*", RouteSource::All),
            ("/twinChangeNotifications", RouteSource::TwinChangeNotifications),
            ("/messages/*", RouteSource::Messages),
            ("/messages/events", RouteSource::Events),
            ("/messages/modules/*", RouteSource::AllModules),
            ("/messages/modules/filter/*", RouteSource::Module { module: "filter".into() }),
            ("/messages/modules/filter/outputs/*", RouteSource::ModuleOutputs { module: "filter".into() }),
            (
                "/messages/modules/filter/outputs/output1",
                RouteSource::ModuleOutput { module: "filter".into(), output: "output1".into() },
            ),
        ];
        for (src, expected) in cases {
            let text = format!("FROM {src} INTO $upstream");
            let route = parse_route(&text).unwrap();
            assert_eq!(route.source, expected, "{text}");
            assert_eq!(route.source_span, Span { offset: 5, len: src.len() });
            assert_eq!(route.source.to_string(), src);
            assert_eq!(route.sink, Sink::Upstream);
        }
    }

    #[test]
    fn parses_full_route_with_condition_and_brokered_sink() {
        let text = r#"select * from /messages/modules/Sensor/outputs/temp WHERE $body.t > 30 AND (a = 'x INTO y') into BrokeredEndpoint("/modules/filter/inputs/input1")"#;
        let route = parse_route(text).unwrap();
        assert_eq!(route.source.source_module(), Some("Sensor"));
        let (cond, at) = route.condition.clone().unwrap();
        assert_eq!(cond, "$body.t > 30 AND (a = 'x INTO y')");
        assert_eq!(&text[at..at + cond.len()], cond);
        assert_eq!(route.sink, module_sink("filter", "input1"));
        assert_eq!(route.sink.sink_module(), Some("filter"));
        assert_eq!(
            &text[route.sink_span.offset..route.sink_span.offset + route.sink_span.len],
            r#"BrokeredEndpoint("/modules/filter/inputs/input1")"#
        );
        assert_eq!(
            route.to_string(),
            r#"FROM /messages/modules/Sensor/outputs/temp WHERE $body.t > 30 AND (a = 'x INTO y') INTO BrokeredEndpoint("/modules/filter/inputs/input1")"#
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_spacing_is_free() {
        let route =
            parse_route("  From /messages/*   wHeRe NOT IS_DEFINED($connectionModuleId)  Into  $UPSTREAM ").unwrap();
        assert_eq!(route.source, RouteSource::Messages);
        assert_eq!(route.condition.as_ref().map(|c| c.0.as_str()), Some("NOT IS_DEFINED($connectionModuleId)"));
        assert_eq!(route.sink, Sink::Upstream);
        let single = parse_route(r#"FROM /* INTO BrokeredEndpoint('/modules/m/inputs/i')"#).unwrap();
        assert_eq!(single.sink, Sink::Module { module: "m".into(), input: "i".into() });
        assert_eq!(single.sink_span.len, "BrokeredEndpoint('/modules/m/inputs/i')".len());
        let spaced = parse_route(r#"FROM /* INTO BrokeredEndpoint ( "/modules/m/inputs/i" ) "#).unwrap();
        assert_eq!(spaced.sink, module_sink("m", "i"));
    }

    #[test]
    fn errors_shift_into_an_enclosing_text() {
        let kdl = r#"route "up" "FROM /messages/* INTO upstream""#;
        let at = kdl.find("FROM").unwrap();
        let e = parse_route(&kdl[at..kdl.len() - 1]).unwrap_err().offset_by(at);
        assert_eq!(&kdl[e.offset..e.offset + e.len], "upstream");
    }

    fn error(text: &str) -> RouteError {
        parse_route(text).unwrap_err()
    }

    #[test]
    fn bad_sinks_point_at_the_sink() {
        let text = "FROM /messages/* INTO $downstream";
        let e = error(text);
        assert_eq!(e.message, SINK_MESSAGE);
        assert_eq!((e.offset, e.len), (22, 11));
        let e = error(r#"FROM /* INTO Endpoint("/modules/m/inputs/i")"#);
        assert_eq!(e.message, SINK_MESSAGE);
        assert_eq!(e.offset, 13);
        let text = r#"FROM /* INTO BrokeredEndpoint("/modules/m/outputs/i")"#;
        let e = error(text);
        assert_eq!(e.offset, 31);
        assert_eq!(&text[e.offset..e.offset + e.len], "/modules/m/outputs/i");
        let e = error(r#"FROM /* INTO BrokeredEndpoint(/modules/m/inputs/i)"#);
        assert!(e.message.contains("quoted string"), "{e}");
        assert_eq!(e.offset, 30);
        let e = error(r#"FROM /* INTO BrokeredEndpoint('/modules/m/inputs/i")"#);
        assert_eq!(e.message, "unclosed ' in BrokeredEndpoint");
        assert_eq!(e.offset, 30);
        let e = error(r#"FROM /* INTO BrokeredEndpoint("/modules/m/inputs/i""#);
        assert!(e.message.contains("`)`"), "{e}");
        let e = error("FROM /* INTO");
        assert_eq!(e.message, "missing sink after INTO");
        assert_eq!(e.offset, 12);
        let text = "FROM /* INTO $upstream extra";
        let e = error(text);
        assert_eq!(&text[e.offset..e.offset + e.len], "extra");
    }

    #[test]
    fn bad_module_names_are_pointed_at() {
        let text = r#"FROM /* INTO BrokeredEndpoint("/modules/my.mod/inputs/i")"#;
        let e = error(text);
        assert_eq!(&text[e.offset..e.offset + e.len], ".");
        let text = "FROM /messages/modules/a b/* INTO $upstream";
        // The space ends the source early, which then lacks its `/*`.
        let e = error(text);
        assert_eq!(&text[e.offset..e.offset + e.len], "/messages/modules/a");
        let text = "FROM /messages/modules/x$y/* INTO $upstream";
        let e = error(text);
        assert_eq!(&text[e.offset..e.offset + e.len], "$");
    }

    #[test]
    fn missing_keywords_and_unknown_sources() {
        let e = error("/messages/* INTO $upstream");
        assert_eq!((e.offset, e.len), (0, 11));
        assert!(e.message.contains("expected FROM"), "{e}");
        assert!(e.help.is_some());
        let e = error("FROM /messages/*");
        assert_eq!(e.message, "missing INTO <sink>");
        assert_eq!(e.offset, 16);
        let e = error("FROM /messages/* WHERE a = 1");
        assert!(e.message.contains("missing INTO"), "{e}");
        let e = error("FROM INTO $upstream");
        assert!(e.message.contains("must start with `/`"), "{e}");
        let e = error("FROM /messages/modules/m/inputs/x INTO $upstream");
        assert_eq!((e.offset, e.len), (5, 28));
        assert_eq!(e.help.as_deref(), Some(SOURCE_HELP));
        let e = error("FROM /devices/* INTO $upstream");
        assert!(e.message.contains("unknown source"), "{e}");
        let e = error("SELECT a FROM /* INTO $upstream");
        assert_eq!((e.offset, e.len), (7, 1));
        let e = error("   ");
        assert_eq!(e.message, "the route is empty");
        let e = error("FROM /* TO $upstream");
        assert_eq!((e.offset, e.len), (8, 2));
    }

    #[test]
    fn condition_quotes_and_brackets_must_balance() {
        let text = "FROM /* WHERE a = 'open INTO $upstream";
        let e = error(text);
        assert_eq!(e.offset, 18);
        assert!(e.message.contains("unclosed '"), "{e}");
        let text = "FROM /* WHERE (a = 1 INTO $upstream";
        let e = error(text);
        assert_eq!((e.offset, e.len), (14, 1));
        let text = "FROM /* WHERE a = 1) INTO $upstream";
        let e = error(text);
        assert_eq!(e.offset, 19);
        let text = "FROM /* WHERE (a = 1] INTO $upstream";
        let e = error(text);
        assert_eq!(e.offset, 20);
        assert!(e.message.contains("does not close"), "{e}");
        let e = error("FROM /* WHERE   INTO $upstream");
        assert_eq!(e.message, "empty WHERE condition");
        // Doubled quotes and escaped quotes stay inside the literal.
        let ok = parse_route(r"FROM /* WHERE a = 'it''s' AND b = 'x\'y' INTO $upstream").unwrap();
        assert_eq!(ok.condition.unwrap().0, r"a = 'it''s' AND b = 'x\'y'");
        // `into` inside an identifier is not the keyword.
        let ok = parse_route("FROM /* WHERE $body.intoTheVoid = 1 INTO $upstream").unwrap();
        assert_eq!(ok.condition.unwrap().0, "$body.intoTheVoid = 1");
    }

    #[test]
    fn multibyte_text_keeps_offsets_on_char_boundaries() {
        let text = "FROM /* WHERE city = 'Zürich' INTO $upstreäm";
        let e = error(text);
        assert!(text.is_char_boundary(e.offset));
        assert!(text.is_char_boundary(e.offset + e.len));
        assert_eq!(&text[e.offset..e.offset + e.len], "$upstreäm");
    }
}
