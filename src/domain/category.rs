//! The platform-wide product category tree: names, sibling-unique slugs, and
//! bounded depth. Every change checks first and then applies fully, or changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::ids::{check_line, InvalidField};

pub const NAME_MAX_CHARS: usize = 100;
pub const SLUG_MAX_CHARS: usize = 100;
/// Levels in the tree; a root is at depth 1.
pub const DEPTH_MAX: usize = 6;
pub const CATEGORIES_MAX: usize = 10_000;
/// Children of one category, and roots of the tree.
pub const CHILDREN_MAX: usize = 500;

/// A category's id, allocated by the service that owns the tree.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct CategoryId(pub u64);

impl fmt::Display for CategoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Category {
    pub id: CategoryId,
    /// `None` for a root.
    pub parent: Option<CategoryId>,
    pub name: String,
    /// Unique among the category's siblings; `path_slug` joins them from the root.
    pub slug: String,
}

/// A category with its product counts and its children, for browsing the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryNode {
    pub category: Category,
    /// Products filed directly under this category.
    pub product_count: u64,
    /// Products under this category and all its descendants.
    pub total_count: u64,
    /// Sorted by name, like `CategoryTree::children`.
    pub children: Vec<CategoryNode>,
}

/// Typed refusals; `http/error.rs` maps each to a status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryError {
    #[error("no category {0}")]
    NotFound(CategoryId),
    #[error("invalid category: {}", joined(.0))]
    Invalid(Vec<InvalidField>),
    #[error("category id {0} is already in use")]
    IdTaken(CategoryId),
    #[error("a sibling category already uses the slug {slug:?}")]
    SlugTaken { slug: String },
    #[error("categories nest at most {max} levels deep")]
    TooDeep { max: usize },
    /// Moving the category would put it under itself, or a snapshot holds a
    /// loop through it.
    #[error("category {0} would be its own ancestor")]
    Cycle(CategoryId),
    #[error("the category still holds {children} categories and {products} products")]
    NotEmpty { children: usize, products: u64 },
    #[error("at most {max} {what}")]
    TooMany { max: usize, what: &'static str },
}

fn joined(fields: &[InvalidField]) -> String {
    let texts: Vec<String> = fields.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// The tree: categories by id, plus each parent's children by slug (`None`
/// holds the roots), which is also the sibling-slug index. A parent without
/// children has no entry, so equal trees compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryTree {
    categories: BTreeMap<CategoryId, Category>,
    children: BTreeMap<Option<CategoryId>, BTreeMap<String, CategoryId>>,
}

impl CategoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a tree from a snapshot, checking every rule `create` checks:
    /// valid names and slugs, unique ids, parents that exist, unique sibling
    /// slugs, the bounds, and no cycles.
    pub fn from_categories(categories: Vec<Category>) -> Result<Self, CategoryError> {
        if categories.len() > CATEGORIES_MAX {
            return Err(too_many_categories());
        }
        let mut tree = Self::new();
        let mut errors = Vec::new();
        for category in categories {
            for error in check_fields(&category.name, &category.slug, false) {
                let field = format!("categories[{}].{}", category.id, error.field);
                errors.push(InvalidField::new(field, error.reason));
            }
            let id = category.id;
            if tree.categories.insert(id, category).is_some() {
                return Err(CategoryError::IdTaken(id));
            }
        }
        if !errors.is_empty() {
            return Err(CategoryError::Invalid(errors));
        }
        for category in tree.categories.values() {
            if let Some(parent) = category.parent {
                if parent == category.id {
                    return Err(CategoryError::Cycle(category.id));
                }
                if !tree.categories.contains_key(&parent) {
                    return Err(CategoryError::NotFound(parent));
                }
            }
            let siblings = tree.children.entry(category.parent).or_default();
            if siblings
                .insert(category.slug.clone(), category.id)
                .is_some()
            {
                return Err(CategoryError::SlugTaken {
                    slug: category.slug.clone(),
                });
            }
            if siblings.len() > CHILDREN_MAX {
                return Err(too_many_children());
            }
        }
        tree.check_reachable_within_depth()?;
        Ok(tree)
    }

    /// Walks down from the roots level by level; with every parent present,
    /// a category never reached sits on or below a cycle.
    fn check_reachable_within_depth(&self) -> Result<(), CategoryError> {
        let mut reached = BTreeSet::new();
        let mut level: Vec<CategoryId> = self.child_ids(None).collect();
        let mut depth = 1;
        while !level.is_empty() {
            if depth > DEPTH_MAX {
                return Err(CategoryError::TooDeep { max: DEPTH_MAX });
            }
            reached.extend(level.iter().copied());
            level = level
                .iter()
                .flat_map(|id| self.child_ids(Some(*id)))
                .collect();
            depth += 1;
        }
        let Some(&unreached) = self.categories.keys().find(|id| !reached.contains(id)) else {
            return Ok(());
        };
        // Walking up from it repeats a category only once inside the loop.
        let mut seen = BTreeSet::new();
        let mut at = unreached;
        while seen.insert(at) {
            at = self.get(at).and_then(|c| c.parent).unwrap_or(at);
        }
        Err(CategoryError::Cycle(at))
    }

    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    pub fn get(&self, id: CategoryId) -> Option<&Category> {
        self.categories.get(&id)
    }

    /// Every category, by id: what a snapshot stores.
    pub fn iter(&self) -> impl Iterator<Item = &Category> + '_ {
        self.categories.values()
    }

    fn child_ids(&self, parent: Option<CategoryId>) -> impl Iterator<Item = CategoryId> + '_ {
        self.children
            .get(&parent)
            .into_iter()
            .flat_map(|siblings| siblings.values().copied())
    }

    /// The children of `parent` (`None`: the roots) sorted by name ignoring
    /// case, then by slug; empty for an unknown parent.
    pub fn children(&self, parent: Option<CategoryId>) -> Vec<&Category> {
        let mut children: Vec<&Category> = self
            .child_ids(parent)
            .filter_map(|id| self.categories.get(&id))
            .collect();
        children
            .sort_by_cached_key(|category| (category.name.to_lowercase(), category.slug.clone()));
        children
    }

    /// The ancestors of `id`, root first, without `id` itself.
    pub fn ancestors(&self, id: CategoryId) -> Result<Vec<CategoryId>, CategoryError> {
        let mut at = self.get(id).ok_or(CategoryError::NotFound(id))?.parent;
        let mut chain = Vec::new();
        while let Some(parent) = at {
            chain.push(parent);
            assert!(chain.len() < DEPTH_MAX, "category {id} nests too deep");
            at = self.get(parent).and_then(|category| category.parent);
        }
        chain.reverse();
        Ok(chain)
    }

    /// 1 for a root.
    pub fn depth(&self, id: CategoryId) -> Result<usize, CategoryError> {
        Ok(self.ancestors(id)?.len() + 1)
    }

    /// The slugs from the root down to `id`, joined by `/`: `"root/child/grandchild"`.
    pub fn path_slug(&self, id: CategoryId) -> Result<String, CategoryError> {
        let mut path = self.ancestors(id)?;
        path.push(id);
        let slugs: Vec<&str> = path
            .iter()
            .filter_map(|id| self.get(*id))
            .map(|category| category.slug.as_str())
            .collect();
        Ok(slugs.join("/"))
    }

    /// `id` and everything below it, parents before their children.
    pub fn descendants_and_self(&self, id: CategoryId) -> Result<Vec<CategoryId>, CategoryError> {
        if !self.categories.contains_key(&id) {
            return Err(CategoryError::NotFound(id));
        }
        let mut found = Vec::new();
        let mut stack = vec![id];
        while let Some(at) = stack.pop() {
            found.push(at);
            assert!(found.len() <= self.categories.len(), "category tree loops");
            stack.extend(self.child_ids(Some(at)));
        }
        Ok(found)
    }

    /// Levels from `id` down to its deepest descendant: 1 for a leaf.
    fn height(&self, id: CategoryId) -> usize {
        1 + self
            .child_ids(Some(id))
            .map(|child| self.height(child))
            .max()
            .unwrap_or(0)
    }

    /// The whole tree, roots sorted by name, with each category's own product
    /// count (`counts`) and the total including its descendants.
    pub fn tree_with_counts(&self, counts: &dyn Fn(CategoryId) -> u64) -> Vec<CategoryNode> {
        self.children(None)
            .into_iter()
            .map(|root| self.node(root, counts))
            .collect()
    }

    fn node(&self, category: &Category, counts: &dyn Fn(CategoryId) -> u64) -> CategoryNode {
        let children: Vec<CategoryNode> = self
            .children(Some(category.id))
            .into_iter()
            .map(|child| self.node(child, counts))
            .collect();
        let product_count = counts(category.id);
        let total_count = children.iter().fold(product_count, |total, child| {
            total.saturating_add(child.total_count)
        });
        CategoryNode {
            category: category.clone(),
            product_count,
            total_count,
            children,
        }
    }

    /// Adds a category under `parent` (`None`: a root). Without a `slug`, one
    /// is derived from the name with `slugify`.
    pub fn create(
        &mut self,
        id: CategoryId,
        parent: Option<CategoryId>,
        name: String,
        slug: Option<String>,
    ) -> Result<&Category, CategoryError> {
        let derived = slug.is_none();
        let slug = slug.unwrap_or_else(|| slugify(&name));
        let errors = check_fields(&name, &slug, derived);
        if !errors.is_empty() {
            return Err(CategoryError::Invalid(errors));
        }
        if self.categories.contains_key(&id) {
            return Err(CategoryError::IdTaken(id));
        }
        let depth = match parent {
            Some(parent) => self.depth(parent)? + 1,
            None => 1,
        };
        if self.categories.len() >= CATEGORIES_MAX {
            return Err(too_many_categories());
        }
        self.check_room_under(parent, &slug)?;
        if depth > DEPTH_MAX {
            return Err(CategoryError::TooDeep { max: DEPTH_MAX });
        }
        self.children
            .entry(parent)
            .or_default()
            .insert(slug.clone(), id);
        let category = Category {
            id,
            parent,
            name,
            slug,
        };
        Ok(self.categories.entry(id).or_insert(category))
    }

    /// Whether `parent` can take one more child with `slug`.
    fn check_room_under(
        &self,
        parent: Option<CategoryId>,
        slug: &str,
    ) -> Result<(), CategoryError> {
        let siblings = self.children.get(&parent);
        if siblings.is_some_and(|siblings| siblings.contains_key(slug)) {
            return Err(CategoryError::SlugTaken {
                slug: slug.to_owned(),
            });
        }
        if siblings.is_some_and(|siblings| siblings.len() >= CHILDREN_MAX) {
            return Err(too_many_children());
        }
        Ok(())
    }

    /// Renames a category. Without a `slug` the current one stays, so links
    /// keep working; pass `Some(slugify(&name))` to follow the new name.
    pub fn rename(
        &mut self,
        id: CategoryId,
        name: String,
        slug: Option<String>,
    ) -> Result<&Category, CategoryError> {
        let category = self
            .categories
            .get_mut(&id)
            .ok_or(CategoryError::NotFound(id))?;
        let slug = slug.unwrap_or_else(|| category.slug.clone());
        let errors = check_fields(&name, &slug, false);
        if !errors.is_empty() {
            return Err(CategoryError::Invalid(errors));
        }
        if slug != category.slug {
            // The entry exists: it holds this category.
            let siblings = self.children.entry(category.parent).or_default();
            if siblings.contains_key(&slug) {
                return Err(CategoryError::SlugTaken { slug });
            }
            siblings.remove(&category.slug);
            siblings.insert(slug.clone(), id);
        }
        category.name = name;
        category.slug = slug;
        Ok(category)
    }

    /// Moves a category, with its subtree, under `new_parent` (`None`: to the
    /// roots). Refused under itself or a descendant, and when the subtree's
    /// deepest category would pass `DEPTH_MAX`.
    pub fn move_to(
        &mut self,
        id: CategoryId,
        new_parent: Option<CategoryId>,
    ) -> Result<(), CategoryError> {
        let category = self.get(id).ok_or(CategoryError::NotFound(id))?;
        let (old_parent, slug) = (category.parent, category.slug.clone());
        let new_depth = match new_parent {
            Some(parent) => {
                let ancestors = self.ancestors(parent)?;
                if parent == id || ancestors.contains(&id) {
                    return Err(CategoryError::Cycle(id));
                }
                ancestors.len() + 2
            }
            None => 1,
        };
        if new_parent == old_parent {
            return Ok(());
        }
        self.check_room_under(new_parent, &slug)?;
        if new_depth + self.height(id) - 1 > DEPTH_MAX {
            return Err(CategoryError::TooDeep { max: DEPTH_MAX });
        }
        self.detach(old_parent, &slug);
        self.children
            .entry(new_parent)
            .or_default()
            .insert(slug, id);
        if let Some(category) = self.categories.get_mut(&id) {
            category.parent = new_parent;
        }
        Ok(())
    }

    /// Removes `slug` from `parent`'s children, dropping an emptied entry.
    fn detach(&mut self, parent: Option<CategoryId>, slug: &str) {
        if let Some(siblings) = self.children.get_mut(&parent) {
            siblings.remove(slug);
            if siblings.is_empty() {
                self.children.remove(&parent);
            }
        }
    }

    /// Deletes a category that has no children and, by the caller's count, no
    /// products; returns it.
    pub fn delete(
        &mut self,
        id: CategoryId,
        product_count: u64,
    ) -> Result<Category, CategoryError> {
        if !self.categories.contains_key(&id) {
            return Err(CategoryError::NotFound(id));
        }
        let children = self.children.get(&Some(id)).map_or(0, BTreeMap::len);
        if children > 0 || product_count > 0 {
            return Err(CategoryError::NotEmpty {
                children,
                products: product_count,
            });
        }
        let category = self
            .categories
            .remove(&id)
            .ok_or(CategoryError::NotFound(id))?;
        self.detach(category.parent, &category.slug);
        Ok(category)
    }
}

fn too_many_categories() -> CategoryError {
    CategoryError::TooMany {
        max: CATEGORIES_MAX,
        what: "categories",
    }
}

fn too_many_children() -> CategoryError {
    CategoryError::TooMany {
        max: CHILDREN_MAX,
        what: "children under one parent",
    }
}

/// Checks a name and a slug, reporting every broken rule. `slug_derived` says
/// the slug came from `slugify(name)`, which only ever fails by being empty.
fn check_fields(name: &str, slug: &str, slug_derived: bool) -> Vec<InvalidField> {
    let mut errors = Vec::new();
    let name_valid = match check_line("name", name, NAME_MAX_CHARS) {
        Ok(()) => true,
        Err(error) => {
            errors.push(error);
            false
        }
    };
    if slug_derived {
        if slug.is_empty() && name_valid {
            errors.push(InvalidField::new(
                "slug",
                "the name has no ASCII letters or digits to derive a slug from; give a slug",
            ));
        }
    } else {
        check_slug(slug, &mut errors);
    }
    errors
}

/// A slug is 1..=`SLUG_MAX_CHARS` lower-case ASCII letters, digits and single
/// hyphens, neither starting nor ending with a hyphen.
fn check_slug(slug: &str, errors: &mut Vec<InvalidField>) {
    if slug.is_empty() || slug.chars().count() > SLUG_MAX_CHARS {
        errors.push(InvalidField::new(
            "slug",
            format!("must be 1..={SLUG_MAX_CHARS} characters"),
        ));
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push(InvalidField::new(
            "slug",
            "may contain only lower-case ASCII letters, digits and hyphens",
        ));
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        errors.push(InvalidField::new(
            "slug",
            "must not start or end with a hyphen",
        ));
    }
    if slug.contains("--") {
        errors.push(InvalidField::new(
            "slug",
            "must not contain consecutive hyphens",
        ));
    }
}

/// Derives a slug from a name: lower case, common Latin accents folded to
/// ASCII (`é` to `e`, `ß` to `ss`), other letters dropped, each run of
/// anything else made one hyphen; cut to `SLUG_MAX_CHARS`. Empty when the name
/// has no ASCII letter or digit to keep.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    let mut hyphen_pending = false;
    let mut buffer = [0; 4];
    for c in name.chars().flat_map(char::to_lowercase) {
        let kept: Option<&str> = if c.is_ascii_alphanumeric() {
            Some(c.encode_utf8(&mut buffer))
        } else {
            fold_latin(c)
        };
        match kept {
            Some(text) => {
                let hyphen = usize::from(hyphen_pending && !slug.is_empty());
                if slug.len() + hyphen + text.len() > SLUG_MAX_CHARS {
                    break;
                }
                if hyphen == 1 {
                    slug.push('-');
                }
                slug.push_str(text);
                hyphen_pending = false;
            }
            // Letters and combining marks without an ASCII form are dropped.
            None if c.is_alphanumeric() || is_combining_mark(c) => {}
            None => hyphen_pending = true,
        }
    }
    slug
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036f}')
}

/// The ASCII spelling of a lower-case Latin letter with an accent, if common.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ð' | 'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(raw: u64) -> CategoryId {
        CategoryId(raw)
    }

    fn add(tree: &mut CategoryTree, raw: u64, parent: Option<u64>, name: &str) {
        tree.create(id(raw), parent.map(id), name.into(), None)
            .unwrap();
    }

    /// A chain 1 > 2 > ... > `levels`, each named `level-N`.
    fn chain(levels: u64) -> CategoryTree {
        let mut tree = CategoryTree::new();
        for level in 1..=levels {
            add(
                &mut tree,
                level,
                (level > 1).then(|| level - 1),
                &format!("level {level}"),
            );
        }
        tree
    }

    /// The fields an `Invalid` refusal names.
    fn fields_of(error: CategoryError) -> Vec<String> {
        match error {
            CategoryError::Invalid(fields) => fields.iter().map(|f| f.field.to_string()).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn create_rename_move_and_delete_apply() {
        let mut tree = CategoryTree::new();
        add(&mut tree, 1, None, "Apparel");
        add(&mut tree, 2, Some(1), "T-Shirts & Tops");
        add(&mut tree, 3, None, "Shoes");
        assert_eq!(tree.get(id(2)).unwrap().slug, "t-shirts-tops");
        assert_eq!(tree.path_slug(id(2)), Ok("apparel/t-shirts-tops".into()));

        let renamed = tree.rename(id(2), "Tees".into(), None).unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.slug.as_str()),
            ("Tees", "t-shirts-tops")
        );
        tree.rename(id(2), "Tees".into(), Some("tees".into()))
            .unwrap();
        assert_eq!(tree.path_slug(id(2)), Ok("apparel/tees".into()));

        tree.move_to(id(2), Some(id(3))).unwrap();
        assert_eq!(tree.get(id(2)).unwrap().parent, Some(id(3)));
        assert_eq!(tree.path_slug(id(2)), Ok("shoes/tees".into()));
        assert!(tree.children(Some(id(1))).is_empty());
        tree.move_to(id(2), None).unwrap();
        assert_eq!(tree.depth(id(2)), Ok(1));

        let removed = tree.delete(id(2), 0).unwrap();
        assert_eq!(removed.slug, "tees");
        assert_eq!(tree.get(id(2)), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.delete(id(2), 0), Err(CategoryError::NotFound(id(2))));
    }

    #[test]
    fn create_reports_every_broken_rule_and_refuses_a_used_id() {
        let mut tree = CategoryTree::new();
        let error = tree
            .create(id(1), None, String::new(), Some("Bad--Slug-".into()))
            .unwrap_err();
        let fields = fields_of(error);
        assert_eq!(fields, ["name", "slug", "slug", "slug"]);
        let error = tree.create(id(1), None, "日本".into(), None).unwrap_err();
        assert!(fields_of(error).contains(&"slug".to_owned()));
        let long = "x".repeat(NAME_MAX_CHARS + 1);
        assert!(tree.create(id(1), None, long, None).is_err());
        add(&mut tree, 1, None, "Books");
        assert_eq!(
            tree.create(id(1), None, "Music".into(), None),
            Err(CategoryError::IdTaken(id(1)))
        );
        assert_eq!(
            tree.create(id(2), Some(id(9)), "Music".into(), None),
            Err(CategoryError::NotFound(id(9)))
        );
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn moving_under_itself_or_a_descendant_is_a_cycle_and_changes_nothing() {
        let mut tree = chain(3);
        let before = tree.clone();
        assert_eq!(
            tree.move_to(id(1), Some(id(1))),
            Err(CategoryError::Cycle(id(1)))
        );
        assert_eq!(
            tree.move_to(id(1), Some(id(3))),
            Err(CategoryError::Cycle(id(1)))
        );
        assert_eq!(
            tree.move_to(id(2), Some(id(3))),
            Err(CategoryError::Cycle(id(2)))
        );
        assert_eq!(
            tree.move_to(id(2), Some(id(7))),
            Err(CategoryError::NotFound(id(7)))
        );
        assert_eq!(tree, before);
        tree.move_to(id(3), Some(id(1))).unwrap();
        assert_eq!(tree.depth(id(3)), Ok(2));
    }

    #[test]
    fn depth_is_bounded_on_create_and_when_moving_a_subtree() {
        let mut tree = chain(DEPTH_MAX as u64);
        assert_eq!(tree.depth(id(DEPTH_MAX as u64)), Ok(DEPTH_MAX));
        let before = tree.clone();
        assert_eq!(
            tree.create(id(100), Some(id(DEPTH_MAX as u64)), "Too deep".into(), None),
            Err(CategoryError::TooDeep { max: DEPTH_MAX })
        );
        assert_eq!(tree, before);

        // A root with two levels below it fits under depth 4 but not depth 5.
        add(&mut tree, 200, None, "Other");
        add(&mut tree, 201, Some(200), "Middle");
        add(&mut tree, 202, Some(201), "Bottom");
        let before = tree.clone();
        assert_eq!(
            tree.move_to(id(200), Some(id(4))),
            Err(CategoryError::TooDeep { max: DEPTH_MAX })
        );
        assert_eq!(tree, before);
        tree.move_to(id(200), Some(id(3))).unwrap();
        assert_eq!(tree.depth(id(202)), Ok(DEPTH_MAX));
    }

    #[test]
    fn delete_is_refused_while_children_or_products_remain() {
        let mut tree = chain(2);
        let before = tree.clone();
        assert_eq!(
            tree.delete(id(1), 0),
            Err(CategoryError::NotEmpty {
                children: 1,
                products: 0
            })
        );
        assert_eq!(
            tree.delete(id(2), 3),
            Err(CategoryError::NotEmpty {
                children: 0,
                products: 3
            })
        );
        assert_eq!(tree, before);
        tree.delete(id(2), 0).unwrap();
        tree.delete(id(1), 0).unwrap();
        assert!(tree.is_empty());
        assert_eq!(tree, CategoryTree::new());
    }

    #[test]
    fn slugs_are_unique_among_siblings_but_free_under_other_parents() {
        let mut tree = CategoryTree::new();
        add(&mut tree, 1, None, "Men");
        add(&mut tree, 2, None, "Women");
        add(&mut tree, 3, Some(1), "Shoes");
        add(&mut tree, 4, Some(2), "Shoes");
        let before = tree.clone();
        let taken = CategoryError::SlugTaken {
            slug: "shoes".into(),
        };
        assert_eq!(
            tree.create(id(5), Some(id(1)), "SHOES!".into(), None),
            Err(taken.clone())
        );
        assert_eq!(tree.move_to(id(4), Some(id(1))), Err(taken.clone()));
        add(&mut tree, 6, Some(1), "Boots");
        assert_eq!(
            tree.rename(id(6), "Boots".into(), Some("shoes".into())),
            Err(taken)
        );
        tree.delete(id(6), 0).unwrap();
        assert_eq!(tree, before);
        assert_eq!(tree.path_slug(id(4)), Ok("women/shoes".into()));
        // Renaming to its own slug is no clash.
        tree.rename(id(3), "Shoes".into(), Some("shoes".into()))
            .unwrap();
    }

    #[test]
    fn slugify_folds_case_accents_and_separators() {
        for (name, slug) in [
            ("Home & Garden", "home-garden"),
            ("  T-Shirts -- Tops  ", "t-shirts-tops"),
            ("Café Crème", "cafe-creme"),
            ("Straße", "strasse"),
            ("ÆRØSKØBING", "aeroskobing"),
            ("Cafe\u{301}", "cafe"),
            ("4K TVs", "4k-tvs"),
            ("日本 Books", "books"),
            ("Books日本", "books"),
            ("日本", ""),
            ("!!!", ""),
        ] {
            assert_eq!(slugify(name), slug, "{name:?}");
        }
        let long = slugify(&"ab ".repeat(60));
        assert!(
            long.len() <= SLUG_MAX_CHARS && !long.ends_with('-'),
            "{long}"
        );
        let mut errors = Vec::new();
        check_slug(&slugify(&"ß".repeat(NAME_MAX_CHARS)), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn from_categories_rebuilds_and_rejects_broken_snapshots() {
        let mut tree = chain(3);
        add(&mut tree, 9, Some(1), "Side");
        let snapshot: Vec<Category> = tree.iter().cloned().collect();
        assert_eq!(CategoryTree::from_categories(snapshot.clone()), Ok(tree));

        let mut looped = snapshot.clone();
        looped[0].parent = Some(id(3));
        assert_eq!(
            CategoryTree::from_categories(looped),
            Err(CategoryError::Cycle(id(1)))
        );
        let mut own_parent = snapshot.clone();
        own_parent[3].parent = Some(id(9));
        assert_eq!(
            CategoryTree::from_categories(own_parent),
            Err(CategoryError::Cycle(id(9)))
        );
        let mut orphan = snapshot.clone();
        orphan[1].parent = Some(id(42));
        assert_eq!(
            CategoryTree::from_categories(orphan),
            Err(CategoryError::NotFound(id(42)))
        );
        let mut clash = snapshot.clone();
        clash[3].slug = "level-2".into();
        assert!(matches!(
            CategoryTree::from_categories(clash),
            Err(CategoryError::SlugTaken { .. })
        ));
        let mut twice = snapshot.clone();
        twice.push(snapshot[0].clone());
        assert_eq!(
            CategoryTree::from_categories(twice),
            Err(CategoryError::IdTaken(id(1)))
        );
        let mut bad = snapshot;
        bad[0].slug = "Level 1".into();
        assert_eq!(
            fields_of(CategoryTree::from_categories(bad).unwrap_err()),
            ["categories[1].slug"]
        );
        let deep: Vec<Category> = chain(DEPTH_MAX as u64).iter().cloned().collect();
        let mut too_deep = deep.clone();
        too_deep.push(Category {
            id: id(99),
            parent: Some(id(DEPTH_MAX as u64)),
            name: "Deep".into(),
            slug: "deep".into(),
        });
        assert!(CategoryTree::from_categories(deep).is_ok());
        assert_eq!(
            CategoryTree::from_categories(too_deep),
            Err(CategoryError::TooDeep { max: DEPTH_MAX })
        );
    }

    #[test]
    fn children_per_parent_and_categories_in_all_are_bounded() {
        let mut tree = CategoryTree::new();
        let roots = (CATEGORIES_MAX / CHILDREN_MAX) as u64;
        let mut next = roots;
        for root in 0..roots {
            add(&mut tree, root, None, &format!("root {root}"));
            // Root 0 full; one place left under root 1 once all are made.
            let children = match root {
                0 => CHILDREN_MAX,
                1 => CHILDREN_MAX - 3,
                _ => CHILDREN_MAX - 1,
            };
            for child in 0..children {
                add(&mut tree, next, Some(root), &format!("child {child}"));
                next += 1;
            }
        }
        assert_eq!(tree.len(), CATEGORIES_MAX - 1);
        assert_eq!(
            tree.create(id(next), Some(id(0)), "one more".into(), None),
            Err(CategoryError::TooMany {
                max: CHILDREN_MAX,
                what: "children under one parent"
            })
        );
        add(&mut tree, next, Some(1), "last");
        assert_eq!(
            tree.create(id(next + 1), None, "one more".into(), None),
            Err(CategoryError::TooMany {
                max: CATEGORIES_MAX,
                what: "categories"
            })
        );
        let snapshot: Vec<Category> = tree.iter().cloned().collect();
        assert_eq!(CategoryTree::from_categories(snapshot).as_ref(), Ok(&tree));
    }

    #[test]
    fn ancestors_descendants_and_children_browse_the_tree() {
        let mut tree = chain(3);
        add(&mut tree, 10, Some(1), "Zebra");
        add(&mut tree, 11, Some(1), "Aardvark");
        assert_eq!(tree.ancestors(id(3)), Ok(vec![id(1), id(2)]));
        assert_eq!(tree.ancestors(id(1)), Ok(vec![]));
        let mut below = tree.descendants_and_self(id(1)).unwrap();
        assert_eq!(below[0], id(1));
        below.sort();
        assert_eq!(below, [id(1), id(2), id(3), id(10), id(11)]);
        assert_eq!(tree.descendants_and_self(id(3)), Ok(vec![id(3)]));
        assert_eq!(
            tree.descendants_and_self(id(5)),
            Err(CategoryError::NotFound(id(5)))
        );
        let names: Vec<&str> = tree
            .children(Some(id(1)))
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["Aardvark", "level 2", "Zebra"]);
        assert_eq!(tree.children(Some(id(77))), Vec::<&Category>::new());
    }

    #[test]
    fn tree_with_counts_sums_each_subtree() {
        let mut tree = chain(3);
        add(&mut tree, 10, Some(1), "Side");
        add(&mut tree, 20, None, "Empty");
        let counts = |category: CategoryId| category.0 * 100;
        let roots = tree.tree_with_counts(&counts);
        let summary: Vec<(u64, u64, u64)> = roots
            .iter()
            .map(|n| (n.category.id.0, n.product_count, n.total_count))
            .collect();
        assert_eq!(
            summary,
            [(20, 2_000, 2_000), (1, 100, 100 + 200 + 300 + 1_000)]
        );
        let level_1 = &roots[1];
        let children: Vec<(u64, u64)> = level_1
            .children
            .iter()
            .map(|n| (n.category.id.0, n.total_count))
            .collect();
        assert_eq!(children, [(2, 500), (10, 1_000)]);
        assert_eq!(level_1.children[0].children[0].children, []);
        assert_eq!(
            tree.tree_with_counts(&|_| u64::MAX)[1].total_count,
            u64::MAX
        );
    }

    /// A category an operation aims at, resolved against the tree when it
    /// runs, so most operations meet categories that exist.
    #[derive(Debug, Clone, Copy)]
    enum Target {
        /// The n-th category by id (modulo the count).
        Nth(usize),
        /// The deepest category (the smallest id among equals): grows chains.
        Deepest,
        Missing,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(u64, Option<Target>, usize, Option<usize>),
        Rename(Target, usize, Option<usize>),
        Move(Target, Option<Target>),
        Delete(Target, u64),
    }

    /// Names that clash once slugified, then one without ASCII and an empty
    /// one (drawn less often); slugs valid and invalid.
    const NAMES: [&str; 7] = ["Shoes", "shoes!", "Books", "Toys", "Garden", "日本", ""];
    const NAMES_VALID: usize = 5;
    const SLUGS: [&str; 5] = ["shoes", "books", "a-1", "Bad Slug", "-x"];
    const IDS: u64 = 16;
    const MISSING: CategoryId = CategoryId(IDS + 1);

    fn target() -> impl Strategy<Value = Target> + Clone {
        prop_oneof![
            12 => (0..IDS as usize).prop_map(Target::Nth),
            6 => Just(Target::Deepest),
            1 => Just(Target::Missing),
        ]
    }

    fn name() -> impl Strategy<Value = usize> + Clone {
        prop_oneof![9 => 0..NAMES_VALID, 1 => NAMES_VALID..NAMES.len()]
    }

    fn op() -> impl Strategy<Value = Op> {
        let parent = proptest::option::weighted(0.85, target());
        let slug = proptest::option::weighted(0.2, 0..SLUGS.len());
        prop_oneof![
            6 => (0..IDS, parent.clone(), name(), slug.clone())
                .prop_map(|(id, parent, name, slug)| Op::Create(id, parent, name, slug)),
            1 => (target(), name(), slug).prop_map(|(t, name, slug)| Op::Rename(t, name, slug)),
            3 => (target(), parent).prop_map(|(t, parent)| Op::Move(t, parent)),
            2 => (target(), 0..2u64).prop_map(|(t, products)| Op::Delete(t, products)),
        ]
    }

    fn resolve(tree: &CategoryTree, target: Target) -> CategoryId {
        let found = match target {
            Target::Nth(n) => tree.iter().nth(n % tree.len().max(1)).map(|c| c.id),
            Target::Deepest => tree
                .iter()
                .map(|c| (usize::MAX - tree.depth(c.id).unwrap_or(0), c.id))
                .min()
                .map(|(_, id)| id),
            Target::Missing => None,
        };
        found.unwrap_or(MISSING)
    }

    /// Runs `op`; on success returns the category it changed and the parent
    /// it should now have.
    fn apply(
        tree: &mut CategoryTree,
        op: &Op,
    ) -> Result<(CategoryId, Option<CategoryId>), CategoryError> {
        let name = |n: &usize| NAMES[*n].to_owned();
        let slug = |s: &Option<usize>| s.map(|s| SLUGS[s].to_owned());
        match op {
            Op::Create(raw, parent, n, s) => {
                let parent = parent.map(|p| resolve(tree, p));
                let created = tree.create(id(*raw), parent, name(n), slug(s))?;
                Ok((created.id, parent))
            }
            Op::Rename(target, n, s) => {
                let renamed = tree.rename(resolve(tree, *target), name(n), slug(s))?;
                Ok((renamed.id, renamed.parent))
            }
            Op::Move(target, parent) => {
                let (moved, parent) = (resolve(tree, *target), parent.map(|p| resolve(tree, p)));
                tree.move_to(moved, parent)?;
                Ok((moved, parent))
            }
            Op::Delete(target, products) => {
                let deleted = tree.delete(resolve(tree, *target), *products)?;
                Ok((deleted.id, deleted.parent))
            }
        }
    }

    /// Checks the rules from the categories alone, not trusting the indexes,
    /// then that the indexes are what a rebuild from the categories gives.
    fn check_invariants(tree: &CategoryTree) -> Result<(), TestCaseError> {
        let all: BTreeMap<CategoryId, &Category> = tree.iter().map(|c| (c.id, c)).collect();
        prop_assert_eq!(all.len(), tree.len());
        let mut sibling_slugs = BTreeSet::new();
        for category in all.values() {
            let mut depth = 1;
            let mut at = *category;
            while let Some(parent) = at.parent {
                depth += 1;
                // Also ends a walk round a cycle.
                prop_assert!(
                    depth <= DEPTH_MAX,
                    "{:?} is too deep or on a cycle",
                    category.id
                );
                let found = all.get(&parent);
                prop_assert!(
                    found.is_some(),
                    "{:?} has no parent {:?}",
                    category.id,
                    parent
                );
                at = found.copied().unwrap();
            }
            prop_assert_eq!(tree.depth(category.id), Ok(depth));
            prop_assert!(
                sibling_slugs.insert((category.parent, category.slug.clone())),
                "two children of {:?} use {:?}",
                category.parent,
                category.slug
            );
            prop_assert!(check_fields(&category.name, &category.slug, false).is_empty());
        }
        let rebuilt = CategoryTree::from_categories(tree.iter().cloned().collect());
        prop_assert_eq!(rebuilt.as_ref(), Ok(tree));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// After any sequence of changes every parent exists, nothing loops,
        /// nothing nests past DEPTH_MAX, sibling slugs are unique, and each
        /// refused change left the tree exactly as it was.
        #[test]
        fn random_changes_keep_the_tree_valid_and_refusals_change_nothing(
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut tree = CategoryTree::new();
            for op in &ops {
                let before = tree.clone();
                match apply(&mut tree, op) {
                    Ok((changed, _)) if matches!(op, Op::Delete(..)) => {
                        prop_assert_eq!(tree.get(changed), None);
                        prop_assert_eq!(tree.len() + 1, before.len());
                    }
                    Ok((changed, parent)) => {
                        prop_assert_eq!(tree.get(changed).map(|c| c.parent), Some(parent));
                    }
                    Err(error) => prop_assert_eq!(
                        &tree, &before, "{:?} refused with {} but changed the tree", op, error
                    ),
                }
                check_invariants(&tree)?;
            }
        }
    }
}
