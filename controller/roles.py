"""OpenFlow 1.3 controller roles for clustered netmasters.

Every switch is connected to every netmaster.  The elected leader asks each
switch for MASTER with the election generation as generation_id; the others
ask for SLAVE with the same generation.  The switch itself then guarantees one
master: a request with an older generation is refused (OFPRRFC_STALE), and a new
master turns the previous one into a slave.  A netmaster writes a switch only
while it leads and that switch has answered its MASTER request for the current
generation (`may_write`); stepping down forgets that at once, before telling
the switches.  When a member becomes master of a switch it audits it: a full
read and diff, so an unchanged switch gets no flow rewritten.  What a switch
answered is kept in its connection's Switch object (controller/switch.py), so it
goes with the connection: a reconnected switch is not written until it answers
again, and a late answer from a connection that is gone changes nothing.

Asynchronous messages: slaves get port status (to follow the ports, so a
promotion needs no re-read) and nothing else; the master gets packet-ins of
its flows (the deny log) and flow-removed, as OpenFlow 1.3's defaults.
"""
from __future__ import annotations

import logging

from os_ken.app.ofctl import exception as ofctl_exc
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

LOG = logging.getLogger(__name__)

_PACKET_IN = (1 << ofp.OFPR_NO_MATCH) | (1 << ofp.OFPR_ACTION) | (1 << ofp.OFPR_INVALID_TTL)
_PORT_STATUS = (1 << ofp.OFPPR_ADD) | (1 << ofp.OFPPR_DELETE) | (1 << ofp.OFPPR_MODIFY)
_FLOW_REMOVED = ((1 << ofp.OFPRR_IDLE_TIMEOUT) | (1 << ofp.OFPRR_HARD_TIMEOUT)
                 | (1 << ofp.OFPRR_DELETE) | (1 << ofp.OFPRR_GROUP_DELETE))
ROLE_NAMES = {ofp.OFPCR_ROLE_MASTER: "master", ofp.OFPCR_ROLE_SLAVE: "slave",
              ofp.OFPCR_ROLE_EQUAL: "equal", ofp.OFPCR_ROLE_NOCHANGE: "nochange"}


class Roles:
    def __init__(self, app):
        self.app = app
        self.leader = False
        self.generation = 0

    def may_write(self, dpid: int) -> bool:
        sw = self.app.switches.get(dpid)
        return self.leader and sw is not None and sw.master_generation == self.generation

    def set(self, leader: bool, generation: int) -> None:
        """The election's word: ask every connected switch for the role that goes with it."""
        if not leader:
            for sw in self.app.switches.values():
                sw.master_generation = None       # no write from here on, whatever the switches say
        changed = (leader, generation) != (self.leader, self.generation)
        self.leader, self.generation = leader, generation
        if changed:
            for dp in list(self.app.datapaths.values()):
                hub.spawn(self.assert_role, dp)

    def switch_up(self, dp) -> None:
        """A new connection (its Switch is fresh: not master yet)."""
        hub.spawn(self.assert_role, dp, True)

    def switch_down(self, dpid: int) -> None:
        """Nothing to forget: the role went with the connection's Switch."""

    def assert_role(self, dp, connect: bool = False) -> None:
        leader, gen = self.leader, self.generation
        role = ofp.OFPCR_ROLE_MASTER if leader else ofp.OFPCR_ROLE_SLAVE
        try:
            if connect:
                dp.send_msg(parser.OFPSetAsync(dp, [_PACKET_IN, 0], [_PORT_STATUS, _PORT_STATUS],
                                               [_FLOW_REMOVED, 0]))
            if gen == 0 and not leader:
                return                            # no election seen yet: stay EQUAL and silent
            rep = self.app._request(parser.OFPRoleRequest(dp, role, gen), reply_cls=parser.OFPRoleReply)
        except ofctl_exc.OFError as exc:
            LOG.warning("event=role_refused dpid=%016x role=%s generation=%d error=%s",
                        dp.id, ROLE_NAMES[role], gen, _why(exc))
            return
        except (ofctl_exc.InvalidDatapath, hub.Timeout) as exc:
            LOG.warning("event=role_request_failed dpid=%016x role=%s error=%s", dp.id, ROLE_NAMES[role],
                        type(exc).__name__)
            return
        got = ROLE_NAMES.get(getattr(rep, "role", None), "?")
        sw = self.app.switches.get(dp.id)
        if sw is None or sw.dp is not dp:         # that connection is gone: its answer is moot
            LOG.info("event=role_answer_dropped dpid=%016x role=%s reason=connection_gone", dp.id, got)
            return
        sw.role = got
        LOG.info("event=role_set dpid=%016x role=%s generation=%d", dp.id, got, gen)
        if leader and got == "master" and (self.leader, self.generation) == (leader, gen):
            sw.master_generation = gen
            self.app.audit(dp.id)                 # full read and diff: unchanged -> 0 flows written


def _why(exc) -> str:
    res = getattr(exc, "result", None)
    for err in res if isinstance(res, list) else [res]:
        if err is not None and getattr(err, "type", None) == ofp.OFPET_ROLE_REQUEST_FAILED:
            return {ofp.OFPRRFC_STALE: "stale", ofp.OFPRRFC_UNSUP: "unsupported",
                    ofp.OFPRRFC_BAD_ROLE: "bad_role"}.get(err.code, str(err.code))
    return str(exc)
