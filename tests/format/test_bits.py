"""LSB-first bit streams: round trips against an independent bit-by-bit reference, and hand-computed bytes."""
import numpy as np
import pytest

from ssvq_deploy.errors import FormatError
from ssvq_deploy.format import pack_bits, packed_nbytes, unpack_bits


def reference_pack(values, bits):
    """Bit-by-bit packer written from docs/format.md: value i's bit t is stream bit i*b+t = bit j%8 of byte j//8."""
    out = bytearray((len(values) * bits + 7) // 8)
    for i, v in enumerate(values):
        for t in range(bits):
            j = i * bits + t
            if (int(v) >> t) & 1:
                out[j // 8] |= 1 << (j % 8)
    return np.frombuffer(bytes(out), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_random_widths_and_counts(seed):
    rng = np.random.default_rng(seed)
    for bits in range(1, 17):
        for count in (0, 1, 7, 8, 9, 13, int(rng.integers(1, 300))):
            values = rng.integers(0, 1 << bits, size=count)
            if count:
                values[0] = (1 << bits) - 1  # the extreme values are present
            packed = pack_bits(values, bits)
            assert packed.dtype == np.uint8 and packed.ndim == 1
            assert packed.size == packed_nbytes(count, bits) == (count * bits + 7) // 8
            np.testing.assert_array_equal(packed, reference_pack(values, bits), err_msg=f"bits={bits} n={count}")
            back = unpack_bits(packed, count, bits)
            np.testing.assert_array_equal(back, values)
            spare = packed.size * 8 - count * bits
            if spare:  # unused high bits of the last byte are zero
                assert int(packed[-1]) >> (8 - spare) == 0


def test_hand_computed_bytes():
    # 3-bit [1, 2, 3]: stream bits 1,0,0 | 0,1,0 | 1,1,0 -> byte0 = 1 + 16 + 64 + 128 = 0xD1, byte1 = 0x00
    np.testing.assert_array_equal(pack_bits(np.array([1, 2, 3]), 3), [0xD1, 0x00])
    # 4-bit: the first value sits in the low nibble
    np.testing.assert_array_equal(pack_bits(np.array([0x1, 0xF, 0x3]), 4), [0xF1, 0x03])
    # 1-bit (sign stream): value i is bit i%8 of byte i//8
    np.testing.assert_array_equal(pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1]), 1), [0x01, 0x01])
    np.testing.assert_array_equal(pack_bits(np.array([0, 0, 0, 0, 0, 0, 0, 1]), 1), [0x80])
    # 10-bit 0x2AB: low 8 bits first, then the 2 high bits
    np.testing.assert_array_equal(pack_bits(np.array([0x2AB]), 10), [0xAB, 0x02])
    np.testing.assert_array_equal(unpack_bits(np.array([0xD1, 0x00], np.uint8), 3, 3), [1, 2, 3])
    np.testing.assert_array_equal(unpack_bits(np.array([0xAB, 0x02], np.uint8), 1, 10), [0x2AB])


def test_errors():
    with pytest.raises(FormatError, match="bit width"):
        pack_bits(np.array([0]), 0)
    with pytest.raises(FormatError, match="bit width"):
        pack_bits(np.array([0]), 17)
    with pytest.raises(FormatError, match="out of range"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(FormatError, match="out of range"):
        pack_bits(np.array([-1]), 3)
    with pytest.raises(FormatError, match="needs 2 bytes, got 1"):
        unpack_bits(np.array([0], np.uint8), 3, 3)
    with pytest.raises(FormatError, match="uint8"):
        unpack_bits(np.array([0, 0], np.int32), 3, 3)
