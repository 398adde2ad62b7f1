//! What `fleetform apply` prints: the line per step as it ends, and the summary when the
//! run is over. `apply` decides what was done; this decides how it reads.

use crate::apply::{ApplyReport, StepResult, StepStatus, Stop};
use crate::plan::{SavedPlan, StepOp};

/// `[2/3] create campus-base-1a2b3c4d (campus-base): done`, as each step ends.
pub fn step_line(r: &StepResult, total: usize) -> String {
    let what = match r.status {
        StepStatus::Done => "done".to_string(),
        StepStatus::AlreadyDone => format!("done ({})", r.message.as_deref().unwrap_or("already")),
        StepStatus::Failed => format!("FAILED: {}", r.message.as_deref().unwrap_or("error")),
        StepStatus::NotRun => "not run".to_string(),
    };
    format!("[{}/{total}] {} {} ({}): {what}", r.step.number, r.step.op, r.step.id, r.step.name)
}

/// The heading of a run that carries out a saved plan: when and against what it was made.
pub fn saved_plan_heading(saved: &SavedPlan) -> String {
    format!("Applying the plan saved at {} against {}.\n{}\n", saved.created, saved.hub, saved.summary)
}

impl ApplyReport {
    /// The text apply prints at the end: a summary when complete, otherwise what was done
    /// and what remains, by step number and id.
    pub fn summary_text(&self) -> String {
        let count =
            |op: StepOp| self.results.iter().filter(|r| r.status == StepStatus::Done && r.step.op == op).count();
        let already = self.results.iter().filter(|r| r.status == StepStatus::AlreadyDone).count();
        let list = |rs: Vec<&StepResult>| {
            rs.iter()
                .map(|r| format!("  {}. {} {} ({})", r.step.number, r.step.op, r.step.id, r.step.name))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut totals = format!(
            "{} created, {} updated, {} deleted",
            count(StepOp::Create),
            count(StepOp::Update),
            count(StepOp::Delete)
        );
        if already > 0 {
            // An interrupted or concurrent run got there first.
            totals.push_str(&format!(", {already} already done on the hub"));
        }
        match &self.stopped {
            None => format!("Apply complete: {totals}.\n"),
            Some(stop) => {
                let why = match stop {
                    Stop::Failed { step } => format!("Apply stopped: step {step} failed."),
                    Stop::Interrupted => "Apply interrupted: stopped after the step in progress.".to_string(),
                };
                let done: Vec<&StepResult> = self.done().collect();
                let remaining: Vec<&StepResult> = self.remaining().collect();
                let mut out = format!("{why} So far: {totals}.\n");
                if !done.is_empty() {
                    out.push_str(&format!("Done:\n{}\n", list(done)));
                }
                if !remaining.is_empty() {
                    out.push_str(&format!("Remaining:\n{}\n", list(remaining)));
                }
                out.push_str("Run `fleetform plan` and apply again: the new plan picks up where this one stopped.\n");
                out
            }
        }
    }
}
