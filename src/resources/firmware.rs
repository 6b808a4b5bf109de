//! `GET /ota/fw/{id}` and a task's `GET /ota/fw/{id}/{device}/{task}`:
//! the image with Block2 (RFC 7959), any SZX 0..6, blocks in any order,
//! read by offset from the blob file.

use coap_lite::{CoapOption, ContentFormat, Packet, ResponseType};

use super::response;
use crate::coap::block::Block;
use crate::coap::endpoint::error_response;
use crate::ota::{parse_task_id, progress};
use crate::state::App;

/// The slice of a resource one Block2 request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub offset: u64,
    pub len: usize,
    /// The Block2 option to send, or None when the whole resource fits in
    /// one response and the client did not ask for blocks.
    pub block: Option<Block>,
}

/// Works out which bytes of a `total`-byte resource to send. The client's
/// block size is honoured up to `max_block`; a smaller server size keeps
/// the same offset (RFC 7959 §2.4, "the server can use a smaller size").
pub fn slice_for(request: &Packet, total: u64, max_block: usize) -> Result<Slice, Packet> {
    let requested = match request.get_first_option(CoapOption::Block2) {
        Some(raw) => Some(Block::parse(raw).map_err(|e| {
            error_response(ResponseType::BadOption, &format!("bad Block2 option: {e}"))
        })?),
        None => None,
    };
    let (offset, size) = match requested {
        Some(b) => (u64::from(b.num) * b.size() as u64, b.size().min(max_block)),
        None => (0, max_block),
    };
    if offset >= total && !(offset == 0 && total == 0) {
        return Err(error_response(
            ResponseType::BadOption,
            &format!("block starts at byte {offset}, past the end ({total} bytes)"),
        ));
    }
    let len = (total - offset).min(size as u64) as usize;
    let more = offset + (len as u64) < total;
    let block = if requested.is_none() && !more {
        None
    } else {
        Some(Block {
            num: (offset / size as u64) as u32,
            more,
            szx: Block::szx_of(size),
        })
    };
    Ok(Slice { offset, len, block })
}

/// Adds Block2 and Size2 (on block 0, or when the client sent Size2).
pub fn add_block_options(packet: &mut Packet, request: &Packet, slice: &Slice, total: u64) {
    if let Some(block) = slice.block {
        packet.add_option(CoapOption::Block2, block.encode());
    }
    let asked_size = request.get_first_option(CoapOption::Size2).is_some();
    if slice.offset == 0 || asked_size {
        packet.add_option(CoapOption::Size2, encode_uint(total));
    }
}

pub fn handle(app: &App, request: &Packet, id: &str, task: Option<(&str, &str)>) -> Packet {
    let Some(image) = id.parse::<u64>().ok().and_then(|id| app.catalogue.get(id)) else {
        return error_response(ResponseType::NotFound, "no such firmware");
    };
    let total = image.record.size;
    let max_block = app.config.firmware.max_block_size as usize;
    let slice = match slice_for(request, total, max_block) {
        Ok(slice) => slice,
        Err(resp) => return resp,
    };
    let mut payload = vec![0u8; slice.len];
    if let Err(e) = image.read_at(&mut payload, slice.offset) {
        tracing::error!(firmware = image.record.id, "blob read failed: {e}");
        return error_response(ResponseType::InternalServerError, "firmware unreadable");
    }
    let mut packet = response(ResponseType::Content);
    packet.set_content_format(ContentFormat::ApplicationOctetStream);
    packet.add_option(CoapOption::ETag, image.etag.to_vec());
    add_block_options(&mut packet, request, &slice, total);
    packet.payload = payload;
    metrics::counter!(crate::telemetry::BLOCK2_BLOCKS).increment(1);
    metrics::counter!(crate::telemetry::BLOCK2_BYTES).increment(slice.len as u64);

    if let Some((device, task)) = task {
        record_progress(app, device, task, &slice, total);
    }
    packet
}

/// Progress inferred from the block served; written without waiting (no
/// peer is promised it), at most once per whole percent, plus a periodic
/// sign of life for slow downloads (see `progress::Touches`).
fn record_progress(app: &App, device: &str, task: &str, slice: &Slice, total: u64) {
    let Some(campaign) = parse_task_id(task) else {
        return;
    };
    let end = slice.offset + slice.len as u64;
    let crossed = progress::crossed_percent(slice.offset, end, total);
    let now = app.now();
    let settings = app.ota_settings();
    if !app.touches.due(
        campaign,
        device,
        now.as_millis(),
        settings.timeout_ms,
        crossed.is_some(),
    ) {
        return;
    }
    let percent = crossed.unwrap_or(((end * 100) / total.max(1)).min(100) as u8);
    let device = device.to_string();
    app.store
        .write_detached(move |tx| progress::record(tx, now, settings, &device, campaign, percent));
}

/// Minimal big-endian encoding of an unsigned option value.
pub fn encode_uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(block: Option<Block>) -> Packet {
        let mut p = Packet::new();
        if let Some(b) = block {
            p.add_option(CoapOption::Block2, b.encode());
        }
        p
    }

    #[test]
    fn slices() {
        // No Block2, fits: no block option.
        let s = slice_for(&get(None), 10, 1024).unwrap();
        assert_eq!((s.offset, s.len, s.block), (0, 10, None));
        // No Block2, large: block 0 at server max.
        let s = slice_for(&get(None), 5000, 512).unwrap();
        assert_eq!(
            s.block,
            Some(Block {
                num: 0,
                more: true,
                szx: 5
            })
        );
        // Client asks 1024 at num 3, server max 256: same offset, num 12.
        let s = slice_for(
            &get(Some(Block {
                num: 3,
                more: false,
                szx: 6,
            })),
            5000,
            256,
        )
        .unwrap();
        assert_eq!((s.offset, s.len), (3072, 256));
        assert_eq!(
            s.block,
            Some(Block {
                num: 12,
                more: true,
                szx: 4
            })
        );
        // Last partial block.
        let s = slice_for(
            &get(Some(Block {
                num: 4,
                more: false,
                szx: 6,
            })),
            5000,
            1024,
        )
        .unwrap();
        assert_eq!((s.offset, s.len, s.block.unwrap().more), (4096, 904, false));
        // Past the end.
        assert!(slice_for(
            &get(Some(Block {
                num: 5,
                more: false,
                szx: 6
            })),
            5000,
            1024
        )
        .is_err());
    }
}
