"""QAT-necessity probes for the predicted policy: the reference (all w8a8) and each layer
alone at each probe variant, PTQ and a short QAT. Probe variants follow the space: a
weight probe wBa8 for each weight width below 8, an activation probe w8aB for each
activation width below 8. Reused from the run folder, then from the user cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mpqc.cache import Cache, content_key
from mpqc.compiler.run_folder import RunFolder
from mpqc.executor import OnRetry
from mpqc.jobs import JobStore, QatContext, Where
from mpqc.necessity import LayerProbes, probe_layers
from mpqc.precision import Precision

__all__ = ["probe_variants_for", "layer_probes"]

_VERSION = 2


def probe_variants_for(space: Sequence[Precision]) -> list[str]:
    """The probe variants a search space needs: wBa8 per weight width, w8aB per activation width."""
    weights = sorted({p.w_bits for p in space if p.w_bits is not None and p.w_bits < 8})
    acts = sorted({p.a_bits for p in space if p.a_bits is not None and p.a_bits < 8 and p.form == "qdq"})
    return [f"w{b}a8" for b in weights] + [f"w8a{b}" for b in acts]


def layer_probes(
    context: QatContext,
    names: list[str],
    float_quality: float,
    space: Sequence[Precision],
    epochs: int,
    where: Where,
    run: RunFolder,
    use_cache: bool,
    progress: Callable[[int], None] | None = None,
    on_retry: OnRetry | None = None,
) -> tuple[LayerProbes, str]:
    """The probes, and where they came from ("run folder", "cache" or "measured")."""
    variants = probe_variants_for(space)
    key = content_key({"context": context.key, "variants": variants, "epochs": epochs})
    cache = Cache("probes", _VERSION, enabled=use_cache)

    def parse(data: Any) -> LayerProbes:
        probes = LayerProbes.from_json(data)
        if probes.variants != variants or set(probes.table) != set(names) or probes.epochs != epochs:
            raise ValueError("probes for another model or space")
        if any(set(row) != set(variants) for row in probes.table.values()):
            raise ValueError("incomplete probe table")
        return probes

    saved = run.read("probes.json", parse)
    if saved is not None:
        return saved, "run folder"
    saved = cache.get(key, parse)
    if saved is not None:
        run.write_json("probes.json", saved.to_json())
        return saved, "cache"
    store = JobStore(run.path / "jobs", context.key)
    probes = probe_layers(context, names, float_quality, variants, epochs, where, store, progress, on_retry)
    run.write_json("probes.json", probes.to_json())
    cache.put(key, probes.to_json())
    return probes, "measured"
