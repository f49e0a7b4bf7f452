//! Reconnection delays: exponential with full jitter, so a hub restart is not met by every client
//! reconnecting in the same instant.

#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u32,
    max_ms: u32,
    attempt: u32,
}

impl Backoff {
    pub fn new(base_ms: u32, max_ms: u32) -> Self {
        Backoff { base_ms: base_ms.max(1), max_ms: max_ms.max(base_ms.max(1)), attempt: 0 }
    }

    /// The delay before the next attempt; `jitter` is uniform in [0, 1). Half the delay is fixed so
    /// attempts never hammer the hub back to back, the other half is random.
    pub fn next_delay(&mut self, jitter: f64) -> u32 {
        let ceiling = u64::from(self.base_ms).saturating_mul(1 << self.attempt.min(20)).min(u64::from(self.max_ms));
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        (half + (half as f64 * jitter.clamp(0.0, 1.0)) as u64) as u32
    }

    /// A connection that worked starts the sequence over.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(250, 30_000);
        let delays: Vec<u32> = (0..12).map(|_| b.next_delay(0.999)).collect();
        assert!(delays[0] >= 125 && delays[0] < 250, "{delays:?}");
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert!(*delays.last().unwrap() <= 30_000 && *delays.last().unwrap() >= 15_000);
        b.reset();
        assert!(b.next_delay(0.0) == 125);
    }
}
