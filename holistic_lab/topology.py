"""The 543-point MediaPipe Holistic layout: parts, names, skeleton edges, mirror twins.

Order of the rows of every (543, 3) keypoint array in holistic_lab:
pose 0:33 (BlazePose), face 33:501 (the 468-point face mesh), left_hand 501:522,
right_hand 522:543 (21 joints each; "left" is the subject's own left hand).

Skeleton edges come from mediapipe's own connection sets (pose_connections,
hands_connections, face_mesh_connections); they are loaded lazily because importing
mediapipe costs seconds, and this module must stay cheap to import.

The face-mesh mirror pairs are a fact of MediaPipe's canonical face model
(mediapipe/modules/face_geometry/data/canonical_face_model.obj in
google-ai-edge/mediapipe): that mesh is exactly symmetric under x -> -x, so each vertex
has one twin at distance 0.0 (28 vertices lie on the midline and are their own twin).
The table below was computed from the model's 468 vertices with
:func:`mirror_pairs_from_vertices`; tests/test_topology.py proves it on real faces.
"""
from __future__ import annotations

import functools

import numpy as np

from .native_logs import filtered_native_stderr

NUM_KEYPOINTS = 543
NUM_POSE, NUM_FACE, NUM_HAND = 33, 468, 21

PARTS: dict[str, slice] = {
    "pose": slice(0, 33),
    "face": slice(33, 501),
    "left_hand": slice(501, 522),
    "right_hand": slice(522, 543),
}
PART_NAMES = tuple(PARTS)

POSE_LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
    "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left",
    "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index",
    "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
HAND_LANDMARK_NAMES = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_finger_mcp", "index_finger_pip", "index_finger_dip", "index_finger_tip",
    "middle_finger_mcp", "middle_finger_pip", "middle_finger_dip", "middle_finger_tip",
    "ring_finger_mcp", "ring_finger_pip", "ring_finger_dip", "ring_finger_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
assert len(POSE_LANDMARK_NAMES) == NUM_POSE and len(HAND_LANDMARK_NAMES) == NUM_HAND

# Face-mesh mirror twins (i, j), i < j, from the canonical face model; see module docstring.
FACE_MIRROR_PAIRS = (
    (3, 248), (7, 249), (20, 250), (21, 251), (22, 252), (23, 253), (24, 254), (25, 255), (26, 256), (27, 257),
    (28, 258), (29, 259), (30, 260), (31, 261), (32, 262), (33, 263), (34, 264), (35, 265), (36, 266), (37, 267),
    (38, 268), (39, 269), (40, 270), (41, 271), (42, 272), (43, 273), (44, 274), (45, 275), (46, 276), (47, 277),
    (48, 278), (49, 279), (50, 280), (51, 281), (52, 282), (53, 283), (54, 284), (55, 285), (56, 286), (57, 287),
    (58, 288), (59, 289), (60, 290), (61, 291), (62, 292), (63, 293), (64, 294), (65, 295), (66, 296), (67, 297),
    (68, 298), (69, 299), (70, 300), (71, 301), (72, 302), (73, 303), (74, 304), (75, 305), (76, 306), (77, 307),
    (78, 308), (79, 309), (80, 310), (81, 311), (82, 312), (83, 313), (84, 314), (85, 315), (86, 316), (87, 317),
    (88, 318), (89, 319), (90, 320), (91, 321), (92, 322), (93, 323), (95, 324), (96, 325), (97, 326), (98, 327),
    (99, 328), (100, 329), (101, 330), (102, 331), (103, 332), (104, 333), (105, 334), (106, 335), (107, 336), (108, 337),
    (109, 338), (110, 339), (111, 340), (112, 341), (113, 342), (114, 343), (115, 344), (116, 345), (117, 346), (118, 347),
    (119, 348), (120, 349), (121, 350), (122, 351), (123, 352), (124, 353), (125, 354), (126, 355), (127, 356), (128, 357),
    (129, 358), (130, 359), (131, 360), (132, 361), (133, 362), (134, 363), (135, 364), (136, 365), (137, 366), (138, 367),
    (139, 368), (140, 369), (141, 370), (142, 371), (143, 372), (144, 373), (145, 374), (146, 375), (147, 376), (148, 377),
    (149, 378), (150, 379), (153, 380), (154, 381), (155, 382), (156, 383), (157, 384), (158, 385), (159, 386), (160, 387),
    (161, 388), (162, 389), (163, 390), (165, 391), (166, 392), (167, 393), (169, 394), (170, 395), (171, 396), (172, 397),
    (173, 398), (174, 399), (176, 400), (177, 401), (178, 402), (179, 403), (180, 404), (181, 405), (182, 406), (183, 407),
    (184, 408), (185, 409), (186, 410), (187, 411), (188, 412), (189, 413), (190, 414), (191, 415), (192, 416), (193, 417),
    (194, 418), (196, 419), (198, 420), (201, 421), (202, 422), (203, 423), (204, 424), (205, 425), (206, 426), (207, 427),
    (208, 428), (209, 429), (210, 430), (211, 431), (212, 432), (213, 433), (214, 434), (215, 435), (216, 436), (217, 437),
    (218, 438), (219, 439), (220, 440), (221, 441), (222, 442), (223, 443), (224, 444), (225, 445), (226, 446), (227, 447),
    (228, 448), (229, 449), (230, 450), (231, 451), (232, 452), (233, 453), (234, 454), (235, 455), (236, 456), (237, 457),
    (238, 458), (239, 459), (240, 460), (241, 461), (242, 462), (243, 463), (244, 464), (245, 465), (246, 466), (247, 467),
)


def part_of(index: int) -> str:
    """The part name that keypoint `index` (0..542) belongs to."""
    if not 0 <= index < NUM_KEYPOINTS:
        raise IndexError(f"keypoint index {index} is outside 0..{NUM_KEYPOINTS - 1}")
    return next(name for name, sl in PARTS.items() if sl.start <= index < sl.stop)


def landmark_name(index: int) -> str:
    """A readable name for keypoint `index`, e.g. `pose/left_wrist`, `face/17`."""
    part = part_of(index)
    local = index - PARTS[part].start
    if part == "pose":
        return f"pose/{POSE_LANDMARK_NAMES[local]}"
    if part == "face":
        return f"face/{local}"
    return f"{part}/{HAND_LANDMARK_NAMES[local]}"


LANDMARK_NAMES = tuple(landmark_name(i) for i in range(NUM_KEYPOINTS))


def mirror_pairs_from_vertices(vertices: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Twin of each vertex of a mesh symmetric under x -> -x, as a permutation array.

    Raises ValueError if some vertex has no mirror image within `tol` (the mesh is
    not symmetric), so a wrong model can never yield a silently wrong table.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N, 3), got {v.shape}")
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    dist = np.linalg.norm(v[:, None, :] - mirrored[None, :, :], axis=2)
    twin = dist.argmin(axis=1)
    worst = dist[np.arange(len(v)), twin].max()
    if worst > tol:
        raise ValueError(f"mesh is not mirror-symmetric: a vertex is {worst:.3g} from its nearest mirror image")
    if not np.array_equal(twin[twin], np.arange(len(v))):
        raise ValueError("mirror matching is not an involution")
    return twin


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_KEYPOINTS)
    for local, name in enumerate(POSE_LANDMARK_NAMES):
        if name.startswith(("left_", "right_")):
            twin = name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
            perm[local] = POSE_LANDMARK_NAMES.index(twin)
    face0 = PARTS["face"].start
    for i, j in FACE_MIRROR_PAIRS:
        perm[face0 + i], perm[face0 + j] = face0 + j, face0 + i
    left, right = PARTS["left_hand"], PARTS["right_hand"]
    perm[left] = np.arange(right.start, right.stop)
    perm[right] = np.arange(left.start, left.stop)
    return perm


FLIP_PERMUTATION = _flip_permutation()
FLIP_PERMUTATION.setflags(write=False)
assert sorted(FLIP_PERMUTATION) == list(range(NUM_KEYPOINTS))
assert np.array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(NUM_KEYPOINTS))


@functools.lru_cache(maxsize=None)
def _mediapipe_edges() -> dict[str, tuple[tuple[int, int], ...]]:
    with filtered_native_stderr():  # importing mediapipe imports TensorFlow and its native chatter
        from mediapipe.python.solutions import face_mesh_connections, hands_connections, pose_connections

    def offset(edges, part):
        start = PARTS[part].start
        return tuple(sorted({(start + min(a, b), start + max(a, b)) for a, b in edges}))

    return {
        "pose": offset(pose_connections.POSE_CONNECTIONS, "pose"),
        "face_mesh": offset(face_mesh_connections.FACEMESH_TESSELATION, "face"),
        "face_contours": offset(face_mesh_connections.FACEMESH_CONTOURS, "face"),
        "left_hand": offset(hands_connections.HAND_CONNECTIONS, "left_hand"),
        "right_hand": offset(hands_connections.HAND_CONNECTIONS, "right_hand"),
    }


EDGE_SETS = ("pose", "face_mesh", "face_contours", "left_hand", "right_hand")


def edges(name: str) -> tuple[tuple[int, int], ...]:
    """Skeleton edges as sorted, undirected global (543-layout) index pairs (i < j).

    `name` is one of EDGE_SETS: pose, face_mesh (the full tessellation),
    face_contours (eyes, brows, lips, oval), left_hand, right_hand.
    """
    if name not in EDGE_SETS:
        raise ValueError(f"unknown edge set {name!r}; expected one of {EDGE_SETS}")
    return _mediapipe_edges()[name]


# --- COCO-WholeBody (133 points) <-> the 543 layout -------------------------------------
# COCO-WholeBody order (Jin et al., ECCV 2020): body 0:17 (COCO-17), feet 17:23 (left big toe,
# left small toe, left heel, right big toe, right small toe, right heel), face 23:91 (the
# 68 iBUG points), left hand 91:112, right hand 112:133 (21 joints each, MediaPipe's order;
# "left" is the subject's own left hand, as in the 543 layout).
COCO_WHOLEBODY_PARTS: dict[str, slice] = {
    "body": slice(0, 17), "foot": slice(17, 23), "face": slice(23, 91),
    "left_hand": slice(91, 112), "right_hand": slice(112, 133),
}
NUM_COCO_WHOLEBODY = 133
COCO_BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
COCO_BODY_TO_POSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# Heels are BlazePose's heels; a big toe goes to BlazePose's foot_index, which is an
# approximation: foot_index sits between the toes, the big toe at the foot's inner edge.
# The small toes have no BlazePose twin and stay unmapped (-1).
COCO_FOOT_TO_POSE = (31, -1, 29, 32, -1, 30)

# The 68 iBUG/300-W (dlib) face points -> face-mesh vertex (0..467), one vertex each.
# Source: the published correspondence of Peizhi Yan, "Mediapipe_2_Dlib_Landmarks"
# (github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, mediapipe2dlib/mp2dlib.py, 2024),
# which gives one or two mesh vertices per iBUG point. The 543 layout needs exactly one
# distinct vertex per point (so 68 -> 543 -> 68 is exact); where the source averages two
# vertices we keep one: jaw 3 -> 132, jaw 4 -> 172 (its 58 is shared by both), jaw 12 -> 397,
# nose 27 -> 168, nose 28 -> 197. The mapping's error against human 68-point annotations
# is measured by `holistic_lab.metrics.face_mapping_error` (README, notebook 02).
IBUG68_TO_FACE_MESH = (
    127, 234, 93, 132, 172, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,  # jaw
    70, 63, 105, 66, 107,  # subject's right brow
    336, 296, 334, 293, 300,  # subject's left brow
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose bridge, nostrils
    33, 160, 158, 133, 153, 144,  # subject's right eye
    362, 385, 387, 263, 373, 380,  # subject's left eye
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
)
assert len(IBUG68_TO_FACE_MESH) == 68 and len(set(IBUG68_TO_FACE_MESH)) == 68


def _coco_wholebody_to_543() -> np.ndarray:
    index = np.full(NUM_COCO_WHOLEBODY, -1, np.int64)
    index[COCO_WHOLEBODY_PARTS["body"]] = COCO_BODY_TO_POSE
    index[COCO_WHOLEBODY_PARTS["foot"]] = COCO_FOOT_TO_POSE
    index[COCO_WHOLEBODY_PARTS["face"]] = PARTS["face"].start + np.array(IBUG68_TO_FACE_MESH)
    for hand in ("left_hand", "right_hand"):
        index[COCO_WHOLEBODY_PARTS[hand]] = np.arange(PARTS[hand].start, PARTS[hand].stop)
    return index


# COCO_WHOLEBODY_TO_543[k] is the 543-layout row of COCO-WholeBody point k, -1 if none
# (the two small toes). The map is one-to-one where defined, so 133 -> 543 -> 133 is exact.
COCO_WHOLEBODY_TO_543 = _coco_wholebody_to_543()
COCO_WHOLEBODY_TO_543.setflags(write=False)
assert len(set(COCO_WHOLEBODY_TO_543[COCO_WHOLEBODY_TO_543 >= 0].tolist())) == (COCO_WHOLEBODY_TO_543 >= 0).sum()
