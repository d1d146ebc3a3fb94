//! A check of a change's encoding before automerge reads it.
//!
//! automerge 0.12 parses a change chunk without checking that the actor indices in its
//! operation columns name actors the change lists, then panics on one that does not
//! (`Change::decode`, and `apply_changes` when it imports the operations): one byte changed
//! in any writer's change would bring down every replica. It also inflates a compressed
//! change before parsing it, with no bound. x0x sends a change only as automerge encodes it
//! alone (`Change::raw_bytes`: uncompressed), so [`well_formed`] accepts that form only and
//! reads the actor columns itself. Run-length and LEB128 decoding as automerge's
//! (`columnar::encoding`); anything it cannot read is refused.

/// automerge's chunk magic bytes.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The chunk type of an uncompressed change (2: compressed, 0: document).
const CHANGE: u8 = 1;
/// A column specification's type bits, the actor type, and the deflate flag.
const TYPE_MASK: u64 = 0b111;
const ACTOR_COLUMN: u64 = 1;
const DEFLATE: u64 = 0b1000;

/// Whether `raw` is one uncompressed change chunk whose actor columns stay within its actor
/// table (its own actor and the others it lists).
pub(super) fn well_formed(raw: &[u8]) -> bool {
    check(raw).is_some()
}

fn check(raw: &[u8]) -> Option<()> {
    let mut r = Reader(raw);
    if r.take(4)? != MAGIC {
        return None;
    }
    r.take(4)?; // checksum
    if r.byte()? != CHANGE {
        return None;
    }
    let len = r.uleb()?;
    let mut r = Reader(r.take(len)?);
    let deps = r.uleb()?;
    for _ in 0..deps {
        r.take(32)?;
    }
    let actor = r.uleb()?;
    r.take(actor)?;
    r.uleb()?; // sequence number
    r.uleb()?; // first operation's counter
    r.sleb()?; // time
    let message = r.uleb()?;
    r.take(message)?;
    let others = r.uleb()?;
    for _ in 0..others {
        let len = r.uleb()?;
        r.take(len)?;
    }
    let actors = others.checked_add(1)?;
    let columns = r.uleb()?;
    let mut specs = Vec::new();
    for _ in 0..columns {
        specs.push((r.uleb()?, r.uleb()?));
    }
    for (spec, len) in specs {
        let data = r.take(len)?;
        if spec & DEFLATE != 0 {
            return None;
        }
        if spec & TYPE_MASK == ACTOR_COLUMN {
            values_below(data, actors)?;
        }
    }
    Some(())
}

/// Every value of a run-length encoded column of unsigned integers is below `n`.
fn values_below(data: &[u8], n: u64) -> Option<()> {
    let mut r = Reader(data);
    let ok = |v: u64| (v < n).then_some(());
    while !r.0.is_empty() {
        let count = r.sleb()?;
        if count > 0 {
            ok(r.uleb()?)?; // a run of one value
        } else if count < 0 {
            for _ in 0..count.unsigned_abs() {
                ok(r.uleb()?)?; // literals; each takes a byte at least
            }
        } else {
            r.uleb()?; // a run of nulls
        }
    }
    Some(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut v: i64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && b & 0x7e != 0 && b & 0x7e != 0x7e {
                return None;
            }
            v |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
            if shift > 63 {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_as_automerge_writes_it() {
        let mut r = Reader(&[0xe5, 0x8e, 0x26, 0x7f, 0x80, 0x7f, 0x3f]);
        assert_eq!(r.uleb(), Some(624_485));
        assert_eq!(r.sleb(), Some(-1));
        assert_eq!(r.sleb(), Some(-128));
        assert_eq!(r.sleb(), Some(63));
        assert_eq!(Reader(&[0x80]).uleb(), None, "truncated");
        assert_eq!(Reader(&[0xff; 11]).uleb(), None, "too long");
    }

    #[test]
    fn runs_and_literals() {
        // 3 x 1, literals [0, 1], 2 nulls: all below 2.
        assert!(values_below(&[3, 1, 0x7e, 0, 1, 0, 2], 2).is_some());
        assert!(values_below(&[3, 2], 2).is_none(), "a run of 2");
        assert!(values_below(&[0x7e, 0, 5], 2).is_none(), "a literal 5");
        assert!(values_below(&[0x7e, 0], 2).is_none(), "a literal missing");
    }
}
