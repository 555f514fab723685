"""The benchmark report without models: timing statistics, the JSON schema, saving as a run
goes, the offline HTML page and regression flagging, on synthetic timings with known truth."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from holistic_lab.bench import (ReportBuilder, compare_reports, is_report_file, is_report_page, median_ratio, read_report,
                                render_html, summarize, write_html, write_report)
from holistic_lab.bench.machine import cpu_model_and_flags, machine_info
from holistic_lab.bench.plots import pareto_front
from holistic_lab.bench.schema import SCHEMA_VERSION, Ratio, Report, timing

HOSTILE = "<script>alert(1)</script>"
EXTERNAL = re.compile(r"https?://|src=\"//|src='//|@import|url\(", re.IGNORECASE)
SETTINGS = {"images": "fixtures: mmpose", "n_images": 40, "repeats": 3, "warmup": 2, "threads": [1], "quick": True,
            "command": "holistic-lab bench --variants shipped --out report", "date": "2026-11-23T01:00:00Z"}


def lognormal_ms(median_ms, n, seed, sigma=0.25):
    return np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n)


def make_report(tmp_path, *, slowdown=1.0, seed=0, n=200, names=("mediapipe", "int8"), accuracy=0.80,
                int8_bytes=3_000_000, finish=True) -> Report:
    builder = ReportBuilder(tmp_path / f"r{seed}.json", machine_info(), SETTINGS)
    reference = lognormal_ms(45.0, n, seed)
    for index, name in enumerate(names):
        stage_bytes = {} if name == "mediapipe" else {"pose_landmark": int8_bytes, "hand_landmark": 2_000_000}
        builder.add_variant({"name": name, "path": "mediapipe" if name == "mediapipe" else f"variants/{name}",
                             "kinds": {} if name == "mediapipe" else {"pose_landmark": "int8"},
                             "stage_bytes": stage_bytes, "total_bytes": sum(stage_bytes.values())})
        total = reference if name == "mediapipe" else lognormal_ms(30.0 * slowdown, n, seed + 100 + index)
        stages = {} if name == "mediapipe" else {"pose_landmark": timing(total * 0.6), "hand_landmark": timing(total * 0.3)}
        ratio = None if name == "mediapipe" else Ratio.of(median_ratio(total, reference, paired=True))
        builder.add_latency({"variant": name, "threads": 1, "mode": "image", "stages": stages, "end_to_end": timing(total),
                             "ratio_to_mediapipe": ratio})
        builder.add_accuracy({"variant": name, "part": "body", "metric": "pck", "value": accuracy, "n": 120,
                              "low": accuracy - 0.03, "high": accuracy + 0.03, "dataset": "coco-wholebody"})
        builder.add_memory({"variant": name, "peak_rss_mb": 300.0 + index})
        builder.save(f"{name}, 1 thread")
    builder.add_peak({"threads": 1, "gmacs": 50.0, "method": "512x512x512 float32 GEMM, TFLite XNNPACK"})
    builder.add_macs({"variant": names[-1], "stage": "pose_landmark", "threads": 1, "macs": 300_000_000,
                      "gmacs_per_s": 20.0, "fraction_of_peak": 0.4})
    if finish:
        builder.complete()
    return builder.report


# ---- statistics

def test_summary_of_timings():
    summary = summarize([3.0, 1.0, 2.0, 10.0])
    assert (summary.median_ms, summary.min_ms, summary.max_ms, summary.n) == (2.5, 1.0, 10.0, 4)
    assert summary.p90_ms == pytest.approx(np.percentile([1, 2, 3, 10], 90))


@pytest.mark.parametrize("bad, words", [([], "no timings"), ([1.0, float("nan")], "NaN"), ([1.0, float("inf")], "infinite"),
                                        ([1.0, -0.5], "negative")])
def test_bad_timings_are_refused_by_name(bad, words):
    with pytest.raises(ValueError, match=words):
        summarize(bad)
    with pytest.raises(ValueError, match="candidate_ms.*" + words):
        median_ratio(bad, [1.0, 2.0])


@pytest.mark.parametrize("paired", [False, True])
def test_bootstrap_interval_contains_the_true_ratio(paired):
    true_ratio = 0.6
    covered = 0
    for seed in range(20):
        reference = lognormal_ms(40.0, 300, seed)
        candidate = (reference * true_ratio * np.random.default_rng(seed + 50).lognormal(0, 0.05, 300) if paired
                     else lognormal_ms(40.0 * true_ratio, 300, seed + 50))
        ratio = median_ratio(candidate, reference, paired=paired, seed=seed)
        assert ratio.low <= ratio.value <= ratio.high
        covered += ratio.low <= true_ratio <= ratio.high
    assert covered >= 17  # a 95% interval: 19 of 20 expected, 17 allows for chance


def test_interval_is_narrow_with_many_timings_and_wide_with_few():
    many = median_ratio(lognormal_ms(24, 2000, 1), lognormal_ms(40, 2000, 2))
    few = median_ratio(lognormal_ms(24, 8, 1), lognormal_ms(40, 8, 2))
    assert many.high - many.low < 0.06
    assert few.high - few.low > 3 * (many.high - many.low)
    again = median_ratio(lognormal_ms(24, 8, 1), lognormal_ms(40, 8, 2))
    assert (again.low, again.high) == (few.low, few.high)  # seeded


def test_paired_interval_is_narrower_when_images_differ_and_needs_equal_lengths():
    image_cost = np.random.default_rng(3).lognormal(np.log(40), 0.6, 200)  # images differ far more than noise
    reference = image_cost * np.random.default_rng(4).lognormal(0, 0.03, 200)
    candidate = 0.7 * image_cost * np.random.default_rng(5).lognormal(0, 0.03, 200)
    paired, independent = median_ratio(candidate, reference, paired=True), median_ratio(candidate, reference)
    assert paired.high - paired.low < 0.5 * (independent.high - independent.low)
    with pytest.raises(ValueError, match="paired"):
        median_ratio(candidate[:-1], reference, paired=True)


# ---- schema

def test_report_round_trips_through_json(tmp_path):
    report = make_report(tmp_path)
    path = write_report(report, tmp_path / "report.json")
    again = read_report(path)
    assert again == report
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["status"]["state"] == "complete"
    assert data["status"]["done"] == ["mediapipe, 1 thread", "int8, 1 thread"]
    samples = data["latency"][1]["end_to_end"]["samples_ms"]
    assert len(samples) == 200 and all(round(value, 2) == value for value in samples)
    assert data["variants"][1]["total_bytes"] == 5_000_000
    assert is_report_file(path) and not is_report_file(_written(tmp_path, {"format": "other"}, "other.json"))


def test_importing_the_package_loads_no_tensorflow_mediapipe_or_matplotlib():
    code = ("import sys, holistic_lab.bench, holistic_lab.bench.schema, holistic_lab.bench.compare; "
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'mediapipe', 'matplotlib')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_machine_records_cpu_flags_and_versions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma f16c avx512f\n")
    assert cpu_model_and_flags(cpuinfo) == ("AMD EPYC 7B13", ["avx2", "fma", "f16c", "avx512f"])
    machine = machine_info()
    assert machine["cores"] >= 1 and {"tensorflow", "mediapipe", "numpy"} <= set(machine["versions"])


def _written(tmp_path, data, name="report.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_read_report_refuses_what_is_wrong_by_name(tmp_path):
    good = make_report(tmp_path).model_dump(mode="json")
    text = json.dumps(good)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_report(_written(tmp_path, "{not json"))
    with pytest.raises(ValueError, match="not valid JSON"):  # a file cut short by a crash
        read_report(_written(tmp_path, text[: len(text) // 2]))
    with pytest.raises(ValueError, match="schema_version.*reads version 1, got 2"):
        read_report(_written(tmp_path, {**good, "schema_version": 2}))
    with pytest.raises(ValueError, match="field format"):
        read_report(_written(tmp_path, {**good, "format": "something-else"}))
    missing = {key: value for key, value in good.items() if key != "machine"}
    with pytest.raises(ValueError, match="field machine: Field required"):
        read_report(_written(tmp_path, missing))
    deep = json.loads(text)
    del deep["latency"][1]["end_to_end"]["median_ms"]
    with pytest.raises(ValueError, match=r"field latency\.1\.end_to_end\.median_ms"):
        read_report(_written(tmp_path, deep))
    unknown = json.loads(text)
    unknown["memory"][0]["variant"] = "nowhere"
    with pytest.raises(ValueError, match="memory.0.variant 'nowhere' is not in variants"):
        read_report(_written(tmp_path, unknown))
    with pytest.raises(ValueError, match="report.json"):
        read_report(tmp_path / "absent" / "report.json")


def test_failed_write_leaves_the_old_report_intact(tmp_path):
    report = make_report(tmp_path)
    path = write_report(report, tmp_path / "report.json")
    before = path.read_bytes()
    broken = Report.model_construct(**{**dict(report), "schema_version": 7})  # skips validation, as an in-place edit might
    with pytest.raises(ValueError, match="schema_version"):
        write_report(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_ctrl_c_keeps_what_was_measured(tmp_path):
    json_path, html_path = tmp_path / "out" / "report.json", tmp_path / "out" / "report.html"
    builder = ReportBuilder(json_path, machine_info(), SETTINGS, html_path=html_path)
    with pytest.raises(KeyboardInterrupt):
        with builder:
            builder.add_variant({"name": "mediapipe", "path": "mediapipe", "total_bytes": 0})
            builder.add_latency({"variant": "mediapipe", "threads": 1, "mode": "video", "end_to_end": timing([40.0, 41.0]),
                                 "frames_per_s": 24.6})
            builder.save("mediapipe, 1 thread, video")
            assert read_report(json_path).status.state == "running"
            builder.add_variant({"name": "int8", "path": "variants/int8", "total_bytes": 1})
            raise KeyboardInterrupt
    saved = read_report(json_path)
    assert saved.status.state == "interrupted" and saved.status.done == ["mediapipe, 1 thread, video"]
    assert [v.name for v in saved.variants] == ["mediapipe", "int8"] and saved.latency[0].frames_per_s == 24.6
    page = html_path.read_text()
    assert 'class="banner"' in page and "interrupted" in page and "mediapipe, 1 thread, video" in page


def test_a_row_for_an_unknown_variant_is_refused_when_added(tmp_path):
    builder = ReportBuilder(tmp_path / "report.json", machine_info(), SETTINGS)
    with pytest.raises(ValueError, match="latency.0.variant 'ghost' is not in variants"):
        builder.add_latency({"variant": "ghost", "threads": 1, "mode": "image", "end_to_end": timing([1.0])})


# ---- HTML

def test_html_is_offline_and_escapes_hostile_names(tmp_path):
    report = make_report(tmp_path, names=("mediapipe", HOSTILE, "see https://example.com/x.css url(a) @import b $x$"))
    page = render_html(report)
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;&#47;script&gt;" in page
    assert page.count("<img ") == 3 and "data:image/png;base64," in page  # size, stages, speed-accuracy
    assert "banner" not in page.split("</style>")[1]
    path = write_html(report, tmp_path / "report.html")
    assert path.read_text() == page
    assert is_report_page(path) and not is_report_page(_written(tmp_path, "<html>mine</html>", "mine.html"))


def test_interrupted_report_renders_with_its_banner(tmp_path):
    builder = ReportBuilder(tmp_path / "report.json", machine_info(), SETTINGS)
    builder.add_variant({"name": "mediapipe", "path": "mediapipe", "total_bytes": 0})
    builder.save("variants read")
    builder.interrupted()
    page = render_html(read_report(tmp_path / "report.json"))
    assert 'class="banner"' in page and "Ctrl-C" in page and "variants read" in page


def test_pareto_front():
    points = [(10, 0.7), (20, 0.8), (15, 0.6), (30, 0.8), (40, 0.9), (10, 0.65)]
    assert pareto_front(points) == [0, 1, 4]
    assert pareto_front([(10, 0.05), (20, 0.04), (15, 0.06)], higher_is_better=False) == [0, 1]


# ---- regressions

def test_a_real_slowdown_is_flagged_and_noise_is_not(tmp_path):
    old = make_report(tmp_path, seed=0)
    slower = compare_reports(old, make_report(tmp_path, seed=1, slowdown=1.2))
    flagged = {(r.variant, r.what) for r in slower.regressions if r.kind == "latency"}
    assert flagged == {("int8", "end_to_end"), ("int8", "pose_landmark"), ("int8", "hand_landmark")}
    end = next(r for r in slower.regressions if r.what == "end_to_end")
    assert 1.1 < end.change < 1.3 and end.low > 1.05 and "int8 end_to_end" in str(end)
    for seed in range(2, 8):  # the same distributions drawn again: noise only (latency 4, accuracy 2, size 4)
        same = compare_reports(old, make_report(tmp_path, seed=seed))
        assert same.regressions == [], same.lines()
        assert same.compared == 4 + 2 + 4 and same.warnings == []


def test_accuracy_drop_and_size_growth_are_flagged_beyond_tolerance(tmp_path):
    old = make_report(tmp_path, seed=0)
    within = compare_reports(old, make_report(tmp_path, seed=1, accuracy=0.795))
    assert within.regressions == []
    worse = compare_reports(old, make_report(tmp_path, seed=1, accuracy=0.78, int8_bytes=3_500_000))
    kinds = sorted((r.kind, r.variant, r.what) for r in worse.regressions)
    assert kinds == [("accuracy", "int8", "body pck coco-wholebody"), ("accuracy", "mediapipe", "body pck coco-wholebody"),
                     ("size", "int8", "pose_landmark"), ("size", "int8", "total")]
    assert compare_reports(old, make_report(tmp_path, seed=1, accuracy=0.78),
                           accuracy_tolerance={"pck": 0.05}).regressions == []
    with pytest.raises(ValueError, match="accuracy_tolerance"):
        compare_reports(old, old, accuracy_tolerance={"bleu": 0.1})


def test_missing_variants_are_listed_and_other_machines_warned(tmp_path):
    old = make_report(tmp_path, seed=0, names=("mediapipe", "int8", "pruned"))
    new = make_report(tmp_path, seed=1, names=("mediapipe", "int8", "int8s"))
    moved = new.model_copy(update={"machine": new.machine.model_copy(update={"cpu_model": "Apple M3"})})
    result = compare_reports(write_report(old, tmp_path / "old.json"), moved)
    assert result.only_in_old == ["pruned"] and result.only_in_new == ["int8s"]
    assert any("different machines (cpu_model" in warning for warning in result.warnings)
    assert result.lines()[-1].endswith("compared measurements")


# ---- the explorer (ipywidgets callbacks, no browser)

def test_report_explorer_redraws_when_a_widget_changes(tmp_path):
    from holistic_lab.bench import ReportExplorer

    report = make_report(tmp_path, names=("mediapipe", "int8", "pruned"))
    explorer = ReportExplorer(report)
    view = explorer.widget()
    assert [name for name, _, _ in explorer.points] == ["mediapipe", "int8", "pruned"]
    first_png, first_table = bytes(explorer._widgets["image"].value), explorer._widgets["table"].value
    assert first_png.startswith(b"\x89PNG") and "pruned" in first_table
    explorer._widgets["variants"].value = ("mediapipe", "int8")  # as a click in the notebook does
    assert [name for name, _, _ in explorer.points] == ["mediapipe", "int8"]
    assert bytes(explorer._widgets["image"].value) != first_png and "pruned" not in explorer._widgets["table"].value
    assert view.children  # a widget tree to display
    with pytest.raises(ValueError, match="unknown variants"):
        explorer.select_variants(["nope"])
    with pytest.raises(ValueError, match="no latency at 8 threads"):
        explorer.select_threads(8)
    with pytest.raises(ValueError, match="no accuracy"):
        explorer.select_metric("face", "nme", "300w")


def test_report_explorer_needs_accuracy_rows(tmp_path):
    from holistic_lab.bench import ReportExplorer

    report = make_report(tmp_path).model_copy(update={"accuracy": []})
    with pytest.raises(ValueError, match="no accuracy rows"):
        ReportExplorer(report)


def test_runs_with_other_workers_or_stage_threads_are_compared_with_a_warning(tmp_path):
    old = make_report(tmp_path, seed=1)
    new = make_report(tmp_path, seed=2)
    new = new.model_copy(update={"settings": new.settings.model_copy(update={"workers": 2,
                                                                              "stage_threads": {"pose_landmark": 2}})})
    warnings = compare_reports(old, new).warnings
    assert any("different workers (1 vs 2)" in text for text in warnings)
    assert any("different stage_threads ({} vs {'pose_landmark': 2})" in text for text in warnings)
