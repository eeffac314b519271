"""onnx.checker's full check of an ONNX file (Debian's python3-onnx), then what the file
declares, as JSON: its inputs and outputs (name, element type, dims: a number or the name
of a dynamic axis), opset, IR version and metadata. Exit 1 with the checker's message when
the check fails.
    /usr/bin/python3 tests/common/onnx_check.py model.onnx
"""
import json
import sys

import onnx


def describe(value):
    tensor = value.type.tensor_type
    return {
        "name": value.name,
        "type": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
        "dims": [d.dim_param or d.dim_value for d in tensor.shape.dim],
    }


model = onnx.load(sys.argv[1])
try:
    onnx.checker.check_model(model, full_check=True)
except Exception as error:  # the checker's and shape inference's errors alike
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({
    "inputs": [describe(v) for v in model.graph.input],
    "outputs": [describe(v) for v in model.graph.output],
    "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0],
    "ir_version": model.ir_version,
    "metadata": {p.key: p.value for p in model.metadata_props},
}))
