//! The workers: authenticating, decrypting and decompressing frames.

use super::{Decoded, Job};
use crate::codec::Decompressor;
use crate::header::OpenedImage;
use coffer_format::chunk::parse_chunk;
use coffer_format::frame::{self, END_FIELDS_LEN, FRAME_HEADER_LEN};
use coffer_format::index::{parse_index_part, INDEX_PREFIX_LEN};
use coffer_format::pack::{parse_members, parse_pack, PACK_PREFIX_LEN};
use coffer_format::{EndFields, EntryMeta, FrameHeader, FrameKind};

/// Decodes frames on a thread of the pipeline.
pub(super) struct Worker<'a> {
    image: &'a OpenedImage,
    decompressor: Decompressor,
    scratch: Vec<u8>,
    skip_data: bool,
}

impl<'a> Worker<'a> {
    /// A worker for frames of `image`, decompressing through `scratch` (a frame buffer).
    pub(super) fn new(image: &'a OpenedImage, scratch: Vec<u8>, skip_data: bool) -> Self {
        Worker { image, decompressor: Decompressor::new(), scratch, skip_data }
    }

    /// Decodes `job`'s frame in place: what it holds, or why it is bad.
    pub(super) fn decode(&mut self, job: &mut Job) {
        let Some(header) = job.header else { return };
        job.decoded = match self.try_decode(job, header) {
            Ok(d) => d,
            Err(detail) => Decoded::Bad { truncated: false, detail },
        };
    }

    fn try_decode(&mut self, job: &mut Job, header: FrameHeader) -> Result<Decoded, String> {
        let image_id = self.image.header.image_id;
        let chunk_size = self.image.chunk_size();
        let body_end = FRAME_HEADER_LEN + header.body_len as usize;
        if header.kind == FrameKind::End {
            let fields = EndFields::parse(&job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + END_FIELDS_LEN])
                .map_err(|e| e.to_string())?;
            let aad = fields.aad(&image_id, &header);
            self.image
                .keys
                .open(fields.seq, &aad, &mut job.buf[FRAME_HEADER_LEN + END_FIELDS_LEN..body_end])
                .map_err(|_| "END frame fails authentication".to_string())?;
            return Ok(Decoded::End(fields));
        }
        let aad = frame::aad(&image_id, job.pos, &header);
        let plain_len = self
            .image
            .keys
            .open(job.pos.seq, &aad, &mut job.buf[FRAME_HEADER_LEN..body_end])
            .map_err(|_| "frame fails authentication (altered, moved, or from another image)".to_string())?
            .len();
        let plain = &job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plain_len];
        match header.kind {
            FrameKind::Entry => Ok(Decoded::Entry(EntryMeta::parse(plain).map_err(|e| e.to_string())?)),
            FrameKind::Index => {
                // Decompressed into a frame buffer (a piece is at most a chunk), never a fresh
                // allocation: how much of the index a read takes in is the checker's to bound.
                let (codec, raw_len, data) = parse_index_part(plain, chunk_size).map_err(|e| e.to_string())?;
                let (raw, stored) = (raw_len as usize, data.len());
                let at = FRAME_HEADER_LEN + INDEX_PREFIX_LEN;
                if codec == coffer_format::Codec::None {
                    return Ok(Decoded::Index { at, len: raw });
                }
                self.decompressor.decompress(codec, &job.buf[at..at + stored], &mut self.scratch[..raw])?;
                std::mem::swap(&mut job.buf, &mut self.scratch);
                Ok(Decoded::Index { at: 0, len: raw })
            }
            FrameKind::Chunk => {
                let chunk = parse_chunk(plain, chunk_size).map_err(|e| e.to_string())?;
                let (h, segments) = (chunk.header, chunk.segments);
                let data_at = FRAME_HEADER_LEN + chunk.data_at;
                if self.skip_data || h.codec == coffer_format::Codec::None {
                    return Ok(Decoded::Chunk {
                        range_start: h.range_start,
                        range_end: h.range_end,
                        data_at,
                        segments,
                    });
                }
                let raw = h.raw_len as usize;
                self.decompressor.decompress(
                    h.codec,
                    &job.buf[data_at..data_at + h.stored_len as usize],
                    &mut self.scratch[..raw],
                )?;
                std::mem::swap(&mut job.buf, &mut self.scratch);
                Ok(Decoded::Chunk { range_start: h.range_start, range_end: h.range_end, data_at: 0, segments })
            }
            FrameKind::Pack => {
                let (codec, raw_len, data) = parse_pack(plain, chunk_size).map_err(|e| e.to_string())?;
                let (raw, stored) = (raw_len as usize, data.len());
                let mut at = FRAME_HEADER_LEN + PACK_PREFIX_LEN;
                if codec != coffer_format::Codec::None {
                    self.decompressor.decompress(codec, &job.buf[at..at + stored], &mut self.scratch[..raw])?;
                    std::mem::swap(&mut job.buf, &mut self.scratch);
                    at = 0;
                }
                let members =
                    parse_members(&job.buf[at..at + raw], header.members.into()).map_err(|e| e.to_string())?;
                Ok(Decoded::Pack { at, members })
            }
            FrameKind::End => Err("an END frame where a sealed frame was expected".into()),
        }
    }
}
