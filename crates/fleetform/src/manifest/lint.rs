//! Warnings about what a deployment says, read from the rendered deployments alone (no
//! fleet, no hub): the same findings in `validate` and `plan` (README "Reading a plan as a
//! reviewer", W015 to W018).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{LABEL_NAME, Rendered, set_path};
use crate::merge::Check;
use crate::model::TwinPath;
use crate::query::{Collection, parse_query, visit_paths};
use crate::route::parse_route;

/// Reported properties of the runtime's module twins that a device twin does not carry
/// (docs/hub-semantics.md#twin-status, #custom-metrics): a `FROM devices` metric over them
/// counts no row.
const MODULE_TWIN_REPORTED: &[&str] = &[
    "lastDesiredStatus",
    "lastDesiredVersion",
    "systemModules",
    "modules",
    "configurationHealth",
    "runtime",
    "clients",
];

/// [`lint`] of deployments as declared, for `validate`, which has no environment: `(env)`
/// values and the hash key are stand-ins, which changes ids but none of these findings.
pub fn lint_declared(deployments: &[crate::spec::Deployment]) -> Vec<Check> {
    struct StandIn;
    impl super::Env for StandIn {
        fn var(&self, name: &str) -> Option<String> {
            Some(if name == super::HASH_KEY_VAR {
                "0".repeat(super::HASH_KEY_MIN_CHARS)
            } else {
                super::MASK.to_owned()
            })
        }
    }
    let rendered: Vec<Rendered> =
        deployments.iter().filter_map(|d| super::render(d, &StandIn, super::SecretMode::Mask).ok()).collect();
    lint(&rendered)
}

/// Every language-level warning of `declared`, in deployment order.
pub fn lint(declared: &[Rendered]) -> Vec<Check> {
    let names: BTreeSet<&str> = declared.iter().filter_map(name_of).collect();
    let mut out = Vec::new();
    for r in declared {
        let Some(deployment) = name_of(r) else { continue };
        for (metric, written) in &r.written_metrics {
            literal_ids(deployment, metric, written, &names, &mut out);
            module_paths(deployment, metric, written, &mut out);
        }
        let agent = desired(r, "$edgeAgent");
        let hub = desired(r, "$edgeHub");
        for (module, schema) in [("edgeAgent", agent.get("schemaVersion")), ("edgeHub", hub.get("schemaVersion"))] {
            let image = agent.pointer(&format!("/systemModules/{module}/settings/image")).and_then(Value::as_str);
            if let (Some(image), Some(schema)) = (image, schema.and_then(Value::as_str))
                && schema != "1.0"
                && image_version(image).is_some_and(|v| v < [1, 0, 10])
            {
                out.push(Check::RuntimeImageOlderThanSchema {
                    deployment: deployment.to_owned(),
                    module: module.to_owned(),
                    image: image.to_owned(),
                    schema: schema.to_owned(),
                });
            }
        }
        misspelt_route_modules(deployment, &agent, &hub, &mut out);
    }
    out
}

fn name_of(r: &Rendered) -> Option<&str> {
    r.configuration.labels.get(LABEL_NAME).map(String::as_str)
}

/// W015: `[[<name>-<8 hex digits>]]` where `<name>` is a declared deployment.
fn literal_ids(deployment: &str, metric: &str, text: &str, names: &BTreeSet<&str>, out: &mut Vec<Check>) {
    let mut rest = text;
    while let Some(open) = rest.find("[[") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("]]") else { break };
        let id = &after[..close];
        if let Some((name, hash)) = id.rsplit_once('-')
            && hash.len() == 8
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && names.contains(name)
        {
            out.push(Check::MetricNamesLiteralId {
                deployment: deployment.to_owned(),
                metric: metric.to_owned(),
                id: id.to_owned(),
                names: name.to_owned(),
            });
        }
        rest = &after[close + 2..];
    }
}

/// W016: the first path of a `FROM devices` metric's WHERE that only module twins report.
fn module_paths(deployment: &str, metric: &str, text: &str, out: &mut Vec<Check>) {
    let Ok(query) = parse_query(text) else { return };
    if query.from != Collection::Devices {
        return;
    }
    let Some(filter) = &query.filter else { return };
    let mut found = None;
    visit_paths(filter, &mut |p| {
        let seg = |i: usize| p.segments.get(i).map(|s| s.name.as_str()).unwrap_or("");
        if found.is_none()
            && seg(0).eq_ignore_ascii_case("properties")
            && seg(1).eq_ignore_ascii_case("reported")
            && MODULE_TWIN_REPORTED.iter().any(|k| k.eq_ignore_ascii_case(seg(2)))
        {
            found = Some(p.segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("."));
        }
    });
    if let Some(path) = found {
        out.push(Check::MetricReadsModuleTwinOnDevices {
            deployment: deployment.to_owned(),
            metric: metric.to_owned(),
            path,
        });
    }
}

/// W018: a route's module that the deployment does not declare, close to one it does.
fn misspelt_route_modules(deployment: &str, agent: &Value, hub: &Value, out: &mut Vec<Check>) {
    let Some(modules) = agent.get("modules").and_then(Value::as_object) else { return };
    let Some(routes) = hub.get("routes").and_then(Value::as_object) else { return };
    for (name, route) in routes {
        let text = match route {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("route").and_then(Value::as_str).unwrap_or_default(),
            _ => continue,
        };
        let Ok(parsed) = parse_route(text) else { continue };
        for module in [parsed.source.source_module(), parsed.sink.sink_module()].into_iter().flatten() {
            if modules.contains_key(module) {
                continue;
            }
            if let Some(near) = crate::suggest::did_you_mean(module, modules.keys().map(String::as_str)) {
                out.push(Check::RouteModuleMisspelt {
                    deployment: deployment.to_owned(),
                    route: name.clone(),
                    module: module.to_owned(),
                    did_you_mean: near.to_owned(),
                });
            }
        }
    }
}

/// The desired properties the deployment writes into `twin`, as one document (a layered
/// deployment's `properties.desired.<path>` entries nested under their paths).
fn desired(r: &Rendered, twin: &str) -> Value {
    let mut doc = serde_json::json!({});
    let Some(entries) = r.configuration.content.modules_content.as_ref().and_then(|m| m.get(twin)) else {
        return doc;
    };
    for (key, value) in entries {
        if let Ok(path) = TwinPath::from_desired_key(key) {
            set_path(&mut doc, path.segments(), value.clone());
        }
    }
    doc
}

/// `[major, minor, patch]` of an image tag written as a full version (`…:1.0.9`,
/// `…:1.0.9.5-linux-amd64`); `None` for a floating tag (`1.0`, `1.5`, `latest`), which
/// names the newest release of its line.
fn image_version(image: &str) -> Option<[u32; 3]> {
    let tag = image.rsplit_once('/').map_or(image, |(_, t)| t).split_once(':')?.1;
    let tag = tag.split(['-', '@']).next()?;
    let parts: Vec<u32> = tag.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
    (parts.len() >= 3).then(|| [parts[0], parts[1], parts[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_of(agent: &str, schema: &str, route: &str, metric: &str) -> Vec<u16> {
        let text = format!(
            "deployment \"a\" {{\n priority 1\n target \"*\"\n runtime schema=\"{schema}\" {{\n edge-agent image=\"{agent}\"\n edge-hub image=\"h:1.5\"\n }}\n module \"SimulatedTemperature\" image=\"m:1\"\n route \"r\" \"{route}\"\n metric \"m\" \"{metric}\"\n}}\n"
        );
        let ws =
            crate::spec::Workspace::from_sources(vec![crate::spec::source::SourceFile::new("t.kdl", "t.kdl", text)]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        lint_declared(&ws.deployments).iter().map(|c| c.code().0).collect()
    }

    /// Each warning fires on its case and stays quiet on the nearest correct one.
    #[test]
    fn each_warning_fires_on_its_case_only() {
        let ok_route = "FROM /messages/modules/SimulatedTemperature/* INTO $upstream";
        let ok_metric = "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND properties.reported.lastDesiredStatus.code = 200 AND configurations.[[$self]].status = 'Applied'";
        assert_eq!(codes_of("a:1.5", "1.1", ok_route, ok_metric), Vec::<u16>::new());
        // An old agent is fine with schema 1.0; a floating 1.0 tag is the newest 1.0.x.
        assert_eq!(codes_of("a:1.0.9", "1.0", ok_route, ok_metric), Vec::<u16>::new());
        assert_eq!(codes_of("a:1.0", "1.1", ok_route, ok_metric), Vec::<u16>::new());
        assert_eq!(codes_of("a:1.0.9", "1.1", ok_route, ok_metric), vec![17]);
        assert_eq!(codes_of("a:1.0.10", "1.1", ok_route, ok_metric), Vec::<u16>::new());
        // A module named nowhere near a declared one is W002's business in plan, not a typo.
        assert_eq!(
            codes_of("a:1.5", "1.1", "FROM /messages/modules/SimulatedTemprature/* INTO $upstream", ok_metric),
            vec![18]
        );
        assert_eq!(
            codes_of("a:1.5", "1.1", "FROM /messages/modules/Other/* INTO $upstream", ok_metric),
            Vec::<u16>::new()
        );
        assert_eq!(
            codes_of(
                "a:1.5",
                "1.1",
                ok_route,
                "SELECT deviceId FROM devices WHERE properties.reported.lastDesiredStatus.code = 200"
            ),
            vec![16]
        );
        // A device twin's own reported property is no module-twin property.
        assert_eq!(
            codes_of("a:1.5", "1.1", ok_route, "SELECT deviceId FROM devices WHERE properties.reported.firmware = '2'"),
            Vec::<u16>::new()
        );
        assert_eq!(
            codes_of(
                "a:1.5",
                "1.1",
                ok_route,
                "SELECT deviceId FROM devices WHERE configurations.[[a-0123abcd]].status = 'Applied'"
            ),
            vec![15]
        );
        // Not the shape of a fleetform id of a declared deployment.
        assert_eq!(
            codes_of(
                "a:1.5",
                "1.1",
                ok_route,
                "SELECT deviceId FROM devices WHERE configurations.[[legacy-0123abcd]].status = 'Applied'"
            ),
            Vec::<u16>::new()
        );
    }

    #[test]
    fn only_full_versions_of_an_image_tag_are_compared() {
        assert_eq!(image_version("mcr.microsoft.com/azureiotedge-agent:1.0.9"), Some([1, 0, 9]));
        assert_eq!(image_version("mcr.microsoft.com/azureiotedge-agent:1.0.9.5-linux-amd64"), Some([1, 0, 9]));
        assert_eq!(image_version("myreg:5000/agent:1.0.10"), Some([1, 0, 10]));
        assert_eq!(image_version("mcr.microsoft.com/azureiotedge-agent:1.0"), None);
        assert_eq!(image_version("myreg:5000/agent"), None);
        assert_eq!(image_version("agent:latest"), None);
    }
}
