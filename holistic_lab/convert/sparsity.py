"""Densifying TFLite sparse tensors (the format behind the DENSIFY op in pose_detection).

Hand-written because no Python library reads this format: TensorFlow only densifies inside
the C++ interpreter (tflite::internal::sparsity::FormatConverter) and exposes no Python
call for it. The format is defined in tensorflow/lite/schema/schema.fbs (`SparsityParameters`):

- the dense shape is expanded with block dimensions: `block_map[k]` names the original
  dimension that block dimension `k` splits, so a tensor of rank n with b blocks is
  traversed in n + b dimensions;
- `traversal_order` lists those n + b dimensions in storage order, original ones first;
- `dim_metadata[level]` says how the dimension at that level is stored: DENSE (all
  `dense_size` positions present) or SPARSE_CSR (`array_segments[parent]` to
  `array_segments[parent + 1]` index the stored children, `array_indices` give their
  coordinates);
- the stored values follow the traversal, depth first.

The walk below is level by level with numpy instead of recursive, which visits the same
positions in the same (depth-first) order. It is checked against the interpreter's own
DENSIFY output in tests/test_convert.py.
"""
from __future__ import annotations

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema


def densify(values: np.ndarray, dense_shape, sparsity) -> np.ndarray:
    """Scatter the flat stored `values` of a sparse tensor into an array of `dense_shape`."""
    dense_shape = tuple(int(d) for d in dense_shape)
    rank = len(dense_shape)
    order = [int(d) for d in sparsity.traversalOrder]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    levels = sparsity.dimMetadata
    if len(order) != rank + len(block_map) or len(levels) != len(order) or sorted(order[:rank]) != list(range(rank)):
        raise ValueError(f"sparse tensor of shape {dense_shape}: traversal_order {order}, block_map {block_map} and "
                         f"{len(levels)} dim_metadata entries do not describe a rank-{rank} tensor")

    position = np.zeros(1, np.int64)            # index into the next level's segments, per visited entry
    coordinates = np.zeros((1, 0), np.int64)    # traversal-order coordinates gathered so far
    for level, meta in enumerate(levels):
        if meta.format == schema.DimensionType.DENSE:
            size = int(meta.denseSize)
            child = np.tile(np.arange(size), len(position))
            position = np.repeat(position, size) * size + child
            coordinates = np.column_stack([np.repeat(coordinates, size, axis=0), child])
        elif meta.format == schema.DimensionType.SPARSE_CSR:
            segments = np.asarray(meta.arraySegments.values, np.int64)
            indices = np.asarray(meta.arrayIndices.values, np.int64)
            starts, stops = segments[position], segments[position + 1]
            counts = stops - starts
            offset_in_segment = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            position = np.repeat(starts, counts) + offset_in_segment
            coordinates = np.column_stack([np.repeat(coordinates, counts, axis=0), indices[position]])
        else:
            raise ValueError(f"sparse tensor of shape {dense_shape}: dim_metadata[{level}] has unknown format {meta.format}")
    if len(position) != values.size:
        raise ValueError(f"sparse tensor of shape {dense_shape}: the index arrays visit {len(position)} "
                         f"positions but {values.size} values are stored")

    dense_index = np.zeros((len(position), rank), np.int64)
    dense_index[:, order[:rank]] = coordinates[:, :rank]
    for level in range(rank, len(order)):
        block = order[level] - rank
        block_size = int(levels[level].denseSize)
        dense_index[:, block_map[block]] = dense_index[:, block_map[block]] * block_size + coordinates[:, level]
    dense = np.zeros(dense_shape, values.dtype)
    dense[tuple(dense_index.T)] = values
    return dense
