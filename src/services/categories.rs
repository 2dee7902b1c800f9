//! The category service: the platform-wide category tree that platform
//! admins create, rename, move and delete, and how many products are filed
//! under each category. A create, rename or move is logged and durable
//! before the tree shows it; a delete leaves the tree at once (so nothing
//! is filed under it meanwhile), then answers once durable. The rules are
//! `domain::category`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::domain::category::{Category, CategoryError, CategoryId, CategoryNode, CategoryTree};
use crate::persistence::{self, EntityKey, RecordBody, SnapshotBody, WalHandle, WalRecord};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoriesError {
    #[error(transparent)]
    Rule(#[from] CategoryError),
    #[error("the engine cannot serve this request now")]
    Unavailable,
}

/// What a product names as its category: the decimal id of a category, or
/// a label that files it nowhere (text written before categories existed).
pub fn category_of(text: &str) -> Option<CategoryId> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits past u64 name no category: id 0 is never allocated.
    Some(CategoryId(text.parse().unwrap_or(0)))
}

/// A change to the tree, checked on a copy before it is logged.
enum Change {
    Create {
        parent: Option<CategoryId>,
        name: String,
        slug: Option<String>,
    },
    /// A new name (with its slug, if given), a new parent, or both: one
    /// record, so both take effect or neither.
    Update {
        id: CategoryId,
        rename: Option<(String, Option<String>)>,
        parent: Option<Option<CategoryId>>,
    },
}

#[derive(Default)]
struct State {
    tree: CategoryTree,
    /// Products filed directly under each category (no entry at zero).
    filed: HashMap<CategoryId, u64>,
}

pub struct Categories {
    wal: WalHandle,
    state: RwLock<State>,
    /// One change at a time, from its check to its publication.
    writing: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

impl Categories {
    /// The service over the recovered categories (checked as a whole).
    pub fn new(recovered: Vec<Category>, wal: WalHandle) -> Result<Arc<Self>, CategoryError> {
        let next_id = recovered.iter().map(|c| c.id.0).max().unwrap_or(0) + 1;
        let tree = CategoryTree::from_categories(recovered)?;
        Ok(Arc::new(Self {
            wal,
            state: RwLock::new(State {
                tree,
                filed: HashMap::new(),
            }),
            writing: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(next_id),
        }))
    }

    /// The whole tree with each category's product counts.
    pub fn tree(&self) -> Vec<CategoryNode> {
        let state = self.state.read();
        state
            .tree
            .tree_with_counts(&|id| state.filed.get(&id).copied().unwrap_or(0))
    }

    pub fn get(&self, id: CategoryId) -> Option<Category> {
        self.state.read().tree.get(id).cloned()
    }

    /// The slugs from the root down to `id`, joined by `/`.
    pub fn path_slug(&self, id: CategoryId) -> Result<String, CategoryError> {
        self.state.read().tree.path_slug(id)
    }

    /// `id` and every category below it (what browsing a category covers).
    pub fn descendants_and_self(&self, id: CategoryId) -> Result<Vec<CategoryId>, CategoryError> {
        self.state.read().tree.descendants_and_self(id)
    }

    pub fn len(&self) -> usize {
        self.state.read().tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves one product's filing from `from` to `to` (either `None`: filed
    /// nowhere); refused, changing nothing, when `to` is no category.
    pub fn refile(
        &self,
        from: Option<CategoryId>,
        to: Option<CategoryId>,
    ) -> Result<(), CategoryError> {
        if from == to {
            return Ok(());
        }
        let mut state = self.state.write();
        if let Some(to) = to {
            if state.tree.get(to).is_none() {
                return Err(CategoryError::NotFound(to));
            }
            *state.filed.entry(to).or_default() += 1;
        }
        if let Some(from) = from {
            if let Some(count) = state.filed.get_mut(&from) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.filed.remove(&from);
                }
            }
        }
        Ok(())
    }

    /// Adds a category under `parent` (`None`: a root); without a slug one
    /// is derived from the name.
    pub async fn create(
        &self,
        parent: Option<CategoryId>,
        name: String,
        slug: Option<String>,
    ) -> Result<Category, CategoriesError> {
        self.change(Change::Create { parent, name, slug }).await
    }

    /// Renames a category (`rename`: its name and, if given, its slug;
    /// without one the slug stays) and moves it with its subtree under
    /// `parent` (`Some(None)`: to the roots); both or neither.
    pub async fn update(
        &self,
        id: CategoryId,
        rename: Option<(String, Option<String>)>,
        parent: Option<Option<CategoryId>>,
    ) -> Result<Category, CategoriesError> {
        self.change(Change::Update { id, rename, parent }).await
    }

    /// Deletes a category with no children and no products filed under it.
    pub async fn delete(&self, id: CategoryId) -> Result<Category, CategoriesError> {
        let _writing = self.writing.lock().await;
        let deleted = {
            let mut state = self.state.write();
            let filed = state.filed.get(&id).copied().unwrap_or(0);
            state.tree.delete(id, filed)?
        };
        let (tx, rx) = oneshot::channel();
        let ack: persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        self.wal
            .forget(EntityKey::Category(id.0), Some(ack))
            .map_err(|_| CategoriesError::Unavailable)?;
        rx.await.map_err(|_| CategoriesError::Unavailable)?;
        metrics::counter!("flashdrop_category_changes_total", "change" => "delete").increment(1);
        Ok(deleted)
    }

    /// Checks `change` on a copy of the tree, logs the category it makes,
    /// and applies it to the tree once durable.
    async fn change(&self, change: Change) -> Result<Category, CategoriesError> {
        let _writing = self.writing.lock().await;
        let mut next = self.state.read().tree.clone();
        let (category, what) = match change {
            Change::Create { parent, name, slug } => {
                let id = CategoryId(self.next_id.load(Ordering::Relaxed));
                (next.create(id, parent, name, slug)?.clone(), "create")
            }
            Change::Update { id, rename, parent } => {
                if let Some((name, slug)) = rename {
                    next.rename(id, name, slug)?;
                }
                if let Some(parent) = parent {
                    next.move_to(id, parent)?;
                }
                let changed = next.get(id).cloned().ok_or(CategoryError::NotFound(id))?;
                (changed, "update")
            }
        };
        self.log(&category)?
            .await
            .map_err(|_| CategoriesError::Unavailable)?;
        if what == "create" {
            self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        self.state.write().tree = next;
        metrics::counter!("flashdrop_category_changes_total", "change" => what).increment(1);
        Ok(category)
    }

    /// Queues a category's record and its snapshot (the record carries its
    /// full state); the receiver fires once the record is durable.
    fn log(&self, category: &Category) -> Result<oneshot::Receiver<()>, CategoriesError> {
        let (tx, rx) = oneshot::channel();
        let entity = EntityKey::Category(category.id.0);
        let ack: persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        self.wal
            .append(
                &WalRecord {
                    entity,
                    body: RecordBody::Category(Box::new(category.clone())),
                },
                Some(ack),
            )
            .and_then(|()| {
                self.wal
                    .snapshot(entity, &SnapshotBody::Category(category.clone()), None)
            })
            .map_err(|_| CategoriesError::Unavailable)?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_is_named_by_its_decimal_id_and_a_label_names_none() {
        assert_eq!(category_of("12"), Some(CategoryId(12)));
        assert_eq!(category_of(""), None);
        assert_eq!(category_of("apparel"), None);
        assert_eq!(category_of("12a"), None);
        assert_eq!(category_of("-3"), None);
        assert_eq!(
            category_of("99999999999999999999999"),
            Some(CategoryId(0)),
            "digits past u64 name the id no category has"
        );
    }
}
