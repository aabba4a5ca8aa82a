import sys, os
sys.path.insert(0, "/work/main/tests/integration")
from test_gossip import *

def test_dbg(node_factory_chain, chaind):
    chaind.mine(101)
    A, B, C = Key("sA"), Key("sB"), Key("sC")
    ab, bc = make_channels(chaind, [(A, B, 1_000_000), (B, C, 1_000_000)], "s")
    l1 = gossip_node(node_factory_chain)
    sync(l1, chaind)
    now = int(time.time())
    for raw in ab.gossip(now) + bc.gossip(now):
        l1.rpc.addgossip(raw.hex())
    ab.spend(chaind)
    chaind.mine(1)
    h = sync(l1, chaind)
    print("spend height", h)
    for i in range(12):
        chaind.mine(1); hh = sync(l1, chaind); time.sleep(0.3)
        print(hh, len(chans_of(l1, short_channel_id=str(ab.scid))))
    print([l for l in l1.logs().splitlines() if "gossipd" in l][-10:])
