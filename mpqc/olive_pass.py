"""mpqc as a Microsoft Olive pass (the `olive` extra).

Olive loads passes that live outside it through a package config naming the module and
class (`olive run --config workflow.json --package-config mpqc_olive.json`); `mpqc
olive-config -o FILE` writes one that holds Olive's own passes plus `MpqcCompile`. The
pass runs `mpqc.compile` on the input ONNX model and returns Olive's ONNX model handler
of the winner; the run folder (report.json, report.html, scheme.json) lies beside it.

Every option is checked by mpqc before any work; a bad one is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olive.hardware.accelerator import AcceleratorSpec
from olive.model import ONNXModelHandler
from olive.passes import Pass
from olive.passes.pass_config import BasePassConfig, PassConfigParam

from mpqc.api import compile as mpqc_compile
from mpqc.compiler.options import DEFAULT_BUDGET, POLICIES, CompileOptions
from mpqc.errors import OptionError

__all__ = ["MpqcCompile", "PACKAGE_ENTRY", "package_config"]

#: the entry Olive's package config needs for this pass
PACKAGE_ENTRY: dict[str, Any] = {
    "module_path": "mpqc.olive_pass.MpqcCompile",
    "supported_providers": ["*"],
    "supported_accelerators": ["*"],
    "supported_precisions": ["*"],
    "dataset": "dataset_not_required",
}


def package_config() -> dict[str, Any]:
    """Olive's own package config with `MpqcCompile` added (what `--package-config` takes)."""
    from olive.package_config import OlivePackageConfig

    data = json.loads(Path(OlivePackageConfig.get_default_config_path()).read_text())
    data["passes"]["MpqcCompile"] = dict(PACKAGE_ENTRY)
    return data


class MpqcCompile(Pass):
    """Mixed-precision compile with mpqc: the best QDQ scheme under a budget on a target,
    QAT where the policy spends it. Data are mpqc data specs (a .npz, `digits`, or
    module:function); without labels quality is fidelity to the float model."""

    @classmethod
    def _default_config(cls, accelerator_spec: AcceleratorSpec) -> dict[str, PassConfigParam]:
        return {
            "budget": PassConfigParam(type_=str, default_value=None, description=f"default {DEFAULT_BUDGET}"),
            "max_drop": PassConfigParam(
                type_=float, default_value=None, description="points of quality the winner may lose (quality mode)"
            ),
            "target": PassConfigParam(type_=str, default_value="ort-cpu", description="mpqc target or .toml"),
            "backend": PassConfigParam(
                type_=str, default_value=None, description="ort, tensorrt, qnn or openvino: what loads the model"
            ),
            "data": PassConfigParam(type_=str, default_value=None, description="calibration/training data"),
            "val_data": PassConfigParam(type_=str, default_value=None, description="validation data"),
            "test_data": PassConfigParam(type_=str, default_value=None, description="test data"),
            "space": PassConfigParam(type_=str, default_value=None, description="comma-separated precisions"),
            "qat_policy": PassConfigParam(type_=str, default_value="predicted", description=", ".join(POLICIES)),
            "qat_tolerance": PassConfigParam(
                type_=float, default_value=1.0, description="points of quality QAT must add to be run"
            ),
            "qat_epochs": PassConfigParam(type_=int, default_value=3, description="QAT epochs per candidate"),
            "seed": PassConfigParam(type_=int, default_value=0, description="random seed"),
            "workers": PassConfigParam(
                type_=int, default_value=1, description="local: worker processes; ray: actors (default: cluster CPUs)"
            ),
            "executor": PassConfigParam(type_=str, default_value="local", description="where jobs run: local or ray"),
            "ray_address": PassConfigParam(
                type_=str, default_value=None, description="executor ray: auto or HOST:PORT (default: a Ray here)"
            ),
        }

    @classmethod
    def get_config_params(
        cls,
        accelerator_spec: AcceleratorSpec,
        config: dict[str, Any] | None = None,
        disable_search: bool | None = False,
    ) -> Any:
        """Olive ignores keys a pass does not know (with a warning); mpqc refuses them, and
        every value it can check, by name before Olive does any work."""
        config = dict(config or {})
        known = cls._default_config(accelerator_spec)
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise OptionError(f"unknown MpqcCompile option(s) {unknown}; valid: {sorted(known)}")
        _check_values({name: config.get(name, param.default_value) for name, param in known.items()})
        return super().get_config_params(accelerator_spec, config, disable_search)

    def _run_for_config(
        self, model: ONNXModelHandler, config: type[BasePassConfig], output_model_path: str
    ) -> ONNXModelHandler:
        options = _options(config)
        run_folder = Path(output_model_path)
        run_folder = run_folder.parent / run_folder.stem if run_folder.suffix == ".onnx" else run_folder
        result = mpqc_compile(
            model.model_path,
            config.budget,
            config.target,
            config.data,
            run_folder,
            options,
            val_data=config.val_data,
            test_data=config.test_data,
            space=config.space,
            backend=config.backend,
        )
        handler = ONNXModelHandler(model_path=str(result.output), onnx_file_name="model.onnx")
        handler.model_attributes = {
            **(model.model_attributes or {}),
            "mpqc_report": str(result.report_path),
            "mpqc_scheme": result.scheme.summary(),
        }
        return handler


def _check_values(values: dict[str, Any]) -> None:
    """The values mpqc can check without the model: each refused naming its option."""
    from mpqc.backend import get_backend
    from mpqc.budget import Budget
    from mpqc.errors import MpqcError
    from mpqc.targets import get_target

    def refuse(name: str, why: str) -> None:
        raise OptionError(f"MpqcCompile.{name}: {why}")

    for name in ("budget", "target", "backend"):
        if values[name] is not None and not isinstance(values[name], str):
            refuse(name, f"must be a string, got {values[name]!r}")
    checks: dict[str, Any] = {"budget": Budget.parse, "target": get_target, "backend": get_backend}
    for name, check in checks.items():
        if values[name] is not None:
            try:
                check(values[name])
            except MpqcError as exc:
                refuse(name, str(exc))
    if values["qat_policy"] not in POLICIES:
        refuse("qat_policy", f"must be one of {', '.join(POLICIES)}, got {values['qat_policy']!r}")
    for name, low, high in (("qat_tolerance", -100, 100), ("max_drop", 0, 100)):
        value = values[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
        ):
            refuse(name, f"must be a number of points in [{low}, {high}], got {value!r}")
    for name in ("workers", "qat_epochs"):
        if isinstance(values[name], bool) or not isinstance(values[name], int) or values[name] < 1:
            refuse(name, f"must be a whole number of at least 1, got {values[name]!r}")
    from mpqc.executor import ExecutorSpec

    try:
        ExecutorSpec(values["executor"], values["workers"], values["ray_address"])
    except MpqcError as exc:
        refuse("executor" if values["ray_address"] is None else "ray_address", str(exc))


def _options(config: Any) -> CompileOptions:
    """Compile options from the (checked) pass config."""
    return CompileOptions(
        qat_tolerance=config.qat_tolerance / 100,
        qat_epochs=config.qat_epochs,
        seed=config.seed,
        workers=config.workers,
        executor=config.executor,
        ray_address=config.ray_address,
        qat_policy=config.qat_policy,
        max_drop=None if config.max_drop is None else config.max_drop / 100,
        progress=False,
    )
