"""netweave's pure flow layer: Snapshot in, FlowEntry/GroupEntry sets out.

- flows.snapshot   the input model (Tenant, Network, Endpoint, Host, Group, Rule, Snapshot)
- flows.pipeline   tables, metadata/register/cookie layout, ports, group ids, router MAC
- flows.engine     the incremental engine (per-owner producers in flows.producers,
                   per-switch tables); compile_snapshot(snapshot) for a whole fabric
- flows.compiler   compile_all(snapshot): the from-scratch reference the engine is tested against
- flows.simulator  Switch (exact OpenFlow interpreter), Trace, Conntrack
- flows.fabric     Fabric: several Switches joined by tunnel and uplink
- flows.ofctl_parse  dump-flows / dump-groups text -> entries
Nothing here does I/O or imports the controller, agent or REST layers.
"""
