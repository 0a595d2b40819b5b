"""Who may join: a SuperLink with TLS and SuperNode authentication on loopback.

The test makes its own certificate authority, a server certificate for
127.0.0.1 and one SSH-format P-384 key pair per SuperNode (the ``cryptography``
package), registers the parties' public keys with ``flwr supernode register``
and runs the app for one round. A SuperNode with an unregistered key, one that
does not trust the CA and one speaking plain HTTP are refused, and each refusal
shows in the logs. The SuperNodes run with Flower's default isolation (one
``flwr-clientapp`` process per message), the path the other deployment tests,
on the warm executor, do not take. Every process runs in its own session and
its whole group is ended, also on failure (:mod:`tests.deployment_support`).
``docs/security.md`` explains the same commands.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otm_flower.data import MultiViewDataset, load_dataset, save_npz
from tests.deployment_support import (
    BIN,
    LOCALHOST,
    ROOT,
    Processes,
    flwr_env,
    free_port,
    wait_for_log,
    wait_for_port,
)

pytestmark = pytest.mark.slow


# Certificates and keys ------------------------------------------------------


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A certificate for ``subject``; ``issuer=None``: a self-signed CA."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = (
        name
        if issuer is None
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True
        )
    )
    if issuer is not None:
        san = [
            x509.IPAddress(ipaddress.ip_address(LOCALHOST)),
            x509.DNSName("localhost"),
        ]
        builder = builder.add_extension(
            x509.SubjectAlternativeName(san), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def make_ca(folder: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate ``<name>.crt`` and its key."""
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _certificate(name, key.public_key(), None, key)
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key


def make_server_cert(
    folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca_name: str
) -> tuple[Path, Path]:
    """``server.pem`` (for 127.0.0.1 and localhost, signed by the CA) and its key."""
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _certificate(LOCALHOST, key.public_key(), (ca_name, ca_key), ca_key)
    pem = folder / "server.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pem, _write_key(key, folder / "server.key")


def make_node_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's P-384 key pair in OpenSSH format: ``name`` and ``name.pub``."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = folder / name
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public = folder / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(flwr_env(tmp_path), tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


def cli_config(home: Path, port: int, ca: Path) -> None:
    """The Flower CLI's ``config.toml``: connection ``secure`` over TLS with ``ca``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "secure"\n\n'
        f'[superlink.secure]\naddress = "{LOCALHOST}:{port}"\n'
        f'root-certificates = "{ca}"\n'
    )


def small_two_view_set(path: Path) -> Path:
    """240 samples of two Handwritten views (mor, fou) as the agents' data file."""
    full = load_dataset("handwritten")
    rows = np.random.default_rng(0).permutation(full.n_samples)[:240]
    views = [np.asarray(full.views[3])[rows], np.asarray(full.views[1])[rows]]
    data = MultiViewDataset("hw-small", views, full.labels[rows], ["mor", "fou"])
    return save_npz(data, path)


def supernode_args(port: int, *extra: str) -> list[str]:
    """``flower-supernode`` towards the SuperLink on ``port``, plus ``extra``."""
    return [
        "flower-supernode",
        "--superlink",
        f"{LOCALHOST}:{port}",
        "--port",
        str(free_port()),
        "--max-retries",
        "2",
        "--max-wait-time",
        "30",
        *extra,
    ]


# The federation -------------------------------------------------------------


def start_superlink(procs: Processes, keys: Path) -> tuple[int, Path]:
    """A SuperLink with TLS and SuperNode authentication; its port and CA."""
    ca, ca_key = make_ca(keys, "otm-ca")
    server_pem, server_key = make_server_cert(keys, ca_key, "otm-ca")
    port = free_port()
    procs.start(
        "superlink",
        "flower-superlink",
        "--ssl-ca-certfile",
        str(ca),
        "--ssl-certfile",
        str(server_pem),
        "--ssl-keyfile",
        str(server_key),
        "--enable-supernode-auth",
        "--port",
        str(port),
    )
    cli_config(Path(procs.env["FLWR_HOME"]), port, ca)
    wait_for_port(port)
    return port, ca


def start_parties(procs: Processes, port: int, ca: Path, keys: Path, data: Path):
    """Register two parties' public keys, then start their SuperNodes."""
    for pid in range(2):
        private, public = make_node_keys(keys, f"node{pid}")
        register = subprocess.run(
            [str(BIN / "flwr"), "supernode", "register", str(public), "secure"],
            env=procs.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert register.returncode == 0, register.stdout + register.stderr
        assert "registered successfully" in register.stdout
        node_config = f'partition-id={pid} num-partitions=2 dataset="{data}"'
        procs.start(
            f"supernode{pid}",
            *supernode_args(port, "--root-certificates", str(ca))
            + ["--auth-supernode-private-key", str(private)]
            + ["--node-config", node_config],
        )


def start_intruders(
    procs: Processes, port: int, ca: Path, keys: Path
) -> dict[str, subprocess.Popen]:
    """Three SuperNodes that must be refused: an unregistered key, a node that
    does not trust the SuperLink's CA (with a registered key), plain HTTP."""
    stranger, _ = make_node_keys(keys, "stranger")
    other_ca, _ = make_ca(keys, "other-ca")
    key = "--auth-supernode-private-key"
    return {
        "unregistered": procs.start(
            "unregistered",
            *supernode_args(port, "--root-certificates", str(ca), key, str(stranger)),
        ),
        "wrong-ca": procs.start(
            "wrong-ca",
            *supernode_args(
                port, "--root-certificates", str(other_ca), key, str(keys / "node0")
            ),
        ),
        "plaintext": procs.start("plaintext", *supernode_args(port, "--insecure")),
    }


def run_one_round(procs: Processes, out: Path) -> dict:
    """``flwr run`` of this app over the ``secure`` connection; its result."""
    run_config = (
        "num-server-rounds=1 num-agents=2 local-epochs=1 latent-dim=8 "
        "hidden-dim=16 mix-batch-size=32 barycenter-iterations=2 "
        f'round-timeout=120 output-dir="" diagnostics-dir="" out="{out}"'
    )
    flwr = subprocess.run(
        [str(BIN / "flwr"), "run", str(ROOT), "secure", "--stream"]
        + ["--run-config", run_config],
        env=procs.env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    logs = flwr.stdout + flwr.stderr
    assert flwr.returncode == 0, logs[-3000:]
    return json.loads(out.read_text())


# The test -------------------------------------------------------------------

#: What each refused SuperNode logs (a plaintext client sees the TLS port drop
#: the connection, worded either way), and what the SuperLink logs for the stranger.
REFUSED: dict[str, str | tuple[str, ...]] = {
    "unregistered": "Failed to activate SuperNode",
    "wrong-ca": "CERTIFICATE_VERIFY_FAILED",
    "plaintext": (
        "Server disconnected without sending a response",
        "Connection reset by peer",
    ),
}
UNKNOWN_KEY = "No SuperNode found with the given public key"


def test_only_registered_supernodes_over_tls_join(procs: Processes, tmp_path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    port, ca = start_superlink(procs, keys)
    data = small_two_view_set(tmp_path / "agent-data.npz")
    start_parties(procs, port, ca, keys, data)
    intruders = start_intruders(procs, port, ca, keys)

    result = run_one_round(procs, tmp_path / "result.json")
    assert [a["id"] for a in result["agents"]] == [0, 1]
    assert all(a["round"] == 1 and 0.0 < a["acc"] <= 1.0 for a in result["agents"])

    for name, needle in REFUSED.items():
        wait_for_log(procs.log(name), needle, timeout=60)
        assert intruders[name].wait(60) != 0, f"{name} was not refused"
    link = procs.log("superlink").read_text(errors="replace")
    assert UNKNOWN_KEY in link
    assert link.count("[Fleet.ActivateNode] Activated") == 2
