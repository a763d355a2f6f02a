//! A minimal TrueType subsetter for PDF embedding (FontFile2).
//!
//! Glyph ids are kept (the PDF uses `CIDToGIDMap /Identity`): unused glyphs
//! become empty and the font is cut after the highest used glyph. Tables kept:
//! the ones PDF requires for TrueType (`head hhea loca maxp cvt prep glyf hmtx
//! fpgm`) plus `OS/2`, `name`, a `cmap` for the used characters and a
//! glyph-name-less `post`, so strict readers accept it as a complete font.

use std::collections::{BTreeMap, BTreeSet};

use crate::RenderError;

/// Metrics the PDF font descriptor needs, in font units.
pub(crate) struct FontMetrics {
    pub(crate) units_per_em: u16,
    pub(crate) bbox: [i16; 4],
    pub(crate) cap_height: i16,
}

fn err(what: &str) -> RenderError {
    RenderError::Font(format!("malformed TrueType data: {what}"))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, RenderError> {
    data.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| err("read past end"))
}

fn i16_at(data: &[u8], at: usize) -> Result<i16, RenderError> {
    u16_at(data, at).map(|v| v as i16)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, RenderError> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| err("read past end"))
}

/// The table directory of a TrueType font.
struct Tables<'a> {
    data: &'a [u8],
    records: BTreeMap<[u8; 4], (usize, usize)>,
}

impl<'a> Tables<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, RenderError> {
        let version = u32_at(data, 0)?;
        if version != 0x0001_0000 && version != u32::from_be_bytes(*b"true") {
            return Err(err("not a TrueType outline font"));
        }
        let count = usize::from(u16_at(data, 4)?);
        let mut records = BTreeMap::new();
        for i in 0..count {
            let at = 12 + 16 * i;
            let tag = data.get(at..at + 4).ok_or_else(|| err("table directory"))?;
            let tag = [tag[0], tag[1], tag[2], tag[3]];
            let offset = u32_at(data, at + 8)? as usize;
            let length = u32_at(data, at + 12)? as usize;
            if offset
                .checked_add(length)
                .is_none_or(|end| end > data.len())
            {
                return Err(err("table outside the file"));
            }
            records.insert(tag, (offset, length));
        }
        Ok(Self { data, records })
    }

    fn get(&self, tag: &[u8; 4]) -> Option<&'a [u8]> {
        self.records
            .get(tag)
            .and_then(|&(offset, length)| self.data.get(offset..offset + length))
    }

    fn require(&self, tag: &[u8; 4]) -> Result<&'a [u8], RenderError> {
        self.get(tag)
            .ok_or_else(|| err(&format!("missing {} table", String::from_utf8_lossy(tag))))
    }
}

/// Reads the metrics the PDF font descriptor needs.
pub(crate) fn metrics(data: &[u8]) -> Result<FontMetrics, RenderError> {
    let tables = Tables::parse(data)?;
    let head = tables.require(b"head")?;
    let units_per_em = u16_at(head, 18)?;
    let bbox = [
        i16_at(head, 36)?,
        i16_at(head, 38)?,
        i16_at(head, 40)?,
        i16_at(head, 42)?,
    ];
    let cap_height = tables
        .get(b"OS/2")
        .filter(|os2| u16_at(os2, 0).is_ok_and(|v| v >= 2))
        .and_then(|os2| i16_at(os2, 88).ok())
        .unwrap_or(bbox[3]);
    Ok(FontMetrics {
        units_per_em,
        bbox,
        cap_height,
    })
}

/// Builds a TrueType font holding only `glyphs` (plus `.notdef` and the
/// components of composite glyphs); `cmap` maps characters to glyph ids.
pub(crate) fn subset(
    data: &[u8],
    glyphs: &BTreeSet<u16>,
    cmap: &BTreeMap<char, u16>,
) -> Result<Vec<u8>, RenderError> {
    let tables = Tables::parse(data)?;
    let head = tables.require(b"head")?;
    let hhea = tables.require(b"hhea")?;
    let maxp = tables.require(b"maxp")?;
    let loca = tables.require(b"loca")?;
    let glyf = tables.require(b"glyf")?;
    let hmtx = tables.require(b"hmtx")?;

    let num_glyphs = usize::from(u16_at(maxp, 4)?);
    let long_loca = i16_at(head, 50)? != 0;
    let glyph_range = |gid: usize| -> Result<(usize, usize), RenderError> {
        if gid >= num_glyphs {
            return Err(err("glyph id out of range"));
        }
        let (start, end) = if long_loca {
            (
                u32_at(loca, 4 * gid)? as usize,
                u32_at(loca, 4 * gid + 4)? as usize,
            )
        } else {
            (
                2 * usize::from(u16_at(loca, 2 * gid)?),
                2 * usize::from(u16_at(loca, 2 * gid + 2)?),
            )
        };
        if start > end || end > glyf.len() {
            return Err(err("glyph outside glyf"));
        }
        Ok((start, end))
    };

    // Close the set over composite glyph components.
    let mut keep: BTreeSet<u16> = glyphs.clone();
    keep.insert(0);
    let mut pending: Vec<u16> = keep.iter().copied().collect();
    while let Some(gid) = pending.pop() {
        let (start, end) = glyph_range(usize::from(gid))?;
        let glyph = &glyf[start..end];
        if glyph.is_empty() || i16_at(glyph, 0)? >= 0 {
            continue;
        }
        let mut at = 10;
        loop {
            let flags = u16_at(glyph, at)?;
            let component = u16_at(glyph, at + 2)?;
            if keep.insert(component) {
                pending.push(component);
            }
            at += 4;
            at += if flags & 0x0001 != 0 { 4 } else { 2 };
            if flags & 0x0008 != 0 {
                at += 2;
            } else if flags & 0x0040 != 0 {
                at += 4;
            } else if flags & 0x0080 != 0 {
                at += 8;
            }
            if flags & 0x0020 == 0 {
                break;
            }
        }
    }

    let new_count = keep.last().map_or(1, |&last| usize::from(last) + 1);
    let new_count_u16 = u16::try_from(new_count).map_err(|_| err("too many glyphs"))?;

    // glyf + loca (long format).
    let mut new_glyf = Vec::new();
    let mut new_loca = Vec::with_capacity(4 * (new_count + 1));
    for gid in 0..new_count {
        new_loca.extend_from_slice(&offset_u32(new_glyf.len())?.to_be_bytes());
        if keep.contains(&(gid as u16)) {
            let (start, end) = glyph_range(gid)?;
            new_glyf.extend_from_slice(&glyf[start..end]);
            while new_glyf.len() % 4 != 0 {
                new_glyf.push(0);
            }
        }
    }
    new_loca.extend_from_slice(&offset_u32(new_glyf.len())?.to_be_bytes());

    // hmtx with a full metric for every glyph.
    let metrics_count = usize::from(u16_at(hhea, 34)?);
    if metrics_count == 0 {
        return Err(err("hhea has no metrics"));
    }
    let mut new_hmtx = Vec::with_capacity(4 * new_count);
    for gid in 0..new_count {
        let advance = u16_at(hmtx, 4 * gid.min(metrics_count - 1))?;
        let lsb = if gid < metrics_count {
            u16_at(hmtx, 4 * gid + 2)?
        } else {
            u16_at(hmtx, 4 * metrics_count + 2 * (gid - metrics_count))?
        };
        new_hmtx.extend_from_slice(&advance.to_be_bytes());
        new_hmtx.extend_from_slice(&lsb.to_be_bytes());
    }

    let mut new_head = head.to_vec();
    patch(&mut new_head, 8, &[0; 4])?; // checkSumAdjustment, set below
    patch(&mut new_head, 50, &1u16.to_be_bytes())?; // long loca
    let mut new_hhea = hhea.to_vec();
    patch(&mut new_hhea, 34, &new_count_u16.to_be_bytes())?;
    let mut new_maxp = maxp.to_vec();
    patch(&mut new_maxp, 4, &new_count_u16.to_be_bytes())?;
    let mut new_post = tables.require(b"post")?.get(..32).map(<[u8]>::to_vec);
    if let Some(post) = new_post.as_mut() {
        patch(post, 0, &0x0003_0000u32.to_be_bytes())?; // format 3: no glyph names
    }

    let mut out_tables: BTreeMap<[u8; 4], Vec<u8>> = BTreeMap::new();
    out_tables.insert(*b"head", new_head);
    out_tables.insert(*b"hhea", new_hhea);
    out_tables.insert(*b"maxp", new_maxp);
    out_tables.insert(*b"loca", new_loca);
    out_tables.insert(*b"glyf", new_glyf);
    out_tables.insert(*b"hmtx", new_hmtx);
    out_tables.insert(*b"cmap", build_cmap(cmap));
    if let Some(post) = new_post {
        out_tables.insert(*b"post", post);
    }
    for tag in [b"cvt ", b"fpgm", b"prep", b"OS/2", b"name"] {
        if let Some(table) = tables.get(tag) {
            out_tables.insert(*tag, table.to_vec());
        }
    }
    assemble(out_tables)
}

fn offset_u32(offset: usize) -> Result<u32, RenderError> {
    u32::try_from(offset).map_err(|_| err("font too large"))
}

fn patch(table: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), RenderError> {
    table
        .get_mut(at..at + bytes.len())
        .ok_or_else(|| err("table too short"))?
        .copy_from_slice(bytes);
    Ok(())
}

/// A (3,1) format 4 cmap with one segment per mapped BMP character.
fn build_cmap(map: &BTreeMap<char, u16>) -> Vec<u8> {
    let mut segments: Vec<(u16, u16)> = map
        .iter()
        .filter_map(|(&c, &gid)| u16::try_from(u32::from(c)).ok().map(|code| (code, gid)))
        .filter(|&(code, _)| code != 0xFFFF)
        .collect();
    // Each segment takes 8 bytes of a subtable whose length is a u16.
    segments.truncate(8000);
    segments.push((0xFFFF, 0));
    let seg_count = segments.len() as u16;
    let (search_range, entry_selector, range_shift) = binary_search_params(seg_count, 2);

    let mut sub = Vec::new();
    let length = 16 + 8 * usize::from(seg_count);
    sub.extend_from_slice(&4u16.to_be_bytes());
    sub.extend_from_slice(&(length as u16).to_be_bytes());
    sub.extend_from_slice(&0u16.to_be_bytes()); // language
    sub.extend_from_slice(&(2 * seg_count).to_be_bytes());
    sub.extend_from_slice(&search_range.to_be_bytes());
    sub.extend_from_slice(&entry_selector.to_be_bytes());
    sub.extend_from_slice(&range_shift.to_be_bytes());
    for &(code, _) in &segments {
        sub.extend_from_slice(&code.to_be_bytes()); // endCode
    }
    sub.extend_from_slice(&0u16.to_be_bytes()); // reservedPad
    for &(code, _) in &segments {
        sub.extend_from_slice(&code.to_be_bytes()); // startCode
    }
    for &(code, gid) in &segments {
        let delta = if code == 0xFFFF {
            1
        } else {
            gid.wrapping_sub(code)
        };
        sub.extend_from_slice(&delta.to_be_bytes());
    }
    for _ in &segments {
        sub.extend_from_slice(&0u16.to_be_bytes()); // idRangeOffset
    }

    let mut cmap = Vec::new();
    cmap.extend_from_slice(&0u16.to_be_bytes()); // version
    cmap.extend_from_slice(&1u16.to_be_bytes()); // one subtable
    cmap.extend_from_slice(&3u16.to_be_bytes()); // Windows
    cmap.extend_from_slice(&1u16.to_be_bytes()); // Unicode BMP
    cmap.extend_from_slice(&12u32.to_be_bytes());
    cmap.extend_from_slice(&sub);
    cmap
}

/// `searchRange`, `entrySelector` and `rangeShift` for `count` entries of `size` bytes.
fn binary_search_params(count: u16, size: u16) -> (u16, u16, u16) {
    let mut pow = 1u16;
    let mut log = 0u16;
    while pow * 2 <= count {
        pow *= 2;
        log += 1;
    }
    (pow * size, log, count * size - pow * size)
}

fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

/// Writes the sfnt: directory sorted by tag, 4-byte aligned tables, checksums.
fn assemble(tables: BTreeMap<[u8; 4], Vec<u8>>) -> Result<Vec<u8>, RenderError> {
    let count = tables.len() as u16;
    let (search_range, entry_selector, range_shift) = binary_search_params(count, 16);
    let mut out = Vec::new();
    out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&search_range.to_be_bytes());
    out.extend_from_slice(&entry_selector.to_be_bytes());
    out.extend_from_slice(&range_shift.to_be_bytes());

    let mut offset = 12 + 16 * tables.len();
    let mut head_offset = None;
    for (tag, table) in &tables {
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(table).to_be_bytes());
        out.extend_from_slice(&offset_u32(offset)?.to_be_bytes());
        out.extend_from_slice(&offset_u32(table.len())?.to_be_bytes());
        if tag == b"head" {
            head_offset = Some(offset);
        }
        offset += table.len().div_ceil(4) * 4;
    }
    for table in tables.values() {
        out.extend_from_slice(table);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let head_offset = head_offset.ok_or_else(|| err("missing head table"))?;
    let adjustment = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
    patch(&mut out, head_offset + 8, &adjustment.to_be_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ab_glyph::{Font, FontRef};

    #[test]
    fn subset_keeps_used_glyphs_and_drops_the_rest() {
        let data = crate::fonts::MONO_DATA;
        let font = FontRef::try_from_slice(data).expect("font parses");
        let mut glyphs = BTreeSet::new();
        let mut cmap = BTreeMap::new();
        for c in "Талх și".chars() {
            let gid = font.glyph_id(c).0;
            glyphs.insert(gid);
            cmap.insert(c, gid);
        }
        let small = subset(data, &glyphs, &cmap).expect("subset");
        assert!(small.len() < data.len() / 4, "{} bytes", small.len());
        let parsed = FontRef::try_from_slice(&small).expect("subset parses");
        for c in "Талх și".chars() {
            let gid = font.glyph_id(c);
            assert_eq!(parsed.glyph_id(c), gid);
            assert!(parsed.outline(gid).is_some() || c == ' ');
            assert_eq!(parsed.h_advance_unscaled(gid), font.h_advance_unscaled(gid));
        }
        assert_eq!(checksum(&small), 0xB1B0_AFBA);
    }
}
