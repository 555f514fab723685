"""The holistic-lab command line."""
from holistic_lab.cli import main
from holistic_lab.result import load_results


def test_info_lists_the_shipped_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "mediapipe                0.10.21" in out and "hand_recrop" in out


def test_label_writes_npz_and_reports_errors(fixtures, tmp_path, capsys):
    out = tmp_path / "labels.npz"
    assert main(["label", str(fixtures / "coco" / "000000040083.jpg"), "--out", str(out), "--quiet"]) == 0
    names, results = load_results(out)
    assert len(names) == 1 and results[0].present["pose"]
    assert main(["label", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
