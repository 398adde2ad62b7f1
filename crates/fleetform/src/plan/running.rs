//! What a device really runs where the plan cannot infer it from the deployments: a device
//! no deployment reaches today keeps whatever it ran (docs/hub-semantics.md#unmanaged), so
//! the merge knows nothing of it, and a deployment without modules removes all of them.
//! For those devices only, the plan reads what their `$edgeAgent` twin reports running and
//! says which modules the change removes, replaces or keeps.

use std::collections::BTreeMap;
use std::fmt;

use rustc_hash::FxHashMap;

use serde::Serialize;
use serde_json::Value;

use super::redact::Redactor;
use crate::merge::{DeviceSample, EffectiveManifest};

/// What becomes of a module a device runs today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// The deployment after apply does not declare it: the agent stops and removes it.
    Removed,
    /// Declared with another image (or one of the two unknown): the agent redeploys it.
    Replaced,
    /// Declared with the image it runs.
    Kept,
}

/// One module a device runs today, as its `$edgeAgent` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
pub struct RunningModule {
    pub module: String,
    /// The image the agent reports (`settings.image`); null when it reports none.
    pub image: Option<String>,
    pub fate: Fate,
    /// For a replaced module: the image declared instead (null when the declaration has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_after: Option<String>,
}

/// Devices of one cohort that run the same modules today.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Running {
    pub count: u64,
    /// Up to 5 device ids, smallest first.
    pub samples: Vec<String>,
    /// By name; null when unknown: the source holds no `$edgeAgent` twin for these devices,
    /// or one that reports no modules (an agent that never connected).
    pub modules: Option<Vec<RunningModule>>,
}

/// What the devices of a [`Running`] group run, one entry per module (`- sim (acme/sim:1.0)
/// removed, ~ web (nginx:1.24 → nginx:1.25) replaced`).
impl fmt::Display for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(modules) = &self.modules else {
            return f.write_str("unknown: no $edgeAgent report of the modules");
        };
        if modules.is_empty() {
            return f.write_str("no modules");
        }
        for (i, m) in modules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let image = m.image.as_deref().unwrap_or("image not reported");
            match m.fate {
                Fate::Removed => write!(f, "- {} ({image}) removed", m.module)?,
                Fate::Kept => write!(f, "= {} ({image}) kept", m.module)?,
                Fate::Replaced => {
                    let after = m.image_after.as_deref().unwrap_or("no image");
                    write!(f, "~ {} ({image} → {after}) replaced", m.module)?
                }
            }
        }
        Ok(())
    }
}

/// Whether a cohort moving from `before` to `after` needs the agent's report to say what
/// changes: the device is unmanaged (or has no standard deployment) today and gets a
/// standard one, or the deployment it gets declares no modules at all.
pub fn needs_report(before: &EffectiveManifest, after: &EffectiveManifest) -> bool {
    after.is_managed() && (!before.is_managed() || after.modules().is_none_or(|m| m.is_empty()))
}

/// The declared modules of a merged manifest: name → image, redacted.
pub fn declared_modules(after: &EffectiveManifest, redact: &Redactor) -> BTreeMap<String, Option<String>> {
    after
        .modules()
        .into_iter()
        .flatten()
        .map(|(name, m)| (name.clone(), m.pointer("/settings/image").map(|v| redact.text(v))))
        .collect()
}

/// What one device runs, against what is declared for it: `None` when its agent reports
/// no modules map (or there was no report at all).
pub fn running_modules(
    reported: Option<&Value>,
    declared: &BTreeMap<String, Option<String>>,
    redact: &Redactor,
) -> Option<Vec<RunningModule>> {
    let map = reported?.as_object()?;
    let mut out: Vec<RunningModule> = map
        .iter()
        .map(|(name, m)| {
            let image = m.pointer("/settings/image").map(|v| printable(&redact.text(v)));
            let (fate, image_after) = match declared.get(name) {
                None => (Fate::Removed, None),
                Some(after) if after.is_some() && *after == image => (Fate::Kept, None),
                Some(after) => (Fate::Replaced, after.clone()),
            };
            RunningModule { module: printable(name), image, fate, image_after }
        })
        .collect();
    out.sort();
    Some(out)
}

/// A device writes its agent's report, so what it says reaches terminals, CI logs and pull
/// requests only with control characters (terminal escape sequences among them) spelt out
/// as `\u{…}`.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Devices grouped by what they run, largest group first.
#[derive(Default)]
pub struct RunningGroups(FxHashMap<Option<Vec<RunningModule>>, DeviceSample>);

impl RunningGroups {
    pub fn add(&mut self, device: &str, modules: Option<Vec<RunningModule>>) {
        self.0.entry(modules).or_default().add(device);
    }

    pub fn finish(self) -> Vec<Running> {
        let mut out: Vec<Running> =
            self.0.into_iter().map(|(modules, s)| Running { count: s.count, samples: s.samples, modules }).collect();
        // Largest first; on a tie the known before the unknown.
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.modules.is_none().cmp(&b.modules.is_none()))
                .then_with(|| a.modules.cmp(&b.modules))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_reported_module_is_removed_replaced_or_kept_against_the_declaration() {
        let redact = Redactor::default();
        let declared = BTreeMap::from([
            ("web".to_string(), Some("nginx:1.25".to_string())),
            ("api".to_string(), Some("api:2".to_string())),
        ]);
        let reported = json!({
            "sim": {"settings": {"image": "acme/sim:1.0"}, "runtimeStatus": "running"},
            "web": {"settings": {"image": "nginx:1.24"}},
            "api": {"settings": {"image": "api:2"}},
            "bare": {},
        });
        let got = running_modules(Some(&reported), &declared, &redact).unwrap();
        let fates: Vec<(&str, Fate, Option<&str>)> =
            got.iter().map(|m| (m.module.as_str(), m.fate, m.image_after.as_deref())).collect();
        assert_eq!(
            fates,
            [
                ("api", Fate::Kept, None),
                ("bare", Fate::Removed, None),
                ("sim", Fate::Removed, None),
                ("web", Fate::Replaced, Some("nginx:1.25"))
            ]
        );
        assert_eq!(running_modules(None, &declared, &redact), None);
        assert_eq!(running_modules(Some(&json!({})), &declared, &redact), Some(vec![]));
        let mut groups = RunningGroups::default();
        groups.add("b", Some(got.clone()));
        groups.add("a", Some(got));
        groups.add("c", None);
        let groups = groups.finish();
        assert_eq!((groups[0].count, groups[0].samples.clone()), (2, vec!["a".to_string(), "b".to_string()]));
        let shown: Vec<String> = groups.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "= api (api:2) kept, - bare (image not reported) removed, - sim (acme/sim:1.0) removed, ~ web (nginx:1.24 → nginx:1.25) replaced",
                "unknown: no $edgeAgent report of the modules"
            ]
        );
    }

    #[test]
    fn what_a_device_reports_reaches_output_without_control_characters() {
        let reported = json!({ "Weird\u{1b}[31mRED": { "settings": { "image": "x\u{7}y:1" } } });
        let got = running_modules(Some(&reported), &BTreeMap::new(), &Redactor::default()).unwrap();
        assert_eq!(got[0].module, "Weird\\u{1b}[31mRED");
        assert_eq!(got[0].image.as_deref(), Some("x\\u{7}y:1"));
    }
}
