//! Keyed token buckets for abuse limits (login attempts per account and per
//! client address). Time is passed in; the key table is bounded.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Tokens a key may spend at once.
    pub burst: u32,
    /// One token returns every `refill_ms`.
    pub refill_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed { remaining: u32 },
    Limited { retry_after_ms: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens available at `at_ms`.
    tokens: u32,
    at_ms: u64,
}

/// One bucket per key; a key at full burst carries no information and is the
/// first to go when the table reaches `max_keys`.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl Rate {
    /// At least one token, refilled at least every millisecond.
    fn sane(self) -> Rate {
        Rate {
            burst: self.burst.max(1),
            refill_ms: self.refill_ms.max(1),
        }
    }

    /// `bucket` with the tokens that came back by `now_ms`, at most `burst`.
    fn refilled(self, bucket: Bucket, now_ms: u64) -> Bucket {
        let gained = now_ms.saturating_sub(bucket.at_ms) / self.refill_ms;
        if gained == 0 {
            return bucket;
        }
        let tokens = (u64::from(bucket.tokens) + gained).min(u64::from(self.burst)) as u32;
        Bucket {
            tokens,
            at_ms: if tokens == self.burst {
                now_ms
            } else {
                bucket.at_ms + gained * self.refill_ms
            },
        }
    }

    fn verdict(self, bucket: Bucket, now_ms: u64) -> Verdict {
        if bucket.tokens > 0 {
            Verdict::Allowed {
                remaining: bucket.tokens,
            }
        } else {
            Verdict::Limited {
                retry_after_ms: (bucket.at_ms + self.refill_ms).saturating_sub(now_ms),
            }
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate: rate.sane(),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// What spending one token now would do, without spending it.
    pub fn peek(&self, key: &K, now_ms: u64) -> Verdict {
        match self.buckets.get(key) {
            None => Verdict::Allowed {
                remaining: self.rate.burst,
            },
            Some(bucket) => self
                .rate
                .verdict(self.rate.refilled(*bucket, now_ms), now_ms),
        }
    }

    /// Spends one token of `key`, or says how long until one returns.
    pub fn take(&mut self, key: K, now_ms: u64) -> Verdict {
        self.take_with(key, self.rate, now_ms)
    }

    /// Like `take`, at a rate of this key's own (a store's plan, say).
    pub fn take_with(&mut self, key: K, rate: Rate, now_ms: u64) -> Verdict {
        let rate = rate.sane();
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.evict(rate, now_ms);
        }
        let fresh = Bucket {
            tokens: rate.burst,
            at_ms: now_ms,
        };
        let mut current = self
            .buckets
            .get(&key)
            .map_or(fresh, |b| rate.refilled(*b, now_ms));
        // A key whose rate shrank (a store moved to a smaller plan) keeps no more than the new burst.
        current.tokens = current.tokens.min(rate.burst);
        let verdict = rate.verdict(current, now_ms);
        if let Verdict::Allowed { .. } = verdict {
            current.tokens -= 1;
        }
        self.buckets.insert(key, current);
        match verdict {
            Verdict::Allowed { remaining } => Verdict::Allowed {
                remaining: remaining - 1,
            },
            limited => limited,
        }
    }

    /// Drops every refilled key (judged at `rate`, the caller's: keys of
    /// other rates are judged approximately); if none is, the oldest.
    fn evict(&mut self, rate: Rate, now_ms: u64) {
        let full = rate.burst;
        self.buckets.retain(|_, b| {
            let gained = now_ms.saturating_sub(b.at_ms) / rate.refill_ms;
            u64::from(b.tokens) + gained < u64::from(full)
        });
        if self.buckets.len() >= self.max_keys {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at_ms)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// A fixed one-second window: at most `limit_per_s` takes per second. For
/// rates far above one per millisecond, where a token bucket's refill step
/// would be too coarse (a store's shopper traffic).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    second: u64,
    taken: u64,
}

impl Window {
    pub fn take(&mut self, limit_per_s: u64, now_ms: u64) -> Verdict {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.taken = 0;
        }
        if self.taken >= limit_per_s {
            return Verdict::Limited {
                retry_after_ms: 1000 - now_ms % 1000,
            };
        }
        self.taken += 1;
        Verdict::Allowed {
            remaining: u32::try_from(limit_per_s - self.taken).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_limit_per_second() {
        let mut window = Window::default();
        assert_eq!(window.take(2, 1_000), Verdict::Allowed { remaining: 1 });
        assert_eq!(window.take(2, 1_500), Verdict::Allowed { remaining: 0 });
        assert_eq!(
            window.take(2, 1_900),
            Verdict::Limited {
                retry_after_ms: 100
            }
        );
        assert_eq!(window.take(2, 2_000), Verdict::Allowed { remaining: 1 });
    }

    const RATE: Rate = Rate {
        burst: 3,
        refill_ms: 1_000,
    };

    #[test]
    fn a_key_spends_its_burst_then_waits_for_refill() {
        let mut limiter = KeyedLimiter::new(RATE, 10);
        assert_eq!(limiter.take("a", 0), Verdict::Allowed { remaining: 2 });
        limiter.take("a", 0);
        assert_eq!(limiter.take("a", 0), Verdict::Allowed { remaining: 0 });
        assert_eq!(
            limiter.take("a", 400),
            Verdict::Limited {
                retry_after_ms: 600
            }
        );
        assert_eq!(limiter.take("a", 1_000), Verdict::Allowed { remaining: 0 });
        assert_eq!(limiter.take("b", 1_000), Verdict::Allowed { remaining: 2 });
        assert_eq!(
            limiter.peek(&"a", 10_000),
            Verdict::Allowed { remaining: 3 }
        );
    }

    #[test]
    fn the_key_table_never_exceeds_its_bound() {
        let mut limiter = KeyedLimiter::new(RATE, 100);
        for i in 0..10_000u32 {
            limiter.take(i, u64::from(i));
            assert!(limiter.len() <= 100);
        }
    }

    #[test]
    fn a_limited_key_is_not_evicted_before_refilled_keys() {
        let mut limiter = KeyedLimiter::new(RATE, 2);
        limiter.take("other", 0);
        for _ in 0..3 {
            limiter.take("attacker", 1_000);
        }
        // At 1.5 s "other" is full again and goes; "attacker" stays limited.
        limiter.take("newcomer", 1_500);
        assert_eq!(limiter.len(), 2);
        assert!(matches!(
            limiter.peek(&"attacker", 1_500),
            Verdict::Limited {
                retry_after_ms: 500
            }
        ));
    }
}
