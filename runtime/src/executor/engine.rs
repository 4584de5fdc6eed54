//! The wasmtime engine an executor runs on: how it is set up ([`ExecutorConfig`]), the engine
//! built from that (epoch interruption, fiber stacks, the pooling allocator), and the
//! [`EpochTicker`] thread that advances its epoch.
//!
//! What runs on the engine is left to others: the linker and the state of an attempt's store to
//! `sandbox`, compiling modules to `modules`, running an attempt to the executor itself.

use super::ExecutorError;
use crate::limits::Limits;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The most tables one attempt's module may define or import.
pub(super) const MAX_TABLES: u32 = 4;

/// How the executor is set up; the defaults suit a worker host.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// How often the epoch advances: the granularity at which lifetimes and cancellations are
    /// noticed while wasm code runs.
    pub epoch_tick: Duration,
    /// The most native stack a guest's wasm frames may use before it traps with a stack
    /// overflow.
    pub max_wasm_stack: usize,
    /// Where scratch directories are created; the system's temporary directory if `None`.
    pub scratch_root: Option<PathBuf>,
    /// The largest module the executor compiles; a larger one is an invalid module.
    pub max_module_size: u64,
    /// How long compiling one module may take; a module that takes longer is an invalid module.
    pub compile_timeout: Duration,
    /// Where compiled modules are kept between runs; none are kept if `None`.
    pub module_cache_dir: Option<PathBuf>,
    /// How many instances wasmtime's pooling allocator keeps ready, so that an attempt reuses
    /// the memory, tables and stack of an earlier one instead of mapping fresh ones. At least
    /// the number of attempts run at once; 0 maps fresh ones for every attempt.
    pub pooled_instances: u32,
    /// The largest linear memory an attempt may be given (the size of a pool slot).
    pub max_memory: u64,
    /// The most table elements an attempt may be given (the size of a pool slot's tables).
    pub max_table_elements: u32,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
            scratch_root: None,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            module_cache_dir: None,
            pooled_instances: 0,
            max_memory: Limits::MAX.memory,
            max_table_elements: Limits::MAX.table_elements,
        }
    }
}

/// The largest module compiled unless the worker says otherwise: 128 MiB.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 128 << 20;

/// How long a compilation may take unless the worker says otherwise: 60 s.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// The engine `config` describes, with epoch interruption on.
pub(super) fn build(config: &ExecutorConfig) -> Result<Engine, ExecutorError> {
    let mut wasmtime_config = Config::new();
    wasmtime_config.epoch_interruption(true);
    wasmtime_config.max_wasm_stack(config.max_wasm_stack);
    // Host calls run on the same fiber stack as the guest, so leave them room above it.
    wasmtime_config.async_stack_size(config.max_wasm_stack + (1 << 20));
    if config.pooled_instances > 0 {
        let instances = config.pooled_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances * MAX_TABLES)
            .total_stacks(instances)
            .total_component_instances(0)
            .max_memories_per_module(1)
            .max_tables_per_module(MAX_TABLES)
            .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX))
            .table_elements(config.max_table_elements as usize)
            .max_core_instance_size(4 << 20);
        wasmtime_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&wasmtime_config).map_err(|e| ExecutorError::Engine(e.to_string()))
}

/// Advances the engine's epoch at a fixed interval until dropped.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("wasmjob-epoch".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
