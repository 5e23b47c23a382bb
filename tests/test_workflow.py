"""End-to-end: the real Snakemake workflow on the tiny config (tiny corpus, 2 layers, d=32), real training."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from workflow_helpers import REPO, finished_tiny_run, make_workdir, planned_rules, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return finished_tiny_run(tmp_path_factory, "e2e")  # the tiny run, its console in console.txt


def test_the_console_is_quiet_and_says_how_far_the_run_is(finished_run):
    """The workflow profile's logger (src/snakemake_logger_plugin_corpus_weights): the job table, one line per
    finished job with the time left once a model is trained, the trainer's progress; no input/output listings."""
    console = (finished_run / "console.txt").read_text().splitlines()
    finished = [line for line in console if " jobs (" in line and "elapsed" in line]
    total = int(finished[-1].split("/")[1].split()[0])
    assert len(finished) == total and finished[-1].split("] ")[1].startswith(f"{total}/{total} jobs (100 %)")
    assert any("about" in line and "left" in line for line in finished)  # an ETA once a model is trained
    assert any("[orig-s0] [train] done:" in line for line in console)
    # the tiny corpus has fewer distinct words than its vocab_size: the job's warning reaches the console
    assert any(line.startswith("[tokenize] WARNING vocabulary shrunk from 300 to") for line in console), console
    assert not any(line.strip().startswith(("input:", "output:", "Shell command", "Select jobs")) for line in console)
    assert len(console) <= total + 60, len(console)  # the job table, a line per job, training progress


def test_report_and_metrics(finished_run):
    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    html = (finished_run / "results/report.html").read_text()
    for heading in ["note's value", "ours, note protocol", "ours, corrected", "Verdicts", "Parameter accounting",
                    "L_opt", "Gates", "loss ladder", "Training", "data:image/png;base64,"]:
        assert heading in html, heading
    assert set(metrics["models"]) == {"main-s0", "main-s1", "step0", "shuffled"}
    assert len(metrics["models"]["main-s0"]["note_protocol"]["qk_cosines"]) == 2
    assert metrics["K_list"] == [4, 8]
    assert {v["id"] for v in metrics["verdicts"]} == {"corpus_basis", "attention", "depth", "l0_alignment",
                                                      "norm_matched"}
    # The tiny corpus has fewer distinct words than vocab_size=300: V shrinks visibly.
    assert metrics["config"]["vocab_shrunk"] is True and metrics["config"]["vocab_size"] < 300
    assert "shrunk" in html
    # Training really happened: the loss fell from about log(V).
    assert metrics["training"]["orig-s0"]["final_train_loss"] < np.log(metrics["config"]["vocab_size"])
    assert metrics["training"]["orig-s0"]["wall_s"] > 0
    # text never becomes markup: "<" in a gate's rule is escaped, not a tag
    assert "|z| &lt; 3.0" in html and "|z| < 3.0" not in html


def test_gates_computed_and_a_failing_gate_withholds(finished_run):
    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    html = (finished_run / "results/report.html").read_text()
    gates = metrics["gates"]
    assert set(gates) == {"G1", "G2", "G3", "G4"}
    for g in gates.values():
        assert isinstance(g["passed"], bool) and g["values"] and g["rule"]
        assert (g["reason"] is None) == g["passed"]
    assert gates["G4"]["passed"]  # two seeds at one budget
    verdicts = {v["id"]: v for v in metrics["verdicts"]}
    for v in verdicts.values():
        failed = [g for g in v["gates"] if not gates[g]["passed"]]
        assert (v["status"] == "withheld") == bool(failed), v
        if failed:
            assert failed[0] in v["reason"] and "Withheld" in html
    assert all(v["number"] in ("reproduces", "does not reproduce", "reproduces (uninformative)")
               for v in verdicts.values() if v["id"] != "intervention")  # the number is stated even when withheld
    assert verdicts["depth"]["conclusion_ungated"] == "not demonstrated"  # one depth: never concluded


def test_science_on_the_tiny_run(finished_run):
    """The controls behave as they must on a real (tiny) run, and a few metrics recomputed from per-model files."""
    import pandas as pd

    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    models = metrics["models"]
    for label in ("main-s0", "main-s1"):
        assert models[label]["corrected"]["positive_control"]["bigram"]["z"] > 5, label
    assert abs(models["step0"]["corrected"]["positive_control"]["bigram"]["z"]) < 3
    assert abs(models["shuffled"]["corrected"]["positive_control"]["bigram"]["z"]) < 3
    assert models["shuffled"]["corrected"]["positive_control"]["unigram"]["r"] > 0.3  # it learned frequencies
    share0 = models["step0"]["corrected"]["projection_share"]
    assert abs(share0["random"] - metrics["K_over_d"]) < 0.05  # step 0's random share ≈ K/d
    # the second seed has its own seed and its own init
    s0 = json.loads((finished_run / "results/tiny/default/train/orig-s0/summary.json").read_text())
    s1 = json.loads((finished_run / "results/tiny/default/train/orig-s1/summary.json").read_text())
    assert (s0["seed"], s1["seed"]) == (0, 1) and s0["tokens"] == s1["tokens"]
    w0 = np.load(finished_run / "results/tiny/default/weights/orig-s0/snapshot_000.npz")
    w1 = np.load(finished_run / "results/tiny/default/weights/orig-s1/snapshot_000.npz")
    assert not np.array_equal(w0["L0.W_Q"], w1["L0.W_Q"])
    # recompute: the headline share and the seed mean from the per-model projection files
    K = metrics["K"]
    shares = []
    for run in ("orig-s0", "orig-s1"):
        t = pd.read_parquet(finished_run / f"results/tiny/default/analysis/{run}/snapshot_100/projection/K{K}.parquet")
        sel = t[(t.basis == "corpus_aligned") & (t.target == "W") & (t.matrix == "pooled_nonembed")]
        shares.append(float(sel.share.iloc[0]))
    assert np.isclose(models["main-s0"]["corrected"]["projection_share"]["corpus_aligned"], shares[0])
    assert np.isclose(metrics["seeds"]["share_corpus"]["mean"], np.mean(shares))
    assert np.isclose(metrics["seeds"]["share_corpus"]["sd"], np.std(shares, ddof=1))
    summary = json.loads((finished_run / "results/tiny/default/analysis/orig-s0/snapshot_100/summary.json").read_text())
    assert summary["seed"] == 0 and summary["role"] == "main" and summary["step"] == s0["steps"]
    assert np.isclose(summary["ladder"]["val_loss"], s0["final_val_loss"])


def test_second_run_plans_nothing(finished_run):
    assert planned_rules(finished_run, "results/report.html") == {}


def test_adding_K_plans_only_projection_and_report(finished_run):
    write_config(finished_run, {"analysis": {"K": [4, 8, 12]}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:
        write_config(finished_run, {"analysis": {"K": [4, 8]}}, name="test.yaml")
    assert set(planned) == {"fit_projections", "metrics", "report", "current_report"}, planned
    assert planned["fit_projections"] == 4  # one per analysed model (two main seeds, step 0, shuffled)


def test_changing_permutations_reruns_only_the_jobs_that_use_it(finished_run):
    write_config(finished_run, {"analysis": {"permutations": 60}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:
        write_config(finished_run, {"analysis": {"permutations": 100}}, name="test.yaml")
    # (trajectory reads the analysed snapshots' measure and attention files instead of measuring them again)
    assert set(planned) == {"measure", "attention", "trajectory", "metrics", "report", "current_report"}, planned


def test_training_hyperparameter_reruns_train_not_corpus(finished_run):
    original = (finished_run / "config/test.yaml").read_text()
    write_config(finished_run, {"train": {"lr": 0.001}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:  # the run's own config back, exactly (later tests plan against it)
        (finished_run / "config/test.yaml").write_text(original)
    assert "train" in planned and "report" in planned, planned
    assert not {"prepare_corpus", "tokenize", "corpus_stats", "shuffle_tokens"} & set(planned), planned


def test_killed_training_resumes_bit_identical(finished_run, tmp_path):
    workdir = make_workdir(tmp_path / "resume")
    target = "results/tiny/default/train/orig-s0/final.safetensors"
    crashed = snakemake(workdir, "--cores", "2", target, env={"CW_CRASH_AFTER_STEP": "40"})
    assert crashed.returncode != 0
    assert not (workdir / target).exists()
    resumed = snakemake(workdir, "--cores", "2", target)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads((workdir / "results/tiny/default/train/orig-s0/summary.json").read_text())
    assert summary["resumed_from_step"] == 40
    reference = load_file(str(finished_run / target))
    again = load_file(str(workdir / target))
    assert reference.keys() == again.keys()
    for key in reference:
        assert np.array_equal(reference[key], again[key]), key


def test_report_in_a_real_browser(finished_run):
    """Headless Chromium opens the tiny run's report from file://: no console errors, no network request, every
    image decoded, gates and verdict cards on the first screen, no horizontal overflow at phone width."""
    import os

    import browser

    if not browser.available():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/chromedriver missing: .ci/run installs them (apt-get install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed")
    shot = finished_run / "results/report_screenshot.png"
    page = browser.inspect(finished_run / "results/report.html", shot, width=1400, height=900)
    assert page["console_errors"] == [] and page["network_requests"] == [], page
    assert page["images"] and all(complete and width > 0 for complete, width in page["images"]), page["images"]
    assert page["gate_panel_bottom"] < page["viewport"][1], page  # the gate panel is on the first screen
    assert page["verdict_cards"] == 5 and page["verdict_cards_in_first_screen"] >= 1, page
    assert page["phone_overflow_px"] <= 0, page
    assert shot.stat().st_size > 10_000


def test_report_files_and_snakemake_report(finished_run):
    """The figures and full tables are files next to the page, and Snakemake's own report collects them."""
    import re

    files = finished_run / "results/tiny/default/report_files"
    assert {p.name for p in files.glob("*.png")} >= {"loss_ladder.png", "r2k.png", "head_heatmap.png"}
    for csv in ("per_matrix", "per_head", "weight_spectra", "runtimes"):
        assert (files / f"{csv}.csv").stat().st_size > 0
    # the corpus's own page and its copy at results/report.html both link to tables that exist
    for page in (finished_run / "results/tiny/default/report.html", finished_run / "results/report.html"):
        links = re.findall(r'href="([^"#:]+\.csv)"', page.read_text())
        assert len(links) == 4 and all((page.parent / link).is_file() for link in links), (page, links)
    proc = snakemake(finished_run, "--report", "results/snakemake-report.zip", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(finished_run / "results/snakemake-report.zip") as z:
        names = z.namelist()
    assert any(n.endswith("loss_ladder.png") for n in names) and any(n.endswith("report.html") for n in names)


def test_metrics_doc_matches_a_real_metrics_json(finished_run):
    """Every top-level key documented in docs/metrics.md is present (the optional `intervention` block aside), and
    no top-level key is undocumented."""
    import re

    doc = (REPO / "docs/metrics.md").read_text()
    documented = set()
    for cell in re.findall(r"^\| ([^|]+) \|", doc, flags=re.M):
        keys = re.findall(r"`([^`]+)`", cell)
        if not keys:
            continue
        documented.add(re.split(r"[.\[{<]", keys[0])[0])
        if not re.search(r"[.\[{<]", keys[0]):  # `K`, `K_list`: top-level siblings; otherwise sub-keys of the first
            documented.update(k for k in keys[1:] if not re.search(r"[.\[{<]", k))
    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    assert set(metrics) - documented == set(), "undocumented keys"
    assert documented - set(metrics) - {"intervention"} == set(), "documented keys missing"
    main = metrics["models"][metrics["main_label"]]["corrected"]
    for key in re.findall(r"`models\.<label>\.corrected\.([A-Za-z_0-9]+)", doc):
        assert key in main, key


def test_every_statistic_along_training(finished_run):
    """Rule trajectory: every main model and the control at every snapshot; its last point is the headline model
    (same trainer evaluation, same aligned share: split 0 of the headline fit is the trajectory's fit); the verdict
    cards and the gates say whether their statistic was still moving; the report has the figure."""
    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    tr = metrics["trajectory"]
    assert set(tr["runs"]) == {"main-s0", "main-s1", "shuffled"}
    for label, run in tr["runs"].items():
        rows = run["rows"]
        assert sorted({r["pct"] for r in rows}) == [0, 50, 100], label
        assert {r["stat"] for r in rows} == set(tr["statistics"]), label
    for label in ("main-s0", "main-s1"):
        last = {r["stat"]: r for r in tr["runs"][label]["rows"] if r["pct"] == 100}
        model = metrics["models"][label]["corrected"]
        assert last["val_loss"]["value"] == pytest.approx(model["ladder"]["val_loss"], rel=1e-12)
        assert last["learned_fraction"]["value"] == pytest.approx(model["ladder"]["learned_fraction"], rel=1e-9)
        assert last["aligned_share"]["value"] == pytest.approx(model["projection_share"]["corpus_aligned"], rel=1e-9)
        assert last["map_r2"]["value"] == pytest.approx(model["vocab_map"]["vocab_map_heldout_r2"], rel=1e-9)
    first = {r["stat"]: r["value"] for r in tr["runs"]["main-s0"]["rows"] if r["pct"] == 0}
    step0 = metrics["models"]["step0"]["corrected"]
    assert first["learned_fraction"] == pytest.approx(step0["ladder"]["learned_fraction"], rel=1e-9)
    for v in metrics["verdicts"]:
        assert v["still_moving_text"], v["id"]
    assert metrics["verdicts"][2]["id"] == "depth" and metrics["verdicts"][2]["still_moving"] is None
    assert all("still_moving_text" in metrics["gates"][g] for g in ("G1", "G2", "G3"))
    assert metrics["analysis"]["trajectory_jobs"] == 3 and metrics["analysis"]["trajectory_over_analysis"] > 0
    # the trajectory reads its snapshots' model files itself: no weights file exists for a snapshot that only the
    # trajectory uses (the half-way ones here)
    extracted = sorted(p.relative_to(finished_run / "results/tiny/default/weights").as_posix()
                       for p in (finished_run / "results/tiny/default/weights").rglob("*.npz"))
    assert extracted == [f"{run}/snapshot_{pct}.npz" for run in ("orig-s0", "orig-s1", "shuffled-s0")
                         for pct in ("000", "100")], extracted
    html = (finished_run / "results/report.html").read_text()
    assert 'id="trajectory"' in html and "along training</dt>" in html
    assert (finished_run / "results/tiny/default/report_files/trajectory.png").stat().st_size > 10_000


def test_trajectory_draws_rerun_only_the_trajectory(finished_run):
    write_config(finished_run, {"analysis": {"trajectory_draws": 10}}, name="test.yaml")
    try:
        planned = planned_rules(finished_run, "results/report.html")
    finally:
        write_config(finished_run, {"analysis": {"trajectory_draws": 20}}, name="test.yaml")
    assert planned == {"trajectory": 3, "metrics": 1, "report": 1, "current_report": 1}, planned


def test_results_page_and_comparison_from_a_real_run(finished_run, tmp_path):
    """The two command-line pages, run as a user runs them, on the real metrics.json."""
    import subprocess
    import sys

    metrics = finished_run / "results/metrics.json"
    page = subprocess.run([sys.executable, "-m", "corpus_weights.report.results_page", "--experiment", str(metrics),
                           "--wall-time", "1 min"], capture_output=True, text=True, check=True).stdout
    data = json.loads(metrics.read_text())
    for v in data["verdicts"]:
        assert v["conclusion"] in page and v["still_moving_text"].replace("|", "\\|") in page
    assert "below the bigram count model" in page and "Wall time: 1 min" in page
    out = tmp_path / "compare.md"
    proc = subprocess.run([sys.executable, "-m", "corpus_weights.report.compare", f"one={metrics}", f"two={metrics}", "-o",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    assert "| experiment | one | two |" in table
    for v in data["verdicts"]:
        assert table.count(f"{v['conclusion'].upper()}") >= 2
    html_out = tmp_path / "compare.html"
    subprocess.run([sys.executable, "-m", "corpus_weights.report.compare", str(metrics), "-o", str(html_out)], check=True,
                   capture_output=True)
    assert "data:image/png;base64," in html_out.read_text()
    # two experiments under one name, and a file that is not a metrics.json: one clear line, exit 2
    for args in ([f"a={metrics}", f"a={metrics}"], [str(finished_run / "config/test.yaml")]):
        proc = subprocess.run([sys.executable, "-m", "corpus_weights.report.compare", *args, "-o", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.startswith("compare: ") and "Traceback" not in proc.stderr


def test_report_tables_and_metrics_trace_back_to_the_per_model_files(finished_run):
    """Every analysed model's numbers in the report's model table (and in metrics.json) are the ones in its own
    per-model files, for the right snapshot and the right split: held-out (not train) R², target W (not ΔW), the
    model's own run; the seed statistics are the mean over the main models' files."""
    import pandas as pd

    from corpus_weights.core.ids import Basis, Pooled, Target
    from corpus_weights.report.report_tables import control_rows
    from corpus_weights.report.verdicts import fmt

    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    html = (finished_run / "results/report.html").read_text()
    K = metrics["K"]
    rows = {r["model"]: r for r in control_rows(metrics, list(metrics["models"]), K)}
    base = finished_run / "results/tiny/default/analysis"
    shares = []
    for label, mm in metrics["models"].items():
        snap = "snapshot_000" if mm["role"] == "step0" else "snapshot_100"
        folder = base / mm["run"] / snap
        summary = json.loads((folder / "summary.json").read_text())
        alignment = json.loads((folder / "alignment.json").read_text())
        attention = json.loads((folder / "attention.json").read_text())
        proj = pd.read_parquet(folder / f"projection/K{K}.parquet")
        pooled = proj[(proj.basis == Basis.CORPUS_ALIGNED) & (proj.matrix == Pooled.NONEMBED)]
        share_w = float(pooled[pooled.target == Target.W].share.iloc[0])
        share_dw = float(pooled[pooled.target == Target.DW].share.iloc[0])
        row = rows[label]
        assert summary["label"] == label and summary["snapshot"] == snap
        assert row["map held-out R²"] == alignment["vocab_map_heldout_r2"] != alignment["vocab_map_train_r2"]
        assert row["val loss"] == summary["ladder"]["val_loss"] and row["g"] == summary["ladder"]["learned_fraction"]
        assert row["bigram z"] == summary["controls"]["bigram"]["z"]
        assert row[f"share corpus (K={K})"] == pytest.approx(share_w, rel=1e-12)
        if mm["role"] != "step0":  # at step 0, W = W_init and ΔW = 0
            assert share_w != pytest.approx(share_dw, rel=1e-3)
        assert row["heads beyond random QK (BH)"] == f"{attention['token_space']['significant']}/{attention['heads']}"
        for column in ("map held-out R²", "val loss", "bigram z", f"share corpus (K={K})"):
            assert f"<td>{fmt(row[column])}</td>" in html, (label, column)
        if mm["role"] == "main":
            shares.append(share_w)
    assert metrics["seeds"]["share_corpus"]["mean"] == pytest.approx(float(np.mean(shares)), rel=1e-12)


def test_the_training_table_names_each_model_as_the_other_tables_do(finished_run):
    """One name per model across the report: the training table's rows are main-s0, main-s1, shuffled (as in the
    model table), each with its results folder and the numbers of its own summary.json."""
    from corpus_weights.report.report_tables import train_rows

    metrics = json.loads((finished_run / "results/metrics.json").read_text())
    html = (finished_run / "results/report.html").read_text()
    runs = {}
    for run in ("orig-s0", "orig-s1", "shuffled-s0"):
        runs[run] = {"summary": json.loads((finished_run / f"results/tiny/default/train/{run}/summary.json").read_text())}
    rows = train_rows(runs, metrics["models"])
    assert [(r["model"], r["folder"]) for r in rows] == [("main-s0", "train/orig-s0"), ("main-s1", "train/orig-s1"),
                                                         ("shuffled", "train/shuffled-s0")]
    assert [r["final val loss"] for r in rows] == [runs[run]["summary"]["final_val_loss"] for run in runs]
    assert {run: t["model"] for run, t in metrics["training"].items()} == {"orig-s0": "main-s0", "orig-s1": "main-s1",
                                                                          "shuffled-s0": "shuffled"}
    section = html[html.index('<h2 id="training">'):]
    for r in rows:
        assert f"<td>{r['model']}</td><td>{r['folder']}</td>" in section[:section.index("</table>")], r["model"]
