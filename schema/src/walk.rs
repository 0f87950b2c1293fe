//! The encoder's walk over the state tree: refId assignment, per-ref encoding modes, and
//! the work list that keeps every parent session ahead of its children's.
//!
//! Every ref (schema struct, map, array) carries an [`Ident`]. A walk visits every reachable
//! ref once, depth first, so a parent's operation always introduces a refId before the stream
//! switches to it. What the clients know is derived from the walks, not from reference counts:
//! a ref the previous patch reached is known; one it did not reach was garbage-collected by
//! every client (its refId is retired and never reused).

use std::cell::Cell;
use std::rc::Rc;

use odeon_protocol::codec::encode_int;

use crate::carry::{Carrier, CarryError};

/// `SWITCH_TO_STRUCTURE`.
pub(crate) const SWITCH: u8 = 0xff;
/// Operation codes (`encoding/spec.ts`).
pub(crate) const ADD: u8 = 0x80;
pub(crate) const REPLACE: u8 = 0x00;
pub(crate) const DELETE: u8 = 0x40;
pub(crate) const DELETE_AND_ADD: u8 = 0xc0;
pub(crate) const CLEAR: u8 = 0x0a;

pub(crate) const NO_REF: u32 = u32::MAX;

thread_local! {
    /// Bumped by every tracked mutation; [`crate::StateEncoder::has_changes`] compares it.
    static MUTATIONS: Cell<u64> = const { Cell::new(0) };
    /// Source of walk stamps, unique across encoders.
    static WALKS: Cell<u64> = const { Cell::new(0) };
    /// Source of encoder identities.
    static ENCODERS: Cell<u32> = const { Cell::new(0) };
}

pub(crate) fn bump_mutations() {
    MUTATIONS.with(|m| m.set(m.get().wrapping_add(1)));
}

pub(crate) fn mutations() -> u64 {
    MUTATIONS.with(Cell::get)
}

pub(crate) fn next_encoder_id() -> u32 {
    ENCODERS.with(|e| {
        let id = e.get().wrapping_add(1).max(1);
        e.set(id);
        id
    })
}

fn next_walk() -> u64 {
    WALKS.with(|w| {
        let id = w.get() + 1;
        w.set(id);
        id
    })
}

/// Identity of one ref as the encoder sees it.
///
/// Interior mutability lets a walk assign refIds through shared borrows, so a room that holds
/// a `borrow()` of some node while encoding does not panic.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Ident {
    ref_id: Cell<u32>,
    /// The encoder that assigned `ref_id`; 0 before any.
    owner: Cell<u32>,
    /// The window in which `ref_id` was assigned.
    assigned_in: Cell<u64>,
    /// The last window whose patch reached this ref; 0 if none did.
    last_seen: Cell<u64>,
    /// Window and count of the full states of that window that reached this ref.
    fs_window: Cell<u64>,
    fs_hits: Cell<u32>,
    /// The last walk that visited this ref.
    visit: Cell<u64>,
}

impl Ident {
    /// The refId and the encoder that assigned it: another instance in the same place has
    /// another token once the encoder has seen this one.
    pub(crate) fn token(&self) -> (u32, u32) {
        (self.ref_id.get(), self.owner.get())
    }

    /// Takes a refId carried over from another encoder (live migration): owned by `owner`,
    /// reached by the patch of the window before `window`, not assigned in `window`.
    pub(crate) fn adopt(&self, ref_id: u32, owner: u32, window: u64) {
        self.ref_id.set(ref_id);
        self.owner.set(owner);
        self.assigned_in.set(0);
        self.last_seen.set(window - 1);
        self.fs_window.set(0);
        self.fs_hits.set(0);
    }
}

impl Clone for Ident {
    /// A cloned collection or node is a new ref.
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// How a ref is written in a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Everything, as ADDs: the ref is new to every client (and full states).
    Fresh,
    /// Everything, in a form that is correct whatever a client holds: removals of absent fields,
    /// CLEAR before collections' items. Used when a full state sent mid-window may disagree
    /// with the previous patch.
    Resync,
    /// Only what changed since the previous patch.
    Changes,
}

/// One unit of the depth-first walk.
pub(crate) enum Work {
    Node(Rc<dyn DynNode>),
    Field(Rc<dyn DynNode>, u8),
}

/// The state of one walk (a full state or a patch).
pub struct Cx {
    pub(crate) owner: u32,
    /// The current window: the changes since the previous patch belong to it.
    pub(crate) window: u64,
    /// Full states taken during this window while changes were pending.
    pub(crate) fs_count: u32,
    pub(crate) next_id: u32,
    walk: u64,
    /// A patch walk consumes the window's changes; a full-state walk leaves them.
    pub(crate) patch: bool,
    /// This full-state walk counts in `fs_count` (changes were pending): it records which refs
    /// it reached.
    pub(crate) fs_counted: bool,
    pub(crate) stack: Vec<Work>,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx").field("window", &self.window).field("next_id", &self.next_id).finish()
    }
}

impl Cx {
    pub(crate) fn new(owner: u32) -> Self {
        Self {
            owner,
            window: 1,
            fs_count: 0,
            next_id: 0,
            walk: 0,
            patch: false,
            fs_counted: false,
            stack: Vec::new(),
        }
    }

    pub(crate) fn begin_walk(&mut self, patch: bool) {
        self.walk = next_walk();
        self.patch = patch;
    }

    /// Whether the previous patch reached this ref under this encoder.
    pub(crate) fn known(&self, id: &Ident) -> bool {
        id.owner.get() == self.owner && id.last_seen.get() != 0 && id.last_seen.get() + 1 == self.window
    }

    /// Whether `id` holds a refId that every client or some full state of this window knows
    /// (or that this patch walk already reached).
    fn valid(&self, id: &Ident) -> bool {
        id.owner.get() == self.owner
            && id.ref_id.get() != NO_REF
            && (self.known(id) || id.assigned_in.get() == self.window || id.last_seen.get() == self.window)
    }

    /// The ref's id, assigning a fresh one if it has none or a retired one.
    /// Returns whether it was assigned now (the caller then assigns the ref's children).
    pub(crate) fn ensure(&mut self, id: &Ident) -> bool {
        if self.valid(id) {
            return false;
        }
        id.ref_id.set(self.next_id);
        id.owner.set(self.owner);
        id.assigned_in.set(self.window);
        id.last_seen.set(0);
        self.next_id += 1;
        true
    }

    /// The refId of an ident that [`Cx::ensure`] has seen in this walk.
    pub(crate) fn ref_id(id: &Ident) -> u32 {
        id.ref_id.get()
    }

    /// Marks the ref visited by this walk; false if it already was (a shared ref).
    pub(crate) fn first_visit(&self, id: &Ident) -> bool {
        if id.visit.get() == self.walk {
            return false;
        }
        id.visit.set(self.walk);
        true
    }

    /// How to write this ref, and records the visit for the next window.
    pub(crate) fn mode(&self, id: &Ident) -> Mode {
        if !self.patch {
            if self.fs_counted {
                if id.fs_window.get() != self.window {
                    id.fs_window.set(self.window);
                    id.fs_hits.set(0);
                }
                id.fs_hits.set(id.fs_hits.get() + 1);
            }
            return Mode::Fresh;
        }
        let continuous = self.known(id)
            && (self.fs_count == 0
                || (id.fs_window.get() == self.window && id.fs_hits.get() == self.fs_count));
        id.last_seen.set(self.window);
        if continuous {
            Mode::Changes
        } else if self.fs_count > 0 {
            Mode::Resync
        } else {
            Mode::Fresh
        }
    }

    /// Starts a structure session for `ref_id`; returns the offset to truncate to if it stays empty.
    pub(crate) fn open(out: &mut Vec<u8>, ref_id: u32) -> usize {
        let start = out.len();
        // The decoder starts on the root, so a leading root session needs no switch.
        if !(ref_id == 0 && start == 0) {
            out.push(SWITCH);
            encode_int(out, i64::from(ref_id));
        }
        start
    }

    /// Drops an empty session opened at `start` (header only).
    pub(crate) fn close(out: &mut Vec<u8>, start: usize, ops_start: usize) {
        if out.len() == ops_start {
            out.truncate(start);
        }
    }

    /// Runs the walk from `root` until every reachable ref was visited.
    pub(crate) fn run(&mut self, root: Rc<dyn DynNode>, out: &mut Vec<u8>) {
        self.stack.push(Work::Node(root));
        while let Some(work) = self.stack.pop() {
            match work {
                Work::Node(node) => node.encode(&node, self, out),
                Work::Field(node, field) => node.encode_field(field, self, out),
            }
        }
    }
}

/// A schema struct instance behind a [`crate::Shared`] handle, type-erased for the walk.
#[doc(hidden)]
pub trait DynNode {
    /// The node's identity.
    fn ident(&self) -> &Ident;
    /// Assigns refIds to the node's new children, depth first.
    fn assign_children(&self, cx: &mut Cx);
    /// Writes the node's session and schedules its children.
    fn encode(&self, this: &Rc<dyn DynNode>, cx: &mut Cx, out: &mut Vec<u8>);
    /// Writes the session of the collection in `field` and schedules its children.
    fn encode_field(&self, field: u8, cx: &mut Cx, out: &mut Vec<u8>);
    /// Appends the node as a client's `toJSON()` shows it.
    fn write_json(&self, out: &mut String);
    /// Walks the node and its subtree for a live migration (see [`Carrier`]).
    fn carry(&self, carrier: &mut Carrier<'_>) -> Result<(), CarryError>;
}

/// A handle to a child struct, as a field or a collection item holds it.
#[doc(hidden)]
pub trait ChildRef {
    /// The child's node.
    fn node(&self) -> Rc<dyn DynNode>;
    /// The child's identity.
    fn ident(&self) -> &Ident;
    /// Whether both handles point at the same instance.
    fn same(&self, other: &dyn ChildRef) -> bool;
    /// The instance's address, for identity comparisons.
    fn addr(&self) -> *const ();
}

/// Assigns a child its refId and, if new, the refIds of its subtree.
pub(crate) fn ensure_child(cx: &mut Cx, child: &dyn ChildRef) -> u32 {
    if cx.ensure(child.ident()) {
        child.node().assign_children(cx);
    }
    Cx::ref_id(child.ident())
}

/// A collection (map or array), type-erased for the walk.
#[doc(hidden)]
pub trait Collection {
    /// The collection's identity.
    fn ident(&self) -> &Ident;
    /// Assigns refIds to the collection's new items, depth first.
    fn assign_children(&self, cx: &mut Cx);
    /// Writes the collection's session and schedules its items.
    fn encode(&self, cx: &mut Cx, out: &mut Vec<u8>);
    /// Appends the collection as a client's `toJSON()` shows it.
    fn write_json(&self, out: &mut String);
    /// Walks the collection and its items for a live migration (see [`Carrier`]).
    fn carry(&self, carrier: &mut Carrier<'_>) -> Result<(), CarryError>;
}

/// Assigns a collection its refId and, if new, the refIds of its items.
pub(crate) fn ensure_collection(cx: &mut Cx, coll: &dyn Collection) -> u32 {
    if cx.ensure(coll.ident()) {
        coll.assign_children(cx);
    }
    Cx::ref_id(coll.ident())
}
