"""DNS record data as the reference tools write it (issue 19, item 7).

TXT rdata is shown as in a zone file and in ``dig``: every character-string quoted,
strings separated by a space, ``"`` and ``\\`` backslash-escaped, other bytes outside
printable ASCII as ``\\DDD``. Checked on a foreign capture (zeek's
``testing/btest/Traces/ipv6-fragmented-dns.pcap``, zeek/zeek a13de64fbbdb, BSD-3-Clause,
copied to ``tests/data/foreign/``) and against ``dig`` itself, asking a dnslib server on
loopback while the chef sniffs the same answers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import dnslib
import pytest

from netdumplings.chefs.dns import DNSLookupChef, parse_message, txt_presentation
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA, free_port

FOREIGN = DATA / "foreign"


def test_txt_strings_of_a_foreign_capture_are_space_separated_quoted_strings() -> None:
    lookups = [d["payload"] for d in read_dumplings(FOREIGN / "zeek_ipv6_frag_dns.pcap",
                                                   [DNSLookupChef])
               if d["payload"].get("event") == "lookup"]
    txt = [a["data"] for p in lookups for a in p["answers"] if a["type"] == "TXT"]
    assert len(txt) == 2
    # three character-strings, as dig shows them (tshark joins them with commas)
    assert txt[0] == ('"This TXT record should be ignored" "As it is just padding" "'
                      + "X" * 136 + '"')
    # the second record is long: its text is cut, and says how long it was
    assert txt[1].startswith('"This TXT record should be ignored" "As it is just padding" "X')
    assert txt[1].endswith(" chars)")


def test_txt_escapes_quote_backslash_and_non_printable_bytes_in_decimal() -> None:
    assert txt_presentation([b"a,b"]) == '"a,b"'   # one string, not two
    assert txt_presentation([b"a", b"b"]) == '"a" "b"'
    assert txt_presentation([b'say "hi"']) == r'"say \"hi\""'
    assert txt_presentation([b"back\\slash"]) == r'"back\\slash"'
    assert txt_presentation([b"\x00\t\x7f caf\xc3\xa9"]) == r'"\000\009\127 caf\195\169"'
    assert txt_presentation([b""]) == '""'


def test_fast_path_and_dnslib_show_txt_alike() -> None:
    from dataclasses import asdict

    from netdumplings.chefs.dns import fast_parse, parse_message_dnslib

    rec = dnslib.DNSRecord.question("t.example.", "TXT")
    rec.header.qr = 1
    rec.add_answer(dnslib.RR("t.example.", dnslib.QTYPE.TXT, ttl=5,
                             rdata=dnslib.TXT([b'v="1"', b"\\", b"\xff\x01"])))
    data = rec.pack()
    fast = fast_parse(data)
    assert fast is not None
    assert asdict(fast) == asdict(parse_message_dnslib(data))
    assert parse_message(data).answers[0]["data"] == r'"v=\"1\"" "\\" "\255\001"'


# strings a zone might hold: plain, several per record, quotes, backslashes, controls, UTF-8
_RECORDS = {
    "plain.txt.example.": [b"v=spf1 -all"],
    "multi.txt.example.": [b"first", b"second part", b""],
    "quote.txt.example.": [b'say "hi"', b"back\\slash", b"semi;colon"],
    "bytes.txt.example.": [b"tab\there", b"\x00\x7f\x80", b"caf\xc3\xa9"],
}


class _TxtResolver:
    def resolve(self, request, handler):
        reply = request.reply()
        strings = _RECORDS.get(str(request.q.qname))
        if strings is None:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        else:
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.TXT, ttl=30,
                                       rdata=dnslib.TXT(strings)))
        return reply


@pytest.mark.live
@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) not installed")
def test_txt_data_is_what_dig_prints(live_kitchen) -> None:
    """dig asks a dnslib server on loopback; the chef sniffs the answers. Each TXT record's
    data is exactly the rdata dig prints for it."""
    from dnslib.server import DNSServer

    port = free_port(socket.SOCK_DGRAM)
    server = DNSServer(_TxtResolver(), port=port, address="127.0.0.1")
    server.start_thread()
    dig_says = {}
    try:
        with live_kitchen(f"udp port {port}", [DNSLookupChef],
                          {"DNSLookupChef": {"ports": [port]}}) as k:
            for name in _RECORDS:
                out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short",
                                      "+tries=1", "+time=5", name, "TXT"],
                                     capture_output=True, text=True, timeout=20)
                assert out.returncode == 0, out.stderr
                dig_says[name] = out.stdout.strip()

            def lookups(dumplings):
                return [d["payload"] for d in dumplings
                        if d["payload"].get("event") == "lookup"]

            assert k.wait_for(lambda ds: len(lookups(ds)) >= len(_RECORDS), timeout=10)
    finally:
        server.stop()
    ours = {p["name"]: p["answers"][0]["data"] for p in lookups(k.dumplings)}
    assert set(ours) == set(_RECORDS)
    for name in _RECORDS:
        assert dig_says[name], name
        assert ours[name] == dig_says[name], name
