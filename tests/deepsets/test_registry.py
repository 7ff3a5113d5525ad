"""The generic registry behind fusion heads, their builders and task kinds, and the
``deepsets.plugins`` entry points that fill it in processes the driver did not start
(Ray workers, Ray Data actors, served models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import deepsets.registry as registry
from deepsets.fusion_heads import fusion_names, fusion_traits
from deepsets.registry import PLUGIN_GROUP, Registry
from deepsets.task_kinds import task_names, task_traits


def test_register_lookup_names_and_iteration_in_registration_order():
    colours = Registry("colour", "colours", [("red", 1), ("green", 2)])
    colours.register("blue", 3)
    assert colours.names() == ("red", "green", "blue") and list(colours) == ["red", "green", "blue"]
    assert colours.get("green") == 2 and colours.items() == (("red", 1), ("green", 2), ("blue", 3))
    assert "blue" in colours and "mauve" not in colours and ["a"] not in colours and len(colours) == 3
    assert colours.find("mauve") is None and colours.find(["unhashable"]) is None
    with pytest.raises(ValueError, match=r"^unknown colour 'mauve' \(known colours: red, green, blue\)$"):
        colours.get("mauve")
    with pytest.raises(ValueError, match=r"^unknown colour \['a'\] \(known colours: red, green, blue\)$"):
        colours.get(["a"])


def test_a_name_registered_twice_needs_the_same_value_or_replace():
    colours = Registry("colour", "colours", [("red", 1)])
    colours.register("red", 1)  # the same value again: a no-op
    with pytest.raises(ValueError, match=r"^colour 'red' is already registered with other shades: 1$"):
        colours.register("red", 9, kind_of_value="shades")
    colours.register("red", 9, replace=True)
    assert colours.get("red") == 9
    with pytest.raises(ValueError, match="a colour needs a name"):
        colours.register("", 4)
    with pytest.raises(ValueError, match="colour 'red' is listed twice"):
        Registry("colour", "colours", [("red", 1), ("red", 2)])


def test_a_copy_is_registered_in_apart():
    colours = Registry("colour", "colours", [("red", 1)])
    scratch = colours.copy()
    scratch.register("blue", 2)
    assert scratch.names() == ("red", "blue") and colours.names() == ("red",)


def test_the_tables_keep_their_messages():
    assert fusion_names()[:6] == ("deepset", "attention", "transformer", "concat", "tmm_deepset", "mmt")
    assert task_names()[:7] == ("binary", "multilabel", "multiclass", "regression", "listwise", "pairwise", "two_tower")
    with pytest.raises(ValueError, match=r"^unknown fusion head 'gated' \(known heads: deepset, attention, "):
        fusion_traits("gated")
    with pytest.raises(ValueError, match=r"^unknown task kind 'poison' \(known kinds: binary, multilabel, "):
        task_traits("poison")


def write_distribution(root, module: str, source: str, entry_points: str) -> None:
    """An installed distribution as pip leaves it: the module beside its ``*.dist-info``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


TOY_PLUGIN = '''
import torch
from torch import nn

from deepsets.fusion import FusionHead, FusionOutput, check_set_inputs, register_fusion
from deepsets.fusion_heads import FusionTraits
from deepsets.metrics import TaskMetrics
from deepsets.task_kinds import TaskTraits
from deepsets.tasks import register_task


class ToySum(FusionHead):
    """The sum of the present modality vectors, then a linear map."""

    def __init__(self, num_modalities, dim):
        super().__init__()
        self.num, self.dim, self.out_dim = num_modalities, dim, dim
        self.project = nn.Linear(dim, dim)

    def forward(self, vectors, present):
        check_set_inputs(vectors, present, self.num, self.dim)
        return FusionOutput(self.project(torch.where(present.unsqueeze(-1), vectors, 0.0).sum(dim=1)))  # (B, D)


register_fusion(FusionTraits("toy_sum"), lambda s: ToySum(len(s.names), s.dim))
register_task(
    TaskTraits("toy_squared", ("loss", "rmse"), "rmse", ("loss", "rmse"), outputs_are="targets"),
    loss=lambda logits, target, group: ((logits.reshape(target.shape) - target) ** 2).mean(),
    metrics=lambda num_outputs: TaskMetrics("regression", num_outputs),
)
'''

IN_A_FRESH_PROCESS = """
import json, sys
import torch
from deepsets.builders import build_fusion
from deepsets.fusion_heads import fusion_traits
from deepsets.task_kinds import task_traits
from deepsets.tasks import task_loss

before = "toy_plugin" in sys.modules
traits = fusion_traits("toy_sum")   # a miss: the entry point's module is imported, then found
fusion = build_fusion("toy_sum", ["a", "b"], 4)
fused = fusion(torch.ones(3, 2, 4), torch.tensor([[True, False], [True, True], [False, False]]))
loss = task_loss("toy_squared", torch.zeros(2, 1), torch.tensor([[1.0], [3.0]]))
print(json.dumps({"imported_before": before, "set_head": traits.set_head, "head": type(fusion.head).__name__,
                  "fused": list(fused.fused.shape), "task": task_traits("toy_squared").select, "loss": float(loss)}))
"""


def run_fresh(code: str, path) -> subprocess.CompletedProcess:
    """``python -c code`` in a new process whose import path starts with ``path``, as a Ray worker
    starts: nothing the test process registered exists there."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_an_installed_plugin_registers_its_head_and_task_in_a_fresh_process(tmp_path):
    write_distribution(tmp_path, "toy_plugin", TOY_PLUGIN, f"[{PLUGIN_GROUP}]\ntoy = toy_plugin\n")
    done = run_fresh(IN_A_FRESH_PROCESS, tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "imported_before": False,
        "set_head": True,
        "head": "ToySum",
        "fused": [3, 4],
        "task": "rmse",
        "loss": 5.0,  # ((0 - 1)^2 + (0 - 3)^2) / 2
    }


def test_a_plugin_head_is_a_choice_of_the_run_config_in_a_fresh_process(tmp_path):
    write_distribution(tmp_path, "toy_plugin", TOY_PLUGIN, f"[{PLUGIN_GROUP}]\ntoy = toy_plugin\n")
    code = (
        "from deepsets.pipelines.config import parse_run_config; "
        "cfg = parse_run_config({'data': {'train': 't', 'label_columns': ['y']}, 'schema': {'path': 's.toml'}, "
        "'model': {'fusion': 'toy_sum'}, 'task': {'kind': 'toy_squared'}}); "
        "print(cfg.model.fusion, cfg.model.task)"
    )
    done = run_fresh(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["toy_sum", "toy_squared"]


def test_without_the_plugin_a_fresh_process_does_not_know_the_head(tmp_path):
    done = run_fresh("from deepsets.fusion_heads import fusion_traits; fusion_traits('toy_sum')", tmp_path)
    assert done.returncode == 1 and "ValueError: unknown fusion head 'toy_sum' (known heads: deepset," in done.stderr


def test_plugins_load_once_per_process_and_a_broken_one_is_named(monkeypatch, tmp_path):
    entry_points = f"[{PLUGIN_GROUP}]\nbroken = missing_module_of_a_plugin\n"
    write_distribution(tmp_path, "broken_plugin", "", entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)  # as in a process that has read no registry yet
    scans = []
    scan = registry.metadata.entry_points
    monkeypatch.setattr(registry.metadata, "entry_points", lambda **kw: scans.append(kw) or scan(**kw))
    colours = Registry("colour", "colours", [("red", 1)])
    with pytest.raises(
        ValueError,
        match=r"^plug-ins \(deepsets.plugins\) that failed to import: "
        r"broken = 'missing_module_of_a_plugin': ModuleNotFoundError",
    ):
        colours.names()
    assert colours.get("red") == 1 and "blue" not in colours and colours.names() == ("red",)
    assert scans == [{"group": PLUGIN_GROUP}]  # the first read scanned the entry points; no later one did


def test_a_ray_worker_finds_an_installed_plugins_head_and_task(ray_session, tmp_path):
    """What a Ray Train worker or Ray Data actor does: a process the driver did not fork looks up
    a head and a task kind by name; the package is installed (on its import path), never imported."""
    write_distribution(tmp_path, "toy_plugin", TOY_PLUGIN, f"[{PLUGIN_GROUP}]\ntoy = toy_plugin\n")

    def look_up() -> tuple:
        was_imported = "toy_plugin" in sys.modules
        from deepsets.fusion_heads import fusion_traits
        from deepsets.task_kinds import task_traits

        return was_imported, fusion_traits("toy_sum").name, task_traits("toy_squared").select

    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    remote = ray_session.remote(look_up).options(runtime_env={"env_vars": {"PYTHONPATH": path}})
    assert ray_session.get(remote.remote(), timeout=120) == (False, "toy_sum", "rmse")
