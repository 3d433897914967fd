"""Bundles the daemon loads: FP32 ONNX, INT8 QDQ ONNX (PyTorch FX post-training static
quantization), and manifest.json as docs/architecture.md defines it."""
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, mapping, numpy_helper
from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

OPSET = 17


def export_onnx(model: torch.nn.Module, path: Path, size: int):
    """Input "input" [N,1,size,size] float32, output "embedding" [N,D], dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter warns about quantized-op shape inference
        torch.onnx.export(model.eval(), torch.zeros(2, 1, size, size), str(path), opset_version=OPSET,
                          input_names=['input'], output_names=['embedding'],
                          dynamic_axes={'input': {0: 'N'}, 'embedding': {0: 'N'}})


def quantize_int8(model: torch.nn.Module, calibration: torch.Tensor, symmetric_activations: bool) -> torch.nn.Module:
    """Post-training static quantization with FX. Weights: int8 per output channel, symmetric
    (zero point 0, what TensorRT requires). Activations: uint8, histogram-calibrated; affine by
    default (onnxruntime's fast x86 path), or with a symmetric range (zero point 128, rewritten
    to int8 with zero point 0 by export_int8) for TensorRT, which accepts only zero point 0."""
    # Debian's PyTorch is built without FBGEMM; oneDNN is its x86 quantized engine.
    torch.backends.quantized.engine = 'onednn'
    scheme = torch.per_tensor_symmetric if symmetric_activations else torch.per_tensor_affine
    qconfig = QConfig(
        activation=HistogramObserver.with_args(dtype=torch.quint8, qscheme=scheme),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    # The features' side-by-side concatenation of L2-normalised vectors stays float: normalising is
    # float arithmetic anyway, and the exporter cannot write a quantized Concat. So does the projection:
    # fine-tuning packs its vectors into a narrow cone around the good centre (train.train_projection),
    # where the differences that tell items apart are a few hundredths of a vector's length, about one
    # uint8 step of its output; and its 144 x 128 multiply is a tiny part of the encoder's work.
    # The average pools that make those features stay float too: a quantized pool rounds the mean of
    # a stage's map back to uint8, throwing away the precision the averaging gains, in the very vector
    # kNN compares (sample line, relit pull: INT8 F1 0.857 -> 0.860 against FP32 0.869; parity set
    # 0.824 -> 0.836 against 0.834). Pooling is a few hundred additions an image.
    qconfigs = (QConfigMapping().set_global(qconfig).set_object_type(torch.cat, None)
                .set_module_name('projection', None).set_module_name('encoder.pool', None))
    prepared = prepare_fx(model.eval(), qconfigs, example_inputs=(calibration[:2],))
    with torch.no_grad():
        for i in range(0, len(calibration), 256):
            prepared(calibration[i:i + 256])
    return convert_fx(prepared)


def _fold_constants(graph):
    """Turn Constant nodes, ConstantOfShape/Identity/Cast of constants, and Casts that do not change the
    type (the exporter casts a uint8 QuantizeLinear output to uint8) into initializers or nothing,
    so the QDQ pattern is Q -> DQ -> op, as ORT and TensorRT expect."""
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    elem_type = {}
    rename, keep = {}, []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == 'Constant':
            consts[node.output[0]] = numpy_helper.to_array(attrs['value'])
        elif node.op_type == 'ConstantOfShape' and node.input[0] in consts:
            fill = numpy_helper.to_array(attrs['value']) if 'value' in attrs else np.zeros(1, np.float32)
            consts[node.output[0]] = np.full(consts[node.input[0]], fill[0], dtype=fill.dtype)
        elif node.op_type == 'Identity' and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
        elif node.op_type == 'Cast' and node.input[0] in consts:
            dtype = mapping.TENSOR_TYPE_TO_NP_TYPE[attrs['to']]
            consts[node.output[0]] = consts[node.input[0]].astype(dtype)
        elif node.op_type == 'Cast' and elem_type.get(node.input[0]) == attrs['to']:
            rename[node.output[0]] = node.input[0]
        else:
            if node.op_type == 'QuantizeLinear':
                zp = consts[node.input[2]]
                elem_type[node.output[0]] = mapping.NP_TYPE_TO_TENSOR_TYPE[zp.dtype]
            keep.append(node)
    for out in graph.output:
        out.name = rename.get(out.name, out.name)
    used = {i for n in keep for i in n.input}
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used)


def _to_int8_activations(graph):
    """Rewrite uint8 activation quantization with zero point 128 as int8 with zero point 0: the same
    grid shifted by 128, so the arithmetic is unchanged, but every quantized tensor is int8 with
    zero point 0, as TensorRT requires."""
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'):
            zp = numpy_helper.to_array(inits[node.input[2]])
            if zp.dtype == np.uint8:
                if not np.all(zp == 128):
                    raise RuntimeError(f'activation zero point {zp} is not symmetric ({node.name})')
                inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.zeros_like(zp, np.int8), node.input[2]))


def zero_points(graph) -> dict:
    """What the QDQ model carries, per kind of DequantizeLinear input: element types and how many
    tensors have a non-zero zero point (TensorRT needs int8 with zero point 0 everywhere)."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = {kind: {'dtypes': set(), 'tensors': 0, 'nonZeroZeroPoint': 0} for kind in ('weights', 'bias', 'activations')}
    for node in graph.node:
        if node.op_type != 'DequantizeLinear':
            continue
        zp = inits[node.input[2]]
        # A weight or bias is an initializer (bias int32); an activation is a QuantizeLinear output.
        kind = 'activations' if node.input[0] not in inits else 'bias' if zp.dtype == np.int32 else 'weights'
        out[kind]['dtypes'].add(str(zp.dtype))
        out[kind]['tensors'] += 1
        out[kind]['nonZeroZeroPoint'] += int(np.any(zp != 0))
    for v in out.values():
        v['dtypes'] = sorted(v['dtypes'])
    return out


def export_int8(qmodel: torch.nn.Module, path: Path, size: int, symmetric_activations: bool) -> dict:
    export_onnx(qmodel, path, size)
    model = onnx.load(str(path))
    _fold_constants(model.graph)
    if symmetric_activations:
        _to_int8_activations(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return zero_points(model.graph)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_bundle(folder: Path, onnx_path: Path, name: str, version: str, precision: str, size: int,
                 mean: float, std: float, classifier: dict, dimension: int) -> dict:
    manifest = {
        'name': name, 'version': version, 'file': onnx_path.name, 'sha256': sha256(onnx_path),
        'precision': precision,
        'input': {'name': 'input', 'width': size, 'height': size, 'layout': 'NCHW', 'colour': 'gray',
                  'mean': [mean], 'std': [std]},
        'output': {'name': 'embedding', 'dimension': dimension},
        'metric': 'cosine',
        'classifier': {k: classifier[k] for k in ('k', 'threshold', 'unknownDistance', 'goodLabel')},
    }
    (folder / 'manifest.json').write_text(json.dumps(manifest, indent=2) + '\n')
    return manifest
