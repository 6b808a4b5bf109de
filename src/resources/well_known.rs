//! `GET /.well-known/core` (RFC 6690): the firmware images and the device
//! resources.

use coap_lite::{ContentFormat, Packet, ResponseType};

use super::firmware::{add_block_options, slice_for};
use super::response;
use crate::state::App;

/// The list can outgrow one datagram (many images), so it is served with
/// Block2 like an image.
pub fn handle(app: &App, request: &Packet) -> Packet {
    let mut links = vec![
        "</ota>;rt=\"lwota.device\";title=\"POST /ota/{device}/poll, POST /ota/{device}/report, GET /ota/{device}/task (obs)\";ct=60".to_string(),
    ];
    for image in app.catalogue.all() {
        let fw = &image.record;
        links.push(format!(
            "</ota/fw/{}>;rt=\"lwota.firmware\";ct=42;sz={};title=\"{} {}\"",
            fw.id, fw.size, fw.product, fw.version
        ));
    }
    let body = links.join(",").into_bytes();
    let total = body.len() as u64;
    let slice = match slice_for(request, total, app.config.firmware.max_block_size as usize) {
        Ok(slice) => slice,
        Err(resp) => return resp,
    };
    let mut packet = response(ResponseType::Content);
    packet.set_content_format(ContentFormat::ApplicationLinkFormat);
    add_block_options(&mut packet, request, &slice, total);
    let start = slice.offset as usize;
    packet.payload = body[start..start + slice.len].to_vec();
    packet
}
