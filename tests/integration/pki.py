"""Throwaway certificate authorities for the TLS tests (trustme), written to a temporary folder."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from tests.integration.client import RawClient


@dataclass
class Files:
    cert: Path
    key: Path

    def write(self, leaf: trustme.LeafCert) -> None:
        """Replace both files (as an operator's certificate renewal would)."""
        self.cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        self.key.write_bytes(leaf.private_key_pem.bytes())


class Pki:
    """`ca` is the one the gateway and clients trust; `other_ca` signs what must be refused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA(organization_name="Gateway Test CA")
        self.other_ca = trustme.CA(organization_name="Some Other CA")
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.other_ca_file = folder / "other-ca.pem"
        self.other_ca.cert_pem.write_to_path(str(self.other_ca_file))

    def issue(self, name: str, *hosts: str, ca: trustme.CA | None = None, common_name: str | None = None,
              expired: bool = False) -> Files:
        kw = {}
        if expired:
            now = datetime.now(UTC)
            kw = {"not_before": now - timedelta(days=30), "not_after": now - timedelta(days=1)}
        leaf = (ca or self.ca).issue_cert(*(hosts or ("localhost", "127.0.0.1")), common_name=common_name, **kw)
        files = Files(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        files.write(leaf)
        return files

    def client_context(self, files: Files | None = None, *, version: ssl.TLSVersion | None = None,
                       ca_file: Path | None = None) -> ssl.SSLContext:
        """A Python ssl client trusting `ca` (or ca_file), optionally with a client certificate,
        optionally pinned to one protocol version."""
        ctx = ssl.create_default_context(cafile=str(ca_file or self.ca_file))
        if version is not None:
            if version < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let our side offer it: the server must refuse
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1, on purpose
                ctx.minimum_version = ctx.maximum_version = version
        if files is not None:
            ctx.load_cert_chain(files.cert, files.key)
        return ctx


async def tls_connect(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> RawClient:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_hostname), 5)
    return RawClient(reader, writer)


def peer_certificate(client: RawClient) -> bytes:
    ssl_obj = client.writer.get_extra_info("ssl_object")
    assert ssl_obj is not None
    der = ssl_obj.getpeercert(binary_form=True)
    assert der is not None
    return bytes(der)


def client_hello() -> bytes:
    """The first bytes a TLS client sends."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
