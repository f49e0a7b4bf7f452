//! A document's tip: what a change made directly on its heads needs besides them, so a store that
//! keeps it beside the heads and the plain value can take such a change without loading the
//! document ([`Tip::forward`]).
//!
//! The tip holds the document's op counter, each actor's newest seq, and the ids of the ops that
//! hold root `live` and every field of `v` and `prov` (see [`crate::layout`]). That is enough to
//! check a change the way Automerge would (its dependencies are exactly the heads, its seq is new
//! for its actor, its ops follow the counter) and to know the result exactly: every op of such a
//! change is newer than everything in the document, so a put wins its key, and when its
//! predecessors are every op the key holds, the key holds that op alone afterwards. Changes of any
//! other shape (inserts, increments, edits inside nested objects, a conflict left behind, a
//! deleted record) return `None`, and the store loads the document as before.
//!
//! The tip is a function of the document: after a forward it equals [`Tip::of`] of the document
//! with the change applied, and the value edits turn the old plain value into the new one (a core
//! property test checks both).

use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key as OpKey, ObjectId, OpId, OpType};
use automerge::{ActorId, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc};
use thiserror::Error;

use crate::layout::{LIVE, PROVENANCE, VALUE, genesis_actor};
use crate::record::Record;
use crate::value::Value;

/// Documents with more changes than this get no tip: computing one reads every change's
/// metadata, which a write must not pay for a long history.
pub const MAX_TIP_CHANGES: u64 = 512;

const VERSION: u8 = 1;

/// An op's id: its counter and actor.
pub(crate) type OpRef = (u64, ActorId);

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// The heads this tip is of, sorted: a store that finds other heads beside it (written by a
    /// version that kept no tips) must not use it.
    heads: Vec<ChangeHash>,
    max_op: u64,
    /// Each actor's newest seq and the hash of that change (Automerge lists an actor's previous
    /// change among a new change's dependencies even when the heads already descend from it).
    actors: BTreeMap<ActorId, (u64, ChangeHash)>,
    /// The ops holding `live`, sorted.
    live: Vec<OpRef>,
    /// Per field of `v`, the ops holding it, sorted.
    fields: BTreeMap<String, Vec<OpRef>>,
    /// The fields of `v` whose value is not a plain scalar (an object, text or a counter): a put
    /// there reconciles in place, which needs the document.
    other: BTreeSet<String>,
    /// Per field of `prov`, the ops holding it, sorted.
    prov: BTreeMap<String, Vec<OpRef>>,
}

/// A change taken on a tip: the new tip, the document's one head, and what became of the plain
/// value's fields, in order (`None`: the field is gone).
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub tip: Tip,
    pub head: ChangeHash,
    pub edits: Vec<(String, Option<Value>)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("stored tip is malformed: {0}")]
pub struct TipError(&'static str);

fn op_ref(id: &ObjId) -> Option<OpRef> {
    match id {
        ObjId::Id(counter, actor, _) => Some((*counter, actor.clone())),
        ObjId::Root => None,
    }
}

fn sorted(mut ops: Vec<OpRef>) -> Vec<OpRef> {
    ops.sort();
    ops
}

/// The ops holding `obj[key]`, sorted.
fn holders<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<Vec<OpRef>> {
    let all = doc.get_all(obj, key).ok()?;
    all.iter().map(|(_, id)| op_ref(id)).collect::<Option<Vec<_>>>().map(sorted)
}

/// The genesis map at root `key` (`v` is op 1 of the genesis change, `prov` op 2), if it is the
/// only thing there.
fn genesis_map<D: ReadDoc>(doc: &D, key: &str, counter: u64) -> Option<ObjId> {
    let all = doc.get_all(ROOT, key).ok()?;
    match all.as_slice() {
        [(automerge::Value::Object(ObjType::Map), id)] if op_ref(id) == Some((counter, genesis_actor())) => Some(id.clone()),
        _ => None,
    }
}

impl Tip {
    /// The tip of a live record, or `None` where no change could be taken on one (the record is
    /// deleted, waits for missing changes, has a long history, or its `v` or `prov` is not the
    /// genesis map).
    pub fn of(record: &mut Record) -> Option<Tip> {
        if !record.exists() {
            return None;
        }
        let doc = record.doc_mut();
        if doc.stats().num_changes > MAX_TIP_CHANGES || !doc.get_missing_deps(&[]).is_empty() {
            return None;
        }
        let value = genesis_map(doc, VALUE, 1)?;
        let prov = genesis_map(doc, PROVENANCE, 2)?;
        let live = holders(doc, &ROOT, LIVE)?;
        let mut fields = BTreeMap::new();
        let mut other = BTreeSet::new();
        for key in doc.keys(&value).collect::<Vec<_>>() {
            fields.insert(key.clone(), holders(doc, &value, &key)?);
            let plain = match doc.get(&value, &key).ok()? {
                Some((automerge::Value::Scalar(s), _)) => !s.is_counter() && Value::from_scalar(&s).is_ok(),
                _ => false,
            };
            if !plain {
                other.insert(key);
            }
        }
        let mut provs = BTreeMap::new();
        for key in doc.keys(&prov).collect::<Vec<_>>() {
            provs.insert(key.clone(), holders(doc, &prov, &key)?);
        }
        let mut actors = BTreeMap::new();
        let mut max_op = 0;
        for meta in doc.get_changes_meta(&[]) {
            max_op = max_op.max(meta.max_op);
            let newest = actors.entry(meta.actor.into_owned()).or_insert((0, meta.hash));
            if meta.seq >= newest.0 {
                *newest = (meta.seq, meta.hash);
            }
        }
        let mut heads = doc.get_heads();
        heads.sort();
        Some(Tip { heads, max_op, actors, live, fields, other, prov: provs })
    }

    /// The heads this tip is of, sorted.
    pub fn heads(&self) -> &[ChangeHash] {
        &self.heads
    }

    /// The newest op counter.
    pub(crate) fn max_op(&self) -> u64 {
        self.max_op
    }

    /// Whether `actor` wrote any change of the document.
    pub(crate) fn has_actor(&self, actor: &ActorId) -> bool {
        self.actors.contains_key(actor)
    }

    /// The ops holding field `key` of `v` (none if it is absent), sorted.
    pub(crate) fn field_ops(&self, key: &str) -> &[OpRef] {
        self.fields.get(key).map_or(&[], Vec::as_slice)
    }

    /// Whether field `key` of `v` holds something other than a plain scalar.
    pub(crate) fn holds_other(&self, key: &str) -> bool {
        self.other.contains(key)
    }

    /// The ops holding field `key` of `prov`, sorted.
    pub(crate) fn prov_ops(&self, key: &str) -> &[OpRef] {
        self.prov.get(key).map_or(&[], Vec::as_slice)
    }

    /// Takes `change` on the document whose tip this is, or returns `None` if its shape needs
    /// the document (see the module documentation).
    pub fn forward(&self, change: &Change) -> Option<Forward> {
        let heads = &self.heads;
        // Every head, and besides them only changes the document holds (an actor's newest, the
        // one extra dependency Automerge adds): the change then is the document's only head.
        let deps = change.deps();
        let known = |d: &ChangeHash| heads.contains(d) || self.actors.values().any(|(_, h)| h == d);
        if !heads.iter().all(|h| deps.contains(h)) || !deps.iter().all(known) {
            return None;
        }
        if change.author().is_some() || change.start_op().get() <= self.max_op {
            return None;
        }
        let actor = change.actor_id();
        if self.actors.get(actor).is_some_and(|(seq, _)| *seq >= change.seq()) {
            return None;
        }
        let expanded = change.decode();
        if !expanded.extra_bytes.is_empty() || expanded.operations.len() != change.len() {
            return None;
        }
        let value_obj = OpId(1, genesis_actor());
        let prov_obj = OpId(2, genesis_actor());
        let mut tip = self.clone();
        let mut fresh = BTreeSet::new();
        let mut edits = Vec::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let id: OpRef = (change.start_op().get() + i as u64, actor.clone());
            let pred: Vec<OpRef> = sorted(op.pred.iter().map(|p| (p.0, p.1.clone())).collect());
            let OpKey::Map(key) = &op.key else { return None };
            if op.insert {
                return None;
            }
            match (&op.obj, &op.action) {
                (ObjectId::Root, OpType::Put(_)) if key.as_str() == LIVE && pred == tip.live => tip.live = vec![id],
                (ObjectId::Id(obj), OpType::Put(s)) if *obj == value_obj => {
                    if pred != tip.fields.get(key.as_str()).cloned().unwrap_or_default() {
                        return None;
                    }
                    let plain = Value::from_scalar(s).ok()?.to_plain();
                    tip.fields.insert(key.to_string(), vec![id]);
                    if s.is_counter() {
                        tip.other.insert(key.to_string());
                    } else {
                        tip.other.remove(key.as_str());
                    }
                    edits.push((key.to_string(), Some(plain)));
                }
                (ObjectId::Id(obj), OpType::Delete) if *obj == value_obj => {
                    if tip.fields.get(key.as_str()) != Some(&pred) {
                        return None;
                    }
                    tip.fields.remove(key.as_str());
                    tip.other.remove(key.as_str());
                    edits.push((key.to_string(), None));
                }
                (ObjectId::Id(obj), OpType::Make(ObjType::Map)) if *obj == prov_obj => {
                    if pred != tip.prov.get(key.as_str()).cloned().unwrap_or_default() {
                        return None;
                    }
                    tip.prov.insert(key.to_string(), vec![id.clone()]);
                    fresh.insert(id);
                }
                (ObjectId::Id(obj), OpType::Put(_)) if pred.is_empty() && fresh.contains(&(obj.0, obj.1.clone())) => {}
                _ => return None,
            }
        }
        if tip.live.is_empty() {
            return None;
        }
        tip.heads = vec![change.hash()];
        tip.max_op = change.max_op();
        tip.actors.insert(actor.clone(), (change.seq(), change.hash()));
        Some(Forward { tip, head: change.hash(), edits })
    }

    /// The tip as bytes: a version, then counters and lengths as LEB128, actors (with their
    /// newest seq and change hash) as an indexed table that op ids refer to.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        let index: BTreeMap<&ActorId, u64> = self.actors.keys().zip(0u64..).collect();
        put_uint(&mut out, self.heads.len() as u64);
        for head in &self.heads {
            out.extend_from_slice(&head.0);
        }
        put_uint(&mut out, self.max_op);
        put_uint(&mut out, self.actors.len() as u64);
        for (actor, (seq, hash)) in &self.actors {
            put_bytes(&mut out, actor.to_bytes());
            put_uint(&mut out, *seq);
            out.extend_from_slice(&hash.0);
        }
        let put_ops = |out: &mut Vec<u8>, ops: &[OpRef]| {
            put_uint(out, ops.len() as u64);
            for (counter, actor) in ops {
                put_uint(out, *counter);
                put_uint(out, index.get(actor).copied().unwrap_or(u64::MAX));
            }
        };
        put_ops(&mut out, &self.live);
        for (i, map) in [&self.fields, &self.prov].into_iter().enumerate() {
            put_uint(&mut out, map.len() as u64);
            for (key, ops) in map {
                put_bytes(&mut out, key.as_bytes());
                put_ops(&mut out, ops);
                if i == 0 {
                    out.push(u8::from(self.other.contains(key)));
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Tip, TipError> {
        let mut r = Reader(bytes);
        if r.byte()? != VERSION {
            return Err(TipError("unknown version"));
        }
        let mut heads = Vec::new();
        for _ in 0..r.len()? {
            heads.push(ChangeHash(r.array()?));
        }
        let max_op = r.uint()?;
        let n = r.len()?;
        let mut table = Vec::with_capacity(n);
        let mut actors = BTreeMap::new();
        for _ in 0..n {
            let actor = ActorId::from(r.bytes()?);
            let seq = r.uint()?;
            let hash = ChangeHash(r.array()?);
            actors.insert(actor.clone(), (seq, hash));
            table.push(actor);
        }
        let ops = |r: &mut Reader<'_>| -> Result<Vec<OpRef>, TipError> {
            let n = r.len()?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                let counter = r.uint()?;
                let actor = usize::try_from(r.uint()?).ok().and_then(|i| table.get(i)).ok_or(TipError("op of an unknown actor"))?;
                ops.push((counter, actor.clone()));
            }
            Ok(ops)
        };
        let live = ops(&mut r)?;
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        let mut other = BTreeSet::new();
        for (i, map) in maps.iter_mut().enumerate() {
            for _ in 0..r.len()? {
                let key = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| TipError("a field name is not UTF-8"))?;
                map.insert(key.clone(), ops(&mut r)?);
                if i == 0 && r.byte()? != 0 {
                    other.insert(key);
                }
            }
        }
        if !r.0.is_empty() {
            return Err(TipError("trailing bytes"));
        }
        let [fields, prov] = maps;
        Ok(Tip { heads, max_op, actors, live, fields, other, prov })
    }
}

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, TipError> {
        let (first, rest) = self.0.split_first().ok_or(TipError("truncated"))?;
        self.0 = rest;
        Ok(*first)
    }

    fn uint(&mut self) -> Result<u64, TipError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(TipError("integer too long"))
    }

    /// A count of items that each take at least a byte, so a corrupt count cannot allocate more
    /// than the input.
    fn len(&mut self) -> Result<usize, TipError> {
        let n = usize::try_from(self.uint()?).map_err(|_| TipError("count too large"))?;
        if n > self.0.len() {
            return Err(TipError("count past the end"));
        }
        Ok(n)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TipError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(TipError("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], TipError> {
        let n = self.len()?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}
