"""What the decoder keeps for one direction of a connection: the unparsed bytes, its
phase (start, sync, http1, preface, frames), its own HPACK decoder (HPACK state is per
direction), a DATA frame being streamed, a header block waiting for CONTINUATION, the
SETTINGS it sent and a count of its frames."""

from __future__ import annotations

import h11
import hpack
from hyperframe.frame import DataFrame, Frame

from .names import MAX_HPACK_TABLE


class SideState:
    """Parser state of one direction."""

    def __init__(self, max_header_list_size: int) -> None:
        self.buf = bytearray()
        self.phase = "start"         # start -> (http1) -> frames
        self.hpack = hpack.Decoder(max_header_list_size=max_header_list_size)
        self.frame_ts: float | None = None
        # a DATA frame whose body is being streamed
        self.data_frame: DataFrame | None = None
        self.data_length = 0
        self.data_left = 0
        self.data_pad: int | None = None
        self.data_seen = 0           # body bytes of the DATA frame consumed so far
        self.skip_left = 0           # bytes of an oversized non-header frame to discard
        # a header block waiting for CONTINUATION frames
        self.block: bytearray | None = None
        self.block_frame: Frame | None = None
        self.settings: dict[str, int] = {}
        self.frames: dict[str, int] = {}
        self.h11: h11.Connection | None = None
        self.max_header_list_size = max_header_list_size
        # joining mid-connection: the table may lack entries made before the capture
        self.hpack_partial = False
        self.sync_tries = 0
        self.skipped = 0

    def fresh_hpack(self) -> None:
        """Forget the table: it may be out of step after a block that could not decode."""
        self.hpack = hpack.Decoder(max_header_list_size=self.max_header_list_size)
        self.hpack.max_allowed_table_size = MAX_HPACK_TABLE

