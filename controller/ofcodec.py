"""The one codec between entries (flows/entry.py) and OpenFlow 1.3, for the controller.

Everything that turns a FlowEntry or GroupEntry into a message for a switch, or
a switch's flow-stats / group-desc reply back into an entry, goes through here:

    encode_flow(dp, entry, command)  -> a message for a bundle (see Encoded)
    encode_group(dp, group, command) -> os-ken OFPGroupMod
    delete_group(dp, group_id)       -> os-ken OFPGroupMod
    decode_flow(stats)               -> FlowEntry   (raises ConversionError)
    decode_group(desc)               -> GroupEntry  (raises ConversionError)

Behind it, the fast paths that earned their place (bench/README.md): flow mods
struct-packed by controller/ofencode (~5x os-ken), flow-stats decoded from the
reply bytes by controller/ofwire (~15x).  Whatever a fast path cannot do falls
back, per message, to controller/ofmsg, os-ken's parser: the reference the
tests hold both fast paths to (tests/unit/test_ofencode.py, test_ofwire.py).
Entries are canonical when constructed (flows/fields.py), so a decoded entry
equals the compiled one as it is.
"""
from __future__ import annotations

import logging

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofencode, ofmsg, ofwire
from flows.entry import FlowEntry, GroupEntry

LOG = logging.getLogger(__name__)

ConversionError = ofmsg.ConversionError
Encoded = ofencode.EncodedFlowMod        # a flow mod as bytes; .describe() for logs
gc_paused = ofwire.gc_paused             # speed: see flows/gcpause.py
DELETES = (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)


def install() -> None:
    """Keep flow-stats replies as bytes until read (decode_flow's fast path)."""
    ofwire.install()


def encode_flow(dp, entry: FlowEntry, command: int = ofp.OFPFC_ADD):
    """An Encoded flow mod, or (when the fast encoder cannot) os-ken's OFPFlowMod;
    raises ConversionError when neither can express the entry."""
    try:
        return ofencode.EncodedFlowMod(entry, command)
    except Exception as exc:                      # noqa: BLE001 - any gap: the reference
        LOG.debug("event=encode_fallback error=%r entry=%r", exc, entry)
        return ofmsg.flow_mod(dp, entry, command)


def describe(entry: FlowEntry, command: int) -> str:
    text = entry.to_ofctl()
    return "delete " + text if command in DELETES else text


def encode_group(dp, group: GroupEntry, command: int = ofp.OFPGC_ADD) -> parser.OFPGroupMod:
    return ofmsg.group_mod(dp, group, command)


def delete_group(dp, group_id: int) -> parser.OFPGroupMod:
    return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def decode_flow(st) -> FlowEntry:
    """One flow-stats entry: from its bytes when possible, else os-ken's parse."""
    return ofwire.to_entry(st)


def decode_group(desc) -> GroupEntry:
    return ofmsg.group_from_desc(desc)
