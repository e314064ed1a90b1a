"""Round-trip NumPy arrays through JSON entries.

Without any option an array is written as a (nested) list of numbers, which loses
its dtype and, for an empty array, its shape. To get the same array back, pass
:func:`serialize_numpy` as ``default=`` when logging and :func:`deserialize_numpy`
as ``object_hook=`` when reading::

    logger = mimir.Logger(filename="run.jsonl", default=serialize_numpy)
    logger.log({"iteration": 0, "weights": numpy.eye(3)})
    entries = mimir.load("run.jsonl", object_hook=deserialize_numpy)

An array becomes ``{"descr": ..., "fortran_order": ..., "shape": [...],
"__ndarray__": "<base64 of the raw bytes>"}``; dtype, shape and memory order
survive the round trip. NumPy is imported only when an array is met.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["deserialize_numpy", "serialize_numpy"]


def serialize_numpy(obj: Any) -> dict[str, Any]:
    """Encode a NumPy array as a JSON-ready dict; raise ``TypeError`` for anything else.

    The ``TypeError`` leaves other values, and arrays of Python objects, to the
    formatter's own conversions (an object array becomes a list).
    """
    numpy = _numpy_if_loaded()
    if numpy is None or not isinstance(obj, numpy.ndarray):
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
    if obj.dtype.hasobject:
        raise TypeError("arrays of Python objects (dtype=object) cannot be written as JSON")
    from numpy.lib.format import header_data_from_array_1_0

    if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        obj = numpy.ascontiguousarray(obj)
    header = header_data_from_array_1_0(obj)
    order = "F" if header["fortran_order"] else "C"
    data = obj.tobytes(order=order)
    return {
        **header,
        "shape": list(header["shape"]),
        "__ndarray__": base64.b64encode(data).decode(),
    }


def deserialize_numpy(dct: dict[str, Any]) -> Any:
    """Turn a dict made by :func:`serialize_numpy` back into an array; return others as is."""
    if "__ndarray__" not in dct:
        return dct
    import numpy
    from numpy.lib.format import descr_to_dtype

    data = base64.b64decode(dct["__ndarray__"])
    order = "F" if dct["fortran_order"] else "C"
    flat = numpy.frombuffer(data, dtype=descr_to_dtype(_descr_from_json(dct["descr"])))
    # A writable array in the memory order it was logged in.
    return flat.reshape(dct["shape"], order=order).copy(order=order)


def _descr_from_json(descr: Any) -> Any:
    """Undo what JSON did to a structured dtype's description (tuples became lists)."""
    if isinstance(descr, str):
        return descr
    fields = []
    for field in descr:
        name = tuple(field[0]) if isinstance(field[0], list) else field[0]
        if len(field) == 3:
            fields.append((name, _descr_from_json(field[1]), tuple(field[2])))
        else:
            fields.append((name, _descr_from_json(field[1])))
    return fields


def _numpy_if_loaded() -> Any:
    """NumPy if the program already imported it: no array can exist otherwise."""
    import sys

    return sys.modules.get("numpy")
