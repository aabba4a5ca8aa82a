"""The simplest plugin-author tests: one node, and a line of three with channels, announcements and a payment."""


def test_single_node(node_factory):
    l1 = node_factory.get_node(old_hsmsecret=True)
    info = l1.rpc.getinfo()
    # CLN's test key for "lightning-1", and its codename (with --developer, plus the version's tail).
    assert info["id"] == "0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518"
    assert info["alias"].startswith("JUNIORBEAM-")
    assert info["color"] == "0266e4"


def test_line_graph_pay(node_factory):
    l1, l2, l3 = node_factory.line_graph(3, wait_for_announce=True)
    l1.wait_for_route(l3)                             # pyln-testing's helpers over getroutes
    path = l1.single_route(l3.info["id"], 100_000)
    assert [h["node_id_out"] for h in path] == [l2.info["id"], l3.info["id"]]
    assert path[-1]["amount_out_msat"] == 100_000 and path[0]["amount_in_msat"] > 100_000   # l2's fee
    inv = l3.rpc.invoice(100_000, "lbl", "desc")["bolt11"]
    assert l1.rpc.pay(inv)["status"] == "complete"
