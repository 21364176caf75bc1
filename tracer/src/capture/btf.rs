//! A lean reader of kernel BTF: just enough to find a struct by name and walk
//! its members.
//!
//! Hand-written: the crates that parse BTF (btf-rs, aya-obj) build every one
//! of vmlinux's ~150,000 types into maps and vectors: 40 MB of heap and a
//! third of mnttrace's start-up, for the dozen offsets it needs. This keeps
//! the file's bytes and one index of where each type starts (format:
//! Documentation/bpf/btf.rst).

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("not BTF (bad magic)")]
    Magic,
    #[error("truncated or inconsistent BTF")]
    Truncated,
    #[error("unknown BTF kind {0}")]
    Kind(u32),
}

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

pub struct Btf {
    data: Vec<u8>,
    /// Where the string section starts and ends in `data`.
    strings: (usize, usize),
    /// Byte offset in `data` of type id N+1 (ids start at 1).
    types: Vec<usize>,
}

/// One type's header.
#[derive(Clone, Copy, Debug)]
pub struct Type {
    at: usize,
    pub name_off: u32,
    pub kind: u32,
    pub vlen: u32,
    kind_flag: bool,
    /// Size, or the referred type's id (typedefs, qualifiers, pointers).
    pub size_or_type: u32,
}

/// A struct or union member.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    pub bit_offset: u32,
}

impl Btf {
    pub fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Truncated)
        };
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::Magic);
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let (t0, t1) = (hdr_len + type_off, hdr_len + type_off + type_len);
        let strings = (hdr_len + str_off, hdr_len + str_off + str_len);
        if t1 > data.len() || strings.1 > data.len() {
            return Err(BtfError::Truncated);
        }
        let mut types = Vec::new();
        let mut at = t0;
        while at < t1 {
            types.push(at);
            let info = u32_at(at + 4)?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                1 | 14 | 17 => 4,             // int, var, decl_tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
                6 | 13 => 8 * vlen,           // enum, func_proto
                k => return Err(BtfError::Kind(k)),
            };
            at += 12 + extra;
        }
        if at != t1 {
            return Err(BtfError::Truncated);
        }
        Ok(Btf {
            data,
            strings,
            types,
        })
    }

    fn u32_at(&self, at: usize) -> u32 {
        // In bounds: every offset read was checked when the index was built.
        let b = &self.data[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn name(&self, off: u32) -> &[u8] {
        let start = self.strings.0 + off as usize;
        let s = self.data.get(start..self.strings.1).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    pub fn get(&self, id: u32) -> Option<Type> {
        let at = *self.types.get((id as usize).checked_sub(1)?)?;
        let info = self.u32_at(at + 4);
        Some(Type {
            at,
            name_off: self.u32_at(at),
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            size_or_type: self.u32_at(at + 8),
        })
    }

    /// The first struct named `name` with members (not a forward declaration).
    pub fn struct_named(&self, name: &str) -> Option<Type> {
        (1..=self.types.len() as u32)
            .filter_map(|id| self.get(id))
            .find(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes()
            })
    }

    pub fn members(&self, t: Type) -> impl Iterator<Item = Member> + '_ {
        let n = if matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            t.vlen
        } else {
            0
        };
        (0..n as usize).map(move |i| {
            let at = t.at + 12 + 12 * i;
            let raw = self.u32_at(at + 8);
            Member {
                name_off: self.u32_at(at),
                type_id: self.u32_at(at + 4),
                // With kind_flag, the top 8 bits are a bitfield's size.
                bit_offset: if t.kind_flag { raw & 0xff_ffff } else { raw },
            }
        })
    }

    /// Follows typedefs and qualifiers to a struct or union.
    pub fn strip(&self, mut id: u32) -> Option<Type> {
        for _ in 0..16 {
            let t = self.get(id)?;
            match t.kind {
                KIND_STRUCT | KIND_UNION => return Some(t),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(Btf::parse(vec![0; 3]), Err(BtfError::Magic)));
        let mut hdr = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        hdr.extend_from_slice(&[0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(Btf::parse(hdr), Err(BtfError::Truncated)));
    }
}
