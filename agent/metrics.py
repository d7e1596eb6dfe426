"""netplugin's Prometheus metrics (served on the local API's /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

_FAST = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)

OVSDB_TXN_SECONDS = Histogram("netweave_agent_ovsdb_transaction_duration_seconds",
                              "Time of one OVSDB transaction, applied by ovs-vswitchd",
                              ["op", "status"], buckets=_FAST)
CNI_SECONDS = Histogram("netweave_agent_cni_request_duration_seconds",
                        "Time to serve one CNI request handed over by netweave-cni",
                        ["command", "result"], buckets=_FAST)
DOCKER_SECONDS = Histogram("netweave_agent_docker_request_duration_seconds",
                           "Time to serve one call of Docker's network or IPAM driver protocol",
                           ["call", "result"], buckets=_FAST)
HEARTBEATS = Counter("netweave_agent_heartbeats_total", "Host registrations sent to netmaster",
                     ["result"])
RESYNC_REMOVED = Counter("netweave_agent_stale_ports_removed_total",
                         "Endpoint ports removed because netmaster no longer knows them")
RESYNC_RELEASED = Counter("netweave_agent_stale_endpoints_released_total",
                          "Endpoints released at netmaster because their port and veth are gone")
ENDPOINT_PORTS = Gauge("netweave_agent_endpoint_ports", "Endpoint ports on the integration bridge")
