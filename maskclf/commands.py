"""What each ``maskclf`` command does with its parsed arguments: build the config, call the library, print.

:mod:`maskclf.cli` builds the parser and dispatches here; every heavy import happens inside a command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from maskclf.files import MaskclfError


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _build_config(args) -> "object":
    from maskclf import config as C

    cfg = C.load_config(args.config) if getattr(args, "config", None) else C.Config()
    overrides: dict = {}
    if getattr(args, "data", None):
        overrides.update(C.data_overrides(args.data))
    for flag, key in (("model", "model.name"), ("image_size", "data.image_size"),
                      ("epochs", "train.epochs"), ("batch_size", "train.batch_size"), ("out", "train.out"),
                      ("seed", "train.seed"), ("extra_train", "data.extra_train")):
        v = getattr(args, flag, None)
        if v is not None:
            overrides[key] = v
    cfg = C.apply_overrides(cfg, overrides)
    if getattr(args, "overrides", None):
        cfg = C.apply_overrides(cfg, args.overrides)
    if args.model is not None and not getattr(args, "config", None):
        # A model chosen on the command line brings its own input size and training recipe (ModelSpec.recipe,
        # e.g. efficientnet_lite0: ImageNet weights, linear probe then fine-tuning); what the user set wins.
        from maskclf.models.registry import get_spec

        spec = get_spec(args.model)
        given = {C.full_key(k) for k, _ in (C._split_kv(o) for o in (args.overrides or []))}
        given |= {key for flag, key in (("image_size", "data.image_size"), ("epochs", "train.epochs"))
                  if getattr(args, flag, None) is not None}
        from maskclf.data.sources import applicable

        brought = applicable({"data.image_size": spec.image_size, **spec.recipe}, cfg.data)
        cfg = C.apply_overrides(cfg, {k: v for k, v in brought.items() if k not in given})
    return cfg


def cmd_train(args) -> int:
    """``maskclf train``: the default cross-source ensemble, one ``--model``'s run directory, or ``--ensemble N``
    seeds and their average; then the test metrics."""
    _quiet_tensorflow()
    from maskclf.training.train import train

    cfg = _build_config(args)
    _check_ensemble_size(args.ensemble)
    members = _member_configs(args)
    if members:
        from maskclf.files import members_of
        from maskclf.training.ensemble import format_ensemble
        from maskclf.training.experiments import fit_members

        run_dir = fit_members(members, progress=not args.quiet)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        print(format_ensemble({**metrics, "members": members_of(run_dir)}))
    elif args.ensemble:
        from maskclf.training.ensemble import format_ensemble, make_ensemble

        runs = _seed_members(cfg, args, "train", lambda c, seed: train(c, progress=not args.quiet))
        run_dir = runs[0].parent / f"{runs[0].name}-ensemble{args.ensemble}"
        metrics = make_ensemble(runs, run_dir, progress=not args.quiet)
        print(format_ensemble(metrics))
    else:
        run_dir = train(cfg, progress=not args.quiet)
        metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"run directory: {run_dir}")
    print(f"test accuracy {metrics['accuracy']:.4f}  balanced accuracy {metrics['balanced_accuracy']:.4f}  "
          f"macro F1 {metrics['macro_f1']:.4f}")
    return 0


def _member_configs(args) -> list:
    """The member configurations of a cross-family ensemble: ``--ensemble-models A,B``, or the default
    ensemble (``DEFAULT_ENSEMBLE``) when neither --model, --config nor --ensemble chooses one network.
    Each member is configured as ``--model NAME`` would be (its size and recipe; what the user set wins).
    [] for one network."""
    from maskclf.models.registry import DEFAULT_ENSEMBLE, get_spec

    given = getattr(args, "ensemble_models", None)
    if given:
        names = [n.strip() for n in given.split(",") if n.strip()]
        if args.model or args.ensemble:
            raise MaskclfError("--ensemble-models names every member's model: leave out --model and --ensemble")
        if len(names) < 2 or len(set(names)) < len(names):
            raise MaskclfError(f"--ensemble-models {given}: name two or more different model families, "
                               "e.g. maskclf_cnn,efficientnet_lite0 (--ensemble N for seeds of one)")
    elif args.model or getattr(args, "config", None) or args.ensemble:
        return []
    else:
        names = list(DEFAULT_ENSEMBLE)
    cfgs = []
    for name in names:
        spec = get_spec(name)  # an unknown name is a one-line error listing the registry
        cfg = _build_config(argparse.Namespace(**{**vars(args), "model": name}))
        unknown = sorted(set(cfg.model.options) - set(spec.option_names()))
        if unknown:
            how = ("--ensemble-models" if given else
                   f"the default ensemble ({' + '.join(DEFAULT_ENSEMBLE)}); add --model {names[0]} for one network")
            raise MaskclfError(f"model.{unknown[0]}: {name} has no such option, and it is a member of {how}")
        cfgs.append(cfg)
    return cfgs


def _check_ensemble_size(n: int | None) -> None:
    if n is not None and n < 2:
        raise MaskclfError(f"--ensemble {n}: give 2 or more members (or leave it out for one model)")


def _seed_members(cfg, args, command: str, fit) -> list:
    """``fit(config, seed)`` for the ``--ensemble N`` members: train.seed, seed+1, ... (one split)."""
    from maskclf.config import apply_overrides

    members = []
    for k in range(args.ensemble):
        seed = cfg.train.seed + k
        if not args.quiet:
            print(f"maskclf {command} --ensemble: member {k + 1}/{args.ensemble} (train.seed={seed})",
                  file=sys.stderr, flush=True)
        members.append(fit(apply_overrides(cfg, {"train.seed": seed}), seed))
    return members


def cmd_evaluate(args) -> int:
    """``maskclf evaluate``: a run's test split again, or another dataset (``--data``), with metrics and plots."""
    _quiet_tensorflow()
    from maskclf.reports.evaluate import evaluate_run, format_summary

    metrics = evaluate_run(args.run_dir, data=args.data, progress=not args.quiet)
    print(format_summary(metrics))
    return 0


def cmd_predict(args) -> int:
    """``maskclf predict``: label, score and probabilities per image; exit 1 when an image could not be read."""
    _quiet_tensorflow()
    from maskclf.reports.evaluate import predict_images

    results = predict_images(args.run_dir, args.inputs)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['path']}\tERROR\t{r['error']}")
            else:
                print(f"{r['path']}\t{r['label']}\t{r['score']:.3f}")
    return 1 if any("error" in r for r in results) else 0


def cmd_data_inspect(args) -> int:
    """``maskclf data inspect``: the layout, counts, sizes, duplicate groups and problems of one or more roots."""
    from maskclf import config as C
    from maskclf.data.sources import assign_splits, load_data, summarize

    # argparse gives the key=value overrides to the path list too (both are open-ended positionals)
    paths = [p for p in args.path if "=" not in p or os.path.exists(p)]
    overrides = [p for p in args.path if p not in paths] + list(args.overrides)
    cfg = C.apply_overrides(C.Config(), {**C.data_overrides(paths), **dict(C._split_kv(o) for o in overrides)})
    ds = load_data(cfg.data, progress=True)
    splits = assign_splits(ds, cfg.data) if not args.no_split else None
    print(summarize(ds, splits, max_examples=args.examples))
    return 0


def cmd_data_relabel(args) -> int:
    """``maskclf data relabel``: a copy of a dataset with reviewed label decisions applied (the rest linked)."""
    from collections import Counter

    from maskclf.research.relabel import relabel

    rep = relabel(args.path, args.decisions, args.out)
    moves = Counter(f"{c['from']} -> {c['to']}" for c in rep["changes"])
    print(f"{rep['out']}: {rep['changed']} label(s) changed"
          + (f" ({', '.join(f'{k} {v}' for k, v in sorted(moves.items()))})" if moves else "")
          + f"; the rest links to {rep['source']}. Changes: {rep['out']}/relabel.json")
    print(f"next: maskclf train --data {rep['out']}  (or maskclf cv --data {rep['out']})")
    return 0


def cmd_models(args) -> int:
    """``maskclf models``: the model registry (``-v``: each family's options and defaults)."""
    _quiet_tensorflow()
    from maskclf.models.registry import DEFAULT_ENSEMBLE, REGISTRY

    print(f"default (no --model): the ensemble of {' + '.join(DEFAULT_ENSEMBLE)}, one member per family averaged")
    for name in sorted(REGISTRY):
        s = REGISTRY[name]
        print(f"{name:<22} size {s.image_size:<4} {s.description}")
        if args.verbose:
            print(f"{'':<22} options: {', '.join(s.option_names())}")
            if s.recipe:  # what `--model NAME` brings besides its size
                print(f"{'':<22} recipe: {' '.join(f'{k}={v}' for k, v in s.recipe.items())}")
    return 0


def cmd_config(args) -> int:
    """``maskclf config``: every configuration key with its default (or with the values of ``--config FILE``)."""
    import yaml

    from maskclf import config as C

    cfg = C.load_config(args.config) if args.config else C.Config()
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if cfg.train.learning_rate is None:  # say what the unset rate stands for
        text = text.replace("  learning_rate: null\n", f"  learning_rate: null  # = {C.learning_rate(cfg):g} here: "
                            f"{C.FINE_TUNE_LEARNING_RATE:g} for a trained start, {C.SCRATCH_LEARNING_RATE:g} "
                            "from a random one\n", 1)
    print(text, end="")
    return 0


def cmd_export(args) -> int:
    """``maskclf export``: a run's .tflite files per precision, checked against the Keras model."""
    _quiet_tensorflow()
    from maskclf.export.convert import export_run, format_report_table

    minimum = {}
    for item in ",".join(args.min_agreement or []).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise MaskclfError(f"--min-agreement {item!r}: expected PRECISION=VALUE, e.g. int8=0.98")
        minimum[key.strip()] = value.strip()
    out = export_run(args.run_dir, precisions=args.quantize, representative=args.representative, force=args.force,
                     min_agreement=minimum, max_test=args.max_test, progress=not args.quiet,
                     author=args.author, license=args.license)
    print(format_report_table(json.loads((out / "report.json").read_text())))
    print(f"export folder: {out}")
    return 0


def _detector_options(args) -> dict:
    return {"detector": args.detector, "score_threshold": args.score_threshold, "nms_threshold": args.nms_threshold,
            "min_face": args.min_face, "upscale": args.upscale, "tile": args.tile,
            "precision": args.precision, "threads": args.threads, "framing": not args.no_reframe}


def cmd_detect(args) -> int:
    """``maskclf detect``: find, classify and draw every face of photos, videos or a camera (no TensorFlow)."""
    from maskclf.edge.app import DEFAULT_OUT, run_detect

    doc = run_detect(args.input, args.model, out=args.out, json_path=args.json, camera=args.camera,
                     max_frames=args.max_frames, save=not args.no_save, progress=not args.quiet,
                     events=args.events, track=not args.no_track, overlap=False if args.no_overlap else None,
                     classify_every=args.classify_every,
                     **_detector_options(args))
    s = doc["summary"]
    per = ", ".join(f"{n} {k}" for k, n in s["per_label"].items())
    print(f"{s['inputs']} {'frames' if doc.get('videos') else 'images'}, {s['faces']} faces ({per}), "
          f"mean {s['mean_ms'] or 0:.1f} ms per {'frame' if doc.get('videos') else 'image'}"
          + (f", {s['errors']} unreadable" if s["errors"] else ""))
    if not args.no_save:
        outs = [v["output"] for v in doc.get("videos", [])] or [args.out or DEFAULT_OUT]
        print(f"annotated output: {', '.join(str(o) for o in outs)}")
    if args.json:
        print(f"JSON: {args.json}")
    if args.events:
        print(f"events: {args.events}")
    return 1 if s["errors"] else 0


def cmd_evaluate_detection(args) -> int:
    """``maskclf evaluate-detection``: detector + classifier AP@0.5 on annotated VOC photos."""
    from maskclf.edge.evaluation import evaluate_detection, format_detection_md

    report = evaluate_detection(args.model, args.data, split=args.split, run_dir=args.run, out=args.out,
                                iou_threshold=args.iou, min_gt_size=args.min_gt_size, max_photos=args.max_photos,
                                progress=not args.quiet, **_detector_options(args))
    print(format_detection_md(report), end="")
    print(f"written: {', '.join(report['outputs'])}")
    return 0


def cmd_tune(args) -> int:
    """``maskclf tune``: a KerasTuner search over a ``tuning/*.yaml`` space (resumable, optionally distributed)."""
    _quiet_tensorflow()
    from maskclf.tuning.tune import tune

    out = tune(args.space, data=args.data, tuner=args.tuner, max_trials=args.max_trials, max_epochs=args.max_epochs,
               objective=args.objective, out=args.out, overrides=args.overrides, distributed=args.distributed,
               oracle=args.oracle, tuner_id=args.tuner_id, progress=not args.quiet)
    print(f"search folder: {out}")
    if args.distributed != "worker" and (out / "best.yaml").is_file():
        print(f"best config: {out / 'best.yaml'}  (maskclf train --config {out / 'best.yaml'} --data DATA)")
    return 0


def cmd_compare(args) -> int:
    """``maskclf compare``: several model families trained on one split, as a table and a plot."""
    _quiet_tensorflow()
    from maskclf.training.experiments import compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    out = compare(args.data, models, epochs=args.epochs, image_size=args.image_size, weights=args.weights,
                  out=args.out, overrides=args.overrides, progress=not args.quiet)
    print((out / "compare.md").read_text(), end="")
    print(f"comparison folder: {out}")
    return 0


def cmd_calibrate(args) -> int:
    """``maskclf calibrate``: fit a temperature (and thresholds) on a run's validation split."""
    _quiet_tensorflow()
    from maskclf.training.calibrate import calibrate_run, format_fits
    from maskclf.reports.evaluate import evaluate_run, format_summary

    info = calibrate_run(args.run_dir, args.method, progress=not args.quiet)
    metrics = evaluate_run(args.run_dir, progress=not args.quiet)
    print(format_fits(info["members"]))
    print(format_summary(metrics))
    return 0


def cmd_ensemble(args) -> int:
    """``maskclf ensemble``: average finished runs (or a cv folder's folds) into one ensemble run."""
    from pathlib import Path

    _quiet_tensorflow()
    from maskclf.training.ensemble import ensemble_cv, format_ensemble, make_ensemble
    from maskclf.reports.evaluate import format_summary

    is_cv = [(Path(r) / "cv.json").is_file() for r in args.runs]
    if any(is_cv):
        if not all(is_cv):
            raise MaskclfError("name either run directories or `maskclf cv` folders, not both")
        out = ensemble_cv(args.runs, args.ens_out, progress=not args.quiet)
        print((out / "cv.md").read_text(), end="")
        print(f"cross-validation folder: {out}")
        return 0
    metrics = make_ensemble(args.runs, args.ens_out, progress=not args.quiet)
    print(format_summary(metrics))
    print(format_ensemble(metrics))
    print(f"run directory: {args.ens_out}")
    return 0


def cmd_suspects(args) -> int:
    """``maskclf suspects``: faces whose label the model confidently contradicts (the label audit)."""
    _quiet_tensorflow()
    from maskclf.research.audit import find_suspects, format_suspects

    s = find_suspects(args.path, args.sus_out, top=args.top, progress=not args.quiet)
    print(format_suspects(s, advice=False))
    print(f"wrote suspects.csv, suspects.png, suspects.md and predictions.csv into {s['out']}")
    return 0


def cmd_cv(args) -> int:
    """``maskclf cv``: K photo-grouped folds (or ``--by-source``: leave one source out), resumable."""
    _quiet_tensorflow()
    from maskclf.training.experiments import cross_validate

    cfg = _build_config(args)
    _check_ensemble_size(args.ensemble)
    members = _member_configs(args) or cfg
    if args.by_source:
        from maskclf.training.experiments import cross_validate_by_source

        if args.ensemble or args.fold:
            raise MaskclfError("--by-source holds out whole sources: use --source NAME, not --fold/--ensemble")
        out = cross_validate_by_source(members, out=args.cv_out, only=args.source, progress=not args.quiet)
    elif args.ensemble:
        from pathlib import Path

        from maskclf.training.ensemble import ensemble_cv

        base = Path(args.cv_out or Path(cfg.train.out) / f"cv-{cfg.model.name}-{cfg.data.image_size}")
        runs = _seed_members(cfg, args, "cv", lambda c, seed: cross_validate(
            c, folds=args.folds, out=base.parent / f"{base.name}-seed{seed}", only=args.fold, progress=not args.quiet))
        out = ensemble_cv(runs, base.parent / f"{base.name}-ensemble{args.ensemble}", progress=not args.quiet)
    else:
        out = cross_validate(members, folds=args.folds, out=args.cv_out, only=args.fold, progress=not args.quiet)
    print((out / "cv.md").read_text(), end="")
    print(f"cross-validation folder: {out}")
    return 0


def cmd_explain(args) -> int:
    """``maskclf explain``: Grad-CAM / Grad-CAM++ heatmaps and overlays per image."""
    _quiet_tensorflow()
    from maskclf.reports.explain import explain_images

    for r in explain_images(args.run_dir, args.inputs, method=args.method, class_name=args.class_name,
                            out_dir=args.out):
        print(f"{r.path}\t{r.label}\t{r.score:.3f}\texplained {r.explained_class}\t{r.panel}")
    return 0


def cmd_report(args) -> int:
    """``maskclf report``: a run's self-contained report.html and report.md."""
    _quiet_tensorflow()
    from maskclf.reports.report import build_report

    out = build_report(args.run_dir, max_errors=args.max_errors, progress=not args.quiet)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def cmd_synth(args) -> int:
    """``maskclf synth``: generated images of a class (autoencoder, seed report 001) for ``--extra-train``."""
    _quiet_tensorflow()
    from maskclf.research.synth import synthesize

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    out = synthesize(args.source, args.out, method=args.method, per_class=args.per_class, classes=classes,
                     epochs=args.epochs, image_size=args.image_size, seed=args.seed, overrides=args.overrides,
                     progress=not args.quiet)
    print(f"synthetic images: {out}  (maskclf train --data DATA --extra-train {out})")
    return 0


def cmd_paint(args) -> int:
    """``maskclf paint``: bare faces painted with a mask worn correctly or incorrectly (a research lever)."""
    from pathlib import Path

    from maskclf.data.images import collect_images
    from maskclf.research.paintmask import paint_folder, parse_styles

    styles = parse_styles(args.styles)
    sources = collect_images(args.faces)
    report = paint_folder(sources, Path(args.out), styles, seed=args.seed)
    written = ", ".join(f"{c} {n}" for c, n in report["written"].items())
    skipped = (f"; skipped: {report['no_face']} without a detected face, {report['too_small']} too small, "
               f"{len(report['unreadable'])} unreadable")
    print(f"painted {written} from {report['sources']} photos into {args.out}{skipped}")
    for line in report["unreadable"][:5]:
        print(f"  {line}")
    if not any(report["written"].values()):
        raise MaskclfError(f"{', '.join(args.faces)}: no face found to paint (photos of single bare faces, eyes at "
                           "least 8 px apart)")
    print(f"look at {Path(args.out) / 'contact_sheet.png'}; train with: maskclf train --data DATA --extra-train "
          f"{args.out}")
    return 0
