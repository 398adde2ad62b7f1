//! `rollout { wave …; promote …; rollback … }` inside a deployment (issue #17): the waves a
//! content change reaches the target in, and the rules that promote or roll it back. The
//! on-hub scheme is in docs/rollouts.md; here only the node is read and checked.

use std::collections::BTreeMap;
use std::time::Duration;

use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::Cx;
use crate::spec::checks;
use crate::spec::diag::Code;
use crate::spec::model::*;

pub(super) const ROLLOUT_CHILDREN: &[&str] = &["wave", "promote", "rollback"];
pub(super) const PROMOTE_PROPS: &[&str] = &["success", "min-devices", "soak"];
pub(super) const ROLLBACK_PROPS: &[&str] = &["failure"];

/// A rollout has at least a first wave and the rest: with one wave it is a plain replace.
const MIN_WAVES: usize = 2;

/// Wave names appear in plan output, labels' neighbours and CLI messages: keep them plain.
fn valid_wave_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

const WAVE_NAME_MAX: usize = 64;

impl Cx<'_> {
    /// Decodes a `rollout` node; `None` when it is broken (every problem reported).
    pub(super) fn rollout(&mut self, node: &KdlNode) -> Option<Rollout> {
        self.check_entries(node, 0, &[]);
        let origin = self.origin(node.name().span());
        if node.children().is_none() {
            self.err(
                Code::MissingValue,
                node.name().span(),
                "`rollout` needs waves and a promote rule",
                "empty rollout",
                Some(EXAMPLE.into()),
            );
            return None;
        }
        let children = self.children(node, ROLLOUT_CHILDREN, |_| None);
        let mut waves: Vec<Wave> = Vec::new();
        let mut names: BTreeMap<String, SourceSpan> = BTreeMap::new();
        let mut broken = false;
        let mut promote: Option<Option<PromoteRule>> = None;
        let mut rollback: Option<Option<RollbackRule>> = None;
        for child in children {
            match child.name().value() {
                "wave" => match self.wave(child, &mut names) {
                    Some(w) => waves.push(w),
                    None => broken = true,
                },
                "promote" if !self.once_in(child, promote.is_some(), "a rollout has one `promote` rule; keep one") => {
                    promote = Some(self.promote(child))
                }
                "rollback"
                    if !self.once_in(child, rollback.is_some(), "a rollout has one `rollback` rule; keep one") =>
                {
                    rollback = Some(self.rollback_rule(child))
                }
                _ => {}
            }
        }
        if !broken && !self.wave_order(node, &waves) {
            broken = true;
        }
        if promote.is_none() {
            self.err(
                Code::MissingValue,
                node.name().span(),
                "`rollout` has no promote rule",
                "promote missing",
                Some("add `promote success=0.98 min-devices=5 soak=\"30m\"`: when a wave may move on".into()),
            );
        }
        let promote = promote??;
        let rollback = match rollback {
            None => None,
            Some(r) => Some(r?),
        };
        if broken {
            return None;
        }
        Some(Rollout { waves, promote, rollback, origin })
    }

    /// `wave "name" ["condition"]`.
    fn wave(&mut self, node: &KdlNode, names: &mut BTreeMap<String, SourceSpan>) -> Option<Wave> {
        self.check_entries(node, 2, &[]);
        self.no_children(node);
        let (name, span) = self.named_arg(node, "a name", "wave \"canary\" \"tags.ring='canary'\"")?;
        let mut ok = true;
        if name.is_empty() || name.len() > WAVE_NAME_MAX || !name.chars().all(valid_wave_char) {
            self.err(
                Code::InvalidName,
                span,
                format!("\"{name}\" is not a valid wave name"),
                "invalid name",
                Some(format!("use 1 to {WAVE_NAME_MAX} letters, digits, `-` and `_`")),
            );
            ok = false;
        } else if let Some(first) = names.get(&name) {
            let first = self.file.line_col(first.offset());
            self.err(
                Code::Duplicate,
                span,
                format!("wave \"{name}\" is declared twice"),
                "second declaration",
                Some(format!("first declared at line {}; wave names are unique within a rollout", first.0)),
            );
            ok = false;
        } else {
            names.insert(name.clone(), span);
        }
        let condition = match self.args(node).get(1) {
            None => None,
            Some(e) => {
                let q = self.query_text(e, "a wave condition")?;
                if q.text.trim().is_empty() || q.text.trim() == "*" {
                    let at = self.value_span(e);
                    self.err(
                        Code::InvalidQuery,
                        at,
                        "a wave condition must narrow the target",
                        "matches the whole target",
                        Some("leave the condition out on the last wave (it takes the rest); earlier waves name a subset, e.g. \"tags.ring='canary'\"".into()),
                    );
                    return None;
                }
                let before = self.problems.len();
                // Checked like a target: the wave's devices are `(target) AND (condition)`
                // on the hub, so the condition obeys the target grammar (§7, §13).
                checks::check_condition(&q, &format!("wave \"{name}\" condition"), self.problems);
                checks::check_self_refs(&q, false, self.problems);
                if self.problems.len() > before {
                    return None;
                }
                Some(q)
            }
        };
        ok.then(|| Wave { name, condition, origin: self.origin(node.span()) })
    }

    /// Every wave but the last names its devices; the last one takes the rest.
    fn wave_order(&mut self, node: &KdlNode, waves: &[Wave]) -> bool {
        let mut ok = true;
        if waves.len() < MIN_WAVES {
            self.err(
                Code::MissingValue,
                node.name().span(),
                format!("a rollout needs at least {MIN_WAVES} waves, found {}", waves.len()),
                "too few waves",
                Some("add a first wave with a condition (`wave \"canary\" \"tags.ring='canary'\"`) before the last one; without waves, remove `rollout` and the change replaces the deployment at once".into()),
            );
            return false;
        }
        let last = waves.len() - 1;
        for (i, w) in waves.iter().enumerate() {
            match (&w.condition, i == last) {
                (Some(q), true) => {
                    self.problems.push(
                        crate::spec::diag::Problem::new(
                            Code::InvalidQuery,
                            &q.origin.file,
                            q.origin.span,
                            format!("the last wave \"{}\" has a condition", w.name),
                            "the last wave takes the rest",
                            )
                        .with_help("remove the condition: the last wave is everything the deployment's target matches, so that no targeted device is left on the old content; add another wave for this condition before it".to_string()),
                    );
                    ok = false;
                }
                (None, false) => {
                    self.problems.push(
                        crate::spec::diag::Problem::new(
                            Code::MissingValue,
                            &w.origin.file,
                            w.origin.span,
                            format!("wave \"{}\" has no condition and is not the last wave", w.name),
                            "condition missing",
                        )
                        .with_help("give it a condition (`wave \"canary\" \"tags.ring='canary'\"`), or move it last: a wave without one takes the rest of the target".to_string()),
                    );
                    ok = false;
                }
                _ => {}
            }
        }
        ok
    }

    /// `promote success=0.98 [min-devices=N] [soak="30m"]`.
    fn promote(&mut self, node: &KdlNode) -> Option<PromoteRule> {
        self.check_entries(node, 0, PROMOTE_PROPS);
        self.no_children(node);
        let success = self.required_prop(node, "success", "promote success=0.98");
        let success = success.map(|e| self.ratio(e, "success"));
        let min_devices = match self.prop(node, "min-devices") {
            None => Some(1),
            Some(e) => self.integer(e, "min-devices", 0, u32::MAX as i128).map(|n| n as u64),
        };
        let soak = match self.prop(node, "soak") {
            None => Some(Duration::ZERO),
            Some(e) => self.duration(e, "soak"),
        };
        Some(PromoteRule {
            success: success??,
            min_devices: min_devices?,
            soak: soak?,
            origin: self.origin(node.span()),
        })
    }

    /// `rollback failure=0.05`.
    fn rollback_rule(&mut self, node: &KdlNode) -> Option<RollbackRule> {
        self.check_entries(node, 0, ROLLBACK_PROPS);
        self.no_children(node);
        let failure = self.required_prop(node, "failure", "rollback failure=0.05")?;
        let failure = self.ratio(failure, "failure")?;
        if failure == 0.0 {
            let span = self.value_span(self.prop(node, "failure")?);
            self.err(
                Code::OutOfRange,
                span,
                "rollback failure=0 rolls back before any device reports",
                "must be above 0",
                Some("a share such as 0.05 rolls back when 5% of the wave's targeted devices report failure; to roll back on the first failing device write a share below 1/(devices in a wave)".into()),
            );
            return None;
        }
        Some(RollbackRule { failure, origin: self.origin(node.span()) })
    }

    /// A share of a wave's targeted devices: a number in 0..=1.
    fn ratio(&mut self, entry: &KdlEntry, what: &str) -> Option<f64> {
        if !self.no_annotation(entry, what) {
            return None;
        }
        let v = match entry.value() {
            KdlValue::Float(f) => *f,
            KdlValue::Integer(i) => *i as f64,
            other => {
                self.wrong_type(entry, what, "a share from 0 to 1 (such as 0.98)", other);
                return None;
            }
        };
        if !(0.0..=1.0).contains(&v) || v.is_nan() {
            let span = self.value_span(entry);
            let help = if (1.0..=100.0).contains(&v) {
                format!("{what} is a share, not a percentage: write {}", v / 100.0)
            } else {
                format!("write {what} as a share from 0 to 1, such as 0.98")
            };
            self.err(Code::OutOfRange, span, format!("{what}={v} is out of range"), "must be 0..=1", Some(help));
            return None;
        }
        Some(v)
    }

    fn duration(&mut self, entry: &KdlEntry, what: &str) -> Option<Duration> {
        let text = self.string(entry, what)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let span = self.value_span(entry);
                self.err(
                    Code::WrongType,
                    span,
                    format!("{what}=\"{text}\" is not a duration ({})", duration_problem(&e)),
                    "not a duration",
                    Some("write a duration such as \"30m\", \"2h\" or \"1h 30m\"".into()),
                );
                None
            }
        }
    }
}

/// humantime's own messages name byte offsets ("expected number at 0") and list every unit
/// spelling it knows; a reader of a rollout needs to know which part is wrong.
fn duration_problem(e: &humantime::DurationError) -> String {
    match e {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("\"{unit}\" is not a unit: use s, m, h or d")
        }
        humantime::DurationError::NumberExpected(_) | humantime::DurationError::InvalidCharacter(_) => {
            "a duration is a number followed by a unit".to_string()
        }
        humantime::DurationError::NumberOverflow => "the number is too large".to_string(),
        humantime::DurationError::Empty => "it is empty".to_string(),
    }
}

const EXAMPLE: &str = "write `rollout { wave \"canary\" \"tags.ring='canary'\"; wave \"fleet\"; promote success=0.98 min-devices=5 soak=\"30m\"; rollback failure=0.05 }`";

impl Cx<'_> {
    /// What a rollout needs from its deployment's target: one to widen, and room on the
    /// hub for the widest intermediate condition.
    pub(super) fn rollout_fits_target(&mut self, rollout: &Rollout, target: Option<&QueryText>) {
        let Some(target) = target else {
            self.err(
                Code::InvalidQuery,
                rollout.origin.span,
                "a rollout on a deployment with `target #null`",
                "targets no device",
                Some(
                    "a rollout moves targeted devices wave by wave; give the deployment a target or remove `rollout`"
                        .into(),
                ),
            );
            return;
        };
        let widest = rollout.wave_target(&target.text, rollout.waves.len().saturating_sub(2));
        let chars = widest.chars().count();
        if chars > crate::query::MAX_QUERY_CHARS {
            self.err(
                Code::TooMany,
                rollout.origin.span,
                format!(
                    "the target with the waves is {chars} characters long, above the hub's {}",
                    crate::query::MAX_QUERY_CHARS
                ),
                "condition too long",
                Some("during the rollout the new deployment targets `(target) AND ((wave 1) OR …)`; shorten the wave conditions or the target, or use fewer waves".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::parse_file;
    use crate::spec::diag::Problem;
    use crate::spec::model::*;
    use crate::spec::source::SourceFile;

    fn deployment_with(target: &str, rollout: &str) -> (Vec<Deployment>, Vec<Problem>, Arc<SourceFile>) {
        let text = format!(
            "deployment \"base\" {{\n    priority 10\n    target {target}\n    runtime {{\n        edge-agent image=\"a:1\"\n        edge-hub image=\"h:1\"\n    }}\n    rollout {{\n{rollout}\n    }}\n}}\n"
        );
        let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text));
        let mut problems = Vec::new();
        let ds = parse_file(&file, &mut problems);
        (ds, problems, file)
    }

    /// Line 9 (lines and columns count from 1) is the first line inside `rollout { … }` in
    /// [`deployment_with`].
    const FIRST: usize = 9;

    fn one_problem(target: &str, rollout: &str) -> (String, usize, usize) {
        let (_, p, file) = deployment_with(target, rollout);
        assert_eq!(p.len(), 1, "{rollout}: {p:?}");
        let (line, col) = file.line_col(p[0].span.offset());
        (format!("{}", p[0]) + " / " + p[0].help.as_deref().unwrap_or(""), line, col)
    }

    const GOOD: &str = "        wave \"canary\" \"tags.ring='canary'\"\n        wave \"building-20\" \"tags.location.building='20'\"\n        wave \"fleet\"\n        promote success=0.98 min-devices=5 soak=\"30m\"\n        rollback failure=0.05";

    #[test]
    fn a_rollout_decodes_into_its_waves_and_rules() {
        let (ds, p, _) = deployment_with("\"tags.environment='prod'\"", GOOD);
        assert!(p.is_empty(), "{p:?}");
        let r = ds[0].rollout.as_ref().expect("rollout");
        let names: Vec<&str> = r.waves.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["canary", "building-20", "fleet"]);
        assert_eq!(r.waves[0].condition.as_ref().unwrap().text, "tags.ring='canary'");
        assert!(r.waves[2].condition.is_none());
        assert_eq!(r.promote.success, 0.98);
        assert_eq!(r.promote.min_devices, 5);
        assert_eq!(r.promote.soak, std::time::Duration::from_secs(30 * 60));
        assert_eq!(r.rollback.as_ref().unwrap().failure, 0.05);
    }

    #[test]
    fn defaults_min_devices_1_no_soak_no_rollback() {
        let (ds, p, _) = deployment_with(
            "\"*\"",
            "        wave \"canary\" \"tags.ring='canary'\"\n        wave \"rest\"\n        promote success=1",
        );
        assert!(p.is_empty(), "{p:?}");
        let r = ds[0].rollout.as_ref().unwrap();
        assert_eq!((r.promote.success, r.promote.min_devices, r.promote.soak), (1.0, 1, std::time::Duration::ZERO));
        assert!(r.rollback.is_none());
    }

    #[test]
    fn each_mistake_is_placed_and_explained() {
        let t = "\"tags.environment='prod'\"";
        let cases: &[(&str, &str, isize, usize)] = &[
            // (rollout body, message part, line offset from FIRST, column)
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\" \"tags.ring='b'\"\n        promote success=0.9",
                "the last wave \"b\" has a condition",
                1,
                18,
            ),
            (
                "        wave \"a\"\n        wave \"b\"\n        promote success=0.9",
                "wave \"a\" has no condition and is not the last wave",
                0,
                9,
            ),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"a\"\n        promote success=0.9",
                "wave \"a\" is declared twice",
                1,
                14,
            ),
            ("        wave \"fleet\"\n        promote success=0.9", "a rollout needs at least 2 waves, found 1", -1, 5),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=98",
                "success=98 is out of range",
                2,
                25,
            ),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=0.9 soak=\"soon\"",
                "soak=\"soon\" is not a duration (a duration is a number followed by a unit)",
                2,
                34,
            ),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=0.9 soak=\"30x\"",
                "soak=\"30x\" is not a duration (\"x\" is not a unit: use s, m, h or d)",
                2,
                34,
            ),
            (
                // Named as the wave's condition, not the deployment's target (which is fine).
                "        wave \"canary\" \"tags.ring = = 'a'\"\n        wave \"b\"\n        promote success=0.9",
                "wave \"canary\" condition: expected a value",
                0,
                36,
            ),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=0.9\n        rollback failure=-0.1",
                "failure=-0.1 is out of range",
                3,
                26,
            ),
            ("        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"", "`rollout` has no promote rule", -1, 5),
            (
                "        wave \"a\" \"*\"\n        wave \"b\"\n        promote success=0.9",
                "a wave condition must narrow the target",
                0,
                18,
            ),
            (
                "        wave \"A b\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=0.9",
                "\"A b\" is not a valid wave name",
                0,
                14,
            ),
            // A wave condition obeys the target grammar, placed on the character.
            (
                "        wave \"a\" \"properties.desired.x='1'\"\n        wave \"b\"\n        promote success=0.9",
                "target condition",
                0,
                19,
            ),
            (
                "        wave \"a\" \"tags.ring='a'\"\n        wave \"b\"\n        promote success=0.9\n        canary 1",
                "unknown node `canary` in `rollout`",
                3,
                9,
            ),
        ];
        for (body, message, dl, col) in cases {
            let (text, line, c) = one_problem(t, body);
            assert!(text.contains(message), "{body}: {text}");
            assert_eq!((line, c), ((FIRST as isize + *dl) as usize, *col), "{body}: {text}");
        }
        // A percentage is recognised as one.
        let (text, ..) = one_problem(t, cases[4].0);
        assert!(text.contains("write 0.98"), "{text}");
    }

    #[test]
    fn a_rollout_on_target_null_is_refused() {
        let (ds, p, file) = deployment_with("#null", GOOD);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].to_string().contains("a rollout on a deployment with `target #null`"), "{}", p[0]);
        assert_eq!(file.line_col(p[0].span.offset()).0, FIRST - 1);
        assert!(ds.is_empty() || ds[0].rollout.is_some());
    }

    #[test]
    fn the_widest_intermediate_target_must_fit_the_hub() {
        let long = format!("tags.x='{}'", "a".repeat(4100));
        let body = format!(
            "        wave \"a\" \"{long}\"\n        wave \"b\" \"{long}\"\n        wave \"c\"\n        promote success=0.9"
        );
        let (_, p, _) = deployment_with("\"tags.environment='prod'\"", &body);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].to_string().contains("above the hub's 8192"), "{}", p[0]);
    }

    fn rollout() -> Rollout {
        let (ds, p, _) = deployment_with("\"tags.environment='prod'\"", GOOD);
        assert!(p.is_empty(), "{p:?}");
        ds.into_iter().next().unwrap().rollout.unwrap()
    }

    /// The new deployment's target per wave, written out by hand from docs/rollouts.md.
    #[test]
    fn wave_targets_only_widen_and_end_on_the_target() {
        let r = rollout();
        let t = "tags.environment='prod'";
        assert_eq!(r.wave_target(t, 0), "(tags.environment='prod') AND (tags.ring='canary')");
        assert_eq!(
            r.wave_target(t, 1),
            "(tags.environment='prod') AND ((tags.ring='canary') OR (tags.location.building='20'))"
        );
        assert_eq!(r.wave_target(t, 2), t);
        assert_eq!(r.wave_target("*", 0), "(tags.ring='canary')");
        for i in 0..3 {
            crate::query::parse_condition(&r.wave_target(t, i)).expect("a valid condition");
        }
    }

    /// Three-valued logic (hub-semantics §14): on a device without `tags.ring` the wave
    /// condition is undefined, so the new deployment does not match it; the old one still
    /// targets it with the unchanged target, so it is never left without a deployment.
    #[test]
    fn a_device_without_the_wave_tag_stays_on_the_old_deployment() {
        use crate::query::{CompiledCondition, targets_device};
        let r = rollout();
        let t = "tags.environment='prod'";
        let device =
            |tags: serde_json::Value| json!({"deviceId": "d", "capabilities": {"iotEdge": true}, "tags": tags});
        let no_ring = device(json!({"environment": "prod"}));
        let canary = device(json!({"environment": "prod", "ring": "canary"}));
        let old = CompiledCondition::parse(t).unwrap();
        for wave in 0..3 {
            let new = CompiledCondition::parse(&r.wave_target(t, wave)).unwrap();
            // The old deployment keeps its target all along.
            assert!(targets_device(&old, &no_ring) && targets_device(&old, &canary));
            // Only the last wave reaches the device without a ring.
            assert_eq!(targets_device(&new, &no_ring), wave == 2, "wave {wave}");
            assert!(targets_device(&new, &canary), "wave {wave}");
        }
        // The naive alternative, narrowing the old deployment, would orphan it.
        let narrowed = CompiledCondition::parse("(tags.environment='prod') AND NOT (tags.ring='canary')").unwrap();
        assert!(!targets_device(&narrowed, &no_ring));
    }

    /// The rollout block is how content arrives, not content: it must not change the id.
    #[test]
    fn a_rollout_does_not_change_the_deployment_id() {
        use crate::manifest::{MapEnv, SecretMode, render};
        let (with, p, _) = deployment_with("\"tags.environment='prod'\"", GOOD);
        assert!(p.is_empty(), "{p:?}");
        let mut without = with[0].clone();
        without.rollout = None;
        let env = MapEnv(Default::default());
        let a = render(&with[0], &env, SecretMode::Reveal).unwrap();
        let b = render(&without, &env, SecretMode::Reveal).unwrap();
        assert_eq!(a.configuration.id, b.configuration.id);
        assert_eq!(a.hash, b.hash);
    }

    /// `fleetform fmt` lays a rollout out like any block and keeps its meaning.
    #[test]
    fn fmt_round_trips_a_rollout() {
        let messy = "deployment \"base\" { priority 10; target \"tags.environment='prod'\"\n runtime { edge-agent image=\"a:1\"; edge-hub image=\"h:1\" }\n rollout { wave \"canary\" \"tags.ring='canary'\"; wave \"fleet\"\n   promote success=0.98   min-devices=5 soak=\"30m\" ; rollback failure=0.05 } }\n";
        let once = crate::spec::fmt::format_source(messy).unwrap();
        assert!(
            once.contains("    rollout {\n        wave \"canary\" \"tags.ring='canary'\"\n        wave \"fleet\"\n        promote success=0.98 min-devices=5 soak=\"30m\"\n        rollback failure=0.05\n    }\n"),
            "{once}"
        );
        assert_eq!(crate::spec::fmt::format_source(&once).unwrap(), once);
        let decode = |text: &str| {
            let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text.to_string()));
            let mut p = Vec::new();
            let ds = parse_file(&file, &mut p);
            assert!(p.is_empty(), "{p:?}");
            let r = ds[0].rollout.clone().unwrap();
            let waves: Vec<(String, Option<String>)> =
                r.waves.iter().map(|w| (w.name.clone(), w.condition.as_ref().map(|q| q.text.clone()))).collect();
            (waves, r.promote.success, r.promote.min_devices, r.promote.soak, r.rollback.map(|b| b.failure))
        };
        assert_eq!(decode(messy), decode(&once));
    }
}
