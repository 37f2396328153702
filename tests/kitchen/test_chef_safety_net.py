"""A decoder's own safety net (it catches its bugs so the flow's other dumplings survive)
still counts the bug as a chef error: before, the HTTP/2 chef logged a traceback and the run
ended with "0 chef errors" (issue 23, item 6).

The bug is planted in a subclass of the real decoder, since the bundled decoders have no
known bug to trigger; everything else (capture, kitchen, chef shell) is the real one."""

from __future__ import annotations

import pytest

from conftest import DATA, cook

from netdumplings.chefs.http1 import Http1Chef, Http1Decoder
from netdumplings.chefs.http2 import Http2Chef, Http2Decoder
from netdumplings.chefs.zmtp import ZmtpChef, ZmtpDecoder


class _Planted(RuntimeError):
    pass


class BuggyHttp2Decoder(Http2Decoder):
    def _run(self, *args, **kwargs):  # type: ignore[override]
        raise _Planted("planted HTTP/2 bug")


class BuggyHttp2Chef(Http2Chef):
    def new_flow_state(self, flow):  # type: ignore[override]
        return BuggyHttp2Decoder(midstream=not getattr(flow, "roles_known", True))


class BuggyHttp1Decoder(Http1Decoder):
    def _feed_requests(self, *args, **kwargs):  # type: ignore[override]
        raise _Planted("planted HTTP/1 bug")


class BuggyHttp1Chef(Http1Chef):
    def new_flow_state(self, flow):  # type: ignore[override]
        return BuggyHttp1Decoder()


class BuggyZmtpDecoder(ZmtpDecoder):
    def feed(self, data):  # type: ignore[override]
        raise _Planted("planted ZMTP bug")


class BuggyZmtpChef(ZmtpChef):
    def new_flow_state(self, flow):  # type: ignore[override]
        state = super().new_flow_state(flow)
        state.decoders = {d: BuggyZmtpDecoder(*_zmtp_args(self)) for d in state.decoders}
        return state


def _zmtp_args(chef: ZmtpChef) -> tuple:
    o = chef.options
    return (o.max_shown, o.max_frames, o.max_command, o.max_frame, False)


@pytest.mark.parametrize("chef, capture", [
    (BuggyHttp2Chef, "http2-h2c.pcap"),
    (BuggyHttp1Chef, "http1-keepalive.pcap"),
    (BuggyZmtpChef, "zmtp-req-rep.pcap"),
], ids=["http2", "http1", "zmtp"])
def test_a_bug_caught_by_the_decoder_is_a_chef_error(chef, capture, caplog):
    dumplings, kitchen = cook(DATA / capture, [chef])
    errors = kitchen.chef_errors.get(chef.__name__, 0)
    assert errors >= 1, kitchen.chef_errors
    assert kitchen.stats.chef_errors == errors
    # the flow still says, in a dumpling, that its decoding stopped on the bug
    assert any("planted" in d["payload"].get("summary", "") for d in dumplings), dumplings[:3]
    assert any("planted" in r.getMessage() or (r.exc_info and "planted" in str(r.exc_info[1]))
               for r in caplog.records)


def test_the_real_decoders_make_no_chef_error_on_their_captures():
    """The counter counts bugs, not bad input: the unplanted chefs on the same captures."""
    for chef, capture in ((Http2Chef, "http2-h2c.pcap"), (Http1Chef, "http1-keepalive.pcap"),
                          (ZmtpChef, "zmtp-req-rep.pcap")):
        dumplings, kitchen = cook(DATA / capture, [chef])
        assert dumplings and kitchen.stats.chef_errors == 0, (chef, kitchen.chef_errors)
