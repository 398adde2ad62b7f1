//! Running a query or a target condition against a whole fleet, as `fleetform query` does.

use std::sync::Mutex;

use serde_json::Value;

use super::{CompiledCondition, ConditionSet, QueryError, parse_condition, parse_query, targets_device};
use crate::model::{FleetRead, Projection, ReadError};

/// What a query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutput {
    /// A bare condition, evaluated as a target condition: the ids of the IoT Edge devices
    /// it targets, sorted.
    Targeted(Vec<String>),
    /// A full query: the projected rows, as the hub's query endpoint returns them.
    Rows(Vec<Value>),
}

/// A query that does not parse, shown with the query text and the offending span.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(fleetform::query::syntax))]
pub struct QuerySyntaxError {
    message: String,
    #[help]
    help: Option<String>,
    #[source_code]
    text: String,
    #[label("here")]
    span: miette::SourceSpan,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum QueryRunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(Box<QuerySyntaxError>),
    /// Reading the fleet's twins failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ReadError),
}

impl QueryRunError {
    fn syntax(text: &str, err: QueryError) -> Self {
        QueryRunError::Syntax(Box::new(QuerySyntaxError {
            message: err.message(),
            help: err.help(),
            text: text.to_string(),
            span: miette::SourceSpan::new(err.offset.into(), err.len),
        }))
    }
}

/// Whether the text is a full query (starts with SELECT) rather than a condition.
pub fn is_full_query(text: &str) -> bool {
    text.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("select"))
        && text.trim_start()[6..].starts_with(char::is_whitespace)
}

/// Runs `text` against every twin of the fleet: a full query exactly as the hub's query
/// endpoint would, or a bare condition as a deployment would target devices.
pub fn run_on_hub(fleet: &dyn FleetRead, text: &str) -> Result<QueryOutput, QueryRunError> {
    if !is_full_query(text) {
        let cond = parse_condition(text).map_err(|e| QueryRunError::syntax(text, e))?;
        let compiled = CompiledCondition::new(&cond);
        // Only the condition's own paths are read: a snapshot reader then builds a few
        // values per twin instead of the whole tree.
        let mut paths = ConditionSet::new();
        paths.add(&cond);
        let found = Mutex::new(Vec::new());
        fleet.device_batches(Projection::Paths(paths.read_paths()), &|batch| {
            let ids: Vec<String> = batch
                .iter()
                .filter(|t| targets_device(&compiled, t.value()))
                .map(|t| t.device_id().to_string())
                .collect();
            found.lock().unwrap_or_else(|e| e.into_inner()).extend(ids);
            Ok(())
        })?;
        let mut ids = found.into_inner().unwrap_or_else(|e| e.into_inner());
        ids.sort();
        return Ok(QueryOutput::Targeted(ids));
    }
    let query = parse_query(text).map_err(|e| QueryRunError::syntax(text, e))?;
    // Filter while streaming so only matching twins are held, then let the query
    // project, group and limit them.
    let filter = CompiledCondition::new(&query.where_condition());
    let kept = Mutex::new(Vec::new());
    let keep = |rows: Vec<Value>| {
        let passing: Vec<Value> = rows.into_iter().filter(|r| filter.matches(r)).collect();
        kept.lock().unwrap_or_else(|e| e.into_inner()).extend(passing);
        Ok(())
    };
    if query.from_modules() {
        fleet.module_batches(&keep)?;
    } else {
        fleet.device_batches(Projection::Full, &|batch| keep(batch.into_iter().map(|t| t.into_value()).collect()))?;
    }
    let mut rows = kept.into_inner().unwrap_or_else(|e| e.into_inner());
    // The hub returns rows in no particular order; sorting makes TOP and output stable.
    let key = |v: &Value| {
        (
            v.get("deviceId").and_then(Value::as_str).unwrap_or("").to_string(),
            v.get("moduleId").and_then(Value::as_str).unwrap_or("").to_string(),
        )
    };
    rows.sort_by_cached_key(key);
    Ok(QueryOutput::Rows(query.run(rows.iter())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_queries_from_conditions() {
        assert!(is_full_query("SELECT * FROM devices"));
        assert!(is_full_query("  select deviceId from devices"));
        assert!(!is_full_query("selected = true"));
        assert!(!is_full_query("tags.x = 'select'"));
    }
}
