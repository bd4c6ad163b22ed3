"""Who may join the mesh: NATS credentials and TLS from [mesh], and the server's checks on a worker."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from shoal.config import parse_config
from shoal.errors import BackendUnavailable, BadInput, NotFound
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.nats_mesh import NatsMesh, connect
from shoal.runtime.swarm import Swarm
from shoal.runtime.worker import Worker
from shoal.runtime.workers import JOIN

from .conftest import MESH_CONFIG, NatsServer, WorkerProcess, mesh_env, mesh_toml


async def test_a_worker_with_wrong_credentials_cannot_join(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", "authorization { user: shoal, password: s3cret }").start()
    try:
        wrong = WorkerProcess(
            tmp_path / "worker", server.url, toml='[mesh]\nkind = "nats"\nuser = "shoal"\npassword = "guess"\n'
        ).start()
        assert wrong.wait(timeout=120) == 1
        out = wrong.output()
        assert "credentials were refused" in out and server.url in out and "Traceback" not in out, out
        with pytest.raises(BackendUnavailable, match="credentials were refused"):
            await connect(MeshConfig(kind="nats", url=server.url), "anonymous")
        nc = await connect(MeshConfig(kind="nats", url=server.url, user="shoal", password="s3cret"), "right")
        assert nc.is_connected
        await nc.close()
    finally:
        server.stop()


async def test_a_token_is_required_when_the_server_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = NatsServer(tmp_path / "nats", "authorization { token: t0ken-of-trust }").start()
    try:
        with pytest.raises(BackendUnavailable, match="credentials were refused"):
            await connect(MeshConfig(kind="nats", url=server.url, token="nope"), "wrong")
        monkeypatch.setenv("SHOAL_NATS_TOKEN", "t0ken-of-trust")  # kept out of shoal.toml
        mesh = await NatsMesh(MeshConfig(kind="nats", url=server.url), name="right").start()
        assert mesh.nc.is_connected and mesh.durable
        await mesh.close()
    finally:
        server.stop()


def _certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, who)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if who == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        out[f"{who}_cert"], out[f"{who}_key"] = d / f"{who}.pem", d / f"{who}-key.pem"
        out[f"{who}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_key"].write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return out


async def test_with_mutual_tls_only_a_client_with_a_certificate_of_the_ca_joins(tmp_path: Path) -> None:
    c = _certs(tmp_path / "certs")
    server = NatsServer(
        tmp_path / "nats",
        f'tls {{ cert_file: "{c["server_cert"]}", key_file: "{c["server_key"]}", ca_file: "{c["ca"]}", verify: true }}',
    ).start()
    url = server.url.replace("nats://", "tls://")
    try:
        with pytest.raises(BackendUnavailable):  # no client certificate
            await connect(MeshConfig(kind="nats", url=url, tls_ca=str(c["ca"])), "no-cert")
        with pytest.raises(BackendUnavailable):  # plain text to a TLS-only server
            await connect(MeshConfig(kind="nats", url=server.url), "plain")
        mesh = await NatsMesh(
            MeshConfig(kind="nats", url=url, tls_ca=str(c["ca"]), tls_cert=str(c["client_cert"]), tls_key=str(c["client_key"])),
            name="tls",
        ).start()
        assert mesh.nc.is_connected
        await mesh.close()
    finally:
        server.stop()


async def test_the_server_refuses_workers_with_unknown_bots_wrong_roles_or_another_protocol(
    tmp_path: Path, nats: NatsServer
) -> None:
    env = mesh_env(tmp_path / "server", mesh_toml(nats.url))
    local = parse_config(MESH_CONFIG)
    async with Swarm(env) as swarm:
        with pytest.raises(NotFound, match="not in the server's config: ghost, phantom"):
            await Worker(env.config.mesh, ["thinker", "ghost", "phantom"], local).start(warm_up=False)
        with pytest.raises(BadInput, match=r"cannot run in a worker: primary \(primary\)"):
            await Worker(env.config.mesh, ["primary"], local).start(warm_up=False)
        nc = swarm.host.mesh.nc
        reply = await nc.request(JOIN, json.dumps({"worker": "old", "bots": ["thinker"], "proto": 0}).encode(), timeout=5)
        err = json.loads(reply.data)
        assert err["code"] == "bad_input" and "protocol 0" in err["message"]
        assert swarm.host.registry.workers == {}  # none of them joined
