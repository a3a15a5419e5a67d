"""Peer TLS: mutual auth carries traffic; a peer without a valid certificate, or with the wrong CN,
is refused before it may say HELLO; auto-tls works; etcd's flags build the right TLSInfo."""
from __future__ import annotations

import argparse
import logging
import ssl

import pytest

from fastkv.transport import TLSInfo
from fastkv.transport import frame as fr
from fastkv.transport.dial import dial
from fastkv.transport.tls import TLSConfigError, add_peer_tls_arguments, peer_tls_from_args, self_cert


def _mtls(pki, cn, allowed_cn=""):
    cert, key = pki.issue(cn)
    return TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file,
                   client_cert_auth=True, allowed_cn=allowed_cn)


def test_mutual_tls_carries_messages_and_snapshots(kit, pki):
    pb = kit.pb
    infos = {i: _mtls(pki, f"peer-{i}") for i in (1, 2)}
    blob = kit.tmp_path / "blob"
    blob.write_bytes(b"b" * 300_000)

    async def body():
        async with kit.cluster(2, scheme="https", server_tls=infos, client_tls=infos) as c:
            await c.connected()
            c.tr[1].send([pb.Message(type=pb.MSG_APP, to=2, frm=1, index=k) for k in range(20)])
            await kit.wait_for(lambda: len(c.sink[2].got) == 20)
            assert [m.index for m in c.sink[2].got] == list(range(20))
            msg = pb.Message(type=pb.MSG_SNAP, to=2, frm=1, term=1, snapshot=pb.Snapshot(
                metadata=pb.SnapshotMetadata(index=5, term=1)))
            assert await c.tr[1].send_snapshot(msg, str(blob))
            conn = next(iter(c.tr[2].inbound_streams.values()))
            cert = conn.transport.get_extra_info("ssl_object").getpeercert()
            assert ("commonName", "peer-1") in [kv for rdn in cert["subject"] for kv in rdn]

    kit.run(body())


def _dial_with(url, client: TLSInfo, kit):
    return dial(url, fr.hello(fr.CHANNEL_STREAM, kit.CLUSTER_ID, 2, 1),
                client_ssl=client.client_context(), timeout=10)


@pytest.mark.parametrize("who", ["no-cert", "other-ca", "wrong-cn", "wrong-hostname", "revoked"])
def test_peer_without_valid_certificate_is_refused(kit, pki, other_pki, caplog, who):
    caplog.set_level(logging.WARNING)
    pb = kit.pb
    server = {1: _mtls(pki, "peer-1", allowed_cn="peer-2"), 2: _mtls(pki, "peer-2")}
    if who == "no-cert":
        client = TLSInfo(trusted_ca_file=pki.ca_file)
    elif who == "other-ca":
        cert, key = other_pki.issue("peer-2")
        client = TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file)
    elif who == "wrong-cn":
        client = _mtls(pki, "peer-x")   # valid chain, CN not allowed by member 1
    elif who == "wrong-hostname":   # --peer-cert-allowed-hostname: member 2's SANs name it, peer-x's not
        cert, key = pki.issue("peer-2", ["peer-2.example", "127.0.0.1"], name="peer-2-san")
        server[2] = TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file, client_cert_auth=True)
        server[1].allowed_cn, server[1].allowed_hostname = "", "peer-2.example"
        cert, key = pki.issue("peer-2", name="peer-2-ip-only")  # the right CN, not valid for that hostname
        client = TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file)
    else:   # --peer-crl-file lists the certificate (member 2's own one is not listed)
        cert, key = pki.issue("peer-2", name="peer-2-revoked")
        client = TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file)
        server[1].allowed_cn = ""
        server[1].crl_file = pki.revocation_list([client.cert_file], str(kit.tmp_path / "crl.pem"))

    async def body():
        async with kit.cluster(2, scheme="https", server_tls=server,
                               client_tls={1: server[1], 2: server[2]}) as c:
            await c.connected()   # the legitimate peer-2 is accepted by member 1
            n_inbound = len(c.tr[1].inbound_streams)
            with pytest.raises((ConnectionError, ssl.SSLError, OSError, TimeoutError)):
                await _dial_with(c.url[1], client, kit)   # never gets ACCEPT
            assert len(c.tr[1].inbound_streams) == n_inbound
            # and the legitimate peer still is served
            c.tr[2].send([pb.Message(type=pb.MSG_VOTE, to=1, frm=2, term=99)])
            await kit.wait_for(lambda: any(m.term == 99 for m in c.sink[1].got))

    kit.run(body())
    expected = {"wrong-cn": "is not the allowed CN 'peer-2'", "wrong-hostname": "not valid for 'peer-2.example'",
                "revoked": "revoked"}.get(who)
    if expected:
        assert any(expected in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("hosts,skip,admitted", [(["127.0.0.9"], False, False), (["127.0.0.9"], True, True),
                                                  (["localhost"], False, True), (["nowhere.invalid"], False, False),
                                                  ([], False, True)])
def test_peer_listener_matches_client_certificate_sans_to_the_address(kit, pki, caplog, hosts, skip, admitted):
    """etcd's peer listener (transport.NewListener's checkSAN): a client certificate that names
    hosts must name the address it connects from (IP SANs, else a reverse or forward lookup of
    its DNS names), unless --experimental-peer-skip-client-san-verification."""
    caplog.set_level(logging.WARNING)
    pb = kit.pb
    infos = {i: _mtls(pki, f"peer-{i}") for i in (1, 2)}
    infos[1].skip_client_san_verify = skip
    cert, key = pki.issue("peer-2", hosts, name="peer-2-" + "-".join(hosts or ["none"]))
    client = TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file)

    async def body():
        async with kit.cluster(2, scheme="https", server_tls=infos, client_tls=infos) as c:
            await c.connected()
            n_inbound = len(c.tr[1].inbound_streams)
            if admitted:
                conn = await _dial_with(c.url[1], client, kit)
                conn.close()
                return
            with pytest.raises((ConnectionError, ssl.SSLError, OSError, TimeoutError)):
                await _dial_with(c.url[1], client, kit)
            assert len(c.tr[1].inbound_streams) == n_inbound
            c.tr[2].send([pb.Message(type=pb.MSG_VOTE, to=1, frm=2, term=99)])
            await kit.wait_for(lambda: any(m.term == 99 for m in c.sink[1].got))

    kit.run(body())
    if not admitted:
        what = "is valid for 127.0.0.9, not 127.0.0.1" if hosts == ["127.0.0.9"] else "does not match any of DNSNames"
        assert any(what in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("rule,value,admitted", [("cn", "peer-2", True), ("cn", "peer-3", False),
                                                   ("hostname", "127.0.0.1", True), ("hostname", "peer-2.example", False)])
def test_dialing_member_checks_the_server_certificate(kit, pki, caplog, rule, value, admitted):
    """etcd's --peer-cert-allowed-cn/-hostname bind its dialer too (one tls.Config base for both
    sides): a member refuses to talk to a peer whose served certificate fails them, before HELLO,
    on the raft stream and on the peer HTTP requests alike."""
    from fastkv.transport.peerrequests import PeerRequestError, version_of_peer

    caplog.set_level(logging.WARNING)
    pb = kit.pb
    infos = {i: _mtls(pki, f"peer-{i}") for i in (1, 2)}
    dialer = _mtls(pki, "peer-1")
    dialer.allowed_cn, dialer.allowed_hostname = (value, "") if rule == "cn" else ("", value)

    async def body():
        async with kit.cluster(2, scheme="https", server_tls=infos, client_tls={1: dialer, 2: infos[2]}) as c:
            c.tr[1].send([pb.Message(type=pb.MSG_VOTE, to=2, frm=1, term=7)])
            if admitted:
                await kit.wait_for(lambda: any(m.term == 7 for m in c.sink[2].got))
                assert (await version_of_peer([c.url[2]], client_ssl=c.tr[1].client_ssl))["etcdserver"]
                return
            await kit.wait_for(lambda: any("refused to talk to" in r.getMessage() for r in caplog.records))
            assert not c.tr[2].inbound_streams, "the refused server got a connection that said HELLO"
            with pytest.raises(PeerRequestError, match="refused to talk to the peer"):
                await version_of_peer([c.url[2]], client_ssl=c.tr[1].client_ssl, timeout=5)
            # member 2 dials member 1 with no such rule, and is heard
            c.tr[2].send([pb.Message(type=pb.MSG_VOTE, to=1, frm=2, term=9)])
            await kit.wait_for(lambda: any(m.term == 9 for m in c.sink[1].got))
            assert not any(m.term == 7 for m in c.sink[2].got)

    kit.run(body())
    if not admitted:
        what = f"is not the allowed CN {value!r}" if rule == "cn" else f"not valid for {value!r}"
        assert any(what in r.getMessage() and "server certificate" in r.getMessage() for r in caplog.records)


def test_auto_tls_works_and_reuses_its_certificate(kit, tmp_path):
    pb = kit.pb
    infos = {i: self_cert(str(tmp_path / f"auto{i}"), ["127.0.0.1"]) for i in (1, 2)}
    assert all(i.insecure_skip_verify and i.self_signed for i in infos.values())
    first = open(infos[1].cert_file, "rb").read()
    assert self_cert(str(tmp_path / "auto1"), ["127.0.0.1"]).cert_file == infos[1].cert_file
    assert open(infos[1].cert_file, "rb").read() == first

    async def body():
        async with kit.cluster(2, scheme="https", server_tls=infos, client_tls=infos) as c:
            await c.connected()
            c.tr[2].send([pb.Message(type=pb.MSG_VOTE_RESP, to=1, frm=2, term=3)])
            await kit.wait_for(lambda: len(c.sink[1].got) == 1)
            conn = next(iter(c.tr[1].inbound_streams.values()))
            assert conn.transport.get_extra_info("ssl_object").version().startswith("TLSv1.")

    kit.run(body())


def test_plain_peer_cannot_talk_to_a_tls_port(kit, pki):
    infos = {1: _mtls(pki, "peer-1")}

    async def body():
        async with kit.cluster(1, scheme="https", server_tls=infos, client_tls=infos) as c:
            plain = c.url[1].replace("https://", "http://")
            with pytest.raises((ConnectionError, TimeoutError, OSError)):
                await dial(plain, fr.hello(fr.CHANNEL_STREAM, kit.CLUSTER_ID, 2, 1),
                           client_ssl=None, timeout=5)

    kit.run(body())


def _parse(argv):
    p = argparse.ArgumentParser()
    add_peer_tls_arguments(p)
    return p.parse_args(argv)


def test_etcd_peer_flags_build_tls_info(pki, tmp_path):
    cert, key = pki.issue("peer-9")
    assert peer_tls_from_args(_parse([]), str(tmp_path), ["127.0.0.1"]) is None
    info = peer_tls_from_args(_parse(["--peer-cert-file", cert, "--peer-key-file", key,
                                      "--peer-trusted-ca-file", pki.ca_file, "--peer-client-cert-auth",
                                      "--peer-cert-allowed-cn", "peer-1"]), str(tmp_path), [])
    assert info.client_cert_auth and info.allowed_cn == "peer-1" and not info.skip_client_san_verify
    assert info.server_context().verify_mode == ssl.CERT_REQUIRED
    assert peer_tls_from_args(_parse(["--peer-cert-file", cert, "--peer-key-file", key,
                                      "--experimental-peer-skip-client-san-verification"]),
                              str(tmp_path), []).skip_client_san_verify
    auto = peer_tls_from_args(_parse(["--peer-auto-tls"]), str(tmp_path), ["127.0.0.1"])
    assert auto.self_signed and auto.cert_file.startswith(str(tmp_path / "fixtures" / "peer"))
    with pytest.raises(TLSConfigError, match="--peer-client-cert-auth"):
        peer_tls_from_args(_parse(["--peer-cert-file", cert, "--peer-key-file", key,
                                   "--peer-cert-allowed-cn", "x"]), str(tmp_path), [])
    with pytest.raises(TLSConfigError, match="--peer-key-file"):
        peer_tls_from_args(_parse(["--peer-cert-file", cert]), str(tmp_path), [])
    # etcd's ServerConfig: client-cert-auth without a CA file still requires a client certificate
    # (checked against the system's CAs), and a CA file alone requires one too
    assert TLSInfo(cert_file=cert, key_file=key, client_cert_auth=True).server_context().verify_mode == ssl.CERT_REQUIRED
    assert TLSInfo(cert_file=cert, key_file=key, trusted_ca_file=pki.ca_file).server_context().verify_mode \
        == ssl.CERT_REQUIRED
    assert TLSInfo(cert_file=cert, key_file=key).server_context().verify_mode == ssl.CERT_NONE
    with pytest.raises(TLSConfigError, match="no such file or directory"):
        TLSInfo(cert_file="/nonexistent.pem", key_file=key).server_context()


def test_cipher_suites_are_gos_names_and_restrict_both_sides(pki, tmp_path):
    """--cipher-suites takes Go's names (as etcd), is shared by the client and peer sides, restricts
    TLS 1.2 suites, and an unknown name is refused with etcd's text."""
    from fastkv.transport.tls import parse_cipher_suites, tls_from_flags

    cert, key = pki.issue("peer-c")
    suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256"
    assert parse_cipher_suites(suites) == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256")
    for side in ("client", "peer"):
        info = tls_from_flags(side, cert_file=cert, key_file=key, cipher_suites=suites)
        for ctx in (info.server_context(), info.client_context()):
            tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
            assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}, (side, tls12)
    with pytest.raises(TLSConfigError, match='unexpected TLS cipher suite "TLS_FOO"'):
        parse_cipher_suites("TLS_FOO")
    # the flags name the side they belong to
    with pytest.raises(TLSConfigError, match=r"\(--cert-file and --key-file\)"):
        tls_from_flags("client", cert_file=cert)
    auto = tls_from_flags("client", auto_tls=True, client_cert_auth=True, trusted_ca_file=pki.ca_file,
                          fixtures_dir=str(tmp_path / "fixtures" / "client"), hosts=["127.0.0.1:2379"])
    # etcd 3.4: auto-tls replaces the settings; nothing is verified against a self-signed certificate
    assert auto.self_signed and not auto.client_cert_auth and not auto.trusted_ca_file
    assert auto.server_context().verify_mode == ssl.CERT_NONE
