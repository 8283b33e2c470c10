"""petl-analyze: probe -> select -> plan -> train -> report, on your ViT and data or on the bundled defaults."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from petl_analysis.io import check_output_path

from ._common import (
    console,
    err_console,
    handle_errors,
    print_table,
    progress_bar,
    say,
    set_verbosity,
    show_with_first_progress,
    split_list,
    trial_label,
)
from .options import (
    BUDGET_FORMS,
    DEPRECATED_OPTIONS,
    FILES,
    METHOD,
    MODEL,
    RECIPE,
    BudgetsOpt,
    DataOptions,
    DatasetOpt,
    DemoPresetOpt,
    EpochsOpt,
    EvalBatchOpt,
    Execution,
    Group,
    HeadInBudgetOpt,
    JobsOpt,
    LrOpt,
    MethodLrOpt,
    MethodsOpt,
    ModelOpt,
    ModelOptions,
    PerBlockOpt,
    ProbeOptions,
    RankingOpt,
    RecipeOptions,
    RunAllSeedAdaptersOpt,
    RunDatasetOpt,
    RunEpochsOpt,
    RunMaxDOpt,
    RunMaxTrainOpt,
    RunOutOpt,
    RunProbeEpochsOpt,
    RunProbeSeedsOpt,
    RunProbeShotsOpt,
    RunSeedsOpt,
    RunShotsOpt,
    RunTargetsOpt,
    SeedsOpt,
    StudyFileOptions,
    SweepAllSeedAdaptersOpt,
    SweepDatasetOpt,
    SweepModelOpt,
    SweepOutOpt,
    SweepPlansOpt,
    SweepRankingOpt,
    SweepShotsOpt,
    TargetsOpt,
    ThetaLrOptions,
    TrainDryRunOpt,
    TrainInitOpt,
    TrainMethodOpt,
    TrainOutOpt,
    TrainPlanOpt,
    TrainSaveAdapterOpt,
    TrainTargetsOpt,
    ValidateAllowSharedDataOpt,
    ValidateBudgetOpt,
    ValidateOutOpt,
    ValidateProbeOpt,
    ValidateSelectorsOpt,
    WeightsOpt,
    grouped,
    option,
)


class _AliasedGroup(typer.core.TyperGroup):
    """The app's command group: accepts each command's deprecated option names (:data:`DEPRECATED_OPTIONS`, hidden
    from --help) with a note naming the new one, and shows flags without a value placeholder (``--help``, not
    ``--help <bool>``)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:  # the app's own flags (--help, the shell-completion ones): no value placeholder either
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        return name, cmd, _renamed(name or "", rest)

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None and not getattr(cmd, "_petl_flags_plain", False):
            make_help = cmd.get_help_option

            def get_help_option(ctx):
                help_option = make_help(ctx)
                if help_option is not None:
                    help_option.metavar = ""
                return help_option

            cmd.get_help_option = get_help_option
            cmd._petl_flags_plain = True
        return cmd


def _renamed(command: str, args: list[str]) -> list[str]:
    """``args`` with the deprecated option names of ``command`` replaced by the current ones (a note for each)."""
    aliases = DEPRECATED_OPTIONS.get(command, {})
    out = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        old, eq, value = arg.partition("=")
        if old in aliases:
            new = aliases[old]
            say("note", f"{command} {old} is deprecated and goes in the next release; use {new}", err=True)
            arg = new + eq + value
        out.append(arg)
    return out


app = typer.Typer(
    name="petl-analyze",
    help=__doc__,
    cls=_AliasedGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class _Notes(logging.Handler):
    """Prints the library's notes (e.g. an input conversion) as ``note: ...`` lines and its warnings as
    ``warning: ...``, each once per command."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text not in self.seen:
            self.seen.add(text)
            say("warning" if record.levelno >= logging.WARNING else "note", text)


_NOTES = _Notes()


def _print_version(value: bool) -> None:
    if value:
        from petl_analysis import __version__

        console.print(f"petl-analyze {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _show_notes(
    quiet: bool = option(False, "--quiet", "-q", help="No progress: only results, warnings and errors."),
    verbose: bool = option(
        False, "--verbose", "-v", help="Also a line per epoch of each training run in this process."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit.", metavar=""
    ),
) -> None:
    """petl-analyze: probe -> select -> plan -> train -> report, on your ViT and data or on the bundled defaults."""
    if quiet and verbose:
        err_console.print("[bold red]error:[/] give -q or -v, not both", highlight=False)
        raise typer.Exit(2)
    set_verbosity(-1 if quiet else 1 if verbose else 0)
    library = logging.getLogger("petl_analysis")
    library.setLevel(logging.INFO)
    if _NOTES not in library.handlers:
        library.addHandler(_NOTES)
    _NOTES.seen.clear()


def _recipe(base, _what: str = "training", **values):
    """``base`` with the options the user gave (:func:`~petl_analysis.presets.recipe_with`), shown as it will run."""
    from petl_analysis.presets import recipe_with

    recipe = recipe_with(base, **values)
    _show_recipe(recipe, _what)
    return recipe


def _show_recipe(recipe, what: str) -> None:
    """The recipe on stderr, with the first progress line: the defaults an option left unset are visible in the log."""
    import dataclasses

    fields = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe).items())
    show_with_first_progress(f"{what} recipe: {fields}")


def _resolved_recipe(recipe: RecipeOptions, study: StudyFileOptions, base):
    """``(recipe, resolved configuration)`` of a command that trains on ``[recipe]``: ``base`` with the study file's
    recipe keys and the recipe flags (:meth:`RecipeOptions.resolve`), and the configuration to print or write."""
    import dataclasses

    resolved_recipe = recipe.resolve(base, study.file_values("recipe"))
    return resolved_recipe, study.resolved({"recipe": dataclasses.asdict(resolved_recipe)})


def JsonOpt():
    return option(False, "--json", panel=FILES, help="Print JSON on stdout instead of a table.")


def _print_json(value) -> None:
    """``value`` as JSON on stdout, unstyled (for scripts: ``petl-analyze info --json | jq``)."""
    import json

    print(json.dumps(value, indent=2, default=str))


@app.command()
@handle_errors
@grouped
def info(
    models: ModelOptions = Group(),
    targets: str | None = TargetsOpt(help="Resolve these target specs only (default: the whole catalogue)."),
    as_json: bool = JsonOpt(),
) -> None:
    """Show a model's size and its submodule catalogue (the names every other command accepts)."""
    from petl_analysis.accounting import count_parameters
    from petl_analysis.models import catalogue, create_model, describe_targets, model_input_config, resolve_targets

    net = create_model(models.spec())
    units = resolve_targets(net, targets) if targets else catalogue(net)
    cfg = model_input_config(net)
    if as_json:
        weights = getattr(net, "petl_weights", None)
        _print_json(
            {
                "model": models.model,
                "weights": models.weights,
                "weights_loaded": weights.describe() if weights is not None else None,
                "params": count_parameters(net).model_total,
                "in_chans": cfg["in_chans"],
                "img_size": cfg["img_size"],
                "patch": _patch(net),
                "blocks": len(net.blocks),
                "targets": describe_targets(units),
            }
        )
        return
    console.print(
        f"[bold]{models.model}[/] weights={models.weights}  params={count_parameters(net).model_total:,}  "
        f"input={cfg['in_chans']}x{cfg['img_size']}x{cfg['img_size']}  patch={_patch(net)}  blocks={len(net.blocks)}"
    )
    if getattr(net, "petl_weights", None) is not None:
        console.print(f"weights: {net.petl_weights.describe()}", highlight=False)
    print_table(describe_targets(units), title="submodule catalogue")


def _patch(net) -> str:
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    return "x".join(map(str, patch)) if isinstance(patch, (tuple, list)) else str(patch)


@app.command()
@handle_errors
def datasets(as_json: bool = JsonOpt()) -> None:
    """List the built-in datasets (all offline, shipped in the package)."""
    from petl_analysis.data import DATASETS, load_dataset

    rows = []
    for name in DATASETS.names():
        kwargs = {"n": 620} if name == "glyphs" else {}
        ds = load_dataset(name, **kwargs)
        rows.append(
            {
                "name": name,
                "images": len(ds) if name != "glyphs" else "any (procedural)",
                "classes": ds.num_classes,
                "size": "x".join(map(str, ds.images.shape[1:])),
            }
        )
    if as_json:
        _print_json(rows)
        return
    print_table(rows, title="built-in datasets")


@app.command()
@handle_errors
def methods(
    name: str | None = typer.Argument(None, help="A method's name: list its options (default: list the methods)."),
    as_json: bool = JsonOpt(),
) -> None:
    """List the adaptation methods, or one method's options (the --set keys of train and plan) with their defaults."""
    from dataclasses import MISSING, fields

    from petl_analysis.errors import expected_one_of
    from petl_analysis.tuners import METHODS, Knob

    if name is None:
        rows = []
        for key in METHODS.registered():
            method = METHODS.get(key)
            sizing = f"by {method.sizing.option}" if isinstance(method.sizing, Knob) else method.sizing
            rows.append(
                {
                    "name": key,
                    "display name": method.display_name,
                    "sizing": sizing,
                    "mergeable": method.mergeable,
                    "peft": method.peft_type or "-",
                    "default targets": ",".join(_field_default(method.config_class, "targets") or []) or "-",
                }
            )
        if as_json:
            _print_json(rows)
            return
        print_table(rows, title="adaptation methods (`petl-analyze methods NAME` lists one's options)")
        return
    if name not in METHODS.registered():
        raise expected_one_of("method", name, METHODS.registered())
    config = METHODS.get(name).config_class
    described = _attributes(config)
    rows = [
        {
            "option": f.name,
            "type": str(f.type),
            "default": _field_default(config, f.name),
            "meaning": described.get(f.name, ""),
        }
        for f in fields(config)
        if f.name != "method" and (f.default is not MISSING or f.default_factory is not MISSING)
    ]
    if as_json:
        _print_json({"name": name, "display_name": METHODS.get(name).display_name, "options": rows})
        return
    print_table(rows, title=f"{METHODS.get(name).display_name} ({name}): options, set with --set KEY=VALUE")


def _field_default(config, name: str):
    """The default of a config dataclass's field (its factory's value for lists)."""
    from dataclasses import MISSING

    f = config.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _attributes(cls) -> dict[str, str]:
    """``name -> description`` from the ``Attributes:`` sections of ``cls``'s docstrings and its bases' (Google
    style), so ``methods NAME`` says what each option means without a second copy of the text."""
    import inspect
    import re

    described: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.getdoc(klass) or ""
        if "Attributes:" not in doc:
            continue
        current = None
        for line in doc.split("Attributes:", 1)[1].splitlines():
            m = re.match(r"^    (\w+): (.*)$", line)
            if m:
                current = m.group(1)
                described[current] = m.group(2).strip()
            elif current and line.startswith("        "):
                described[current] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                current = None
    return {k: v.replace("``", "") for k, v in described.items()}


@app.command("linear-probe")
@handle_errors
@grouped
def linear_probe(
    models: ModelOptions = Group(),
    data: DataOptions = Group(omit=("max_train",)),
    seeds: int = SeedsOpt(),
    epochs: int = EpochsOpt(50, "Epochs of the head's training."),
    lr: float = LrOpt(1e-2, "Learning rate of the head."),
    compare_random: bool = option(
        False, "--compare-random", panel=MODEL, help="Also probe the same architecture with random weights."
    ),
    eval_batch_size: int | None = EvalBatchOpt(),
    execution: Execution = Group(omit=("jobs", "backend", "scheduler", "compile", "grad_checkpointing", "log_to")),
) -> None:
    """Evaluate frozen features: train only a linear head, report val/test accuracy per seed."""
    execution.setup()
    from petl_analysis.engine import Recipe
    from petl_analysis.study import Study
    from petl_analysis.sweep import check_seeds
    from petl_analysis.task import announce, build_task, fit_linear_probe

    check_seeds(seeds)
    recipe = _recipe(Recipe(epochs=epochs, lr=lr, weight_decay=0.0), "linear probe", eval_batch_size=eval_batch_size)
    study = Study(models.spec(), data.spec(), device=execution.device)
    variants = [models.weights] + (["random"] if compare_random and models.weights != "random" else [])
    rows = []
    with progress_bar("linear probe", total=len(variants) * seeds) as advance:
        for w in variants:
            weighted = study.with_data(study.data, models.spec(weights=w))
            for seed in range(seeds):
                net = weighted.build_model(seed)
                task = build_task(data.spec(shot_seed=seed), net, dataset=study.dataset)
                announce(task.conversion, data.dataset)
                res = fit_linear_probe(net, task, recipe, seed=seed, device=execution.device)
                rows.append(
                    {
                        "weights": w,
                        "seed": seed,
                        "n_train": res.n_train,
                        "val_acc": res.val_acc,
                        "test_acc": res.test_acc,
                        "trainable": res.trainable["total_incl_head"],
                        "time_s": round(res.wall_time_s, 2),
                    }
                )
                advance(1, f"{w} seed {seed}: test {res.test_acc:.3f}")
    split = "full" if data.shots is None else f"{data.shots}-shot"
    print_table(rows, title=f"linear probe on {data.dataset} ({split})")


def _model_for_ranking(models: ModelOptions, ranking, source: str, flag: str, then: str):
    """The ranking's model, with any option given applied; a ranking made on another model is refused (its d90s
    and proxies say nothing about another network or other weights)."""
    from petl_analysis.task import require_same_model

    made_on = ranking.model
    if models.model not in (None, made_on.name):
        spec = models.spec(weights=models.weights or made_on.weights)
    else:
        spec = models.applied_to(made_on, models.weights or made_on.weights)
    require_same_model(
        made_on,
        spec,
        f"{flag} {source!r}",
        f"drop --model/--weights/--img-size/--in-chans/--patch-size to {then} for the ranking's "
        f"model, or probe and select on this model first",
    )
    return spec


def _trial_progress(advance):
    """The ``on_trial`` of a stage: one progress line per trial, naming what it trained (a probe's target and d, a
    sweep's method) and its validation accuracy; ``expect`` passes each batch's trial count to the bar's total."""

    def on_trial(record, cached: bool) -> None:
        p = record.payload
        what = trial_label(record.trial())
        res = record.result or {}
        # What the run decides on (validation), for probe and sweep records alike; test is in the artefact.
        acc = res.get("val_acc", (res.get("seed_run") or {}).get("val_acc"))
        if cached:
            status = "cached"
        elif not record.ok:
            status = f"failed: {record.error or 'no error message'}"
        else:
            status = f"val {acc:.3f}" if acc is not None else "ok"
        advance(1, f"{what} seed {p.get('seed')}: {status}", cached=cached)

    on_trial.expect = getattr(advance, "expect", None)
    return on_trial


@app.command()
@handle_errors
@grouped
def probe(
    models: ModelOptions = Group(),
    data: DataOptions = Group(),
    options: ProbeOptions = Group(),
    recipe: RecipeOptions = Group(
        section="probe.recipe",
        epochs=EpochsOpt(help="Epochs per trial (default: the probe recipe's; printed when the command runs)."),
        lr=LrOpt(help="theta_d learning rate with --lr-scaling constant (default: the probe recipe's)."),
    ),
    theta: ThetaLrOptions = Group(),
    out: str = option("probe.json", "--out", "-o", panel=FILES, help="ProbeResult JSON; trials are logged beside it."),
    execution: Execution = Group(jobs=JobsOpt(help="Parallel worker processes.")),
    study: StudyFileOptions = Group(),
) -> None:
    """Measure the local intrinsic dimension (d90) of each target submodule by random-subspace training.

    Every decision (the d grid, d90, the learning rate per d, the order of unreached targets) reads validation
    accuracy; test accuracy is recorded and reported only.
    """
    import dataclasses

    from petl_analysis.probe import default_probe_recipe
    from petl_analysis.study import Study

    probe_recipe = recipe.resolve(default_probe_recipe(), study.file_values("probe.recipe"), "probe")
    config = _probe_config({**dataclasses.asdict(options), **dataclasses.asdict(theta)}, probe_recipe)
    resolved = study.resolved({"probe": _probe_section(config), "probe.recipe": dataclasses.asdict(probe_recipe)})
    if study.printed(resolved):
        return
    check_output_path(out, what="--out")
    execution.setup()
    with progress_bar("probe", total=None) as advance:
        context = Study(models.spec(), data.spec(), **execution.trials(), on_trial=_trial_progress(advance))
        result = context.probe(config, out=out)
    _print_probe(result, out)
    console.print(f"configuration -> {study.write(f'{out}.config.toml', resolved)}", highlight=False)


def _print_probe(result, out: str) -> None:
    """The probe's baselines, its d90 table, its caveats and failed trials."""
    floor, ceiling = result.floor, result.ceiling
    console.print(
        f"validation ({result.n_val} images): floor (d = 0) {floor.val_mean:.3f} ± {floor.val_std:.3f}, "
        f"ceiling (full fine-tuning) {ceiling.val_mean:.3f} ± {ceiling.val_std:.3f} "
        f"({ceiling.trainable:,} params); test is reported in {out}, never decided on"
    )
    threshold = result.config.threshold
    print_table(result.table(), title=f"local intrinsic dimension (threshold {threshold}, gain-normalised d90 first)")
    _warn_about_probe(result)
    for f in result.failed:
        console.print(f"failed: {f['target']} d={f['d']} seed {f['seed']}: {f['error']}", highlight=False)
    console.print(
        f"{result.trials_total} trials ({result.failed_trials} failed) in {result.wall_time_s:.0f} s -> {out}"
    )


#: The [probe] keys of a study file that become the fields of a :class:`~petl_analysis.probe.ProbeConfig` (the
#: probe's options; ``run`` has some as options and reads the rest from the file).
PROBE_KEYS = (
    "targets",
    "per_block",
    "dims",
    "max_d",
    "d_min",
    "points_per_decade",
    "search",
    "projection",
    "threshold",
    "seeds",
    "head",
    "said",
    "ft_lr",
    "lr_scaling",
    "theta_step",
    "lr_grid",
    "lr_grid_extend",
    "lr_screen_epochs",
)


def _probe_config(values: dict, recipe):
    """The :class:`~petl_analysis.probe.ProbeConfig` of the probe's option values (:data:`PROBE_KEYS`, as the
    options take them: comma-separated lists), built by :func:`~petl_analysis.presets.probe_config`; an unset one
    (None) keeps the config's default."""
    from petl_analysis.presets import probe_config

    from ._common import parse_ints

    given = dict(values)
    return probe_config(
        split_list(given.pop("targets", None)),
        dims=parse_ints(given.pop("dims", None), "--dims"),
        lr_grid=_parse_floats(given.pop("lr_grid", None), "--lr-grid"),
        recipe=recipe,
        **given,
    )


def _probe_section(config) -> dict:
    """A probe config as the [probe] table of a study file (:data:`PROBE_KEYS`)."""
    return {key: getattr(config, key) for key in PROBE_KEYS}


def _warn_about_probe(result, where: str = "") -> None:
    """The probe's caveats on the console (a degenerate probe, else an unresolved gain, as the report has them; a
    learning-rate search that chose its grid's edge)."""
    from petl_analysis.report.verdict import degenerate_probe_warning

    if (warning := degenerate_probe_warning(result)) is not None:
        say("warning", f"{where}{warning}")
    elif (why := result.unresolved_gain()) is not None:
        say("warning", f"{where}{why}: d90 is normalised by that gain, so the d90s do not order the targets")
    if (edge := result.lr_at_grid_edge()) is not None:
        say("warning", f"{where}{edge}")


def _parse_floats(value: str | None, what: str) -> list[float]:
    from petl_analysis.errors import PetlError

    out = []
    for v in split_list(value):
        try:
            out.append(float(v))
        except ValueError:
            raise PetlError(
                f"{what}: {v!r} is not a number; expected a comma-separated list such as 0.3,1,3"
            ) from None
    return out


def SetOpt():
    return option(
        [],
        "--set",
        "-s",
        panel=METHOD,
        help="Method option key=value (repeatable), e.g. --set n=8 --set sharing=global "
        "(`petl-analyze methods NAME` lists them).",
    )


@app.command()
@handle_errors
@grouped
def train(
    method: str = TrainMethodOpt(),
    targets: str | None = TrainTargetsOpt(),
    n: int | None = option(None, "--n", panel=METHOD, help="KAdaptation/Compacter: Kronecker terms n."),
    rank: int | None = option(None, "--rank", "-r", panel=METHOD, help="Rank (KAdaptation: of B_i; LoRA: of B A)."),
    init: str | None = TrainInitOpt(),
    sets: list[str] = SetOpt(),
    plan: str | None = TrainPlanOpt(),
    models: ModelOptions = Group(
        model=ModelOpt(None, "timm model name (default: the plan's, else the bundled ViT)."),
        weights=WeightsOpt(None, "Weights (default: the --plan's, else 'default'); see `petl-analyze probe --help`."),
    ),
    data: DataOptions = Group(
        dataset=DatasetOpt(None, "Built-in dataset name or an image-folder path (required, unless --plan names one)."),
        omit=("max_train",),
    ),
    seeds: int = SeedsOpt(),
    recipe: RecipeOptions = Group(),
    head_init: str = option("lp", "--head-init", panel=RECIPE, help="lp (linear-probe head, the default) or random."),
    dry_run: bool = TrainDryRunOpt(),
    num_classes: int = option(10, "--num-classes", panel=METHOD, help="Head size for --dry-run."),
    out: str | None = TrainOutOpt(),
    save_adapter: str | None = TrainSaveAdapterOpt(),
    no_adapter: bool = option(False, "--no-adapter", panel=FILES, help="Do not save the adapters."),
    execution: Execution = Group(omit=("jobs", "backend", "scheduler")),
    study: StudyFileOptions = Group(),
) -> None:
    """Train one method configuration (or a plan) over seeds and write a RunResult."""
    from petl_analysis.train import count_method, default_train_recipe, run_method

    train_recipe, resolved = _resolved_recipe(recipe, study, default_train_recipe())
    if study.printed(resolved):
        return
    save_adapter = _train_outputs(out, save_adapter, no_adapter, dry_run)
    execution.setup()
    settings = [f"{k}={v}" for k, v in (("n", n), ("rank", rank), ("init", init)) if v is not None] + list(sets)
    config, spec, dataset = _train_inputs(plan, method, targets, settings, models, data, dry_run)
    if dry_run:
        _print_count(count_method(spec, config, num_classes), spec, config.method)
        return
    with progress_bar(f"train {config.method}", total=seeds) as advance:
        result = run_method(
            spec,
            data.spec(dataset=dataset),
            config,
            train_recipe,
            seeds,
            head_init=head_init,
            device=execution.device_name(),
            plan=plan,
            adapter_dir=save_adapter,
            on_seed=lambda r: advance(1, f"seed {r.seed}: test {r.test_acc:.3f} (last {r.last_test_acc:.3f})"),
            **execution.fit_options(),
        )
    if out:
        result.save(out)
        study.write(f"{out}.config.toml", resolved)
    _print_run(result, dataset, out, save_adapter)


def _train_outputs(out: str | None, save_adapter: str | None, no_adapter: bool, dry_run: bool) -> str | None:
    """``train``'s outputs checked before any work: --out, and the adapters' folder (default ``<out>.adapter``;
    None with --no-adapter), which is returned."""
    if out and not dry_run:
        check_output_path(out, what="--out")
    if not save_adapter and out and not no_adapter:
        save_adapter = f"{out}.adapter"
    if no_adapter:
        save_adapter = None
    if save_adapter and not dry_run:
        check_output_path(save_adapter, directory=True, what="--save-adapter")
    return save_adapter


def _train_inputs(plan: str | None, method: str, targets: str | None, settings: list[str], models, data, dry_run):
    """``(config, model spec, dataset)`` of ``train``: the --plan file's (checked against the model and data), or
    the method config from --method/--targets/--set."""
    from petl_analysis.plan import Plan, plans_dataset, validate_plan
    from petl_analysis.study import Study
    from petl_analysis.tuners import config_from_settings

    if not plan:
        config = config_from_settings(method, split_list(targets), settings)
        return config, models.spec(), data.dataset if data.dataset or dry_run else _no_dataset()
    stored = Plan.load(plan)
    # the plan's model and weights unless given: a plan made on converted or local weights is trained on them
    spec = models.spec() if models.model else models.applied_to(stored.model, models.weights or stored.model.weights)
    if dry_run and stored.dataset is None:  # a plan of version 1 does not say: --dataset then
        return stored.method_config(), spec, data.dataset
    dataset = plans_dataset([stored], data.dataset, source=f"--plan {plan!r}")
    if not dry_run:
        validate_plan(stored, Study(spec, data.spec(dataset=dataset)).template, spec, source=plan)
    return stored.method_config(), spec, dataset


def _no_dataset():
    from petl_analysis.errors import PetlError

    raise PetlError(
        "train: no dataset; give --dataset (a built-in name, see `petl-analyze datasets`, or an "
        "image-folder path) or a --plan made on one"
    )


def _print_count(count, asked, method: str) -> None:
    """``train --dry-run``: the injected model's count and whether the closed form agrees."""
    if count.model != asked:
        console.print("note: --dry-run counts on random weights (the count does not depend on them)")
    rows = [{"item": k, "parameters": v} for k, v in count.counted.as_dict().items()]
    print_table(rows, title=f"{method} on {count.model.name} ({count.num_classes} classes)")
    console.print(f"closed-form count: {count.expected.total} (incl. head), matches injected model: {count.matches}")


def _print_run(result, dataset: str, out: str | None, adapters: str | None) -> None:
    """``train``'s tables: the trainable parameters and each seed's scores."""
    print_table([{"item": k, "parameters": v} for k, v in result.trainable.items()], title="trainable parameters")
    print_table(
        [
            {
                "seed": r.seed,
                "n_train": r.n_train,
                "val_acc": r.val_acc,
                "test_acc": r.test_acc,
                "last_test_acc": r.last_test_acc,
                "best_epoch": r.best_epoch,
                "steps": r.steps,
                "time_s": round(r.wall_time_s, 1),
            }
            for r in result.seeds
        ],
        title=f"{result.method} on {dataset}",
    )
    console.print(
        f"test accuracy {result.test_acc_mean:.4f} ± {result.test_acc_std:.4f} over {len(result.seeds)} seed(s)"
        + (f" -> {out}" if out else "")
    )
    if adapters:
        console.print(f"adapters -> {adapters}/seed<N>/ (petl_analysis.tuners.load_adapter)", highlight=False)


@app.command()
@handle_errors
@grouped
def select(
    probe_path: str | None = option(None, "--probe", "-p", panel=FILES, help="ProbeResult JSON (from `probe`)."),
    proxy: str | None = option(
        "rgn,fisher,kappa,random",
        "--proxies",
        panel=METHOD,
        help="Proxy selectors to "
        "compute beside d90 (rgn, fisher, kappa, gps, spt, apla, constant, random; with a "
        "probe also d90+acc).",
    ),
    from_model: bool = option(
        False, "--from-model", panel=METHOD, help="No probe: rank by the first proxy on --model/--dataset."
    ),
    models: ModelOptions = Group(),
    data: DataOptions = Group(
        dataset=DatasetOpt(
            None,
            "Built-in dataset name or an image-folder path (with "
            "--from-model; a probe's ranking uses the probe's dataset).",
        ),
        omit=("shots", "max_train"),
    ),
    targets: str | None = TargetsOpt(
        help="Catalogue specs to rank with --from-model (default: the probe's, else q,k,v,proj,fc1,fc2)."
    ),
    per_block: bool = PerBlockOpt(help="With --from-model: rank each block's targets apart."),
    out: str = option("ranking.json", "--out", "-o", panel=FILES, help="Ranking JSON."),
    execution: Execution = Group(omit=("jobs", "backend", "scheduler", "compile", "grad_checkpointing", "log_to")),
) -> None:
    """Rank submodules by intrinsic dimension (and proxies); print rank correlations of each proxy with d90."""
    check_output_path(out, what="--out")
    execution.setup()
    from petl_analysis.errors import PetlError
    from petl_analysis.probe import ProbeResult
    from petl_analysis.select import run_select

    if probe_path is None and not from_model:
        raise PetlError("give --probe probe.json, or --from-model to rank with proxies only")
    probe_obj = ProbeResult.load(probe_path) if probe_path else None
    ranking = run_select(
        probe_obj,
        split_list(proxy),
        model=models.spec(),
        data=data.spec() if from_model else None,
        targets=split_list(targets) or None,
        per_block=per_block,
        device=execution.device_name(),
        source=probe_path or "",
    )
    ranking.save(out)
    _print_ranking(ranking, out)


def _print_ranking(ranking, out: str) -> None:
    """The ranking's table, each proxy's rank correlation with it, and its warnings."""
    print_table(ranking.table(), title=f"ranking by {ranking.selector}")
    corr = [
        {"proxy": k, "spearman": v["spearman"], "kendall": v["kendall"], "targets": v["n"]}
        for k, v in ranking.details.get("proxies", {}).items()
    ]
    if ranking.details.get("proxies_caveat"):
        say("warning", ranking.details["proxies_caveat"])
    elif corr:
        print_table(corr, title=f"rank correlation with the {ranking.selector} ranking")
    if ranking.details.get("warning"):
        say("warning", ranking.details["warning"])
    console.print(f"-> {out}")


@app.command()
@handle_errors
@grouped
def plan(
    ranking_path: str = RankingOpt(...),
    budget: str | None = BudgetsOpt(
        help=f"Parameter budgets: {BUDGET_FORMS}; default: from the model (as sweep's, for --method)."
    ),
    method: str = option("kadaptation", "--method", panel=METHOD, help="A planned method: kadaptation or lora."),
    head_in_budget: bool = HeadInBudgetOpt(),
    sets: list[str] = SetOpt(),
    models: ModelOptions = Group(
        model=ModelOpt(None, "Model (default: the ranking's; another one is refused)."), weights=WeightsOpt(None)
    ),
    data: DataOptions = Group(
        dataset=DatasetOpt(None, "Dataset for the head size (default: the ranking's)."),
        omit=("shots", "max_train", "split_part"),
    ),
    out: str = option("plans", "--out", "-o", panel=FILES, help="Output directory (plan_<budget>.json per budget)."),
    export_peft_: bool = option(
        False, "--export-peft", panel=FILES, help="Also write the equivalent peft config per plan."
    ),
    study: StudyFileOptions = Group(),
) -> None:
    """Turn a ranking and parameter budgets into adaptation plan files."""
    resolved = study.resolved()
    if study.printed(resolved):
        return
    check_output_path(out, directory=True, what="--out")
    from petl_analysis.plan import plan_for_budget
    from petl_analysis.plan.budgets import budgets_text, parse_budgets, resolve_budgets
    from petl_analysis.select import Ranking
    from petl_analysis.study import Study
    from petl_analysis.tuners import options_from_settings

    requested = parse_budgets(budget, "--budgets")  # a malformed budget fails before anything loads
    ranking = Ranking.load(ranking_path)
    spec = _model_for_ranking(models, ranking, ranking_path, "--ranking", "plan")
    ds_name, data_spec = _ranking_data(data, ranking, ranking_path, "plan")
    net = Study(spec, data_spec).template
    options = options_from_settings(method, sets)
    budgets = resolve_budgets(requested, net, methods=[method], head_in_budget=head_in_budget, option="--budgets")
    # Plan every budget first: a bad budget fails before anything is written.
    plans = [
        plan_for_budget(
            ranking,
            net,
            b,
            method=method,
            model_spec=spec,
            head_in_budget=head_in_budget,
            method_options=options,
            source=ranking_path,
        ).for_dataset(ds_name)
        for b in budgets
    ]
    console.print(
        f"budgets: {budgets_text(budgets)} of a {plans[0].backbone_params:,}-parameter backbone (head excluded)",
        highlight=False,
    )
    rows = _write_plans(plans, budgets, out, net if export_peft_ else None)
    study.write(Path(out) / "config.toml", resolved)
    print_table(rows, title=f"plans ({'incl.' if head_in_budget else 'excl.'} head in the budget)")


def _ranking_data(data: DataOptions, ranking, source: str | None, then: str):
    """``(dataset, data spec)`` of a stage after select: --dataset or the ranking's (another one is refused), with
    the ranking's --skip-bad-images and --data-dir for its own dataset unless given."""
    from petl_analysis.select import data_dir_for, dataset_for_ranking, skip_bad_images_for
    from petl_analysis.task import DataSpec

    dataset = dataset_for_ranking(data.dataset, ranking, source, "--ranking", then)
    skip_bad = skip_bad_images_for(ranking, dataset, data.skip_bad_images)
    return dataset, DataSpec(dataset, skip_bad_images=skip_bad, data_dir=data_dir_for(ranking, dataset, data.data_dir))


def _write_plans(plans, budgets, out: str, peft_base) -> list[dict]:
    """Each plan as ``out/plan_<budget>.json`` (with ``peft_base``, the base model: its peft export beside it);
    the table's rows."""
    from petl_analysis.errors import PetlError
    from petl_analysis.io import ensure_writable_dir
    from petl_analysis.plan import export_peft
    from petl_analysis.plan.peft import export_summary

    out_dir = Path(ensure_writable_dir(out))
    rows = []
    for b, p in zip(budgets, plans):
        path = p.save(out_dir / f"plan_{b.params}.json")
        if peft_base is not None:
            try:
                record = export_peft(p, peft_base)
            except PetlError as e:  # the plan stands; its peft export would be inert
                say("warning", f"budget {b.params}: {e}")
            else:
                peft_path = record.save(out_dir / f"plan_{b.params}.peft.json")
                console.print(f"  budget {b.params}: {export_summary(record)} -> {peft_path}", highlight=False)
        rows.append({"requested": b.requested, **p.summary(), "file": str(path)})
        for note in p.notes:
            console.print(f"  budget {b.params}: {note}")
    return rows


@app.command()
@handle_errors
@grouped
def sweep(
    plans: str | None = SweepPlansOpt(),
    budgets: str | None = BudgetsOpt(),
    methods: str = MethodsOpt(),
    plans_from: str | None = SweepRankingOpt(),
    models: ModelOptions = Group(model=SweepModelOpt(), weights=WeightsOpt(None)),
    data: DataOptions = Group(dataset=SweepDatasetOpt(), shots=SweepShotsOpt()),
    seeds: int = SeedsOpt(),
    recipe: RecipeOptions = Group(),
    head_in_budget: bool = HeadInBudgetOpt(),
    out: str = SweepOutOpt(),
    all_seed_adapters: bool = SweepAllSeedAdaptersOpt(),
    no_adapters: bool = option(False, "--no-adapters", panel=FILES, help="Do not save the points' adapters."),
    method_lr: str | None = MethodLrOpt(),
    execution: Execution = Group(),
    study: StudyFileOptions = Group(),
) -> None:
    """Train a study's plans over seeds: accuracy versus trainable parameters.

    With --plans DIR, the plan files of DIR; otherwise the study is planned from --budgets, --methods and
    --ranking, written to <out>.plans/ and those files trained."""
    from petl_analysis.errors import PetlError
    from petl_analysis.plan.budgets import parse_budgets
    from petl_analysis.study import Study
    from petl_analysis.sweep.sweep import check_method_lr, parse_method_lr
    from petl_analysis.train import default_train_recipe

    requested = parse_budgets(budgets, "--budgets")
    own_lr = parse_method_lr(method_lr)
    if not plans:
        check_method_lr(own_lr, split_list(methods), "--method-lr")
    train_recipe, resolved = _resolved_recipe(recipe, study, default_train_recipe())
    if study.printed(resolved):
        return
    train = _sweep_train(out, plans, seeds, train_recipe, not no_adapters, all_seed_adapters) | {"method_lr": own_lr}
    execution.setup()
    if plans and plans_from:
        raise PetlError("--plans trains the plan files as they are; --ranking plans anew: give one of them")
    if plans:
        plan_list, spec, data_spec = _sweep_plan_files(plans, models, data)
    else:
        ranking, spec, data_spec = _sweep_ranking(plans_from, models, data)
    with progress_bar("sweep", total=None) as advance:
        context = Study(spec, data_spec, **execution.trials(), on_trial=_trial_progress(advance))
        if plans:
            result = context.sweep(plan_list, plans_source=plans, **train)
        else:
            result = context.plan_and_sweep(
                requested,
                split_list(methods),
                ranking,
                head_in_budget=head_in_budget,
                plans_dir=f"{out}.plans",
                ranking_source=plans_from or "",
                **train,
            )
    _print_sweep(result, data_spec.dataset, out, not no_adapters, planned=not plans)
    console.print(f"-> {out} (configuration -> {study.write(f'{out}.config.toml', resolved)})", highlight=False)


def _sweep_train(out: str, plans: str | None, seeds: int, recipe, adapters: bool, all_seeds: bool) -> dict:
    """``sweep``'s outputs checked before any work (--out, and the plans folder unless --plans), and the keywords
    of :meth:`Study.sweep <petl_analysis.study.Study.sweep>`."""
    import shlex
    import sys

    check_output_path(out, what="--out")
    if not plans:
        check_output_path(f"{out}.plans", directory=True, what="the plans folder")
    return dict(
        seeds=seeds,
        recipe=recipe,
        out=out,
        command=shlex.join(["petl-analyze", *sys.argv[1:]]),
        save_adapters=adapters,
        all_seeds=all_seeds,
    )


def _sweep_plan_files(plans: str, models, data):
    """``(plans, model spec, data spec)`` of ``sweep --plans``: the files' model (options given applied) and
    dataset."""
    from petl_analysis.plan import plans_dataset, read_plans

    plan_list = read_plans(plans)
    stored = plan_list[0].model
    spec = models.spec() if models.model else models.applied_to(stored, models.weights or stored.weights)
    dataset = plans_dataset(plan_list, data.dataset, source=f"the plans of {plans!r}")
    return plan_list, spec, data.spec(dataset=dataset, zero_shots_is_full=True)


def _sweep_ranking(source: str | None, models, data):
    """``(ranking or None, model spec, data spec)`` of ``sweep --ranking``: the ranking's model and dataset unless
    given (another one is refused), and its choice of skipping bad images and of the data folder."""
    import dataclasses

    from petl_analysis.select import Ranking, data_dir_for, dataset_for_ranking, skip_bad_images_for

    ranking = Ranking.load(source) if source else None
    dataset = dataset_for_ranking(data.dataset, ranking, source)
    spec = _model_for_ranking(models, ranking, source, "--ranking", "sweep") if ranking else models.spec()
    data_spec = dataclasses.replace(
        data.spec(dataset=dataset, zero_shots_is_full=True),
        skip_bad_images=skip_bad_images_for(ranking, dataset, data.skip_bad_images),
        data_dir=data_dir_for(ranking, dataset, data.data_dir),
    )
    return ranking, spec, data_spec


def _print_sweep(result, dataset: str, out: str, adapters: bool, planned: bool) -> None:
    """Where the plans are (``planned``), the sweep's table, its adapters, what planning skipped, the failed
    trials."""
    if planned:
        console.print(f"plans -> {out}.plans/")
    print_table(result.table(), title=f"sweep on {dataset}")
    if adapters:
        _print_adapters(result, out)
    for s in result.skipped:
        console.print(f"skipped: {s}")
    if result.failed:
        console.print(
            f"{len(result.failed)} failed trial(s): "
            + "; ".join(f"{f['label']} seed {f['seed']}: {f['error']}" for f in result.failed)
        )


@app.command("export-peft")
@handle_errors
def export_peft_adapter(
    adapter: str = typer.Argument(
        ..., help="A saved LoRA adapter folder (train's <out>.adapter/seed<N>, a sweep's <out>.adapters/<plan>)."
    ),
    out: str = option(
        ...,
        "--out",
        "-o",
        panel=FILES,
        help="Folder for the peft adapter (adapter_config.json, adapter_model.safetensors).",
    ),
) -> None:
    """Write a trained LoRA adapter as a peft adapter folder that PeftModel.from_pretrained loads (same outputs).

    Refused where peft would be inert (a target the model reads without calling its forward: BEiT's, EVA's qkv)."""
    check_output_path(out, directory=True, what="--out")
    from petl_analysis.errors import PetlError
    from petl_analysis.models import create_model
    from petl_analysis.plan import write_peft_adapter
    from petl_analysis.tuners import load_adapter, read_adapter_record

    record = read_adapter_record(adapter)
    if record.base is None or record.base.model is None:
        raise PetlError(
            f"adapter {adapter!r} does not record its base model (saved by an older petl-analysis); "
            "load it with load_adapter and call petl_analysis.plan.write_peft_adapter"
        )
    spec = record.base.model
    model = create_model(spec, num_classes=record.base.num_classes)
    method = load_adapter(model, adapter)
    write_peft_adapter(model, method, out, model_name=spec.name)
    console.print(
        f"peft LoRA adapter of {spec.name} -> {out} (PeftModel.from_pretrained(model, {out!r}))", highlight=False
    )


def _print_adapters(result, out: str) -> None:
    """Where the points' adapters are, and which points have none (trials logged before adapters were saved)."""
    missing = [f"{p.label}@{p.budget}" for p in result.points if p.adapter is None]
    saved = len(result.points) - len(missing)
    console.print(
        f"adapters ({saved} of {len(result.points)} points, best seed by validation) -> {out}.adapters/",
        highlight=False,
    )
    if missing:
        say(
            "note",
            f"no adapter for {len(missing)} point(s) (e.g. {missing[0]}): their trials were logged before adapters "
            "were saved; they were not retrained",
        )


@app.command()
@handle_errors
def report(
    sweep_path: str | None = typer.Argument(None, help="SweepResult JSON."),
    probe_path: str | None = typer.Argument(None, help="ProbeResult JSON."),
    ranking_path: str | None = RankingOpt(help="Ranking JSON (from `select`): shown beside the probe's table."),
    validation_path: str | None = option(
        None,
        "--validation",
        panel=FILES,
        help='ValidationResult JSON (petl-analyze validate): adds the section "Does the ranking predict?".',
    ),
    out: str = option("report", "--out", "-o", panel=FILES, help="Output directory."),
    title: str | None = option(None, "--title", help="Report title (default: from the model and dataset)."),
    m0: float | None = option(None, "--m0", help="PE score scale M0 (default: the backbone size)."),
) -> None:
    """Write the trade-off report (PNG plots, CSV tables, report.md and a self-contained report.html)."""
    check_output_path(out, directory=True, what="--out")
    from petl_analysis.errors import PetlError
    from petl_analysis.probe import ProbeResult
    from petl_analysis.report import write_report
    from petl_analysis.select import Ranking
    from petl_analysis.sweep import SweepResult
    from petl_analysis.validate import ValidationResult

    if not sweep_path and not probe_path and not validation_path:
        raise PetlError("give a sweep.json, a probe.json and/or a --validation validation.json")
    files = write_report(
        SweepResult.load(sweep_path) if sweep_path else None,
        ProbeResult.load(probe_path) if probe_path else None,
        out,
        ranking=Ranking.load(ranking_path) if ranking_path else None,
        validation=ValidationResult.load(validation_path) if validation_path else None,
        title=title,
        m0=m0,
    )
    console.print(f"report -> {getattr(files, 'html', out)}")


def _run_pipeline(runs, execution: Execution, command: str) -> None:
    """One pipeline per dataset of ``runs`` (:class:`~petl_analysis.presets.StudyRuns`), each a
    :class:`~petl_analysis.study.Study`, with progress, tables and the report paths on the console."""
    from petl_analysis.io import ensure_writable_dir
    from petl_analysis.pipeline import run_study
    from petl_analysis.study import Study

    check_output_path(runs.out, directory=True, what="--out")
    htmls = []
    for ds, data, config, out_dir in runs.per_dataset():
        with progress_bar(f"{ds}", total=None) as advance:

            def on_stage(name: str, cached: bool, ds=ds) -> None:
                console.print(f"[bold]{ds}[/]: {name}{' (cached)' if cached else ''}")

            study = Study(
                runs.model,
                data,
                ensure_writable_dir(out_dir),
                **execution.trials(),
                on_trial=_trial_progress(advance),
                on_stage=on_stage,
            )
            result = run_study(study, config, [command])
        print_table(result.sweep.table(), title=f"{ds}: accuracy versus trainable parameters")
        _print_adapters(result.sweep, str(result.out_dir / "sweep.json"))
        _warn_about_probe(result.probe, where=f"{ds} probe: ")
        if result.validation is not None:
            print_table(result.validation.agreement_table(), title=f"{ds}: does the ranking predict? (split B)")
        console.print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.stage_times.items()))
        htmls.append(result.report_html)
    for h in htmls:
        console.print(f"report: {h}")


@app.command()
@handle_errors
@grouped
def run(
    models: ModelOptions = Group(),
    data: DataOptions = Group(
        dataset=RunDatasetOpt(), shots=RunShotsOpt(), max_train=RunMaxTrainOpt(), omit=("split_part",)
    ),
    budgets: str | None = BudgetsOpt(),
    methods: str = MethodsOpt(),
    seeds: int = RunSeedsOpt(),
    probe_shots: int | None = RunProbeShotsOpt(),
    targets: str | None = RunTargetsOpt(),
    per_block: bool = PerBlockOpt(help="Probe: one subspace per block for each target."),
    probe_seeds: int = RunProbeSeedsOpt(),
    probe_epochs: int | None = RunProbeEpochsOpt(),
    max_d: int | None = RunMaxDOpt(),
    recipe: RecipeOptions = Group(epochs=RunEpochsOpt()),
    head_in_budget: bool = HeadInBudgetOpt(),
    out: str = RunOutOpt(),
    all_seed_adapters: bool = RunAllSeedAdaptersOpt(),
    method_lr: str | None = MethodLrOpt(),
    execution: Execution = Group(),
    study: StudyFileOptions = Group(),
) -> None:
    """probe -> select -> plan -> sweep -> report in one command (stages and trials resume if interrupted).

    In a study file, run reads \\[probe] and \\[probe.recipe] (all of them, also the keys it has no option for)
    and \\[sweep], as the probe and sweep commands would."""
    import dataclasses
    import shlex
    import sys

    from petl_analysis.pipeline import PipelineConfig
    from petl_analysis.plan.budgets import parse_budgets
    from petl_analysis.sweep import parse_method_lr
    from petl_analysis.sweep.sweep import check_method_lr
    from petl_analysis.train import default_train_recipe

    own_lr = parse_method_lr(method_lr)
    check_method_lr(own_lr, split_list(methods), "--method-lr")
    probe_values = {"targets": targets, "per_block": per_block, "seeds": probe_seeds, "max_d": max_d}
    probe_config, probe_recipe = _run_probe_config(study, probe_values, probe_epochs)
    config = PipelineConfig(
        budgets=parse_budgets(budgets, "--budgets"),
        methods=split_list(methods),
        probe=probe_config,
        seeds=seeds,
        recipe=recipe.resolve(default_train_recipe(), study.file_values("recipe")),
        head_in_budget=head_in_budget,
        all_seed_adapters=all_seed_adapters,
        method_lr=own_lr,
    )
    resolved = study.resolved(
        {
            "recipe": dataclasses.asdict(config.recipe),
            "probe": _probe_section(probe_config),
            "probe.recipe": dataclasses.asdict(probe_recipe),
        }
    )
    if study.printed(resolved):
        return
    execution.setup()
    runs = _study_runs(models, data, config, out, probe_shots)
    _run_pipeline(runs, execution, shlex.join(["petl-analyze", *sys.argv[1:]]))
    console.print(f"configuration -> {study.write(Path(out) / 'config.toml', resolved)}", highlight=False)


def _run_probe_config(study: StudyFileOptions, values: dict, epochs: int | None):
    """``(probe config, probe recipe)`` of ``run``: its probe options over the study file's [probe] and
    [probe.recipe] (all of their keys, also those run has no option for)."""
    import dataclasses

    from petl_analysis.probe import default_probe_recipe

    probe_recipe = _recipe(
        dataclasses.replace(default_probe_recipe(), **study.file_values("probe.recipe")),
        "probe",
        epochs=epochs or None,
    )
    return _probe_config({**study.file_values("probe"), **values}, probe_recipe), probe_recipe


def _study_runs(models: ModelOptions, data: DataOptions, config, out: str, probe_shots: int | None):
    """The pipelines of ``run`` (:func:`~petl_analysis.presets.study_runs`): one per --dataset."""
    from petl_analysis.presets import study_runs

    return study_runs(
        models.spec(),
        split_list(data.dataset),
        config,
        out,
        shots=data.shots,
        probe_shots=probe_shots,
        max_train=data.max_train,
        keep_duplicates=data.keep_duplicates,
        skip_bad_images=data.skip_bad_images,
        data_dir=data.data_dir,
    )


@app.command()
@handle_errors
@grouped
def validate(
    probe_path: str = ValidateProbeOpt(),
    selectors: str | None = ValidateSelectorsOpt(),
    methods: str = MethodsOpt("kadaptation,lora", "Oracle methods; the first trains the regret plans."),
    seeds: int = SeedsOpt(),
    budget: str | None = ValidateBudgetOpt(),
    budgets: str | None = BudgetsOpt(
        help=f"Regret budgets: {BUDGET_FORMS} (default: --oracle-budget/4, --oracle-budget, 4x --oracle-budget)."
    ),
    allow_shared_data: bool = ValidateAllowSharedDataOpt(),
    recipe: RecipeOptions = Group(),
    out: str = ValidateOutOpt(),
    execution: Execution = Group(),
    study: StudyFileOptions = Group(),
) -> None:
    """Does the ranking predict? On split B (the probe decided on split A): adapt each probed set alone (the oracle),
    compare every selector with it (Spearman, Kendall, top-k, with seed intervals) and train every plan an order of
    the sets gives per budget (regret against the plan best on split A, exact random floor)."""
    import shlex
    import sys

    from petl_analysis.plan.budgets import parse_budgets
    from petl_analysis.probe import ProbeResult
    from petl_analysis.validate import default_judge_recipe, run_validate

    oracle_budget = _oracle_budget(budget)
    regret_budgets = parse_budgets(budgets, "--budgets")
    judge_recipe, resolved = _resolved_recipe(recipe, study, default_judge_recipe())
    if study.printed(resolved):
        return
    check_output_path(out, what="--out")
    execution.setup()
    probe = ProbeResult.load(probe_path)
    with progress_bar("validate", total=None) as advance:
        result = run_validate(
            probe,
            selectors=split_list(selectors) or None,
            methods=split_list(methods),
            seeds=seeds,
            budget=oracle_budget,
            budgets=regret_budgets or None,
            allow_shared_data=allow_shared_data,
            recipe=judge_recipe,
            out=out,
            **execution.trials(),
            on_trial=_trial_progress(advance),
            probe_source=probe_path,
            command=shlex.join(["petl-analyze", *sys.argv[1:]]),
        )
    _print_validation(result)
    console.print(f"-> {out} (configuration -> {study.write(f'{out}.config.toml', resolved)})", highlight=False)


def _oracle_budget(budget: str | None):
    """--oracle-budget: one budget, or None (the default)."""
    from petl_analysis.errors import PetlError
    from petl_analysis.plan.budgets import parse_budgets

    oracle_budget = parse_budgets(budget, "--oracle-budget")
    if len(oracle_budget) > 1:
        raise PetlError(
            f"--oracle-budget: {budget!r} gives {len(oracle_budget)} budgets; the oracle takes one (the regret "
            "plans take --budgets)"
        )
    return oracle_budget[0] if oracle_budget else None


def _print_validation(result) -> None:
    """validate's tables: the oracle, the agreement with it and each selector's regret; then its notes."""
    print_table(result.oracle_table(), title="oracle: each set alone at the matched budget (validation)")
    print_table(result.agreement_table(), title="agreement with the oracle")
    print_table(result.regret_table(), title=f"regret of each selector's {result.regret_method} plan")
    for note in result.notes:
        console.print(note)


@app.command()
@handle_errors
@grouped
def demo(
    out: str = option(
        "petl-demo",
        "--out",
        "-o",
        panel=FILES,
        help="Output folder: one subfolder per dataset with its artefacts and report.",
    ),
    preset: str = DemoPresetOpt(),
    execution: Execution = Group(jobs=JobsOpt(2), omit=("backend", "scheduler", "threads")),
) -> None:
    """The whole pipeline on the embedded defaults: bundled pretrained ViT, digits and animals (about 5 min, 2 cores)."""
    from petl_analysis.presets import demo_runs

    runs = demo_runs(out, preset)
    flag = "" if preset == "bundled" else f" --preset {preset}"
    _run_pipeline(runs, execution, f"petl-analyze demo{flag} --out {out} --jobs {execution.jobs}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
