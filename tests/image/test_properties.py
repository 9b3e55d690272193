"""Property tests: the builder round-trips through the parser, every covered byte is protected, streaming is exact."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.image import Chip, StreamValidator, VerdictCode, build_image, inspect_image

_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    max_size=31,
)
_fast = settings(max_examples=60, deadline=None)


@_fast
@given(
    chip=st.sampled_from(list(Chip)),
    project=_text.filter(bool),
    version=_text.filter(bool),
    secure_version=st.integers(0, 0xFFFFFFFF),
    size=st.integers(4096, 300_000),
    seed=st.integers(0, 2**32),
    idf_version=st.sampled_from(["v4.4.8", "v5.2.2", "v5.4", "v5.5.1", "6.0"]),
)
def test_builder_output_parses_back_to_the_same_fields(
    chip: Chip, project: str, version: str, secure_version: int, size: int, seed: int, idf_version: str
) -> None:
    data = build_image(chip=chip, project=project, version=version, secure_version=secure_version, size=size,
                       seed=seed, idf_version=idf_version)  # fmt: skip
    assert len(data) == (size + 15) // 16 * 16
    assert data == build_image(chip=chip, project=project, version=version, secure_version=secure_version, size=size,
                               seed=seed, idf_version=idf_version)  # fmt: skip
    info = inspect_image(data)
    assert info.verdict.code is VerdictCode.OK, info.verdict.message
    assert info.app is not None
    assert (info.chip, info.chip_id) == (chip, int(chip))
    assert (info.app.project, info.app.version, info.app.secure_version) == (project, version, secure_version)
    assert info.app.idf_version == idf_version
    assert (info.size, info.image_size, info.trailing_bytes) == (len(data), len(data), 0)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.checksum_ok and info.digest_ok and info.hash_appended


@_fast
@given(
    chip=st.sampled_from(list(Chip)),
    data=st.data(),
)
def test_any_change_to_a_byte_covered_by_the_digest_is_detected(chip: Chip, data: st.DataObject) -> None:
    image = build_image(chip=chip, project="prop", version="1.0", size=8192, seed=3)
    digest_end = len(image)  # the digest covers [0, len-32); the digest itself is the other half of the check
    offset = data.draw(st.integers(0, digest_end - 1), label="offset")
    xor = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(image)
    damaged[offset] ^= xor
    info = inspect_image(bytes(damaged))
    assert not info.verdict.ok, (offset, xor, info.verdict)


@_fast
@given(
    chip=st.sampled_from(list(Chip)),
    cuts=st.lists(st.integers(1, 20_000), max_size=12),
    tail=st.sampled_from([b"", b"\xff" * 100, b"junk" * 5]),
)
def test_streaming_in_any_chunks_equals_the_whole_file(chip: Chip, cuts: list[int], tail: bytes) -> None:
    image = build_image(chip=chip, project="s", version="v", size=20_000) + tail
    whole = inspect_image(image)
    sv = StreamValidator()
    pos = 0
    for cut in sorted(set(cuts)):
        sv.feed(image[pos:cut])
        pos = max(pos, cut)
    sv.feed(image[pos:])
    assert sv.finish() == whole


@_fast
@given(chip=st.sampled_from(list(Chip)), keep=st.integers(0, 8191))
def test_every_truncation_is_refused(chip: Chip, keep: int) -> None:
    image = build_image(chip=chip, project="t", version="1", size=8192)
    info = inspect_image(image[:keep])
    assert info.verdict.code is VerdictCode.TRUNCATED
