"""A real OpenLDAP server (Debian's slapd) on a loopback port, with its own config and a small directory.

Directory: dc=example,dc=org with people carol (in engineering, which is nested in
portal-users), dave (portal-admins), erin (in no group) and two entries that both carry
uid=twin (one of them has two uid values); groups portal-users, portal-admins, engineering.
Without slapd the tests skip with the command that installs it; in CI
(``PORTAL_REQUIRE_LDAP=1``) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import free_port

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "directory-admin-secret"
USER_PASSWORD = "carol's directory password"
INSTALL = "apt-get install -y slapd ldap-utils"

CONFIG = """
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {dir}/data
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
access to attrs=userPassword by self read by anonymous auth by * none
access to * by * read
"""


def _person(uid: str, cn: str, extra: str = "", rdn: str = "") -> str:
    return (
        f"dn: {rdn or 'uid=' + uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\n"
        f"sn: {cn.split()[-1]}\ngivenName: {cn.split()[0]}\nmail: {uid}@example.org\n"
        f"userPassword: {USER_PASSWORD}\n{extra}\n"
    )


def _group(cn: str, *members: str) -> str:
    lines = "".join(f"member: {member}\n" for member in members)
    return f"dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}\n"


DIRECTORY = (
    f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
    f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
    f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    + _person("carol", "Carol Jones")
    + _person("dave", "Dave Smith")
    + _person("erin", "Erin Brown")
    + _person("twin", "Tina Twin")
    # A second entry with uid=twin: its uid attribute has two values, one of them twin.
    + _person("tom", "Tom Twin", extra="uid: twin\n", rdn="cn=Tom Twin")
    + _group("engineering", f"uid=carol,ou=people,{SUFFIX}")
    + _group("portal-users", f"cn=engineering,ou=groups,{SUFFIX}", f"uid=twin,ou=people,{SUFFIX}")
    + _group("portal-admins", f"uid=dave,ou=people,{SUFFIX}")
)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Slapd:
    """slapd on 127.0.0.1:``port`` with its configuration and database under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.tls_port = free_port()
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.tls_port}"
        self.ca_file = str(directory / "ca.pem")
        self.process: subprocess.Popen[bytes] | None = None

    def _make_certificates(self) -> None:
        """A throw-away CA and a server certificate for 127.0.0.1 (StartTLS and LDAPS)."""

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.directory, check=True, capture_output=True)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Portal test CA",
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        )
        (self.directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
        )  # fmt: skip

    def start(self) -> None:
        (self.directory / "data").mkdir(parents=True)
        self._make_certificates()
        config = self.directory / "slapd.conf"
        config.write_text(
            CONFIG.format(dir=self.directory, suffix=SUFFIX, root_dn=ROOT_DN, root_password=ROOT_PASSWORD)
        )
        log = (self.directory / "slapd.log").open("wb")
        # -d 0: stay in the foreground (the fixture owns the process), log nothing extra.
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(config), "-h", f"{self.uri}/ {self.ldaps_uri}/"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            assert self.process.poll() is None, (self.directory / "slapd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "slapd did not listen within 20 s"
            time.sleep(0.1)
        result = subprocess.run(
            ["ldapadd", "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=DIRECTORY,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"slapd did not take the directory: {result.stdout}{result.stderr}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Return ``settings.PORTAL_LDAP`` for a search-then-bind against this server."""
        return {**self.settings_for_uri(self.uri), **overrides}

    @staticmethod
    def settings_for_uri(uri: str) -> dict[str, Any]:
        """Return ``settings.PORTAL_LDAP`` for this test directory served at ``uri``."""
        return {
            "server_uri": uri,
            "start_tls": False,
            "ca_file": "",
            "bind_dn": ROOT_DN,
            "bind_password": ROOT_PASSWORD,
            "user_dn_template": "",
            "user_search_base": f"ou=people,{SUFFIX}",
            "user_filter": "(uid=%(user)s)",
            "group_search_base": f"ou=groups,{SUFFIX}",
            "group_filter": "(objectClass=groupOfNames)",
            "group_type": "nestedGroupOfNames",
            "group_map": {"portal-users": ["Members"], "portal-admins": ["Admins"]},
            "attributes": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
            "timeout": 3.0,
        }


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if not (Path(SLAPD).exists() and shutil.which("ldapadd")):
        message = f"the LDAP tests need OpenLDAP's slapd: {INSTALL}"
        if os.environ.get("PORTAL_REQUIRE_LDAP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()
