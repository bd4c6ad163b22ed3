"""Who may join the mesh: NATS credentials and TLS from [mesh], and the server's checks on a worker."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys
import pytest

from shoal.config import parse_config
from shoal.errors import BackendUnavailable, BadInput, ConfigError, NotFound
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.nats_mesh import NatsMesh, connect
from shoal.runtime.swarm import Swarm
from shoal.runtime.worker import Worker
from shoal.runtime.workers import JOIN

from .conftest import MESH_CONFIG, NatsServer, WorkerProcess, mesh_env, mesh_toml

# -- nkeys and JWTs, made here as `nk -gen` and `nsc` would make them ---------------------------


def new_nkey(prefix: int) -> tuple[str, str, Any]:
    """A fresh nkey of one role (``nkeys.PREFIX_BYTE_USER``, ``_ACCOUNT``, ``_OPERATOR``): (seed, public key, pair)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)  # prefix bytes + raw seed + CRC16, base32
    pair = nkeys.from_seed(bytearray(seed))
    return seed.decode(), pair.public_key.decode(), pair


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nats_jwt(signer: Any, issuer: str, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS v2 JWT: header ``ed25519-nkey``; ``jti`` is base32(SHA-512/256) of the standard claims; signed by ``signer``."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer, "name": name, "sub": subject}
    digest = hashlib.new("sha512_256", json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    claims["nats"] = dict(nats, version=2)
    signed = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()) + "." + _b64(json.dumps(claims).encode())
    return signed + "." + _b64(signer.sign(signed.encode()))


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}


class Operator:
    """A NATS operator with its system account and one account with JetStream, and users' .creds files."""

    def __init__(self) -> None:
        _, self.public, self.pair = new_nkey(nkeys.PREFIX_BYTE_OPERATOR)
        _, self.system, sys_pair = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
        _, self.account, self.account_pair = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
        self.jwt = nats_jwt(self.pair, self.public, self.public, "shoal-op", {"type": "operator", "system_account": self.system})
        self.accounts = {
            self.system: nats_jwt(self.pair, self.public, self.system, "SYS", {"type": "account", "limits": UNLIMITED}),
            self.account: nats_jwt(self.pair, self.public, self.account, "shoal", {"type": "account", "limits": dict(
                UNLIMITED, mem_storage=-1, disk_storage=-1, streams=-1, consumer=-1,  # JetStream on
            )}),
        }

    def server_config(self) -> str:
        """The nats-server block that trusts this operator (full-resolver setups use `nsc generate config`)."""
        preload = ", ".join(f"{pub}: {jwt}" for pub, jwt in self.accounts.items())
        return f"operator: {self.jwt}\nsystem_account: {self.system}\nresolver: MEMORY\nresolver_preload: {{ {preload} }}"

    def creds(self, path: Path, user: str = "worker") -> Path:
        """A user of the shoal account, as the .creds file `nsc generate creds` writes."""
        seed, public, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
        jwt = nats_jwt(self.account_pair, self.account, public, user,
                       {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path


def seed_file(path: Path) -> tuple[Path, str]:
    """A new user nkey: its seed written to ``path`` (as `nk -gen user > path`) and its public key."""
    seed, public, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
    path.write_text(seed + "\n")
    path.chmod(0o600)
    return path, public


async def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)



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


async def test_a_worker_with_the_right_nkey_seed_joins_and_one_with_another_seed_is_refused(tmp_path: Path) -> None:
    right, public = seed_file(tmp_path / "right.nk")
    other, _ = seed_file(tmp_path / "other.nk")
    server = NatsServer(tmp_path / "nats", f"authorization {{ users = [ {{ nkey: {public} }} ] }}").start()
    try:
        wrong = WorkerProcess(
            tmp_path / "worker", server.url, toml=f'[mesh]\nkind = "nats"\nnkey_seed = "{other}"\n'
        ).start()
        assert wrong.wait(timeout=120) == 1
        out = wrong.output()
        assert "credentials were refused" in out and server.url in out and "Traceback" not in out, out
        with pytest.raises(BackendUnavailable, match="credentials were refused"):
            await connect(MeshConfig(kind="nats", url=server.url), "no-seed")

        env = mesh_env(tmp_path / "server", mesh_toml(server.url, extra=f'nkey_seed = "{right}"'))
        async with Swarm(env) as swarm:  # the server itself joins with the seed
            assert swarm.host.mesh.durable
            worker = await Worker(env.config.mesh, ["thinker"], parse_config(MESH_CONFIG)).start(warm_up=False)
            try:
                await wait_until(lambda: swarm.host.registry.alive("thinker"))
                assert swarm.host.placement("thinker")["runs_on"][0].startswith(f"worker {worker.id}")
            finally:
                await worker.stop()
    finally:
        server.stop()


def test_a_seed_or_creds_file_that_is_missing_or_not_a_user_seed_is_named_before_connecting(tmp_path: Path) -> None:
    url = "nats://127.0.0.1:4222"  # never dialled: the files are checked first
    with pytest.raises(ConfigError, match=r"mesh.nkey_seed.*cannot read an nkey seed file at .*absent.nk"):
        MeshConfig(kind="nats", url=url, nkey_seed=str(tmp_path / "absent.nk")).connect_options("x")
    (tmp_path / "junk.nk").write_text("not a seed at all\n")
    with pytest.raises(ConfigError, match=r"junk.nk does not hold an nkey seed"):
        MeshConfig(kind="nats", url=url, nkey_seed=str(tmp_path / "junk.nk")).connect_options("x")
    account_seed, _, _ = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    (tmp_path / "account.nk").write_text(account_seed)
    with pytest.raises(ConfigError, match=r"is not a user's \(it starts with 'SA'"):
        MeshConfig(kind="nats", url=url, nkey_seed=str(tmp_path / "account.nk")).connect_options("x")
    (tmp_path / "seed.creds").write_text(account_seed)
    with pytest.raises(ConfigError, match=r"mesh.creds.*seed.creds is not a NATS .creds file"):
        MeshConfig(kind="nats", url=url, creds=str(tmp_path / "seed.creds")).connect_options("x")
    good, _ = seed_file(tmp_path / "good.nk")
    assert MeshConfig(kind="nats", url=url, nkey_seed=str(good)).connect_options("x")["nkeys_seed"] == str(good)
    with pytest.raises(ValueError, match="give one NATS credential, not token and nkey_seed"):
        MeshConfig(kind="nats", url=url, token="t", nkey_seed=str(good))


async def test_with_an_operator_a_users_creds_file_joins_and_one_from_another_operator_is_refused(tmp_path: Path) -> None:
    op = Operator()
    server = NatsServer(tmp_path / "nats", op.server_config()).start()
    try:
        stranger = Operator().creds(tmp_path / "stranger.creds")  # well formed, signed by an operator nobody trusts
        wrong = WorkerProcess(
            tmp_path / "worker", server.url, toml=f'[mesh]\nkind = "nats"\ncreds = "{stranger}"\n'
        ).start()
        assert wrong.wait(timeout=120) == 1
        out = wrong.output()
        assert "credentials were refused" in out and server.url in out and "Traceback" not in out, out
        with pytest.raises(BackendUnavailable, match="credentials were refused"):
            await connect(MeshConfig(kind="nats", url=server.url), "anonymous")

        env = mesh_env(tmp_path / "server", mesh_toml(server.url, extra=f'creds = "{op.creds(tmp_path / "server.creds", "server")}"'))
        async with Swarm(env) as swarm:
            assert swarm.host.mesh.durable  # the account's JetStream carries the durable turns
            mesh = env.config.mesh.model_copy(update={"creds": str(op.creds(tmp_path / "worker.creds"))})
            worker = await Worker(mesh, ["thinker"], parse_config(MESH_CONFIG)).start(warm_up=False)
            try:
                await wait_until(lambda: swarm.host.registry.alive("thinker"))
            finally:
                await worker.stop()
    finally:
        server.stop()
