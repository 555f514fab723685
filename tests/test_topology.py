"""The 543 layout: parts, names, edges, and the flip permutation proven on real faces and hands."""
import numpy as np
import pytest

from holistic_lab import topology
from holistic_lab.images import load_rgb
from holistic_lab.datasets import sample_image
from holistic_lab.topology import FLIP_PERMUTATION, NUM_KEYPOINTS, PARTS


def test_parts_tile_the_543_layout():
    assert NUM_KEYPOINTS == 543
    assert [(s.start, s.stop) for s in PARTS.values()] == [(0, 33), (33, 501), (501, 522), (522, 543)]
    assert len(topology.LANDMARK_NAMES) == 543 and len(set(topology.LANDMARK_NAMES)) == 543
    assert topology.landmark_name(15) == "pose/left_wrist"
    assert topology.landmark_name(501) == "left_hand/wrist"
    assert topology.landmark_name(542) == "right_hand/pinky_tip"
    with pytest.raises(IndexError):
        topology.part_of(543)


def test_edges_stay_inside_their_part():
    for name, part in [("pose", "pose"), ("face_mesh", "face"), ("face_contours", "face"),
                       ("left_hand", "left_hand"), ("right_hand", "right_hand")]:
        pairs = np.array(topology.edges(name))
        sl = PARTS[part]
        assert pairs.min() >= sl.start and pairs.max() < sl.stop, name
    assert len(topology.edges("face_mesh")) == 1322  # undirected edges of the 468-point tessellation
    with pytest.raises(ValueError, match="unknown edge set"):
        topology.edges("feet")


def test_flip_permutation_is_a_mirror_involution():
    perm = FLIP_PERMUTATION
    assert perm.shape == (543,) and np.array_equal(perm[perm], np.arange(543))
    names = topology.LANDMARK_NAMES
    assert names[perm[15]] == "pose/right_wrist" and perm[0] == 0  # nose is its own twin
    assert np.array_equal(perm[PARTS["left_hand"]], np.arange(522, 543))
    face = perm[PARTS["face"]] - 33
    assert np.all((face >= 0) & (face < 468))
    assert (face == np.arange(468)).sum() == 28  # midline vertices of the canonical mesh
    # the face contours map onto themselves under the flip; the tessellation does for all
    # but 6 of its 1322 edges (quads split along different diagonals on the two sides)
    for name, min_shared in (("face_contours", 124), ("pose", 35), ("face_mesh", 1316)):
        edges = set(topology.edges(name))
        mirrored = {tuple(sorted((perm[a], perm[b]))) for a, b in edges}
        assert len(edges & mirrored) >= min_shared, name


def test_mirror_pairs_from_vertices_finds_twins_and_rejects_asymmetry():
    rng = np.random.default_rng(0)
    half = rng.normal(size=(5, 3)) + [2, 0, 0]
    mid = rng.normal(size=(2, 3)) * [0, 1, 1]
    vertices = np.concatenate([half, mid, half * [-1, 1, 1]])
    twin = topology.mirror_pairs_from_vertices(vertices)
    assert list(twin) == [7, 8, 9, 10, 11, 5, 6, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="not mirror-symmetric"):
        topology.mirror_pairs_from_vertices(vertices + rng.normal(scale=0.1, size=vertices.shape))


def _flip_labels(xyz: np.ndarray, permute: bool) -> np.ndarray:
    flipped = xyz.copy()
    flipped[:, 0] = 1.0 - flipped[:, 0]
    return flipped[FLIP_PERMUTATION] if permute else flipped


REAL_IMAGES = ["astronaut", "grace_hopper", "300w/indoor_029.png", "lapa/13609937564_5.jpg",
               "coco/000000000785.jpg", "panoptic/005880453_01_l.jpg", "panoptic/ex2_2.flv_000040_l.jpg"]


@pytest.mark.parametrize("name", REAL_IMAGES)
def test_flip_permutation_matches_teacher_on_flipped_real_images(name, teacher, fixtures):
    """Labels of a mirrored image must equal the mirrored, permuted labels of the image.

    Without the permutation the same comparison is off by the width of the face or body,
    so this test fails for any wrong twin table.
    """
    rgb = sample_image(name) if "/" not in name else load_rgb(fixtures / name)
    original = teacher.process(rgb)
    mirrored = teacher.process(np.ascontiguousarray(rgb[:, ::-1]))
    size = np.array([rgb.shape[1], rgb.shape[0]])
    expected = _flip_labels(original.xyz, permute=True)
    naive = _flip_labels(original.xyz, permute=False)
    checked = 0
    for part, sl in PARTS.items():
        twin_part = {"left_hand": "right_hand", "right_hand": "left_hand"}.get(part, part)
        if not (original.present[part] and mirrored.present[twin_part]):
            continue
        sl_twin = PARTS[twin_part]
        # only points the model sees: visible (pose) and inside the frame
        seen = (original.visibility[sl] > 0.5) & np.all((original.xyz[sl, :2] >= 0) & (original.xyz[sl, :2] <= 1), axis=1)
        seen_twin = seen[FLIP_PERMUTATION[sl] - sl_twin.start] if part == twin_part else seen
        got = mirrored.xyz[sl_twin, :2][seen_twin] * size
        err = np.median(np.linalg.norm(got - expected[sl_twin, :2][seen_twin] * size, axis=1))
        naive_err = np.median(np.linalg.norm(got - naive[sl_twin, :2][seen_twin] * size, axis=1))
        scale = np.ptp(got, axis=0).max()  # extent of the part in pixels
        # the pose model guesses on close-up faces, so its own mirror error is larger there
        tolerance = (0.10 if part == "pose" else 0.04) * scale + 2.0
        assert err < tolerance, f"{name} {part}: flip error {err:.1f}px (part extent {scale:.0f}px)"
        assert naive_err > 3 * err, f"{name} {part}: a flip without swapping twins should be clearly worse"
        checked += 1
    assert checked >= 2, f"{name}: teacher found too few parts on both the image and its mirror"
