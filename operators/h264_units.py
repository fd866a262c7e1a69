"""H.264 NAL-unit plumbing for smart cutting: mp4 (length-prefixed, avcC) <-> Annex B (start codes).

An mp4 holds H.264 as length-prefixed NAL units with the parameter sets (SPS, PPS) in the
avcC box; a stream joined from pieces of different encoders needs each piece's parameter
sets in-band, so the pieces are put together as Annex B, where the mp4 muxer turns them
back into length-prefixed samples and builds the avcC from the first piece's sets.
"""
from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
START_CODE = b"\x00\x00\x00\x01"


class NotH264(ValueError):
    """The stream's extradata is not an avcC record this cutter can read."""


def parse_avcc(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [SPS..., PPS...]) of an avcC record (ISO/IEC 14496-15 5.3.3.1)."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise NotH264("extradata is not an avcC record (Annex B or missing)")
    length_size = (extradata[4] & 0x03) + 1
    units, at = [], 5
    for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count (a byte)
        if at >= len(extradata):
            raise NotH264("avcC record is truncated")
        count, at = extradata[at] & count_mask, at + 1
        for _ in range(count):
            size = int.from_bytes(extradata[at:at + 2], "big")
            unit = extradata[at + 2:at + 2 + size]
            if len(unit) != size:
                raise NotH264("avcC record is truncated")
            units.append(unit)
            at += 2 + size
    return length_size, units


def split_length_prefixed(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one mp4 sample."""
    units, at = [], 0
    while at + length_size <= len(data):
        size = int.from_bytes(data[at:at + length_size], "big")
        at += length_size
        if size == 0 or at + size > len(data):
            raise ValueError(f"malformed H.264 sample: NAL of {size} bytes at {at} in {len(data)}")
        units.append(data[at:at + size])
        at += size
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def annexb(units: list[bytes]) -> bytes:
    return b"".join(START_CODE + unit for unit in units)


def is_idr_sample(data: bytes, length_size: int) -> bool:
    """Does this mp4 sample hold an IDR slice (decoding may start here with nothing before it)?"""
    try:
        return any(nal_type(unit) == NAL_IDR for unit in split_length_prefixed(data, length_size))
    except ValueError:
        return False


def parameter_sets(units: list[bytes]) -> list[bytes]:
    return [unit for unit in units if nal_type(unit) in (NAL_SPS, NAL_PPS)]
