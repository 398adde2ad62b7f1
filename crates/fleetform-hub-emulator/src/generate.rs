//! Synthetic fleets: realistic snapshot directories made reproducibly from a seed, for
//! benchmarks (`fleetform hub generate --devices 1000000`), tests and demos.
//!
//! The same options and seed always give byte-identical files: every random draw comes
//! from one ChaCha8 stream in a fixed order, maps are written in a fixed key order, and
//! timestamps are drawn, never read from the clock.
//!
//! Twins are written straight from borrowed `Serialize` structs, one device at a time,
//! into `devices.jsonl` and (for Edge devices) an `$edgeAgent` twin into `modules.jsonl`,
//! so memory stays flat and a million devices take seconds. The shapes follow what
//! `SELECT * FROM devices` and `GET /twins/{d}/modules/$edgeAgent` return (without
//! `$metadata`, which nothing in fleetform reads).

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use fleetform::hub::snapshot::{SnapshotError, SnapshotWriter, TwinFormat};
use fleetform::model::Configuration;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Number of device twins.
    pub devices: usize,
    /// Seed of the random stream: same seed and options, same bytes.
    pub seed: u64,
    /// Share of devices with `capabilities.iotEdge = true` (0..=1).
    pub edge_share: f64,
    /// Share of devices tagged `environment: 'staging'` rather than `'prod'` (0..=1).
    pub staging_share: f64,
    /// Write `$edgeAgent` module twins (`modules.jsonl`) for the Edge devices.
    pub module_twins: bool,
    /// Written to `configurations.json`; empty means an empty hub (`[]`).
    pub configurations: Vec<Configuration>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            devices: 1000,
            seed: 1,
            edge_share: 0.9,
            staging_share: 0.1,
            module_twins: true,
            configurations: Vec::new(),
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    pub devices: usize,
    pub edge_devices: usize,
    pub staging_devices: usize,
    pub module_twins: usize,
    pub configurations: usize,
    /// Distinct buildings the fleet spreads over.
    pub buildings: usize,
    pub devices_bytes: u64,
    pub modules_bytes: u64,
    pub configurations_bytes: u64,
}

impl GenerateSummary {
    pub fn bytes_written(&self) -> u64 {
        self.devices_bytes + self.modules_bytes + self.configurations_bytes
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GenerateError {
    #[error("invalid {name} {value}: {reason}")]
    #[diagnostic(
        code(fleetform::generate::invalid_option),
        help("shares are fractions between 0 and 1, e.g. --edge-share 0.9")
    )]
    InvalidOption { name: &'static str, value: String, reason: &'static str },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Writes a synthetic snapshot into `out` (created if needed): `configurations.json`,
/// `devices.jsonl` and, unless disabled, `modules.jsonl`. Existing files of the same
/// names are replaced atomically.
///
/// The fleet is campus-shaped: buildings `'20'`, `'21'`, `'40'`, `'43'` first and, for
/// bigger fleets, more of `'1'..'120'`, sized by a Zipf-like law (a few big buildings,
/// a long tail of small ones); floors 1..=8; room types skewed towards offices; 10 %
/// staging; some devices without an owner, a few without a floor or without tags.
pub fn generate(opts: &GenerateOptions, out: &Path) -> Result<GenerateSummary, GenerateError> {
    check_share("edge share", opts.edge_share)?;
    check_share("staging share", opts.staging_share)?;
    let writer = SnapshotWriter::create(out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let campus = Campus::new(opts.devices, &mut rng);
    let dists = Distributions::new();

    let mut devices = writer.devices_file(TwinFormat::JsonLines)?;
    let mut modules = match opts.module_twins {
        true => Some(writer.module_twins_file(TwinFormat::JsonLines)?),
        false => None,
    };
    let mut summary = GenerateSummary {
        buildings: campus.buildings.len(),
        configurations: opts.configurations.len(),
        ..GenerateSummary::default()
    };
    let mut scratch = DeviceScratch::default();
    let mut agent_scratch = AgentScratch::default();
    for seq in 0..opts.devices {
        let edge = rng.gen_bool(opts.edge_share);
        let staging = rng.gen_bool(opts.staging_share);
        let place = campus.place(&dists, &mut rng);
        // An untagged twin has no environment either.
        let staging = staging && place.building.is_some();
        let spec = DeviceSpec { seq, edge, environment: if staging { "staging" } else { "prod" }, place };
        let twin = device_twin(&spec, &dists, &mut rng, &mut scratch);
        devices.push(&twin)?;
        summary.devices += 1;
        summary.staging_devices += usize::from(staging);
        if edge {
            summary.edge_devices += 1;
            if let Some(modules) = &mut modules {
                modules.push(&edge_agent_twin(&twin, &mut rng, &mut agent_scratch))?;
                summary.module_twins += 1;
            }
        }
    }
    summary.devices_bytes = devices.commit()?;
    if let Some(modules) = modules {
        summary.modules_bytes = modules.commit()?;
    }
    summary.configurations_bytes = writer.write_configurations(&opts.configurations)?;
    Ok(summary)
}

fn check_share(name: &'static str, value: f64) -> Result<(), GenerateError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(GenerateError::InvalidOption { name, value: value.to_string(), reason: "must be between 0 and 1" })
    }
}

const ROOM_TYPES: [&str; 5] = ["office", "conference", "lab", "lobby", "datacenter"];
const ROOM_WEIGHTS: [u32; 5] = [55, 20, 12, 8, 5];
const OWNERS: [&str; 5] = ["facilities", "it-ops", "security", "research", "av-team"];
const MODELS: [&str; 3] = ["ubx-200", "ubx-300", "rpi-4"];
const MODEL_WEIGHTS: [u32; 3] = [45, 35, 20];
const FIRMWARE: [&str; 4] = ["2.4.1", "2.4.0", "2.3.7", "2.5.0-rc1"];
const FIRMWARE_WEIGHTS: [u32; 4] = [70, 20, 8, 2];
/// The buildings the example deployments target come first, so they are the biggest.
const LEAD_BUILDINGS: [&str; 4] = ["20", "21", "40", "43"];
const MAX_BUILDINGS: usize = 120;
/// Roughly one building per 2,500 devices, at least the four the examples use.
const DEVICES_PER_BUILDING: usize = 2500;
/// Zipf exponent of building sizes: with 120 buildings the biggest holds ~15 % of the
/// fleet and the smallest ~0.1 %.
const BUILDING_SKEW: f64 = 1.1;

fn room_abbreviation(room: &str) -> &'static str {
    match room {
        "office" => "off",
        "conference" => "conf",
        "lab" => "lab",
        "lobby" => "lby",
        _ => "dc",
    }
}

/// A tag value: text or a number. Building names are text and floors numbers, except
/// in the campus example's deliberately mistyped twins.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(untagged)]
enum TagValue<'a> {
    Text(&'a str),
    Number(u64),
}

impl std::fmt::Display for TagValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagValue::Text(s) => f.write_str(s),
            TagValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Where a device sits; `None` fields are left out of its tags.
#[derive(Clone, Copy, Debug)]
struct Place<'c> {
    /// `None`: the twin has no tags at all.
    building: Option<TagValue<'c>>,
    floor: Option<TagValue<'c>>,
    roomtype: &'static str,
    owner: Option<&'static str>,
}

/// The fixed distributions every device draws from, built once.
struct Distributions {
    room: WeightedIndex<u32>,
    model: WeightedIndex<u32>,
    firmware: WeightedIndex<u32>,
}

impl Distributions {
    fn new() -> Distributions {
        // The weights are non-empty constants with a positive sum, which is all
        // `WeightedIndex::new` checks.
        let index = |weights: &[u32]| WeightedIndex::new(weights.iter().copied()).expect("constant weights are valid");
        Distributions { room: index(&ROOM_WEIGHTS), model: index(&MODEL_WEIGHTS), firmware: index(&FIRMWARE_WEIGHTS) }
    }
}

struct Campus {
    buildings: Vec<String>,
    floors: Vec<u8>,
    building_index: WeightedIndex<f64>,
}

impl Campus {
    fn new(devices: usize, rng: &mut ChaCha8Rng) -> Campus {
        let count = (devices / DEVICES_PER_BUILDING).clamp(LEAD_BUILDINGS.len(), MAX_BUILDINGS);
        let mut buildings: Vec<String> = LEAD_BUILDINGS.iter().map(|b| b.to_string()).collect();
        buildings.extend(
            (1..=MAX_BUILDINGS)
                .map(|n| n.to_string())
                .filter(|b| !LEAD_BUILDINGS.contains(&b.as_str()))
                .take(count - LEAD_BUILDINGS.len()),
        );
        // Building 20 keeps at least three floors: the canary deployment targets floor 3.
        let floors = buildings.iter().map(|b| if b == "20" { 6 } else { rng.gen_range(1..=8) }).collect();
        let weights = (0..buildings.len()).map(|rank| 1.0 / ((rank + 1) as f64).powf(BUILDING_SKEW));
        Campus {
            // At least four finite positive weights, so this cannot fail.
            building_index: WeightedIndex::new(weights).expect("Zipf weights are valid"),
            buildings,
            floors,
        }
    }

    fn place(&self, dists: &Distributions, rng: &mut ChaCha8Rng) -> Place<'_> {
        let b = self.building_index.sample(rng);
        let roomtype = ROOM_TYPES[dists.room.sample(rng)];
        let floor = rng.gen_range(1..=self.floors[b]);
        let owner = rng.gen_bool(0.75).then(|| OWNERS[rng.gen_range(0..OWNERS.len())]);
        // A few twins were registered without a floor (1 %), or without any tags (0.3 %).
        let shape = rng.gen_range(0..1000);
        Place {
            building: (shape >= 3).then_some(TagValue::Text(&self.buildings[b])),
            floor: (shape >= 13).then_some(TagValue::Number(u64::from(floor))),
            roomtype,
            owner,
        }
    }
}

struct DeviceSpec<'c> {
    seq: usize,
    edge: bool,
    environment: &'static str,
    place: Place<'c>,
}

/// Strings rebuilt for every device, kept to reuse their allocations.
#[derive(Default)]
struct DeviceScratch {
    id: String,
    etag: String,
    device_etag: String,
    last_activity: String,
    scope: String,
    serial: String,
    ip: String,
    number: String,
}

#[derive(Default)]
struct AgentScratch {
    etag: String,
    last_activity: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceTwinOut<'a> {
    device_id: &'a str,
    etag: &'a str,
    device_etag: &'a str,
    status: &'static str,
    status_update_time: &'static str,
    connection_state: &'static str,
    last_activity_time: &'a str,
    cloud_to_device_message_count: u32,
    authentication_type: &'static str,
    x509_thumbprint: Thumbprint,
    model_id: &'static str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Tags<'a>>,
    properties: DeviceProperties<'a>,
    capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_scopes: Option<[&'a str; 0]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Thumbprint {
    primary_thumbprint: Option<&'static str>,
    secondary_thumbprint: Option<&'static str>,
}

const NO_THUMBPRINT: Thumbprint = Thumbprint { primary_thumbprint: None, secondary_thumbprint: None };

#[derive(Serialize)]
struct Tags<'a> {
    environment: &'a str,
    location: Location<'a>,
    roomtype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
}

#[derive(Serialize)]
struct Location<'a> {
    building: TagValue<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    floor: Option<TagValue<'a>>,
}

#[derive(Serialize)]
struct DeviceProperties<'a> {
    desired: DeviceDesired,
    reported: DeviceReported<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceDesired {
    telemetry_interval: u32,
    #[serde(rename = "$version")]
    version: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceReported<'a> {
    hardware: Hardware<'a>,
    firmware: &'a str,
    os: Os,
    network: Network<'a>,
    telemetry_interval: u32,
    uptime_seconds: u64,
    #[serde(rename = "$version")]
    version: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Hardware<'a> {
    model: &'a str,
    serial: &'a str,
    cpu_cores: u8,
    memory_mb: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Os {
    name: &'static str,
    version: &'static str,
    architecture: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Network<'a> {
    ip_address: &'a str,
    interface: &'static str,
    signal_dbm: Option<i32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    iot_edge: bool,
}

/// Twin etags are the base64 of the twin version as 8 big-endian bytes ("AAAAAAAAAAE=").
fn twin_etag(version: u64, out: &mut String) {
    out.clear();
    BASE64.encode_string(version.to_be_bytes(), out);
}

/// Device etags are the base64 of a decimal number ("NjM4MzM1NDk3").
fn device_etag(rng: &mut ChaCha8Rng, number: &mut String, out: &mut String) {
    number.clear();
    let _ = write!(number, "{}", rng.gen_range(100_000_000u64..999_999_999));
    out.clear();
    BASE64.encode_string(number.as_bytes(), out);
}

/// A time in November 2026, to the 100 ns tick the hub reports.
fn timestamp(rng: &mut ChaCha8Rng, out: &mut String) {
    out.clear();
    let _ = write!(
        out,
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        rng.gen_range(1..=25),
        rng.gen_range(0..24),
        rng.gen_range(0..60),
        rng.gen_range(0..60),
        rng.gen_range(0..10_000_000)
    );
}

fn device_twin<'a>(
    spec: &DeviceSpec<'a>,
    dists: &Distributions,
    rng: &mut ChaCha8Rng,
    s: &'a mut DeviceScratch,
) -> DeviceTwinOut<'a> {
    let place = spec.place;
    s.id.clear();
    let _ = match (spec.edge, place.building, place.floor) {
        (false, _, _) => write!(s.id, "dev-{:06}", spec.seq),
        (true, None, _) => write!(s.id, "edge-{:06}", spec.seq),
        (true, Some(b), None) => {
            write!(s.id, "b{b}-{}-{:06}", room_abbreviation(place.roomtype), spec.seq)
        }
        (true, Some(b), Some(f)) => write!(s.id, "b{b}-f{f}-{}-{:06}", room_abbreviation(place.roomtype), spec.seq),
    };
    let version = rng.gen_range(2..500);
    twin_etag(version, &mut s.etag);
    device_etag(rng, &mut s.number, &mut s.device_etag);
    timestamp(rng, &mut s.last_activity);
    let connected = rng.gen_bool(0.93);

    let model = MODELS[dists.model.sample(rng)];
    let firmware = FIRMWARE[dists.firmware.sample(rng)];
    s.serial.clear();
    let _ = write!(s.serial, "{}{:08X}", model.split('-').next().unwrap_or("x").to_uppercase(), rng.r#gen::<u32>());
    s.ip.clear();
    let octet = |v: Option<TagValue<'_>>| v.and_then(|v| v.to_string().parse::<u8>().ok()).unwrap_or(0);
    let _ = write!(s.ip, "10.{}.{}.{}", octet(place.building), octet(place.floor), rng.gen_range(2..255));
    let rpi = model == "rpi-4";
    let wifi = rpi || rng.gen_bool(0.2);
    let telemetry_interval = [15, 30, 60][rng.gen_range(0..3)];
    let desired_version = rng.gen_range(1..20);
    let reported_version = rng.gen_range(2..2000);
    let uptime_seconds = rng.gen_range(60..5_000_000);
    let signal_dbm = wifi.then(|| rng.gen_range(-85..-35));

    if spec.edge {
        s.scope.clear();
        let _ = write!(
            s.scope,
            "ms-azure-iot-edge://{}-{}",
            s.id,
            rng.gen_range(637_000_000_000_000_000u64..639_000_000_000_000_000)
        );
    }
    DeviceTwinOut {
        device_id: &s.id,
        etag: &s.etag,
        device_etag: &s.device_etag,
        status: "enabled",
        status_update_time: "0001-01-01T00:00:00Z",
        connection_state: if connected { "Connected" } else { "Disconnected" },
        last_activity_time: &s.last_activity,
        cloud_to_device_message_count: 0,
        authentication_type: "sas",
        x509_thumbprint: NO_THUMBPRINT,
        model_id: "",
        version,
        tags: place.building.map(|building| Tags {
            environment: spec.environment,
            location: Location { building, floor: place.floor },
            roomtype: place.roomtype,
            owner: place.owner,
        }),
        properties: DeviceProperties {
            desired: DeviceDesired { telemetry_interval, version: desired_version },
            reported: DeviceReported {
                hardware: Hardware {
                    model,
                    serial: &s.serial,
                    cpu_cores: if rpi { 4 } else { 8 },
                    memory_mb: if rpi { 4096 } else { 16384 },
                },
                firmware,
                os: Os { name: "Ubuntu", version: "22.04", architecture: if rpi { "aarch64" } else { "x86_64" } },
                network: Network { ip_address: &s.ip, interface: if wifi { "wlan0" } else { "eth0" }, signal_dbm },
                telemetry_interval,
                uptime_seconds,
                version: reported_version,
            },
        },
        capabilities: Capabilities { iot_edge: spec.edge },
        device_scope: spec.edge.then_some(s.scope.as_str()),
        parent_scopes: spec.edge.then_some([]),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EdgeAgentTwinOut<'a> {
    device_id: &'a str,
    module_id: &'static str,
    etag: &'a str,
    device_etag: &'a str,
    status: &'static str,
    status_update_time: &'static str,
    connection_state: &'static str,
    last_activity_time: &'a str,
    cloud_to_device_message_count: u32,
    authentication_type: &'static str,
    x509_thumbprint: Thumbprint,
    model_id: &'static str,
    version: u64,
    properties: AgentProperties<'a>,
    /// The hub's record of which configurations target or apply to this device; an
    /// empty hub has none.
    configurations: Empty,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct AgentProperties<'a> {
    desired: AgentDesired,
    reported: AgentReported<'a>,
}

#[derive(Serialize)]
struct AgentDesired {
    #[serde(rename = "$version")]
    version: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentReported<'a> {
    schema_version: &'static str,
    version: AgentVersion,
    last_desired_status: DesiredStatus,
    /// Equal to the desired `$version`: the device has applied what it was given, as
    /// the system metric `reportedSuccessfulCount` checks.
    last_desired_version: u64,
    runtime: AgentRuntime<'a>,
    system_modules: AgentSystemModules<'a>,
    #[serde(rename = "$version")]
    version_number: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentVersion {
    version: &'static str,
    build: &'static str,
    commit: &'static str,
}

#[derive(Serialize)]
struct DesiredStatus {
    code: u16,
    description: &'static str,
}

#[derive(Serialize)]
struct AgentRuntime<'a> {
    platform: AgentPlatform<'a>,
}

#[derive(Serialize)]
struct AgentPlatform<'a> {
    os: &'static str,
    architecture: &'a str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentSystemModules<'a> {
    edge_agent: SystemModule<'a>,
    edge_hub: SystemModule<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemModule<'a> {
    runtime_status: &'static str,
    last_start_time_utc: &'a str,
    image: &'static str,
}

fn edge_agent_twin<'a>(
    device: &DeviceTwinOut<'a>,
    rng: &mut ChaCha8Rng,
    s: &'a mut AgentScratch,
) -> EdgeAgentTwinOut<'a> {
    let version = rng.gen_range(2..200);
    twin_etag(version, &mut s.etag);
    timestamp(rng, &mut s.last_activity);
    EdgeAgentTwinOut {
        device_id: device.device_id,
        module_id: "$edgeAgent",
        etag: &s.etag,
        device_etag: device.device_etag,
        status: "enabled",
        status_update_time: "0001-01-01T00:00:00Z",
        connection_state: device.connection_state,
        last_activity_time: &s.last_activity,
        cloud_to_device_message_count: 0,
        authentication_type: "sas",
        x509_thumbprint: NO_THUMBPRINT,
        model_id: "",
        version,
        properties: AgentProperties {
            desired: AgentDesired { version: 1 },
            reported: AgentReported {
                schema_version: "1.1",
                version: AgentVersion { version: "1.5.7", build: "95118429", commit: "3dc2f1b6a9a4" },
                last_desired_status: DesiredStatus { code: 200, description: "" },
                last_desired_version: 1,
                runtime: AgentRuntime {
                    platform: AgentPlatform {
                        os: "linux",
                        architecture: device.properties.reported.os.architecture,
                        version: "1.5.7",
                    },
                },
                system_modules: AgentSystemModules {
                    edge_agent: SystemModule {
                        runtime_status: "running",
                        last_start_time_utc: device.last_activity_time,
                        image: "mcr.microsoft.com/azureiotedge-agent:1.5",
                    },
                    edge_hub: SystemModule {
                        runtime_status: "running",
                        last_start_time_utc: device.last_activity_time,
                        image: "mcr.microsoft.com/azureiotedge-hub:1.5",
                    },
                },
                version_number: rng.gen_range(2..500),
            },
        },
        configurations: Empty {},
    }
}

/// One hand-shaped group of the campus example: `count` devices spread over `floors`.
struct CampusGroup {
    building: &'static str,
    floors: &'static [u8],
    environment: &'static str,
    edge: bool,
    count: usize,
}

const fn group(
    building: &'static str,
    floors: &'static [u8],
    environment: &'static str,
    edge: bool,
    count: usize,
) -> CampusGroup {
    CampusGroup { building, floors, environment, edge, count }
}

/// The campus example's fleet, shaped against the example deployments (campus-base:
/// prod; campus-canary: prod, building 20, floor 3; building-monitoring: buildings 20
/// and 21; conference-camera: conference rooms; route-override: building 40). See
/// `examples/campus/hub/README.md` for what each group exercises.
const CAMPUS_GROUPS: [CampusGroup; 12] = [
    group("20", &[1, 2, 4, 5, 6], "prod", true, 60),
    group("20", &[3], "prod", true, 8),
    group("20", &[1, 2, 3, 4], "prod", false, 10),
    group("20", &[1, 2], "staging", true, 6),
    group("21", &[1, 2, 3, 4], "prod", true, 50),
    group("21", &[1, 2], "staging", true, 4),
    group("40", &[1, 2, 3], "prod", true, 45),
    group("40", &[1], "staging", true, 3),
    group("43", &[1, 2, 3, 4, 5, 6, 7, 8], "prod", true, 80),
    group("43", &[2, 3], "staging", true, 5),
    group("12", &[1, 2], "prod", true, 20),
    group("12", &[1], "prod", false, 3),
];

/// Room types cycle through this within a group, so counts are exact: 2 in 10 devices
/// are in conference rooms.
const CAMPUS_ROOMS: [&str; 10] =
    ["office", "conference", "office", "lab", "office", "conference", "lobby", "office", "datacenter", "office"];

const CAMPUS_SEED: u64 = 20;

/// Writes the campus example's twins (about 300 devices, pretty `devices.json` and
/// `modules.json`) into `out`. The hub's configurations (`configurations.json`) are
/// rendered from `examples/campus/hub-state/` instead, by `tests/example_hub.rs`. Deterministic: the committed
/// `examples/campus/hub/` is this function's output, and a test keeps them in step.
pub fn write_campus_example(out: &Path) -> Result<GenerateSummary, GenerateError> {
    let writer = SnapshotWriter::create(out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(CAMPUS_SEED);
    let dists = Distributions::new();
    let mut devices = writer.devices_file(TwinFormat::Json)?;
    let mut modules = writer.module_twins_file(TwinFormat::Json)?;
    let mut summary = GenerateSummary { buildings: 5, ..GenerateSummary::default() };
    let mut scratch = DeviceScratch::default();
    let mut agent_scratch = AgentScratch::default();
    let mut specs = Vec::new();
    for g in &CAMPUS_GROUPS {
        for i in 0..g.count {
            specs.push(DeviceSpec {
                seq: specs.len() + 1,
                edge: g.edge,
                environment: g.environment,
                place: Place {
                    building: Some(TagValue::Text(g.building)),
                    floor: Some(TagValue::Number(u64::from(g.floors[i % g.floors.len()]))),
                    roomtype: CAMPUS_ROOMS[i % CAMPUS_ROOMS.len()],
                    owner: (i % 4 != 3).then_some(OWNERS[i % OWNERS.len()]),
                },
            });
        }
    }
    // Edge prod twins the query language treats in surprising ways.
    let oddballs = [
        // No tags at all: no tag-based deployment targets it.
        ("prod", None, None, "office"),
        // `tags.location` without `floor`: building-monitoring applies, the canary not.
        ("prod", Some(TagValue::Text("20")), None, "office"),
        // `floor: "3"`, a string: never equal to the number 3, so no canary.
        ("prod", Some(TagValue::Text("20")), Some(TagValue::Text("3")), "lab"),
        // `building: 20`, a number: never equal to '20', so only base and camera.
        ("prod", Some(TagValue::Number(20)), Some(TagValue::Number(3)), "conference"),
        // `environment: "Prod"`: comparison is case-sensitive, so no base under
        // building-monitoring.
        ("Prod", Some(TagValue::Text("21")), Some(TagValue::Number(2)), "office"),
    ];
    for (environment, building, floor, roomtype) in oddballs {
        specs.push(DeviceSpec {
            seq: specs.len() + 1,
            edge: true,
            environment,
            place: Place { building, floor, roomtype, owner: Some("facilities") },
        });
    }
    for spec in &specs {
        let twin = device_twin(spec, &dists, &mut rng, &mut scratch);
        devices.push(&twin)?;
        summary.devices += 1;
        summary.staging_devices += usize::from(spec.environment == "staging");
        if spec.edge {
            summary.edge_devices += 1;
            summary.module_twins += 1;
            modules.push(&edge_agent_twin(&twin, &mut rng, &mut agent_scratch))?;
        }
    }
    summary.devices_bytes = devices.commit()?;
    summary.modules_bytes = modules.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetform::hub::snapshot::Snapshot;
    use fleetform::model::Priority;
    use std::collections::BTreeMap;
    use std::fs;

    fn generate_into(opts: &GenerateOptions) -> (tempfile::TempDir, GenerateSummary) {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(opts, dir.path()).unwrap();
        (dir, summary)
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let opts = GenerateOptions { devices: 500, seed: 7, ..GenerateOptions::default() };
        let (a, sa) = generate_into(&opts);
        let (b, sb) = generate_into(&opts);
        let (c, _) = generate_into(&GenerateOptions { seed: 8, ..opts });
        assert_eq!(sa, sb);
        for name in ["devices.jsonl", "modules.jsonl", "configurations.json"] {
            assert_eq!(read(a.path(), name), read(b.path(), name), "{name}");
        }
        assert_ne!(read(a.path(), "devices.jsonl"), read(c.path(), "devices.jsonl"));
        assert_ne!(read(a.path(), "modules.jsonl"), read(c.path(), "modules.jsonl"));
    }

    #[test]
    fn generated_fleet_reads_back_with_its_shape() {
        let (dir, summary) = generate_into(&GenerateOptions { devices: 4000, seed: 3, ..GenerateOptions::default() });
        let snap = Snapshot::open(dir.path()).unwrap();
        assert!(snap.configurations().unwrap().is_empty());
        assert_eq!(fs::read_to_string(dir.path().join("configurations.json")).unwrap(), "[]\n");
        let mut buildings: BTreeMap<String, usize> = BTreeMap::new();
        let (mut edge, mut staging, mut untagged, mut floorless) = (0, 0, 0, 0);
        for twin in snap.devices().unwrap() {
            let twin = twin.unwrap();
            edge += usize::from(twin.is_edge());
            let id = twin.device_id();
            assert!(id.starts_with(if twin.is_edge() { "b" } else { "dev-" }) || id.starts_with("edge-"), "{id}");
            let Some(tags) = twin.tags() else {
                untagged += 1;
                continue;
            };
            staging += usize::from(tags["environment"] == "staging");
            let building = tags["location"]["building"].as_str().unwrap().to_string();
            *buildings.entry(building).or_default() += 1;
            match twin.get_path("tags.location.floor") {
                Some(f) => assert!((1..=8).contains(&f.as_u64().unwrap())),
                None => floorless += 1,
            }
            assert!(MODELS.contains(&twin.get_path("properties.reported.hardware.model").unwrap().as_str().unwrap()));
        }
        assert_eq!(edge, summary.edge_devices);
        assert_eq!(staging, summary.staging_devices);
        assert_eq!(buildings.values().sum::<usize>() + untagged, 4000);
        // ~90 % Edge, ~10 % staging, a handful without tags or floor.
        assert!((3450..3750).contains(&edge), "{edge}");
        assert!((300..500).contains(&staging), "{staging}");
        assert!((1..40).contains(&untagged), "{untagged}");
        assert!((10..100).contains(&floorless), "{floorless}");
        // Skewed: building 20 is the biggest, clearly above an even share.
        let b20 = buildings["20"];
        assert!(buildings.values().all(|&n| n <= b20));
        assert!(b20 > 4000 / 4 * 3 / 2, "{buildings:?}");

        let mut agents = 0;
        for m in snap.module_twins().unwrap() {
            let m = m.unwrap();
            agents += 1;
            assert_eq!(m.module_id(), "$edgeAgent");
            assert!(m.configurations().unwrap().is_empty());
            let reported = &m.value()["properties"]["reported"];
            assert_eq!(reported["lastDesiredStatus"]["code"], 200);
            assert_eq!(reported["lastDesiredVersion"], m.value()["properties"]["desired"]["$version"]);
        }
        assert_eq!(agents, summary.module_twins);
        assert_eq!(agents, edge);
        let on_disk: u64 = ["devices.jsonl", "modules.jsonl", "configurations.json"]
            .iter()
            .map(|n| fs::metadata(dir.path().join(n)).unwrap().len())
            .sum();
        assert_eq!(summary.bytes_written(), on_disk);
    }

    #[test]
    fn big_fleets_spread_over_more_buildings() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(Campus::new(10, &mut rng).buildings, ["20", "21", "40", "43"]);
        let campus = Campus::new(1_000_000, &mut rng);
        assert_eq!(campus.buildings.len(), 120);
        assert!(campus.buildings.iter().any(|b| b == "120"));
        let distinct: std::collections::HashSet<_> = campus.buildings.iter().collect();
        assert_eq!(distinct.len(), 120);
    }

    #[test]
    fn options_are_checked_and_configurations_written() {
        let dir = tempfile::tempdir().unwrap();
        let bad = GenerateOptions { edge_share: 1.5, ..GenerateOptions::default() };
        assert!(matches!(generate(&bad, dir.path()), Err(GenerateError::InvalidOption { name: "edge share", .. })));
        let opts = GenerateOptions {
            devices: 10,
            module_twins: false,
            edge_share: 1.0,
            configurations: vec![Configuration {
                id: "campus-base".into(),
                priority: Priority(10),
                ..Configuration::default()
            }],
            ..GenerateOptions::default()
        };
        let summary = generate(&opts, dir.path()).unwrap();
        assert_eq!((summary.edge_devices, summary.module_twins), (10, 0));
        let snap = Snapshot::open(dir.path()).unwrap();
        assert_eq!(snap.configurations().unwrap()[0].id, "campus-base");
        assert!(snap.modules_file().is_none());
    }

    /// The committed example is exactly what `write_campus_example` writes. To refresh it
    /// after changing the generator: `FLEETFORM_BLESS=1 cargo test --lib campus_example`.
    #[test]
    fn campus_example_is_up_to_date() {
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/campus/hub");
        if std::env::var_os("FLEETFORM_BLESS").is_some() {
            write_campus_example(&committed).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let summary = write_campus_example(dir.path()).unwrap();
        assert_eq!(summary.devices, 299);
        for name in ["devices.json", "modules.json"] {
            assert!(
                read(&committed, name) == read(dir.path(), name),
                "examples/campus/hub/{name} is stale: rerun with FLEETFORM_BLESS=1"
            );
        }
    }
}

/// Synthetic deployments that fit a generated fleet, as KDL: about a tenth standard (one
/// per environment, then per building), the rest layered (per building, room type,
/// hardware model, firmware, floor), each with modules, a route and twin settings. For
/// benchmarks and demos: `fleetform hub generate --deployments 100`.
pub fn deployments_kdl(count: usize) -> String {
    use std::fmt::Write as _;
    let mut buildings: Vec<String> = LEAD_BUILDINGS.iter().map(|b| b.to_string()).collect();
    buildings.extend((1..=MAX_BUILDINGS).map(|b| b.to_string()).filter(|b| !LEAD_BUILDINGS.contains(&b.as_str())));
    let standards = (count / 10).max(1).min(count);
    let mut out = String::from(
        "// Generated by `fleetform hub generate --deployments`: synthetic deployments for a generated fleet.\n",
    );
    let runtime = "    runtime {\n        edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"\n        edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\"\n    }\n";
    for i in 0..standards {
        let (name, priority, target) = match i {
            0 => ("fleet-base".to_string(), 10, "tags.environment='prod'".to_string()),
            1 => ("staging-base".to_string(), 10, "tags.environment='staging'".to_string()),
            n => {
                let b = &buildings[(n - 2) % buildings.len()];
                (format!("building-{b}-base"), 20, format!("tags.environment='prod' AND tags.location.building='{b}'"))
            }
        };
        let _ = write!(
            out,
            "\ndeployment \"{name}\" {{\n    priority {priority}\n    target \"{target}\"\n{runtime}    module \"Telemetry\" image=\"fleet.azurecr.io/telemetry:3.{i}.0\" {{\n        startup-order 1\n        env LOG_LEVEL=\"info\" SAMPLE_SECONDS={}\n        twin {{\n            reporting {{\n                intervalSeconds {}\n            }}\n        }}\n    }}\n    module \"Gateway\" image=\"fleet.azurecr.io/gateway:1.{i}\"\n    route \"telemetry\" \"FROM /messages/modules/Telemetry/outputs/* INTO $upstream\"\n}}\n",
            15 + i,
            60 + i
        );
    }
    for j in 0..count - standards {
        let priority = 100 + j;
        let (name, target) = match j % 5 {
            0 => {
                let b = &buildings[(j / 5) % buildings.len()];
                (format!("building-{b}-monitor"), format!("tags.location.building = '{b}'"))
            }
            1 => {
                let room = ROOM_TYPES[(j / 5) % ROOM_TYPES.len()];
                (format!("room-{room}-{j}"), format!("tags.roomtype = '{room}'"))
            }
            2 => {
                let model = MODELS[(j / 5) % MODELS.len()];
                (format!("model-{model}-{j}"), format!("properties.reported.hardware.model = '{model}'"))
            }
            3 => {
                let fw = FIRMWARE[(j / 5) % FIRMWARE.len()];
                (format!("firmware-{}-{j}", fw.replace('.', "-")), format!("properties.reported.firmware = '{fw}'"))
            }
            _ => {
                let b = &buildings[(j / 5) % 8];
                let floor = 1 + (j / 40) % 4;
                (
                    format!("floor-{b}-{floor}-{j}"),
                    format!("tags.location.building = '{b}' AND tags.location.floor = {floor}"),
                )
            }
        };
        let modules = 1 + j % 3;
        let _ = write!(out, "\nlayered \"{name}\" {{\n    priority {priority}\n    target \"{target}\"\n");
        for m in 0..modules {
            let _ = write!(
                out,
                "    module \"L{j}M{m}\" image=\"fleet.azurecr.io/layer-{j}-{m}:1.{m}\" {{\n        env LAYER=\"{j}\"\n        twin path=\"settings\" {{\n            level {m}\n        }}\n    }}\n"
            );
        }
        let _ = write!(out, "    route \"l{j}\" \"FROM /messages/modules/L{j}M0/outputs/* INTO $upstream\"\n}}\n");
    }
    out
}

#[cfg(test)]
mod deployment_tests {
    #[test]
    fn generated_deployments_are_valid() {
        let text = super::deployments_kdl(100);
        let ws = fleetform::spec::Workspace::from_sources(vec![fleetform::spec::SourceFile::new(
            "gen.kdl", "gen.kdl", text,
        )]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems.first().map(|p| (p.location(), &p.message)));
        assert_eq!(ws.deployments.len(), 100);
        let standard = ws.deployments.iter().filter(|d| d.kind == fleetform::spec::DeploymentKind::Standard).count();
        assert_eq!(standard, 10);
    }
}
