"""The paper's metrics against hand-computed cases, and the `evaluate` command."""
import json
import math

import pytest

from ig_llm.cli import main as cli_main
from ig_llm.scene.program import Scene, SceneObject, scene_to_clevr
from ig_llm.training.eval.evaluate import EvaluationError, evaluate_files
from ig_llm.training.eval.metrics import aggregate, match_objects, scene_metrics, yaw_error_deg
from ig_llm.training.eval.report import format_table


def obj(shape, x, y, color="red", material="rubber", size="large", rot=0.0):
    z = 0.7 if size == "large" else 0.35
    return SceneObject(shape=shape, color=color, material=material, size=size, loc=(x, y, z), rotation=rot)


def test_hungarian_beats_greedy():
    # greedy nearest-first would pair pred 0.6 with true 1.0 (0.4) and leave 1.7 -> 0.0 (1.7);
    # the optimal assignment is 0.6 -> 0.0 and 1.7 -> 1.0 (total 1.3 < 2.1).
    true = Scene([obj("cube", 0.0, 0.0), obj("cube", 1.0, 0.0)])
    pred = Scene([obj("cube", 1.7, 0.0), obj("cube", 0.6, 0.0)])
    assert sorted(match_objects(true.objects, pred.objects)) == [(0, 1), (1, 0)]
    m = scene_metrics(true, pred)
    assert m["l2"] == pytest.approx((0.6 + 0.7) / 2)
    assert m["count_acc"] == 1.0 and m["ace"] == 0.0


def test_unmatched_objects_and_spheres():
    # true: a red cube, a blue sphere, a green cylinder (missed); pred: two objects
    true = Scene([obj("cube", 0, 0, color="red"),
                  obj("sphere", 2, 0, color="blue", size="small"),
                  obj("cylinder", -2, 1, color="green")])
    pred = Scene([obj("cube", 0.1, 0, color="gray"),                         # colour wrong
                  obj("cube", 2, 0.2, color="blue", size="small")])           # shape wrong, but true is a sphere
    m = scene_metrics(true, pred)
    assert m["n_matched"] == 2
    assert m["ace"] == 1.0 and m["count_acc"] == 0.0
    assert m["l2"] == pytest.approx((0.1 + 0.2) / 2)
    assert m["color_acc"] == pytest.approx(0.5)
    assert m["size_acc"] == 1.0 and m["material_acc"] == 1.0
    assert m["shape_acc"] == 1.0          # only the cube pair counts; the sphere pair is excluded
    assert m["all_attr_acc"] == 0.0       # cube: colour wrong; sphere: shape wrong; cylinder: unmatched
    assert m["yaw_err_deg"] == pytest.approx(0.0)  # one cube-cube pair, both yaw 0


def test_extra_predictions_and_all_attributes():
    true = Scene([obj("cylinder", 0, 0), obj("sphere", 2, 2, material="metal")])
    pred = Scene([obj("cylinder", 0, 0.3), obj("sphere", 2, 2, material="metal"),
                  obj("cube", -2.5, -2.5), obj("cube", 2.5, -2.5)])
    m = scene_metrics(true, pred)
    assert m["ace"] == 2.0 and m["count_acc"] == 0.0
    assert m["l2"] == pytest.approx(0.15)
    assert m["all_attr_acc"] == 1.0       # extras do not hurt the per-true-object rate
    assert m["shape_acc"] == 1.0          # the cylinder pair only
    assert m["yaw_err_deg"] is None       # no cube-cube pair


def test_empty_predictions_and_empty_scene():
    true = Scene([obj("cube", 0, 0), obj("sphere", 1, 1), obj("cylinder", 2, 2)])
    m = scene_metrics(true, Scene([]))
    assert m["ace"] == 3.0 and m["count_acc"] == 0.0 and m["all_attr_acc"] == 0.0
    for k in ("l2", "shape_acc", "color_acc", "material_acc", "size_acc", "yaw_err_deg"):
        assert m[k] is None
    e = scene_metrics(Scene([]), Scene([]))
    assert e["count_acc"] == 1.0 and e["ace"] == 0.0 and e["all_attr_acc"] is None


def test_shape_excludes_only_true_spheres():
    true = Scene([obj("sphere", 0, 0), obj("cube", 2, 0), obj("cylinder", -2, 0)])
    pred = Scene([obj("cylinder", 0, 0), obj("cylinder", 2, 0), obj("sphere", -2, 0)])
    m = scene_metrics(true, pred)
    assert m["shape_acc"] == 0.0          # cube->cylinder and cylinder->sphere are both wrong


def test_yaw_error_modulo_quarter_turn():
    assert yaw_error_deg(0.1, 0.1 + math.pi / 2) == pytest.approx(0.0, abs=1e-9)
    assert yaw_error_deg(math.radians(10), math.radians(85)) == pytest.approx(15.0)
    assert yaw_error_deg(math.radians(-44), math.radians(44)) == pytest.approx(2.0)
    true = Scene([obj("cube", 0, 0, rot=math.radians(10)), obj("cube", 3, 0, rot=0.0)])
    pred = Scene([obj("cube", 0, 0, rot=math.radians(85)), obj("cube", 3, 0, rot=math.radians(30))])
    assert scene_metrics(true, pred)["yaw_err_deg"] == pytest.approx((15 + 30) / 2)


def test_aggregate_skips_empty_denominators():
    true = Scene([obj("cube", 0, 0), obj("sphere", 1, 1)])
    s1 = scene_metrics(true, Scene([obj("cube", 0, 0.2), obj("sphere", 1, 1)]))   # l2 0.1
    s2 = scene_metrics(true, Scene([]))                                            # l2 undefined
    summary = aggregate([s1, s2])
    assert summary["l2"] == pytest.approx(0.1) and summary["scenes_l2"] == 1
    assert summary["count_acc"] == pytest.approx(0.5) and summary["scenes_count_acc"] == 2
    assert summary["ace"] == pytest.approx(1.0)
    assert summary["all_attr_acc"] == pytest.approx(0.5)   # (2/2 + 0/2) / 2
    assert "count_acc" in format_table({"A": summary})


def _write_scenes(path, scenes, names):
    recs = [scene_to_clevr(s, image_filename=n) for s, n in zip(scenes, names)]
    path.write_text(json.dumps({"info": {}, "scenes": recs}))


def test_evaluate_command(tmp_path, capsys):
    true = [Scene([obj("cube", 0, 0), obj("sphere", 1, 1)]), Scene([obj("cylinder", 0, 0)])]
    pred = [Scene([obj("cube", 0, 0.2), obj("sphere", 1, 1)]), Scene([obj("cylinder", 0, 0)])]
    names = ["CLEVR_new_000000.png", "CLEVR_new_000001.png"]
    _write_scenes(tmp_path / "scenes.json", true, names)
    # predictions name images by path and in another order: joined by file name
    _write_scenes(tmp_path / "pred.json", pred[::-1], ["/x/" + n for n in names[::-1]])
    out = tmp_path / "m" / "metrics.json"
    rc = cli_main(["evaluate", "--truth", str(tmp_path), "--pred", str(tmp_path / "pred.json"), "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["summary"]["l2"] == pytest.approx(0.05)
    assert report["summary"]["count_acc"] == 1.0
    assert "l2" in capsys.readouterr().out

    # one prediction missing: a clear error, or scored as empty on request
    _write_scenes(tmp_path / "pred1.json", pred[:1], names[:1])
    with pytest.raises(EvaluationError, match="no prediction"):
        evaluate_files(tmp_path / "scenes.json", tmp_path / "pred1.json")
    s = evaluate_files(tmp_path / "scenes.json", tmp_path / "pred1.json", missing_as_empty=True)["summary"]
    assert s["count_acc"] == 0.5 and s["missing_predictions"] == 1
    # an image not in the truth, and a missing file
    _write_scenes(tmp_path / "pred2.json", pred, ["other.png", names[0]])
    with pytest.raises(EvaluationError, match="not in the truth"):
        evaluate_files(tmp_path / "scenes.json", tmp_path / "pred2.json")
    assert cli_main(["evaluate", "--truth", str(tmp_path / "nope.json"), "--pred", str(tmp_path / "pred.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_markdown_tables():
    from ig_llm.training.eval.report import ablation_table, metrics_markdown
    s = aggregate([scene_metrics(Scene([obj("cube", 0, 0)]), Scene([obj("cube", 0, 0.1)]))])
    md = metrics_markdown({"A": s, "B": s})
    assert "| count_acc | 100.0 % | 100.0 % |" in md and "| l2 | 0.100 | 0.100 |" in md
    tab = ablation_table({"default": {"A": s, "A_480": s}, "char numbers": {"A": s}})
    assert tab.count("\n| ") == 2 and "A_480" not in tab   # 2 rows under the header; 480 sets left out


def test_count_diagnosis_by_hand(tmp_path, capsys):
    """tools/count_errors.py: a missed object the probe found, a missed one nobody found, a
    duplicate and a phantom extra; l2 split by counted right / wrong and per axis."""
    from ig_llm.tools.count_errors import diagnose, main as count_errors_main

    def rec(name, scene, visible=None):
        r = scene_to_clevr(scene, image_filename=name)
        r.update(width=10, height=10)
        for o, v in zip(r["objects"], visible or []):
            o["visible_pixels"] = v
        return r

    right_t = Scene([obj("cube", 0, 0), obj("sphere", 2, 0)])
    right_p = Scene([obj("cube", 0.3, 0), obj("sphere", 2, 0.4)])            # l2 (0.3 + 0.4) / 2
    under_t = Scene([obj("cube", 0, 0), obj("cube", 3, 0), obj("cube", -3, 0)])
    under_p = Scene([obj("cube", 0, 0.1)])                                   # misses (3, 0) and (-3, 0)
    over_t = Scene([obj("cube", 0, 0)])
    over_p = Scene([obj("cube", 0, 0), obj("cube", 0.2, 0), obj("cube", -2, 2)])   # a duplicate, a phantom
    truth = [rec("a.png", right_t), rec("b.png", under_t, [50, 3, 1]), rec("c.png", over_t)]
    preds = {r["image_filename"]: r for r in (rec("a.png", right_p), rec("b.png", under_p), rec("c.png", over_p))}
    probes = [right_p, Scene([obj("cube", 0, 0), obj("cube", 3.2, 0)]), over_t]   # the probe saw (3, 0) only
    out = diagnose(truth, preds, probes)
    assert (out["scenes_counted_right"], out["scenes_counted_wrong"]) == (1, 2)
    assert out["l2_counted_right"] == pytest.approx(0.35)
    assert out["l2_counted_wrong"] == pytest.approx((0.1 + 0.0) / 2)
    assert out["abs_err_x"] == pytest.approx(0.3 / 4) and out["abs_err_y"] == pytest.approx(0.5 / 4)
    assert out["missed_objects"] == 2 and out["missed_probe_saw"] == 1
    assert sorted(m["visible_pixels"] for m in out["missed"]) == [1, 3]
    assert out["missed_median_visible_share"] == pytest.approx(0.02)
    assert out["extra_objects"] == 2 and out["extra_duplicates"] == 1
    assert diagnose(truth, preds, None)["missed_probe_saw"] is None
    # the command: a prediction file that lacks an image ends in one sentence
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "scenes.json").write_text(json.dumps({"scenes": truth}))
    (tmp_path / "p.json").write_text(json.dumps({"scenes": [preds["a.png"]]}))
    assert count_errors_main([str(ds), str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no prediction for 2 image(s)" in err
    assert count_errors_main([str(ds), str(tmp_path / "p.json"), "--subset"]) == 0
    assert "scenes_counted_right             1" in capsys.readouterr().out
    # a damaged predictions file, an unwritable --json: one sentence, exit 2, no traceback
    from ig_llm.tools import run_tool
    (tmp_path / "bad.json").write_text("{not json")
    assert run_tool("count_errors", lambda: count_errors_main([str(ds), str(tmp_path / "bad.json")])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("count_errors: ") and "not valid JSON" in err and err.count("\n") == 0
    (tmp_path / "out").mkdir()
    assert run_tool("count_errors", lambda: count_errors_main(
        [str(ds), str(tmp_path / "p.json"), "--subset", "--json", str(tmp_path / "out")])) == 2
    assert "is a folder" in capsys.readouterr().err and not any((tmp_path / "out").iterdir())
