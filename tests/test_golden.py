"""Golden outputs: what a refactor must not change.

- the seeded maths (Fastfood ``P θ``, FWHT, the KAdaptation and LoRA deltas) against stored tensors
  (``tests/golden/``, timm's ``test_model_inference`` pattern);
- every committed ``probe.json`` and ``validation.json`` re-derived from its trial log without training (as the sweep
  already is in ``test_sweep.py``);
- every committed ``report.md`` (and its CSV tables) regenerated from the committed artefacts, byte for byte;
- one common check over every artefact class: JSON and file round trip, schema and version refused in one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import pkgutil
import shutil
from pathlib import Path

import pytest
import torch
from golden.cases import CASES
from safetensors.torch import load_file

import petl_analysis
from petl_analysis.artefacts import Artefact
from petl_analysis.errors import PetlError

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
GOLDEN = Path(__file__).resolve().parent / "golden" / "golden.safetensors"


# --------------------------------------------------------------------------------------------------- tensors


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN))


def test_every_golden_case_is_stored(golden):
    assert sorted(golden) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_seeded_maths_matches_its_golden_tensor(name, golden, single_thread):
    got = CASES[name]()
    want = golden[name]
    assert got.shape == want.shape and got.dtype == want.dtype
    # float32 sums in another order (threads, a BLAS) move the last bits only; a changed stream moves everything
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------- probe.json

#: The committed probes; each trained on one torch thread on the CPU (their logs' payloads say so).
PROBES = [
    "demo/animals/probe",
    "demo/digits/probe",
    *(f"validation/{s}/probe{v}" for s in ("animals", "digits", "per_block", "glyph_folder") for v in ("", "_lean")),
    "dinov2/animals/probe",  # issue 27's study on DINOv2-S/14 (the test extra installs the backbone)
    "dinov2/glyph_folder/probe",
    "dinov2/glyph_folder/probe_extended",  # its sensitivity rerun, --lr-grid-extend 2 (not judged)
]
#: The committed validation studies (``scripts/validation_studies.sh``: probe on split A, judged on split B).
STUDIES = ["validation/animals", "validation/digits", "validation/per_block", "validation/glyph_folder"]
#: Each study's validations: the full probe's, and the lean probe's judged with every selector (issue 26).
VALIDATIONS = [f"{s}/validation{v}" for s in STUDIES for v in ("", "_lean")]
VALIDATIONS += [f"dinov2/{s}/validation" for s in ("animals", "glyph_folder")]  # issue 27: DINOv2-S/14, split B
#: Fields that say when and where the artefact was written, not what it holds.
CIRCUMSTANTIAL = {"tool_version", "wall_time_s", "trials_log"}


def _what_it_holds(artefact_dict: dict) -> dict:
    """An artefact's JSON less the circumstantial fields and the model's ``load`` record (how the weights were
    found this time: left out of trial keys too, ``ModelSpec.KEY_OMIT``; the committed files predate it)."""
    out = {k: v for k, v in artefact_dict.items() if k not in CIRCUMSTANTIAL}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k != "load"}
    data = out.get("data")
    if isinstance(data, dict) and data.get("removed") is None and data.get("split", {}).get("dedup") is False:
        # deduplication is recorded since the committed runs, which did not deduplicate (the legacy value)
        out["data"] = {
            **{k: v for k, v in data.items() if k != "removed"},
            "split": {k: v for k, v in data["split"].items() if k != "dedup"},
        }
    for key in ("data", "probe_data"):
        if isinstance(out.get(key), dict) and "split_record" in out[key]:
            # which split was used (predefined or random, the counts) is recorded since the committed runs
            out[key] = {k: v for k, v in out[key].items() if k != "split_record"}
    conversion = out.get("input_conversion")
    if isinstance(conversion, dict) and conversion.get("skipped_images") == []:
        # recorded since the committed runs, none of which skipped an image
        out["input_conversion"] = {k: v for k, v in conversion.items() if k != "skipped_images"}
    return out


def _glyph_letters():
    """The folder ``scripts/export_glyph_folder.py`` writes to /tmp/glyph_letters, in memory (same images)."""
    from petl_analysis.data import ImageDataset, load_dataset

    ds = load_dataset("glyphs")
    keep = [ds.classes.index(c) for c in "ABCDEFGHIJ"]
    mask = torch.isin(ds.labels, torch.tensor(keep))
    remap = {old: new for new, old in enumerate(keep)}
    labels = torch.tensor([remap[int(y)] for y in ds.labels[mask]], dtype=torch.int64)
    return ImageDataset(ds.images[mask], labels, [ds.classes[i] for i in keep], "glyphs[ABCDEFGHIJ]")


def _open_glyph_folder(monkeypatch, tmp_path) -> None:
    """The committed folder study names /tmp/glyph_letters: write the same folder elsewhere and open it for that name
    (the proxies stream its files through timm's transforms; the trainings come from the log)."""
    from petl_analysis import study as study_module
    from petl_analysis.data import open_dataset, write_image_folder

    monkeypatch.setenv("PETL_ANALYSIS_CACHE", str(tmp_path / "cache"))  # streamed features are cached
    folder = write_image_folder(_glyph_letters(), tmp_path / "glyph_letters")
    monkeypatch.setattr(study_module, "open_dataset", lambda name, **k: open_dataset(str(folder), **k))


@pytest.mark.parametrize("name", PROBES)
def test_committed_probe_rederives_from_its_trial_log(name, tmp_path, monkeypatch, single_thread):
    from petl_analysis.probe import ProbeResult, run_probe
    from petl_analysis.probe import search as probe_search

    root, stem = (REPORTS / name).parent, (REPORTS / name).name
    committed = ProbeResult.load(root / f"{stem}.json")

    def no_training(trial):
        raise AssertionError(f"trial {trial.key} is not in the committed log")

    monkeypatch.setattr(probe_search, "probe_trial", no_training)
    if committed.data.dataset.startswith("/tmp/"):
        _open_glyph_folder(monkeypatch, tmp_path)
    log = tmp_path / "probe.json.trials.jsonl"
    shutil.copy(root / f"{stem}.json.trials.jsonl", log)
    again = run_probe(
        committed.model, committed.data, committed.config, out=tmp_path / "probe.json", log_path=log, threads_per_job=1
    )

    def body(result):
        return json.dumps(_what_it_holds(result.to_dict()), sort_keys=True)

    assert body(again) == body(committed)
    # and the file it wrote holds the same (the JSON writer keeps every float bit)
    written = json.loads((tmp_path / "probe.json").read_text())
    # the stored file as this version writes it: fields added since (at their defaults, e.g. SplitSpec.part,
    # Recipe.epoch_selection) filled in by loading
    stored = json.loads(json.dumps(committed.to_dict()))
    assert _what_it_holds(written) == _what_it_holds(stored)


@pytest.mark.parametrize("name", VALIDATIONS)
def test_committed_validation_rederives_from_its_trial_log(name, tmp_path, monkeypatch, single_thread):
    # The oracle and regret trainings all come back from the committed log; the proxies (gradients on a few
    # batches) are recomputed: the whole validation.json must come out bit for bit.
    from petl_analysis.probe import ProbeResult
    from petl_analysis.sweep import sweep as sweep_module
    from petl_analysis.validate import ValidationResult, run_validate

    root, stem = (REPORTS / name).parent, (REPORTS / name).name
    committed = ValidationResult.load(root / f"{stem}.json")
    assert committed.judged_on == "split B"
    probe = ProbeResult.load(ROOT / committed.probe_source)

    def no_training(trial):
        raise AssertionError(f"trial {trial.key} is not in the committed log")

    monkeypatch.setattr(sweep_module, "sweep_trial", no_training)
    if committed.data.dataset.startswith("/tmp/"):
        _open_glyph_folder(monkeypatch, tmp_path)
    shutil.copy(root / f"{stem}.json.trials.jsonl", tmp_path / "validation.json.trials.jsonl")
    v = committed
    again = run_validate(
        probe,
        selectors=v.selectors,
        methods=v.methods,
        seeds=len(v.seeds),
        budget=v.budget,
        budgets=v.budgets,
        random_draws=v.random_draws,
        recipe=v.recipe,
        out=tmp_path / "validation.json",
        probe_source=v.probe_source,
        command=v.command,
        head_init=v.head_init,
        allow_shared_data=v.judged_on != "split B",
        n_jobs=2,
    )  # the committed runs: two jobs on two cores, one thread each

    def body(result):
        # A proxy's compute seconds are measured anew: the rest must come out bit for bit.
        d = _what_it_holds(result.to_dict())
        for a in d["agreement"]:
            if a["cost"] and a["cost"]["trainings"] == 0:
                a["cost"]["seconds"] = None
        return json.dumps(d, sort_keys=True)

    assert body(again) == body(committed)
    from petl_analysis.stale import prune_log
    from petl_analysis.trials import unique_train_time

    used = prune_log(root / f"{stem}.json.trials.jsonl", [committed], dry_run=True).kept
    assert again.train_time_s == pytest.approx(
        unique_train_time(used, seconds=lambda r: r.result["seed_run"]["wall_time_s"])
    )


# --------------------------------------------------------------------------------------------------- report.md


def _committed_reports() -> dict[str, dict]:
    """``scripts/regenerate_reports.py``'s list: every committed report folder and what writes it."""
    spec = importlib.util.spec_from_file_location("regenerate_reports", ROOT / "scripts" / "regenerate_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reports()


def test_every_committed_report_folder_is_regenerated():
    folders = {p.parent.relative_to(REPORTS).as_posix() for p in REPORTS.glob("**/report.md")}
    assert folders == set(_committed_reports()) and {f"{s}/report" for s in STUDIES} <= folders


@pytest.mark.parametrize("name", sorted(_committed_reports()))
def test_committed_report_regenerates_identically(name, tmp_path, single_thread):
    from petl_analysis.report import write_report

    kw = dict(_committed_reports()[name])
    files = write_report(kw.pop("sweep"), kw.pop("probe"), tmp_path, dpi=20, **kw)
    compared = 0
    for table in ("report.md", "probe.csv", "points.csv"):
        committed = REPORTS / name / table
        if committed.exists():
            assert (tmp_path / table).read_text() == committed.read_text(), f"{name}/{table} changed"
            compared += 1
    assert compared >= 2 and files.markdown == tmp_path / "report.md"


# --------------------------------------------------------------------------------------------------- artefacts


def _artefact_classes() -> set[type[Artefact]]:
    for mod in pkgutil.walk_packages(petl_analysis.__path__, "petl_analysis."):
        if ".cli" not in mod.name:
            importlib.import_module(mod.name)
    found, todo = set(), [Artefact]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return {c for c in found if c.__module__.startswith("petl_analysis.")}  # not the tests' own


def _samples() -> dict[str, Artefact]:
    """One committed instance of every artefact class (a plan and a run come from the committed sweep; no adapter
    folder or peft export is committed: theirs are the records of a committed plan)."""
    from petl_analysis.plan import Plan
    from petl_analysis.plan.peft import PeftExport
    from petl_analysis.probe import ProbeResult
    from petl_analysis.select import Ranking
    from petl_analysis.sweep import SweepResult
    from petl_analysis.tuners.saving import AdapterBase, AdapterRecord
    from petl_analysis.validate import PlantedUnitStudy, ValidationResult

    demo = REPORTS / "demo" / "animals"
    sweep = SweepResult.load(demo / "sweep.json")
    plan = Plan.load(demo / "plans" / "plan_4000_kadaptation-selected.json")
    planted = PlantedUnitStudy.load(REPORTS / "planted_unit" / "planted_unit.json")
    point = sweep.points[0]
    return {
        "ProbeResult": ProbeResult.load(demo / "probe.json"),
        "Ranking": Ranking.load(demo / "ranking.json"),
        "Plan": plan,
        "SweepResult": sweep,
        "RunResult": point.run,
        "ValidationResult": ValidationResult.load(REPORTS / "validation" / "animals" / "validation.json"),
        "PlantedUnitStudy": planted,
        "PlantedRecord": planted.plants()[0],
        "AdapterRecord": AdapterRecord(
            config=plan.config,
            base=AdapterBase(plan.model, "0" * 64, plan.num_classes),
            param_count=plan.trainable,
            seed=point.run.seeds[0].seed,
            val_acc=point.run.seeds[0].val_acc,
            trial="k",
        ),
        "PeftExport": PeftExport(
            peft_config={"peft_type": "LOKR", "r": 1},
            method="LOKR",
            approximate=True,
            trainable={"plan": 1, "peft": 2},
        ),
    }


SAMPLES = _samples()


def test_every_artefact_class_has_a_sample_in_the_common_check():
    assert {c.__name__ for c in _artefact_classes()} == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_artefact_round_trip_schema_and_version(name, tmp_path):
    artefact = SAMPLES[name]
    cls = type(artefact)
    data = artefact.to_dict()
    assert (data["schema"], data["version"]) == (cls.SCHEMA, cls.VERSION) and data["tool_version"]
    text = json.dumps(data, sort_keys=True)
    assert json.dumps(cls.from_dict(json.loads(text)).to_dict(), sort_keys=True) == text  # JSON round trip
    path = artefact.save(tmp_path / f"{name}.json")
    assert json.dumps(cls.load(path).to_dict(), sort_keys=True) == text  # file round trip
    assert dataclasses.is_dataclass(cls)
    for bad, needle in (
        ({**data, "schema": "other"}, "schema"),
        ({**data, "version": cls.VERSION + 1}, "version"),
        ({**data, "surprise": 1}, "surprise"),
    ):
        with pytest.raises(PetlError) as err:
            cls.from_dict(bad, source="x.json")
        message = str(err.value)
        assert "\n" not in message and needle in message and "x.json" in message


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_artefact_migrations_reach_the_current_version(name):
    # Every older version a class can read steps up one version at a time to the current one, and an older version
    # it cannot read is refused in one line (never read as if current).
    cls = type(SAMPLES[name])
    assert all(isinstance(v, int) and 1 <= v < cls.VERSION for v in cls.MIGRATIONS)
    for v in range(1, cls.VERSION):
        older = {**SAMPLES[name].to_dict(), "version": v}
        if all(step in cls.MIGRATIONS for step in range(v, cls.VERSION)):
            body = {k: x for k, x in older.items() if k not in ("schema", "version", "tool_version")}
            for step in range(v, cls.VERSION):
                body = cls.MIGRATIONS[step](body)
            assert isinstance(body, dict)
        else:
            with pytest.raises(PetlError, match="version"):
                cls.from_dict(older)


def test_committed_plan_files_of_an_older_version_migrate():
    from petl_analysis.plan import Plan

    path = REPORTS / "demo" / "animals" / "plans" / "plan_4000_kadaptation-selected.json"
    stored = json.loads(path.read_text())
    plan = Plan.load(path)
    assert stored["version"] <= Plan.VERSION and plan.to_dict()["version"] == Plan.VERSION
    assert plan.config == stored["config"] and plan.used == stored["used"]


def _validation_summary():
    spec = importlib.util.spec_from_file_location("validation_summary", ROOT / "scripts" / "validation_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_summary_prints_the_reports_own_tables():
    # The docs' tables come from scripts/validation_summary.py: the rows the committed reports hold, not a copy.
    from petl_analysis.report.document import to_markdown
    from petl_analysis.report.validation import agreement_table, regret_table
    from petl_analysis.validate import ValidationResult

    module = _validation_summary()
    for name in VALIDATIONS:
        path = REPORTS / f"{name}.json"
        report = path.parent / path.stem.replace("validation", "report") / "report.md"
        v, text = ValidationResult.load(path), module.summary(path)
        for table in (agreement_table(v), regret_table(v)):
            markdown = to_markdown([table])
            assert markdown in text and markdown in report.read_text()


def test_readme_tables_are_the_committed_studies_overview():
    # The README's tables per backbone are printed from the committed validation files; a study that finishes (or
    # changes) without its README rows fails here.
    summary = _validation_summary()
    text = summary.overview(summary.committed_studies())
    assert text and text in (ROOT / "README.md").read_text()


def test_study_overview_reads_reached_sets_costs_and_verdicts():
    from petl_analysis.probe import ProbeResult
    from petl_analysis.report.document import to_markdown
    from petl_analysis.report.validation import selector_overview, study_overview
    from petl_analysis.validate import ValidationResult

    v = ValidationResult.load(ROOT / "reports" / "validation" / "animals" / "validation_lean.json")
    probe = ProbeResult.load(ROOT / "reports" / "validation" / "animals" / "probe_lean.json")
    reached = [t for t in probe.targets if t.d90.reached]
    row = study_overview([("animals", v, probe)]).rows[0]
    assert row[2].startswith(f"{len(reached)} of {len(probe.targets)}")
    assert row[-1] == f"d90 {v.agreement[0].cost.trainings}, direct 11, oracle 18"
    assert row[4] == f"none of {len(v.selectors)}"
    # a selector the judge calls better than random is named, with its oracle
    v.agreement[0].verdict = "better than random"
    assert study_overview([("animals", v, probe)]).rows[0][4] == f"`{v.agreement[0].selector}` (KA)"
    table = selector_overview([("animals", v, probe)])
    assert [r[0] for r in table.rows] == [f"`{s}`" for s in v.selectors]
    assert "| `direct` | KA +0.09, 0.46 (1.00); LoRA +0.09, 0.46 (1.00) |" in to_markdown([table])


def test_probe_sensitivity_compares_two_probes_of_the_same_sets():
    # scripts/probe_sensitivity.py: how far a probe's d90s move with a wider step search (issue 27's reruns)
    import dataclasses

    from petl_analysis.probe import ProbeResult

    spec = importlib.util.spec_from_file_location("probe_sensitivity", ROOT / "scripts" / "probe_sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    probe = ProbeResult.load(ROOT / "reports" / "dinov2" / "glyph_folder" / "probe.json")
    table = module.sensitivity_table(probe, probe)
    rows = {r[0]: r for r in table.rows}
    assert rows["`attn.q`"][2:5] == ["335,292", "335,292", "1.00"]
    assert rows["`attn.proj`"][2] == "<= 10,000"  # reached at the smallest d tried: an upper bound
    assert rows["`attn.v`"][5] == "10,000: 30x, 100,000: 30x, 1,774,080: 30x"
    fewer = dataclasses.replace(probe, targets=probe.targets[:2])
    with pytest.raises(SystemExit, match="lacks the target sets attn.v"):
        module.sensitivity_table(probe, fewer)
