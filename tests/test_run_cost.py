"""What a run spends outside its training steps, and the switches that cut it: no validation before training, the
final weights as the measured ones (no reload, no second validation), the probe's label measures on the test
images only; the time of each phase in train.log and metrics.json; bf16 on a CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unet_upsampling.checks import cpu_has_bf16, warn_precision

from conftest import TINY, compose_config, read_metrics, run_app

# 12 steps, validations after 4, 8 and 12; the best checkpoint by the lowest val/dice, so that it is not the last one
# (the untrained network's Dice only rises in a few steps)
RUN = [*TINY, "trainer.max_steps=12", "trainer.max_epochs=-1", "validations=3", "callbacks.best_checkpoint.mode=min"]


def train(tmp_path, monkeypatch, *overrides: str) -> tuple[dict, str]:
    assert (
        run_app("train.py", *RUN, *overrides, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    )
    return read_metrics(tmp_path), (tmp_path / "train.log").read_text()


@pytest.fixture(scope="module")
def best_run(tmp_path_factory) -> tuple[dict, str]:
    """RUN at the defaults: validated at init, the best checkpoint measured (one run for the tests that read it)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return train(tmp_path_factory.mktemp("best"), monkeypatch)


def test_the_final_weights_are_measured_from_the_validation_after_the_last_step(tmp_path, monkeypatch):
    """And the label measures run on the splits named (test), the flat fields still at the validation."""
    metrics, log = train(
        tmp_path,
        monkeypatch,
        "eval_weights=last",
        "validate_at_init=false",
        "callbacks.artifact_probe.label_splits=[test]",
    )
    assert metrics["eval_weights"] == "final" and metrics["step"] == metrics["global_step"] == 12
    assert "validation before training" not in log and not any(k.startswith("init/") for k in metrics)
    assert "validation of the" not in log  # no validation after fitting: the one at step 12 measured these weights
    assert "time/end_validation_s" not in metrics and "time/init_validation_s" not in metrics
    assert log.count("final validation at step 12") == 1 and "flat_std" in log.split("final validation at step 12")[1]
    assert {"val/flat_std", "test/dice", "test/shift1_disagree_pm", "test/phase_excess2_pm"} <= metrics.keys()
    assert "test/phase_fp_c0_00_pm" in metrics
    assert not any(k.startswith(("val/shift", "val/phase", "init/shift", "init/phase")) for k in metrics)


def test_the_best_checkpoint_is_measured_where_it_is_not_the_last(best_run):
    metrics, log = best_run
    assert metrics["eval_weights"] == "best checkpoint" and metrics["step"] in (4, 8)
    assert f"validation of the best checkpoint at step {int(metrics['step'])}" in log
    assert "init/dice" in metrics and metrics["time/end_validation_s"] > 0
    assert {"val/shift1_disagree_pm", "init/shift1_disagree_pm"} <= metrics.keys()  # label_splits' default: all


def test_phases_add_up_to_the_run_and_reach_train_log(best_run):
    metrics, log = best_run
    phases = [k for k in metrics if k.startswith("time/") and k not in ("time/total_s", "time/probes_s")]
    assert {"time/startup_s", "time/init_validation_s", "time/training_s", "time/fit_validations_s"} <= set(phases)
    assert {"time/end_validation_s", "time/test_s"} <= set(phases)
    assert all(metrics[k] >= 0 for k in phases) and 0 < metrics["time/probes_s"] < metrics["time/total_s"]
    assert sum(metrics[k] for k in phases) == pytest.approx(metrics["time/total_s"])
    assert metrics["train_time_s"] == pytest.approx(metrics["time/training_s"] + metrics["time/fit_validations_s"])
    line = next(line for line in log.splitlines() if "] - time: start-up" in line)
    assert "validations while training" in line and "the artifact probes" in line


def test_bf16_mixed_trains_on_a_cpu(tmp_path, monkeypatch):
    # 2 steps, one validation: bf16 runs many times slower on a CPU without bfloat16 arithmetic
    bf16 = ["trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "trainer.max_steps=2", "validations=1"]
    metrics, _ = train(tmp_path, monkeypatch, *bf16, "validate_at_init=false", "test=false")
    assert metrics["precision"] == "bf16-mixed" and 0 <= metrics["val/dice"] <= 1


def test_bf16_on_a_cpu_without_bfloat16_arithmetic_is_named_in_a_warning(tmp_path, monkeypatch, caplog):
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_has_bf16(flags) is False and cpu_has_bf16(tmp_path / "absent") is None
    flags.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(flags) is True
    monkeypatch.setattr("unet_upsampling.checks.cpu_has_bf16", lambda: False)
    warn_precision(compose_config("train", ["trainer.precision=bf16-mixed", "trainer.accelerator=cpu"]))
    assert "without bfloat16 arithmetic" in caplog.text and "trainer.precision=32-true" in caplog.text
    caplog.clear()
    warn_precision(compose_config("train", ["trainer.accelerator=cpu"]))
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("override", "named"),
    [("eval_weights=final", "eval_weights='final'"), ("validate_at_init=1", "validate_at_init=1")],
)
def test_a_switch_with_another_value_is_refused_by_name(tmp_path, monkeypatch, capsys, override, named):
    assert run_app("train.py", *TINY, override, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("typo", ["upsample=deconvv", "trainer.max_stepz=3"])
def test_a_typo_is_refused_before_torch_is_imported(typo):
    """Hydra composes (and refuses) the overrides before the job imports torch and Lightning (entry.py)."""
    code = (
        "import sys; from unet_upsampling.entry import train; "
        f"sys.argv = ['train.py', {typo!r}]\n"
        "try:\n    train()\nexcept SystemExit as e:\n"
        "    print(e.code, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "False", "False"]
    assert typo.split("=")[0].split(".")[-1] in done.stderr  # Hydra names the key or option


@pytest.mark.slow
def test_a_run_s_start_up_imports_no_logger_nor_encoder_zoo_it_does_not_use():
    """train.py's imports leave out TensorBoard, MLflow and timm (the encoder UNet's zoo) until a run needs them;
    the encoder UNet still builds by its config's target."""
    code = (
        "import sys, unet_upsampling.train; "
        "print(sorted(m for m in ('timm', 'mlflow', 'tensorboard') if m in sys.modules)); "
        "from hydra.utils import get_class; get_class('unet_upsampling.models.EncoderUNet'); "
        "print('timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True"]
