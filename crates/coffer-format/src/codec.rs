//! A cursor over untrusted bytes that never panics, and its writing counterpart.
//!
//! Every integer in the coffer format is little-endian. Every length read from input is checked
//! against the bytes actually present (and against a cap the caller names) before it is used.

use crate::FormatError;

/// Reads fields from a byte slice, failing with [`FormatError::Short`] instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the structure being parsed, for error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Short { what: self.what, need: self.pos + n, have: self.buf.len() });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Takes `n` bytes that the format requires to be zero.
    pub fn zeros(&mut self, n: usize, field: &'static str) -> Result<(), FormatError> {
        if self.take(n)?.iter().any(|&b| b != 0) {
            return Err(FormatError::Reserved { what: self.what, field });
        }
        Ok(())
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::Trailing { what: self.what, extra: self.remaining() });
        }
        Ok(())
    }
}

/// Appends fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer<'a> {
    out: Option<&'a mut Vec<u8>>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out: Some(out) }
    }
    fn buf(&mut self) -> &mut Vec<u8> {
        self.out.as_mut().expect("writer has a buffer")
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf().extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        let buf = self.buf();
        buf.resize(buf.len() + n, 0);
        self
    }
}

/// Writes `v` little-endian at `buf[at..at+4]`.
pub fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `buf[at..at+8]`.
pub fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(matches!(r.u32(), Err(FormatError::Short { need: 6, have: 3, .. })));
        assert_eq!(r.u8().unwrap(), 3);
        r.finish().unwrap();
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let mut r = Reader::new(&[0, 0, 1], "test");
        assert!(r.zeros(3, "pad").is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut r = Reader::new(&[0, 0], "test");
        r.u8().unwrap();
        assert!(matches!(r.finish(), Err(FormatError::Trailing { extra: 1, .. })));
    }
}
