"""Hypothesis strategies that damage a file's bytes the ways real files get damaged."""

from hypothesis import strategies as st


def damaged(base, header=64):
    """Bytes made from ``base`` by 1-4 edits: flipped or replaced bytes (often in the header),
    truncation, inserted or deleted runs, or a header spliced onto other data."""
    size = len(base)
    position = st.one_of(st.integers(0, min(header, size - 1)), st.integers(0, size - 1))
    edit = st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("set"), position, st.sampled_from([0, 0x7F, 0x80, 0xFF])),
        st.tuples(st.just("truncate"), st.integers(0, size), st.just(0)),
        st.tuples(st.just("insert"), position, st.integers(1, 64)),
        st.tuples(st.just("delete"), position, st.integers(1, 64)),
        st.tuples(st.just("repeat"), st.integers(1, header), st.integers(2, 50)),
    )
    return st.lists(edit, min_size=1, max_size=4).map(lambda edits: apply(base, edits))


def apply(base, edits):
    data = bytearray(base)
    for kind, where, value in edits:
        where = min(where, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[where] ^= value
        elif kind == "set" and data:
            data[where] = value
        elif kind == "truncate":
            del data[where:]
        elif kind == "insert":
            data[where:where] = bytes([0xA5]) * value
        elif kind == "delete":
            del data[where : where + value]
        elif kind == "repeat":
            data = data[:where] * value + data[where:]
    return bytes(data)
