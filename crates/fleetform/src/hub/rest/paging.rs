//! Reading query results page by page (`x-ms-continuation`), with progress reports.

use serde_json::Value;

use super::error::error_from;
use super::progress::{ReadProgress, ReadStage, TwinKind};
use super::retry::Replay;
use super::{HubError, OperationClass, RestHub};

impl RestHub {
    /// Runs `query` on `POST /devices/query`, page by page, handing each page to `visit`.
    /// Returns the number of rows read.
    pub fn query_pages(
        &self,
        query: &str,
        visit: &mut dyn FnMut(Vec<Value>) -> Result<(), HubError>,
    ) -> Result<u64, HubError> {
        let op = "query twins";
        let url = self.url("/devices/query");
        let body = serde_json::json!({ "query": query });
        let page_size = self.options.page_size.to_string();
        let mut continuation: Option<String> = None;
        let mut rows = 0u64;
        loop {
            let token = continuation.clone();
            let resp = self.send(op, OperationClass::Queries, Replay::Idempotent, &|c| {
                let req = c.post(&url).header("x-ms-max-item-count", &page_size).json(&body);
                match &token {
                    Some(t) => req.header("x-ms-continuation", t),
                    None => req,
                }
            })?;
            if !resp.status.is_success() {
                return Err(error_from(op, None, resp));
            }
            continuation = resp
                .headers
                .get("x-ms-continuation")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let page: Vec<Value> = Self::json(op, resp)?;
            rows += page.len() as u64;
            visit(page)?;
            if continuation.is_none() {
                return Ok(rows);
            }
        }
    }

    /// The `n` of a `SELECT COUNT() AS n …` query; `None` when the hub answered without one.
    pub(super) fn count(&self, query: &str) -> Result<Option<u64>, HubError> {
        let mut n = None;
        self.query_pages(query, &mut |rows| {
            n = rows.first().and_then(|r| r.get("n")).and_then(Value::as_u64);
            Ok(())
        })?;
        Ok(n)
    }

    /// Reads every row of `query`, reporting to the observer of [`super::RestOptions`]
    /// when there is one and progress is on; the bar is sized by `count_query` first (a
    /// failed count only leaves the bar without a total).
    pub(super) fn read_all(
        &self,
        what: TwinKind,
        query: &str,
        count_query: &str,
        visit: &mut dyn FnMut(Vec<Value>) -> Result<(), HubError>,
    ) -> Result<(), HubError> {
        let observer = self.options.on_progress.as_ref().filter(|_| self.options.progress);
        let Some(observer) = observer else {
            return self.query_pages(query, visit).map(drop);
        };
        let mut progress = ReadProgress {
            what,
            stage: ReadStage::Started,
            total: self.count(count_query).ok().flatten(),
            rows: 0,
            pages: 0,
            page_size: self.options.page_size as u64,
            page_interval: self.options.pacer.as_ref().map(|p| p.quota().interval(OperationClass::Queries)),
        };
        observer.report(progress);
        let result = self.query_pages(query, &mut |rows| {
            progress.rows += rows.len() as u64;
            progress.pages += 1;
            progress.stage = ReadStage::Page;
            observer.report(progress);
            visit(rows)
        });
        progress.stage = ReadStage::Finished;
        observer.report(progress);
        result.map(drop)
    }
}
