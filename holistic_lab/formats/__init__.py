"""Dataset formats, all read into `Sample` (the 543 layout with a mask).

coco_keypoints: COCO-style keypoint JSON with a layout per dataset; coco_wholebody: the
133-point COCO-WholeBody format both ways; tfrecord: the fine-tuning schema and tf.data;
tfrecord_sets: a set's shards and manifest on disk.
"""
from .sample import Sample

__all__ = ["Sample"]
