"""notebooks/quickstart.ipynb runs top to bottom (small sizes), so it never rots."""

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QUICKSTART_ROWS", "2400")
    monkeypatch.setenv("QUICKSTART_EPOCHS", "1")
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/unused.db")  # restored after the test
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__quickstart__"}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"quickstart.ipynb cell {i}", "exec"), namespace)  # noqa: S102 - our own notebook
    assert namespace["embedded"]["rows_out"] == 2400 and namespace["embedded"]["rows_rejected"] == 0
    assert namespace["ablation"]["shapley_efficiency"]["abs_error"] < 1e-9
    assert (tmp_path / "ablation" / "ablation.png").exists() and (tmp_path / "run.toml").exists()
    out = capsys.readouterr().out
    folder = namespace["ablation"]["mlflow"]["artifact_path"]  # ablation/<time>-<hex>: this ablation's own folder
    assert f"ablation artifacts: ['{folder}/ablation.json'" in out and "mlflow ui --backend-store-uri" in out
