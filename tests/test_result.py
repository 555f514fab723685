"""HolisticResult: validation, part access, flat arrays and .npz storage."""
import numpy as np
import pytest

from holistic_lab.datasets import sample_labels
from holistic_lab.result import HolisticResult, load_results, save_results


def test_sample_labels_have_the_contract_shapes():
    result = sample_labels("astronaut")
    assert result.xyz.shape == (543, 3) and result.xyz.dtype == np.float32
    assert result.visibility.shape == (543,)
    assert result.present == {"pose": True, "face": True, "left_hand": False, "right_hand": False}
    assert (result.width, result.height) == (512, 512)
    assert np.isnan(result["left_hand"]).all() and np.isfinite(result["face"]).all()
    assert result["face"].shape == (468, 3)
    px = result.pixels()
    assert px.shape == (543, 2)
    np.testing.assert_allclose(px[0], result.xyz[0, :2] * 512)
    assert result.mask().sum() == 33 + 468


def test_empty_and_from_parts():
    empty = HolisticResult.empty(640, 480)
    assert not any(empty.present.values()) and np.isnan(empty.xyz).all()
    hand = np.random.default_rng(0).random((21, 3)).astype(np.float32)
    result = HolisticResult.from_parts({"right_hand": hand}, 640, 480)
    assert result.present["right_hand"] and not result.present["pose"]
    np.testing.assert_array_equal(result["right_hand"], hand)
    with pytest.raises(ValueError, match="right_hand needs shape"):
        HolisticResult.from_parts({"right_hand": hand[:20]}, 640, 480)
    with pytest.raises(ValueError, match="unknown part"):
        HolisticResult.from_parts({"feet": hand}, 640, 480)


@pytest.mark.parametrize("kwargs, message", [
    (dict(xyz=np.zeros((542, 3))), "xyz must be"),
    (dict(visibility=np.zeros(3)), "visibility must be"),
    (dict(present={"pose": True}), "present must have"),
    (dict(width=0), "width and height"),
])
def test_bad_fields_are_named(kwargs, message):
    fields = dict(xyz=np.zeros((543, 3)), visibility=np.zeros(543),
                  present=dict.fromkeys(["pose", "face", "left_hand", "right_hand"], True), width=10, height=10)
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        HolisticResult(**fields)


def test_flat_array_round_trip():
    result = sample_labels("grace_hopper")
    array = result.to_array()
    assert array.shape == (543, 4)
    back = HolisticResult.from_array(array, result.width, result.height)
    assert back.allclose(result) and back.present == result.present
    with pytest.raises(ValueError, match="rows of x, y, z, visibility"):
        HolisticResult.from_array(array[:, :3], 10, 10)


def test_npz_round_trip_and_corrupt_files(tmp_path):
    results = [sample_labels("astronaut"), sample_labels("grace_hopper"), HolisticResult.empty(5, 7)]
    path = save_results(tmp_path / "many.npz", results, ["a", "b", "c"])
    names, loaded = load_results(path)
    assert names == ["a", "b", "c"]
    assert all(x.allclose(y) for x, y in zip(results, loaded))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_results(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        load_results(foreign)
    with pytest.raises(ValueError, match="3 results but 2 names"):
        save_results(tmp_path / "bad.npz", results, ["a", "b"])
    assert not (tmp_path / "bad.npz").exists()


def test_results_replace_only_results_archives(tmp_path):
    import shutil

    from holistic_lab.datasets import SAMPLES_DIR
    from holistic_lab.result import is_results_file

    results = [sample_labels("astronaut")]
    foreign = tmp_path / "unrelated.npz"
    np.savez(foreign, weights=np.arange(4))
    before = foreign.read_bytes()
    with pytest.raises(ValueError, match="unrelated.npz already exists and is not a holistic-lab results .npz"):
        save_results(foreign, results, ["a"])
    assert foreign.read_bytes() == before
    with pytest.raises(ValueError, match="notes.txt: a results file must end in .npz"):
        save_results(tmp_path / "notes.txt", results, ["a"])
    older = shutil.copy(SAMPLES_DIR / "teacher_labels.npz", tmp_path / "older.npz")  # has no format marker
    assert is_results_file(older) and not is_results_file(foreign)
    assert load_results(save_results(older, results, ["a"]))[0] == ["a"]
    assert is_results_file(save_results(foreign, results, ["a"], overwrite=True))


def _npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_results_files_with_inconsistent_arrays_are_refused_by_key(tmp_path):
    from holistic_lab.result import load_results, save_results

    good = save_results(tmp_path / "good.npz", [HolisticResult.empty(8, 6)] * 2, ["a.png", "b.png"])
    with np.load(good) as data:
        arrays = {key: data[key] for key in data.files}
    bad = {
        "one name for two rows": dict(arrays, names=np.array(["a.png"])),
        "present of the wrong width": dict(arrays, present=np.zeros((2, 7), bool)),
        "a 0-d width": dict(arrays, width=np.array(5)),
        "xyz as text": dict(arrays, xyz=np.full((2, 543, 3), "a")),
        "xyz of the wrong shape": dict(arrays, xyz=np.zeros((2, 33, 3), np.float32)),
    }
    for why, content in bad.items():
        path = _npz(tmp_path / "bad.npz", **content)
        with pytest.raises(ValueError, match=r"bad\.npz: \w+ has shape"):
            load_results(path)
    path = _npz(tmp_path / "bad.npz", **dict(arrays, width=np.array([8, 0], np.int32)))
    with pytest.raises(ValueError, match=r"bad\.npz: entry 1 \(b\.png\): width and height must be positive"):
        load_results(path)


def test_a_forged_array_header_is_refused_without_allocating_it(tmp_path):
    """An .npz member whose .npy header claims (10**11, 543, 3) would make numpy allocate terabytes."""
    import zipfile

    from holistic_lab.result import load_results, save_results

    good = save_results(tmp_path / "good.npz", [HolisticResult.empty(8, 6)], ["a.png"])
    forged = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(forged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xyz.npy":
                data = data.replace(b"(1, 543, 3)", b"(100000000000, 543, 3)")
            target.writestr(info.filename, data)
    with pytest.raises(ValueError, match=r"bomb\.npz: array 'xyz' declares shape \(100000000000, 543, 3\)"):
        load_results(forged)


def test_a_two_d_point_is_known():
    """Human annotations carry x, y and no z: mask() counts them as known."""
    result = HolisticResult.empty(8, 6)
    result.xyz[0] = [0.5, 0.5, np.nan]
    assert result.mask()[0] and result.mask().sum() == 1
