//! Open holds per shopper across every SKU. SKU actors count each hold as it
//! opens and ends (from the events they log); a shopper's own reservation
//! takes a place first, so concurrent requests cannot pass `holds_max`.

use std::sync::Arc;

use dashmap::DashMap;

/// The shopper already holds as many reservations as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a shopper may hold at most {max} reservations at once; {open} are open")]
pub struct TooManyHolds {
    pub max: u32,
    pub open: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// Holds the SKU actors logged and that have not ended.
    open: u32,
    /// Reservations asked for and not answered yet.
    pending: u32,
}

/// See the module comment. Holds only buyers with an open or pending hold, so
/// it is bounded by the open reservations.
#[derive(Debug, Default)]
pub struct HoldBook {
    /// Keyed by buyer ids from verified tokens: a fast seeded hash will do.
    buyers: DashMap<Box<str>, Count, foldhash::fast::RandomState>,
}

impl HoldBook {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes a place for one more hold of `buyer`, unless its open and pending
    /// holds already reach `max`. The place is given back when dropped; by
    /// then the SKU actor has counted the hold if it opened.
    pub fn try_take(self: &Arc<Self>, buyer: &str, max: u32) -> Result<HoldPlace, TooManyHolds> {
        // A shopper who holds something is found without allocating a key.
        let mut count = match self.buyers.get_mut(buyer) {
            Some(count) => count,
            None => self.buyers.entry(buyer.into()).or_default(),
        };
        if count.open + count.pending >= max {
            let open = count.open;
            drop(count);
            self.forget_if_idle(buyer);
            return Err(TooManyHolds { max, open });
        }
        count.pending += 1;
        Ok(HoldPlace {
            book: self.clone(),
            buyer: Some(buyer.into()),
        })
    }

    /// A hold of `buyer` was logged.
    pub fn opened(&self, buyer: &str) {
        match self.buyers.get_mut(buyer) {
            Some(mut count) => count.open += 1,
            None => {
                self.buyers.entry(buyer.into()).or_default().open += 1;
            }
        }
    }

    /// A hold of `buyer` was released, expired or sold.
    pub fn ended(&self, buyer: &str) {
        if let Some(mut count) = self.buyers.get_mut(buyer) {
            count.open = count.open.saturating_sub(1);
        }
        self.forget_if_idle(buyer);
    }

    /// Open holds of `buyer`.
    pub fn open_of(&self, buyer: &str) -> u32 {
        self.buyers.get(buyer).map_or(0, |count| count.open)
    }

    /// Buyers with an open or pending hold.
    pub fn buyers(&self) -> usize {
        self.buyers.len()
    }

    fn forget_if_idle(&self, buyer: &str) {
        self.buyers
            .remove_if(buyer, |_, count| count.open == 0 && count.pending == 0);
    }
}

/// A place taken by `HoldBook::try_take`: given back when dropped, or turned
/// into an open hold by `open`.
#[derive(Debug)]
pub struct HoldPlace {
    book: Arc<HoldBook>,
    /// `None` once opened.
    buyer: Option<Box<str>>,
}

impl HoldPlace {
    /// The reservation was logged: the place becomes one of the buyer's open
    /// holds, in one step, so the hold never counts twice.
    pub fn open(mut self) {
        let Some(buyer) = self.buyer.take() else {
            return;
        };
        if let Some(mut count) = self.book.buyers.get_mut(&*buyer) {
            count.pending = count.pending.saturating_sub(1);
            count.open += 1;
        }
    }
}

impl Drop for HoldPlace {
    fn drop(&mut self) {
        let Some(buyer) = self.buyer.take() else {
            return;
        };
        if let Some(mut count) = self.book.buyers.get_mut(&*buyer) {
            count.pending = count.pending.saturating_sub(1);
        }
        self.book.forget_if_idle(&buyer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_and_open_holds_share_the_limit_and_idle_buyers_are_forgotten() {
        let book = HoldBook::new();
        let first = book.try_take("ana", 2).unwrap();
        let second = book.try_take("ana", 2).unwrap();
        assert_eq!(
            book.try_take("ana", 2).unwrap_err(),
            TooManyHolds { max: 2, open: 0 }
        );
        // The first became a hold; the second was refused by its SKU.
        first.open();
        assert_eq!(
            book.try_take("ana", 2).unwrap_err(),
            TooManyHolds { max: 2, open: 1 },
            "an opened place counts once"
        );
        drop(second);
        assert_eq!(book.open_of("ana"), 1);
        let third = book.try_take("ana", 2).unwrap();
        assert_eq!(
            book.try_take("ana", 2).unwrap_err(),
            TooManyHolds { max: 2, open: 1 }
        );
        drop(third);
        book.ended("ana");
        assert_eq!(book.open_of("ana"), 0);
        assert_eq!(
            book.buyers(),
            0,
            "nothing is kept for a buyer holding nothing"
        );
        assert!(book.try_take("bo", 0).is_err());
        assert_eq!(book.buyers(), 0);
    }

    #[test]
    fn concurrent_takers_never_pass_the_limit() {
        let book = HoldBook::new();
        let taken = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(place) = book.try_take("ana", 5) {
                            taken.lock().unwrap().push(place);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.lock().unwrap().len(), 5);
    }
}
