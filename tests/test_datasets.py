"""The fixture registry: checksums pinned to the pack, local folder checked, every format loads."""
import shutil

import numpy as np
import pytest

from holistic_lab import datasets

EXPECTED = {  # set: (kind, annotations, images)
    "coco_wholebody": ("wholebody", 14, 4), "coco": ("body", 14, 4), "aic": ("body", 9, 3),
    "posetrack18": ("body", 14, 3), "300w": ("face", 2, 2), "freihand": ("hand", 8, 8), "panoptic": ("hand", 4, 4),
}


def test_registry_is_the_packs_sha256sums(fixtures):
    lines = datasets.registry_lines((fixtures / "SHA256SUMS").read_text())
    assert sorted(lines) == sorted(f"{k} {v}" for k, v in datasets.fixture_registry().items())
    assert datasets.FIXTURES_BASE_URL.endswith("/759b39c13fea6ba094afc1fa932f51dc1b11cbf9/tests/data/")
    with pytest.raises(ValueError, match="SHA256SUMS line 1"):
        datasets.registry_lines("abc ./x.json")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_format_loads_into_the_543_layout(fixtures, name, monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "create", lambda *a, **k: pytest.fail("a local folder must not touch the network"))
    fixture = datasets.load_fixture(name, fixtures)
    kind, annotations, images = EXPECTED[name]
    assert (fixture.kind, len(fixture), len(fixture.by_image())) == (kind, annotations, images)
    for sample in fixture.samples:
        assert sample.mask.any() or sample.extras["annotation"].get("num_keypoints") == 0
        xy = sample.xyz[sample.mask, :2]
        assert ((xy >= 0) & (xy <= 1)).all()
        assert sample.image_path.startswith(str(fixtures))
    if kind == "hand":
        assert all(s.parts_present()["left_hand"] != s.parts_present()["right_hand"] for s in fixture.samples)


def test_panoptic_l_and_r_images_are_left_and_right_hands(fixtures):
    for sample in datasets.load_fixture("panoptic", fixtures).samples:
        side = "left_hand" if sample.image_path.endswith("_l.jpg") else "right_hand"
        assert sample.parts_present()[side] and side in sample.boxes


def test_corrupt_or_missing_local_file_is_refused(fixtures, tmp_path):
    shutil.copytree(fixtures / "300w", tmp_path / "300w")
    assert len(datasets.load_fixture("300w", tmp_path)) == 2
    image = tmp_path / "300w" / "indoor_020.png"
    image.write_bytes(image.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match=r"indoor_020.png is corrupt: its SHA-256 is [0-9a-f]{64}, expected 7523"):
        datasets.load_fixture("300w", tmp_path)
    image.unlink()
    with pytest.raises(ValueError, match="fixture 300w/indoor_020.png not found"):
        datasets.load_fixture("300w", tmp_path)
    with pytest.raises(ValueError, match="unknown fixture set"):
        datasets.load_fixture("mpii", tmp_path)
    with pytest.raises(ValueError, match="not in the fixture registry"):
        datasets.fixture_path("coco/other.json", tmp_path)


def test_environment_variable_points_the_registry_at_a_folder(fixtures, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENV, str(fixtures))
    assert datasets.data_dir() == fixtures
    assert datasets.fixture_path("coco/test_coco.json") == fixtures / "coco" / "test_coco.json"


def test_samples_api_is_kept():
    assert datasets.sample_image("astronaut").shape == (512, 512, 3)
    assert np.isfinite(datasets.sample_labels("astronaut")["face"]).all()


def test_fixture_folder_is_the_local_pack_without_network(fixtures, monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "create", lambda *a, **k: pytest.fail("a local folder must not touch the network"))
    monkeypatch.setenv(datasets.DATA_ENV, str(fixtures))
    assert datasets.fixture_folder() == fixtures


@pytest.mark.registry_download
def test_fixture_folder_refuses_a_missing_folder_and_says_what_to_do_offline(tmp_path, monkeypatch):
    import pooch

    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "no-such-pack"))
    with pytest.raises(ValueError, match=r"no-such-pack \(from \$HOLISTIC_LAB_DATA\) does not exist"):
        datasets.fixture_folder()
    monkeypatch.delenv(datasets.DATA_ENV)
    monkeypatch.setattr(datasets, "DEFAULT_DATA_DIR", tmp_path / "not-beside-the-clone")

    class Offline:
        def fetch(self, name):
            raise ConnectionError(f"no route to host for {name}")

    monkeypatch.setattr(pooch, "create", lambda *a, **k: Offline())
    with pytest.raises(RuntimeError, match=r"cannot download fixture .* offline, copy the fixture pack .* set HOLISTIC_LAB_DATA"):
        datasets.fixture_folder()
