"""Reading what a switch holds, for people: the flows it has (with counters)
next to what netmaster wants, and per-owner packet counts."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofcodec
from flows.entry import COOKIE_MARK, COOKIE_MARK_MASK


class Unparsed:
    """A flow under our cookie that netweave cannot express (shown, never equal to a wanted one)."""
    match = ()

    def __init__(self, table: int, priority: int, cookie: int):
        self.table, self.priority, self.cookie = table, priority, cookie
        self.key = (table, priority, ("unparsed", cookie))

    def to_ofctl(self) -> str:
        return f"cookie={self.cookie:#x},table={self.table},priority={self.priority},unparsed"


def read_flows(app, dpid: int, cookie: int = COOKIE_MARK, cookie_mask: int = COOKIE_MARK_MASK):
    """[(FlowEntry, packets, bytes)] of the switch's flows under a cookie mask."""
    dp = app.datapaths.get(dpid)
    if dp is None:
        return None
    req = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                     cookie, cookie_mask, parser.OFPMatch())
    out = []
    for rep in app._request(req, parser.OFPFlowStatsReply, True) or []:
        for st in rep.body:
            try:
                e = ofcodec.decode_flow(st)
            except ofcodec.ConversionError:
                e = Unparsed(st.table_id, st.priority, st.cookie)
            out.append((e, st.packet_count, st.byte_count))
    return out


def diff(desired: set, held: list) -> dict:
    """What to show in `netctl flows`: flows wanted and held, missing, extra, changed."""
    want = {n.key: n for n in desired}          # canonical as made (flows/fields.py)
    have = {e.key: e for e, _, _ in held}
    return {
        "missing": sorted(want[k].to_ofctl() for k in want if k not in have),
        "extra": sorted(have[k].to_ofctl() for k in have if k not in want),
        "changed": sorted(f"{have[k].to_ofctl()}  =>  {want[k].to_ofctl()}"
                          for k in want if k in have and have[k] != want[k]),
        "same": sum(1 for k in want if k in have and have[k] == want[k]),
    }
