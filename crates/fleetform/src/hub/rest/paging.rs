//! Reading query results page by page (`x-ms-continuation`), with progress reports.

use serde_json::Value;

use super::error::error_from;
use super::progress::{ReadProgress, ReadStage, TwinKind};
use super::retry::Replay;
use super::{HubError, RestHub};

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
            let resp = self.send(op, Replay::Idempotent, &|c| {
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

    /// `SELECT COUNT() AS n FROM …`, for sizing the progress bar.
    fn count(&self, collection: &str) -> Option<u64> {
        let mut n = None;
        self.query_pages(&format!("SELECT COUNT() AS n FROM {collection}"), &mut |rows| {
            n = rows.first().and_then(|r| r.get("n")).and_then(Value::as_u64);
            Ok(())
        })
        .ok()?;
        n
    }

    /// Reads a whole collection, reporting to the observer of [`super::RestOptions`]
    /// (sized by a COUNT query first) when there is one and progress is on.
    pub(super) fn read_all(
        &self,
        what: TwinKind,
        visit: &mut dyn FnMut(Vec<Value>) -> Result<(), HubError>,
    ) -> Result<(), HubError> {
        let query = format!("SELECT * FROM {}", what.collection());
        let observer = self.options.on_progress.as_ref().filter(|_| self.options.progress);
        let Some(observer) = observer else {
            return self.query_pages(&query, visit).map(drop);
        };
        let mut progress =
            ReadProgress { what, stage: ReadStage::Started, total: self.count(what.collection()), rows: 0, pages: 0 };
        observer.report(progress);
        let result = self.query_pages(&query, &mut |rows| {
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
