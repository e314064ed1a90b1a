"""NumPy arrays through logs: mimir.serialization.serialize_numpy / deserialize_numpy."""

from __future__ import annotations

import json
import logging

import numpy
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp
from numpy.lib.format import dtype_to_descr

import mimir
from mimir.serialization import deserialize_numpy, serialize_numpy

STRUCTURED = numpy.dtype(
    [("a", "<i4"), ("b", "<f8", (2,)), ("c", [("x", "u1"), ("y", "S2")]), (("title", "t"), "<f4")]
)


def _arrays() -> dict[str, numpy.ndarray]:
    rng = numpy.random.default_rng(0)
    square = rng.random((4, 5))
    return {
        "c-order": square,
        "f-order": numpy.asfortranarray(square),
        "non-contiguous": numpy.arange(40).reshape(5, 8)[::2, 1::3],
        "transposed": square.T,
        "3-d": rng.integers(-100, 100, size=(2, 3, 4), dtype=numpy.int16),
        "empty": numpy.zeros((0, 3)),
        "empty-1d": numpy.array([], dtype=numpy.uint8),
        "bool": numpy.array([True, False, True]),
        "int8": numpy.array([-128, 0, 127], dtype=numpy.int8),
        "uint64": numpy.array([0, 2**64 - 1], dtype=numpy.uint64),
        "big-endian": numpy.arange(6, dtype=">i4").reshape(2, 3),
        "float16": numpy.array([1.5, -0.0, numpy.inf], dtype=numpy.float16),
        "float32-nan": numpy.array([numpy.nan, 1.0], dtype=numpy.float32),
        "complex64": numpy.array([1 + 2j, -3j], dtype=numpy.complex64),
        "unicode": numpy.array(["Mímir", "\U0001f600", ""]),
        "bytes": numpy.array([b"ab", b"c"], dtype="S2"),
        "datetime64": numpy.array(["2024-01-01", "NaT"], dtype="datetime64[D]"),
        "timedelta64": numpy.array([1, 2], dtype="timedelta64[ms]"),
        "structured": numpy.zeros(3, dtype=STRUCTURED),
        "aligned-structured": numpy.ones(
            2, dtype=numpy.dtype([("a", "u1"), ("b", "<i8")], align=True)
        ),
    }


ARRAYS = _arrays()


def same_array(got: numpy.ndarray, want: numpy.ndarray) -> bool:
    """Equal dtype, shape and values (NaN equal to NaN where the dtype allows)."""
    if got.shape != want.shape:
        return False
    if want.dtype.names is not None:  # compare as the .npy format does (it drops align=True)
        same_layout = dtype_to_descr(got.dtype) == dtype_to_descr(want.dtype)
        return same_layout and bool(numpy.all(got == want))  # field by field, not padding
    if got.dtype != want.dtype:
        return False
    equal_nan = want.dtype.kind in "fcmM"
    return bool(numpy.array_equal(got, want, equal_nan=equal_nan))


def round_trip(path, value, **logger_kwargs):
    """Log {"value": value} with default=serialize_numpy, read back with deserialize_numpy."""
    with mimir.Logger(
        filename=path, formatter=None, default=serialize_numpy, **logger_kwargs
    ) as logger:
        logger.log({"value": value})
    (entry,) = mimir.load(path, object_hook=deserialize_numpy)
    return entry["value"]


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip_through_a_log(tmp_path, name):
    """An array logged with default=serialize_numpy loads back equal, same dtype and shape."""
    array = ARRAYS[name]
    got = round_trip(tmp_path / "a.jsonl", array)
    assert isinstance(got, numpy.ndarray)
    assert same_array(got, array)
    assert got.flags.writeable


@pytest.mark.parametrize("options", [{}, {"ensure_ascii": True}], ids=["orjson", "stdlib"])
def test_round_trip_is_the_same_on_both_encoders(tmp_path, options):
    """Arrays come back equal whichever JSON encoder the options select."""
    array = ARRAYS["f-order"]
    got = round_trip(tmp_path / "b.jsonl", {"nested": [array]}, **options)
    assert same_array(got["nested"][0], array)


def test_fortran_order_survives(tmp_path):
    """A Fortran-ordered array loads back Fortran-ordered; a C-ordered one C-ordered."""
    fortran = round_trip(tmp_path / "f.jsonl", ARRAYS["f-order"])
    c_order = round_trip(tmp_path / "c.jsonl", ARRAYS["c-order"])
    assert fortran.flags.f_contiguous
    assert not fortran.flags.c_contiguous
    assert c_order.flags.c_contiguous


def test_zero_dim_arrays_are_logged_as_numbers(tmp_path):
    """A 0-d array is a number in the log (numbers stay numbers), equal to its value."""
    got = round_trip(tmp_path / "z.jsonl", numpy.array(2.5))
    assert got == 2.5
    assert isinstance(got, float)


def test_serialized_form_is_plain_json():
    """serialize_numpy gives a dict of JSON types with the .npy header fields."""
    encoded = serialize_numpy(numpy.arange(6, dtype="<i2").reshape(2, 3))
    assert json.loads(json.dumps(encoded)) == encoded
    assert encoded["descr"] == "<i2"
    assert encoded["shape"] == [2, 3]
    assert encoded["fortran_order"] is False
    assert isinstance(encoded["__ndarray__"], str)


def test_serialize_refuses_other_values():
    """serialize_numpy raises TypeError for non-arrays, as json's default= must."""
    with pytest.raises(TypeError):
        serialize_numpy(object())
    with pytest.raises(TypeError):
        serialize_numpy([1, 2])


def test_object_arrays_are_left_to_the_built_in_conversion(tmp_path, capsys):
    """serialize_numpy refuses arrays of Python objects, which are then written as lists."""
    with pytest.raises(TypeError, match="dtype=object"):
        serialize_numpy(numpy.array([object()], dtype=object))
    path = tmp_path / "obj.jsonl"
    with mimir.Logger(filename=path, formatter=None, default=serialize_numpy) as logger:
        logger.log({"objects": numpy.array([{}, []], dtype=object)})
        logger.log({"fine": 1})
    assert mimir.load(path) == [{"objects": [{}, []]}, {"fine": 1}]
    assert capsys.readouterr().err == ""


def test_deserialize_leaves_other_dicts_alone():
    """deserialize_numpy returns dicts without "__ndarray__" unchanged."""
    plain = {"descr": "<f8", "shape": [1]}
    assert deserialize_numpy(plain) is plain


def test_default_as_import_path(tmp_path):
    """default="mimir.serialization.serialize_numpy" works like the function itself."""
    path = tmp_path / "path.jsonl"
    with mimir.Logger(
        filename=path, formatter=None, default="mimir.serialization.serialize_numpy"
    ) as logger:
        logger.log({"w": numpy.eye(3)})
    (entry,) = mimir.load(path, object_hook=deserialize_numpy)
    assert same_array(entry["w"], numpy.eye(3))


def test_works_through_the_stdlib_logging_path(tmp_path):
    """A JSONLFileHandler with JSONFormatter(default=serialize_numpy) round-trips arrays too."""
    path = tmp_path / "stdlib.jsonl"
    handler = mimir.JSONLFileHandler(path)
    handler.setFormatter(mimir.JSONFormatter(default=serialize_numpy))
    logger = logging.Logger("mimir-test-serialization")
    logger.addHandler(handler)
    logger.info({"w": ARRAYS["structured"]}, extra={"run": "r"})
    handler.close()
    (entry,) = mimir.load(path, object_hook=deserialize_numpy)
    assert entry["run"] == "r"
    assert same_array(entry["w"], ARRAYS["structured"])


@settings(max_examples=100, deadline=None)
@given(
    array=hnp.arrays(
        dtype=hnp.scalar_dtypes(),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
    )
)
def test_property_arrays_round_trip_through_json(array):
    """Any array of a scalar dtype survives entry -> JSON line -> object_hook unchanged."""
    formatter = mimir.JSONFormatter(default=serialize_numpy)
    record = logging.makeLogRecord({"msg": {"a": array}})
    got = json.loads(formatter.format(record), object_hook=deserialize_numpy)["a"]
    assert got.dtype == array.dtype
    assert got.shape == array.shape
    assert got.tobytes() == array.tobytes()
