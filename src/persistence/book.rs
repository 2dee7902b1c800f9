//! A durable book beside the WAL: a named map of byte keys to byte values
//! for state that models something outside the engine (the sandbox payment
//! provider's ledger), with a group commit: one thread makes every write so
//! far durable for all callers waiting at once. sled's own `flush_async`
//! runs on its IO pool, which concurrent flushes exhaust until nothing can
//! complete; hence the thread.

use std::sync::mpsc;

use sled::Tree;
use tokio::sync::oneshot;

use super::store::{Store, StoreError};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

#[derive(Clone)]
pub struct Book {
    tree: Tree,
    flush: mpsc::Sender<oneshot::Sender<bool>>,
}

fn start_flusher(
    name: &str,
    tree: Tree,
) -> Result<mpsc::Sender<oneshot::Sender<bool>>, StoreError> {
    let (tx, rx) = mpsc::channel::<oneshot::Sender<bool>>();
    std::thread::Builder::new()
        .name(format!("{name}-flush"))
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                let ok = tree.flush().is_ok();
                for waiter in waiting {
                    let _ = waiter.send(ok);
                }
            }
        })?;
    Ok(tx)
}

impl Book {
    /// Opens the book `name` (a tree of that name) and its flusher thread.
    pub fn open(store: &Store, name: &str) -> Result<Self, StoreError> {
        let tree = store.tree(name)?;
        let flush = start_flusher(name, tree.clone())?;
        Ok(Self { tree, flush })
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Entries whose key starts with `prefix`, in key order, after the key
    /// `after` when given.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<Entry, StoreError>> + 'a {
        let from = match after {
            Some(key) => std::ops::Bound::Excluded(key.to_vec()),
            None => std::ops::Bound::Included(prefix.to_vec()),
        };
        self.tree
            .range::<Vec<u8>, _>((from, std::ops::Bound::Unbounded))
            .take_while(move |item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(prefix))
            })
            .map(|item| {
                let (key, value) = item?;
                Ok((key.to_vec(), value.to_vec()))
            })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes an entry; durable once a later `durable()` answers true.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Makes every write so far durable; false if the disk refused.
    pub async fn durable(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.flush.send(tx).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}
