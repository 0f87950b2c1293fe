//! [`Guest`]: one sandboxed instance of a plugin version and the calls into it, each bounded in
//! time (epoch deadline) and memory (the store's limiter).

use std::sync::Arc;
use std::time::Duration;

use odeon_protocol::abi::{
    self, AuthDecision, AuthRequest, Batch, Effects, Manifest, MigrateIn, MigrateInResult, MigrateOut,
};
use wasmtime::{InstancePre, Memory, Store, Trap, TypedFunc, UpdateDeadline};

use super::{EPOCH_TICK, GuestError, GuestLimits, MAX_EFFECTS_PER_CALL};
use crate::imports::RoomEnv;

/// A wasm page.
const PAGE: usize = 64 << 10;

/// A guest instance's memory between two calls, sparse: what moves a room to another instance of
/// the same version, on this host or another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestImage {
    /// Memory size in 64 KiB pages.
    pub size: u32,
    /// The pages that are not all zero, by index, in order.
    pub pages: Vec<(u32, serde_bytes::ByteBuf)>,
}

/// One sandboxed guest instance with its own `Store`. Dropping it frees the instance slot.
pub struct Guest {
    store: Store<RoomEnv>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    abi_version: TypedFunc<(), i32>,
    manifest: TypedFunc<(), i64>,
    auth: TypedFunc<(i32, i32), i64>,
    events: TypedFunc<(i32, i32), i64>,
    /// Live migration's exports, absent from modules built before it.
    migrate_out: Option<TypedFunc<(), i64>>,
    migrate_in: Option<TypedFunc<(i32, i32), i64>>,
    limits: GuestLimits,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest").field("memory_bytes", &self.memory.data_size(&self.store)).finish()
    }
}

impl Guest {
    pub(super) async fn instantiate(
        pre: &InstancePre<RoomEnv>,
        tag: Arc<str>,
        limits: GuestLimits,
    ) -> Result<Self, GuestError> {
        let mut store = Store::new(pre.module().engine(), RoomEnv::new(tag, limits.memory_bytes));
        store.limiter(|env| &mut env.limiter);
        // At every epoch tick a running guest yields its worker to other tasks (sockets, other
        // rooms) and resumes; once its budget is spent the call is interrupted.
        store.epoch_deadline_callback(|mut ctx| {
            let env = ctx.data_mut();
            if env.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            env.ticks_left -= 1;
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        arm(&mut store, limits.create_deadline);
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("maximum concurrent") || msg.contains("pooling") {
                GuestError::Capacity(msg)
            } else {
                classify(&e, &store, limits, limits.create_deadline)
            }
        })?;
        let missing = |name: &str| GuestError::Abi(format!("missing export {name}"));
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| missing("memory"))?;
        store.data_mut().memory = Some(memory);
        let func = |store: &mut Store<RoomEnv>, name: &str| {
            instance.get_func(&mut *store, name).ok_or_else(|| missing(name))
        };
        let typed_err = |e: wasmtime::Error| GuestError::Abi(format!("{e:#}"));
        let alloc = func(&mut store, abi::exports::ALLOC)?.typed(&store).map_err(typed_err)?;
        let abi_version = func(&mut store, abi::exports::ABI_VERSION)?.typed(&store).map_err(typed_err)?;
        let manifest = func(&mut store, abi::exports::MANIFEST)?.typed(&store).map_err(typed_err)?;
        let auth = func(&mut store, abi::exports::AUTH)?.typed(&store).map_err(typed_err)?;
        let events = func(&mut store, abi::exports::EVENTS)?.typed(&store).map_err(typed_err)?;
        let migrate_out = match instance.get_func(&mut store, abi::exports::MIGRATE_OUT) {
            Some(f) => Some(f.typed(&store).map_err(typed_err)?),
            None => None,
        };
        let migrate_in = match instance.get_func(&mut store, abi::exports::MIGRATE_IN) {
            Some(f) => Some(f.typed(&store).map_err(typed_err)?),
            None => None,
        };
        Ok(Self {
            store,
            memory,
            alloc,
            abi_version,
            manifest,
            auth,
            events,
            migrate_out,
            migrate_in,
            limits,
        })
    }

    /// Delivers a batch of events and returns the room's effects.
    pub async fn events(&mut self, batch: &Batch, deadline: Duration) -> Result<Effects, GuestError> {
        let input = abi::encode(batch);
        let (ptr, len) = self.write_input(&input, deadline).await?;
        arm(&mut self.store, deadline);
        let packed = self.events.call_async(&mut self.store, (ptr, len)).await;
        let packed = packed.map_err(|e| classify(&e, &self.store, self.limits, deadline))?;
        if packed == 0 {
            return Ok(Effects::default());
        }
        let out = self.read_output(packed)?;
        abi::decode_effects(&out, MAX_EFFECTS_PER_CALL)
            .map_err(|e| if e.starts_with("undecodable") { GuestError::Abi(e) } else { GuestError::Flood(e) })
    }

    /// Whether the module has live migration's exports (built with an SDK that has them).
    pub fn can_migrate(&self) -> bool {
        self.migrate_out.is_some() && self.migrate_in.is_some()
    }

    /// The live room's snapshot for another version (`odeon_migrate_out`).
    pub async fn migrate_out(&mut self, deadline: Duration) -> Result<MigrateOut, GuestError> {
        let Some(export) = self.migrate_out.clone() else {
            return Ok(MigrateOut::Refused("the module predates live migration: no migration hooks".into()));
        };
        arm(&mut self.store, deadline);
        let packed = export.call_async(&mut self.store, ()).await;
        let packed = packed.map_err(|e| classify(&e, &self.store, self.limits, deadline))?;
        let out = self.read_output(packed)?;
        abi::decode(&out).map_err(|e| GuestError::Abi(format!("undecodable migration snapshot: {e}")))
    }

    /// Rebuilds a room from another version's snapshot in this fresh instance
    /// (`odeon_migrate_in`).
    pub async fn migrate_in(
        &mut self,
        input: &MigrateIn,
        deadline: Duration,
    ) -> Result<MigrateInResult, GuestError> {
        let Some(export) = self.migrate_in.clone() else {
            return Ok(MigrateInResult::Refused(
                "the new module predates live migration: no migration hooks".into(),
            ));
        };
        let (ptr, len) = self.write_input(&abi::encode(input), deadline).await?;
        arm(&mut self.store, deadline);
        let packed = export.call_async(&mut self.store, (ptr, len)).await;
        let packed = packed.map_err(|e| classify(&e, &self.store, self.limits, deadline))?;
        let out = self.read_output(packed)?;
        let result: MigrateInResult =
            abi::decode(&out).map_err(|e| GuestError::Abi(format!("undecodable migration result: {e}")))?;
        if let MigrateInResult::Adopted(effects) = &result
            && effects.effects.len() > MAX_EFFECTS_PER_CALL
        {
            return Err(GuestError::Flood(format!("{} effects from a migration", effects.effects.len())));
        }
        Ok(result)
    }

    pub(super) async fn abi_version(&mut self) -> Result<u32, GuestError> {
        arm(&mut self.store, self.limits.create_deadline);
        let v = self.abi_version.call_async(&mut self.store, ()).await;
        Ok(v.map_err(|e| classify(&e, &self.store, self.limits, self.limits.create_deadline))? as u32)
    }

    pub(super) async fn manifest(&mut self) -> Result<Manifest, GuestError> {
        arm(&mut self.store, self.limits.create_deadline);
        let packed = self.manifest.call_async(&mut self.store, ()).await;
        let packed =
            packed.map_err(|e| classify(&e, &self.store, self.limits, self.limits.create_deadline))?;
        let out = self.read_output(packed)?;
        abi::decode(&out).map_err(|e| GuestError::Abi(format!("undecodable manifest: {e}")))
    }

    pub(super) async fn auth(&mut self, request: &AuthRequest) -> Result<AuthDecision, GuestError> {
        let input = abi::encode(request);
        let deadline = self.limits.call_deadline;
        let (ptr, len) = self.write_input(&input, deadline).await?;
        arm(&mut self.store, deadline);
        let packed = self.auth.call_async(&mut self.store, (ptr, len)).await;
        let packed = packed.map_err(|e| classify(&e, &self.store, self.limits, deadline))?;
        let out = self.read_output(packed)?;
        abi::decode(&out).map_err(|e| GuestError::Abi(format!("undecodable auth decision: {e}")))
    }

    async fn write_input(&mut self, bytes: &[u8], deadline: Duration) -> Result<(i32, i32), GuestError> {
        let len = i32::try_from(bytes.len()).map_err(|_| GuestError::Abi("input too large".into()))?;
        arm(&mut self.store, deadline);
        let ptr = self.alloc.call_async(&mut self.store, len).await;
        let ptr = ptr.map_err(|e| classify(&e, &self.store, self.limits, deadline))?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, bytes)
            .map_err(|_| GuestError::Abi(format!("odeon_alloc returned {ptr:#x}, outside memory")))?;
        Ok((ptr, len))
    }

    /// The instance's memory, between two calls: the whole state of a guest built with the SDK
    /// (its only mutable global, the stack pointer, is back at its start between calls). Pages
    /// that are all zero are left out.
    pub fn image(&self) -> GuestImage {
        let data = self.memory.data(&self.store);
        let pages = data
            .chunks(PAGE)
            .enumerate()
            .filter(|(_, page)| page.iter().any(|&b| b != 0))
            .map(|(i, page)| (i as u32, serde_bytes::ByteBuf::from(page.to_vec())))
            .collect();
        GuestImage { size: (data.len() / PAGE) as u32, pages }
    }

    /// Makes this fresh instance of the same version hold `image`: the memory grows to the
    /// image's size and every page becomes the image's (zero where the image has none).
    pub fn restore_image(&mut self, image: &GuestImage) -> Result<(), GuestError> {
        let have = self.memory.size(&self.store);
        if u64::from(image.size) > have {
            self.memory
                .grow(&mut self.store, u64::from(image.size) - have)
                .map_err(|_| GuestError::MemoryCap(self.limits.memory_bytes))?;
        }
        let zero = [0u8; PAGE];
        let mut given = image.pages.iter().peekable();
        let data = self.memory.data_mut(&mut self.store);
        for (i, page) in data.chunks_mut(PAGE).enumerate() {
            let src: &[u8] = match given.peek() {
                Some((at, bytes)) if *at as usize == i => {
                    let bytes = &bytes[..];
                    given.next();
                    bytes
                }
                _ => &zero,
            };
            if src.len() != PAGE {
                return Err(GuestError::Abi(format!("image page {i} holds {} bytes", src.len())));
            }
            if page != src {
                page.copy_from_slice(src);
            }
        }
        if given.next().is_some() {
            return Err(GuestError::Abi("image pages past its size".into()));
        }
        Ok(())
    }

    fn read_output(&self, packed: i64) -> Result<Vec<u8>, GuestError> {
        let (ptr, len) = abi::unpack(packed);
        let data = self.memory.data(&self.store);
        let start = ptr as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| data.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| GuestError::Abi(format!("output {ptr:#x}+{len} outside memory")))
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64).max(1)
}

/// Gives the next call `deadline`: it yields at each epoch tick and is interrupted at the last.
fn arm(store: &mut Store<RoomEnv>, deadline: Duration) {
    store.data_mut().ticks_left = ticks(deadline) - 1;
    store.set_epoch_deadline(1);
}

fn classify(
    e: &wasmtime::Error,
    store: &Store<RoomEnv>,
    limits: GuestLimits,
    deadline: Duration,
) -> GuestError {
    if store.data().limiter.exceeded {
        return GuestError::MemoryCap(limits.memory_bytes);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => GuestError::Deadline(deadline),
        Some(trap) => GuestError::Trap(trap.to_string()),
        None => GuestError::Trap(format!("{e:#}")),
    }
}
