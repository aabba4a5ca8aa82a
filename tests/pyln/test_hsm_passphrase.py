"""An hsm_secret with a passphrase, as CLN v25.12+ makes one (`--hsm-passphrase`): asked for at start,
twice for a new node; without it, or with a wrong one, the node refuses to start with lightningd's words."""
import os


def _start_with_stdin(node, tmp_path, text, **kwargs):
    f = tmp_path / "stdin"
    f.write_text(text)
    with open(f) as stdin:
        node.daemon.start(stdin=stdin, **kwargs)


def test_hsm_passphrase(node_factory, tmp_path):
    l1 = node_factory.get_node(start=False, may_fail=True,
                               broken_log="Passphrase required but not provided|Wrong passphrase")
    os.unlink(os.path.join(l1.daemon.lightning_dir, "regtest", "hsm_secret"))  # pyln-testing's is unencrypted
    l1.daemon.opts["hsm-passphrase"] = None
    # A new node: the passphrase, then its confirmation (the prompts go to stdout, as lightningd's).
    _start_with_stdin(l1, tmp_path, "correct horse\ncorrect horse\n")
    node_id = l1.rpc.getinfo()["id"]
    address = l1.rpc.newaddr("bech32")["bech32"]
    l1.daemon.stop()
    with open(os.path.join(l1.daemon.lightning_dir, "regtest", "hsm_secret"), "rb") as f:
        assert f.read(32) != bytes(32)   # the passphrase hash, not CLN's "no passphrase" zeros

    # Without the passphrase: refused.
    del l1.daemon.opts["hsm-passphrase"]
    l1.daemon.start(wait_for_initialized=False, stderr_redir=True)
    assert l1.daemon.wait() == 1
    assert l1.daemon.is_in_stderr("HSM initialization failed: Failed to load hsm_secret: "
                                  "Passphrase required but not provided")
    # A wrong one: refused.
    l1.daemon.opts["hsm-passphrase"] = None
    _start_with_stdin(l1, tmp_path, "wrong horse\n", wait_for_initialized=False, stderr_redir=True)
    assert l1.daemon.wait() == 1
    assert l1.daemon.is_in_stderr("Failed to load hsm_secret: Wrong passphrase")
    # The right one, asked once: the same node and wallet.
    _start_with_stdin(l1, tmp_path, "correct horse\n")
    assert l1.rpc.getinfo()["id"] == node_id
    assert l1.rpc.listaddresses(address)["addresses"][0]["bech32"] == address
