//! Key generation, shared by every kind: off the async threads, at most one key per core at a time
//! (the work is CPU-bound; more at once only adds threads and allocator arenas), its CPU time counted.

use super::context::Counters;
use super::error::Error;
use crate::core::Key;

/// See the module documentation.
pub struct KeyGenerator {
    slots: tokio::sync::Semaphore,
}

impl Default for KeyGenerator {
    fn default() -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        }
    }
}

/// This thread's CPU time in nanoseconds (`/proc/thread-self/schedstat`), if the kernel reports it.
fn thread_cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl KeyGenerator {
    /// A new RSA-2048 key.
    pub async fn generate(&self, counters: &Counters) -> Result<Key, Error> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| Error::KeyGeneration(e.to_string()))?;
        let (jwk, micros) = tokio::task::spawn_blocking(|| {
            let cpu0 = thread_cpu_nanos();
            let wall0 = std::time::Instant::now();
            let jwk = crate::keys::generate_key();
            let micros = match (cpu0, thread_cpu_nanos()) {
                (Some(a), Some(b)) if b >= a => (b - a) / 1000,
                _ => u64::try_from(wall0.elapsed().as_micros()).unwrap_or(u64::MAX),
            };
            (jwk, micros)
        })
        .await
        .map_err(|e| Error::KeyGeneration(e.to_string()))?;
        Counters::add(&counters.keygen_cpu_micros, micros);
        let jwk = jwk.map_err(|e| Error::KeyGeneration(e.to_string()))?;
        Counters::inc(&counters.keys_generated);
        Ok(Key::from_private(&jwk))
    }
}
