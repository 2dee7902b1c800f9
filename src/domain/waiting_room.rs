//! A drop's waiting room: past its admission rate, shoppers get a ticket and
//! are admitted first come, first served; an admission is a pass that lets its
//! shopper reserve for a while. Time is passed in; every table is bounded.

use std::collections::{HashMap, VecDeque};

use super::drop::WaitingRoomSpec;
use super::ids::UserId;

/// Where a shopper stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// May reserve until `pass_expires_at_ms`.
    Admitted {
        ticket: u64,
        pass_expires_at_ms: u64,
    },
    /// `position` 1 is next; `estimated_wait_ms` at the admission rate.
    Waiting {
        ticket: u64,
        position: u64,
        estimated_wait_ms: u64,
    },
    /// The drop sold out (or ended) while the shopper waited.
    Closed { ticket: u64, reason: CloseReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SoldOut,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the waiting room is full")]
    Full,
    #[error("the drop is not open for shoppers")]
    NotOpen(CloseReason),
    #[error("no such ticket")]
    UnknownTicket,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Waiting,
    Admitted { pass_expires_at_ms: u64 },
    Closed(CloseReason),
}

/// The line of one drop. Buyers are account ids.
#[derive(Debug)]
pub struct WaitingRoom {
    spec: WaitingRoomSpec,
    /// Admissions that may still be handed out now (refilled at `admit_per_s`).
    tokens: f64,
    refilled_at_ms: u64,
    /// Tickets waiting, oldest first: (ticket, buyer).
    line: VecDeque<(u64, UserId)>,
    /// Every buyer with a ticket, and where they stand.
    tickets: HashMap<UserId, (u64, Slot)>,
    /// Admissions in ticket order, for expiry: (pass expiry, buyer).
    passes: VecDeque<(u64, UserId)>,
    next_ticket: u64,
    /// The ticket at the head of the line went out after this many admissions.
    admitted_through: u64,
    closed: Option<CloseReason>,
}

impl WaitingRoom {
    pub fn new(spec: WaitingRoomSpec, now_ms: u64) -> Self {
        Self {
            spec,
            tokens: f64::from(spec.admit_per_s),
            refilled_at_ms: now_ms,
            line: VecDeque::new(),
            tickets: HashMap::new(),
            passes: VecDeque::new(),
            next_ticket: 1,
            admitted_through: 0,
            closed: None,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.refilled_at_ms);
        let rate = f64::from(self.spec.admit_per_s);
        self.tokens = (self.tokens + elapsed_ms as f64 * rate / 1000.0).min(rate.max(1.0));
        self.refilled_at_ms = now_ms;
    }

    fn pass_expiry(&self, now_ms: u64) -> u64 {
        now_ms + u64::from(self.spec.pass_ttl_s) * 1000
    }

    /// Joins the line (or answers where the buyer already stands). While
    /// `admitting` (the drop is live), a buyer who arrives to an empty line
    /// while the rate allows is admitted at once; before, everyone waits.
    pub fn join(
        &mut self,
        buyer: UserId,
        admitting: bool,
        now_ms: u64,
    ) -> Result<Standing, QueueError> {
        if let Some(standing) = self.standing(buyer, now_ms) {
            let expired = matches!(standing, Standing::Admitted { pass_expires_at_ms, .. } if pass_expires_at_ms <= now_ms);
            if !expired {
                return Ok(standing);
            }
        }
        if let Some(reason) = self.closed {
            return Err(QueueError::NotOpen(reason));
        }
        self.refill(now_ms);
        let ticket = self.next_ticket;
        if admitting && self.line.is_empty() && self.tokens >= 1.0 {
            self.next_ticket += 1;
            return Ok(self.admit(ticket, buyer, now_ms));
        }
        if self.line.len() >= self.spec.capacity as usize {
            return Err(QueueError::Full);
        }
        self.next_ticket += 1;
        self.line.push_back((ticket, buyer));
        self.tickets.insert(buyer, (ticket, Slot::Waiting));
        Ok(self.waiting(ticket))
    }

    fn waiting(&self, ticket: u64) -> Standing {
        let position = ticket.saturating_sub(self.admitted_through).max(1);
        let rate = u64::from(self.spec.admit_per_s.max(1));
        Standing::Waiting {
            ticket,
            position,
            estimated_wait_ms: position.saturating_sub(1) * 1000 / rate,
        }
    }

    /// Where `buyer` stands, if they hold a ticket.
    pub fn standing(&self, buyer: UserId, _now_ms: u64) -> Option<Standing> {
        let (ticket, slot) = *self.tickets.get(&buyer)?;
        Some(match slot {
            Slot::Waiting => self.waiting(ticket),
            Slot::Admitted { pass_expires_at_ms } => Standing::Admitted {
                ticket,
                pass_expires_at_ms,
            },
            Slot::Closed(reason) => Standing::Closed { ticket, reason },
        })
    }

    /// Whether `buyer` holds a pass valid at `now_ms`.
    pub fn admitted(&self, buyer: UserId, now_ms: u64) -> bool {
        matches!(
            self.tickets.get(&buyer),
            Some((_, Slot::Admitted { pass_expires_at_ms })) if *pass_expires_at_ms > now_ms
        )
    }

    /// Admits from the head of the line as the rate allows and forgets expired
    /// passes. Returns the buyers admitted now, in ticket order.
    pub fn advance(&mut self, now_ms: u64) -> Vec<(UserId, Standing)> {
        let mut admitted = Vec::new();
        while let Some(&(expires, buyer)) = self.passes.front() {
            if expires > now_ms {
                break;
            }
            self.passes.pop_front();
            if matches!(self.tickets.get(&buyer), Some((_, Slot::Admitted { pass_expires_at_ms })) if *pass_expires_at_ms == expires)
            {
                self.tickets.remove(&buyer);
            }
        }
        if self.closed.is_some() {
            return admitted;
        }
        self.refill(now_ms);
        while self.tokens >= 1.0 {
            let Some((ticket, buyer)) = self.line.pop_front() else {
                break;
            };
            let standing = self.admit(ticket, buyer, now_ms);
            admitted.push((buyer, standing));
        }
        admitted
    }

    /// Spends one admission on `ticket`: its buyer gets a pass.
    fn admit(&mut self, ticket: u64, buyer: UserId, now_ms: u64) -> Standing {
        self.tokens -= 1.0;
        self.admitted_through = ticket;
        let pass_expires_at_ms = self.pass_expiry(now_ms);
        self.tickets
            .insert(buyer, (ticket, Slot::Admitted { pass_expires_at_ms }));
        self.passes.push_back((pass_expires_at_ms, buyer));
        Standing::Admitted {
            ticket,
            pass_expires_at_ms,
        }
    }

    /// The drop sold out or ended: nobody else is admitted, and everyone still
    /// waiting is told at once (returned in ticket order).
    pub fn close(&mut self, reason: CloseReason) -> Vec<(UserId, Standing)> {
        self.closed = Some(reason);
        self.line
            .drain(..)
            .map(|(ticket, buyer)| {
                self.tickets.insert(buyer, (ticket, Slot::Closed(reason)));
                (buyer, Standing::Closed { ticket, reason })
            })
            .collect()
    }

    /// Stock came back (expiries): the line opens again for newcomers.
    pub fn reopen(&mut self) {
        if self.closed == Some(CloseReason::SoldOut) {
            self.closed = None;
            self.tickets
                .retain(|_, (_, slot)| !matches!(slot, Slot::Closed(_)));
        }
    }

    pub fn waiting_count(&self) -> usize {
        self.line.len()
    }

    /// Buyers remembered (waiting, admitted or told it closed).
    pub fn tickets_count(&self) -> usize {
        self.tickets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: WaitingRoomSpec = WaitingRoomSpec {
        admit_per_s: 2,
        pass_ttl_s: 60,
        capacity: 100,
    };

    #[test]
    fn shoppers_past_the_rate_wait_and_are_admitted_in_arrival_order() {
        let mut room = WaitingRoom::new(SPEC, 0);
        assert!(matches!(
            room.join(UserId(1), true, 0),
            Ok(Standing::Admitted { ticket: 1, .. })
        ));
        assert!(matches!(
            room.join(UserId(2), true, 0),
            Ok(Standing::Admitted { ticket: 2, .. })
        ));
        for buyer in 3..=8 {
            assert!(matches!(
                room.join(UserId(buyer), true, 0),
                Ok(Standing::Waiting { .. })
            ));
        }
        assert_eq!(
            room.standing(UserId(5), 0),
            Some(Standing::Waiting {
                ticket: 5,
                position: 3,
                estimated_wait_ms: 1_000
            })
        );
        let mut order = Vec::new();
        for second in 1..=3 {
            order.extend(room.advance(second * 1000).into_iter().map(|(b, _)| b.0));
        }
        assert_eq!(order, [3, 4, 5, 6, 7, 8]);
        assert!(room.admitted(UserId(8), 3_000));
        assert!(!room.admitted(UserId(8), 63_000), "the pass expires");
        room.advance(63_000);
        assert_eq!(room.tickets_count(), 0, "expired passes are forgotten");
    }

    #[test]
    fn joining_twice_keeps_the_ticket() {
        let mut room = WaitingRoom::new(SPEC, 0);
        room.join(UserId(1), true, 0).unwrap();
        room.join(UserId(2), true, 0).unwrap();
        let first = room.join(UserId(3), true, 0).unwrap();
        assert_eq!(room.join(UserId(3), true, 10).unwrap(), first);
        assert_eq!(room.waiting_count(), 1);
    }

    #[test]
    fn selling_out_tells_everyone_waiting_at_once() {
        let mut room = WaitingRoom::new(SPEC, 0);
        for buyer in 1..=5 {
            room.join(UserId(buyer), true, 0).unwrap();
        }
        let told = room.close(CloseReason::SoldOut);
        assert_eq!(told.iter().map(|(b, _)| b.0).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(room.advance(10_000).is_empty());
        assert_eq!(
            room.join(UserId(9), true, 10_000),
            Err(QueueError::NotOpen(CloseReason::SoldOut))
        );
        assert!(matches!(
            room.standing(UserId(4), 0),
            Some(Standing::Closed { .. })
        ));
        room.reopen();
        assert!(room.join(UserId(9), true, 10_000).is_ok());
    }

    #[test]
    fn the_line_is_bounded() {
        let spec = WaitingRoomSpec {
            admit_per_s: 1,
            pass_ttl_s: 1,
            capacity: 3,
        };
        let mut room = WaitingRoom::new(spec, 0);
        room.join(UserId(0), true, 0).unwrap();
        for buyer in 1..=3 {
            room.join(UserId(buyer), true, 0).unwrap();
        }
        assert_eq!(room.join(UserId(4), true, 0), Err(QueueError::Full));
    }
}
