//! The WASM runtime's paths, success and error, on components written by
//! hand (WAT, no toolchain): what `describe` and `call` may return or do, and
//! what the host makes of it.

use super::*;
use crate::manifest::Manifest;
use serde_json::json;
use std::fmt::Write as _;

/// Guest memory built from Rust: records at fixed addresses, strings after
/// them, emitted as one WAT data segment.
pub(crate) struct Memory {
    bytes: Vec<u8>,
    next_string: usize,
}

impl Memory {
    pub(crate) fn new() -> Self {
        Self { bytes: vec![0; 2048], next_string: 1024 }
    }
    fn u32_at(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    /// Write `text` after the previous strings; return (pointer, length).
    fn string(&mut self, text: &str) -> (u32, u32) {
        let at = self.next_string;
        self.bytes[at..at + text.len()].copy_from_slice(text.as_bytes());
        self.next_string += text.len();
        (at as u32, text.len() as u32)
    }
    /// A `string` field at `at`.
    fn string_at(&mut self, at: usize, text: &str) {
        let (ptr, len) = self.string(text);
        self.u32_at(at, ptr);
        self.u32_at(at + 4, len);
    }
    fn data(&self) -> String {
        let mut out = String::from("(data (i32.const 0) \"");
        for b in &self.bytes {
            let _ = write!(out, "\\{b:02x}");
        }
        out + "\")"
    }
}

/// A `metadata` record (76 bytes) at 256 describing `id` 1.0.0 with one
/// operation `run` (its record at 512), for contract `contract`.
pub(crate) fn metadata(mem: &mut Memory, id: &str, contract: &str) {
    mem.string_at(256, id);
    mem.string_at(264, "Hand-written");
    mem.string_at(272, "1.0.0");
    mem.string_at(280, "A component written in WAT");
    // authors: empty list (288); license: none (296, payload 300).
    mem.string_at(308, contract);
    // capabilities: empty list (316); operations: one, at 512.
    mem.u32_at(324, 512);
    mem.u32_at(328, 1);
    mem.string_at(512, "run");
    mem.string_at(520, "Runs");
    // params-schema and output-schema: none.
}

/// The guest interface's types and lifted exports, shared with the hostile-plugin tests.
const GUEST_EXPORTS: &str = include_str!("../../../../tests/fixtures/guest-exports.wat");

/// A component whose `describe` returns the record at 256 and whose `call`
/// runs `call_body` (a core function body returning the address of its
/// result), with a bump allocator for what the host passes in.
pub(crate) fn component(mem: &Memory, call_body: &str) -> Vec<u8> {
    let data = mem.data();
    wat::parse_str(format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (global.set $bump (i32.add (local.get $p) (local.get $size)))
      (local.get $p))
    (func (export "describe") (result i32) (i32.const 256))
    (func (export "call") (param i32) (result i32) {call_body})
    {data})
  (core instance $i (instantiate $m))
{GUEST_EXPORTS})"#
    ))
    .expect("the test component is valid WAT")
}

struct Fixture {
    dir: tempfile::TempDir,
    engine: WasmEngine,
}

impl Fixture {
    fn new() -> Self {
        let engine = WasmEngine::new(ComponentCache::new(None).unwrap()).unwrap();
        Self { dir: tempfile::tempdir().unwrap(), engine }
    }
    fn manifest(&self, id: &str, limits: &str) -> Manifest {
        let text = format!("id = \"{id}\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"c.wasm\"\n{limits}");
        Manifest::parse(self.dir.path(), &text).unwrap()
    }
    fn load(&self, id: &str, limits: &str, bytes: &[u8]) -> Result<WasmPlugin, LoadErrorKind> {
        WasmPlugin::load(&self.engine, &self.manifest(id, limits), bytes)
    }
}

fn call(plugin: &WasmPlugin, timeout_ms: u64) -> Result<CallOutput, CallError> {
    let exec = ExecutionContext {
        execution_id: "e".into(),
        operation: "run".into(),
        parameters: json!({"n": 1}),
        ..ExecutionContext::default()
    };
    let services = CallServices::new(&plugin.plugin_id, "e", Default::default(), Default::default());
    plugin.call(&exec, &services, Some(Duration::from_millis(timeout_ms)))
}

/// A loaded runtime to stand in where only a [`crate::LoadedPlugin`]'s
/// manifest matters: a WAT component answering 42.
pub(crate) fn any_runtime() -> std::sync::Arc<dyn crate::runtime::Runtime> {
    let fx = Fixture::new();
    let mut mem = Memory::new();
    metadata(&mut mem, "wat.any", "0.1.0");
    let body = returns_42(&mut mem);
    std::sync::Arc::new(fx.load("wat.any", "", &component(&mem, body)).unwrap())
}

/// The `call` body returning `ok("42")` from address 768.
pub(crate) fn returns_42(mem: &mut Memory) -> &'static str {
    // result: discriminant 0 (ok) at 768, call-output at 772: output string, metrics (empty).
    mem.string_at(772, "42");
    "(i32.const 768)"
}

#[test]
fn a_component_that_describes_itself_loads_and_its_result_comes_back() {
    let fx = Fixture::new();
    let mut mem = Memory::new();
    metadata(&mut mem, "wat.good", "0.1.0");
    let body = returns_42(&mut mem);
    let plugin = fx.load("wat.good", "", &component(&mem, body)).unwrap();
    assert_eq!(plugin.metadata().name, "Hand-written");
    assert_eq!(plugin.metadata().operations[0].name, "run");
    assert_eq!(call(&plugin, 5_000).unwrap().output, json!(42));
}

#[test]
fn a_plugin_error_is_data_with_its_kind_message_and_retry_flag() {
    let fx = Fixture::new();
    let mut mem = Memory::new();
    metadata(&mut mem, "wat.refuses", "0.1.0");
    // result: discriminant 1 (err) at 768; plugin-error at 772: kind 3 (failed), message, retryable.
    mem.bytes[768] = 1;
    mem.bytes[772] = 3;
    mem.string_at(776, "the upstream service is down");
    mem.bytes[784] = 1;
    let plugin = fx.load("wat.refuses", "", &component(&mem, "(i32.const 768)")).unwrap();
    match call(&plugin, 5_000).unwrap_err() {
        CallError::Plugin { error, .. } => {
            assert_eq!(error.kind, plexus_sdk::ErrorKind::Failed);
            assert_eq!(error.message, "the upstream service is down");
            assert!(error.retryable);
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn a_trap_a_loop_and_a_memory_grab_are_each_their_own_error() {
    let fx = Fixture::new();
    let mut mem = Memory::new();
    metadata(&mut mem, "wat.trap", "0.1.0");
    let trap = fx.load("wat.trap", "", &component(&mem, "unreachable")).unwrap();
    assert!(matches!(call(&trap, 5_000), Err(CallError::Trap { .. })), "{:?}", call(&trap, 5_000));

    let mut mem = Memory::new();
    metadata(&mut mem, "wat.loop", "0.1.0");
    let spin = fx.load("wat.loop", "", &component(&mem, "(loop (br 0)) (i32.const 0)")).unwrap();
    let started = Instant::now();
    assert!(matches!(call(&spin, 100), Err(CallError::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_millis(100 + 100), "{:?}", started.elapsed());

    let mut mem = Memory::new();
    metadata(&mut mem, "wat.grab", "0.1.0");
    // 2,000 pages (125 MiB) over a 16 MiB limit: memory.grow fails, and the guest traps on it.
    let grab = "(if (i32.eq (memory.grow (i32.const 2000)) (i32.const -1)) (then unreachable)) (i32.const 0)";
    let greedy = fx.load("wat.grab", "[limits]\nmemory_mib = 16\n", &component(&mem, grab)).unwrap();
    match call(&greedy, 5_000).unwrap_err() {
        CallError::MemoryLimit { limit_bytes, .. } => assert_eq!(limit_bytes, 16 << 20),
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

#[test]
fn a_component_whose_metadata_disagrees_does_not_load_and_says_why() {
    let fx = Fixture::new();
    let mut mem = Memory::new();
    metadata(&mut mem, "wat.someone-else", "0.1.0");
    let err = fx.load("wat.me", "", &component(&mem, "unreachable")).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("wat.someone-else"), "{err}");

    let mut mem = Memory::new();
    metadata(&mut mem, "wat.future", "9.0.0");
    let err = fx.load("wat.future", "", &component(&mem, "unreachable")).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("9.0.0"), "{err}");
}

#[test]
fn bytes_that_are_not_a_component_do_not_load() {
    let fx = Fixture::new();
    let core_module = wat::parse_str("(module)").unwrap();
    for bytes in [&b"not wasm at all"[..], &core_module] {
        assert!(fx.load("wat.junk", "", bytes).is_err());
    }
}

#[test]
fn a_component_importing_an_interface_the_host_lacks_is_refused_naming_it_and_the_fix() {
    let fx = Fixture::new();
    let bytes = wat::parse_str(
        r#"(component
  (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "f" (func))))
  (import "wasi:http/incoming-handler@0.2.3" (instance (export "handle" (func))))
  (import "wasi:cli/environment@0.2.3" (instance))
)"#,
    )
    .unwrap();
    let err = fx.load("wat.kv", "", &bytes).err().expect("refused").to_string();
    assert!(
        err.contains("does not provide: wasi:keyvalue/store@0.2.0-draft, wasi:http/incoming-handler@0.2.3;"),
        "{err}"
    );
    assert!(!err.contains("provide: wasi:cli"), "wasi:cli is provided: {err}");
    if cfg!(feature = "wasi-http") {
        assert!(err.contains("and wasi:http's types and outgoing-handler"), "{err}");
    } else {
        assert!(err.contains("--disable http fetch-event"), "{err}");
    }
    // A component that exports nothing of this world is told which world to target.
    let bytes = wat::parse_str("(component)").unwrap();
    let err = fx.load("wat.empty", "", &bytes).err().expect("refused").to_string();
    assert!(err.contains("plexus:plugin/guest") && err.contains("plexus-plugin world"), "{err}");
}
