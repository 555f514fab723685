"""Metrics: exact on known answers, an oracle scores perfectly, the real teacher scores in a sane range."""
import hashlib

import numpy as np
import pytest

from holistic_lab import metrics
from holistic_lab.datasets import load_fixture
from holistic_lab.result import HolisticResult
from holistic_lab.topology import PARTS


def test_pck_and_nme_on_known_numbers():
    errors = metrics.point_errors_px(np.array([[3.0, 4.0], [np.nan, 0.0], [0.0, 0.0]]), np.zeros((3, 2)))
    np.testing.assert_array_equal(errors, [5.0, np.inf, 0.0])
    assert metrics.pck(errors, norm_px=50.0, alpha=0.1) == pytest.approx(2 / 3)  # 5 <= 5, inf is a miss
    assert metrics.pck(errors, norm_px=40.0, alpha=0.1) == pytest.approx(1 / 3)
    gt = np.random.default_rng(0).uniform(0, 100, (68, 2))
    gt[36], gt[45] = (10.0, 50.0), (50.0, 50.0)  # inter-ocular 40 px
    nme = metrics.face_nme_per_point(gt + [4.0, 0.0], gt)
    np.testing.assert_allclose(nme, 0.1)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        metrics.face_nme_per_point(gt[:5], gt[:5])


def test_oks_ap_is_one_for_the_ground_truth_and_lower_when_shifted(fixtures):
    fixture = load_fixture("coco", fixtures)
    gt = {"images": [s.extras["image"] for s in fixture.samples], "categories": [{"id": 1, "name": "person"}],
          "annotations": [dict(s.extras["annotation"], keypoints=s.source_keypoints.ravel().tolist()) for s in fixture.samples]}
    gt["images"] = list({i["id"]: i for i in gt["images"]}.values())
    annotated = [a for a in gt["annotations"] if a["num_keypoints"] > 0]
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in annotated]
    assert metrics.oks_ap(gt, perfect)["AP"] == pytest.approx(1.0)
    shifted = [dict(d, keypoints=(np.array(d["keypoints"]) + np.tile([6.0, 6.0, 0.0], 17)).tolist()) for d in perfect]
    assert 0.0 < metrics.oks_ap(gt, shifted)["AP"] < 1.0


class Oracle:
    """Answers with the human annotation of whichever fixture image it is shown."""

    def __init__(self, fixture):
        from holistic_lab.images import load_rgb

        self.people = {}
        for path, samples in fixture.by_image().items():  # panoptic's _l and _r files are one image
            self.people.setdefault(hashlib.sha1(load_rgb(path).tobytes()).hexdigest(), []).extend(samples)

    def process(self, rgb):
        sample = self.people[hashlib.sha1(rgb.tobytes()).hexdigest()][0]
        xyz = np.where(sample.mask[:, None], sample.xyz, np.nan)
        xyz[sample.mask, 2] = 0.0
        present = {name: bool(sample.mask[sl].all()) for name, sl in PARTS.items()}
        present["pose"] = bool(sample.mask[PARTS["pose"]].any())
        return HolisticResult(xyz, np.where(sample.mask, 1.0, 0.0), present, sample.width, sample.height)

    def process_hand(self, rgb, box=None, side="right"):
        samples = self.people[hashlib.sha1(rgb.tobytes()).hexdigest()]
        return next(s.xyz[PARTS[f"{side}_hand"]] for s in samples if s.parts_present()[f"{side}_hand"])


@pytest.mark.parametrize("name", ["coco_wholebody", "300w", "panoptic"])
def test_an_oracle_scores_perfectly(fixtures, name):
    fixture = load_fixture(name, fixtures)
    table = metrics.evaluate(Oracle(fixture), fixture)
    assert table.rows
    for row in table.rows:
        for key, value in row.items():
            if key.startswith("PCK"):
                assert value == 1.0, row
            if key in ("EPE px", "NME") and value is not None:
                assert value < 1e-3, row
    if name == "coco_wholebody":
        body = next(r for r in table.rows if r["part"] == "body")
        assert body["found"] == "4/4"
    assert "| dataset | part | found |" in table.to_markdown()


def test_teacher_accuracy_on_real_faces_and_hands(fixtures, teacher):
    table = metrics.evaluate(teacher, "300w") + metrics.evaluate(teacher, "panoptic")
    face = next(r for r in table.rows if r["part"] == "face")
    assert face["NME"] < 0.15  # a face MediaPipe finds sits within 15% of the inter-ocular distance
    per_point = metrics.face_mapping_error(table)
    assert per_point.shape == (68,) and np.isfinite(per_point).all()
    hands = [r for r in table.rows if r["part"].endswith("hand")]
    assert any(r["PCK@0.2"] > 0.3 for r in hands)


def test_process_hand_returns_full_image_coordinates(fixtures, teacher):
    from holistic_lab.images import load_rgb

    sample = load_fixture("panoptic", fixtures).samples[2]  # ex2_2 left hand, found by the teacher
    x, y, w, h = sample.boxes["left_hand"]
    rgb = load_rgb(sample.image_path)
    hand = teacher.process_hand(rgb, (x, y, x + w, y + h), "left")
    assert hand.shape == (21, 3)
    px = hand[:, :2] * [sample.width, sample.height]
    gt = sample.pixels()[PARTS["left_hand"]]
    assert np.median(np.linalg.norm(px - gt, axis=1)) < 0.2 * max(w, h)
    with pytest.raises(ValueError, match="x1 > x0"):
        teacher.process_hand(rgb, (10, 10, 5, 20))
    with pytest.raises(ValueError, match="side must be"):
        teacher.process_hand(rgb, None, "middle")
