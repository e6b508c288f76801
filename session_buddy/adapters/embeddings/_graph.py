"""Look up embedding rows in int8 before dequantising them: a byte-level rewrite of an ONNX graph.

The packaged model stores its weights as int8 with a float scale and dequantises them in the
graph (``Cast(q) -> Mul(scale)``). onnxruntime's constant folding turns every such weight into
float32 at load, which is what makes queries fast for the matrix products, but it also turns
the word-embedding table (30,522 x 384) into a 47 MB float copy of which a query reads a few
rows. :func:`gather_before_dequantize` moves the look-up in front of the dequantisation:

    Cast(q) -> Mul(s) -> Gather(ids)   becomes   Gather(q, ids), Gather(s, ids) -> Cast -> Mul

for a table with one scale per row (``s`` of shape ``[rows, 1]``). The values are the same
bits (the same cast and product of the same numbers, done per looked-up row), so the
embeddings do not change; the int8 table stays int8 (11.7 MB).

It works on the protobuf wire format (nodes and initializer names only; the tensors are
copied as bytes), so it needs neither the ``onnx`` package nor a second copy of the weights
in Python objects. A graph that does not have the pattern is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ModelProto.graph, GraphProto.node / .initializer, NodeProto.input / .output / .name /
# .op_type / .domain, TensorProto.dims / .name (onnx.proto field numbers).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 3, 4, 5, 7
_TENSOR_DIMS, _TENSOR_NAME = 1, 8
_ATTRIBUTE_NAME, _ATTRIBUTE_I = 1, 3


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: memoryview) -> list[tuple[int, int, int, int]]:
    """``(field number, wire type, start, end)`` of each field of a message; ``start:end``
    is the whole field (key included), so unchanged fields are copied as they are."""
    found = []
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        found.append((number, wire, start, pos))
    return found


def _payload(data: memoryview, start: int) -> memoryview:
    """The bytes of the length-delimited field that begins at ``start``."""
    _, pos = _varint(data, start)
    length, pos = _varint(data, pos)
    return data[pos : pos + length]


def _field(number: int, payload: bytes | memoryview) -> bytes:
    return b"".join((_encode_varint(number << 3 | 2), _encode_varint(len(payload)), payload))


@dataclass
class _Node:
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    op: str = ""
    domain: str = ""
    #: The attributes as encoded fields, and their names with an int value where there is one.
    attributes: list[bytes] = field(default_factory=list)
    ints: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: memoryview) -> _Node:
        node = cls()
        for number, wire, start, end in _fields(data):
            if wire != 2:
                continue
            if number == _NODE_ATTRIBUTE:
                node.attributes.append(bytes(data[start:end]))
                name, value = _attribute(_payload(data, start))
                node.ints[name] = value
                continue
            text = bytes(_payload(data, start)).decode("utf-8")
            if number == _NODE_INPUT:
                node.inputs.append(text)
            elif number == _NODE_OUTPUT:
                node.outputs.append(text)
            elif number == _NODE_OP:
                node.op = text
            elif number == _NODE_DOMAIN:
                node.domain = text
        return node

    def encode(self, name: str) -> bytes:
        parts = [_field(_NODE_INPUT, i.encode()) for i in self.inputs]
        parts += [_field(_NODE_OUTPUT, o.encode()) for o in self.outputs]
        parts.append(_field(_NODE_NAME, name.encode()))
        parts.append(_field(_NODE_OP, self.op.encode()))
        parts += self.attributes
        if self.domain:
            parts.append(_field(_NODE_DOMAIN, self.domain.encode()))
        return b"".join(parts)


def _attribute(data: memoryview) -> tuple[str, int | None]:
    name, value = "", None
    for number, wire, start, _end in _fields(data):
        if number == _ATTRIBUTE_NAME and wire == 2:
            name = bytes(_payload(data, start)).decode("utf-8")
        elif number == _ATTRIBUTE_I and wire == 0:
            value = _varint(data, start + 1)[0]
    return name, value


def _tensor_shapes(
    graph: memoryview, spans: list[tuple[int, int, int, int]]
) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for number, _wire, start, _end in spans:
        if number != _GRAPH_INITIALIZER:
            continue
        tensor = _payload(graph, start)
        name, dims = "", []
        for tnumber, twire, tstart, _tend in _fields(tensor):
            if tnumber == _TENSOR_NAME and twire == 2:
                name = bytes(_payload(tensor, tstart)).decode("utf-8")
            elif tnumber == _TENSOR_DIMS and twire == 0:
                dims.append(_varint(tensor, tstart + 1)[0])
            elif tnumber == _TENSOR_DIMS and twire == 2:  # packed
                packed, pos = _payload(tensor, tstart), 0
                while pos < len(packed):
                    value, pos = _varint(packed, pos)
                    dims.append(value)
        shapes[name] = dims
    return shapes


def gather_before_dequantize(model: bytes) -> tuple[bytes, int]:
    """``model`` with each int8 embedding look-up moved before its dequantisation, and the
    number of look-ups rewritten (0: ``model`` is returned as it is)."""
    data = memoryview(model)
    try:
        top = _fields(data)
        graph_field = next((f for f in top if f[0] == _MODEL_GRAPH and f[1] == 2), None)
        if graph_field is None:
            return model, 0
        graph = _payload(data, graph_field[2])
        spans = _fields(graph)
        node_spans = [s for s in spans if s[0] == _GRAPH_NODE and s[1] == 2]
        nodes = [_Node.parse(_payload(graph, s[2])) for s in node_spans]
        shapes = _tensor_shapes(graph, spans)
    except (ValueError, IndexError, UnicodeDecodeError):
        return model, 0  # not an ONNX file: onnxruntime says what is wrong with it
    replaced = _plan(nodes, shapes)
    if not replaced:
        return model, 0
    out = bytearray()
    index = 0
    for number, wire, start, end in spans:
        if number == _GRAPH_NODE and wire == 2:
            position = index
            index += 1
            if position in replaced:
                for n, new in enumerate(replaced[position]):
                    out += _field(_GRAPH_NODE, new.encode(f"sb_gather_int8_{position}_{n}"))
                continue
        out += graph[start:end]
    rewritten = bytearray()
    for _number, _wire, start, end in top:
        if start == graph_field[2]:
            rewritten += _encode_varint(_MODEL_GRAPH << 3 | 2) + _encode_varint(len(out))
            rewritten += out
        else:
            rewritten += data[start:end]
    return bytes(rewritten), sum(1 for v in replaced.values() if v)


def _plan(nodes: list[_Node], shapes: dict[str, list[int]]) -> dict[int, list[_Node]]:
    """Node index -> the nodes that replace it (an empty list removes it)."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs}
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    replaced: dict[int, list[_Node]] = {}
    for index, gather in enumerate(nodes):
        if gather.op != "Gather" or gather.domain or gather.ints.get("axis", 0) not in (0, None):
            continue
        table = gather.inputs[0]
        mul_at = producer.get(table)
        if mul_at is None or consumers.get(table) != 1:
            continue
        mul = nodes[mul_at]
        if mul.op != "Mul" or mul.domain or len(mul.inputs) != 2:
            continue
        cast_at = producer.get(mul.inputs[0])
        if cast_at is None or consumers.get(mul.inputs[0]) != 1:
            continue
        cast = nodes[cast_at]
        quantized, scale = cast.inputs[0] if cast.inputs else "", mul.inputs[1]
        if cast.op != "Cast" or cast.domain or quantized not in shapes or scale not in shapes:
            continue
        rows = shapes[quantized]
        if len(rows) != 2 or shapes[scale] != [rows[0], 1]:
            continue  # one scale per row: the rows can be looked up with their scales
        ids, out = gather.inputs[1], gather.outputs[0]
        replaced[cast_at] = []
        replaced[mul_at] = []
        replaced[index] = [
            _Node([quantized, ids], [f"{out}/int8"], "Gather", "", gather.attributes),
            _Node([scale, ids], [f"{out}/scale"], "Gather", "", gather.attributes),
            _Node([f"{out}/int8"], [f"{out}/float"], "Cast", "", cast.attributes),
            _Node([f"{out}/float", f"{out}/scale"], [out], "Mul", "", mul.attributes),
        ]
    return replaced
