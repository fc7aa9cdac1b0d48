import sys
from tests.bench.harness import *
from tests.bench.http_cases import PUBLISH_QUEUE, RETENTION, ONE
extra = RETENTION + (sys.argv[1] if len(sys.argv) > 1 else "")
with workdir() as tmp:
    spool = spool_server(tmp, "spool", PUBLISH_QUEUE, extra)
    raw = module_server(tmp, "raw", "tests.bench.rawapp")
    with serving(spool, raw):
        admin(spool.url, "/v1/queues/bench/pause")
        for s in (spool, raw) * 3:
            r = wrk(s.url + "/v1/queues/bench/messages", seconds=3, connections=32, body=ONE)
            print(s.name, round(r.rate))
