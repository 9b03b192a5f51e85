"""What ``hsra models`` shows: every registered method with its size, compute, weights and measured accuracy."""

from __future__ import annotations

from pathlib import Path


def describe_model(name: str, installed: dict[str, Path] | None = None) -> dict:
    """One registered model (or one tag of its weights, ``NAME.TAG``) as plain data.

    Keys: name, aliases, kind, description, needs_weights, parameters_m (millions; 0 for solvers), gflops
    (fvcore, 28×256×256, from the committed cache; None when the cache lacks it), weights_installed,
    weights_folder, psnr_db, ssim (the network alone), psnr_default_db, ssim_default (as `hsra reconstruct` gives
    it by default, with its refinement, when the card measured it), accuracy_on, trained_on, license, citations
    (from the installed model card; data are named without the training machine's paths), config (architecture).
    """
    from ..flops import cached_entry, count_parameters
    from ..registry import create_model, get_entry
    from ..weights import card_accuracy, card_citations, card_default_accuracy, card_license, card_sources, installed_models, read_model_config

    from ..registry import split_tag

    entry = get_entry(name)
    canonical, tag = split_tag(name)
    installed = installed_models() if installed is None else installed
    row = {
        "name": f"{canonical}.{tag}" if tag else entry.name,
        "aliases": list(entry.aliases),
        "kind": entry.kind,
        "description": entry.description,
        "needs_weights": entry.needs_weights,
        "parameters_m": 0.0,
        "gflops": None,
        "weights_installed": False,
        "weights_folder": None,
        "psnr_db": None,
        "ssim": None,
        "psnr_default_db": None,
        "ssim_default": None,
        "accuracy_on": None,
        "trained_on": None,
        "license": None,
        "citations": [],
        "config": dict(entry.config),
    }
    if not entry.needs_weights:
        return row
    cached = cached_entry(entry.name)
    if cached is not None:
        row["gflops"] = cached["gflops"]
        row["parameters_m"] = round(cached["params"] / 1e6, 3)
    else:
        row["parameters_m"] = round(count_parameters(create_model(entry.name)) / 1e6, 3)
    folder = installed.get(row["name"])
    if folder is not None:
        row["weights_installed"] = True
        row["weights_folder"] = str(folder)
        try:
            card = read_model_config(folder)
            psnr, ssim, where = card_accuracy(card)
            row.update(zip(("psnr_default_db", "ssim_default"), card_default_accuracy(card)))
            sources = card_sources(card)
            row.update(trained_on=" + ".join(str(s.get("name")) for s in sources) or None,
                       license=card_license(card), citations=card_citations(card))
        except Exception:  # a damaged card must not break the listing; `hsra models info` shows the error
            psnr, ssim, where = None, None, "unreadable config.json"
        row.update(psnr_db=psnr, ssim=ssim, accuracy_on=where or None)
    return row


def describe_models() -> list[dict]:
    """:func:`describe_model` for every registered model, in registration order."""
    from ..registry import list_models
    from ..weights import installed_models

    from ..registry import pretrained_tags

    installed = installed_models()
    rows = []
    for name in list_models():
        rows.append(describe_model(name, installed))
        declared = pretrained_tags(name)
        tags = [key for key in installed if key.startswith(f"{name}.") and key != name]
        # declared tags first (the default leads), then any other installed ones
        tags.sort(key=lambda key: (declared.index(key.split(".")[-1]) if key.split(".")[-1] in declared else len(declared), key))
        rows.extend(describe_model(key, installed) for key in tags)
    return rows
