//! The one wasmtime engine: configured for an instance per call.

use crate::capability::limits::MAX_MEMORY_MIB;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A running guest yields to the async
/// runtime at each tick, which is also how soon a timeout can stop it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sandboxes alive at once, across all plugins.
    pub max_sandboxes: u32,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Linear memory kept resident in a sandbox slot between calls, in KiB:
    /// more makes calls faster, less keeps idle memory down.
    pub keep_resident_kib: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_sandboxes: 128,
            cache_dir: None,
            keep_resident_kib: 1024,
        }
    }
}

/// Builds the engine: pooling allocator (slots reused, memory kept resident
/// between calls), epoch interruption for CPU bounds.
pub fn build(config: &EngineConfig) -> anyhow::Result<Engine> {
    let n = config.max_sandboxes;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        // A Rust component holds a few core instances, one or two memories
        // and a handful of tables.
        .max_core_instances_per_component(16)
        .total_core_instances(n * 8)
        .max_memories_per_component(4)
        .total_memories(n * 2)
        .max_tables_per_component(8)
        .total_tables(n * 4)
        .total_stacks(n)
        .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
        .linear_memory_keep_resident(config.keep_resident_kib as usize * 1024)
        .table_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);

    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| anyhow::anyhow!("cannot configure the wasm engine: {e}"))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> anyhow::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
