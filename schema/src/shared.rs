//! [`Shared`], the handle that puts a struct instance into the state, and [`Tracked`], the
//! guard its generated `*Mut` type wraps so setters record what changed.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;

use odeon_protocol::codec::encode_int;

use crate::Schema;
use crate::carry::{Carrier, CarryError, Segment};
use crate::field::{Field, FieldRef};
use crate::snapshot::Snapshot;
use crate::value::write_json_string;
use crate::walk::{
    ADD, ChildRef, Cx, DELETE, DELETE_AND_ADD, DynNode, Ident, Mode, NO_REF, Work, bump_mutations,
    ensure_child, ensure_collection,
};

/// A struct instance that is part of the state: the root, a child in a field, or an item of a
/// collection.
///
/// Cloning the handle shares the instance: a handle placed twice in the state is the same
/// object on every client (one refId, counted twice), and a change made through either place
/// is seen through both. [`Shared::new`] (or `.into()`) wraps a fresh instance.
///
/// Read with [`borrow`](Shared::borrow); change with [`borrow_mut`](Shared::borrow_mut), which
/// returns the struct's generated `*Mut` type whose setters record the change. An instance may
/// sit in one state only, and the state must not contain cycles.
pub struct Shared<T>(Rc<NodeBox<T>>);

pub(crate) struct NodeBox<T> {
    ident: Ident,
    track: StructTrack,
    value: RefCell<T>,
}

/// Per-field changes of one struct instance since the previous patch.
#[derive(Debug, Default)]
pub(crate) struct StructTrack {
    /// Fields set since the previous patch (bit = field index).
    dirty: Cell<u64>,
    /// Optional fields unset since the previous patch; set again they go out as DELETE_AND_ADD.
    deleted: Cell<u64>,
    /// For ref fields: the refId the previous patch left in the field (`NO_REF` for none).
    known: RefCell<Vec<u32>>,
    /// The fields as they were when write access was handed out (`taken` until compared).
    snapshot: RefCell<Snapshot>,
    taken: Cell<bool>,
}

impl StructTrack {
    /// Write access to the whole struct is handed out: remembers its fields, unless they are
    /// remembered already since the encoder last reached the struct.
    fn touch<T: Schema>(&self, value: &T) {
        if !self.taken.replace(true) {
            self.snapshot.borrow_mut().record(value);
        }
    }

    /// Marks the fields that differ from what [`StructTrack::touch`] remembered as set, as
    /// their setters would have.
    fn settle<T: Schema>(&self, value: &T) {
        if !self.taken.replace(false) {
            return;
        }
        let (changed, unset) = self.snapshot.borrow().changes(value);
        if changed != 0 {
            self.dirty.set(self.dirty.get() | changed);
            self.deleted.set(self.deleted.get() | unset);
            bump_mutations();
        }
    }
}

impl<T: Schema> Shared<T> {
    /// Wraps a struct instance in a new handle.
    pub fn new(value: T) -> Self {
        Self(Rc::new(NodeBox {
            ident: Ident::default(),
            track: StructTrack::default(),
            value: RefCell::new(value),
        }))
    }

    /// Reads the instance.
    ///
    /// # Panics
    ///
    /// If the instance is being changed through [`borrow_mut`](Shared::borrow_mut).
    pub fn borrow(&self) -> Ref<'_, T> {
        self.0.value.borrow()
    }

    /// Changes the instance through its generated `*Mut` type (e.g. `PlayerMut` for `Player`),
    /// whose setters record what they change for the next patch.
    ///
    /// # Panics
    ///
    /// If the instance is already borrowed.
    pub fn borrow_mut(&self) -> T::Mut<'_> {
        T::__wrap(Tracked { value: self.0.value.borrow_mut(), track: &self.0.track })
    }

    /// Whether two handles point at the same instance.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Rc::ptr_eq(&a.0, &b.0)
    }

    pub(crate) fn node(&self) -> Rc<dyn DynNode> {
        self.0.clone()
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.0.ident
    }

    /// Exchanges the instance's value with `value`, which then is the instance as the caller
    /// changes it, plain; its fields are remembered so [`Shared::attach`] finds what changed.
    pub(crate) fn detach(&self, value: &mut T) {
        std::mem::swap(&mut *self.0.value.borrow_mut(), value);
        self.0.track.touch(value);
    }

    /// Puts a value taken out with [`Shared::detach`] back, and records what changed in it.
    pub(crate) fn attach(&self, value: &mut T) {
        self.0.track.settle(value);
        std::mem::swap(&mut *self.0.value.borrow_mut(), value);
    }
}

impl<T> Shared<T> {
    /// Reads the instance unless it is being changed.
    pub(crate) fn try_borrow(&self) -> Option<Ref<'_, T>> {
        self.0.value.try_borrow().ok()
    }
}

impl<T> Clone for Shared<T> {
    /// Another handle to the same instance.
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Schema> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: Schema + Default> Default for Shared<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.value.try_borrow() {
            Ok(value) => value.fmt(f),
            Err(_) => f.write_str("Shared(<borrowed>)"),
        }
    }
}

impl<T: Schema> ChildRef for Shared<T> {
    fn node(&self) -> Rc<dyn DynNode> {
        self.0.clone()
    }
    fn ident(&self) -> &Ident {
        &self.0.ident
    }
    fn same(&self, other: &dyn ChildRef) -> bool {
        std::ptr::eq(self.addr(), other.addr())
    }
    fn addr(&self) -> *const () {
        Rc::as_ptr(&self.0).cast()
    }
}

/// Write access to one struct instance, wrapped by the struct's generated `*Mut` type.
///
/// The generated setters go through it; room code does not use it directly.
pub struct Tracked<'a, T> {
    value: RefMut<'a, T>,
    track: &'a StructTrack,
}

impl<T> fmt::Debug for Tracked<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tracked")
    }
}

impl<'a, T> Tracked<'a, T> {
    /// The instance.
    #[doc(hidden)]
    pub fn __get(&self) -> &T {
        &self.value
    }

    /// The instance, for fields that track themselves (collections) or are not synchronised.
    #[doc(hidden)]
    pub fn __get_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The instance to change in place: the fields that differ when the encoder next reaches
    /// it count as set (what `DerefMut` on the generated `*Mut` type returns).
    #[doc(hidden)]
    pub fn __touch(&mut self) -> &mut T
    where
        T: Schema,
    {
        self.track.touch(&*self.value);
        bump_mutations();
        &mut self.value
    }

    /// Assigns a field and records the change unless the value is the same.
    #[doc(hidden)]
    pub fn __set<F: Field>(&mut self, index: u8, slot: impl FnOnce(&mut T) -> &mut F, new: F) {
        let slot = slot(&mut self.value);
        if slot.unchanged(&new) {
            return;
        }
        *slot = new;
        let bit = 1u64 << index;
        self.track.dirty.set(self.track.dirty.get() | bit);
        if !slot.is_set() {
            self.track.deleted.set(self.track.deleted.get() | bit);
        }
        bump_mutations();
    }
}

impl<T: Schema> DynNode for NodeBox<T> {
    fn ident(&self) -> &Ident {
        &self.ident
    }

    fn assign_children(&self, cx: &mut Cx) {
        let value = self.value.borrow();
        for i in 0..T::__FIELDS.len() as u8 {
            match value.__field(i) {
                FieldRef::Child(Some(child)) => _ = ensure_child(cx, child),
                FieldRef::Collection(coll) => _ = ensure_collection(cx, coll),
                _ => {}
            }
        }
    }

    fn encode(&self, this: &Rc<dyn DynNode>, cx: &mut Cx, out: &mut Vec<u8>) {
        if !cx.first_visit(&self.ident) {
            return;
        }
        let mode = cx.mode(&self.ident);
        let value = self.value.borrow();
        self.track.settle(&*value);
        let fields = T::__FIELDS.len();
        let mut refs = [NO_REF; 64];
        for (i, slot) in refs.iter_mut().enumerate().take(fields) {
            *slot = match value.__field(i as u8) {
                FieldRef::Child(Some(child)) => ensure_child(cx, child),
                FieldRef::Collection(coll) => ensure_collection(cx, coll),
                _ => NO_REF,
            };
        }

        let start = Cx::open(out, Cx::ref_id(&self.ident));
        let ops_start = out.len();
        let dirty = self.track.dirty.get();
        let deleted = self.track.deleted.get();
        let mut known = self.track.known.borrow_mut();
        known.resize(fields, NO_REF);
        for i in 0..fields {
            let bit = 1u64 << i;
            let index = i as u8;
            match value.__field(index) {
                FieldRef::Prim(prim) => {
                    let write = match mode {
                        Mode::Fresh => prim.is_some(),
                        Mode::Resync => true,
                        Mode::Changes => dirty & bit != 0,
                    };
                    match prim {
                        _ if !write => {}
                        Some(prim) => {
                            let op = if mode == Mode::Changes && deleted & bit != 0 {
                                DELETE_AND_ADD
                            } else {
                                ADD
                            };
                            out.push(op | index);
                            prim.encode(out);
                        }
                        None => out.push(DELETE | index),
                    }
                }
                FieldRef::Child(_) | FieldRef::Collection(_) => {
                    let current = refs[i];
                    let previous = known[i];
                    let op = match mode {
                        Mode::Fresh => (current != NO_REF).then_some(ADD),
                        Mode::Resync => Some(if current == NO_REF { DELETE } else { DELETE_AND_ADD }),
                        // A full state taken mid-window may hold another instance in the field.
                        Mode::Changes if current != previous || (dirty & bit != 0 && cx.fs_count > 0) => {
                            Some(if current == NO_REF {
                                DELETE
                            } else if previous == NO_REF && cx.fs_count == 0 {
                                ADD
                            } else {
                                DELETE_AND_ADD
                            })
                        }
                        Mode::Changes => None,
                    };
                    if let Some(op) = op {
                        out.push(op | index);
                        if op != DELETE {
                            encode_int(out, i64::from(current));
                        }
                    }
                    if cx.patch {
                        known[i] = current;
                    }
                }
            }
        }
        Cx::close(out, start, ops_start);
        if cx.patch {
            self.track.dirty.set(0);
            self.track.deleted.set(0);
        }

        for i in (0..fields).rev() {
            match value.__field(i as u8) {
                FieldRef::Child(Some(child)) => cx.stack.push(Work::Node(child.node())),
                FieldRef::Collection(_) => cx.stack.push(Work::Field(this.clone(), i as u8)),
                _ => {}
            }
        }
    }

    fn encode_field(&self, field: u8, cx: &mut Cx, out: &mut Vec<u8>) {
        let value = self.value.borrow();
        if let FieldRef::Collection(coll) = value.__field(field) {
            coll.encode(cx, out);
        }
    }

    fn write_json(&self, out: &mut String) {
        let value = self.value.borrow();
        write_struct_json(&*value, out);
    }

    fn carry(&self, carrier: &mut Carrier<'_>) -> Result<(), CarryError> {
        if !carrier.enter(&self.ident, T::__FIELDS)? {
            return Ok(());
        }
        self.track.settle(&*self.value.borrow());
        carrier.clean(self.track.dirty.get() == 0 && self.track.deleted.get() == 0)?;
        let value = self.value.borrow();
        // What the previous patch left in each ref field: the children's refIds.
        let mut known = vec![NO_REF; T::__FIELDS.len()];
        for (i, slot) in known.iter_mut().enumerate() {
            let index = i as u8;
            match value.__field(index) {
                FieldRef::Child(Some(child)) => {
                    carrier.descend(Segment::Field(index), |c| child.node().carry(c))?;
                    *slot = Cx::ref_id(child.ident());
                }
                FieldRef::Collection(coll) => {
                    carrier.descend(Segment::Field(index), |c| coll.carry(c))?;
                    *slot = Cx::ref_id(coll.ident());
                }
                _ => {}
            }
        }
        if carrier.adopting() {
            self.track.dirty.set(0);
            self.track.deleted.set(0);
            *self.track.known.borrow_mut() = known;
        }
        Ok(())
    }
}

/// Appends a struct as a client's `toJSON()` shows it: unset fields are left out.
pub(crate) fn write_struct_json<T: Schema>(value: &T, out: &mut String) {
    out.push('{');
    let mut first = true;
    for (i, name) in T::__FIELDS.iter().enumerate() {
        let field = value.__field(i as u8);
        let present = match &field {
            FieldRef::Prim(p) => p.is_some(),
            FieldRef::Child(c) => c.is_some(),
            FieldRef::Collection(_) => true,
        };
        if !present {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_json_string(out, name);
        out.push(':');
        match field {
            FieldRef::Prim(Some(p)) => p.write_json(out),
            FieldRef::Child(Some(c)) => c.node().write_json(out),
            FieldRef::Collection(c) => c.write_json(out),
            _ => {}
        }
    }
    out.push('}');
}
